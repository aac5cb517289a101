//! The daemon over many runs: does `salespulse run` keep its memory, file descriptors and
//! threads flat from one scheduled run to the next (Typst's caches evicted after each document,
//! the emulator's and the client's connections closed)? The real daemon loop drives the real
//! pipeline on the embedded demo config in a fresh temporary directory, RUNS scheduled runs
//! in one process (default 100), with a clock that jumps to each next slot of either job
//! (`manager-weekly` every Monday from 2026-11-23 08:00 Moscow, `department-monthly` on
//! each 1st), so every run is a new period.
//!
//! Only the clock is not the machine's: a `FixedClock` that the driver sets to the next slot
//! of any job, so the loop fires the jobs one after another as it would over months. The
//! loop ticks every 10 ms instead of 20 s and does not talk to systemd; the runner
//! (`PipelineRunner`: the demo portal served by the Bitrix24 emulator, the client, KPI,
//! charts, Typst with its caches emptied after each document, the ledger, `.eml` files into an
//! outbox) is wrapped only to tell the driver when a run has finished; everything else is
//! `salespulse run`.
//!
//! Prints the resident memory after each of the first 10 runs and every 10th run after, both
//! all of it (RSS) and its anonymous part alone (`RssAnon`: the heap and stacks, without the
//! binary's code pages that ran, which issue 13's goal does not count), the peak during each
//! of those runs, open file descriptors and threads, the e-mails written, and the growth of
//! both after warm-up (the first 10 runs) as a least-squares slope.
//! `--all` prints every run. (The daemon hands freed memory back after each job,
//! `daemon::return_freed_memory`; what it holds then is what it uses.)
//!
//! Malloc is set up as `salespulse run` sets it (`memory::tune_for_long_run`: two arenas,
//! fixed trim and mmap thresholds) unless `--glibc-defaults` is given.
//!
//! The PDFs are laid out in worker processes of the `salespulse` binary, as `salespulse run`
//! does (`render_worker`), unless `--render-in-process` is given.
//!
//! `--smaps` lists the anonymous mappings at rest (malloc heaps, stacks).
//!
//! `cargo bench --bench daemon -- [RUNS] [--all] [--glibc-defaults] [--render-in-process] [--smaps]`. Nothing here passes or fails.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use salespulse::config::{Config, JobConfig, MailTransportKind};
use salespulse::daemon::{self, JobRunner, RunOptions};
use salespulse::domain::Period;
use salespulse::mail::AnyMailer;
use salespulse::pipeline::PipelineRunner;
use salespulse::pipeline::deliver::DeliverySummary;
use salespulse::schedule::{self, Clock, FixedClock};
use salespulse::store::{RunRecord, Store};
use tokio::sync::mpsc;

use common::measure::{self, Table, mib, secs};

/// Runs before the curve is judged: the allocator and the CRM cache fill up first.
const WARM_UP: usize = 10;

fn main() -> anyhow::Result<()> {
    let runs = measure::size_arg(100).max(1);
    let all = measure::flag("--all");
    // As `salespulse run` does before its runtime starts, unless asked for glibc's defaults.
    let glibc_defaults = measure::flag("--glibc-defaults");
    if !glibc_defaults {
        salespulse::memory::tune_for_long_run();
    }
    // Logs go where `salespulse run` sends them, formatted the same way, but into a sink.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .try_init();
    println!("salespulse daemon benchmark: {runs} scheduled runs in one process\nmachine: {}", measure::machine());
    println!(
        "malloc: {}",
        if glibc_defaults { "glibc's defaults" } else { "as `salespulse run` sets it (memory::tune_for_long_run)" }
    );
    println!(
        "PDFs laid out: {}",
        if measure::flag("--render-in-process") {
            "in this process (--render-in-process)"
        } else {
            "by `salespulse render-worker` processes, as `salespulse run` does"
        }
    );
    let dir = tempfile::tempdir()?;
    // As `salespulse run` builds it: one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = Instant::now();
    let run = rt.block_on(run(dir.path(), runs, |s| {
        if let Some(e) = &s.error {
            eprintln!("run {} ({} {}) failed: {e}", s.run, s.job, s.period);
        }
    }))?;
    let wall = started.elapsed();
    drop(rt);

    let headers = [
        "run",
        "job",
        "period",
        "sent",
        "wall",
        "RSS after",
        "anonymous after",
        "malloc in use",
        "peak during run",
        "fds",
        "threads",
        "e-mails so far",
    ];
    let mut table = Table::new("The daemon over scheduled runs (RSS after each run, the loop waiting again)", &headers);
    table.row(vec![
        "0".into(),
        "(started, waiting)".into(),
        String::new(),
        String::new(),
        String::new(),
        mib(run.at_rest_kib),
        mib(run.at_rest_anon_kib),
        run.at_rest_heap_kib.map_or("?".into(), mib),
        String::new(),
        run.fds_at_rest.to_string(),
        run.threads_at_rest.to_string(),
        "0".into(),
    ]);
    let n = run.samples.len();
    for s in run.samples.iter().filter(|s| all || s.run <= WARM_UP || s.run % 10 == 0 || s.run == n) {
        table.row(row(s));
    }
    print!("{}", table.render());

    let Some(last) = run.samples.last() else {
        println!("no run finished");
        return Ok(());
    };
    let first = &run.samples[0];
    let failed = run.samples.iter().filter(|s| s.error.is_some()).count();
    let peak = run.samples.iter().map(|s| s.peak_kib).max().unwrap_or(0);
    println!();
    println!("runs: {n} ({failed} failed), e-mails written: {}, wall {}", last.emails, secs(wall));
    println!(
        "RSS: at rest before the first run {}, after run 1 {}, after run {n} {}; peak {} (run {})",
        mib(run.at_rest_kib),
        mib(first.rss_kib),
        mib(last.rss_kib),
        mib(peak),
        run.samples.iter().find(|s| s.peak_kib == peak).map_or(0, |s| s.run)
    );
    println!(
        "anonymous: at rest before the first run {}, after run 1 {}, after run {n} {}",
        mib(run.at_rest_anon_kib),
        mib(first.anon_kib),
        mib(last.anon_kib)
    );
    let (rss, (anon, file), threads, heap) = run.rested;
    println!(
        "at rest {} after the last run: RSS {} ({} anonymous, {} file-backed: code that ran), threads {threads}; malloc holds {} for live allocations",
        secs(REST),
        mib(rss),
        mib(anon),
        mib(file),
        heap.map_or("?".into(), mib)
    );
    println!("goal: < 30 MiB anonymous at rest after the jobs, flat over 300 runs → {} after {n} runs", mib(anon));
    if n > WARM_UP + 1 {
        let after = &run.samples[WARM_UP..];
        println!("after warm-up (runs {}..{n}):", WARM_UP + 1);
        println!("  RSS: {}", growth(&after.iter().map(|s| s.rss_kib).collect::<Vec<_>>()));
        println!("  anonymous: {}", growth(&after.iter().map(|s| s.anon_kib).collect::<Vec<_>>()));
        let live: Vec<u64> = after.iter().filter_map(|s| s.heap_kib).collect();
        if live.len() == after.len() {
            // Live data that grows is a leak; anonymous memory that grows over flat live data
            // is the heap's fragmentation.
            let (first, last) = (live.first().copied().unwrap_or(0), live.last().copied().unwrap_or(0));
            println!(
                "  malloc in use: {first} KiB after run {} → {last} KiB after run {n}; {}",
                WARM_UP + 1,
                growth(&live)
            );
        }
        let fds = after.iter().map(|s| s.fds);
        let threads = after.iter().map(|s| s.threads);
        println!(
            "  open fds {}..{}, threads {}..{}",
            fds.clone().min().unwrap_or(0),
            fds.max().unwrap_or(0),
            threads.clone().min().unwrap_or(0),
            threads.max().unwrap_or(0)
        );
    }
    for r in &run.last_runs {
        println!("last recorded run of {}: {} ({}), {} sent, {}", r.job, r.period, r.slot, r.sent, r.outcome.as_str());
    }
    Ok(())
}

/// A series of RSS readings in KiB: its range, its least-squares slope, and the slope of its
/// second half alone (a step early on, then flat, is not growth).
fn growth(kib: &[u64]) -> String {
    let ys: Vec<f64> = kib.iter().map(|&k| k as f64).collect();
    let per_100 = |slope: f64| format!("{:+.1} KiB per run ({:+.1} MiB per 100 runs)", slope, slope * 100.0 / 1024.0);
    format!(
        "{}..{}, slope {}; second half alone {}",
        mib(kib.iter().copied().min().unwrap_or(0)),
        mib(kib.iter().copied().max().unwrap_or(0)),
        per_100(slope(&ys)),
        per_100(slope(&ys[ys.len() / 2..]))
    )
}

fn row(s: &Sample) -> Vec<String> {
    vec![
        s.run.to_string(),
        s.job.clone(),
        s.period.clone(),
        if s.error.is_some() { "FAILED".into() } else { s.sent.to_string() },
        secs(s.wall),
        mib(s.rss_kib),
        mib(s.anon_kib),
        s.heap_kib.map_or("?".into(), mib),
        mib(s.peak_kib),
        s.fds.to_string(),
        s.threads.to_string(),
        s.emails.to_string(),
    ]
}

// ---- Driving the daemon ----

/// How long the driver lets the loop record the run and go back to waiting before it reads
/// the memory.
const SETTLE: Duration = Duration::from_millis(50);

/// How long after the last run the daemon is left waiting before it is read once more.
const REST: Duration = Duration::from_secs(15);

/// One scheduled run, and the process as it was right after.
#[derive(Clone, Debug)]
struct Sample {
    /// 1-based.
    run: usize,
    job: String,
    period: String,
    /// Reports the run sent (ledger rows, one e-mail each).
    sent: usize,
    /// The job's error, if it failed.
    error: Option<String>,
    /// From setting the clock to the run's end.
    wall: Duration,
    /// Resident memory after the run, the loop waiting again.
    rss_kib: u64,
    /// Its anonymous part (`RssAnon`): the heap and stacks, not the code pages.
    anon_kib: u64,
    /// What of it malloc holds for live allocations (glibc only).
    heap_kib: Option<u64>,
    /// The highest resident memory during this run.
    peak_kib: u64,
    /// Open file descriptors (sockets, SQLite files) after the run.
    fds: usize,
    threads: u64,
    /// `.eml` files in the outbox so far.
    emails: usize,
}

/// A whole benchmark run.
#[derive(Debug)]
struct DaemonRun {
    /// Resident memory with the daemon started and waiting for its first slot.
    at_rest_kib: u64,
    /// Its anonymous part, and what malloc holds for live allocations.
    at_rest_anon_kib: u64,
    at_rest_heap_kib: Option<u64>,
    fds_at_rest: usize,
    threads_at_rest: u64,
    samples: Vec<Sample>,
    /// Resident memory (all; anonymous and file-backed), threads and malloc's live bytes [`REST`]
    /// after the last run, the loop waiting.
    rested: (u64, (u64, u64), u64, Option<u64>),
    /// What the daemon recorded last for each job (the run history in the state store).
    last_runs: Vec<RunRecord>,
}

/// The embedded demo config with its state and outbox under `dir`.
fn config(dir: &Path) -> Config {
    let mut config = Config::embedded();
    config.state_dir = dir.join("state");
    config.mail.transport = MailTransportKind::Outbox { dir: outbox(dir) };
    config
}

fn outbox(dir: &Path) -> PathBuf {
    dir.join("outbox")
}

/// The first slot the benchmark runs: `manager-weekly` for 2026-W47, Monday 2026-11-23
/// 08:00 Moscow; the driver starts the clock a minute before it.
fn first_slot() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 5, 0, 0).single().expect("a valid instant")
}

/// The daemon's loop over the demo pipeline for `runs` scheduled runs; `each` sees every
/// sample as it is taken. Must be called inside a multi-threaded tokio runtime, as
/// `salespulse run` is.
async fn run(dir: &Path, runs: usize, mut each: impl FnMut(&Sample)) -> anyhow::Result<DaemonRun> {
    let config = Arc::new(config(dir));
    let (finished, mut finishes) = mpsc::unbounded_channel();
    let mut inner = PipelineRunner::new(Arc::clone(&config))?;
    if !measure::flag("--render-in-process") {
        // As `salespulse run` does: the PDFs are laid out by `salespulse render-worker`.
        inner = inner.with_render_workers(PathBuf::from(env!("CARGO_BIN_EXE_salespulse")));
    }
    let runner = Observed { inner, finished };
    let clock = Arc::new(FixedClock::new(first_slot() - chrono::Duration::minutes(1)));
    let options = RunOptions { tick: Duration::from_millis(10), notify_systemd: false, ..RunOptions::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    // On the heap, as `daemon::run` does: the loop's state holds a whole pipeline run.
    let daemon =
        Box::pin(daemon::run_with(Arc::clone(&config), clock.clone() as Arc<dyn Clock>, shutdown, runner, options));

    let driver = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let at_rest_kib = measure::rss_kib();
        let at_rest_anon_kib = measure::rss_split_kib().0;
        let at_rest_heap_kib = measure::malloc_in_use_kib();
        let (fds_at_rest, threads_at_rest) = (open_fds(), threads());
        let mut samples = Vec::with_capacity(runs);
        while samples.len() < runs {
            let now = clock.now();
            let nexts: Vec<DateTime<Tz>> =
                config.jobs.iter().filter_map(|j| schedule::next_slot(&j.cron, config.timezone, now)).collect();
            let Some(next) = nexts.iter().min().copied() else { break };
            // Two jobs due at the same minute run one after the other on one clock step.
            let due = nexts.iter().filter(|n| **n == next).count();
            measure::reset_peak();
            let started = Instant::now();
            clock.set(next.with_timezone(&Utc));
            for _ in 0..due {
                let Some(done) = finishes.recv().await else { break };
                tokio::time::sleep(SETTLE).await;
                let rss_kib = measure::rss_kib();
                let anon_kib = measure::rss_split_kib().0;
                let heap_kib = measure::malloc_in_use_kib();
                let sample = Sample {
                    run: samples.len() + 1,
                    job: done.job,
                    period: done.period,
                    sent: done.sent,
                    error: done.error,
                    wall: started.elapsed(),
                    rss_kib,
                    anon_kib,
                    heap_kib,
                    peak_kib: measure::peak_kib(),
                    fds: open_fds(),
                    threads: threads(),
                    emails: count_emails(&outbox(dir)),
                };
                each(&sample);
                samples.push(sample);
            }
        }
        // Between two real slots the loop waits for days: tokio lets its idle blocking threads
        // (where rendering and SQLite ran) go after 10 s, and what remains is the daemon at rest.
        tokio::time::sleep(REST).await;
        let rested = (measure::rss_kib(), measure::rss_split_kib(), threads(), measure::malloc_in_use_kib());
        if measure::flag("--smaps") {
            print_anonymous_mappings();
        }
        let _ = stop.send(());
        let at_rest = (at_rest_kib, at_rest_anon_kib, at_rest_heap_kib);
        (at_rest, fds_at_rest, threads_at_rest, samples, rested)
    };
    let (stopped, ((at_rest_kib, at_rest_anon_kib, at_rest_heap_kib), fds_at_rest, threads_at_rest, samples, rested)) =
        tokio::join!(daemon, driver);
    stopped?;
    let store = Store::open(&config.state_dir)?;
    let mut last_runs = Vec::new();
    for job in &config.jobs {
        last_runs.extend(store.last_run(&job.name)?);
    }
    Ok(DaemonRun {
        at_rest_kib,
        at_rest_anon_kib,
        at_rest_heap_kib,
        fds_at_rest,
        threads_at_rest,
        samples,
        rested,
        last_runs,
    })
}

/// A run as the runner saw it end.
struct Finished {
    job: String,
    period: String,
    sent: usize,
    error: Option<String>,
}

/// The real pipeline, telling the driver when each run is over.
struct Observed {
    inner: PipelineRunner,
    finished: mpsc::UnboundedSender<Finished>,
}

impl JobRunner for Observed {
    type Mailer = AnyMailer;

    fn mailer(&self) -> &AnyMailer {
        self.inner.mailer()
    }

    async fn run_job(&self, job: &JobConfig, slot: DateTime<Tz>, period: &Period) -> anyhow::Result<DeliverySummary> {
        let result = self.inner.run_job(job, slot, period).await;
        let (sent, error) = match &result {
            Ok(summary) => (summary.sent, None),
            Err(e) => (0, Some(format!("{e:#}"))),
        };
        // The driver stops listening only after its last run.
        let _ = self.finished.send(Finished { job: job.name.clone(), period: period.label(), sent, error });
        result
    }
}

/// Open file descriptors of this process; 0 where there is no procfs.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Threads of this process (`/proc/self/status`).
fn threads() -> u64 {
    measure::status_kib("Threads")
}

fn count_emails(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
        .unwrap_or(0)
}

/// The least-squares slope of `ys` against their index, per step: how fast a series grows.
fn slope(ys: &[f64]) -> f64 {
    let n = ys.len() as f64;
    if ys.len() < 2 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = ys.iter().sum::<f64>() / n;
    let (num, den) = ys.iter().enumerate().fold((0.0, 0.0), |(num, den), (i, y)| {
        let dx = i as f64 - mean_x;
        (num + dx * (y - mean_y), den + dx * dx)
    });
    num / den
}

/// `--smaps`: the anonymous mappings holding at least 256 KiB at rest, to tell malloc's heaps
/// (64 MiB reservations of the per-thread arenas, `[heap]` of the main one) from thread
/// stacks (8 MiB, most of them untouched) and blocks malloc mapped on their own.
fn print_anonymous_mappings() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
    println!("\nanonymous mappings at rest holding >= 256 KiB (size, resident, name):");
    let mut header: Option<(u64, String)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let (from, to) = first.split_once('-').unwrap_or(("0", "0"));
            let size =
                u64::from_str_radix(to, 16).unwrap_or(0).saturating_sub(u64::from_str_radix(from, 16).unwrap_or(0));
            let rest: Vec<&str> = words.collect();
            // address perms offset dev inode [name]
            let name = rest.get(4).copied().unwrap_or("").to_owned();
            let inode = rest.get(3).copied().unwrap_or("0");
            header = (inode == "0").then_some((size / 1024, name));
        } else if first == "Anonymous:" {
            let kib: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            if let Some((size, name)) = &header
                && kib >= 256
            {
                println!("  {size:>8} KiB  {kib:>8} KiB  {name}");
            }
        }
    }
}
