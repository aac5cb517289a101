//! Private by default (issue 11, point 1): everything salespulse writes is 0600 and every
//! folder it creates 0700, under the usual umask 022, through the real binary.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_salespulse");
const DEMO_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/salespulse.toml");

/// The binary started from a shell that set umask 022 first, as a login shell does.
fn under_umask_022(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("/bin/sh");
    c.current_dir(dir)
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg("--config")
        .arg(DEMO_CONFIG)
        .args(args)
        .env("SALESPULSE_LOG", "warn");
    c
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Every file and folder under `root` (not `root` itself) with its mode.
fn modes(root: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut found = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue }; // removed meanwhile
            let path = entry.path();
            if meta.is_dir() {
                todo.push(path.clone());
            }
            found.push((path.strip_prefix(root).unwrap().to_owned(), meta.is_dir(), meta.mode() & 0o7777));
        }
    }
    found.sort();
    found
}

fn assert_private(root: &Path, must_exist: &[&str]) {
    let found = modes(root);
    let wrong: Vec<String> = found
        .iter()
        .filter(|(_, dir, mode)| *mode != if *dir { 0o700 } else { 0o600 })
        .map(|(p, dir, mode)| format!("{} {} {mode:o}", if *dir { "dir" } else { "file" }, p.display()))
        .collect();
    assert!(wrong.is_empty(), "not private under umask 022:\n{}", wrong.join("\n"));
    for pattern in must_exist {
        assert!(
            found.iter().any(|(p, _, _)| p.to_string_lossy().contains(pattern)),
            "nothing matching {pattern} was written: {found:?}"
        );
    }
}

#[test]
fn every_file_salespulse_writes_is_private_under_umask_022() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    let written = ok(under_umask_022(root, &["report", "manager-weekly", "--period", "2026-W47", "--out", "out"])
        .output()
        .unwrap());
    assert!(written.lines().count() >= 8, "{written}");
    ok(under_umask_022(root, &["send", "manager-weekly", "--period", "2026-W47", "--out", "sent"]).output().unwrap());
    ok(under_umask_022(root, &["status"]).output().unwrap());
    assert_private(
        root,
        &[
            "out/manager-weekly/2026-W47/",
            ".pdf",
            ".json",
            "sent/manager-weekly/2026-W47/",
            "state/salespulse.sqlite3",
            "state/crm-cache.sqlite3",
            "state/reports/",
            "outbox/",
            ".eml",
        ],
    );

    // The daemon, while it holds both databases open: their WAL and shared-memory files too.
    let mut daemon = under_umask_022(root, &["run"]).stdin(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let state = root.join("state");
    let companions = ["salespulse.sqlite3-wal", "salespulse.sqlite3-shm"];
    for _ in 0..300 {
        if companions.iter().all(|f| state.join(f).exists()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = std::panic::catch_unwind(|| assert_private(root, &companions));
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    result.unwrap();
}

#[test]
fn files_an_older_version_left_readable_are_made_private_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    ok(under_umask_022(root, &["send", "manager-weekly", "--period", "2026-W47"]).output().unwrap());
    // What main wrote: the databases 0644.
    for f in ["state/salespulse.sqlite3", "state/crm-cache.sqlite3"] {
        std::fs::set_permissions(root.join(f), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    ok(under_umask_022(root, &["send", "manager-weekly", "--period", "2026-W47"]).output().unwrap());
    for f in ["state/salespulse.sqlite3", "state/crm-cache.sqlite3"] {
        assert_eq!(std::fs::metadata(root.join(f)).unwrap().mode() & 0o777, 0o600, "{f}");
    }
}
