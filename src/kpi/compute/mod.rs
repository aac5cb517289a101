//! docs/kpi.md computed: who is a manager, when a deal was won or lost, the sixteen KPIs over a
//! population of managers and a period, their comparison with the previous period and the
//! targets, stuck deals, breakdowns, trend and team context.
//!
//! [`Analysis`] indexes a snapshot once (records by manager, each deal's `won_at`, `lost_at`,
//! money and stage history) so that hundreds of scorecards cost little. A scorecard's
//! population is one manager; the department's is every manager in scope, taken as one
//! population (docs/kpi.md: never the sum or average of managers' figures). Formatting is left
//! to `present`, coaching sentences to `hints`, charts to the chart stage.

mod analysis;
mod breakdowns;
mod figures;
mod lists;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use chrono_tz::Tz;

use crate::domain::{Id, Period, PeriodKind};

use super::catalog::Kpi;
use super::model::{Kpis, ManagerRef, ManagerRow, ReportData};
use super::{hints, present};
use analysis::Bounds;

pub use analysis::{Analysis, KpiSettings, Values, managers_in_scope};
pub use figures::{median, parse_satisfaction, sort_and_mark};
pub use lists::stuck_summary;

impl Analysis<'_> {
    /// A manager's scorecard over `period`.
    pub fn manager_report(&self, period: &Period, manager: Id, generated_at: DateTime<Tz>) -> ReportData {
        let lang = self.settings.language;
        let pop = [manager];
        let cur = self.values(&pop, period);
        let prev = self.values(&pop, &period.previous());
        let target = |kind: PeriodKind, kpi: Kpi| self.manager_target(manager, kind, kpi);
        let kpis = self.kpis(&cur, &prev, |kpi| target(period.kind, kpi));
        let mut data = self.frame(false, &pop, period, generated_at, kpis, target);
        data.manager = Some(ManagerRef {
            id: manager.to_string(),
            name: self.user_name(manager),
            email: self.users.get(&manager).and_then(|u| u.email.clone()),
        });
        data.team = Some(self.team_context(period, manager));
        data.hints = hints::scorecard_hints(&data, lang);
        present::present(&mut data, lang);
        data
    }

    /// The department report over `period`: all managers in scope as one population.
    pub fn department_report(&self, period: &Period, generated_at: DateTime<Tz>) -> ReportData {
        let lang = self.settings.language;
        let pop = self.manager_ids();
        let previous = period.previous();
        let cur = self.values(&pop, period);
        let prev = self.values(&pop, &previous);
        let target = |kind: PeriodKind, kpi: Kpi| self.department_target(kind, kpi);
        let kpis = self.kpis(&cur, &prev, |kpi| target(period.kind, kpi));
        let year_ago = self.values(&pop, &period.year_before());
        let mut kpis_year_ago = Kpis::default();
        for kpi in Kpi::ALL {
            kpis_year_ago.of_mut(kpi).value = year_ago.get(kpi);
        }

        let team = self.team(period);
        let team_prev = self.team(&previous);
        let mut rows: Vec<ManagerRow> = self
            .managers
            .iter()
            .map(|m| {
                let find = |t: &[(Id, Values)]| t.iter().find(|(id, _)| *id == m.id).map(|(_, v)| v.clone());
                let (c, p) = (find(&team).unwrap_or_default(), find(&team_prev).unwrap_or_default());
                ManagerRow {
                    id: m.id.to_string(),
                    name: m.name.clone(),
                    kpis: self.kpis(&c, &p, |kpi| self.manager_target(m.id, period.kind, kpi)),
                    mark: None,
                }
            })
            .collect();
        sort_and_mark(&mut rows, self.settings.sort_managers_by);

        let mut data = self.frame(true, &pop, period, generated_at, kpis, target);
        data.kpis_year_ago = Some(kpis_year_ago);
        data.managers = Some(rows);
        if self.settings.definitions_page {
            data.definitions = present::definitions(self.settings.stuck_after_days, lang);
        }
        present::present(&mut data, lang);
        data
    }

    /// What a scorecard and the department report both hold for a population and period:
    /// the periods, `kpis`, the lists beside them and the notes; the rest is left empty for
    /// the caller.
    fn frame(
        &self,
        department: bool,
        pop: &[Id],
        period: &Period,
        generated_at: DateTime<Tz>,
        kpis: Kpis,
        target: impl Fn(PeriodKind, Kpi) -> Option<f64>,
    ) -> ReportData {
        let lang = self.settings.language;
        let b = Bounds::new(period);
        let stuck_deals = self.stuck_deals(pop, &b);
        let shown = if department { self.settings.max_stuck_deals_department } else { self.settings.max_stuck_deals };
        ReportData {
            report: if department { "department" } else { "manager" }.to_owned(),
            generated_at: generated_at.to_rfc3339_opts(SecondsFormat::Secs, false),
            period: present::period_info(period, lang),
            previous_period: present::period_info(&period.previous(), lang),
            year_ago_period: present::period_info(&period.year_before(), lang),
            currency: self.base.clone(),
            language: lang.code().to_owned(),
            manager: None,
            kpis,
            kpis_year_ago: None,
            stuck_summary: stuck_summary(&stuck_deals, shown),
            stuck_deals,
            managers: None,
            breakdowns: self.breakdowns(pop, &b, lang),
            trend: self.trend(pop, period, target),
            cycle_days: self.cycle_days(pop, &b),
            team: None,
            hints: Vec::new(),
            notes: self.notes(pop, &b, department),
            definitions: Vec::new(),
            labels: BTreeMap::new(),
            charts: BTreeMap::new(),
        }
    }
}
