//! Fetch: the first full run of `manager-weekly` (2026-W47, 12-week trend and the same week
//! a year before) from the Bitrix24 emulator over loopback, with the default limits on both
//! sides (2 requests/s, burst 50): requests, wall time against the rate-limit floor, the
//! emulator's summed server time; then `fast_bitrix24` (PyPI) on the same portal.
//!
//! The portal of issue 3 (500 managers, 200 000 deals, 300 000 leads, 1 000 000 activities,
//! 1 000 000 stage-history rows) divided by DIVISOR (default 10): at 2 requests/s the full
//! portal takes a quarter of an hour by arithmetic alone. `--unlimited` also fetches the
//! full-size portal with the limits lifted, to count the requests it needs and its CPU cost.
//!
//! `cargo bench --bench fetch -- [DIVISOR] [--unlimited] [--no-python]`. Nothing here
//! passes or fails.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fetch_core::{self, FetchRun};
use common::measure::{self, Table, mib, secs};
use common::synth;
use salespulse::crm::bitrix24::ClientSettings;
use salespulse::crm::emulator::{EmulatorOptions, PortalData};

/// Issue 3's large portal.
fn full() -> synth::Spec {
    synth::Spec {
        managers: 500,
        deals: 200_000,
        leads: 300_000,
        activities: 1_000_000,
        stage_history: 1_000_000,
        seed: 3,
    }
}

fn main() {
    let divisor = measure::size_arg(10).max(1);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    println!("salespulse fetch benchmark\nmachine: {}", measure::machine());
    let config = synth::config();
    let request = fetch_core::request(&config);
    println!("window: since {} until {}", request.since, request.until);
    let options = EmulatorOptions::default();
    let settings = ClientSettings::default();
    let mut table = Table::new(
        "Fetch, first full run (no cache)",
        &[
            "portal",
            "client",
            "limits",
            "requests",
            "wall",
            "floor (req−50)/2",
            "emulator server time",
            "records fetched",
        ],
    );

    let spec = full().scaled_down(divisor);
    let t = Instant::now();
    let company = synth::company(&spec, true);
    let portal = company.portal.expect("asked for the wire form");
    let scaled_estimate = fetch_core::estimate(&company.snapshot, &request);
    drop(company.snapshot);
    println!("portal: {} (generated in {}, RSS {})", spec.describe(), secs(t.elapsed()), mib(measure::rss_kib()));

    let held = portal.clone();
    measure::reset_peak();
    let before = measure::rss_kib();
    let run = rt.block_on(fetch_core::run(held, options.clone(), settings.clone(), &request));
    let peak = measure::peak_kib();
    match &run {
        Ok(r) => table.row(row(&spec, "salespulse", "2/s, burst 50", r, options.rate_per_sec, options.burst)),
        Err(e) => table.row(vec![spec.describe(), "salespulse".into(), format!("failed: {e}")]),
    };
    if let Ok(r) = &run {
        println!(
            "request arithmetic for this portal: {} requests estimated, {} made",
            scaled_estimate.requests, r.client_requests
        );
        println!(
            "memory: RSS {} before the fetch (two copies of the portal: one for this run, one kept for the next), peak {} during it (+{})",
            mib(before),
            mib(peak),
            mib(peak.saturating_sub(before))
        );
        println!(
            "salespulse: {} requests, {} commands, {} rate-limited by the emulator; {} deals, {} leads, {} activities, {} history, {} product rows",
            r.client_requests,
            r.emulator.commands,
            r.emulator.rate_limited,
            r.snapshot.deals.len(),
            r.snapshot.leads.len(),
            r.snapshot.activities.len(),
            r.snapshot.stage_history.len(),
            r.snapshot.product_rows.len()
        );
    }

    if !measure::flag("--no-python") {
        match venv_python() {
            None => println!("(no target/bench-venv: fast_bitrix24 is skipped; see benches/python/setup.sh)"),
            Some(python) => {
                let out =
                    rt.block_on(fast_bitrix24(&python, portal.clone(), options.clone(), &request.since.to_rfc3339()));
                match out {
                    Ok((wall, stats, records, note)) => {
                        table.row(vec![
                            spec.describe(),
                            format!("fast_bitrix24 {note}"),
                            "2/s, burst 50".into(),
                            stats.requests.to_string(),
                            secs(wall),
                            secs(fetch_core::floor(stats.requests, options.rate_per_sec, options.burst)),
                            secs(stats.server_time),
                            records,
                        ]);
                    }
                    Err(e) => println!("fast_bitrix24 failed: {e}"),
                }
            }
        }
    }
    drop(portal);

    if measure::flag("--unlimited") {
        let spec = full();
        let t = Instant::now();
        let company = synth::company(&spec, true);
        let portal = company.portal.expect("asked for the wire form");
        drop(company.snapshot);
        println!(
            "full portal: {} (generated in {}, RSS {})",
            spec.describe(),
            secs(t.elapsed()),
            mib(measure::rss_kib())
        );
        let lifted = EmulatorOptions { rate_per_sec: 1e6, burst: 1_000_000, ..EmulatorOptions::default() };
        let fast = ClientSettings { rate_per_sec: 1e6, burst: 1_000_000, ..ClientSettings::default() };
        match rt.block_on(fetch_core::run(portal, lifted, fast, &request)) {
            Ok(r) => {
                let mut cells = row(&spec, "salespulse", "lifted", &r, options.rate_per_sec, options.burst);
                cells[5] = format!(
                    "{} at 2/s",
                    secs(fetch_core::floor(r.client_requests, options.rate_per_sec, options.burst))
                );
                table.row(cells);
            }
            Err(e) => {
                table.row(vec![spec.describe(), "salespulse".into(), "lifted".into(), format!("failed: {e}")]);
            }
        }
        println!("peak RSS {}", mib(measure::peak_kib()));
    }
    print!("{}", table.render());
    floor_table(&request);
    println!("\nincremental second run: not measured — the client has no cache yet (every run is a full fetch).");
}

/// The full portal of issue 3, counted rather than fetched: pages per list, requests, and
/// the time the portal's limits alone impose.
fn floor_table(request: &salespulse::crm::FetchRequest) {
    let spec = full();
    let company = synth::company(&spec, false);
    let e = fetch_core::estimate(&company.snapshot, request);
    let mut t = Table::new(
        &format!("Rate-limit floor for the full portal of issue 3 ({})", spec.describe()),
        &["what", "rows", "pages / commands"],
    );
    for (list, rows, pages) in &e.lists {
        t.row(vec![(*list).to_owned(), rows.to_string(), pages.to_string()]);
    }
    t.row(vec!["single calls: leads by @ID + product rows of won deals".into(), String::new(), e.singles.to_string()]);
    t.row(vec!["HTTP requests (batches of 50 commands)".into(), String::new(), e.requests.to_string()]);
    t.row(vec![
        "floor at 2 req/s, burst 50 (Bitrix24 cloud): (requests − 50) / 2".into(),
        String::new(),
        secs(fetch_core::floor(e.requests, 2.0, 50)),
    ]);
    t.row(vec![
        "floor at 5 req/s, burst 250 (Enterprise): (requests − 250) / 5".into(),
        String::new(),
        secs(fetch_core::floor(e.requests, 5.0, 250)),
    ]);
    print!("{}", t.render());
}

fn row(spec: &synth::Spec, client: &str, limits: &str, r: &FetchRun, rate: f64, burst: u32) -> Vec<String> {
    let s = &r.snapshot;
    vec![
        spec.describe(),
        client.into(),
        limits.into(),
        r.client_requests.to_string(),
        secs(r.wall),
        secs(fetch_core::floor(r.client_requests, rate, burst)),
        secs(r.emulator.server_time),
        format!(
            "{} deals, {} leads, {} activities, {} history, {} product rows",
            s.deals.len(),
            s.leads.len(),
            s.activities.len(),
            s.stage_history.len(),
            s.product_rows.len()
        ),
    ]
}

fn venv_python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv/bin/python");
    p.exists().then_some(p)
}

/// Runs `benches/python/fetch_fast_bitrix24.py` against a fresh emulator over `portal`.
async fn fast_bitrix24(
    python: &std::path::Path,
    portal: PortalData,
    options: EmulatorOptions,
    since: &str,
) -> Result<(Duration, salespulse::crm::emulator::EmulatorStats, String, String), String> {
    let emulator = fetch_core::serve(portal, options).await;
    let url = emulator.webhook_url();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python/fetch_fast_bitrix24.py");
    let python = python.to_path_buf();
    let since = since.to_owned();
    let t = Instant::now();
    let out = tokio::task::spawn_blocking(move || Command::new(python).arg(script).arg(url).arg(since).output())
        .await
        .map_err(|e| format!("failed to wait for fast_bitrix24 ({e})"))?
        .map_err(|e| format!("failed to run fast_bitrix24 ({e})"))?;
    let wall = t.elapsed();
    let stats = emulator.stats();
    emulator.shutdown().await;
    if !out.status.success() {
        return Err(format!("exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or("no JSON line")?;
    let v: serde_json::Value = serde_json::from_str(last).map_err(|e| e.to_string())?;
    let records = format!(
        "{} deals, {} leads, {} activities, {} history, {} product rows",
        v["deals"], v["leads"], v["activities"], v["history"], v["product_rows"]
    );
    let note = format!(
        "{} (fetch {:.1} s inside Python)",
        v["version"].as_str().unwrap_or("?"),
        v["fetch_s"].as_f64().unwrap_or(0.0)
    );
    Ok((wall, stats, records, note))
}
