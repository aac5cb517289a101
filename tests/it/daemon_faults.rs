//! The daemon's promise when the CRM or the admin misbehave, through the real daemon loop
//! and the real pipeline (`PipelineRunner`: the Bitrix24 client, KPIs, Typst, the ledger,
//! SMTP): the demo portal served by the emulator, behind the fault proxy, and mail to the
//! test SMTP server. The wall clock is a `FixedClock` the test moves; waits between
//! attempts are real but short (`[daemon]` backoff of a second or none).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use salespulse::config::Config;
use salespulse::crm::emulator::Emulator;
use salespulse::daemon::{self, RunOptions};
use salespulse::pipeline::PipelineRunner;
use salespulse::schedule::{Clock, FixedClock};
use salespulse::store::{RunOutcome, Store};

use crate::faults::{crm_toml, demo_portal};
use crate::support::proxy::FaultProxy;
use crate::support::smtp::{Received, SmtpOptions, TestSmtp};

const BIN: &str = env!("CARGO_BIN_EXE_salespulse");
const ADMIN: &str = "it@example.ru";
/// Ivan Petrov, manager 17 of the demo portal.
const IVAN: &str = "i.petrov@demo.salespulse.local";

/// Monday 2026-11-23, a second before and at 08:00 Moscow time.
const BEFORE_SLOT: &str = "2026-11-23T04:59:59Z";
const SLOT: &str = "2026-11-23T05:00:00Z";

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The portal, the proxy in front of it, the SMTP server and a config file naming them.
struct Setup {
    _portal: Emulator,
    proxy: FaultProxy,
    smtp: TestSmtp,
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Setup {
    /// `daemon` is the `[daemon]` table; `job` is appended after the weekly job.
    async fn new(daemon: &str, extra_job: &str) -> Setup {
        let portal = demo_portal().await;
        let url = portal.webhook_url();
        let proxy = FaultProxy::start(&url).await;
        let smtp = TestSmtp::start(SmtpOptions::default());
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "timezone = \"Europe/Moscow\"\nstate_dir = \"{state}\"\n\n{crm}\n{mail}\n[daemon]\n{daemon}\n\n\
             [[job]]\nname = \"manager-weekly\"\nreport = \"manager\"\nschedule = \"0 8 * * MON\"\n\
             period = \"previous-week\"\n{extra_job}",
            state = dir.path().join("state").display(),
            crm = crm_toml(&proxy.url(&url), "max_retries = 1"),
            mail = smtp.mail_toml(),
        );
        let path = dir.path().join("salespulse.toml");
        std::fs::write(&path, text).unwrap();
        Setup { _portal: portal, proxy, smtp, dir, path }
    }

    fn config(&self) -> Arc<Config> {
        Arc::new(Config::load(&self.path).unwrap())
    }

    fn store(&self) -> Store {
        Store::open(&self.dir.path().join("state")).unwrap()
    }

    fn to(&self, address: &str) -> Vec<Received> {
        self.smtp.received().into_iter().filter(|r| r.to.iter().any(|t| t == address)).collect()
    }

    /// `salespulse status` through the binary, as an admin would look.
    async fn status(&self) -> String {
        let path = self.path.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(BIN).arg("--config").arg(&path).arg("status").output().unwrap()
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn last_run(&self, job: &str) -> Option<salespulse::store::RunRecord> {
        self.store().last_run(job).unwrap()
    }
}

type DaemonRun = Pin<Box<dyn Future<Output = Result<(), daemon::DaemonError>>>>;

/// A message's plain-text body, decoded.
fn body(r: &Received) -> String {
    let message = mail_parser::MessageParser::default().parse(&r.data).expect("a parsable message");
    let subject = message.subject().unwrap_or_default().to_owned();
    format!("{subject}\n{}", message.body_text(0).unwrap_or_default())
}

/// The daemon loop over the real pipeline; stopped when the returned sender fires.
fn start(config: Arc<Config>, clock: Arc<dyn Clock>) -> (DaemonRun, tokio::sync::oneshot::Sender<()>) {
    let runner = PipelineRunner::new(config.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        stopped.await.ok();
    };
    let options = RunOptions { tick: Duration::from_millis(10), notify_systemd: false, ..RunOptions::default() };
    (Box::pin(daemon::run_with(config, clock, shutdown, runner, options)), stop)
}

impl Setup {
    /// Runs the daemon from a second before the slot, with `steps` beside it (given the
    /// clock to move), and stops it when they are done.
    async fn around_the_slot<F: Future<Output = ()>>(&self, steps: impl FnOnce(Arc<FixedClock>) -> F) {
        let clock = Arc::new(FixedClock::new(utc(BEFORE_SLOT)));
        let (daemon, stop) = start(self.config(), clock.clone());
        let test = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            steps(clock).await;
            stop.send(()).unwrap();
        };
        let (result, ()) = tokio::join!(daemon, test);
        result.unwrap();
    }
}

/// Waits (up to `secs` seconds) until `cond` holds.
async fn eventually(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_outage_at_the_slot_is_retried_with_the_daemons_backoff_and_status_shows_the_attempts() {
    let setup = &Setup::new("max_attempts = 5\nretry_initial_secs = 1\nretry_max_secs = 1", "").await;
    // The portal is unreachable at the slot: connections refused.
    setup.proxy.set_down(true);
    setup
        .around_the_slot(|clock| async move {
            clock.set(utc(SLOT));
            eventually("a second attempt", 20, || setup.last_run("manager-weekly").is_some_and(|r| r.attempts >= 2))
                .await;
            let status = setup.status().await;
            assert!(status.contains("running") && status.contains("attempt"), "{status}");
            assert!(status.contains("could not connect"), "status says why: {status}");
            // The portal comes back; the daemon's next attempt gets through.
            setup.proxy.set_down(false);
            eventually("Ivan's scorecard", 60, || setup.to(IVAN).len() == 1).await;
        })
        .await;
    let last = setup.last_run("manager-weekly").unwrap();
    assert_eq!((last.outcome, last.sent, last.period.as_str()), (RunOutcome::Ok, 1, "2026-W47"));
    assert!(last.attempts >= 3, "{last:?}");
    let status = setup.status().await;
    assert!(status.contains(&format!("ok after {} attempts", last.attempts)), "{status}");
    assert!(setup.to(ADMIN).is_empty(), "a failure the retries mended is not the admin's problem");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_still_fails_is_run_again_later_and_the_admin_is_told_once() {
    let setup = &Setup::new("max_attempts = 2\nretry_initial_secs = 0\nretry_max_secs = 0", "").await;
    setup.proxy.set_down(true);
    setup
        .around_the_slot(|clock| async move {
            clock.set(utc(SLOT));
            eventually("the run recorded as failed", 30, || {
                setup.last_run("manager-weekly").is_some_and(|r| r.outcome == RunOutcome::Failed)
            })
            .await;
            eventually("the admin told", 10, || setup.to(ADMIN).len() == 1).await;
            // The hourly second chance, with the portal still down: no second message.
            clock.set(utc("2026-11-23T06:00:00Z"));
            eventually("a second failed run", 30, || {
                setup.store().slot_attempts("manager-weekly", utc(SLOT)).unwrap().0 == 2
                    && setup.last_run("manager-weekly").is_some_and(|r| r.outcome == RunOutcome::Failed)
            })
            .await;
            // The portal is back by the next round.
            setup.proxy.set_down(false);
            clock.set(utc("2026-11-23T07:00:00Z"));
            eventually("Ivan's scorecard", 60, || setup.to(IVAN).len() == 1).await;
        })
        .await;
    let last = setup.last_run("manager-weekly").unwrap();
    assert_eq!((last.outcome, last.sent), (RunOutcome::Ok, 1));
    assert_eq!(setup.store().slot_attempts("manager-weekly", utc(SLOT)).unwrap(), (3, 5));

    let told = setup.to(ADMIN);
    assert_eq!(told.len(), 1, "one message per failed job and period, not one per retry");
    let text = body(&told[0]);
    assert!(text.contains("manager-weekly") && text.contains("2026-W47"), "{text}");
    assert!(text.contains("could not connect"), "the message names the cause:\n{text}");
    let command = format!(
        "salespulse --config {} send manager-weekly --period 2026-W47",
        std::path::absolute(&setup.path).unwrap().display()
    );
    assert!(text.contains(&command), "the message gives the command that reruns the job:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_catch_up_hours_0_a_slot_reached_while_running_is_on_time() {
    let setup = &Setup::new("catch_up_hours = 0", "").await;
    setup
        .around_the_slot(|clock| async move {
            clock.set(utc(SLOT));
            eventually("Ivan's scorecard", 60, || setup.to(IVAN).len() == 1).await;
        })
        .await;
    assert_eq!(setup.last_run("manager-weekly").unwrap().outcome, RunOutcome::Ok);
}

// Nothing is fetched or sent, so the daemon's ticks run on tokio's paused clock: the
// 300 ms below are thirty ticks whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn with_catch_up_hours_0_a_slot_jumped_over_while_not_watching_is_not_caught_up() {
    let setup = &Setup::new("catch_up_hours = 0", "").await;
    setup
        .around_the_slot(|clock| async move {
            // The machine slept through the slot: its clock jumps a day ahead.
            clock.set(utc("2026-11-24T05:00:00Z"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        })
        .await;
    assert!(setup.last_run("manager-weekly").is_none());
    assert_eq!(setup.proxy.requests(), 0);
}

/// A job template that makes Typst panic (an admin's template meeting a bug in Typst).
const PANICKING_TEMPLATE: &str =
    "#figure({\n  show: pad.with(50%)\n  show: block.with(inset: 1cm)\n  grid(h(1fr), stack())\n})\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_job_fails_that_job_only_and_the_admin_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("panics.typ");
    std::fs::write(&template, PANICKING_TEMPLATE).unwrap();
    let extra = format!(
        "\n[[job]]\nname = \"panicking-weekly\"\nreport = \"manager\"\nschedule = \"0 8 * * MON\"\nperiod = \"previous-week\"\ntemplate = \"{}\"\n",
        template.display()
    );
    let setup = &Setup::new("max_attempts = 2\nretry_initial_secs = 0\nretry_max_secs = 0", &extra).await;
    setup
        .around_the_slot(|clock| async move {
            clock.set(utc(SLOT));
            eventually("the panicking job recorded as failed", 60, || {
                setup.last_run("panicking-weekly").is_some_and(|r| r.outcome == RunOutcome::Failed)
            })
            .await;
            eventually("Ivan's scorecard from the other job", 60, || setup.to(IVAN).len() == 1).await;
            eventually("the admin told", 10, || setup.to(ADMIN).len() == 1).await;
        })
        .await;
    let failed = setup.last_run("panicking-weekly").unwrap();
    let detail = failed.detail.unwrap_or_default();
    assert!(detail.contains("panicked") && detail.contains("Иван Петров"), "the run names the report: {detail}");
    assert_eq!(failed.attempts, 1, "a bug is not retried like an outage");
    let text = body(&setup.to(ADMIN)[0]);
    assert!(text.contains("panicking-weekly") && text.contains("panicked"), "{text}");
    assert_eq!(setup.last_run("manager-weekly").unwrap().outcome, RunOutcome::Ok);
}
