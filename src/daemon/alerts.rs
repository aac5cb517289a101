//! The daemon's alerts: when an alert's slot is stale, catching up the latest one at
//! start-up, running a slot with retries, and finishing or giving up messages left unsent.
//! An alert is useful until its next slot (README.md, docs/configuration.md `[[alert]]`).

use std::future::Future;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tracing::{error, info, warn};

use super::{CatchPanic, Daemon, DaemonError, JobRunner, Shutdown, is_transient};
use crate::alert;
use crate::config::AlertConfig;
use crate::pipeline::deliver::Backoff;
use crate::schedule;
use crate::store::RunOutcome;

impl<R: JobRunner> Daemon<'_, R> {
    /// Whether an alert's slot is stale at `now`: past the alert's next slot (a newer alert
    /// says it better), or older than `catch_up_hours`.
    pub(super) fn alert_stale(&self, a: &AlertConfig, slot: DateTime<Tz>, now: DateTime<Utc>) -> bool {
        let slot_utc = slot.with_timezone(&Utc);
        let next_passed = schedule::next_slot(&a.cron, self.config.timezone, slot_utc)
            .is_some_and(|next| next.with_timezone(&Utc) <= now);
        next_passed || now - slot_utc > self.horizon()
    }

    /// Sends the alert rows a crash or an outage left unsent while their alert is current;
    /// gives up (marks failed) those of a stale one.
    pub(super) async fn finish_unsent_alerts<F: Future>(
        &mut self,
        now: DateTime<Utc>,
        shutdown: &mut Shutdown<'_, F>,
    ) -> Result<(), DaemonError> {
        for (name, period) in alert::deliver::unsent_periods(self.store)? {
            if shutdown.requested() {
                return Ok(());
            }
            let tz = self.config.timezone;
            let (Some(a), Some(slot)) = (self.config.alert(&name), alert::parse_period_key(&period, tz)) else {
                warn!(alert = %name, period = %period, "Unsent alerts of an alert no longer configured; left as they are.");
                continue;
            };
            if self.alert_stale(a, slot, now) {
                let n = alert::deliver::give_up(
                    self.store,
                    &name,
                    &period,
                    "stale: not sent before the alert's next slot",
                )?;
                warn!(alert = %name, period = %period, rows = n, "Unsent alerts are stale; given up.");
                continue;
            }
            info!(alert = %name, period = %period, "Finishing alerts left unsent.");
            let work = alert::deliver::resume(self.store, self.runner.mailer(), self.config, &name, &period, slot);
            match shutdown.finish(work).await {
                Ok(s) => {
                    info!(alert = %name, period = %period, sent = s.sent, failed = s.failed.len(), "Unsent alerts finished.")
                }
                Err(e) => error!(alert = %name, period = %period, error = %e, "Unsent alerts not finished."),
            }
        }
        Ok(())
    }

    /// At start-up: runs an alert's latest slot at or before `now` if it did not run and is
    /// not stale (within `catch_up_hours`; being the latest, it is before its next slot).
    /// Older missed slots are stale and never run.
    pub(super) async fn catch_up_alert<F: Future>(
        &mut self,
        a: &AlertConfig,
        now: DateTime<Utc>,
        shutdown: &mut Shutdown<'_, F>,
    ) -> Result<(), DaemonError> {
        let Some(slot) = schedule::latest_slot(&a.cron, self.config.timezone, now) else { return Ok(()) };
        let slot_utc = slot.with_timezone(&Utc);
        if let Some(last) = self.store.last_run(&a.name)? {
            let finished = last.outcome != RunOutcome::Running && last.outcome != RunOutcome::Failed;
            if slot_utc < last.slot || (slot_utc == last.slot && finished) {
                return Ok(());
            }
        }
        if self.alert_stale(a, slot, now) {
            warn!(alert = %a.name, slot = %slot.to_rfc3339(), catch_up_hours = self.config.daemon.catch_up_hours,
                "Missed alert slot is stale (older than catch_up_hours); not run.");
            return Ok(());
        }
        info!(alert = %a.name, slot = %slot.to_rfc3339(), "Catching up a missed alert slot.");
        self.run_alert_slot(a, slot, shutdown).await
    }

    /// Runs one slot of an alert, retrying transient failures while it is not stale, and
    /// records the run (under the alert's name; `status` shows it).
    pub(super) async fn run_alert_slot<F: Future>(
        &mut self,
        a: &AlertConfig,
        slot: DateTime<Tz>,
        shutdown: &mut Shutdown<'_, F>,
    ) -> Result<(), DaemonError> {
        let key = alert::period_key(slot);
        let run_id = self.store.start_run(&a.name, slot.with_timezone(&Utc), &key)?;
        info!(alert = %a.name, slot = %key, "Alert started.");
        let backoff = Backoff::from_config(&self.config.daemon);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = shutdown.finish(CatchPanic(Box::pin(self.runner.run_alert(a, slot)))).await;
            let result = result.unwrap_or_else(|message| {
                Err(anyhow::anyhow!("alert {} panicked ({message}); this is a bug, please report it", a.name))
            });
            crate::memory::return_freed();
            let error = result.as_ref().err().map(|e| format!("{e:#}"));
            self.store.note_attempts(run_id, attempt, error.as_deref())?;
            match result {
                Ok(summary) => {
                    let outcome = if summary.failed.is_empty() { RunOutcome::Ok } else { RunOutcome::Partial };
                    let detail = (!summary.failed.is_empty()).then(|| {
                        summary.failed.iter().map(|(k, r)| format!("{k}: {r}")).collect::<Vec<_>>().join("; ")
                    });
                    self.store.finish_run(run_id, summary.sent, summary.failed.len(), outcome, detail.as_deref())?;
                    info!(alert = %a.name, slot = %key, sent = summary.sent, skipped = summary.skipped,
                        failed = summary.failed.len(), "Alert finished.");
                    return Ok(());
                }
                Err(e)
                    if is_transient(&e)
                        && attempt < backoff.max_attempts
                        && !shutdown.requested()
                        && !self.alert_stale(a, slot, self.clock.now()) =>
                {
                    let wait = backoff.delay(attempt);
                    warn!(alert = %a.name, slot = %key, attempt, wait_secs = wait.as_secs(), error = %format!("{e:#}"),
                        "Alert failed; will retry.");
                    shutdown.sleep(wait).await;
                    if shutdown.requested() {
                        self.store.finish_run(run_id, 0, 0, RunOutcome::Failed, Some(&format!("{e:#} (stopped)")))?;
                        return Ok(());
                    }
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    error!(alert = %a.name, slot = %key, attempt, error = %reason, "Alert failed.");
                    self.store.finish_run(run_id, 0, 0, RunOutcome::Failed, Some(&reason))?;
                    return Ok(());
                }
            }
        }
    }
}
