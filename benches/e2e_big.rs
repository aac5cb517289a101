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
//! difference from the README's command. Then the same command runs again in the same
//! directory: a second run, on the CRM cache the first left (a few requests) and its ledger
//! (every e-mail skipped as sent; the reports are still computed and rendered for `--out`).
//! `/usr/bin/time -v` measures each run's wall time, CPU time and peak RSS; the child's own
//! log timestamps split a run into start-up, fetch, KPI, render and delivery, with the CPU
//! and the peak RSS of each stage read from `/proc` every 50 ms.
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
    let runs = [
        ("first run (empty cache and ledger)", "first"),
        ("second run (the CRM cache and the ledger of the first: every e-mail skipped as sent)", "second"),
    ];
    for (what, name) in runs {
        let before = emulator.stats();
        let run = Run::go(&bin, &config, dir.path(), name);
        let after = emulator.stats();
        let served = vec![
            (
                "emulator: requests, commands, refused by its bucket",
                format!(
                    "{}, {}, {}",
                    after.requests - before.requests,
                    after.commands - before.commands,
                    after.rate_limited - before.rate_limited
                ),
            ),
            ("emulator: server time (summed)", secs(after.server_time.saturating_sub(before.server_time))),
        ];
        run.print(&format!("`salespulse send {JOB} --period {PERIOD} --out DIR`, {what}, {limits}"), served);
    }
    rt.block_on(emulator.shutdown());
}

/// One run of the child: what `/usr/bin/time` and the samples of `/proc` said.
struct Run {
    dir: PathBuf,
    name: &'static str,
    status: std::process::ExitStatus,
    wall: Duration,
    started_at: DateTime<Utc>,
    samples: Vec<Sample>,
    /// This process (emulator and portal): RSS before, peak during.
    rss_here: (u64, u64),
    load: (String, String),
}

impl Run {
    /// Runs the README command once in `dir` (its files named after `name`).
    fn go(bin: &Path, config: &Path, dir: &Path, name: &'static str) -> Run {
        let out = dir.join(format!("out-{name}"));
        let file = |what: &str| std::fs::File::create(dir.join(format!("{what}-{name}.txt"))).expect("a file");
        let before = measure::rss_kib();
        measure::reset_peak();
        let load_before = load();
        #[allow(clippy::disallowed_methods)] // The child's log stamps are wall-clock; its start is too.
        let started_at = Utc::now();
        let t = Instant::now();
        let mut child = Command::new("/usr/bin/time")
            .arg("-v")
            .arg("-o")
            .arg(dir.join(format!("time-{name}.txt")))
            .arg(bin)
            .arg("--config")
            .arg(config)
            .args(["send", JOB, "--period", PERIOD, "--out"])
            .arg(&out)
            .current_dir(dir)
            // Plain log lines on stderr, whatever the caller's environment says; the client's
            // debug line per call marks when the last Bitrix24 call left.
            .env("SALESPULSE_LOG", "info,salespulse::crm::bitrix24=debug")
            .env_remove("JOURNAL_STREAM")
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("/usr/bin/time runs (apt-get install time)");
        let (status, samples) = watch(&mut child);
        let wall = t.elapsed();
        Run {
            dir: dir.to_owned(),
            name,
            status,
            wall,
            started_at,
            samples,
            rss_here: (before, measure::peak_kib()),
            load: (load_before, load()),
        }
    }

    fn read(&self, what: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{what}-{}.txt", self.name))).unwrap_or_default()
    }

    /// Prints the run's tables, with `served` (the emulator's side) among the rows.
    fn print(&self, title: &str, served: Vec<(&str, String)>) {
        let time = self.read("time");
        let field = |name: &str| {
            time.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(": ").map(str::to_owned))
                .unwrap_or_default()
        };
        let log = self.read("stderr");
        let printed = self.read("stdout");
        let (pdfs, pdf_bytes) = files(&self.dir.join(format!("out-{}", self.name)), "pdf");
        let (emails, email_bytes) = files(&self.dir.join("outbox"), "eml");

        let mut table = Table::new(title, &["what", "value"]);
        let mut row = |what: &str, value: String| {
            table.row(vec![what.to_owned(), value]);
        };
        row("exit status", self.status.to_string());
        row("wall (measured here)", secs(self.wall));
        row("wall (/usr/bin/time)", field("Elapsed (wall clock) time (h:mm:ss or m:ss)"));
        row("user + system CPU", format!("{} s + {} s", field("User time (seconds)"), field("System time (seconds)")));
        row("CPU share", field("Percent of CPU this job got"));
        row(
            "peak RSS of salespulse",
            field("Maximum resident set size (kbytes)").parse::<u64>().map(mib).unwrap_or_else(|_| "?".into()),
        );
        row("PDFs written (--out)", format!("{pdfs} ({} MiB)", pdf_bytes / (1 << 20)));
        row("e-mails in the outbox (all runs so far)", format!("{emails} ({} MiB)", email_bytes / (1 << 20)));
        for (what, value) in served {
            row(what, value);
        }
        row(
            "this process (emulator + portal): RSS before, peak during",
            format!("{}, {}", mib(self.rss_here.0), mib(self.rss_here.1)),
        );
        row("load average (1, 5, 15 min) before, after", format!("{}; {}", self.load.0, self.load.1));
        print!("{}", table.render());
        print!("{}", phases(&log, self.started_at, self.wall, &self.samples));
        print!("{}", silences(&log, self.started_at, self.wall));

        println!("\nthe child's log, the lines sent once per call and per e-mail counted, not shown:");
        let repeated = ["Calling Bitrix24.", "Report sent.", "Report sent before; skipped."];
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
        println!();
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

/// How often [`watch`] reads the child's resident memory and CPU time.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// One reading of the child: when, its `VmRSS` in KiB, its user + system CPU so far.
type Sample = (DateTime<Utc>, u64, Duration);

/// Waits for `/usr/bin/time` to finish, reading salespulse's (its child's) `VmRSS` and CPU
/// time every [`SAMPLE_EVERY`] on the way, to place the peak and the CPU in a stage.
fn watch(time: &mut std::process::Child) -> (std::process::ExitStatus, Vec<Sample>) {
    let children = format!("/proc/{0}/task/{0}/children", time.id());
    let mut samples = Vec::new();
    loop {
        if let Some(status) = time.try_wait().expect("waiting for /usr/bin/time works") {
            return (status, samples);
        }
        let pid = std::fs::read_to_string(&children).ok().and_then(|s| s.split_whitespace().next().map(str::to_owned));
        let rss = pid
            .as_ref()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_owned())))
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok());
        let cpu = pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()).and_then(|s| {
            // utime and stime (fields 14 and 15), after the `(comm)` that may hold spaces.
            let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(Duration::from_millis(ticks * 10)) // USER_HZ is 100 on Linux
        });
        // 0 while `/usr/bin/time` has forked but not yet exec'd salespulse.
        if let (Some(kib), Some(cpu)) = (rss.filter(|kib| *kib > 0), cpu) {
            #[allow(clippy::disallowed_methods)] // Matched against the child's wall-clock log stamps.
            samples.push((Utc::now(), kib, cpu));
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
/// stamps, with the highest RSS sampled in it and the CPU time the samples saw it take.
fn phases(log: &str, started_at: DateTime<Utc>, wall: Duration, samples: &[Sample]) -> String {
    let stamp = |line: &str| {
        line.split_whitespace().next().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
    };
    let found = |line: &str, messages: &[&str]| messages.iter().any(|m| line.contains(m));
    let first = |messages: &[&str]| log.lines().find(|l| found(l, messages)).and_then(stamp);
    let last = |messages: &[&str]| log.lines().rev().find(|l| found(l, messages)).and_then(stamp);
    let end = started_at + chrono::Duration::from_std(wall).unwrap_or_default();
    let delivered = ["Report sent.", "Report sent before; skipped."];
    let marks = [
        ("start-up: config, ledger, renderer", first(&["Fetching CRM records"])),
        ("fetch: Bitrix24 calls, until the last one left", last(&["Calling Bitrix24."])),
        ("fetch: its answer, assembling, saving the CRM cache", first(&["CRM records fetched"])),
        ("KPI: every manager's report data", first(&["Report data computed."])),
        ("charts + render + writing --out, until the first e-mail", first(&delivered)),
        ("delivery: the rest of the e-mails (or their skips)", last(&delivered)),
        ("exit", Some(end)),
    ];
    let mut table = Table::new(
        &format!(
            "Where the child's time and memory went (log stamps; RSS and CPU read every {})",
            measure::ms(SAMPLE_EVERY)
        ),
        &["stage", "time", "CPU", "peak RSS"],
    );
    // The CPU used by a moment: the last sample at or before it.
    let cpu_at = |at: DateTime<Utc>| samples.iter().take_while(|s| s.0 <= at).last().map(|s| s.2);
    let mut previous = started_at;
    for (stage, mark) in marks {
        let Some(at) = mark else {
            table.row(vec![stage.to_owned(), "(no log line)".to_owned()]);
            continue;
        };
        let peak = samples.iter().filter(|s| s.0 >= previous && s.0 <= at).map(|s| s.1).max();
        let cpu = match (cpu_at(previous), cpu_at(at)) {
            (Some(a), Some(b)) => secs(b.saturating_sub(a)),
            (None, Some(b)) => secs(b),
            _ => String::new(),
        };
        table.row(vec![
            stage.to_owned(),
            secs((at - previous).to_std().unwrap_or_default()),
            cpu,
            peak.map(mib).unwrap_or_default(),
        ]);
        previous = at;
    }
    table.render()
}
