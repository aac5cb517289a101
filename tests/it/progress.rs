//! Progress a person can see (issue 13, goal 5), through the real binary against the demo
//! portal served by the emulator: under a pseudo-terminal `send` draws a bar on stderr for
//! each stage (fetch, KPI, charts+render, delivery) with requests of expected, rows, elapsed
//! and time left; into a pipe it logs one line per stage and no escape code; standard output
//! is the same byte for byte either way, and neither shows the webhook code. Through the
//! library: the requests counted are the requests the portal served.
//!
//! The bar's text and the 30 s fetch line (on tokio's paused clock) are tested in
//! `src/progress/tests.rs`.

use std::io::Read as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use salespulse::config::Secret;
use salespulse::crm::CrmSource as _;
use salespulse::crm::bitrix24::{Bitrix24Client, ClientSettings};
use salespulse::progress::{LOG_EVERY, Progress};

use crate::support::bin::{BIN, DEMO_CONFIG};
use crate::support::crm::{demo_emulator, portal_config};
use crate::support::reference::moscow;

/// A pseudo-terminal, 160 columns wide: (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize { ws_row: 40, ws_col: 160, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes two descriptors it opened into the two ints, which we own from here.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both were just opened by openpty and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// `salespulse --config CONFIG send manager-weekly --period 2026-W47 --out out` in `dir`,
/// logging at `info`, outside systemd.
fn send(dir: &Path, config: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .arg("--config")
        .arg(config)
        .args(["send", "manager-weekly", "--period", "2026-W47", "--out", "out"])
        .env("SALESPULSE_LOG", "info")
        .env("TERM", "xterm")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    command
}

/// Runs `command` with stderr on a pseudo-terminal: its output, and what the terminal got.
fn on_a_terminal(mut command: Command) -> (Output, String) {
    let (master, slave) = pty();
    command.stdout(Stdio::piped()).stderr(Stdio::from(slave));
    let child = command.spawn().expect("the binary runs");
    // Our copy of the slave goes with the command, so the terminal ends with the child.
    drop(command);
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut seen = Vec::new();
        let mut buf = [0u8; 8192];
        // EIO once the child closed the last slave descriptor.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        seen
    });
    let output = child.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    (output, seen)
}

#[test]
fn send_shows_a_bar_on_a_terminal_and_a_line_per_stage_in_a_pipe_and_stdout_is_the_same() {
    let (runtime, emulator) = demo_emulator(moscow(2026, 11, 23, 8));
    let url = emulator.webhook_url();
    let code = url.trim_end_matches('/').rsplit('/').next().unwrap().to_owned();
    assert!(code.len() >= 8, "the webhook has a code: {url}");

    let piped = tempfile::tempdir().unwrap();
    let config = portal_config(piped.path(), &emulator);
    let plain = send(piped.path(), &config).output().unwrap();
    let terminal = tempfile::tempdir().unwrap();
    let config = portal_config(terminal.path(), &emulator);
    let (tty, seen) = on_a_terminal(send(terminal.path(), &config));
    runtime.block_on(emulator.shutdown());

    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success() && tty.status.success(), "{stderr}\n{seen}");
    assert_eq!(
        String::from_utf8_lossy(&tty.stdout),
        String::from_utf8_lossy(&plain.stdout),
        "stdout is the same on a terminal"
    );
    assert_eq!(tty.stdout, plain.stdout);
    assert!(String::from_utf8_lossy(&plain.stdout).starts_with("out/manager-weekly/2026-W47/"));

    // In a pipe: a line per stage, in order, and no bar.
    assert!(!stderr.contains('\u{1b}'), "no escape codes in a pipe: {stderr:?}");
    assert!(!["/~", " [#", " [-"].iter().any(|bar| stderr.contains(bar)), "no bar in a pipe: {stderr}");
    let stages = [
        "manager-weekly 2026-W47: fetch (after 0 requests, 0 rows; ",
        "manager-weekly 2026-W47: KPI (after ",
        "manager-weekly 2026-W47: charts+render of 8 reports (after ",
        "manager-weekly 2026-W47: delivery of 8 messages (after ",
    ];
    let mut at = 0;
    for stage in stages {
        assert_eq!(stderr.matches(stage).count(), 1, "{stage}\n{stderr}");
        let found = stderr.find(stage).unwrap();
        assert!(found > at, "stages in order: {stage}\n{stderr}");
        at = found;
    }
    assert_eq!(stderr.lines().filter(|l| l.contains("salespulse::progress")).count(), 4, "{stderr}");

    // On the terminal: each stage's bar with its counts, the elapsed time and the time left.
    for needle in [
        "manager-weekly 2026-W47 fetch [",
        " requests, ",
        " rows, ",
        " elapsed, ~",
        " left",
        "manager-weekly 2026-W47 KPI ",
        "manager-weekly 2026-W47 charts+render [",
        "/8 reports, ",
        "manager-weekly 2026-W47 delivery [",
        "] 8/8 messages, ",
    ] {
        assert!(seen.contains(needle), "{needle:?} on the terminal:\n{seen}");
    }
    assert!(!seen.contains("salespulse::progress"), "no stage lines beside the bar: {seen}");
    assert!(seen.contains("Report sent."), "log lines still print, above the bar: {seen}");
    for out in [&seen, &stderr.to_string()] {
        assert!(!out.contains(&code), "the webhook code never shows: {out}");
    }
}

/// Under systemd (`JOURNAL_STREAM` set) there is no bar, even on a terminal.
#[test]
fn under_systemd_there_is_no_bar_even_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .current_dir(dir.path())
        .arg("--config")
        .arg(DEMO_CONFIG)
        .args(["report", "department-monthly", "--period", "2026-10", "--out", "out"])
        .env("SALESPULSE_LOG", "info")
        .env("TERM", "xterm")
        .env("JOURNAL_STREAM", "8:4242")
        .stdin(Stdio::null());
    let (out, seen) = on_a_terminal(command);
    assert!(out.status.success(), "{seen}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("2026-10 "), "the report is written");
    assert!(!["/~", " [#", " [-"].iter().any(|bar| seen.contains(bar)), "no bar under systemd: {seen}");
}

/// The client counts into the handle its settings carry: every request the portal served,
/// and once the lists are walked, as many expected as were made.
#[tokio::test]
async fn the_requests_counted_are_the_requests_the_portal_served() {
    let slot = moscow(2026, 11, 23, 8);
    let emulator = salespulse::crm::emulator::Emulator::start(
        salespulse::crm::demo::portal(slot),
        crate::support::crm::fast_portal(),
    )
    .await
    .unwrap();
    let progress = Progress::log_lines(LOG_EVERY);
    let settings =
        ClientSettings { rate_per_sec: 10_000.0, burst: 10_000, progress: progress.clone(), ..Default::default() };
    let client = Bitrix24Client::new(&Secret::new(emulator.webhook_url()), settings).unwrap();
    let request = salespulse::crm::FetchRequest {
        since: (slot - chrono::Duration::weeks(14)).fixed_offset(),
        until: slot.fixed_offset(),
        period_start: (slot - chrono::Duration::weeks(1)).fixed_offset(),
        scope: salespulse::domain::Scope { departments: vec![3], managers: vec![], include_subdepartments: true },
        satisfaction_field: None,
    };
    let _shown = progress.begin("fetch test");
    let snapshot = client.fetch(&request).await.unwrap();
    let served = emulator.stats().requests;
    emulator.shutdown().await;
    let counts = progress.counts();
    assert!(served > 2, "{served}");
    assert_eq!(counts.requests, served);
    assert_eq!(counts.requests, client.requests_made());
    assert_eq!(counts.expected, counts.requests, "the estimate ends at what was made");
    let records = (snapshot.deals.len() + snapshot.leads.len() + snapshot.activities.len()) as u64;
    assert!(counts.rows >= records, "rows {} for {records} records", counts.rows);
}
