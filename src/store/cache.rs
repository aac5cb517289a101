//! The SQL of the CRM cache: one SQLite file `state_dir/crm-cache.sqlite3` (WAL, migrations
//! by `PRAGMA user_version`) holding, per portal, the wire rows of the records a report run
//! fetched, so that the next run asks the portal only for what changed.
//!
//! Why a file of its own rather than tables in the ledger: the cache is large and worthless
//! to keep (it is rebuilt from the portal at the cost of one full fetch), while the ledger is
//! small and must never be lost. An admin may delete `crm-cache.sqlite3` at any time; so does
//! salespulse itself when the file is unreadable ([`CrmCache::open_fresh`]).
//!
//! Rows are stored as the portal served them, not as `domain` records: the client converts
//! cached and fresh rows with the same code and the same reference data, so a cached fetch
//! gives the very snapshot an uncached one does. They are stored in the client's packed form
//! (`crm::bitrix24::packed`: every field with its name and the kind of value served, no JSON
//! to parse again); to this module a row is bytes. What to fetch, when to reconcile and how
//! to read the rows is `crm::bitrix24::cached`'s job; this module only loads and saves
//! them, each save one transaction.
//!
//! A portal is keyed by [`portal_key`], an FNV-1a hash of the webhook URL with its code
//! masked: the secret never reaches the file, and the key stays the same across Rust
//! versions (which `std::hash` does not promise).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::DateTime;
use rusqlite::{Connection, OptionalExtension, params};

use super::MigrationFailure;
use crate::domain::Timestamp;

/// The cache file inside the state directory.
pub const CACHE_FILE: &str = "crm-cache.sqlite3";

/// The schema, one entry per version; `user_version` says how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE portals (
    portal             TEXT PRIMARY KEY,    -- portal_key(): FNV-1a of the masked webhook URL
    shown              TEXT NOT NULL,       -- the masked webhook URL, for a person reading the file
    satisfaction_field TEXT NOT NULL,       -- '' for none: the deal rows' select depends on it
    covered_since      TEXT NOT NULL,       -- RFC 3339: the rows cover every record changed since
    fetched_at         TEXT NOT NULL,       -- RFC 3339: the "now" of the last complete fetch
    reconciled_at      TEXT NOT NULL,       -- RFC 3339: the last full id reconcile
    runs               INTEGER NOT NULL,    -- complete fetches saved since the last rebuild
    generation         INTEGER NOT NULL     -- bumped by every save: a stale writer is refused
);
CREATE TABLE records (
    portal TEXT NOT NULL,
    entity TEXT NOT NULL CHECK (entity IN ('deal', 'lead', 'activity', 'history', 'product_rows')),
    id     INTEGER NOT NULL,                -- the record's ID; a deal's ID for its product rows
    row    TEXT NOT NULL,                   -- the wire row (JSON), as the portal served it
    PRIMARY KEY (portal, entity, id)
) WITHOUT ROWID;
"#,
    r#"
-- Version 2: rows packed (crm::bitrix24::packed) instead of JSON text. What version 1 held
-- is dropped: the next run fetches everything once.
DROP TABLE records;
DELETE FROM portals;
CREATE TABLE records (
    portal TEXT NOT NULL,
    entity TEXT NOT NULL CHECK (entity IN ('deal', 'lead', 'activity', 'history', 'product_rows')),
    id     INTEGER NOT NULL,                -- the record's ID; a deal's ID for its product rows
    row    BLOB NOT NULL,                   -- the packed wire row; a deal's product rows as one list
    PRIMARY KEY (portal, entity, id)
) WITHOUT ROWID;
"#,
];

/// A cache operation that failed. The caller falls back to a full fetch on any of them.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("failed to open CRM cache {path} ({source})")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("failed to migrate CRM cache {path} to version {version} ({source})")]
    Migrate { path: PathBuf, version: usize, source: rusqlite::Error },
    #[error(
        "failed to open CRM cache {path} (its schema version {found} is newer than this salespulse knows, {known})"
    )]
    TooNew { path: PathBuf, found: usize, known: usize },
    #[error("failed to {action} in CRM cache {path} ({source})")]
    Sql { path: PathBuf, action: String, source: rusqlite::Error },
    #[error("failed to read CRM cache {path} ({detail})")]
    Corrupt { path: PathBuf, detail: String },
    #[error("failed to remove CRM cache file {path} ({source})")]
    Remove { path: PathBuf, source: std::io::Error },
    #[error("failed to create state directory {path} ({source})")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("failed to create CRM cache {path} ({source})")]
    Create { path: PathBuf, source: std::io::Error },
}

impl CacheError {
    /// Another process held the file past the busy timeout: the file itself is fine.
    pub fn is_busy(&self) -> bool {
        let source = match self {
            CacheError::Open { source, .. } | CacheError::Migrate { source, .. } | CacheError::Sql { source, .. } => {
                source
            }
            _ => return false,
        };
        matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// The kinds of cached rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entity {
    Deal,
    Lead,
    Activity,
    /// Deal stage history entries.
    History,
    /// A deal's `crm.deal.productrows.get` rows, as one list keyed by the deal's ID.
    ProductRows,
}

impl Entity {
    pub const ALL: [Entity; 5] = [Entity::Deal, Entity::Lead, Entity::Activity, Entity::History, Entity::ProductRows];

    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Deal => "deal",
            Entity::Lead => "lead",
            Entity::Activity => "activity",
            Entity::History => "history",
            Entity::ProductRows => "product_rows",
        }
    }

    fn parse(s: &str) -> Option<Entity> {
        Entity::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// What the cache knows about one portal besides its rows.
#[derive(Clone, Debug, PartialEq)]
pub struct PortalMeta {
    /// The masked webhook URL.
    pub shown: String,
    pub satisfaction_field: Option<String>,
    /// The rows hold every record of the cached subsets changed since this instant.
    pub covered_since: Timestamp,
    /// The "now" of the last complete fetch.
    pub fetched_at: Timestamp,
    /// The last full id reconcile.
    pub reconciled_at: Timestamp,
    /// Complete fetches saved since the last rebuild.
    pub runs: u64,
}

/// Cached rows by entity, each entity's in ID order: (id, the row's bytes).
pub type CachedRows = BTreeMap<Entity, Vec<(u64, Box<[u8]>)>>;

/// A portal's cache as loaded: its meta, rows by entity in ID order, and the generation a
/// save must still find to be allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedPortal {
    pub meta: PortalMeta,
    pub rows: CachedRows,
    pub generation: i64,
}

/// One complete fetch's changes to a portal's cache.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CacheUpdate {
    /// Drop every row of the portal first (a rebuild).
    pub replace: bool,
    pub upserts: Vec<(Entity, u64, Box<[u8]>)>,
    pub deletes: Vec<(Entity, u64)>,
}

/// An open cache file.
pub struct CrmCache {
    conn: Connection,
    path: PathBuf,
}

/// `portal_key(shown)`: FNV-1a (64 bit) of the masked webhook URL, as 16 hex digits (a
/// fixed algorithm, so keys written by one build are found by the next).
pub fn portal_key(shown: &str) -> String {
    format!("{:016x}", crate::fnv::fnv1a64(shown.as_bytes()))
}

impl CrmCache {
    /// Opens (creating, migrating) `state_dir/crm-cache.sqlite3`.
    pub fn open(state_dir: &Path) -> Result<CrmCache, CacheError> {
        crate::private_fs::create_dir_all(state_dir)
            .map_err(|source| CacheError::Dir { path: state_dir.to_owned(), source })?;
        let path = state_dir.join(CACHE_FILE);
        crate::private_fs::prepare_sqlite(&path).map_err(|source| CacheError::Create { path: path.clone(), source })?;
        let open_err = |source| CacheError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(open_err)?;
        // The first statement that reads the file: a file that is not a database fails here.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).map_err(open_err)?;
        migrate(&mut conn, &path)?;
        Ok(CrmCache { conn, path })
    }

    /// Deletes the cache file (and its WAL) and opens a new, empty one: what a run does
    /// when the file is unreadable, since everything in it can be fetched again.
    pub fn open_fresh(state_dir: &Path) -> Result<CrmCache, CacheError> {
        let path = state_dir.join(CACHE_FILE);
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(CacheError::Remove { path: file, source }),
            }
        }
        CrmCache::open(state_dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, detail: String) -> CacheError {
        CacheError::Corrupt { path: self.path.clone(), detail }
    }

    /// The portal's cache, or `None` when nothing is cached for it.
    pub fn load(&self, portal: &str) -> Result<Option<CachedPortal>, CacheError> {
        let meta = self
            .conn
            .query_row(
                "SELECT shown, satisfaction_field, covered_since, fetched_at, reconciled_at, runs, generation
                 FROM portals WHERE portal = ?1",
                params![portal],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(sql(&self.path, "read the portal's cache state"))?;
        let Some((shown, field, covered, fetched, reconciled, runs, generation)) = meta else { return Ok(None) };
        let time = |what: &str, s: &str| {
            DateTime::parse_from_rfc3339(s).map_err(|e| self.corrupt(format!("{what} {s:?} is not a time: {e}")))
        };
        let meta = PortalMeta {
            shown,
            satisfaction_field: Some(field).filter(|f| !f.is_empty()),
            covered_since: time("covered_since", &covered)?,
            fetched_at: time("fetched_at", &fetched)?,
            reconciled_at: time("reconciled_at", &reconciled)?,
            runs: runs.max(0) as u64,
        };
        let mut rows = CachedRows::new();
        let mut stmt = self
            .conn
            .prepare("SELECT entity, id, row FROM records WHERE portal = ?1 ORDER BY entity, id")
            .map_err(sql(&self.path, "read cached records"))?;
        let mut found = stmt.query(params![portal]).map_err(sql(&self.path, "read cached records"))?;
        while let Some(r) = found.next().map_err(sql(&self.path, "read cached records"))? {
            let entity = r.get_ref(0).map_err(sql(&self.path, "read cached records"))?;
            let entity = entity.as_str().ok().and_then(Entity::parse).ok_or_else(|| {
                self.corrupt(format!("unknown entity {:?}", String::from_utf8_lossy(entity.as_bytes().unwrap_or(b""))))
            })?;
            let id: i64 = r.get(1).map_err(sql(&self.path, "read cached records"))?;
            let row = r.get_ref(2).map_err(sql(&self.path, "read cached records"))?;
            let row = row
                .as_blob()
                .map_err(|_| self.corrupt(format!("the {} row {id} is not a packed row", entity.as_str())))?;
            rows.entry(entity).or_default().push((id as u64, row.into()));
        }
        Ok(Some(CachedPortal { meta, rows, generation }))
    }

    /// Applies one complete fetch's changes in one transaction. `expected` is the generation
    /// the fetch started from (`None`: it found no cache). Returns `false`, writing nothing,
    /// when another run saved in between: its state stands, and this run's changes, computed
    /// against an older one, could only make it inconsistent.
    pub fn save(
        &mut self,
        portal: &str,
        meta: &PortalMeta,
        expected: Option<i64>,
        update: &CacheUpdate,
    ) -> Result<bool, CacheError> {
        let path = self.path.clone();
        let err = |action: &str| sql(&path, action);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("start saving"))?;
        let current: Option<i64> = tx
            .query_row("SELECT generation FROM portals WHERE portal = ?1", params![portal], |r| r.get(0))
            .optional()
            .map_err(err("read the portal's generation"))?;
        if current != expected && !update.replace {
            return Ok(false);
        }
        if update.replace {
            tx.execute("DELETE FROM records WHERE portal = ?1", params![portal]).map_err(err("clear the portal"))?;
        }
        {
            let mut delete = tx
                .prepare("DELETE FROM records WHERE portal = ?1 AND entity = ?2 AND id = ?3")
                .map_err(err("delete records"))?;
            for (entity, id) in &update.deletes {
                delete.execute(params![portal, entity.as_str(), *id as i64]).map_err(err("delete records"))?;
            }
            let mut upsert = tx
                .prepare(
                    "INSERT INTO records (portal, entity, id, row) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (portal, entity, id) DO UPDATE SET row = excluded.row",
                )
                .map_err(err("write records"))?;
            for (entity, id, row) in &update.upserts {
                upsert.execute(params![portal, entity.as_str(), *id as i64, &row[..]]).map_err(err("write records"))?;
            }
        }
        tx.execute(
            "INSERT INTO portals (portal, shown, satisfaction_field, covered_since, fetched_at, reconciled_at, runs, generation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)
             ON CONFLICT (portal) DO UPDATE SET shown = excluded.shown, satisfaction_field = excluded.satisfaction_field,
                 covered_since = excluded.covered_since, fetched_at = excluded.fetched_at,
                 reconciled_at = excluded.reconciled_at, runs = excluded.runs, generation = portals.generation + 1",
            params![
                portal,
                meta.shown,
                meta.satisfaction_field.clone().unwrap_or_default(),
                meta.covered_since.to_rfc3339(),
                meta.fetched_at.to_rfc3339(),
                meta.reconciled_at.to_rfc3339(),
                meta.runs as i64,
            ],
        )
        .map_err(err("write the portal's cache state"))?;
        tx.commit().map_err(err("commit"))?;
        Ok(true)
    }

    /// Forgets a portal (its rows and state).
    pub fn clear(&mut self, portal: &str) -> Result<(), CacheError> {
        let tx = self.conn.transaction().map_err(sql(&self.path, "start clearing"))?;
        tx.execute("DELETE FROM records WHERE portal = ?1", params![portal])
            .map_err(sql(&self.path, "clear records"))?;
        tx.execute("DELETE FROM portals WHERE portal = ?1", params![portal])
            .map_err(sql(&self.path, "clear the portal"))?;
        tx.commit().map_err(sql(&self.path, "commit"))
    }
}

fn sql(path: &Path, action: &str) -> impl FnOnce(rusqlite::Error) -> CacheError + use<> {
    let (path, action) = (path.to_owned(), action.to_owned());
    move |source| CacheError::Sql { path, action, source }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), CacheError> {
    super::run_migrations(conn, MIGRATIONS).map_err(|failure| match failure {
        MigrationFailure::Read(source) => CacheError::Open { path: path.to_owned(), source },
        MigrationFailure::TooNew { found, known } => CacheError::TooNew { path: path.to_owned(), found, known },
        MigrationFailure::Step { version, source } => CacheError::Migrate { path: path.to_owned(), version, source },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(bytes: &[u8]) -> Box<[u8]> {
        bytes.into()
    }

    fn meta(runs: u64) -> PortalMeta {
        let t = DateTime::parse_from_rfc3339("2026-11-23T08:00:00+03:00").unwrap();
        PortalMeta {
            shown: "https://acme.bitrix24.ru/rest/1/***/".into(),
            satisfaction_field: Some("UF_CRM_CSAT".into()),
            covered_since: t - chrono::Duration::days(400),
            fetched_at: t,
            reconciled_at: t,
            runs,
        }
    }

    #[test]
    fn portal_keys_are_the_fnv1a_of_the_masked_url() {
        // FNV-1a's reference vector for "a" (draft-eastlake-fnv): keys of earlier builds stay.
        assert_eq!(portal_key("a"), "af63dc4c8601ec8c");
        assert_eq!(portal_key("x").len(), 16);
    }

    #[test]
    fn saved_rows_and_state_come_back_and_a_stale_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = CrmCache::open(dir.path()).unwrap();
        assert_eq!(cache.load("p").unwrap(), None);
        let first = CacheUpdate {
            replace: true,
            upserts: vec![(Entity::Deal, 7, row(b"seven")), (Entity::Lead, 3, row(b"three"))],
            deletes: vec![],
        };
        assert!(cache.save("p", &meta(1), None, &first).unwrap());
        let loaded = cache.load("p").unwrap().unwrap();
        assert_eq!(loaded.meta, meta(1));
        assert_eq!(loaded.rows[&Entity::Deal], vec![(7, row(b"seven"))]);
        let second = CacheUpdate {
            replace: false,
            upserts: vec![(Entity::Deal, 7, row(b"seven, changed"))],
            deletes: vec![(Entity::Lead, 3)],
        };
        assert!(cache.save("p", &meta(2), Some(loaded.generation), &second).unwrap());
        // A run that started from the first state may not write over the second.
        assert!(!cache.save("p", &meta(3), Some(loaded.generation), &second).unwrap());
        drop(cache);
        let again = CrmCache::open(dir.path()).unwrap().load("p").unwrap().unwrap();
        assert_eq!(again.meta.runs, 2);
        assert_eq!(again.rows[&Entity::Deal], vec![(7, row(b"seven, changed"))]);
        assert!(!again.rows.contains_key(&Entity::Lead));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CACHE_FILE), b"this is not a SQLite database, just bytes ".repeat(100)).unwrap();
        assert!(CrmCache::open(dir.path()).and_then(|c| c.load("p")).is_err());
        let fresh = CrmCache::open_fresh(dir.path()).unwrap();
        assert_eq!(fresh.load("p").unwrap(), None);
    }
}
