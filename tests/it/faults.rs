//! A portal that misbehaves on the wire, through the real binary: the fault proxy
//! (`support::proxy`) between the Bitrix24 client and the emulator serving the demo portal.
//! A report fetched through faults equals the clean run's JSON byte for byte, or the run
//! fails with a clear transient error once the retries are spent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::TimeZone;
use salespulse::crm::emulator::Emulator;

use crate::support::crm::fast_portal;
use crate::support::proxy::{Fault, FaultProxy};

const BIN: &str = env!("CARGO_BIN_EXE_salespulse");

/// The slot of 2026-W47 in the demo config: the demo portal's "now" for that report.
fn slot() -> chrono::DateTime<chrono_tz::Tz> {
    chrono_tz::Europe::Moscow.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap()
}

/// The demo portal served by the emulator on loopback, as the `demo` source would serve it.
pub async fn demo_portal() -> Emulator {
    Emulator::start(salespulse::crm::demo::portal(slot()), fast_portal()).await.unwrap()
}

/// The `[crm]` section for a real portal at `webhook_url`: Ivan's data only (one PDF keeps
/// the tests quick), a 3 s request timeout and quick retries, so faults cost seconds, not
/// minutes; `extra` adds keys.
pub fn crm_toml(webhook_url: &str, extra: &str) -> String {
    format!(
        "[crm]\nsource = \"bitrix24\"\nwebhook_url = \"{webhook_url}\"\nmanagers = [17]\n\
         rate_limit_per_sec = 10000.0\nrate_limit_burst = 10000\ntimeout_secs = 3\n{extra}\n"
    )
}

/// A config for a real portal at `webhook_url`, mail into an outbox.
fn config(dir: &Path, webhook_url: &str, max_retries: Option<u32>) -> PathBuf {
    let max_retries = max_retries.map(|n| format!("max_retries = {n}")).unwrap_or_default();
    let text = format!(
        r#"
timezone = "Europe/Moscow"
state_dir = "{state}"

{crm}
cache = false

[mail]
transport = "outbox"
outbox_dir = "{outbox}"
from = "Отчёты продаж <reports@example.ru>"

[[job]]
name = "manager-weekly"
report = "manager"
schedule = "0 8 * * MON"
period = "previous-week"
"#,
        state = dir.join("state").display(),
        crm = crm_toml(webhook_url, &max_retries),
        outbox = dir.join("outbox").display(),
    );
    let path = dir.join("salespulse.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `salespulse report manager-weekly --period 2026-W47` against `webhook_url`, off the
/// async runtime that serves the portal and the proxy.
async fn report(dir: &Path, webhook_url: &str, max_retries: Option<u32>) -> Output {
    let config = config(dir, webhook_url, max_retries);
    let out = dir.join("out");
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["report", "manager-weekly", "--period", "2026-W47", "--out"])
            .arg(&out)
            .env("SALESPULSE_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The report's JSON as written beside its PDF.
fn report_json(dir: &Path) -> String {
    let week = dir.join("out/manager-weekly/2026-W47");
    let json: Vec<PathBuf> = std::fs::read_dir(&week)
        .unwrap_or_else(|e| panic!("{}: {e}", week.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(json.len(), 1, "{json:?}");
    std::fs::read_to_string(&json[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_fetched_through_faults_equals_the_clean_run_byte_for_byte() {
    let portal = demo_portal().await;
    let url = portal.webhook_url();
    let clean = tempfile::tempdir().unwrap();
    let out = report(clean.path(), &url, None).await;
    assert!(out.status.success(), "the clean run: {}", stderr(&out));
    let expected = report_json(clean.path());

    let mut seen = Vec::new();
    for seed in [1, 2] {
        let proxy = FaultProxy::seeded(&url, seed, 0.5, &Fault::ALL).await;
        let began = std::time::Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let out = report(dir.path(), &proxy.url(&url), None).await;
        let injected = proxy.injected();
        println!("seed {seed}: {} requests, faults {injected:?}, {:?}", proxy.requests(), began.elapsed());
        assert!(out.status.success(), "seed {seed}, faults {injected:?}: {}", stderr(&out));
        assert!(!injected.is_empty(), "seed {seed}: no fault was injected in {} requests", proxy.requests());
        assert_eq!(report_json(dir.path()), expected, "seed {seed}, faults {injected:?}");
        seen.extend(injected);
    }
    // Between them the seeds exercise the mid-fetch HTML page, which ended the run before.
    assert!(seen.contains(&Fault::Html200), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_page_in_the_middle_of_a_fetch_is_retried_but_on_first_contact_means_a_wrong_url() {
    let portal = demo_portal().await;
    let url = portal.webhook_url();
    let clean = tempfile::tempdir().unwrap();
    assert!(report(clean.path(), &url, None).await.status.success());
    let expected = report_json(clean.path());

    // The portal answers JSON, then a PHP error page with status 200, a cut-off answer and
    // the error page again, then JSON again.
    let proxy = FaultProxy::start(&url).await;
    proxy.queue(&[None, Some(Fault::Html200), Some(Fault::TruncatedJson), Some(Fault::Html200)]);
    let dir = tempfile::tempdir().unwrap();
    let out = report(dir.path(), &proxy.url(&url), None).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(proxy.injected(), [Fault::Html200, Fault::TruncatedJson, Fault::Html200]);
    assert_eq!(report_json(dir.path()), expected);

    // The very first answer is HTML: a wrong URL, said clearly, not retried for minutes.
    let proxy = FaultProxy::start(&url).await;
    proxy.queue(&[Some(Fault::Html200)]);
    let dir = tempfile::tempdir().unwrap();
    let out = report(dir.path(), &proxy.url(&url), None).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("answered HTML instead of JSON") && message.contains("crm.webhook_url"), "{message}");
    assert_eq!(proxy.requests(), 1, "a wrong URL is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_that_keeps_failing_ends_the_run_with_a_clear_transient_error() {
    let portal = demo_portal().await;
    let url = portal.webhook_url();
    let faults = [Fault::ResetMidBody, Fault::BadGateway, Fault::GatewayTimeout, Fault::TruncatedJson, Fault::Outage];
    let proxy = FaultProxy::seeded(&url, 7, 1.0, &faults).await;
    let dir = tempfile::tempdir().unwrap();
    let out = report(dir.path(), &proxy.url(&url), Some(3)).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains("failed to call") && message.contains("will retry"), "{message}");
    assert!(message.contains("gave up after 4 attempts"), "{message}");
    assert!(!dir.path().join("out/manager-weekly/2026-W47").exists(), "nothing half-written");
}
