//! Fetch: each job of the demo config (`manager-weekly` for 2026-W47 with its 12-week
//! trend, `department-monthly` for 2026-10 with its 12-month trend and the month a year
//! before) from the Bitrix24 emulator over loopback, with the default limits on both sides
//! (2 requests/s, burst 50), as the product fetches by default: through the CRM cache, a
//! first run on an empty cache and a second run right after it. Requests, wall time against
//! the rate-limit floor, the emulator's summed server time; then `fast_bitrix24` (PyPI) on
//! the same portal, asked for the same records.
//!
//! The portal of issue 3 (500 managers, 200 000 deals, 300 000 leads, 1 000 000 activities,
//! 1 000 000 stage-history rows) divided by DIVISOR (default 10; `-- 1` is the full portal,
//! minutes at 2 requests/s). `--unlimited` also fetches the full-size portal with the limits
//! lifted, to count the requests it needs and its CPU cost.
//!
//! `cargo bench --bench fetch -- [DIVISOR] [--job NAME] [--unlimited] [--no-python]`.
//! Nothing here passes or fails.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::fetch_core::{self, FetchRun};
use common::measure::{self, Table, mib, secs};
use common::synth;
use salespulse::crm::bitrix24::ClientSettings;
use salespulse::crm::emulator::{EmulatorOptions, PortalData};

fn main() {
    let divisor = measure::size_arg(10).max(1);
    let jobs: Vec<String> = match measure::option("--job") {
        Some(job) => vec![job],
        None => vec!["manager-weekly".into(), "department-monthly".into()],
    };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    println!("salespulse fetch benchmark\nmachine: {}", measure::machine());
    let config = synth::config();
    let options = EmulatorOptions::default();
    let settings = ClientSettings::default();
    let mut table = Table::new(
        "Fetch, first run (empty CRM cache) and second run, default limits on both sides: 2 requests/s, burst 50",
        &["job (window)", "client", "requests", "wall", "floor (req−50)/2", "emulator server time", "records fetched"],
    );

    let spec = synth::Spec::issue3().scaled_down(divisor);
    let t = Instant::now();
    let company = synth::company(&spec, true);
    let portal = company.portal.expect("asked for the wire form");
    println!("portal: {} (generated in {}, RSS {})", spec.describe(), secs(t.elapsed()), mib(measure::rss_kib()));

    for job in &jobs {
        let request = fetch_core::request(&config, job);
        let window = format!("{job} ({} .. {})", request.since.date_naive(), request.until.date_naive());
        let estimate = fetch_core::estimate(&company.snapshot, &request);
        let held = portal.clone();
        measure::reset_peak();
        let before = measure::rss_kib();
        let run = rt.block_on(fetch_core::run(held, options.clone(), settings.clone(), &request));
        let peak = measure::peak_kib();
        match &run {
            Ok(runs) => {
                let (r, again) = (&runs.first, &runs.second);
                table.row(row(&window, "salespulse, first run (empty cache)", r, options.rate_per_sec, options.burst));
                table.row(row(&window, "salespulse, second run (cached)", again, options.rate_per_sec, options.burst));
                println!(
                    "{job}: first run {} requests made ({} by the request arithmetic), {} commands, {} refused by the emulator's bucket; \
                     second run {} requests ({:.1} % of the first), {} commands, cache: {:?}; \
                     RSS {} before, peak {} during both fetches (+{}; the emulator's portal is in this process too)",
                    r.client_requests,
                    estimate.requests,
                    r.emulator.commands,
                    r.emulator.rate_limited,
                    again.client_requests,
                    100.0 * again.client_requests as f64 / r.client_requests.max(1) as f64,
                    again.emulator.commands,
                    again.cache,
                    mib(before),
                    mib(peak),
                    mib(peak.saturating_sub(before))
                );
                if again.snapshot != r.snapshot {
                    println!("{job}: WARNING: the second run's snapshot differs from the first's");
                }
            }
            Err(e) => {
                table.row(vec![window.clone(), "salespulse".into(), format!("failed: {e}")]);
            }
        }
        if measure::flag("--no-python") {
            continue;
        }
        let Some(python) = venv_python() else {
            println!("(no target/bench-venv: fast_bitrix24 is skipped; see benches/python/setup.sh)");
            continue;
        };
        match rt.block_on(fast_bitrix24(&python, portal.clone(), options.clone(), &request)) {
            Ok((wall, stats, records, note)) => {
                table.row(vec![
                    window.clone(),
                    format!("fast_bitrix24 {note}"),
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
    drop(portal);
    drop(company.snapshot);
    println!("portal of this run: {}", spec.describe());
    print!("{}", table.render());

    if measure::flag("--unlimited") {
        let spec = synth::Spec::issue3();
        let request = fetch_core::request(&config, jobs.last().expect("at least one job"));
        let t = Instant::now();
        let company = synth::company(&spec, true);
        let portal = company.portal.expect("asked for the wire form");
        drop(company.snapshot);
        println!(
            "\nfull portal: {} (generated in {}, RSS {})",
            spec.describe(),
            secs(t.elapsed()),
            mib(measure::rss_kib())
        );
        let lifted = EmulatorOptions { rate_per_sec: 1e6, burst: 1_000_000, ..EmulatorOptions::default() };
        let fast = ClientSettings { rate_per_sec: 1e6, burst: 1_000_000, ..ClientSettings::default() };
        match rt.block_on(fetch_core::run(portal, lifted, fast, &request)) {
            Ok(runs) => println!(
                "limits lifted: {} requests in {}, emulator server time {}, floor at 2/s {}; second run {} requests in {}; peak RSS {}",
                runs.first.client_requests,
                secs(runs.first.wall),
                secs(runs.first.emulator.server_time),
                secs(fetch_core::floor(runs.first.client_requests, 2.0, 50)),
                runs.second.client_requests,
                secs(runs.second.wall),
                mib(measure::peak_kib())
            ),
            Err(e) => println!("limits lifted: failed: {e}"),
        }
    }
    for job in &jobs {
        floor_table(job, &fetch_core::request(&config, job));
    }
}

/// The full portal of issue 3, counted rather than fetched: pages per list, requests, and
/// the time the portal's limits alone impose.
fn floor_table(job: &str, request: &salespulse::crm::FetchRequest) {
    let spec = synth::Spec::issue3();
    let company = synth::company(&spec, false);
    let e = fetch_core::estimate(&company.snapshot, request);
    let mut t = Table::new(
        &format!(
            "Rate-limit floor of {job} ({} .. {}) on the full portal of issue 3 ({})",
            request.since.date_naive(),
            request.until.date_naive(),
            spec.describe()
        ),
        &["what", "rows", "pages / commands"],
    );
    for (list, rows, pages) in &e.lists {
        t.row(vec![(*list).to_owned(), rows.to_string(), pages.to_string()]);
    }
    t.row(vec![
        "single calls: leads by @ID + product rows of the deals won in the period".into(),
        String::new(),
        e.singles.to_string(),
    ]);
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

fn row(window: &str, client: &str, r: &FetchRun, rate: f64, burst: u32) -> Vec<String> {
    let s = &r.snapshot;
    vec![
        window.into(),
        client.into(),
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
    request: &salespulse::crm::FetchRequest,
) -> Result<(Duration, salespulse::crm::emulator::EmulatorStats, String, String), String> {
    let emulator = fetch_core::serve(portal, options).await;
    let url = emulator.webhook_url();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python/fetch_fast_bitrix24.py");
    let python = python.to_path_buf();
    let args = [url, request.since.to_rfc3339(), request.period_start.to_rfc3339(), request.until.to_rfc3339()];
    let t = Instant::now();
    let out = tokio::task::spawn_blocking(move || Command::new(python).arg(script).args(args).output())
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
