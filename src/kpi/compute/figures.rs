//! The sixteen KPIs of a population over a period, their targets and comparison, and the
//! team around a manager: ranks, medians, the department table's order.

use std::sync::Arc;

use crate::domain::{Id, Lead, Period, PeriodKind, Semantics, Timestamp};

use super::analysis::{Analysis, Bounds, DealFacts, TeamValues, Values};
use crate::kpi::catalog::Kpi;
use crate::kpi::model::{KpiValue, Kpis, ManagerRow, TeamContext};

pub(super) fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// The median of `values` (sorted here); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

pub(super) fn mean(values: &[f64]) -> Option<f64> {
    ratio(values.iter().sum(), values.len() as f64)
}

/// A satisfaction value as docs/kpi.md counts it: a number within the scale, else no value.
pub fn parse_satisfaction(raw: &str, scale: (f64, f64)) -> Option<f64> {
    let v: f64 = raw.trim().parse().ok()?;
    (v.is_finite() && v >= scale.0 && v <= scale.1).then_some(v)
}

impl Analysis<'_> {
    /// The sixteen KPIs of a population over a period.
    pub fn values(&self, pop: &[Id], period: &Period) -> Values {
        self.values_in(pop, &Bounds::new(period))
    }

    /// The sixteen KPIs of a population over `[start, until)`: a period to date, as a pace
    /// alert reads it (docs/kpi.md "Alerts"), by the same rules as a whole period.
    pub fn values_between(&self, pop: &[Id], start: Timestamp, until: Timestamp) -> Values {
        self.values_in(pop, &Bounds { start, end: until })
    }

    pub(super) fn values_in(&self, pop: &[Id], b: &Bounds) -> Values {
        let mut v = Values::default();
        let won: Vec<&DealFacts> = self.deals_of(pop).filter(|d| d.won_in(b)).collect();
        let n_won = won.len() as f64;
        // `Sum` of no floats is −0.0; money shows as 0.
        let revenue: f64 = won.iter().map(|d| d.money).fold(0.0, |a, b| a + b);
        v.set(Kpi::DealsWon, Some(n_won));
        v.set(Kpi::Revenue, Some(revenue));
        v.set(Kpi::AvgDealValue, ratio(revenue, n_won));
        let n_lost = self.deals_of(pop).filter(|d| d.lost_at.is_some_and(|t| b.contains(&t))).count() as f64;
        v.set(Kpi::DealsLost, Some(n_lost));
        v.set(Kpi::WinRate, ratio(n_won * 100.0, n_won + n_lost));

        let leads: Vec<&Lead> = self.leads_in(pop, b).collect();
        let converted = leads.iter().filter(|l| l.status_semantics == Semantics::Success).count() as f64;
        v.set(Kpi::LeadsTotal, Some(leads.len() as f64));
        v.set(Kpi::LeadsConverted, Some(converted));
        v.set(Kpi::LeadConversion, ratio(converted * 100.0, leads.len() as f64));

        let cycles: Vec<f64> = won.iter().filter_map(|d| d.cycle_days()).collect();
        v.set(Kpi::CycleDaysMedian, median(&cycles));
        v.set(Kpi::CycleDaysMean, mean(&cycles));

        v.set(Kpi::EmailsSent, Some(Self::count_in(&self.emails_sent, pop, b) as f64));
        v.set(Kpi::CallsMade, Some(Self::count_in(&self.calls_made, pop, b) as f64));

        let scores: Vec<f64> = won
            .iter()
            .filter_map(|d| d.deal.satisfaction.as_deref())
            .filter_map(|s| parse_satisfaction(s, self.settings.satisfaction_scale))
            .collect();
        v.set(Kpi::Csat, mean(&scores));
        v.set(Kpi::CsatResponses, Some(scores.len() as f64));
        let returning = won.iter().filter(|d| d.deal.is_return_customer).count() as f64;
        v.set(Kpi::RepeatShare, ratio(returning * 100.0, n_won));
        let open: f64 =
            self.deals_of(pop).filter(|d| d.open_at(&b.end).is_some()).map(|d| d.money).fold(0.0, |a, b| a + b);
        v.set(Kpi::OpenPipelineValue, Some(open));
        v
    }

    /// A manager's target for a KPI in a period of `kind` (own, else default, else none).
    pub(super) fn manager_target(&self, manager: Id, kind: PeriodKind, kpi: Kpi) -> Option<f64> {
        self.settings.targets.manager(manager, kind, kpi)
    }

    /// The department's target: its own; else, for additive KPIs, the sum of the managers'
    /// targets when every manager has one; else none. Custom periods have none.
    pub fn department_target(&self, kind: PeriodKind, kpi: Kpi) -> Option<f64> {
        kind.target_key()?;
        if let Some(own) = self.settings.targets.department(kind, kpi) {
            return Some(own);
        }
        if !kpi.is_additive() || self.managers.is_empty() {
            return None;
        }
        self.managers.iter().map(|m| self.manager_target(m.id, kind, kpi)).sum()
    }

    pub(super) fn kpis(&self, cur: &Values, prev: &Values, target: impl Fn(Kpi) -> Option<f64>) -> Kpis {
        let mut kpis = Kpis::default();
        for kpi in Kpi::ALL {
            *kpis.of_mut(kpi) = KpiValue::compare(kpi, cur.get(kpi), prev.get(kpi), target(kpi));
        }
        kpis
    }

    /// Every manager's values over `period`, cached per period.
    pub(super) fn team(&self, period: &Period) -> TeamValues {
        let mut cache = self.team_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(period.clone())
            .or_insert_with(|| {
                let b = Bounds::new(period);
                Arc::new(self.managers.iter().map(|m| (m.id, self.values_in(&[m.id], &b))).collect())
            })
            .clone()
    }

    pub(super) fn team_context(&self, period: &Period, manager: Id) -> TeamContext {
        let team = self.team(period);
        let rank = |kpi: Kpi| -> Option<usize> {
            if !self.settings.show_ranks {
                return None;
            }
            let own = team.iter().find(|(id, _)| *id == manager)?.1.get(kpi)?;
            // Competition ranking: managers with the same value share the better place.
            Some(1 + team.iter().filter(|(_, v)| v.get(kpi).is_some_and(|x| x > own)).count())
        };
        let medians = Kpi::ALL
            .into_iter()
            .map(|kpi| {
                let vals: Vec<f64> = team.iter().filter_map(|(_, v)| v.get(kpi)).collect();
                (kpi.key().to_owned(), median(&vals))
            })
            .collect();
        TeamContext {
            size: team.len(),
            rank_revenue: rank(Kpi::Revenue),
            rank_conversion: rank(Kpi::LeadConversion),
            medians,
        }
    }
}

/// Orders managers best first by `kpi` (descending; ascending where less is better), nulls
/// last, ties by name then id; marks the first and last with a value `best` / `worst`.
pub fn sort_and_mark(rows: &mut [ManagerRow], kpi: Kpi) {
    let value = |r: &ManagerRow| r.kpis.of(kpi).value;
    let lower = kpi.lower_is_better();
    rows.sort_by(|a, b| {
        let by_value = match (value(a), value(b)) {
            (Some(x), Some(y)) if lower => x.total_cmp(&y),
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        let id = |r: &ManagerRow| r.id.parse::<Id>().unwrap_or(Id::MAX);
        by_value.then_with(|| a.name.cmp(&b.name)).then_with(|| id(a).cmp(&id(b)))
    });
    let with_value: Vec<usize> = (0..rows.len()).filter(|&i| value(&rows[i]).is_some()).collect();
    if let (Some(&first), Some(&last)) = (with_value.first(), with_value.last())
        && first != last
        && value(&rows[first]) != value(&rows[last])
    {
        rows[first].mark = Some("best".to_owned());
        rows[last].mark = Some("worst".to_owned());
    }
}
