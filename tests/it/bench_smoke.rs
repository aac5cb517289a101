//! The benchmarks of issue 6 keep working: each benchmark's core (`benches/common`) runs here
//! at a tiny size. Benchmarks are not tests, so nothing here looks at a time; what is
//! checked is that each core does the work its table claims: the generated company has the
//! counts asked for, every report is computed, every scorecard becomes a PDF, the exported
//! document is complete, and the fetch brings back the generated portal's records.

#[path = "../../benches/common/mod.rs"]
mod common;

use std::collections::BTreeSet;

use common::synth::{self, Spec};
use common::{fetch_core, kpi_core, render_core};
use salespulse::crm::bitrix24::ClientSettings;
use salespulse::crm::emulator::EmulatorOptions;
use salespulse::domain::{Period, Semantics};
use salespulse::kpi::Analysis;
use salespulse::render::Renderer;

fn tiny(managers: usize) -> Spec {
    Spec {
        managers,
        deals: 120 * managers,
        leads: 150 * managers,
        activities: 600 * managers,
        stage_history: 500 * managers,
        seed: 1,
    }
}

#[test]
fn the_synthetic_company_has_exactly_the_records_asked_for() {
    let spec = tiny(3);
    let company = synth::company(&spec, true);
    let s = &company.snapshot;
    assert_eq!((s.deals.len(), s.leads.len(), s.activities.len()), (spec.deals, spec.leads, spec.activities));
    assert_eq!(s.stage_history.len(), spec.stage_history);
    let deal_ids: BTreeSet<u64> = s.deals.iter().map(|d| d.id).collect();
    assert!(s.stage_history.iter().all(|h| deal_ids.contains(&h.deal_id)), "history of a deal that does not exist");
    let portal = company.portal.expect("the wire form was asked for");
    assert_eq!(
        (portal.deals.len(), portal.leads.len(), portal.activities.len()),
        (spec.deals, spec.leads, spec.activities)
    );
    // Same seed, same company: benchmark runs are comparable.
    assert_eq!(synth::company(&spec, false).snapshot, company.snapshot);
}

#[test]
fn the_kpi_benchmark_computes_both_reports_for_every_manager() {
    let company = synth::company(&tiny(3), false);
    let settings = kpi_core::settings(&synth::config());
    let run = kpi_core::run(&company.snapshot, &settings, 2);
    assert_eq!(run.managers, 3);
    // A week and a month: one department report and three scorecards each.
    assert_eq!(run.stages.iter().map(|s| s.reports).sum::<usize>(), 2 * (1 + 3));
    let d = &run.sample_department;
    assert_eq!(d.managers.as_ref().map(Vec::len), Some(3));
    assert_eq!(d.trend.len(), 12);
    assert!(d.trend.iter().map(|p| p.deals_won).sum::<u64>() > 0, "the generated company won nothing in 12 weeks");
    let card = run.sample_manager.as_ref().expect("a scorecard");
    assert_eq!(card.report, "manager");
    assert_eq!(card.trend.len(), 12);
}

#[test]
fn the_render_benchmark_renders_every_scorecard_and_exports_a_complete_document() {
    let company = synth::company(&tiny(2), false);
    let settings = kpi_core::settings(&synth::config());
    let analysis = Analysis::new(&company.snapshot, &settings);
    let ids: Vec<u64> = analysis.managers().iter().map(|u| u.id).collect();
    let datas = kpi_core::scorecards(&analysis, &Period::week_of(synth::week47(), synth::TZ), &ids, 2);
    let renderer = Renderer::new();
    let (run, first) = render_core::run(&renderer, &datas, 2, true);
    assert_eq!(run.docs, 2);
    assert!(run.times.iter().all(|t| t.pdf_bytes > 10_000), "a scorecard PDF is suspiciously small: {:?}", run.times);
    assert!(first.expect("the first PDF was kept").starts_with(b"%PDF-"));

    let dir = tempfile::tempdir().unwrap();
    render_core::export(dir.path(), &datas[0], &renderer).unwrap();
    for file in
        ["main.typ", "charts/trend.svg", "charts/funnel.svg", "fonts/PTSans-Regular.ttf", "fonts/PTSans-Bold.ttf"]
    {
        assert!(dir.path().join(file).is_file(), "{file} was not exported");
    }
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data.json")).unwrap()).unwrap();
    assert_eq!(data["charts"]["trend"], "/charts/trend.svg", "the exported data must point at the exported charts");
    assert!(std::fs::read(dir.path().join("expected.pdf")).unwrap().starts_with(b"%PDF-"));
}

#[test]
fn the_fetch_benchmark_brings_back_the_generated_portal() {
    // Big enough for several `batch` rounds of list pages and of product-row calls.
    let spec = Spec { managers: 2, deals: 2_000, leads: 400, activities: 6_000, stage_history: 3_000, seed: 2 };
    let company = synth::company(&spec, true);
    let portal = company.portal.clone().expect("the wire form was asked for");
    // The department report's window: 12 months and the same month a year before.
    let request = fetch_core::request(&synth::config(), "department-monthly");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let runs = rt
        .block_on(fetch_core::run(portal, EmulatorOptions::default(), ClientSettings::default(), &request))
        .expect("the fetch succeeds");
    let run = &runs.first;
    // What the client must bring back: deals modified in the window, and every open deal.
    let expected: BTreeSet<u64> = company
        .snapshot
        .deals
        .iter()
        .filter(|d| d.moved_time.is_some_and(|t| t >= request.since) || d.stage_semantics == Semantics::Process)
        .map(|d| d.id)
        .collect();
    let fetched: BTreeSet<u64> = run.snapshot.deals.iter().map(|d| d.id).collect();
    assert_eq!(fetched, expected);
    assert!(!run.snapshot.activities.is_empty() && !run.snapshot.stage_history.is_empty());
    assert_eq!(run.emulator.requests, run.client_requests, "no fault was injected, so no request was retried");
    assert_eq!(run.emulator.rate_limited, 0, "the client's bucket keeps under the portal's");
    assert!(run.emulator.server_time > std::time::Duration::ZERO);
    // The request arithmetic the benchmark uses for portals too big to fetch here.
    let estimate = fetch_core::estimate(&company.snapshot, &request);
    assert!(estimate.singles > 50, "too small to need two rounds of single calls: {estimate:?}");
    assert_eq!(estimate.requests, run.client_requests, "{estimate:?}");
    // The second run, through the cache the first one filled.
    assert_eq!(runs.second.snapshot, run.snapshot);
    assert!(runs.second.client_requests <= 2, "{} requests: {:?}", runs.second.client_requests, runs.second.cache);
}

/// The kill harness (`cargo bench --bench kill`) with a few kills: the real binary's `send`
/// SIGKILLed during delivery, then run to the end. The invariant is asserted here; how
/// often a duplicate happens is the benchmark's to say.
#[test]
fn the_kill_harness_keeps_every_report_and_never_two_different_ones() {
    use common::kill_core::{self, Options};

    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        bin: env!("CARGO_BIN_EXE_salespulse").into(),
        dir: dir.path().to_owned(),
        kills: 4,
        seed: 7,
        job: "manager-weekly".into(),
        period: "2026-W47".into(),
    };
    let f = kill_core::run(&options);
    assert_eq!(f.kills, 4, "{f:?}");
    assert!(f.rounds >= 1 && f.reports >= 3 * (f.rounds + 1), "the demo has managers: {f:?}");
    assert_eq!(f.processes, f.kills + f.rounds, "every round ended with a send that finished: {f:?}");
    assert!(f.messages >= f.reports, "every report was delivered: {f:?}");
    assert!(f.invariant_holds(), "{f:?}");
    assert!(f.duplicates <= f.kills, "a kill interrupts one transaction at most: {f:?}");
}
