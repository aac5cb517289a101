//! What a report lists beside the KPIs: stuck deals, the trend, the won deals' cycle
//! times, the data-quality notes.

use std::collections::BTreeSet;

use crate::domain::{EventSource, Id, Period, PeriodKind, Semantics, Timestamp};

use super::analysis::{Analysis, Bounds, DealFacts};
use super::figures::ratio;
use crate::kpi::catalog::Kpi;
use crate::kpi::model::{StuckDeal, StuckSummary, TrendPoint};
use crate::kpi::present;

impl Analysis<'_> {
    /// Every stuck deal of the population at the period's end, longest idle first.
    pub(super) fn stuck_deals(&self, pop: &[Id], b: &Bounds) -> Vec<StuckDeal> {
        let threshold = self.settings.stuck_after_days;
        self.open_deal_rows(pop, &b.end, |days| days > threshold, |a, b| b.days.total_cmp(&a.days))
    }

    /// A manager's deals open at `at` (docs/kpi.md "The stage of a deal at the period's
    /// end", with `at` as the end), the most money first (equal: lower id first), each with
    /// the days its stage had not changed: what an alert tells a manager to call first.
    pub fn open_deals(&self, manager: Id, at: &Timestamp) -> Vec<StuckDeal> {
        self.open_deal_rows(&[manager], at, |_| true, |a, b| b.value.total_cmp(&a.value))
    }

    /// The deals of `pop` open at `at` whose idle days `keep` admits, as list rows, sorted by
    /// `order` and then by lower id.
    fn open_deal_rows(
        &self,
        pop: &[Id],
        at: &Timestamp,
        keep: impl Fn(f64) -> bool,
        order: impl Fn(&StuckDeal, &StuckDeal) -> std::cmp::Ordering,
    ) -> Vec<StuckDeal> {
        let mut out: Vec<StuckDeal> = self
            .deals_of(pop)
            .filter_map(|d| {
                let (stage, days) = d.open_at(at)?;
                keep(days).then(|| StuckDeal {
                    id: d.deal.id.to_string(),
                    title: d.deal.title.clone(),
                    stage: self.stages.get(stage).map(|s| s.name.clone()).unwrap_or_else(|| stage.to_owned()),
                    pipeline: self.pipeline_name(d.deal.pipeline_id),
                    days,
                    value: d.money,
                    manager: self.user_name(d.deal.assigned_by),
                    value_text: None,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            order(a, b).then_with(|| {
                let id = |s: &StuckDeal| s.id.parse::<Id>().unwrap_or(Id::MAX);
                id(a).cmp(&id(b))
            })
        });
        out
    }

    pub(super) fn pipeline_name(&self, id: Id) -> String {
        self.snapshot.pipelines.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_else(|| format!("#{id}"))
    }

    pub(super) fn user_name(&self, id: Id) -> String {
        self.users.get(&id).map(|u| u.name.clone()).unwrap_or_else(|| format!("#{id}"))
    }

    pub(super) fn trend(
        &self,
        pop: &[Id],
        period: &Period,
        target: impl Fn(PeriodKind, Kpi) -> Option<f64>,
    ) -> Vec<TrendPoint> {
        period
            .trailing(self.settings.trend_periods.max(1))
            .iter()
            .map(|p| {
                // Only what a trend point shows; the full sixteen (open pipeline walks every
                // deal's history) were a good part of a department report's time.
                let b = Bounds::new(p);
                let won: Vec<&DealFacts> = self.deals_of(pop).filter(|d| d.won_in(&b)).collect();
                let revenue = won.iter().map(|d| d.money).fold(0.0, |a, b| a + b);
                let (leads, converted) = self
                    .leads_in(pop, &b)
                    .fold((0.0, 0.0), |(n, c), l| (n + 1.0, c + f64::from(l.status_semantics == Semantics::Success)));
                TrendPoint {
                    label: p.label(),
                    short: present::short_label(p, self.settings.language),
                    deals_won: won.len() as u64,
                    revenue,
                    lead_conversion: ratio(converted * 100.0, leads),
                    avg_deal_value: ratio(revenue, won.len() as f64),
                    target_deals_won: target(p.kind, Kpi::DealsWon),
                    target_revenue: target(p.kind, Kpi::Revenue),
                }
            })
            .collect()
    }

    pub(super) fn cycle_days(&self, pop: &[Id], b: &Bounds) -> Vec<f64> {
        let mut won: Vec<(Timestamp, Id, f64)> = self
            .deals_of(pop)
            .filter(|d| d.won_in(b))
            .filter_map(|d| Some((d.won_at?.0, d.deal.id, d.cycle_days()?)))
            .collect();
        won.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        won.into_iter().map(|w| w.2).collect()
    }

    /// Data-quality notes over the population's records that bear on this period.
    pub(super) fn notes(&self, pop: &[Id], b: &Bounds, department: bool) -> Vec<String> {
        let lang = self.settings.language;
        let won: Vec<&DealFacts> = self.deals_of(pop).filter(|d| d.won_in(b)).collect();
        let mut n = present::Notes::new(lang);
        n.fallback_won_at(won.iter().filter(|d| d.won_at.is_some_and(|w| w.1 == EventSource::Fallback)).count());
        n.won_without_time(self.deals_of(pop).filter(|d| d.won_without_time).count());
        let mut no_rate_codes = BTreeSet::new();
        let no_rate = self
            .deals_of(pop)
            .filter(|d| !d.has_rate && (d.won_in(b) || d.open_at(&b.end).is_some()))
            .inspect(|d| {
                no_rate_codes.insert(d.deal.currency.clone());
            })
            .count();
        n.no_rate(no_rate, &no_rate_codes.into_iter().collect::<Vec<_>>().join(", "));
        n.won_without_value(won.iter().filter(|d| d.deal.opportunity <= 0.0).count());
        n.unknown_stage(self.deals_of(pop).filter(|d| !self.stages.contains_key(d.deal.stage_id.as_str())).count());
        n.lead_gone(won.iter().filter(|d| d.lead_gone).count());
        if department {
            n.out_of_scope(self.out_of_scope);
        }
        let mut out = n.into_lines();
        out.extend(self.snapshot.notes.iter().cloned());
        out
    }
}

/// The counts and sums over all stuck deals, of which the PDF and e-mail list the first
/// `shown`; `present` words them.
pub fn stuck_summary(deals: &[StuckDeal], shown: usize) -> StuckSummary {
    let shown = shown.min(deals.len());
    let sum = |d: &[StuckDeal]| d.iter().map(|d| d.value).fold(0.0, |a, b| a + b);
    StuckSummary {
        count: deals.len(),
        value: sum(deals),
        shown,
        more: deals.len() - shown,
        more_value: sum(&deals[shown..]),
        value_text: None,
        more_text: None,
    }
}
