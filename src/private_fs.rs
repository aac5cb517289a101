//! Private by default: every directory salespulse creates is 0700 and every file it writes
//! is 0600, whatever the umask. The reports, the ledger's stored PDFs, the CRM cache and
//! the outbox hold every manager's numbers, deal titles and amounts; nobody but the user
//! salespulse runs as (and root) may read them.
//!
//! Every writer goes through this module. The mode is set explicitly after creation
//! (`fchmod`), not only asked of `open`, so neither a permissive umask (022) nor a strict one
//! (0277) changes it. SQLite creates its `-wal`, `-shm` and `-journal` files with the mode of
//! the database file, so [`prepare_sqlite`] creates the database file 0600 before SQLite
//! opens it, and tightens the files an older version left world-readable.
//!
//! When root writes into a directory owned by another user (an admin running `send` by
//! hand on the daemon's state directory), a new file or directory is given the owner of the
//! directory it is created in, as SQLite does for its journals: a 0600 file owned by root
//! would lock the daemon out of its own state.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The mode of every directory salespulse creates.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file salespulse writes.
pub const FILE_MODE: u32 = 0o600;

/// Sets the process umask to 0077, so that a file a library creates on its own (a temporary
/// file, a journal) is private as well; called once at start-up by the binary. Returns the
/// previous umask.
pub fn restrict_umask() -> u32 {
    // SAFETY: umask(2) cannot fail and touches only the process's file mode creation mask.
    #[allow(clippy::unnecessary_cast)]
    let previous = unsafe { libc::umask(0o077) } as u32;
    previous
}

/// Creates `dir` and its missing parents, each 0700. Directories that exist are left as they
/// are: an admin who made `out/` or the state directory chose its mode.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
            adopt_parent_owner(dir, None);
            Ok(())
        }
        // Created by another process in between.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for writing, creating it (and its directory) if needed, truncated when
/// `truncate`; the file is 0600 afterwards even if it existed with another mode.
pub fn open_file(path: &Path, truncate: bool) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        create_dir_all(dir)?;
    }
    let existed = path.exists();
    let file = OpenOptions::new().create(true).write(true).truncate(truncate).mode(FILE_MODE).open(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    if !existed {
        adopt_parent_owner(path, Some(&file));
    }
    Ok(file)
}

/// Writes `bytes` to `path` (0600), replacing what was there.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    open_file(path, true)?.write_all(bytes)
}

/// Writes `bytes` beside `path` and renames the file into place, so a reader never sees half
/// of it; with `durable` the data is on disk before the rename.
pub fn write_file_atomically(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = open_file(&tmp, true).and_then(|mut file| {
        file.write_all(bytes)?;
        if durable { file.sync_all() } else { Ok(()) }
    });
    match written.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Makes a SQLite database at `path` private before SQLite opens it: creates its directory
/// (0700) and an empty database file (0600; SQLite gives its `-wal`, `-shm` and `-journal`
/// files the database file's mode and owner), and tightens to 0600 the database and
/// companion files an older version left readable to others.
pub fn prepare_sqlite(path: &Path) -> io::Result<()> {
    if !path.exists() {
        // Not truncating: another process may have created it in between.
        drop(open_file(path, false)?);
    }
    for file in sqlite_files(path) {
        if let Ok(meta) = fs::symlink_metadata(&file)
            && meta.is_file()
            && meta.mode() & 0o077 != 0
        {
            // Best effort: a file owned by someone else is theirs to fix; opening it then
            // fails with a clear error if it matters.
            let _ = fs::set_permissions(&file, fs::Permissions::from_mode(FILE_MODE));
        }
    }
    Ok(())
}

/// The database file and the companions SQLite may create beside it.
fn sqlite_files(path: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [path.to_owned(), with("-wal"), with("-shm"), with("-journal")]
}

/// Root creating something in another user's directory hands it to that user (see the
/// module comment). Anyone else creates only what they own, so there is nothing to do.
fn adopt_parent_owner(path: &Path, file: Option<&File>) {
    // SAFETY: geteuid(2) cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let Some(parent) = path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }) else {
        return;
    };
    let Ok(owner) = fs::metadata(parent) else { return };
    if owner.uid() == 0 {
        return;
    }
    let _ = match file {
        Some(f) => std::os::unix::fs::fchown(f, Some(owner.uid()), Some(owner.gid())),
        None => std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn modes_are_exact_whatever_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/c");
        create_dir_all(&nested).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
        }
        let file = nested.join("x.pdf");
        fs::write(&file, b"old").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&file, b"new").unwrap();
        assert_eq!((mode(&file), fs::read(&file).unwrap()), (0o600, b"new".to_vec()));
        let atomic = nested.join("y.eml");
        write_file_atomically(&atomic, b"mail", true).unwrap();
        assert_eq!(mode(&atomic), 0o600);
        assert_eq!(fs::read_dir(&nested).unwrap().count(), 2, "no temporary file left");
    }

    #[test]
    fn sqlite_files_are_created_private_and_old_ones_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state/x.sqlite3");
        prepare_sqlite(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(db.parent().unwrap()), 0o700);
        let wal = dir.path().join("state/x.sqlite3-wal");
        fs::write(&wal, b"").unwrap();
        for p in [&db, &wal] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        }
        prepare_sqlite(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
    }
}
