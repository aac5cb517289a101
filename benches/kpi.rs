//! KPI computation at the size of issue 6: 500 managers, 200 000 deals, 300 000 leads,
//! 2 000 000 activities and 1 000 000 stage-history rows built directly as a
//! `domain::CrmSnapshot` (deterministic seed), then the department report and all 500
//! scorecards of one week and of one month, each with its 12-period trend.
//!
//! `cargo bench --bench kpi -- [MANAGERS]` (default 500; the counts scale per manager).
//! Prints a table; nothing here passes or fails.

mod common;

use std::time::Instant;

use common::measure::{self, Table, mib, secs};
use common::{kpi_core, synth};

fn main() {
    let managers = measure::size_arg(500);
    let spec = synth::Spec::per_manager(managers);
    println!("salespulse KPI benchmark\nmachine: {}\ndata: {}", measure::machine(), spec.describe());
    let rss0 = measure::rss_kib();
    let t = Instant::now();
    let company = synth::company(&spec, false);
    let generated = t.elapsed();
    let rss_data = measure::rss_kib();
    let config = synth::config();
    let settings = kpi_core::settings(&config);

    let mut table = Table::new("KPI computation", &["stage", "reports", "wall", "peak RSS (process)"]);
    table.row(vec![
        "generate the snapshot (not part of the KPI pass)".into(),
        "".into(),
        secs(generated),
        mib(measure::peak_kib()),
    ]);
    for threads in [1, 2] {
        measure::reset_peak();
        let before = measure::rss_kib();
        let run = kpi_core::run(&company.snapshot, &settings, threads);
        let peak = measure::peak_kib();
        for s in &run.stages {
            table.row(vec![s.name.clone(), s.reports.to_string(), secs(s.took), String::new()]);
        }
        table.row(vec![
            format!("TOTAL, scorecards on {threads} thread(s) — {} managers in scope", run.managers),
            run.stages.iter().map(|s| s.reports).sum::<usize>().to_string(),
            secs(run.total()),
            format!("{} (+{} over the snapshot)", mib(peak), mib(peak.saturating_sub(before))),
        ]);
        if threads == 1 {
            let d = &run.sample_department;
            println!(
                "check: department report 2026-W47 has {} manager rows, {} trend points, revenue {:?}",
                d.managers.as_ref().map_or(0, Vec::len),
                d.trend.len(),
                d.kpis.revenue.value
            );
        }
    }
    print!("{}", table.render());
    println!(
        "\nmemory: RSS {} at start, {} with the snapshot in memory; goal < 2 s and < 1 GiB",
        mib(rss0),
        mib(rss_data)
    );
}
