//! The daemon (`salespulse run`): waits for the next slot of any job, runs the job through a
//! [`JobRunner`] (the pipeline: fetch, render, deliver), records the run, and stops cleanly.
//!
//! At start-up it takes the state directory's lock (a second daemon refuses to start),
//! sends the ledger rows a crash left unsent (from the stored PDFs), and catches up each
//! job's latest slot missed while it was down, once, if it is within `catch_up_hours` (a
//! slot whose run started but never finished counts as missed). A job without any recorded
//! run is not caught up: a fresh install starts with the next slot rather than mailing last
//! week's report the moment it is switched on.
//!
//! Alerts (`[[alert]]`) run on their own schedules beside the jobs (`daemon::alerts`): an
//! alert is news only until its next slot, so only the latest missed slot is caught up, if
//! within `catch_up_hours`, and alert messages left unsent are given up once stale.
//!
//! Time: slots come from `schedule` (DST-correct); the loop sleeps in short ticks and asks
//! the [`Clock`] again after each, so a suspended machine or a clock set forward runs what
//! fell due (a long-overdue slot only if within the catch-up horizon, and only the latest
//! one per job), and a clock set back simply waits.
//!
//! Shutdown is an argument: when the `shutdown` future completes, a job in flight is
//! finished (its deliveries sent and recorded) and the daemon returns. SIGHUP is not a
//! reload in place: [`stop_signal`] reports it as [`StopReason::Restart`], the daemon stops
//! as for SIGTERM, the process exits with [`EXIT_RESTART`], and the unit's
//! `RestartForceExitStatus` has systemd start it again with the new config. A restart is
//! always safe: the ledger keeps every report exactly once.
//!
//! A slot reached while the daemon runs is on time, whatever `catch_up_hours` says: the loop
//! measures by the monotonic clock how long it has been watching since it last read the wall
//! clock, and only a slot the wall clock jumped over (a suspend, the clock set forward) is
//! held to the catch-up horizon.
//!
//! Transient job failures (the CRM down, an SMTP outage) are retried with `[daemon]`
//! backoff; a job error is transient when its chain holds a transient `CrmError` or
//! `MailError` (looked at through a `PipelineError`), or a render worker that was killed. Each attempt is recorded on the run
//! (`status` shows it). An outage that outlasts those retries gets a second chance every
//! hour ([`RunOptions::retry_every`]): rows that failed transiently are sent again and a
//! failed run is run again, until the job's next slot (or `catch_up_hours` after the slot,
//! if later). A run that fails in the end tells the admin, once per job and period. A panic
//! in a job is caught and is that job's failure: the daemon goes on with the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tracing::{error, info, warn};

use crate::alert::AlertSummary;
use crate::config::{AlertConfig, Config, JobConfig};
use crate::crm::CrmError;
use crate::domain::Period;
use crate::mail::AnyMailer;
use crate::mail::{JobFailure, MailError, Mailer};
use crate::pipeline::deliver::{self, Backoff, DeliverOptions, DeliverySummary};
use crate::pipeline::{PipelineError, PipelineRunner, RenderRequest};
use crate::schedule::{self, Clock};
use crate::store::{RunOutcome, Store, StoreError};

mod alerts;

/// The exit status that asks systemd to start the daemon again (SIGHUP).
pub const EXIT_RESTART: u8 = 3;

/// Runs one job for one slot: the pipeline behind the daemon.
pub trait JobRunner: Send + Sync {
    /// The mailer the pipeline sends with; the daemon uses it to finish rows a crash left
    /// unsent.
    type Mailer: Mailer + Send + Sync;

    fn mailer(&self) -> &Self::Mailer;

    /// Fetches, renders and delivers `job` for `period`, stamped with `slot`. Keep typed
    /// errors in the chain (`anyhow::Error::from(crm_error)`, `.context(..)`), so the daemon
    /// can tell a transient failure from a permanent one.
    fn run_job(
        &self,
        job: &JobConfig,
        slot: DateTime<Tz>,
        period: &Period,
    ) -> impl Future<Output = Result<DeliverySummary, anyhow::Error>> + Send;

    /// Runs one slot of an alert: fetch, evaluate, send through the alert ledger. A runner
    /// without alerts (a test's stand-in) sends nothing.
    fn run_alert(
        &self,
        alert: &AlertConfig,
        slot: DateTime<Tz>,
    ) -> impl Future<Output = Result<AlertSummary, anyhow::Error>> + Send {
        let _ = (alert, slot);
        async { Ok(AlertSummary::default()) }
    }
}

/// The daemon's runner in production: `send`'s pipeline, with the defaults of a scheduled
/// run (all managers, the job's template, no resend).
impl JobRunner for PipelineRunner {
    type Mailer = AnyMailer;

    fn mailer(&self) -> &AnyMailer {
        PipelineRunner::mailer(self)
    }

    async fn run_job(&self, job: &JobConfig, slot: DateTime<Tz>, period: &Period) -> anyhow::Result<DeliverySummary> {
        self.render_and_deliver(job, period, slot, &RenderRequest::default(), DeliverOptions::default()).await
    }

    async fn run_alert(&self, alert: &AlertConfig, slot: DateTime<Tz>) -> anyhow::Result<AlertSummary> {
        crate::alert::run(self.builder(), self.store(), self.mailer(), alert, slot).await
    }
}

/// Why the daemon should stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM or SIGINT: stop for good (exit 0).
    Terminate,
    /// SIGHUP: stop so that systemd starts a new process with the new config.
    Restart,
}

impl StopReason {
    pub fn exit_code(self) -> u8 {
        match self {
            StopReason::Terminate => 0,
            StopReason::Restart => EXIT_RESTART,
        }
    }
}

/// Completes on SIGTERM, SIGINT or SIGHUP, saying which kind of stop was asked for. The
/// handlers are installed when this is called (inside a tokio runtime), not when the future
/// is first polled, so a signal arriving during start-up is not lost to the default action.
pub fn stop_signal() -> impl Future<Output = StopReason> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    let hup = signal(SignalKind::hangup());
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (term, int, hup) else {
            // No signal handling (not expected on Unix): Ctrl-C still works.
            let _ = tokio::signal::ctrl_c().await;
            return StopReason::Terminate;
        };
        tokio::select! {
            _ = term.recv() => StopReason::Terminate,
            _ = int.recv() => StopReason::Terminate,
            _ = hup.recv() => StopReason::Restart,
        }
    }
}

/// A failure that stops the daemon (a job's failure does not).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tuning that tests change; [`run`] uses the defaults.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// How long the loop sleeps before asking the clock again.
    pub tick: Duration,
    /// Tell systemd about readiness and stopping (`sd_notify`).
    pub notify_systemd: bool,
    /// How often deliveries that failed transiently, and job runs that failed, are tried
    /// again (while their slot is within `catch_up_hours`).
    pub retry_every: Duration,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions { tick: Duration::from_secs(20), notify_systemd: true, retry_every: Duration::from_secs(3600) }
    }
}

/// The daemon: runs until `shutdown` completes, then returns its output.
pub async fn run<T>(
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = T>,
    runner: impl JobRunner,
) -> Result<T, DaemonError> {
    // On the heap: the loop's state holds a whole pipeline run, too large for a stack.
    Box::pin(run_with(config, clock, shutdown, runner, RunOptions::default())).await
}

/// [`run`] with explicit [`RunOptions`].
pub async fn run_with<T>(
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = T>,
    runner: impl JobRunner,
    options: RunOptions,
) -> Result<T, DaemonError> {
    let _lock = Store::lock_daemon(&config.state_dir)?;
    let store = Store::open(&config.state_dir)?;
    let mut daemon = Daemon { config: &config, clock: &*clock, store: &store, runner: &runner, options };
    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = Shutdown { future: shutdown, output: None, stop: tokio::sync::watch::Sender::new(false) };

    // A first look also lets a shutdown future that sets something up on its first poll do so.
    shutdown.requested();
    notify(options, &[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("starting: catching up")]);
    info!(state_dir = %config.state_dir.display(), jobs = config.jobs.len(), "Daemon started.");

    daemon.finish_unsent(None, &mut shutdown).await?;
    let started = clock.now();
    daemon.finish_unsent_alerts(started, &mut shutdown).await?;
    // Each job's slots are handled up to and including this instant.
    let mut done: Vec<DateTime<Utc>> = Vec::with_capacity(config.jobs.len());
    for job in &config.jobs {
        if shutdown.requested() {
            break;
        }
        daemon.catch_up(job, started, &mut shutdown).await?;
        done.push(started);
    }
    // The same for each alert.
    let mut alerts_done: Vec<DateTime<Utc>> = Vec::with_capacity(config.alerts.len());
    for a in &config.alerts {
        if shutdown.requested() {
            break;
        }
        daemon.catch_up_alert(a, started, &mut shutdown).await?;
        alerts_done.push(started);
    }

    let retry_every = chrono::Duration::from_std(options.retry_every).unwrap_or(chrono::Duration::hours(1));
    let mut next_retry = started + retry_every;
    // When the loop last read the clock, by the monotonic clock: a slot that fell due since
    // then, no longer ago than that, was reached while the daemon was watching.
    let mut last_look = std::time::Instant::now();
    while !shutdown.requested() {
        let now = clock.now();
        let watched = last_look.elapsed() + options.tick;
        last_look = std::time::Instant::now();
        if now >= next_retry {
            next_retry = now + retry_every;
            daemon.retry_failed(now, &mut shutdown).await?;
            continue;
        }
        let next = config
            .jobs
            .iter()
            .map(|j| &j.cron)
            .zip(&done)
            .chain(config.alerts.iter().map(|a| &a.cron).zip(&alerts_done))
            .filter_map(|(cron, after)| schedule::next_slot(cron, config.timezone, *after))
            .min();
        if let Some(next) = next {
            notify(options, &[sd_notify::NotifyState::Status(&format!("waiting for {}", next.to_rfc3339()))]);
        }
        let due = next.is_some_and(|n| n.with_timezone(&Utc) <= now);
        if !due {
            // Sleep a tick (or until the slot, if sooner by the monotonic clock) and look
            // at the wall clock again.
            let wait = next
                .and_then(|n| (n.with_timezone(&Utc) - now).to_std().ok())
                .map_or(options.tick, |d| d.min(options.tick));
            shutdown.sleep(wait).await;
            continue;
        }
        for (job, after) in config.jobs.iter().zip(done.iter_mut()) {
            if shutdown.requested() {
                break;
            }
            let missed = schedule::slots_between(&job.cron, config.timezone, *after, now);
            *after = now;
            let Some(slot) = missed.last().cloned() else { continue };
            if missed.len() > 1 {
                warn!(job = %job.name, skipped = missed.len() - 1, slot = %slot.to_rfc3339(),
                    "Several slots fell due at once (clock change or suspend); running the latest only.");
            }
            // A slot reached while running is on time, whatever catch_up_hours says; one the
            // wall clock jumped over (a suspend, the clock set forward) was missed while the
            // daemon was not watching, and is caught up only within the horizon.
            let late = now - slot.with_timezone(&Utc);
            let on_time = late.to_std().map_or(true, |late| late <= watched);
            if !on_time && late > daemon.horizon() {
                warn!(job = %job.name, slot = %slot.to_rfc3339(), catch_up_hours = config.daemon.catch_up_hours,
                    "Slot passed while the daemon was not watching (suspend or clock change) and is older than catch_up_hours; not run.");
                continue;
            }
            daemon.run_slot(job, slot, &mut shutdown).await?;
        }
        for (a, after) in config.alerts.iter().zip(alerts_done.iter_mut()) {
            if shutdown.requested() {
                break;
            }
            let missed = schedule::slots_between(&a.cron, config.timezone, *after, now);
            *after = now;
            let Some(slot) = missed.last().cloned() else { continue };
            if missed.len() > 1 {
                warn!(alert = %a.name, skipped = missed.len() - 1, slot = %slot.to_rfc3339(),
                    "Several alert slots fell due at once (clock change or suspend); the older ones are stale, running the latest only.");
            }
            let late = now - slot.with_timezone(&Utc);
            let on_time = late.to_std().map_or(true, |late| late <= watched);
            if !on_time && late > daemon.horizon() {
                warn!(alert = %a.name, slot = %slot.to_rfc3339(), catch_up_hours = config.daemon.catch_up_hours,
                    "Alert slot passed while the daemon was not watching and is older than catch_up_hours; stale, not run.");
                continue;
            }
            daemon.run_alert_slot(a, slot, &mut shutdown).await?;
        }
    }

    notify(options, &[sd_notify::NotifyState::Stopping]);
    info!("Daemon stopped.");
    Ok(shutdown.take())
}

/// The shutdown future, polled without being lost: once it completes, its output is kept.
struct Shutdown<'a, F: Future> {
    future: std::pin::Pin<&'a mut F>,
    output: Option<F::Output>,
    /// Tells deliveries in flight to stop waiting between retries.
    stop: tokio::sync::watch::Sender<bool>,
}

impl<F: Future> Shutdown<'_, F> {
    fn requested(&mut self) -> bool {
        if self.output.is_none() {
            // A non-blocking look: completes only if the future is ready now.
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            if let std::task::Poll::Ready(v) = self.future.as_mut().poll(&mut cx) {
                self.output = Some(v);
                self.stop.send_replace(true);
            }
        }
        self.output.is_some()
    }

    /// Sleeps for `d` or until shutdown, whichever comes first.
    async fn sleep(&mut self, d: Duration) {
        if self.output.is_some() {
            return;
        }
        tokio::select! {
            v = self.future.as_mut() => {
                self.output = Some(v);
                self.stop.send_replace(true);
            }
            _ = tokio::time::sleep(d) => {}
        }
    }

    /// Runs `work` to completion, noting a shutdown asked for meanwhile without cancelling
    /// the work: the delivery in flight is finished and recorded.
    async fn finish<R>(&mut self, work: impl Future<Output = R>) -> R {
        // Boxed: a pipeline run's state is large, and debug builds give each poll a deep stack.
        let mut work = Box::pin(deliver::with_stop(self.stop.subscribe(), work));
        loop {
            if self.output.is_some() {
                return work.await;
            }
            tokio::select! {
                biased;
                r = work.as_mut() => return r,
                v = self.future.as_mut() => {
                    info!("Shutdown requested; finishing the delivery in flight.");
                    self.output = Some(v);
                    self.stop.send_replace(true);
                }
            }
        }
    }

    fn take(&mut self) -> F::Output {
        self.output.take().expect("the loop ends only after shutdown completed")
    }
}

struct Daemon<'a, R: JobRunner> {
    config: &'a Config,
    clock: &'a dyn Clock,
    store: &'a Store,
    runner: &'a R,
    options: RunOptions,
}

impl<R: JobRunner> Daemon<'_, R> {
    /// Sends the rows a crash (or an earlier run's transient failures) left unsent; with
    /// `now`, only those whose period's slot is within the catch-up horizon.
    async fn finish_unsent<F: Future>(
        &mut self,
        now: Option<DateTime<Utc>>,
        shutdown: &mut Shutdown<'_, F>,
    ) -> Result<(), DaemonError> {
        for (job_name, label) in deliver::unsent_periods(self.store)? {
            if shutdown.requested() {
                return Ok(());
            }
            let Some(job) = self.config.job(&job_name) else {
                warn!(job = %job_name, period = %label, "Unsent reports of a job no longer configured; left as they are.");
                continue;
            };
            let Ok(period) = Period::parse(&label, self.config.timezone) else {
                warn!(job = %job_name, period = %label, "Unsent reports with an unreadable period; left as they are.");
                continue;
            };
            if let Some(now) = now {
                let slot = schedule::slot_for_period(&job.cron, self.config.timezone, &period);
                if self.retry_until(job, slot.with_timezone(&Utc)) < now {
                    continue;
                }
            }
            info!(job = %job_name, period = %label, "Finishing deliveries left unsent.");
            let work = deliver::resume(self.store, self.runner.mailer(), self.config, job, &period);
            match shutdown.finish(work).await {
                Ok(s) => info!(job = %job_name, period = %label, sent = s.sent, failed = s.failed.len(),
                    "Unsent deliveries finished."),
                Err(e) => error!(job = %job_name, period = %label, error = %e, "Unsent deliveries not finished."),
            }
        }
        Ok(())
    }

    /// The periodic second chance: rows that failed transiently are sent again, and a job
    /// whose last run failed (the CRM down longer than the retries lasted) runs again, until
    /// [`Daemon::retry_until`].
    async fn retry_failed<F: Future>(
        &mut self,
        now: DateTime<Utc>,
        shutdown: &mut Shutdown<'_, F>,
    ) -> Result<(), DaemonError> {
        self.finish_unsent(Some(now), shutdown).await?;
        self.finish_unsent_alerts(now, shutdown).await?;
        for a in &self.config.alerts {
            if shutdown.requested() {
                return Ok(());
            }
            let Some(last) = self.store.last_run(&a.name)? else { continue };
            let slot = last.slot.with_timezone(&self.config.timezone);
            if last.outcome != RunOutcome::Failed || self.alert_stale(a, slot, now) {
                continue;
            }
            info!(alert = %a.name, slot = %last.period, "Running a failed alert again.");
            self.run_alert_slot(a, slot, shutdown).await?;
        }
        for job in &self.config.jobs {
            if shutdown.requested() {
                return Ok(());
            }
            let Some(last) = self.store.last_run(&job.name)? else { continue };
            if last.outcome != RunOutcome::Failed || self.retry_until(job, last.slot) < now {
                continue;
            }
            info!(job = %job.name, period = %last.period, "Running a failed job again.");
            self.run_slot(job, last.slot.with_timezone(&self.config.timezone), shutdown).await?;
        }
        Ok(())
    }

    fn horizon(&self) -> chrono::Duration {
        self.config.daemon.catch_up_horizon()
    }

    /// Until when a slot's failed run, or its rows that failed transiently, are tried again:
    /// until the job's next slot, or for `catch_up_hours` after the slot if that is longer.
    fn retry_until(&self, job: &JobConfig, slot: DateTime<Utc>) -> DateTime<Utc> {
        let by_horizon = slot.checked_add_signed(self.horizon()).unwrap_or(DateTime::<Utc>::MAX_UTC);
        match schedule::next_slot(&job.cron, self.config.timezone, slot) {
            Some(next) => by_horizon.max(next.with_timezone(&Utc)),
            None => by_horizon,
        }
    }

    /// Runs a job's latest slot at or before `now` if it was missed (see the module doc).
    async fn catch_up<F: Future>(
        &mut self,
        job: &JobConfig,
        now: DateTime<Utc>,
        shutdown: &mut Shutdown<'_, F>,
    ) -> Result<(), DaemonError> {
        let Some(last) = self.store.last_run(&job.name)? else {
            info!(job = %job.name, "No earlier run recorded; nothing to catch up.");
            return Ok(());
        };
        let Some(slot) = schedule::latest_slot(&job.cron, self.config.timezone, now) else { return Ok(()) };
        let slot_utc = slot.with_timezone(&Utc);
        let finished = last.outcome != RunOutcome::Running && last.outcome != RunOutcome::Failed;
        if slot_utc < last.slot || (slot_utc == last.slot && finished) {
            return Ok(());
        }
        if now - slot_utc > self.horizon() {
            warn!(job = %job.name, slot = %slot.to_rfc3339(), catch_up_hours = self.config.daemon.catch_up_hours,
                "Missed slot is older than catch_up_hours; not run.");
            return Ok(());
        }
        info!(job = %job.name, slot = %slot.to_rfc3339(), "Catching up a missed slot.");
        self.run_slot(job, slot, shutdown).await
    }

    /// Runs one slot of a job, retrying transient failures, and records the run.
    async fn run_slot<F: Future>(
        &mut self,
        job: &JobConfig,
        slot: DateTime<Tz>,
        shutdown: &mut Shutdown<'_, F>,
    ) -> Result<(), DaemonError> {
        let period = schedule::period_for_slot(job.period, slot);
        let label = period.label();
        let run_id = self.store.start_run(&job.name, slot.with_timezone(&Utc), &label)?;
        notify(self.options, &[sd_notify::NotifyState::Status(&format!("running {} for {label}", job.name))]);
        info!(job = %job.name, period = %label, slot = %slot.to_rfc3339(), "Job started.");
        let backoff = Backoff::from_config(&self.config.daemon);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A panic anywhere in the job (a bug) is this job's failure, not the daemon's end.
            let result = shutdown.finish(CatchPanic(Box::pin(self.runner.run_job(job, slot, &period)))).await;
            let result = result.unwrap_or_else(|message| {
                Err(anyhow::anyhow!("job {} panicked ({message}); this is a bug, please report it", job.name))
            });
            // A daemon would otherwise rest at the peak of its jobs: 555 MiB after 20 runs
            // of the demo, ~95 MiB after a trim (`cargo bench --bench daemon`, BENCHMARKS.md).
            crate::memory::return_freed();
            let error = result.as_ref().err().map(|e| format!("{e:#}"));
            self.store.note_attempts(run_id, attempt, error.as_deref())?;
            match result {
                Ok(summary) => {
                    let outcome = if summary.failed.is_empty() { RunOutcome::Ok } else { RunOutcome::Partial };
                    let detail = (!summary.failed.is_empty()).then(|| {
                        summary
                            .failed
                            .iter()
                            .map(|f| format!("{}: {}", f.recipient_key, f.reason))
                            .collect::<Vec<_>>()
                            .join("; ")
                    });
                    self.store.finish_run(run_id, summary.sent, summary.failed.len(), outcome, detail.as_deref())?;
                    info!(job = %job.name, period = %label, sent = summary.sent, skipped = summary.skipped,
                        failed = summary.failed.len(), "Job finished.");
                    return Ok(());
                }
                Err(e) if is_transient(&e) && attempt < backoff.max_attempts && !shutdown.requested() => {
                    let wait = backoff.delay(attempt);
                    warn!(job = %job.name, period = %label, attempt, wait_secs = wait.as_secs(), error = %format!("{e:#}"),
                        "Job failed; will retry.");
                    shutdown.sleep(wait).await;
                    if shutdown.requested() {
                        self.store.finish_run(run_id, 0, 0, RunOutcome::Failed, Some(&format!("{e:#} (stopped)")))?;
                        return Ok(());
                    }
                    // The clock is read only for the log: the slot, not the time of the retry,
                    // decides the period.
                    info!(job = %job.name, period = %label, late_secs = (self.clock.now() - slot.with_timezone(&Utc)).num_seconds(),
                        "Retrying job.");
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    error!(job = %job.name, period = %label, attempt, error = %reason, "Job failed.");
                    self.store.finish_run(run_id, 0, 0, RunOutcome::Failed, Some(&reason))?;
                    self.tell_admin(job, &label, slot.with_timezone(&Utc), &reason).await?;
                    return Ok(());
                }
            }
        }
    }
}

impl<R: JobRunner> Daemon<'_, R> {
    /// Tells the admin that a job failed for a period: once per job and period, however often
    /// it is retried. A message that cannot be sent is logged, and tried again at the next
    /// failure of the same period.
    async fn tell_admin(
        &self,
        job: &JobConfig,
        label: &str,
        slot: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), DaemonError> {
        if self.store.job_alert_sent(&job.name, label)? {
            return Ok(());
        }
        if self.config.mail.admin_to.is_empty() {
            warn!(job = %job.name, period = %label, "No admin_to configured; nobody is told that the job failed.");
            return Ok(());
        }
        let (_, attempts) = self.store.slot_attempts(&job.name, slot)?;
        let until = self.retry_until(job, slot);
        let retry_every = chrono::Duration::from_std(self.options.retry_every).unwrap_or(chrono::Duration::hours(1));
        let tz = self.config.timezone;
        let failure = JobFailure {
            config_source: &self.config.source_name,
            job: &job.name,
            period_label: label,
            reason,
            attempts,
            retry_until: (self.clock.now() + retry_every <= until)
                .then(|| until.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()),
            retry_every_minutes: (retry_every.num_minutes()).max(1) as u64,
        };
        let sent = match crate::mail::compose_job_failure(&self.config.mail, self.config.language, &failure) {
            Ok(message) => self.runner.mailer().send(&message).await,
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => {
                self.store.record_job_alert(&job.name, label, reason)?;
                info!(job = %job.name, period = %label, "The admin was told that the job failed.");
            }
            Err(e) => {
                warn!(job = %job.name, period = %label, error = %e, "Could not tell the admin that the job failed.")
            }
        }
        Ok(())
    }
}

/// A future whose panic comes out as an `Err` with the panic's message.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => std::task::Poll::Ready(Err(crate::text::panic_message(&*payload))),
        }
    }
}

/// Whether a job's error is worth retrying: a transient CRM or mail failure in its chain.
/// A CRM failure inside a [`PipelineError`] is looked at through it: that variant is
/// transparent, so the chain shows the `PipelineError` and not the `CrmError` it holds.
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<CrmError>().is_some_and(CrmError::is_transient)
            || cause.downcast_ref::<PipelineError>().is_some_and(PipelineError::is_transient)
            || cause.downcast_ref::<MailError>().is_some_and(MailError::is_transient)
    })
}

fn notify(options: RunOptions, state: &[sd_notify::NotifyState<'_>]) {
    if options.notify_systemd {
        // Without NOTIFY_SOCKET (not under systemd) this does nothing; a failure to reach
        // systemd is not a reason to stop sending reports.
        if let Err(e) = sd_notify::notify(state) {
            warn!(error = %e, "Could not notify systemd.");
        }
    }
}
