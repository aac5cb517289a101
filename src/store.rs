//! All SQL of salespulse: one SQLite file `state_dir/salespulse.sqlite3` (WAL, migrations by
//! `PRAGMA user_version`) holding the delivery ledger and the run history, plus the files
//! the ledger points at (`state_dir/reports/<job>/<period>/`) and the daemon's lock. The
//! CRM cache has a file of its own, `state_dir/crm-cache.sqlite3` ([`cache`]).
//!
//! The ledger has one row per (job, period label, recipient key). Its states:
//!
//! - `rendered`: the PDF and its JSON are stored, nothing sent yet;
//! - `sending`: claimed by one process, an SMTP transaction may be under way;
//! - `sent`: the server answered 250 to the message;
//! - `failed`: a permanent refusal, or transient failures until the attempts ran out;
//! - `unknown`: a `sending` row whose process died: the message may or may not have been
//!   accepted (what happens to it is `pipeline::deliver`'s rule).
//!
//! Every transition that decides who sends is a single conditional `UPDATE` whose changed
//! row count says whether this process won ([`Store::claim`]), so a `send` run by hand while
//! the daemon is up cannot send a row twice. A claim names its process by an owner token
//! whose lock file stays locked while the process lives; a `sending` row whose owner's lock
//! can be taken belongs to a dead process ([`Store::recover_interrupted`]).
//!
//! Durability: the database runs in WAL mode with `synchronous = FULL`, so each ledger write
//! is on disk when its call returns (a claim before its SMTP transaction starts); only
//! [`Store::mark_sent`], the write inside the window after the server's 250, does not wait
//! for the disk (see there).
//!
//! Bookkeeping time stamps (`created_at`, `sent_at`, a run's `started_at`) are SQLite's own
//! clock: they record when something happened and never feed a computation. What a run is
//! about is its slot, passed in by the caller from `schedule`.
//!
//! The store is shared by async tasks; its calls are short local transactions, so it uses a
//! `std::sync::Mutex` around one connection rather than a pool.

pub mod cache;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::private_fs;
use crate::text::file_name;

/// The database file inside the state directory.
pub const DB_FILE: &str = "salespulse.sqlite3";
/// The daemon's lock file inside the state directory.
pub const LOCK_FILE: &str = "salespulse.lock";

/// The schema, one entry per version; `user_version` says how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE deliveries (
    job            TEXT NOT NULL,
    period         TEXT NOT NULL,
    recipient_key  TEXT NOT NULL,
    recipient_name TEXT NOT NULL,
    addresses      TEXT NOT NULL,           -- JSON array of e-mail addresses
    file_name      TEXT NOT NULL,           -- the attachment's name
    pdf_path       TEXT NOT NULL,           -- relative to the state directory
    json_path      TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('rendered', 'sending', 'sent', 'failed', 'unknown')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    permanent      INTEGER NOT NULL DEFAULT 0, -- 1: the last failure is not worth retrying
    last_error     TEXT,
    message_id     TEXT,
    claimed_by     TEXT,                    -- owner token of the process that set `sending`
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    sent_at        TEXT,
    PRIMARY KEY (job, period, recipient_key)
);
CREATE INDEX deliveries_state ON deliveries (state);
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT NOT NULL,
    slot        TEXT NOT NULL,              -- RFC 3339, UTC
    period      TEXT NOT NULL,
    started_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at TEXT,
    sent        INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'partial', 'failed')),
    detail      TEXT
);
CREATE INDEX runs_job_slot ON runs (job, slot);
"#,
    r#"
-- A deliberate resend (`send --resend`) is a new message with a new Message-ID; a retry
-- after a crash is the same message. The generation tells them apart.
ALTER TABLE deliveries ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- How often a run tried its job (the daemon retries a transient failure within one run).
ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
-- The admin is told once per failed job and period, however often it is retried.
CREATE TABLE job_alerts (
    job     TEXT NOT NULL,
    period  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    sent_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (job, period)
);
"#,
];

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// [`Store::mark_sent`]'s statement, prepared once per connection.
const MARK_SENT: &str = "UPDATE deliveries SET state = 'sent', sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        last_error = NULL, permanent = 0, claimed_by = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND state = 'sending' AND claimed_by = ?4";

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open state directory {path} ({source})")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("failed to open database {path} ({source})")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("failed to migrate database {path} to version {version} ({source})")]
    Migrate { path: PathBuf, version: usize, source: rusqlite::Error },
    #[error(
        "failed to open database {path} (its schema version {found} is newer than this salespulse knows, {known}; \
         upgrade salespulse)"
    )]
    TooNew { path: PathBuf, found: usize, known: usize },
    #[error("failed to {action} ({source})")]
    Sql { action: String, source: rusqlite::Error },
    #[error("failed to create database {path} ({source})")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("failed to write report file {path} ({source})")]
    WriteFile { path: PathBuf, source: std::io::Error },
    #[error("failed to read report file {path} ({source})")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error(
        "failed to lock state directory {path} (another salespulse daemon is already running on it; \
         stop it first, or give this one another state_dir)"
    )]
    Locked { path: PathBuf },
    #[error("failed to lock state directory {path} ({source})")]
    Lock { path: PathBuf, source: std::io::Error },
}

fn sql(action: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let action = action.into();
    move |source| StoreError::Sql { action, source }
}

/// Where a ledger row stands (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    Rendered,
    Sending,
    Sent,
    Failed,
    Unknown,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Rendered => "rendered",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Unknown => "unknown",
        }
    }

    fn parse(s: &str) -> DeliveryState {
        match s {
            "rendered" => DeliveryState::Rendered,
            "sending" => DeliveryState::Sending,
            "sent" => DeliveryState::Sent,
            "failed" => DeliveryState::Failed,
            // The CHECK constraint admits nothing else.
            _ => DeliveryState::Unknown,
        }
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which row: (job, period label, recipient key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub job: String,
    pub period: String,
    pub recipient_key: String,
}

/// One row of the ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub key: DeliveryKey,
    pub recipient_name: String,
    pub to: Vec<String>,
    pub file_name: String,
    /// Absolute paths of the stored PDF and its JSON data.
    pub pdf_path: PathBuf,
    pub json_path: PathBuf,
    pub state: DeliveryState,
    /// SMTP transactions started for this row (including one cut short by a crash).
    pub attempts: u32,
    /// The last failure was a permanent refusal.
    pub permanent: bool,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
    /// 0 for the first delivery of the row; +1 for each deliberate resend of a row that
    /// was sent (or may have been), so the resend gets its own Message-ID.
    pub generation: u32,
}

/// A report to record in the ledger.
pub struct NewDelivery<'a> {
    pub key: DeliveryKey,
    pub recipient_name: &'a str,
    pub to: &'a [String],
    pub file_name: &'a str,
    pub pdf: &'a [u8],
    pub json: &'a str,
}

/// What [`Store::record`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A new row, or an unsent one whose files were replaced by the new rendering.
    Ready,
    /// The row was sent already: files and state left as they were.
    AlreadySent,
    /// Another process is sending the row right now: left alone.
    InFlight,
    /// A send of the row was cut short by a crash: left in state `unknown` with the files
    /// it was being sent with.
    Interrupted,
}

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

/// The ledger and run history of one state directory.
pub struct Store {
    conn: Mutex<Connection>,
    state_dir: PathBuf,
    owner: Owner,
}

/// This process's identity in `claimed_by`, with its lock file held for the store's life.
struct Owner {
    token: String,
    path: PathBuf,
    _file: File,
}

impl Drop for Owner {
    fn drop(&mut self) {
        // A process killed without running this leaves the file unlocked, which is how
        // `recover_interrupted` knows it is gone.
        let _ = fs::remove_file(&self.path);
    }
}

/// Held while a daemon runs on a state directory; dropping it releases the directory.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    pub path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the state directory's database and brings its schema up to
    /// date.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let dir_err = |source| StoreError::Dir { path: state_dir.to_owned(), source };
        private_fs::create_dir_all(state_dir).map_err(dir_err)?;
        let state_dir = state_dir.canonicalize().map_err(dir_err)?;
        let path = state_dir.join(DB_FILE);
        private_fs::prepare_sqlite(&path).map_err(|source| StoreError::Create { path: path.clone(), source })?;
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        // Another process (a manual `send`) may hold the write lock briefly.
        conn.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        // Every ledger write is on disk before the call returns (a claim before its SMTP
        // transaction starts), so a power cut cannot silently undo one; `mark_sent` is the
        // exception, see there.
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_err)?;
        migrate(&mut conn, &path)?;
        let owner = Owner::create(&state_dir)?;
        Ok(Store { conn: Mutex::new(conn), state_dir, owner })
    }

    /// Takes the daemon lock of a state directory, or says that another daemon holds it.
    pub fn lock_daemon(state_dir: &Path) -> Result<DaemonLock, StoreError> {
        private_fs::create_dir_all(state_dir)
            .map_err(|source| StoreError::Dir { path: state_dir.to_owned(), source })?;
        let path = state_dir.join(LOCK_FILE);
        let lock_err = |source| StoreError::Lock { path: path.clone(), source };
        let mut file = private_fs::open_file(&path, false).map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked { path }),
            Err(fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        // The pid is for a person looking at the file; the lock is what counts.
        let _ = file.set_len(0).and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(DaemonLock { _file: file, path })
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: every change is one
        // statement or one transaction, which SQLite completed or rolled back.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a rendered report's files and its ledger row (state `rendered`). A row already
    /// sent is left as it is unless `reopen_sent` (an explicit resend); a row whose send was
    /// interrupted keeps its stored files and state (it is resent as it was, see
    /// `pipeline::deliver`) unless `reopen_sent`; a row being sent by another process is
    /// always left alone.
    pub fn record(&self, new: &NewDelivery<'_>, reopen_sent: bool) -> Result<Recorded, StoreError> {
        let existing = self.delivery(&new.key)?;
        match existing.as_ref().map(|d| d.state) {
            Some(DeliveryState::Sent) if !reopen_sent => return Ok(Recorded::AlreadySent),
            Some(DeliveryState::Unknown) if !reopen_sent => return Ok(Recorded::Interrupted),
            Some(DeliveryState::Sending) => return Ok(Recorded::InFlight),
            _ => {}
        }
        // New files under fresh names: the files a row points at never change under a
        // process that is sending them, whatever happens between the read above and the
        // update below.
        let dir = self.report_dir(&new.key.job, &new.key.period);
        let stem = format!("{}.{:08x}", file_name(&new.key.recipient_key, "_"), fastrand::u32(..));
        let pdf_rel = dir.join(format!("{stem}.pdf"));
        let json_rel = dir.join(format!("{stem}.json"));
        write_atomically(&self.state_dir.join(&pdf_rel), new.pdf)?;
        write_atomically(&self.state_dir.join(&json_rel), new.json.as_bytes())?;
        let addresses = serde_json::to_string(new.to).expect("a list of strings serializes");
        let k = &new.key;
        // An unsent row gets the new rendering and addresses (an address fixed in Bitrix24
        // since the last try is used) and a fresh attempt count; the WHERE clause re-checks
        // the state, so a row claimed meanwhile is not touched.
        let reopen = if reopen_sent { ", 'sent', 'unknown'" } else { "" };
        let changed = self
            .conn()
            .execute(
                &format!(
                    "INSERT INTO deliveries (job, period, recipient_key, recipient_name, addresses, file_name,
                        pdf_path, json_path, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'rendered')
                     ON CONFLICT (job, period, recipient_key) DO UPDATE SET
                        recipient_name = excluded.recipient_name, addresses = excluded.addresses,
                        file_name = excluded.file_name, pdf_path = excluded.pdf_path,
                        json_path = excluded.json_path, state = 'rendered', attempts = 0, permanent = 0,
                        last_error = NULL, claimed_by = NULL, updated_at = {NOW},
                        generation = deliveries.generation
                            + (deliveries.state IN ('sent', 'unknown'))
                     WHERE deliveries.state IN ('rendered', 'failed'{reopen})"
                ),
                params![
                    k.job,
                    k.period,
                    k.recipient_key,
                    new.recipient_name,
                    addresses,
                    new.file_name,
                    path_text(&pdf_rel),
                    path_text(&json_rel)
                ],
            )
            .map_err(sql(format!("record delivery {}", describe(k))))?;
        let (stale_pdf, stale_json) = match (changed, existing) {
            (1, Some(old)) => (old.pdf_path, old.json_path),
            (1, None) => return Ok(Recorded::Ready),
            _ => (self.state_dir.join(&pdf_rel), self.state_dir.join(&json_rel)),
        };
        // Old files of a replaced rendering, or ours when we lost: nobody points at them.
        let _ = fs::remove_file(stale_pdf);
        let _ = fs::remove_file(stale_json);
        if changed == 1 {
            return Ok(Recorded::Ready);
        }
        Ok(match self.delivery(k)?.map(|d| d.state) {
            Some(DeliveryState::Sending) => Recorded::InFlight,
            Some(DeliveryState::Unknown) => Recorded::Interrupted,
            _ => Recorded::AlreadySent,
        })
    }

    /// Claims a row for sending: sets `sending` only if the row is in one of `from`, and says
    /// whether this process won it. Whoever wins sends; everyone else leaves the row alone.
    pub fn claim(&self, key: &DeliveryKey, from: &[DeliveryState]) -> Result<Option<Delivery>, StoreError> {
        let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        if states.is_empty() {
            return Ok(None);
        }
        let changed = self
            .conn()
            .execute(
                &format!(
                    "UPDATE deliveries SET state = 'sending', claimed_by = ?4, updated_at = {NOW}
                     WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND state IN ({})",
                    states.join(", ")
                ),
                params![key.job, key.period, key.recipient_key, self.owner.token],
            )
            .map_err(sql(format!("claim delivery {}", describe(key))))?;
        if changed == 1 { self.delivery(key) } else { Ok(None) }
    }

    /// Counts an SMTP transaction about to start on a claimed row, and remembers the
    /// Message-ID it carries.
    pub fn start_attempt(&self, key: &DeliveryKey, message_id: &str) -> Result<(), StoreError> {
        self.update_claimed(key, "attempts = attempts + 1, message_id = ?5", Some(message_id), "start attempt")
    }

    /// Records a failed attempt on a claimed row that will be tried again (the row stays
    /// `sending`: this process keeps its claim while it waits).
    pub fn note_retry(&self, key: &DeliveryKey, error: &str) -> Result<(), StoreError> {
        self.update_claimed(key, "last_error = ?5", Some(error), "note retry")
    }

    /// The server accepted the message. This is the only write between the server's 250 and
    /// the ledger knowing it (the window of `pipeline::deliver`), so it does nothing else: one
    /// cached statement, committed without waiting for the disk (`synchronous = NORMAL` in
    /// WAL mode: the commit is the write of its WAL frames and the update of the WAL index,
    /// microseconds; with `FULL` an fsync would come between the two, inside the window).
    /// A process killed after the write keeps the commit; a power cut before the next
    /// commit's fsync can lose it, which leaves the row `sending`: the same case as a kill
    /// inside the window (sent again with the same Message-ID, the admin told).
    pub fn mark_sent(&self, key: &DeliveryKey) -> Result<(), StoreError> {
        let conn = self.conn();
        let err = || sql(format!("mark sent delivery {}", describe(key)));
        let sent = conn.pragma_update(None, "synchronous", "NORMAL").and_then(|()| {
            conn.prepare_cached(MARK_SENT)?.execute(params![key.job, key.period, key.recipient_key, self.owner.token])
        });
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        sent.map_err(err())?;
        restored.map_err(err())?;
        Ok(())
    }

    /// The row will not be tried again by this run.
    pub fn mark_failed(&self, key: &DeliveryKey, error: &str, permanent: bool) -> Result<(), StoreError> {
        let set = format!("state = 'failed', last_error = ?5, permanent = {}, claimed_by = NULL", permanent as u8);
        self.update_claimed(key, &set, Some(error), "mark failed")
    }

    fn update_claimed(
        &self,
        key: &DeliveryKey,
        set: &str,
        value: Option<&str>,
        action: &str,
    ) -> Result<(), StoreError> {
        // Only this process's claim may be finished by it: a row another process won (or
        // that recovery took away) is not touched.
        let stmt = format!(
            "UPDATE deliveries SET {set}, updated_at = {NOW}
             WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND state = 'sending' AND claimed_by = ?4"
        );
        let conn = self.conn();
        let result = if let Some(value) = value {
            conn.execute(&stmt, params![key.job, key.period, key.recipient_key, self.owner.token, value])
        } else {
            conn.execute(&stmt, params![key.job, key.period, key.recipient_key, self.owner.token])
        };
        result.map_err(sql(format!("{action} delivery {}", describe(key))))?;
        Ok(())
    }

    /// Marks `sending` rows whose process is gone as `unknown`, and returns every row in
    /// that state. Rows claimed by a live process (a `send` run by hand) are left alone.
    pub fn recover_interrupted(&self) -> Result<Vec<Delivery>, StoreError> {
        let claimed: Vec<(DeliveryKey, Option<String>)> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT job, period, recipient_key, claimed_by FROM deliveries WHERE state = 'sending'")
                .map_err(sql("list interrupted deliveries"))?;
            stmt.query_map([], |r| {
                Ok((DeliveryKey { job: r.get(0)?, period: r.get(1)?, recipient_key: r.get(2)? }, r.get(3)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(sql("list interrupted deliveries"))?
        };
        for (key, owner) in claimed {
            let owner = owner.unwrap_or_default();
            if owner == self.owner.token || Owner::is_alive(&self.state_dir, &owner) {
                continue;
            }
            self.conn()
                .execute(
                    &format!(
                        "UPDATE deliveries SET state = 'unknown', claimed_by = NULL, updated_at = {NOW},
                            last_error = COALESCE(last_error || '; ', '') || 'interrupted during sending'
                         WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND state = 'sending'
                           AND claimed_by IS ?4"
                    ),
                    params![key.job, key.period, key.recipient_key, if owner.is_empty() { None } else { Some(owner) }],
                )
                .map_err(sql(format!("mark delivery {} unknown", describe(&key))))?;
        }
        self.select("WHERE state = 'unknown' ORDER BY job, period, recipient_key", params![])
    }

    /// One row.
    pub fn delivery(&self, key: &DeliveryKey) -> Result<Option<Delivery>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            &format!("{SELECT_DELIVERY} WHERE job = ?1 AND period = ?2 AND recipient_key = ?3"),
            params![key.job, key.period, key.recipient_key],
            |r| self.row(r),
        )
        .optional()
        .map_err(sql(format!("read delivery {}", describe(key))))
    }

    /// The rows of one job and period, by recipient key.
    pub fn deliveries(&self, job: &str, period: &str) -> Result<Vec<Delivery>, StoreError> {
        self.select("WHERE job = ?1 AND period = ?2 ORDER BY recipient_key", params![job, period])
    }

    /// Rows not sent: `rendered`, `sending`, `failed` and `unknown`, for `status` and for the
    /// daemon's start-up.
    pub fn unsent(&self) -> Result<Vec<Delivery>, StoreError> {
        self.select("WHERE state != 'sent' ORDER BY job, period, recipient_key", params![])
    }

    fn select(&self, clause: &str, params: impl rusqlite::Params) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT_DELIVERY} {clause}")).map_err(sql("list deliveries"))?;
        stmt.query_map(params, |r| self.row(r)).and_then(|rows| rows.collect()).map_err(sql("list deliveries"))
    }

    fn row(&self, r: &Row<'_>) -> rusqlite::Result<Delivery> {
        let addresses: String = r.get(4)?;
        let pdf: String = r.get(6)?;
        let json: String = r.get(7)?;
        Ok(Delivery {
            key: DeliveryKey { job: r.get(0)?, period: r.get(1)?, recipient_key: r.get(2)? },
            recipient_name: r.get(3)?,
            to: serde_json::from_str(&addresses).unwrap_or_default(),
            file_name: r.get(5)?,
            pdf_path: self.state_dir.join(pdf),
            json_path: self.state_dir.join(json),
            state: DeliveryState::parse(&r.get::<_, String>(8)?),
            attempts: r.get(9)?,
            permanent: r.get(10)?,
            last_error: r.get(11)?,
            message_id: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
            sent_at: r.get(15)?,
            generation: r.get(16)?,
        })
    }

    /// The stored PDF of a row: the exact bytes a retry sends.
    pub fn read_pdf(&self, delivery: &Delivery) -> Result<Vec<u8>, StoreError> {
        fs::read(&delivery.pdf_path).map_err(|source| StoreError::ReadFile { path: delivery.pdf_path.clone(), source })
    }

    /// The stored JSON data of a row.
    pub fn read_json(&self, delivery: &Delivery) -> Result<String, StoreError> {
        fs::read_to_string(&delivery.json_path)
            .map_err(|source| StoreError::ReadFile { path: delivery.json_path.clone(), source })
    }

    /// `reports/<job>/<period>`, relative to the state directory.
    pub fn report_dir(&self, job: &str, period: &str) -> PathBuf {
        Path::new("reports").join(file_name(job, "_")).join(file_name(period, "_"))
    }

    /// Records that a run of `job` for `slot` began; returns its id for [`Store::finish_run`].
    /// The latest delivery of a job, by daemon or by hand: its period, when its last row
    /// was sent, and how many rows of that period are sent.
    pub fn last_sent(&self, job: &str) -> Result<Option<(String, String, u32)>, StoreError> {
        self.conn()
            .query_row(
                "SELECT period, MAX(sent_at), COUNT(*) FROM deliveries
                 WHERE job = ?1 AND state = 'sent' AND period = (
                     SELECT period FROM deliveries WHERE job = ?1 AND state = 'sent'
                     ORDER BY sent_at DESC LIMIT 1)
                 GROUP BY period",
                params![job],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql(format!("read the last delivery of job {job}")))
    }

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

const SELECT_DELIVERY: &str = "SELECT job, period, recipient_key, recipient_name, addresses, file_name, pdf_path,
    json_path, state, attempts, permanent, last_error, message_id, created_at, updated_at, sent_at, generation
    FROM deliveries";

impl Owner {
    fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("owners")
    }

    fn create(state_dir: &Path) -> Result<Owner, StoreError> {
        let dir = Owner::dir(state_dir);
        private_fs::create_dir_all(&dir).map_err(|source| StoreError::Dir { path: dir.clone(), source })?;
        Owner::sweep(&dir);
        let token = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let path = dir.join(format!("{token}.lock"));
        let lock_err = |source| StoreError::Lock { path: path.clone(), source };
        // Locked under a name the sweep ignores, then renamed: a `.lock` file that another
        // process finds unlocked is always a dead one's.
        let tmp = dir.join(format!("{token}.new"));
        let file = private_fs::open_file(&tmp, true).map_err(lock_err)?;
        file.lock().map_err(lock_err)?;
        fs::rename(&tmp, &path).map_err(lock_err)?;
        Ok(Owner { token, path, _file: file })
    }

    /// Removes the lock files of processes that died without tidying up (killed). A file
    /// still referenced by a `sending` row is harmless to remove: a missing owner file means
    /// a dead owner, as an unlocked one does.
    fn sweep(dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "lock")
                && let Ok(file) = OpenOptions::new().write(true).open(&path)
                && file.try_lock().is_ok()
            {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Whether the process that wrote `token` still holds its lock.
    fn is_alive(state_dir: &Path, token: &str) -> bool {
        if token.is_empty() || token.contains(['/', '\\', '.']) {
            return false;
        }
        let path = Owner::dir(state_dir).join(format!("{token}.lock"));
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            return false;
        };
        match file.try_lock() {
            Ok(()) => {
                // Dead: tidy its file while we hold the lock.
                let _ = fs::remove_file(&path);
                false
            }
            Err(_) => true,
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    run_migrations(conn, MIGRATIONS).map_err(|failure| match failure {
        MigrationFailure::Read(source) => StoreError::Open { path: path.to_owned(), source },
        MigrationFailure::TooNew { found, known } => StoreError::TooNew { path: path.to_owned(), found, known },
        MigrationFailure::Step { version, source } => StoreError::Migrate { path: path.to_owned(), version, source },
    })
}

/// Why a database's schema could not be brought up to date; each file maps it to its error.
pub(crate) enum MigrationFailure {
    /// `user_version` could not be read.
    Read(rusqlite::Error),
    /// The file was written by a newer salespulse.
    TooNew { found: usize, known: usize },
    /// Step `version` (1-based) failed and was rolled back.
    Step { version: usize, source: rusqlite::Error },
}

/// Applies the steps after the file's `user_version`, each in its own transaction that also
/// bumps the version, so a crash leaves the schema at a step boundary.
pub(crate) fn run_migrations(conn: &mut Connection, steps: &[&str]) -> Result<(), MigrationFailure> {
    let found =
        conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).map_err(MigrationFailure::Read)? as usize;
    if found > steps.len() {
        return Err(MigrationFailure::TooNew { found, known: steps.len() });
    }
    for (i, step) in steps.iter().enumerate().skip(found) {
        let version = i + 1;
        let err = |source| MigrationFailure::Step { version, source };
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(step).map_err(err)?;
        tx.pragma_update(None, "user_version", version as i64).map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

/// Writes through a temporary file and a rename, so a crash never leaves half a PDF that a
/// retry would send.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    private_fs::write_file_atomically(path, bytes, true)
        .map_err(|source| StoreError::WriteFile { path: path.to_owned(), source })
}

fn path_text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn describe(k: &DeliveryKey) -> String {
    format!("{}/{}/{}", k.job, k.period, k.recipient_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: &str) -> DeliveryKey {
        DeliveryKey { job: "manager-weekly".into(), period: "2026-W47".into(), recipient_key: r.into() }
    }

    fn record(store: &Store, r: &str, pdf: &[u8]) -> Recorded {
        let to = vec![format!("m{r}@example.ru")];
        store
            .record(
                &NewDelivery {
                    key: key(r),
                    recipient_name: "Иван Петров",
                    to: &to,
                    file_name: "2026-W47 Иван Петров (17).pdf",
                    pdf,
                    json: "{}",
                },
                false,
            )
            .unwrap()
    }

    #[test]
    fn a_row_goes_from_rendered_to_sent_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(record(&store, "17", b"%PDF-1"), Recorded::Ready);
        let row = store.delivery(&key("17")).unwrap().unwrap();
        assert_eq!(row.state, DeliveryState::Rendered);
        assert_eq!(row.to, ["m17@example.ru"]);
        assert_eq!(store.read_pdf(&row).unwrap(), b"%PDF-1");
        assert!(row.pdf_path.starts_with(dir.path().canonicalize().unwrap().join("reports/manager-weekly/2026-W47")));

        let claimed = store.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().unwrap();
        assert_eq!(claimed.state, DeliveryState::Sending);
        store.start_attempt(&key("17"), "abc@salespulse").unwrap();
        store.mark_sent(&key("17")).unwrap();
        let row = store.delivery(&key("17")).unwrap().unwrap();
        assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 1));
        assert_eq!(row.message_id.as_deref(), Some("abc@salespulse"));
        assert!(row.sent_at.is_some());

        // A sent row is not claimed again, and a new rendering does not reopen it.
        assert!(store.claim(&key("17"), &[DeliveryState::Rendered, DeliveryState::Failed]).unwrap().is_none());
        assert_eq!(record(&store, "17", b"%PDF-2"), Recorded::AlreadySent);
        assert_eq!(store.read_pdf(&store.delivery(&key("17")).unwrap().unwrap()).unwrap(), b"%PDF-1");
        // Unless asked to (resend).
        assert!(store.claim(&key("17"), &[DeliveryState::Sent]).unwrap().is_some());
    }

    #[test]
    fn a_failed_row_keeps_its_reason_and_can_be_rerecorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        record(&store, "21", b"%PDF-1");
        store.claim(&key("21"), &[DeliveryState::Rendered]).unwrap().unwrap();
        store.start_attempt(&key("21"), "x@y").unwrap();
        store.mark_failed(&key("21"), "550 mailbox unknown", true).unwrap();
        let row = store.delivery(&key("21")).unwrap().unwrap();
        assert_eq!((row.state, row.permanent), (DeliveryState::Failed, true));
        assert_eq!(row.last_error.as_deref(), Some("550 mailbox unknown"));
        assert_eq!(store.unsent().unwrap().len(), 1);

        assert_eq!(record(&store, "21", b"%PDF-2"), Recorded::Ready);
        let row = store.delivery(&key("21")).unwrap().unwrap();
        assert_eq!((row.state, row.attempts, row.permanent), (DeliveryState::Rendered, 0, false));
        assert_eq!(store.read_pdf(&row).unwrap(), b"%PDF-2");
    }

    #[test]
    fn of_two_connections_claiming_one_row_only_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path()).unwrap();
        let b = Store::open(dir.path()).unwrap();
        record(&a, "17", b"%PDF");
        let barrier = std::sync::Barrier::new(2);
        let wins: Vec<bool> = std::thread::scope(|s| {
            let ha = s.spawn(|| {
                barrier.wait();
                a.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().is_some()
            });
            let hb = s.spawn(|| {
                barrier.wait();
                b.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().is_some()
            });
            vec![ha.join().unwrap(), hb.join().unwrap()]
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
        // The loser cannot finish the winner's row either.
        let (winner, loser) = if wins[0] { (&a, &b) } else { (&b, &a) };
        loser.mark_sent(&key("17")).unwrap();
        assert_eq!(winner.delivery(&key("17")).unwrap().unwrap().state, DeliveryState::Sending);
        // And a row in flight in a live process is not taken for interrupted.
        assert!(loser.recover_interrupted().unwrap().is_empty());
        assert_eq!(record(loser, "17", b"%PDF-2"), Recorded::InFlight);
    }

    #[test]
    fn a_row_left_sending_by_a_dead_process_becomes_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        record(&store, "17", b"%PDF");
        store.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().unwrap();
        store.start_attempt(&key("17"), "m@id").unwrap();
        // As a killed process leaves it: the claim names an owner whose lock file exists but
        // is locked by nobody.
        fs::write(dir.path().join("owners/1-dead.lock"), "").unwrap();
        store.conn().execute("UPDATE deliveries SET claimed_by = '1-dead'", []).unwrap();
        let unknown = store.recover_interrupted().unwrap();
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].state, DeliveryState::Unknown);
        assert_eq!(unknown[0].attempts, 1);
        assert_eq!(unknown[0].message_id.as_deref(), Some("m@id"));
        assert!(!dir.path().join("owners/1-dead.lock").exists());
        // A new rendering does not replace the files the interrupted send was carrying.
        assert_eq!(record(&store, "17", b"%PDF-2"), Recorded::Interrupted);
        assert_eq!(store.read_pdf(&store.delivery(&key("17")).unwrap().unwrap()).unwrap(), b"%PDF");
        assert!(store.claim(&key("17"), &[DeliveryState::Unknown]).unwrap().is_some());
    }

    #[test]
    fn lock_files_of_dead_processes_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let live = Store::open(dir.path()).unwrap();
        fs::write(dir.path().join("owners/1-dead.lock"), "").unwrap();
        let _other = Store::open(dir.path()).unwrap();
        assert!(!dir.path().join("owners/1-dead.lock").exists());
        assert!(live.owner.path.exists());
        let path = live.owner.path.clone();
        drop(live);
        assert!(!path.exists(), "a store closed normally removes its own file");
    }

    #[test]
    fn a_second_daemon_on_the_same_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::lock_daemon(dir.path()).unwrap();
        let second = Store::lock_daemon(dir.path()).unwrap_err();
        assert!(matches!(second, StoreError::Locked { .. }));
        assert!(second.to_string().contains("another salespulse daemon is already running"), "{second}");
        drop(first);
        Store::lock_daemon(dir.path()).unwrap();
    }

    #[test]
    fn runs_are_remembered_by_slot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.last_run("manager-weekly").unwrap().is_none());
        let slot = DateTime::parse_from_rfc3339("2026-11-23T05:00:00Z").unwrap().with_timezone(&Utc);
        let id = store.start_run("manager-weekly", slot - chrono::Duration::days(7), "2026-W46").unwrap();
        store.finish_run(id, 3, 0, RunOutcome::Ok, None).unwrap();
        let id = store.start_run("manager-weekly", slot, "2026-W47").unwrap();
        assert_eq!(store.last_run("manager-weekly").unwrap().unwrap().outcome, RunOutcome::Running);
        store.finish_run(id, 2, 1, RunOutcome::Partial, Some("1 failed")).unwrap();
        let last = store.last_run("manager-weekly").unwrap().unwrap();
        assert_eq!((last.slot, last.period.as_str(), last.sent, last.failed), (slot, "2026-W47", 2, 1));
        assert_eq!(last.outcome, RunOutcome::Partial);
        assert!(last.finished_at.is_some());
    }

    #[test]
    fn reopening_keeps_the_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let store = Store::open(dir.path()).unwrap();
        let v: i64 = store.conn().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        store.conn().pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        assert!(matches!(Store::open(dir.path()), Err(StoreError::TooNew { found: 99, .. })));
    }
}
