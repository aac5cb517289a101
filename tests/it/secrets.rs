//! Secrets stay secret (issue 11): the webhook code and the SMTP password never reach
//! stderr, the journal, the run history, the ledger or `status`, whatever a portal or a
//! mail server echoes back, and a refused login stops the run's sending.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use salespulse::config::Config;
use salespulse::crm::emulator::{EmulatorOptions, PortalData, TokenLeak};
use salespulse::daemon::{self, RunOptions};
use salespulse::pipeline::PipelineRunner;
use salespulse::schedule::{Clock, FixedClock};
use salespulse::store::{RunOutcome, Store};

use crate::support::bin::{BIN, Portal, config_with, ok, run};
use crate::support::crm::fast_portal;
use crate::support::smtp::{SmtpOptions, TestSmtp};

/// A webhook code with characters a URL encodes, so each encoding is tried.
const CODE: &str = "k3y.Web~hook_42";

/// Every form of `secret` a text must not hold: plain, and percent-encoded byte by byte in
/// either case of hex or where URLs encode it.
fn forms_of(secret: &str) -> Vec<String> {
    let all = |upper: bool| -> String {
        secret.bytes().map(|b| if upper { format!("%{b:02X}") } else { format!("%{b:02x}") }).collect()
    };
    let url = secret.replace('.', "%2E").replace('~', "%7E");
    vec![secret.to_owned(), all(true), all(false), url.clone(), url.to_lowercase(), "k3y".to_owned()]
}

fn assert_no_code(what: &str, text: &str) {
    for form in forms_of(CODE) {
        assert!(!text.contains(&form), "{what} shows the webhook code ({form}):\n{text}");
    }
}

fn utc(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc)
}

/// Runs the weekly job's Monday slot once in the daemon loop (in-process, on a fixed clock)
/// with the config at `path`, the state in `dir/state`; returns when the run is recorded.
fn daemon_runs_the_weekly_slot(dir: &Path, path: &Path) {
    let mut config = Config::load(path).unwrap();
    config.state_dir = dir.join("state");
    config.jobs.retain(|j| j.name == "manager-weekly");
    config.daemon.max_attempts = 1;
    let config = Arc::new(config);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let clock = Arc::new(FixedClock::new(utc("2026-11-23T04:59:00Z"))); // Monday 07:59 MSK
        let runner = PipelineRunner::new(config.clone()).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = RunOptions {
            tick: Duration::from_millis(10),
            notify_systemd: false,
            retry_every: Duration::from_secs(3600),
        };
        let daemon = tokio::spawn({
            let config = config.clone();
            let clock = clock.clone() as Arc<dyn Clock>;
            async move { daemon::run_with(config, clock, async { stopped.await.ok() }, runner, options).await }
        });
        // Started (its ledger is open) and waiting for the slot.
        while !config.state_dir.join("salespulse.sqlite3").exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        clock.set(utc("2026-11-23T05:00:30Z"));
        let store = Store::open(&config.state_dir).unwrap();
        for _ in 0..1000 {
            let last = store.last_run("manager-weekly").unwrap();
            if last.is_some_and(|r| r.outcome != RunOutcome::Running) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(()).unwrap();
        daemon.await.unwrap().unwrap();
    });
}

/// Point 3: a portal that redirects to its login page with the request path in `backurl`,
/// or echoes the path in `error_description`: the failure is reported (the method, what to
/// check) on stderr and in the run history `status` shows, without the webhook code.
#[test]
fn a_portal_echoing_the_webhook_code_never_gets_it_shown() {
    for leak in [TokenLeak::Redirect, TokenLeak::EchoPath] {
        let options = EmulatorOptions { token: CODE.to_owned(), leak_token: Some(leak), ..fast_portal() };
        let portal = Portal::start(PortalData::default(), options);
        let dir = tempfile::tempdir().unwrap();
        let config = portal.config(dir.path(), None);

        let out = std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(["--config", config.to_str().unwrap(), "report", "manager-weekly", "--period", "2026-W47"])
            .env("SALESPULSE_LOG", "debug")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{leak:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("failed to call batch"), "{leak:?}: the error names the method:\n{stderr}");
        let hint = match leak {
            TokenLeak::Redirect => "backurl=%2Frest%2F1%2F***%2F",
            TokenLeak::EchoPath => "the portal rejected the webhook",
        };
        assert!(stderr.contains(hint), "{leak:?}: the error says what the portal said:\n{stderr}");
        assert_no_code("stderr", &stderr);

        // `check` asks the portal for the webhook's scopes, a call of its own.
        let out = std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(["--config", config.to_str().unwrap(), "check"])
            .env("SALESPULSE_LOG", "debug")
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(said.contains("scope"), "{leak:?}: check says the scope call failed:\n{said}");
        assert_no_code("check's output", &said);

        daemon_runs_the_weekly_slot(dir.path(), &config);
        let status = ok(&run(dir.path(), &config, &["status"]));
        assert!(
            status.contains("attempt(s): failed to call batch"),
            "{leak:?}: status says why the run failed:\n{status}"
        );
        assert_no_code("status", &status);
        let history = Store::open(&dir.path().join("state")).unwrap().last_run("manager-weekly").unwrap().unwrap();
        assert_no_code("the run history", history.detail.as_deref().unwrap_or_default());
        portal.stop();
    }
}

/// Every form of the SMTP password a text must not hold: plain, and base64 as AUTH PLAIN
/// and AUTH LOGIN send it.
fn password_forms(smtp: &TestSmtp) -> Vec<String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        smtp.password.clone(),
        b64(&format!("\0{}\0{}", smtp.username, smtp.password)),
        b64(&smtp.password),
        "Пароль".to_owned(),
    ]
}

/// Point 4: a server that refuses the login with a 535 echoing the base64 AUTH string. The
/// run tries one login, not one per report; the password shows in no form on stdout, stderr,
/// the ledger or `status`; every report stays unsent with the cause and goes out with the
/// next `send` once the login works. For AUTH PLAIN and AUTH LOGIN.
#[test]
fn a_refused_login_stops_the_run_and_its_echo_never_shows_the_password() {
    for login_only in [false, true] {
        let smtp =
            TestSmtp::start(SmtpOptions { refuse_login: true, auth_login_only: login_only, ..Default::default() });
        let dir = tempfile::tempdir().unwrap();
        let config = config_with(dir.path(), None, Some(&smtp.mail_toml()));
        let send = ["send", "manager-weekly", "--period", "2026-W47"];

        let out = std::process::Command::new(BIN)
            .current_dir(dir.path())
            .arg("--config")
            .arg(&config)
            .args(send)
            .env("SALESPULSE_LOG", "debug")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let shown = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(smtp.logins(), 1, "one login tried, then the run stopped sending:\n{shown}");
        assert!(smtp.received().is_empty());
        assert!(shown.contains("refused the login"), "{shown}");

        let status = ok(&run(dir.path(), &config, &["status"]));
        let waiting: Vec<&str> = status.lines().filter(|l| l.contains("manager-weekly 2026-W47")).collect();
        assert_eq!(waiting.len(), 8, "every scorecard waits:\n{status}");
        assert!(waiting.iter().all(|l| l.contains(": failed (") && l.contains("refused the login")), "{status}");

        let store = Store::open(&dir.path().join("state")).unwrap();
        let rows = store.deliveries("manager-weekly", "2026-W47").unwrap();
        assert!(rows.iter().all(|r| !r.permanent), "a later run or the daemon's retry sends them");
        for form in password_forms(&smtp) {
            assert!(!shown.contains(&form), "stdout/stderr show the password ({form}):\n{shown}");
            assert!(!status.contains(&form), "status shows the password ({form}):\n{status}");
            for row in &rows {
                assert!(!row.last_error.as_deref().unwrap_or_default().contains(&form), "the ledger: {row:?}");
            }
        }

        // The login fixed, the next `send` delivers every one, once.
        smtp.set_refuse_login(false);
        let again = ok(&run(dir.path(), &config, &send));
        assert!(again.contains("8 sent"), "{again}");
        assert_eq!(smtp.received().len(), 8);
        assert!(ok(&run(dir.path(), &config, &["status"])).contains("no deliveries pending or failed"));
    }
}
