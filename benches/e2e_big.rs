//! End to end on the big portal (issue 6, item 5): the README's main command, `salespulse
//! send manager-weekly --out out`, run as the release binary against the Bitrix24 emulator
//! serving the portal of issue 3 (500 managers, 200 000 deals, 300 000 leads, 1 000 000
//! activities, 1 000 000 stage-history rows) divided by DIVISOR (default 1).
//!
//! The emulator runs in this process; the binary runs as a child in a fresh temporary
//! directory with a config written there: the embedded demo config with `crm.source =
//! "bitrix24"` and the webhook pointing at the emulator, state, outbox and `--out` inside
//! that directory (so the CRM cache and the delivery ledger start empty: a first run). The
//! child gets `--period 2026-W47`, the period the synthetic data ends with; that is the only
//! difference from the README's command. `/usr/bin/time -v` measures the child's wall time,
//! CPU time and peak RSS; the child's own log timestamps split its run into start-up, fetch,
//! KPI, render and delivery.
//!
//! Limits are Bitrix24's defaults on both sides (2 requests/s, burst 50), or lifted on both
//! sides with `--lifted` (then the run shows what the work itself costs).
//!
//! `cargo bench --bench e2e_big -- [DIVISOR] [--lifted]`. It builds the binary first with
//! `cargo build --release --bin salespulse`. Nothing here passes or fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::fetch_core;
use common::measure::{self, Table, mib, secs};
use common::synth;
use salespulse::crm::emulator::EmulatorOptions;

/// The job and the period the synthetic data ends with (its slot is Monday 2026-11-23 08:00).
const JOB: &str = "manager-weekly";
const PERIOD: &str = "2026-W47";

/// The rate and burst both sides get with `--lifted`.
const LIFTED_RATE: f64 = 1e6;
const LIFTED_BURST: u32 = 1_000_000;

fn main() {
    let divisor = measure::size_arg(1).max(1);
    let lifted = measure::flag("--lifted");
    println!("salespulse end to end on the big portal\nmachine: {}", measure::machine());
    let bin = build_binary();
    println!("binary: {} (commit {})", bin.display(), commit());

    let spec = synth::Spec::issue3().scaled_down(divisor);
    let t = Instant::now();
    let company = synth::company(&spec, true);
    let portal = company.portal.expect("asked for the wire form");
    drop(company.snapshot);
    println!("portal: {} (generated in {}, RSS {})", spec.describe(), secs(t.elapsed()), mib(measure::rss_kib()));

    let options = if lifted {
        EmulatorOptions { rate_per_sec: LIFTED_RATE, burst: LIFTED_BURST, ..EmulatorOptions::default() }
    } else {
        EmulatorOptions::default()
    };
    let limits = format!("{} requests/s, burst {}", options.rate_per_sec, options.burst);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let emulator = rt.block_on(fetch_core::serve(portal, options));

    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("salespulse.toml");
    std::fs::write(&config, config_text(&emulator.webhook_url(), dir.path(), lifted)).expect("the config is written");
    salespulse::config::Config::load(&config).expect("the written config is valid");
    let out = dir.path().join("out");
    let timing = dir.path().join("time.txt");
    let stdout = std::fs::File::create(dir.path().join("stdout.txt")).expect("a file for the child's stdout");
    let stderr = std::fs::File::create(dir.path().join("stderr.txt")).expect("a file for the child's stderr");
    let before = measure::rss_kib();
    measure::reset_peak();
    let load_before = load();

    #[allow(clippy::disallowed_methods)] // The child's log stamps are wall-clock; its start is too.
    let started_at = Utc::now();
    let t = Instant::now();
    let mut child = Command::new("/usr/bin/time")
        .arg("-v")
        .arg("-o")
        .arg(&timing)
        .arg(&bin)
        .arg("--config")
        .arg(&config)
        .args(["send", JOB, "--period", PERIOD, "--out"])
        .arg(&out)
        .current_dir(dir.path())
        // Plain log lines on stderr, whatever the caller's environment says; the client's
        // debug line per call marks when the last Bitrix24 call left.
        .env("SALESPULSE_LOG", "info,salespulse::crm::bitrix24=debug")
        .env_remove("JOURNAL_STREAM")
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("/usr/bin/time runs (apt-get install time)");
    let (status, samples) = watch(&mut child);
    let wall = t.elapsed();
    let load_after = load();
    let stats = emulator.stats();
    let peak_here = measure::peak_kib();
    rt.block_on(emulator.shutdown());

    let time = std::fs::read_to_string(&timing).unwrap_or_default();
    let field = |name: &str| {
        time.lines()
            .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(": ").map(str::to_owned))
            .unwrap_or_default()
    };
    let log = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
    let printed = std::fs::read_to_string(dir.path().join("stdout.txt")).unwrap_or_default();
    let (pdfs, pdf_bytes) = files(&out, "pdf");
    let (emails, email_bytes) = files(&dir.path().join("outbox"), "eml");

    let mut table = Table::new(
        &format!("`salespulse send {JOB} --period {PERIOD} --out DIR`, first run (empty cache and ledger), {limits}"),
        &["what", "value"],
    );
    let mut row = |what: &str, value: String| {
        table.row(vec![what.to_owned(), value]);
    };
    row("exit status", status.to_string());
    row("wall (measured here)", secs(wall));
    row("wall (/usr/bin/time)", field("Elapsed (wall clock) time (h:mm:ss or m:ss)"));
    row("user + system CPU", format!("{} s + {} s", field("User time (seconds)"), field("System time (seconds)")));
    row("CPU share", field("Percent of CPU this job got"));
    row(
        "peak RSS of salespulse",
        field("Maximum resident set size (kbytes)").parse::<u64>().map(mib).unwrap_or_else(|_| "?".into()),
    );
    row("PDFs written (--out)", format!("{pdfs} ({} MiB)", pdf_bytes / (1 << 20)));
    row("e-mails in the outbox", format!("{emails} ({} MiB)", email_bytes / (1 << 20)));
    row(
        "emulator: requests, commands, refused by its bucket",
        format!("{}, {}, {}", stats.requests, stats.commands, stats.rate_limited),
    );
    row("emulator: server time (summed)", secs(stats.server_time));
    row("this process (emulator + portal): RSS before, peak during", format!("{}, {}", mib(before), mib(peak_here)));
    row("load average (1, 5, 15 min) before, after", format!("{load_before}; {load_after}"));
    print!("{}", table.render());
    print!("{}", phases(&log, started_at, wall, &samples));
    print!("{}", silences(&log, started_at, wall));

    println!("\nthe child's log, the lines sent once per call and per e-mail counted, not shown:");
    let repeated = ["Calling Bitrix24.", "Report sent."];
    for line in log.lines().filter(|l| !repeated.iter().any(|r| l.contains(r))) {
        println!("  {line}");
    }
    for r in repeated {
        println!("  ... {} \"{r}\" lines", log.lines().filter(|l| l.contains(r)).count());
    }
    println!("the child's stdout, last lines:");
    let lines: Vec<&str> = printed.lines().collect();
    for line in &lines[lines.len().saturating_sub(3)..] {
        println!("  {line}");
    }
}

/// Builds the release binary (a no-op when it is up to date) and returns its path.
fn build_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "salespulse"])
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "failed to build the release binary ({status})");
    root.join("target/release/salespulse")
}

/// The commit the work tree is at, and the files under `src/` it changes on top of it (the
/// tree is shared: the binary holds whatever was there when it was built).
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let head = git(&["log", "-1", "--format=%h %s"]);
    let changed = git(&["diff", "--name-only", "HEAD", "--", "src"]);
    if changed.is_empty() {
        head
    } else {
        format!("{head}; uncommitted changes in {}", changed.lines().collect::<Vec<_>>().join(", "))
    }
}

/// The embedded demo config with the CRM switched to the emulator's webhook, state and outbox
/// inside `dir`, and with `lifted` the client's bucket raised to the emulator's. The demo
/// config's scope (department 3 with sub-departments) already holds the synthetic teams.
fn config_text(webhook: &str, dir: &Path, lifted: bool) -> String {
    let mut crm = format!("source = \"bitrix24\"\nwebhook_url = \"{webhook}\"");
    if lifted {
        crm.push_str(&format!("\nrate_limit_per_sec = {LIFTED_RATE:.1}\nrate_limit_burst = {LIFTED_BURST}"));
    }
    let path = |name: &str| dir.join(name).display().to_string();
    let mut text = salespulse::config::EMBEDDED_DEFAULT.to_owned();
    for (from, to) in [
        ("source = \"demo\"", crm),
        ("state_dir = \"state\"", format!("state_dir = \"{}\"", path("state"))),
        ("outbox_dir = \"outbox\"", format!("outbox_dir = \"{}\"", path("outbox"))),
    ] {
        assert!(text.contains(from), "the embedded config has {from}");
        text = text.replacen(from, &to, 1);
    }
    text
}

/// The machine's load average: other people's builds share its cores.
fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Files under `dir` (recursively) ending in `.ext`: how many and their bytes.
fn files(dir: &Path, ext: &str) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    let mut found = (0, 0);
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            let (n, bytes) = files(&path, ext);
            found = (found.0 + n, found.1 + bytes);
        } else if path.extension().is_some_and(|e| e == ext) {
            found = (found.0 + 1, found.1 + entry.metadata().map(|m| m.len()).unwrap_or(0));
        }
    }
    found
}

/// How often [`watch`] reads the child's resident memory.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Waits for `/usr/bin/time` to finish, reading salespulse's (its child's) `VmRSS` every
/// [`SAMPLE_EVERY`] on the way: (UTC instant, KiB) pairs, to place the peak in a stage.
fn watch(time: &mut std::process::Child) -> (std::process::ExitStatus, Vec<(DateTime<Utc>, u64)>) {
    let children = format!("/proc/{0}/task/{0}/children", time.id());
    let mut samples = Vec::new();
    loop {
        if let Some(status) = time.try_wait().expect("waiting for /usr/bin/time works") {
            return (status, samples);
        }
        let pid = std::fs::read_to_string(&children).ok().and_then(|s| s.split_whitespace().next().map(str::to_owned));
        let rss = pid
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned())))
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok());
        // 0 while `/usr/bin/time` has forked but not yet exec'd salespulse.
        if let Some(kib) = rss.filter(|kib| *kib > 0) {
            #[allow(clippy::disallowed_methods)] // Matched against the child's wall-clock log stamps.
            samples.push((Utc::now(), kib));
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// What a person watching the child's stderr without a terminal sees at the default level
/// (`info`: the debug lines per call left out): how long the log stays silent at most, with
/// the progress lines (issue 13, goal 5) and without them, as the log was before them.
fn silences(log: &str, started_at: DateTime<Utc>, wall: Duration) -> String {
    let stamp = |line: &str| {
        line.split_whitespace().next().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
    };
    let end = started_at + chrono::Duration::from_std(wall).unwrap_or_default();
    let info: Vec<&str> = log.lines().filter(|l| stamp(l).is_some() && !l.contains(" DEBUG ")).collect();
    let longest = |lines: &[&str]| {
        let mut stamps: Vec<DateTime<Utc>> = lines.iter().filter_map(|l| stamp(l)).collect();
        stamps.insert(0, started_at);
        stamps.push(end);
        stamps.windows(2).map(|w| (w[1] - w[0]).to_std().unwrap_or_default()).max().unwrap_or_default()
    };
    let progress = |l: &&str| l.contains("salespulse::progress");
    let without: Vec<&str> = info.iter().copied().filter(|l| !progress(l)).collect();
    let mut table = Table::new(
        "What a person sees on stderr without a terminal (log at info)",
        &["log", "lines", "longest silence"],
    );
    table.row(vec![
        "with the progress lines (one per stage, one every 30 s of fetch)".to_owned(),
        info.len().to_string(),
        secs(longest(&info)),
    ]);
    table.row(vec![
        "without them (the log before issue 13 goal 5)".to_owned(),
        without.len().to_string(),
        secs(longest(&without)),
    ]);
    table.render()
}

/// The child's run split at its log lines: each stage from the previous mark to the first
/// line with its message (the last, for the per-call and per-e-mail lines), by the lines' UTC
/// stamps, with the highest RSS sampled in it.
fn phases(log: &str, started_at: DateTime<Utc>, wall: Duration, samples: &[(DateTime<Utc>, u64)]) -> String {
    let stamp = |line: &str| {
        line.split_whitespace().next().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
    };
    let first = |message: &str| log.lines().find(|l| l.contains(message)).and_then(stamp);
    let last = |message: &str| log.lines().rev().find(|l| l.contains(message)).and_then(stamp);
    let end = started_at + chrono::Duration::from_std(wall).unwrap_or_default();
    let marks = [
        ("start-up: config, ledger, renderer", first("Fetching CRM records")),
        ("fetch: Bitrix24 calls, until the last one left", last("Calling Bitrix24.")),
        ("fetch: its answer, assembling, saving the CRM cache", first("CRM records fetched")),
        ("KPI: every manager's report data", first("Report data computed.")),
        ("charts + render + writing --out, until the first e-mail", first("Report sent.")),
        ("delivery: the rest of the e-mails", last("Report sent.")),
        ("exit", Some(end)),
    ];
    let mut table = Table::new(
        &format!("Where the child's time and memory went (log stamps; RSS read every {})", measure::ms(SAMPLE_EVERY)),
        &["stage", "time", "peak RSS"],
    );
    let mut previous = started_at;
    for (stage, mark) in marks {
        let Some(at) = mark else {
            table.row(vec![stage.to_owned(), "(no log line)".to_owned()]);
            continue;
        };
        let peak = samples.iter().filter(|(t, _)| *t >= previous && *t <= at).map(|(_, kib)| *kib).max();
        table.row(vec![
            stage.to_owned(),
            secs((at - previous).to_std().unwrap_or_default()),
            peak.map(mib).unwrap_or_default(),
        ]);
        previous = at;
    }
    table.render()
}
