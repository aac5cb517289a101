//! The daemon as an admin relies on it: firing on its schedule in the configured time zone
//! (across both DST nights), catching up a slot missed while down (once, and not beyond the
//! catch-up horizon), sending in the next retry round what an SMTP outage held back, never
//! letting a broken job stop the others, and stopping cleanly: a shutdown cuts a retry wait
//! short but finishes the delivery in flight. Last, the real binary: exit 0 on SIGTERM, 3
//! on SIGHUP, and no second instance on one state directory.
//!
//! The loop runs in-process over a stand-in pipeline ([`Runner`]) that hands fixed
//! scorecards to the real delivery; the wall clock is a `FixedClock` the test moves. The
//! daemon over the real pipeline, with CRM faults: `daemon_faults.rs`. Delivery itself:
//! `delivery.rs`; crashes: `daemon_crash.rs`; the systemd unit: `install.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use salespulse::config::{Config, JobConfig};
use salespulse::daemon::{self, JobRunner, RunOptions};
use salespulse::domain::Period;
use salespulse::mail::SmtpMailer;
use salespulse::pipeline::deliver::{self, DeliverySummary};
use salespulse::schedule::{Clock, FixedClock};
use salespulse::store::{DeliveryState, RunOutcome, Store, StoreError};

use crate::support::bin::BIN;
use crate::support::delivery::{MANAGERS, binary_config, config, key, reports, to};
use crate::support::smtp::{SmtpOptions, TestSmtp};

/// The pipeline stand-in: renders nothing, hands the fixture reports to the real delivery.
/// What the real pipeline does when the CRM fails is tested with the real one, through the
/// fault proxy (`daemon_faults.rs`).
struct Runner {
    config: Arc<Config>,
    store: Store,
    mailer: SmtpMailer,
    /// (job, period, slot) of every run.
    runs: Mutex<Vec<(String, String, String)>>,
    /// Holds each run until the test lets it go.
    gate: Option<Arc<tokio::sync::Semaphore>>,
    started: Arc<tokio::sync::Notify>,
}

impl Runner {
    fn new(config: &Arc<Config>, smtp: &TestSmtp) -> Runner {
        Runner {
            config: config.clone(),
            store: Store::open(&config.state_dir).unwrap(),
            mailer: smtp.mailer(),
            runs: Mutex::new(Vec::new()),
            gate: None,
            started: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

impl JobRunner for &Runner {
    type Mailer = SmtpMailer;

    fn mailer(&self) -> &SmtpMailer {
        &self.mailer
    }

    async fn run_job(&self, job: &JobConfig, slot: DateTime<Tz>, period: &Period) -> anyhow::Result<DeliverySummary> {
        self.runs.lock().unwrap().push((job.name.clone(), period.label(), slot.to_rfc3339()));
        self.started.notify_one();
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if job.name == "broken-weekly" {
            // What the pipeline returns for an admin's template with a mistake in it.
            return Err(salespulse::render::RenderError::Template {
                template: "/etc/salespulse/broken.typ".into(),
                line: 3,
                column: 4,
                message: "dictionary does not contain key \"nmae\"".into(),
            }
            .into());
        }
        let reports = if job.name == "manager-weekly" { reports(1) } else { Vec::new() };
        Ok(deliver::deliver(&self.store, &self.mailer, &self.config, job, period, &reports, &Default::default())
            .await?)
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn test_options() -> RunOptions {
    RunOptions { tick: Duration::from_millis(10), notify_systemd: false, retry_every: Duration::from_secs(3600) }
}

/// A daemon run in a test, to be awaited beside the test's own steps.
type DaemonRun<'a> = Pin<Box<dyn Future<Output = Result<(), daemon::DaemonError>> + 'a>>;

/// The daemon loop over `runner` with [`test_options`], stopped when the returned sender
/// fires. Boxed: a test that runs two daemons would overflow its thread's stack.
fn start_daemon<'a>(
    config: &Arc<Config>,
    clock: Arc<dyn Clock>,
    runner: &'a Runner,
) -> (DaemonRun<'a>, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        stopped.await.ok();
    };
    (Box::pin(daemon::run_with(config.clone(), clock, shutdown, runner, test_options())), stop)
}

/// Waits (a few seconds at most) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The weekly job only, so the monthly one does not fire in these windows.
fn weekly_only(mut config: Config) -> Arc<Config> {
    config.jobs.retain(|j| j.name == "manager-weekly");
    Arc::new(config)
}

#[tokio::test]
async fn the_daemon_fires_on_monday_at_eight_moscow_time_and_stops_cleanly() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = weekly_only(config(&smtp, state.path(), 3));
    let clock = Arc::new(FixedClock::new(utc("2026-11-23T04:59:00Z"))); // Monday 07:59 MSK
    let runner = Runner::new(&config, &smtp);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();

    let daemon = daemon::run_with(
        config.clone(),
        clock.clone() as Arc<dyn Clock>,
        async move {
            let _ = stopped.await;
            "stopped"
        },
        &runner,
        test_options(),
    );
    let test = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(runner.runs.lock().unwrap().is_empty(), "nothing before the slot");
        // A second daemon on the same state directory refuses to start.
        let second = daemon::run_with(
            config.clone(),
            clock.clone() as Arc<dyn Clock>,
            std::future::pending::<()>(),
            &runner,
            test_options(),
        )
        .await
        .unwrap_err();
        assert!(matches!(second, daemon::DaemonError::Store(StoreError::Locked { .. })), "{second}");

        clock.set(utc("2026-11-23T05:00:00Z"));
        eventually("three scorecards sent", || smtp.received().len() == 3).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, test);
    assert_eq!(result.unwrap(), "stopped");

    let runs = runner.runs.lock().unwrap().clone();
    assert_eq!(runs, [("manager-weekly".into(), "2026-W47".into(), "2026-11-23T08:00:00+03:00".into())]);
    let last = runner.store.last_run("manager-weekly").unwrap().unwrap();
    assert_eq!((last.outcome, last.sent, last.period.as_str()), (RunOutcome::Ok, 3, "2026-W47"));
    assert_eq!(smtp.received().len(), 3, "once, not once per tick");
}

#[tokio::test]
async fn a_slot_missed_while_down_is_caught_up_once_at_start() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = weekly_only(config(&smtp, state.path(), 3));
    let runner = Runner::new(&config, &smtp);
    // The previous Monday ran; this Monday's 08:00 passed while the machine was off.
    let id = runner.store.start_run("manager-weekly", utc("2026-11-16T05:00:00Z"), "2026-W46").unwrap();
    runner.store.finish_run(id, 3, 0, RunOutcome::Ok, None).unwrap();
    let clock = Arc::new(FixedClock::new(utc("2026-11-24T09:00:00Z"))); // Tuesday noon

    for _ in 0..2 {
        // Started twice (a restart): the catch-up happens once.
        let (daemon, stop) = start_daemon(&config, clock.clone(), &runner);
        let test = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.send(()).unwrap();
        };
        let (result, ()) = tokio::join!(daemon, test);
        result.unwrap();
    }
    let runs = runner.runs.lock().unwrap().clone();
    assert_eq!(runs, [("manager-weekly".into(), "2026-W47".into(), "2026-11-23T08:00:00+03:00".into())]);
    assert_eq!(smtp.received().len(), 3);
}

// Nothing is sent here, so the daemon's ticks can run on tokio's paused clock: the 200 ms
// below are twenty ticks whatever the machine's load. (The tests that deliver talk to the
// SMTP server's own threads, and a paused clock would jump ahead while they answer.)
#[tokio::test(start_paused = true)]
async fn a_slot_older_than_the_catch_up_horizon_is_not_run() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let mut c = config(&smtp, state.path(), 3);
    c.daemon.catch_up_hours = 24;
    let config = weekly_only(c);
    let runner = Runner::new(&config, &smtp);
    let id = runner.store.start_run("manager-weekly", utc("2026-11-16T05:00:00Z"), "2026-W46").unwrap();
    runner.store.finish_run(id, 3, 0, RunOutcome::Ok, None).unwrap();
    // Thursday: Monday's slot is 3 days old.
    let clock = Arc::new(FixedClock::new(utc("2026-11-26T09:00:00Z")));
    let (daemon, stop) = start_daemon(&config, clock, &runner);
    let test = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();
    assert!(runner.runs.lock().unwrap().is_empty());
    assert!(smtp.received().is_empty());
}

#[tokio::test]
async fn an_smtp_outage_longer_than_the_retries_is_sent_in_the_next_retry_round() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = weekly_only(config(&smtp, state.path(), 2));
    let runner = Runner::new(&config, &smtp);
    let clock = Arc::new(FixedClock::new(utc("2026-11-23T04:59:59Z")));
    smtp.set_down(true);
    let (daemon, stop) = start_daemon(&config, clock.clone(), &runner);
    let test = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        clock.set(utc("2026-11-23T05:00:00Z"));
        eventually("the run recorded as partial", || {
            runner.store.last_run("manager-weekly").unwrap().is_some_and(|r| r.outcome == RunOutcome::Partial)
        })
        .await;
        assert!(smtp.received().is_empty());
        smtp.set_down(false);
        // Half an hour later: not yet.
        clock.set(utc("2026-11-23T05:30:00Z"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(smtp.received().is_empty());
        // An hour after start-up: the retry round sends them.
        clock.set(utc("2026-11-23T06:00:00Z"));
        eventually("three scorecards sent", || to(&smtp.received(), "ivan@example.ru").len() == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();
    for (id, _, address) in MANAGERS {
        assert_eq!(to(&smtp.received(), address).len(), 1, "{address}");
        assert_eq!(runner.store.delivery(&key(id)).unwrap().unwrap().state, DeliveryState::Sent);
    }
    assert_eq!(runner.runs.lock().unwrap().len(), 1, "rows are resent from the ledger, the job is not rerun");
}

#[tokio::test]
async fn shutdown_cuts_a_retry_wait_short_and_the_next_start_sends_the_row() {
    let smtp = TestSmtp::start(SmtpOptions { refuse_data: 1000, ..SmtpOptions::default() });
    let state = tempfile::tempdir().unwrap();
    let mut c = config(&smtp, state.path(), 5);
    // A real wait between attempts: shutdown must not sit it out.
    c.daemon.retry_initial_secs = 30;
    c.daemon.retry_max_secs = 30;
    let config = weekly_only(c);
    let runner = Runner::new(&config, &smtp);
    let clock = Arc::new(FixedClock::new(utc("2026-11-23T04:59:59Z")));
    let (daemon, stop) = start_daemon(&config, clock.clone(), &runner);
    let test = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        clock.set(utc("2026-11-23T05:00:00Z"));
        eventually("a first attempt refused with 451", || smtp.data_attempts() >= 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
    };
    let begun = std::time::Instant::now();
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();
    assert!(begun.elapsed() < Duration::from_secs(10), "stopped after {:?}", begun.elapsed());
    assert!(smtp.received().is_empty());
    let ivan = runner.store.delivery(&key("17")).unwrap().unwrap();
    assert_eq!((ivan.state, ivan.permanent), (DeliveryState::Failed, false), "{ivan:?}");

    // The server recovers; the next start-up sends every row once.
    smtp.refuse_next(0);
    let (daemon, stop) = start_daemon(&config, clock.clone(), &runner);
    let test = async {
        eventually("every scorecard sent after the restart", || {
            MANAGERS.iter().all(|(_, _, a)| to(&smtp.received(), a).len() == 1)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();
    for (id, _, address) in MANAGERS {
        assert_eq!(to(&smtp.received(), address).len(), 1, "{address}");
        assert_eq!(runner.store.delivery(&key(id)).unwrap().unwrap().state, DeliveryState::Sent);
    }
}

/// Runs a daemon for Berlin with a daily 02:30 job while the clock steps through `steps`;
/// returns the slots it ran.
async fn daily_0230_in_berlin(steps: &[&str]) -> Vec<String> {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let mut c = config(&smtp, state.path(), 3);
    c.timezone = chrono_tz::Europe::Berlin;
    c.jobs.retain(|j| j.name == "manager-weekly");
    c.jobs[0].schedule = "30 2 * * *".into();
    c.jobs[0].cron = salespulse::config::parse_cron("30 2 * * *").unwrap();
    let config = Arc::new(c);
    let runner = Runner::new(&config, &smtp);
    let clock = Arc::new(FixedClock::new(utc(steps[0])));
    let (daemon, stop) = start_daemon(&config, clock.clone(), &runner);
    let test = async {
        for step in &steps[1..] {
            tokio::time::sleep(Duration::from_millis(60)).await;
            clock.set(utc(step));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();
    runner.runs.lock().unwrap().iter().map(|r| r.2.clone()).collect()
}

#[tokio::test]
async fn on_the_spring_forward_night_a_0230_job_runs_once_at_three() {
    // 2026-03-29 in Berlin: 02:00 CET is followed by 03:00 CEST.
    let runs = daily_0230_in_berlin(&[
        "2026-03-29T00:50:00Z", // 01:50 CET
        "2026-03-29T00:59:59Z", // 01:59:59 CET
        "2026-03-29T01:00:00Z", // 03:00 CEST
        "2026-03-29T01:30:00Z", // 03:30 CEST
        "2026-03-29T02:30:00Z", // 04:30 CEST
    ])
    .await;
    assert_eq!(runs, ["2026-03-29T03:00:00+02:00"]);
}

#[tokio::test]
async fn on_the_fall_back_night_a_0230_job_runs_once_at_the_first_0230() {
    // 2026-10-25 in Berlin: 03:00 CEST is followed by 02:00 CET; 02:30 happens twice.
    let runs = daily_0230_in_berlin(&[
        "2026-10-25T00:00:00Z", // 02:00 CEST
        "2026-10-25T00:30:00Z", // 02:30 CEST
        "2026-10-25T01:00:00Z", // 02:00 CET
        "2026-10-25T01:30:00Z", // 02:30 CET, the second time
        "2026-10-25T03:00:00Z", // 04:00 CET
    ])
    .await;
    assert_eq!(runs, ["2026-10-25T02:30:00+02:00"]);
}

#[tokio::test]
async fn shutdown_during_a_run_finishes_and_records_the_delivery_in_flight() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = weekly_only(config(&smtp, state.path(), 3));
    let mut runner = Runner::new(&config, &smtp);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    runner.gate = Some(gate.clone());
    let started = runner.started.clone();
    // Just before the slot (a fresh install does not catch up a slot already past).
    let clock = Arc::new(FixedClock::new(utc("2026-11-23T04:59:59Z")));
    let (daemon, stop) = start_daemon(&config, clock.clone(), &runner);
    let test = async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        clock.set(utc("2026-11-23T05:00:00Z"));
        started.notified().await;
        // SIGTERM arrives while the job is in flight.
        stop.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(smtp.received().is_empty());
        gate.add_permits(1);
    };
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();
    assert_eq!(smtp.received().len(), 3, "the delivery in flight was finished");
    let last = runner.store.last_run("manager-weekly").unwrap().unwrap();
    assert_eq!((last.outcome, last.sent), (RunOutcome::Ok, 3));
}

#[tokio::test]
async fn a_job_with_a_broken_template_never_stops_the_other_jobs() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let mut config = config(&smtp, state.path(), 3);
    config.jobs.retain(|j| j.name == "manager-weekly");
    let mut broken = config.jobs[0].clone();
    broken.name = "broken-weekly".into();
    broken.template = Some("/etc/salespulse/broken.typ".into());
    config.jobs.insert(0, broken); // fires first at the same slot
    let config = Arc::new(config);
    let clock = Arc::new(FixedClock::new(utc("2026-11-23T04:59:00Z")));
    let runner = Runner::new(&config, &smtp);
    let (daemon, stop) = start_daemon(&config, clock.clone(), &runner);
    let test = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.set(utc("2026-11-23T05:00:00Z"));
        eventually("the good job's three scorecards", || smtp.received().len() == 3).await;
        eventually("the broken job's run recorded", || {
            runner.store.last_run("broken-weekly").unwrap().is_some_and(|r| r.outcome == RunOutcome::Failed)
        })
        .await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();
    let failed = runner.store.last_run("broken-weekly").unwrap().unwrap();
    let detail = failed.detail.unwrap_or_default();
    assert!(detail.contains("broken.typ at line 3, column 4"), "the run says where the template is wrong: {detail}");
    let good = runner.store.last_run("manager-weekly").unwrap().unwrap();
    assert_eq!((good.outcome, good.sent), (RunOutcome::Ok, 3));
    let broken_runs = runner.runs.lock().unwrap().iter().filter(|r| r.0 == "broken-weekly").count();
    assert_eq!(broken_runs, 1, "a template error is not retried like an outage");
}

// ---- the real binary: signals and a second instance ----

/// Waits until the child's standard error contains `needle`; returns what it read.
fn wait_for_log(stderr: &mut std::process::ChildStderr, needle: &str) -> String {
    use std::io::Read;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "the daemon exited before logging {needle:?}:\n{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

#[test]
fn the_daemon_exits_0_on_sigterm_and_3_on_sighup_and_refuses_a_second_instance() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&smtp, dir.path());
    let daemon = || {
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("run")
            .env("SALESPULSE_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    let mut first = daemon();
    wait_for_log(first.stderr.as_mut().unwrap(), "Daemon started.");
    let second = std::process::Command::new(BIN).arg("--config").arg(&config).arg("run").output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(message.contains("another salespulse daemon is already running"), "{message}");

    signal(first.id(), "TERM");
    assert_eq!(first.wait().unwrap().code(), Some(0));

    let mut again = daemon();
    wait_for_log(again.stderr.as_mut().unwrap(), "Daemon started.");
    signal(again.id(), "HUP");
    assert_eq!(again.wait().unwrap().code(), Some(i32::from(daemon::EXIT_RESTART)));
}
