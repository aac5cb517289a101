//! The run history (one row per job run, with its attempts) and the admin alerts sent per
//! job and period.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{NOW, Store, StoreError, rfc3339, sql};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Running,
    /// Every report sent (or skipped as sent before).
    Ok,
    /// Some reports failed.
    Partial,
    /// The job did not get as far as sending (CRM down, render error).
    Failed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Ok => "ok",
            RunOutcome::Partial => "partial",
            RunOutcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> RunOutcome {
        match s {
            "ok" => RunOutcome::Ok,
            "partial" => RunOutcome::Partial,
            "failed" => RunOutcome::Failed,
            _ => RunOutcome::Running,
        }
    }
}

/// One row of the run history.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub job: String,
    pub slot: DateTime<Utc>,
    pub period: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub sent: u32,
    pub failed: u32,
    pub outcome: RunOutcome,
    pub detail: Option<String>,
    /// Attempts of the job within this run, so far.
    pub attempts: u32,
}

impl Store {
    /// Records that a run of `job` for `slot` began; returns its id for [`Store::finish_run`].
    pub fn start_run(&self, job: &str, slot: DateTime<Utc>, period: &str) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.execute("INSERT INTO runs (job, slot, period) VALUES (?1, ?2, ?3)", params![job, rfc3339(slot), period])
            .map_err(sql(format!("record the start of a run of job {job}")))?;
        Ok(conn.last_insert_rowid())
    }

    pub fn finish_run(
        &self,
        id: i64,
        sent: usize,
        failed: usize,
        outcome: RunOutcome,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                &format!(
                    "UPDATE runs SET finished_at = {NOW}, sent = ?2, failed = ?3, outcome = ?4, detail = ?5 WHERE id = ?1"
                ),
                params![id, sent as i64, failed as i64, outcome.as_str(), detail],
            )
            .map_err(sql(format!("record the end of run {id}")))?;
        Ok(())
    }

    /// Records that run `id` has made `attempts` attempts, the last of which failed with
    /// `error` (while the run goes on, `status` shows it).
    pub fn note_attempts(&self, id: i64, attempts: u32, error: Option<&str>) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE runs SET attempts = ?2, detail = COALESCE(?3, detail) WHERE id = ?1",
                params![id, attempts, error],
            )
            .map_err(sql(format!("record the attempts of run {id}")))?;
        Ok(())
    }

    /// Runs and attempts, in all, of a job for one slot.
    pub fn slot_attempts(&self, job: &str, slot: DateTime<Utc>) -> Result<(u32, u32), StoreError> {
        self.conn()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(attempts), 0) FROM runs WHERE job = ?1 AND slot = ?2",
                params![job, rfc3339(slot)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql(format!("count the attempts of job {job}")))
    }

    /// Whether the admin was told that `job` failed for `period`.
    pub fn job_alert_sent(&self, job: &str, period: &str) -> Result<bool, StoreError> {
        self.conn()
            .query_row("SELECT 1 FROM job_alerts WHERE job = ?1 AND period = ?2", params![job, period], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(sql(format!("read the alerts of job {job}")))
    }

    /// Records that the admin was told that `job` failed for `period`.
    pub fn record_job_alert(&self, job: &str, period: &str, reason: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO job_alerts (job, period, reason) VALUES (?1, ?2, ?3)",
                params![job, period, reason],
            )
            .map_err(sql(format!("record the alert of job {job}")))?;
        Ok(())
    }

    /// The most recent run of a job (by slot, then by start).
    pub fn last_run(&self, job: &str) -> Result<Option<RunRecord>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT id, job, slot, period, started_at, finished_at, sent, failed, outcome, detail, attempts FROM runs
             WHERE job = ?1 ORDER BY slot DESC, id DESC LIMIT 1",
            params![job],
            |r| {
                let slot: String = r.get(2)?;
                Ok(RunRecord {
                    id: r.get(0)?,
                    job: r.get(1)?,
                    slot: DateTime::parse_from_rfc3339(&slot).map(|t| t.with_timezone(&Utc)).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
                    })?,
                    period: r.get(3)?,
                    started_at: r.get(4)?,
                    finished_at: r.get(5)?,
                    sent: r.get(6)?,
                    failed: r.get(7)?,
                    outcome: RunOutcome::parse(&r.get::<_, String>(8)?),
                    detail: r.get(9)?,
                    attempts: r.get(10)?,
                })
            },
        )
        .optional()
        .map_err(sql(format!("read the last run of job {job}")))
    }
}
