//! The KPI benchmark's core: index a snapshot once, then compute the department report and
//! every manager's scorecard for one week and one month, each with its 12-period trend.
//! Timing only; what the numbers mean is `kpi`'s tests' business.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use salespulse::config::Config;
use salespulse::domain::{CrmSnapshot, Period};
use salespulse::kpi::{Analysis, KpiSettings, ReportData};

use super::synth;

/// One stage's wall time and what it produced.
pub struct Stage {
    pub name: String,
    pub took: Duration,
    pub reports: usize,
}

pub struct KpiRun {
    pub managers: usize,
    pub stages: Vec<Stage>,
    /// A scorecard and the department report of the week, to check the run did real work.
    pub sample_manager: Option<ReportData>,
    pub sample_department: ReportData,
}

impl KpiRun {
    pub fn total(&self) -> Duration {
        self.stages.iter().map(|s| s.took).sum()
    }
}

/// The KPI settings the benchmarks use: the demo config with a 12-period trend.
pub fn settings(config: &Config) -> KpiSettings {
    let mut s = config.kpi_settings();
    s.trend_periods = 12;
    s
}

/// Indexes `snapshot` and computes, for 2026-W47 and for 2026-10, the department report and
/// all scorecards, on `threads` threads for the scorecards.
pub fn run(snapshot: &CrmSnapshot, settings: &KpiSettings, threads: usize) -> KpiRun {
    let generated_at = synth::as_of();
    let mut stages = Vec::new();
    let t = Instant::now();
    let analysis = Analysis::new(snapshot, settings);
    stages.push(Stage { name: "index the snapshot (Analysis::new)".into(), took: t.elapsed(), reports: 0 });
    let managers: Vec<u64> = analysis.managers().iter().map(|u| u.id).collect();

    let week = Period::week_of(synth::week47(), synth::TZ);
    let month = Period::month_of(NaiveDate::from_ymd_opt(2026, 10, 1).expect("a valid date"), synth::TZ);
    let mut sample_manager = None;
    let mut sample_department = None;
    for (label, period) in [("week 2026-W47", &week), ("month 2026-10", &month)] {
        let t = Instant::now();
        let department = analysis.department_report(period, generated_at);
        stages.push(Stage { name: format!("department report, {label}"), took: t.elapsed(), reports: 1 });
        let t = Instant::now();
        let cards = scorecards(&analysis, period, &managers, threads);
        stages.push(Stage {
            name: format!("{} scorecards, {label} ({threads} thread(s))", cards.len()),
            took: t.elapsed(),
            reports: cards.len(),
        });
        if sample_department.is_none() {
            sample_department = Some(department);
            sample_manager = cards.into_iter().next();
        }
    }
    KpiRun {
        managers: managers.len(),
        stages,
        sample_manager,
        sample_department: sample_department.expect("the loop ran"),
    }
}

/// Every manager's scorecard for `period`, in manager order, on `threads` threads.
pub fn scorecards(analysis: &Analysis<'_>, period: &Period, managers: &[u64], threads: usize) -> Vec<ReportData> {
    let generated_at = synth::as_of();
    let threads = threads.max(1);
    let chunk = managers.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = managers
            .chunks(chunk)
            .map(|ids| {
                s.spawn(move || {
                    ids.iter().map(|id| analysis.manager_report(period, *id, generated_at)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("a scorecard thread panicked")).collect()
    })
}
