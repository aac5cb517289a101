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

mod alerts;
pub mod cache;
mod ledger;
mod runs;

pub use alerts::{AlertSend, AlertSendKey, NewAlertSend};
pub use ledger::{Delivery, DeliveryKey, DeliveryState, NewDelivery, Recorded};
pub use runs::{RunOutcome, RunRecord};

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::Connection;

use crate::private_fs;

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
    r#"
-- What the admin must still be told about a row that was sent (sent again after an
-- interruption, sent without its PDF), set in the same update that marks it sent and
-- cleared once a digest carrying it went out: a digest lost to a crash or a refusing
-- server is sent by the next run.
ALTER TABLE deliveries ADD COLUMN admin_notice TEXT;
"#,
    r#"
-- A report goes to a recipient through one or more channels (e-mail, the Bitrix24
-- messenger, Telegram), each once: a row per (job, period, recipient, channel,
-- destination). E-mail rows have the destination '' (one SMTP transaction carries all
-- their addresses); a chat row's destination is the one dialog or chat it goes to. Rows
-- written before channels existed are e-mail rows and keep their meaning.
CREATE TABLE deliveries_v5 (
    job            TEXT NOT NULL,
    period         TEXT NOT NULL,
    recipient_key  TEXT NOT NULL,
    channel        TEXT NOT NULL DEFAULT 'email',
    destination    TEXT NOT NULL DEFAULT '',
    recipient_name TEXT NOT NULL,
    addresses      TEXT NOT NULL,           -- JSON array: e-mail addresses, or the one chat
    file_name      TEXT NOT NULL,
    pdf_path       TEXT NOT NULL,
    json_path      TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('rendered', 'sending', 'sent', 'failed', 'unknown')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    permanent      INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    message_id     TEXT,
    claimed_by     TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    sent_at        TEXT,
    generation     INTEGER NOT NULL DEFAULT 0,
    admin_notice   TEXT,
    PRIMARY KEY (job, period, recipient_key, channel, destination)
);
INSERT INTO deliveries_v5 (job, period, recipient_key, channel, destination, recipient_name, addresses, file_name,
    pdf_path, json_path, state, attempts, permanent, last_error, message_id, claimed_by, created_at, updated_at,
    sent_at, generation, admin_notice)
SELECT job, period, recipient_key, 'email', '', recipient_name, addresses, file_name, pdf_path, json_path, state,
    attempts, permanent, last_error, message_id, claimed_by, created_at, updated_at, sent_at, generation, admin_notice
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v5 RENAME TO deliveries;
CREATE INDEX deliveries_state ON deliveries (state);
"#,
    r#"
-- Alerts (`[[alert]]`): one short text per (alert, period, recipient, channel). The
-- period is the alert's slot; the channel is 'email' until chat channels carry alerts.
-- The states and the claim rule are the deliveries' own.
CREATE TABLE alert_sends (
    alert          TEXT NOT NULL,
    period         TEXT NOT NULL,
    recipient_key  TEXT NOT NULL,           -- a manager's Bitrix24 id, or a fixed address
    channel        TEXT NOT NULL,
    recipient_name TEXT NOT NULL,
    addresses      TEXT NOT NULL,           -- JSON array of e-mail addresses
    subject        TEXT NOT NULL,
    body           TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('rendered', 'sending', 'sent', 'failed', 'unknown')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    permanent      INTEGER NOT NULL DEFAULT 0,
    last_error     TEXT,
    message_id     TEXT,
    claimed_by     TEXT,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    sent_at        TEXT,
    PRIMARY KEY (alert, period, recipient_key, channel)
);
CREATE INDEX alert_sends_state ON alert_sends (state);
"#,
];

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

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
}

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
    if k.channel == "email" && k.destination.is_empty() {
        return format!("{}/{}/{}", k.job, k.period, k.recipient_key);
    }
    format!("{}/{}/{}/{}:{}", k.job, k.period, k.recipient_key, k.channel, k.destination)
}

#[cfg(test)]
mod tests;
