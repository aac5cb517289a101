//! Render throughput: the full manager scorecard (both charts, the built-in two-page
//! template) for N managers (default 500) on 2 worker threads, with the cold start
//! (`Renderer::new`, first compilation) included and excluded, the process's CPU time per
//! document (what a busy machine inflates least), peak memory, and the whole of what issue
//! 13's goal counts: the KPI pass for those scorecards (index and reports, on the same
//! threads) plus charts and render; the load average before and after; then the
//! same document compiled by the Typst CLI (`typst compile`, one process per document, the
//! same compiler version as ours) and by the Typst compiler from PyPI in a separate process,
//! and by a plain Python pipeline (matplotlib + WeasyPrint), via `benches/python/*.py` in
//! `target/bench-venv`.
//!
//! `cargo bench --bench render -- [N] [--threads 2] [--sample 10] [--no-python]`
//! The CLI and the venv: `benches/python/setup.sh` (the CLI with `cargo install typst-cli`
//! into `target/typst-cli`; the venv with typst, matplotlib and weasyprint from PyPI).
//! Either is skipped when missing. Nothing here passes or fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::measure::{self, Table, mib, ms, secs};
use common::{kpi_core, render_core, synth};
use salespulse::domain::Period;
use salespulse::kpi::{Analysis, ReportData};
use salespulse::render::Renderer;

fn main() {
    // Before anything else: the cold start includes building the renderer in a fresh process.
    let n = measure::size_arg(500).max(1);
    let threads: usize = measure::option("--threads").and_then(|t| t.parse().ok()).unwrap_or(2);
    let sample: usize = measure::option("--sample").and_then(|t| t.parse().ok()).unwrap_or(10).clamp(1, n);
    println!("salespulse render benchmark\nmachine: {}", measure::machine());
    println!("load average at start: {}", measure::load_average());

    // Scorecards of 2026-W47 for everyone, and of the week before for the one-at-a-time run
    // (documents not rendered before: comemo would otherwise replay memoized layouts).
    let (datas, single, kpi) = scorecards(n, sample.max(20), threads);
    measure::reset_peak();
    let rss_before = measure::rss_kib();

    // Cold: a renderer built now, its first document alone, then the rest on the workers.
    let t = Instant::now();
    let renderer = Renderer::new();
    let renderer_new = t.elapsed();
    let t = Instant::now();
    let (first_pdf, _) = render_core::one(
        &renderer,
        &salespulse::render::Template::builtin(salespulse::config::ReportKind::Manager),
        &datas[0],
    );
    let first_doc = t.elapsed();
    let (rest, _) = render_core::run(&renderer, &datas[1..], threads, false);
    let cold_wall = renderer_new + first_doc + rest.wall;
    let cold_peak = measure::peak_kib();

    // Warm: the other documents only, the renderer and comemo already warm from the first
    // one. (Rendering the same documents twice would hit comemo's memoized layouts.)
    let warm = rest;
    let peak = cold_peak;

    // One document at a time, warm.
    let (one_thread, _) = render_core::run(&renderer, &single, 1, false);

    let pages = pdf_pages(&first_pdf);
    let mut t1 = Table::new(
        &format!(
            "Render: {} manager scorecards ({} page(s), {} KiB average PDF)",
            n,
            pages.map_or("?".into(), |p| p.to_string()),
            warm.mean_bytes() / 1024
        ),
        &["run", "threads", "wall", "PDFs/s", "CPU per PDF", "peak RSS"],
    );
    t1.row(vec![
        "cold start included: Renderer::new + first PDF + the rest".into(),
        threads.to_string(),
        secs(cold_wall),
        format!("{:.1}", n as f64 / cold_wall.as_secs_f64()),
        String::new(),
        mib(cold_peak),
    ]);
    t1.row(vec![
        format!("cold start excluded (the {} documents after the first)", warm.docs),
        threads.to_string(),
        secs(warm.wall),
        format!("{:.1}", warm.per_second()),
        ms(warm.cpu_per_doc()),
        mib(peak),
    ]);
    t1.row(vec![
        format!("one at a time, warm ({} documents)", one_thread.docs),
        "1".into(),
        secs(one_thread.wall),
        format!("{:.1}", one_thread.per_second()),
        ms(one_thread.cpu_per_doc()),
        String::new(),
    ]);
    let whole = kpi.total() + cold_wall;
    t1.row(vec![
        format!("whole: KPI pass ({}) + charts + render, cold start included", secs(kpi.total())),
        threads.to_string(),
        secs(whole),
        format!("{:.1}", n as f64 / whole.as_secs_f64()),
        String::new(),
        String::new(),
    ]);
    print!("{}", t1.render());
    println!(
        "\nKPI pass for the {n} scorecards on {threads} thread(s): index (Analysis::new) {}, {n} scorecards {}",
        secs(kpi.index),
        secs(kpi.reports)
    );
    println!(
        "\ncold start: Renderer::new {}, first document {}; RSS before rendering {} (holds the {} ReportData)",
        ms(renderer_new),
        ms(first_doc),
        mib(rss_before),
        n
    );
    let chart = one_thread.median(|d| d.chart);
    let render = one_thread.median(|d| d.render);
    println!(
        "per document, warm, 1 thread (median): charts {}, Typst layout + PDF {}, total {}",
        ms(chart),
        ms(render),
        ms(chart + render)
    );
    println!(
        "goal: {n} scorecards < 5 s on 2 cores, KPI pass and charts included → {}",
        if n == 500 { secs(whole) } else { "(run with 500)".into() }
    );

    println!("load average at the end: {}", measure::load_average());

    let python = venv_python().filter(|_| !measure::flag("--no-python"));
    let cli = typst_cli();
    if python.is_none() && cli.is_none() {
        println!(
            "\n(no target/typst-cli, no target/bench-venv or --no-python: comparisons skipped; see benches/python/setup.sh)"
        );
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-render");
    let _ = std::fs::remove_dir_all(&root);
    let dirs: Vec<PathBuf> = datas
        .iter()
        .take(sample)
        .enumerate()
        .map(|(i, d)| {
            let dir = root.join(format!("doc-{i:03}"));
            render_core::export(&dir, d, &renderer).expect("the sample documents are written");
            dir
        })
        .collect();
    println!("\n{} sample documents written under {}", dirs.len(), root.display());
    let mut t2 = Table::new(
        &format!("Per document, same document and data ({} samples, medians)", dirs.len()),
        &["pipeline", "per document", "vs salespulse (render only)", "vs salespulse (charts + render)"],
    );
    let ours = render;
    let ours_all = chart + render;
    let ratio = |d: Duration| format!("{:.1}×", d.as_secs_f64() / ours.as_secs_f64().max(1e-9));
    let ratio_all = |d: Duration| format!("{:.1}×", d.as_secs_f64() / ours_all.as_secs_f64().max(1e-9));
    t2.row(vec!["salespulse: Typst in-process, warm (render only)".into(), ms(ours), "1.0×".into(), String::new()]);
    t2.row(vec!["salespulse: charts + render, warm".into(), ms(ours_all), String::new(), "1.0×".into()]);
    t2.row(vec![
        format!("salespulse: {n} documents on {threads} threads, wall / {n} (cold start included)"),
        ms(cold_wall / n as u32),
        ratio(cold_wall / n as u32),
        String::new(),
    ]);
    if let Some(cli) = &cli {
        match typst_cli_per_document(cli, &dirs) {
            Ok((version, d)) => {
                t2.row(vec![format!("{version} CLI, `typst compile` per document"), ms(d), ratio(d), String::new()]);
            }
            Err(e) => println!("typst CLI comparison failed: {e}"),
        }
    }
    let Some(python) = python else {
        print!("{}", t2.render());
        return;
    };
    match python_json(&python, "typst_compare.py", &dirs) {
        Ok(v) => {
            let get = |k: &str| v.get(k).and_then(|x| x.as_f64()).map(|x| Duration::from_secs_f64(x / 1000.0));
            if let Some(d) = get("process_ms") {
                t2.row(vec![
                    format!(
                        "typst {} (PyPI) as a separate process per document",
                        v["typst_version"].as_str().unwrap_or("?")
                    ),
                    ms(d),
                    ratio(d),
                    String::new(),
                ]);
            }
            if let Some(d) = get("process_minus_interpreter_ms") {
                t2.row(vec![
                    "  same, less the Python interpreter start and `import typst`".into(),
                    ms(d),
                    ratio(d),
                    String::new(),
                ]);
            }
            if let Some(d) = get("inprocess_ms") {
                t2.row(vec!["typst (PyPI) typst.compile() in one warm process".into(), ms(d), ratio(d), String::new()]);
            }
        }
        Err(e) => println!("typst comparison failed: {e}"),
    }
    match python_json(&python, "weasy_compare.py", &dirs) {
        Ok(v) => {
            let get = |k: &str| v.get(k).and_then(|x| x.as_f64()).map(|x| Duration::from_secs_f64(x / 1000.0));
            if let (Some(c), Some(p)) = (get("charts_ms"), get("pdf_ms")) {
                t2.row(vec![
                    format!(
                        "matplotlib {} charts + WeasyPrint {} (warm process)",
                        v["matplotlib"].as_str().unwrap_or("?"),
                        v["weasyprint"].as_str().unwrap_or("?")
                    ),
                    format!("{} ({} charts + {} PDF)", ms(c + p), ms(c), ms(p)),
                    String::new(),
                    ratio_all(c + p),
                ]);
            }
            if let Some(d) = get("first_doc_ms") {
                t2.row(vec![
                    "  same, first document of a fresh process (imports included)".into(),
                    ms(d),
                    String::new(),
                    ratio_all(d),
                ]);
            }
        }
        Err(e) => println!("WeasyPrint comparison failed: {e}"),
    }
    print!("{}", t2.render());
}

/// What the KPI pass took for the scorecards that are rendered: the index, then the reports.
struct KpiTimes {
    index: Duration,
    reports: Duration,
}

impl KpiTimes {
    fn total(&self) -> Duration {
        self.index + self.reports
    }
}

/// The scorecards of 2026-W47 for all `n` managers of a company of the proportions
/// (computed on `threads` threads, timed: the KPI pass), and of 2026-W46 for the first
/// `take`. The company is dropped before rendering starts.
fn scorecards(n: usize, take: usize, threads: usize) -> (Vec<ReportData>, Vec<ReportData>, KpiTimes) {
    let spec = synth::Spec::per_manager(n);
    let t = Instant::now();
    let company = synth::company(&spec, false);
    let generated = t.elapsed();
    let config = synth::config();
    let settings = kpi_core::settings(&config);
    let t = Instant::now();
    let analysis = Analysis::new(&company.snapshot, &settings);
    let index = t.elapsed();
    let managers: Vec<u64> = analysis.managers().iter().map(|u| u.id).collect();
    let week = Period::week_of(synth::week47(), synth::TZ);
    let t = Instant::now();
    let all = kpi_core::scorecards(&analysis, &week, &managers, threads);
    let reports = t.elapsed();
    let before = kpi_core::scorecards(&analysis, &week.previous(), &managers[..take.min(managers.len())], threads);
    println!("data: {} (generated in {})", spec.describe(), secs(generated));
    (all, before, KpiTimes { index, reports })
}

/// Page count, from the page tree's `/Count` (the root `/Pages` has the largest).
fn pdf_pages(pdf: &[u8]) -> Option<usize> {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/Count ")
        .filter_map(|(i, _)| text[i + 7..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
}

/// The Typst CLI that `benches/python/setup.sh` installs.
fn typst_cli() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/typst-cli/bin/typst");
    p.exists().then_some(p)
}

/// `typst compile` as a script would run it, one process per sample document (fonts from the
/// document's `fonts/`, system fonts ignored, as salespulse ignores them); the CLI's version
/// and the median wall time per document.
fn typst_cli_per_document(cli: &Path, dirs: &[PathBuf]) -> Result<(String, Duration), String> {
    let version = Command::new(cli).arg("--version").output().map_err(|e| format!("failed to run typst ({e})"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let mut times = Vec::new();
    for d in dirs {
        let t = Instant::now();
        let out = Command::new(cli)
            .arg("compile")
            .arg("--root")
            .arg(d)
            .arg("--font-path")
            .arg(d.join("fonts"))
            .arg("--ignore-system-fonts")
            .arg(d.join("main.typ"))
            .arg(d.join("typst-cli.pdf"))
            .output()
            .map_err(|e| format!("failed to run typst ({e})"))?;
        times.push(t.elapsed());
        if !out.status.success() {
            return Err(format!("typst compile exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
    }
    times.sort();
    Ok((version, times[times.len() / 2]))
}

fn venv_python() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv/bin/python");
    p.exists().then_some(p)
}

/// Runs `benches/python/<script> <dirs>` and reads the JSON object on its last line.
fn python_json(python: &Path, script: &str, dirs: &[PathBuf]) -> Result<serde_json::Value, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python").join(script);
    let out =
        Command::new(python).arg(&path).args(dirs).output().map_err(|e| format!("failed to run {script} ({e})"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("{script} exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    for line in stdout.lines().filter(|l| !l.trim_start().starts_with('{')) {
        println!("  {script}: {line}");
    }
    let last = stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).ok_or("no JSON line")?;
    serde_json::from_str(last).map_err(|e| format!("unreadable JSON from {script} ({e})"))
}
