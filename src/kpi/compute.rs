//! docs/kpi.md computed: who is a manager, when a deal was won or lost, the sixteen KPIs over a
//! population of managers and a period, their comparison with the previous period and the
//! targets, stuck deals, breakdowns, trend and team context.
//!
//! [`Analysis`] indexes a snapshot once (records by manager, each deal's `won_at`, `lost_at`,
//! money and stage history) so that hundreds of scorecards cost little. A scorecard's
//! population is one manager; the department's is every manager in scope, taken as one
//! population (docs/kpi.md: never the sum or average of managers' figures). Formatting is left
//! to `present`, coaching sentences to `hints`, charts to the chart stage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat};
use chrono_tz::Tz;

use crate::config::{Config, KPI_KEYS, Targets};
use crate::crm::Scope;
use crate::domain::{
    ACTIVITY_CALL, ACTIVITY_EMAIL, CrmSnapshot, DIRECTION_OUTGOING, Deal, EventSource, Id, Lead, Period, PeriodKind,
    ProductRow, Semantics, Stage, StageChange, Timestamp, User, days_between,
};
use crate::locale::Language;

use super::model::{
    Breakdowns, FunnelPipeline, FunnelStage, KpiValue, Kpis, ManagerRef, ManagerRow, ProductRowOut, ReportData,
    SourceRow, StuckDeal, StuckSummary, TeamContext, TrendPoint,
};
use super::present;

/// KPIs that add up across managers: a department target may be the sum of the managers'
/// targets (docs/kpi.md "Comparisons and targets"); averages, rates and medians do not add up.
pub const ADDITIVE_KPIS: [&str; 9] = [
    "deals_won",
    "revenue",
    "deals_lost",
    "leads_total",
    "leads_converted",
    "emails_sent",
    "calls_made",
    "csat_responses",
    "open_pipeline_value",
];

/// KPIs where less is better: cycle time and lost deals.
pub fn lower_is_better(key: &str) -> bool {
    matches!(key, "cycle_days_median" | "cycle_days_mean" | "deals_lost")
}

/// What the KPI pass needs from the config.
#[derive(Clone, Debug)]
pub struct KpiSettings {
    pub scope: Scope,
    pub targets: Targets,
    /// The config's base currency; else the snapshot's `BASE = "Y"` one.
    pub base_currency: Option<String>,
    pub stuck_after_days: f64,
    /// Inclusive bounds of a valid satisfaction value.
    pub satisfaction_scale: (f64, f64),
    pub trend_periods: usize,
    pub show_ranks: bool,
    /// The KPI key the department report orders managers by.
    pub sort_managers_by: String,
    /// How many stuck deals a scorecard's PDF and e-mail list (the data holds all).
    pub max_stuck_deals: usize,
    /// The same for the department report.
    pub max_stuck_deals_department: usize,
    /// The department report ends with a page of definitions.
    pub definitions_page: bool,
    pub language: Language,
}

impl KpiSettings {
    /// The settings a config gives; a job's language, when it has one, may replace
    /// `language` afterwards.
    pub fn from_config(config: &Config) -> KpiSettings {
        KpiSettings {
            scope: Scope {
                departments: config.crm.departments.clone(),
                managers: config.crm.managers.clone(),
                include_subdepartments: config.crm.include_subdepartments,
            },
            targets: config.targets.clone(),
            base_currency: config.crm.base_currency.clone(),
            stuck_after_days: config.crm.stuck_after_days,
            satisfaction_scale: config.crm.satisfaction_scale,
            trend_periods: config.report.trend_periods,
            show_ranks: config.report.show_ranks,
            sort_managers_by: config.report.sort_managers_by.clone(),
            max_stuck_deals: config.report.max_stuck_deals,
            max_stuck_deals_department: config.report.max_stuck_deals_department,
            definitions_page: config.report.definitions_page,
            language: config.language,
        }
    }
}

/// The sixteen KPI values of one population and period; `None` is docs/kpi.md's null.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values(BTreeMap<&'static str, Option<f64>>);

impl Values {
    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.get(key).copied().flatten()
    }

    fn set(&mut self, key: &'static str, v: Option<f64>) {
        debug_assert!(KPI_KEYS.contains(&key));
        self.0.insert(key, v);
    }
}

/// A period's bounds as instants, computed once: `Period::contains` would resolve local
/// midnight again for every record.
#[derive(Clone, Debug)]
struct Bounds {
    start: Timestamp,
    end: Timestamp,
}

impl Bounds {
    fn new(period: &Period) -> Bounds {
        Bounds { start: period.start().fixed_offset(), end: period.end().fixed_offset() }
    }

    fn contains(&self, t: &Timestamp) -> bool {
        *t >= self.start && *t < self.end
    }
}

/// A deal with what docs/kpi.md derives from it, computed once per snapshot.
#[derive(Debug)]
struct DealFacts<'a> {
    deal: &'a Deal,
    /// `OPPORTUNITY` in the base currency; 0 when the currency has no rate.
    money: f64,
    has_rate: bool,
    won_at: Option<(Timestamp, EventSource)>,
    /// The deal is won now but no time stamp says when.
    won_without_time: bool,
    lost_at: Option<Timestamp>,
    /// The lead's `DATE_CREATE` when the lead is known, else the deal's.
    first_contact: Timestamp,
    /// `LEAD_ID` names a lead the snapshot does not have (deleted).
    lead_gone: bool,
    /// Stage history, oldest first (ties by entry id).
    history: Vec<&'a StageChange>,
}

impl DealFacts<'_> {
    fn won_in(&self, b: &Bounds) -> bool {
        self.won_at.is_some_and(|(t, _)| b.contains(&t))
    }

    fn cycle_days(&self) -> Option<f64> {
        self.won_at.map(|(t, _)| days_between(&self.first_contact, &t))
    }

    /// The deal's stage at `end` (docs/kpi.md "The stage of a deal at the period's end"): its
    /// stage id, semantics and since when it was there (`None` when only the current stage is
    /// known). `None` when the deal did not exist yet. The history holds only the entries
    /// since the start of the report's window: a deal whose entries all lie before it is
    /// taken in its current stage, which it has been in since before the window.
    fn stage_at(&self, end: &Timestamp) -> Option<(&str, Semantics, Option<Timestamp>)> {
        if self.deal.created >= *end {
            return None;
        }
        match self.history.iter().rev().find(|h| h.created < *end) {
            Some(h) => Some((h.stage_id.as_str(), h.semantics, Some(h.created))),
            None => Some((self.deal.stage_id.as_str(), self.deal.stage_semantics, None)),
        }
    }

    /// Open at `end`, with the days its stage had not changed.
    fn open_at(&self, end: &Timestamp) -> Option<(&str, f64)> {
        let (stage, semantics, since) = self.stage_at(end)?;
        if semantics != Semantics::Process {
            return None;
        }
        let since = since.or_else(|| self.deal.moved_time.filter(|t| t < end)).unwrap_or(self.deal.created);
        Some((stage, days_between(&since, end)))
    }
}

/// Every manager's values over one period, in the managers' order.
type TeamValues = Arc<Vec<(Id, Values)>>;

/// A snapshot indexed for the KPI pass.
pub struct Analysis<'a> {
    snapshot: &'a CrmSnapshot,
    settings: &'a KpiSettings,
    base: String,
    rates: BTreeMap<String, f64>,
    managers: Vec<&'a User>,
    users: HashMap<Id, &'a User>,
    stages: HashMap<&'a str, &'a Stage>,
    deals: HashMap<Id, Vec<DealFacts<'a>>>,
    /// Each manager's leads, by `DATE_CREATE`: a period is a slice found by binary search.
    leads: HashMap<Id, Vec<&'a Lead>>,
    /// Each manager's counted activities (outgoing, completed), `CREATED` sorted, per KPI:
    /// a department report asks for some twenty periods, and a scan of two million
    /// activities per period was most of its time (BENCHMARKS.md).
    emails_sent: HashMap<Id, Vec<Timestamp>>,
    calls_made: HashMap<Id, Vec<Timestamp>>,
    product_rows: HashMap<Id, Vec<&'a ProductRow>>,
    /// Deals, leads and activities of users out of scope: counted nowhere, noted.
    out_of_scope: (usize, usize, usize),
    /// Every manager's values per period, for ranks and team medians: computed once per
    /// period, not once per scorecard.
    team_cache: Mutex<HashMap<Period, TeamValues>>,
}

/// Active users in the configured departments (and their sub-departments unless switched
/// off) or listed explicitly, sorted by name then id.
pub fn managers_in_scope<'a>(snapshot: &'a CrmSnapshot, scope: &Scope) -> Vec<&'a User> {
    let mut departments: BTreeSet<Id> = scope.departments.iter().copied().collect();
    if scope.include_subdepartments {
        // Walk `PARENT` links downwards until nothing new joins; a cycle in the portal's
        // structure cannot loop because a department joins once.
        loop {
            let before = departments.len();
            for d in &snapshot.departments {
                if d.parent.is_some_and(|p| departments.contains(&p)) {
                    departments.insert(d.id);
                }
            }
            if departments.len() == before {
                break;
            }
        }
    }
    let mut out: Vec<&User> = snapshot
        .users
        .iter()
        .filter(|u| u.active)
        .filter(|u| scope.managers.contains(&u.id) || u.departments.iter().any(|d| departments.contains(d)))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    out.dedup_by_key(|u| u.id);
    out
}

fn ratio(num: f64, den: f64) -> Option<f64> {
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

fn mean(values: &[f64]) -> Option<f64> {
    ratio(values.iter().sum(), values.len() as f64)
}

/// A satisfaction value as docs/kpi.md counts it: a number within the scale, else no value.
pub fn parse_satisfaction(raw: &str, scale: (f64, f64)) -> Option<f64> {
    let v: f64 = raw.trim().parse().ok()?;
    (v.is_finite() && v >= scale.0 && v <= scale.1).then_some(v)
}

/// A KPI object from this and the previous period's value and a target (docs/kpi.md
/// "Comparisons and targets"); `text` is left to `present`.
pub fn compare(key: &str, value: Option<f64>, previous: Option<f64>, target: Option<f64>) -> KpiValue {
    let delta = value.zip(previous).map(|(v, p)| v - p);
    let delta_pct = delta.zip(previous).and_then(|(d, p)| (p != 0.0).then(|| d / p.abs() * 100.0));
    let attainment_pct = match (value, target) {
        // Less cycle time is better: beating the target must read as more than 100 %.
        (Some(v), Some(t)) if key.starts_with("cycle_days_") => (v > 0.0).then(|| t / v * 100.0),
        (Some(v), Some(t)) => (t != 0.0).then(|| v / t * 100.0),
        _ => None,
    };
    KpiValue { value, previous, delta, delta_pct, target, attainment_pct, text: None }
}

impl<'a> Analysis<'a> {
    pub fn new(snapshot: &'a CrmSnapshot, settings: &'a KpiSettings) -> Analysis<'a> {
        let base = snapshot.base_currency(settings.base_currency.as_deref());
        let rates = snapshot.rates_into(&base);
        let managers = managers_in_scope(snapshot, &settings.scope);
        let in_scope: BTreeSet<Id> = managers.iter().map(|u| u.id).collect();
        let users = snapshot.users.iter().map(|u| (u.id, u)).collect();
        let stages = snapshot.stages.iter().map(|s| (s.id.as_str(), s)).collect();
        let known_leads: HashMap<Id, &Lead> = snapshot.leads.iter().map(|l| (l.id, l)).collect();

        let mut history: HashMap<Id, Vec<&StageChange>> = HashMap::new();
        for h in &snapshot.stage_history {
            history.entry(h.deal_id).or_default().push(h);
        }
        for list in history.values_mut() {
            list.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        }

        let mut out_of_scope = (0, 0, 0);
        let mut deals: HashMap<Id, Vec<DealFacts>> = HashMap::new();
        for deal in &snapshot.deals {
            if deal.is_recurring {
                continue;
            }
            if !in_scope.contains(&deal.assigned_by) {
                out_of_scope.0 += 1;
                continue;
            }
            let history = history.remove(&deal.id).unwrap_or_default();
            let rate = rates.get(&deal.currency).copied();
            // A deal counts as won (lost) only while its current stage says so.
            let won_at = deal.event_at(Semantics::Success, history.iter().copied());
            let lost_at = deal.event_at(Semantics::Failure, history.iter().copied()).map(|(t, _)| t);
            let lead = deal.lead_id.and_then(|id| known_leads.get(&id));
            deals.entry(deal.assigned_by).or_default().push(DealFacts {
                deal,
                money: deal.opportunity * rate.unwrap_or(0.0),
                has_rate: rate.is_some(),
                won_without_time: deal.stage_semantics == Semantics::Success && won_at.is_none(),
                won_at,
                lost_at,
                first_contact: lead.map(|l| l.created).unwrap_or(deal.created),
                lead_gone: deal.lead_id.is_some() && lead.is_none(),
                history,
            });
        }
        let mut leads: HashMap<Id, Vec<&Lead>> = HashMap::new();
        for lead in &snapshot.leads {
            if in_scope.contains(&lead.assigned_by) {
                leads.entry(lead.assigned_by).or_default().push(lead);
            } else {
                out_of_scope.1 += 1;
            }
        }
        for list in leads.values_mut() {
            list.sort_by_key(|l| l.created);
        }
        let mut emails_sent: HashMap<Id, Vec<Timestamp>> = HashMap::new();
        let mut calls_made: HashMap<Id, Vec<Timestamp>> = HashMap::new();
        for a in &snapshot.activities {
            if !in_scope.contains(&a.responsible) {
                out_of_scope.2 += 1;
                continue;
            }
            if a.direction != DIRECTION_OUTGOING || !a.completed {
                continue;
            }
            let counted = match a.type_id {
                ACTIVITY_EMAIL => &mut emails_sent,
                ACTIVITY_CALL => &mut calls_made,
                _ => continue,
            };
            counted.entry(a.responsible).or_default().push(a.created);
        }
        for list in emails_sent.values_mut().chain(calls_made.values_mut()) {
            list.sort_unstable();
        }
        let mut product_rows: HashMap<Id, Vec<&ProductRow>> = HashMap::new();
        for r in &snapshot.product_rows {
            product_rows.entry(r.deal_id).or_default().push(r);
        }
        Analysis {
            snapshot,
            settings,
            base,
            rates,
            managers,
            users,
            stages,
            deals,
            leads,
            emails_sent,
            calls_made,
            product_rows,
            out_of_scope,
            team_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Managers in scope per docs/kpi.md "Who is a manager", sorted by name then id.
    pub fn managers(&self) -> Vec<&'a User> {
        self.managers.clone()
    }

    /// The base currency the money is in.
    pub fn currency(&self) -> &str {
        &self.base
    }

    fn manager_ids(&self) -> Vec<Id> {
        self.managers.iter().map(|u| u.id).collect()
    }

    fn deals_of<'s>(&'s self, pop: &'s [Id]) -> impl Iterator<Item = &'s DealFacts<'a>> + 's {
        pop.iter().flat_map(|m| self.deals.get(m).into_iter().flatten())
    }

    /// The population's leads created in `b`.
    fn leads_in<'s>(&'s self, pop: &'s [Id], b: &'s Bounds) -> impl Iterator<Item = &'a Lead> + 's {
        pop.iter().flat_map(move |m| {
            let list = self.leads.get(m).map_or(&[][..], Vec::as_slice);
            let from = list.partition_point(|l| l.created < b.start);
            let to = list.partition_point(|l| l.created < b.end);
            list[from..to].iter().copied()
        })
    }

    /// How many of the population's time stamps in `by_manager` fall into `b`.
    fn count_in(by_manager: &HashMap<Id, Vec<Timestamp>>, pop: &[Id], b: &Bounds) -> usize {
        pop.iter()
            .filter_map(|m| by_manager.get(m))
            .map(|list| list.partition_point(|t| *t < b.end) - list.partition_point(|t| *t < b.start))
            .sum()
    }

    /// The sixteen KPIs of a population over a period.
    pub fn values(&self, pop: &[Id], period: &Period) -> Values {
        self.values_in(pop, &Bounds::new(period))
    }

    fn values_in(&self, pop: &[Id], b: &Bounds) -> Values {
        let mut v = Values::default();
        let won: Vec<&DealFacts> = self.deals_of(pop).filter(|d| d.won_in(b)).collect();
        let n_won = won.len() as f64;
        // `Sum` of no floats is −0.0; money shows as 0.
        let revenue: f64 = won.iter().map(|d| d.money).fold(0.0, |a, b| a + b);
        v.set("deals_won", Some(n_won));
        v.set("revenue", Some(revenue));
        v.set("avg_deal_value", ratio(revenue, n_won));
        let n_lost = self.deals_of(pop).filter(|d| d.lost_at.is_some_and(|t| b.contains(&t))).count() as f64;
        v.set("deals_lost", Some(n_lost));
        v.set("win_rate", ratio(n_won * 100.0, n_won + n_lost));

        let leads: Vec<&Lead> = self.leads_in(pop, b).collect();
        let converted = leads.iter().filter(|l| l.status_semantics == Semantics::Success).count() as f64;
        v.set("leads_total", Some(leads.len() as f64));
        v.set("leads_converted", Some(converted));
        v.set("lead_conversion", ratio(converted * 100.0, leads.len() as f64));

        let cycles: Vec<f64> = won.iter().filter_map(|d| d.cycle_days()).collect();
        v.set("cycle_days_median", median(&cycles));
        v.set("cycle_days_mean", mean(&cycles));

        v.set("emails_sent", Some(Self::count_in(&self.emails_sent, pop, b) as f64));
        v.set("calls_made", Some(Self::count_in(&self.calls_made, pop, b) as f64));

        let scores: Vec<f64> = won
            .iter()
            .filter_map(|d| d.deal.satisfaction.as_deref())
            .filter_map(|s| parse_satisfaction(s, self.settings.satisfaction_scale))
            .collect();
        v.set("csat", mean(&scores));
        v.set("csat_responses", Some(scores.len() as f64));
        let returning = won.iter().filter(|d| d.deal.is_return_customer).count() as f64;
        v.set("repeat_share", ratio(returning * 100.0, n_won));
        let open: f64 =
            self.deals_of(pop).filter(|d| d.open_at(&b.end).is_some()).map(|d| d.money).fold(0.0, |a, b| a + b);
        v.set("open_pipeline_value", Some(open));
        v
    }

    /// A manager's target for a KPI in a period of `kind` (own, else default, else none).
    fn manager_target(&self, manager: Id, kind: PeriodKind, key: &str) -> Option<f64> {
        self.settings.targets.manager(manager, kind, key)
    }

    /// The department's target: its own; else, for additive KPIs, the sum of the managers'
    /// targets when every manager has one; else none. Custom periods have none.
    pub fn department_target(&self, kind: PeriodKind, key: &str) -> Option<f64> {
        kind.target_key()?;
        if let Some(own) = self.settings.targets.department(kind, key) {
            return Some(own);
        }
        if !ADDITIVE_KPIS.contains(&key) || self.managers.is_empty() {
            return None;
        }
        self.managers.iter().map(|m| self.manager_target(m.id, kind, key)).sum()
    }

    fn kpis(&self, cur: &Values, prev: &Values, target: impl Fn(&str) -> Option<f64>) -> Kpis {
        let mut kpis = Kpis::default();
        for key in KPI_KEYS {
            let slot = kpis.get_mut(key).expect("KPI_KEYS and Kpis name the same KPIs");
            *slot = compare(key, cur.get(key), prev.get(key), target(key));
        }
        kpis
    }

    /// Every manager's values over `period`, cached per period.
    fn team(&self, period: &Period) -> TeamValues {
        let mut cache = self.team_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(period.clone())
            .or_insert_with(|| {
                let b = Bounds::new(period);
                Arc::new(self.managers.iter().map(|m| (m.id, self.values_in(&[m.id], &b))).collect())
            })
            .clone()
    }

    /// Every stuck deal of the population at the period's end, longest idle first.
    fn stuck_deals(&self, pop: &[Id], b: &Bounds) -> Vec<StuckDeal> {
        let mut out: Vec<StuckDeal> = self
            .deals_of(pop)
            .filter_map(|d| {
                let (stage, days) = d.open_at(&b.end)?;
                (days > self.settings.stuck_after_days).then(|| StuckDeal {
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
            b.days.total_cmp(&a.days).then_with(|| {
                let id = |s: &StuckDeal| s.id.parse::<Id>().unwrap_or(Id::MAX);
                id(a).cmp(&id(b))
            })
        });
        out
    }

    fn pipeline_name(&self, id: Id) -> String {
        self.snapshot.pipelines.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_else(|| format!("#{id}"))
    }

    fn user_name(&self, id: Id) -> String {
        self.users.get(&id).map(|u| u.name.clone()).unwrap_or_else(|| format!("#{id}"))
    }

    fn breakdowns(&self, pop: &[Id], b: &Bounds, lang: Language) -> Breakdowns {
        Breakdowns { sources: self.sources(pop, b, lang), funnel: self.funnel(pop, b), products: self.products(pop, b) }
    }

    fn sources(&self, pop: &[Id], b: &Bounds, lang: Language) -> Vec<SourceRow> {
        let name_of = |id: &str| -> String {
            if id.is_empty() {
                return present::no_source_name(lang).to_owned();
            }
            self.snapshot.sources.iter().find(|s| s.id == id).map(|s| s.name.clone()).unwrap_or_else(|| id.to_owned())
        };
        let mut rows: BTreeMap<String, SourceRow> = BTreeMap::new();
        for lead in self.leads_in(pop, b) {
            let r = source_row(&mut rows, lead.source_id.as_deref(), &name_of);
            r.leads_total += 1;
            if lead.status_semantics == Semantics::Success {
                r.leads_converted += 1;
            }
        }
        for d in self.deals_of(pop).filter(|d| d.won_in(b)) {
            let r = source_row(&mut rows, d.deal.source_id.as_deref(), &name_of);
            r.deals_won += 1;
            r.revenue += d.money;
        }
        let mut out: Vec<SourceRow> = rows
            .into_values()
            .map(|mut r| {
                r.lead_conversion = ratio(r.leads_converted as f64 * 100.0, r.leads_total as f64);
                r.avg_deal_value = ratio(r.revenue, r.deals_won as f64);
                r
            })
            .collect();
        out.sort_by(|a, b| b.revenue.total_cmp(&a.revenue).then_with(|| a.id.cmp(&b.id)));
        out
    }

    fn funnel(&self, pop: &[Id], b: &Bounds) -> Vec<FunnelPipeline> {
        let mut entered: HashMap<&str, BTreeSet<Id>> = HashMap::new();
        let mut stay: HashMap<&str, Vec<f64>> = HashMap::new();
        for d in self.deals_of(pop) {
            for (i, h) in d.history.iter().enumerate() {
                if !b.contains(&h.created) {
                    continue;
                }
                entered.entry(h.stage_id.as_str()).or_default().insert(d.deal.id);
                if let Some(next) = d.history.get(i + 1) {
                    stay.entry(h.stage_id.as_str()).or_default().push(days_between(&h.created, &next.created));
                }
            }
        }
        let mut pipelines: Vec<(i64, Id, String)> =
            self.snapshot.pipelines.iter().map(|p| (p.sort, p.id, p.name.clone())).collect();
        // A stage may name a pipeline `crm.category.list` did not return; keep its stages.
        for s in &self.snapshot.stages {
            if !pipelines.iter().any(|p| p.1 == s.pipeline_id) {
                pipelines.push((i64::MAX, s.pipeline_id, format!("#{}", s.pipeline_id)));
            }
        }
        pipelines.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        pipelines
            .into_iter()
            .map(|(_, pid, name)| {
                let mut stages: Vec<&Stage> = self.snapshot.stages.iter().filter(|s| s.pipeline_id == pid).collect();
                stages.sort_by(|a, b| a.sort.cmp(&b.sort).then_with(|| a.id.cmp(&b.id)));
                // A deal that entered a later stage has passed the earlier ones, even when it
                // skipped them or entered them before the period: `reached` counts each deal
                // at every stage up to the furthest it entered in the period, so the funnel
                // narrows and stage-to-stage conversion stays within 100 %.
                let flow: Vec<&str> =
                    stages.iter().filter(|s| s.semantics != Semantics::Failure).map(|s| s.id.as_str()).collect();
                let mut furthest: HashMap<Id, usize> = HashMap::new();
                for (i, id) in flow.iter().enumerate() {
                    for deal in entered.get(id).into_iter().flatten() {
                        let f = furthest.entry(*deal).or_insert(i);
                        *f = (*f).max(i);
                    }
                }
                let reached_at = |i: usize| furthest.values().filter(|f| **f >= i).count() as u64;
                let mut prev_reached: Option<u64> = None;
                let stages = stages
                    .into_iter()
                    .map(|s| {
                        let deals = entered.get(s.id.as_str()).map_or(0, |set| set.len() as u64);
                        let (reached, conversion_pct) = match flow.iter().position(|id| *id == s.id) {
                            None => (deals, None),
                            Some(i) => {
                                let reached = reached_at(i);
                                let conversion = prev_reached.and_then(|p| ratio(reached as f64 * 100.0, p as f64));
                                prev_reached = Some(reached);
                                (reached, conversion)
                            }
                        };
                        FunnelStage {
                            id: s.id.clone(),
                            name: s.name.clone(),
                            deals,
                            reached,
                            semantics: semantics_code(s.semantics).to_owned(),
                            conversion_pct,
                            median_days: stay.get(s.id.as_str()).and_then(|v| median(v)),
                        }
                    })
                    .collect();
                FunnelPipeline { pipeline_id: pid.to_string(), pipeline: name, stages }
            })
            .collect()
    }

    fn products(&self, pop: &[Id], b: &Bounds) -> Vec<ProductRowOut> {
        let mut rows: BTreeMap<String, (String, BTreeSet<Id>, f64)> = BTreeMap::new();
        for d in self.deals_of(pop).filter(|d| d.won_in(b)) {
            let rate = self.rates.get(&d.deal.currency).copied().unwrap_or(0.0);
            for r in self.product_rows.get(&d.deal.id).into_iter().flatten() {
                // A free-text row (PRODUCT_ID 0) is keyed by its name.
                let id = if r.product_id == 0 { r.name.clone() } else { r.product_id.to_string() };
                let e = rows.entry(id).or_insert_with(|| (r.name.clone(), BTreeSet::new(), 0.0));
                e.1.insert(d.deal.id);
                e.2 += r.price * r.quantity * rate;
            }
        }
        let mut out: Vec<ProductRowOut> = rows
            .into_iter()
            .map(|(id, (name, deals, revenue))| ProductRowOut {
                id,
                name,
                deals_won: deals.len() as u64,
                revenue,
                avg_deal_value: ratio(revenue, deals.len() as f64),
            })
            .collect();
        out.sort_by(|a, b| b.revenue.total_cmp(&a.revenue).then_with(|| a.id.cmp(&b.id)));
        out
    }

    fn trend(&self, pop: &[Id], period: &Period, target: impl Fn(PeriodKind, &str) -> Option<f64>) -> Vec<TrendPoint> {
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
                    target_deals_won: target(p.kind, "deals_won"),
                    target_revenue: target(p.kind, "revenue"),
                }
            })
            .collect()
    }

    fn cycle_days(&self, pop: &[Id], b: &Bounds) -> Vec<f64> {
        let mut won: Vec<(Timestamp, Id, f64)> = self
            .deals_of(pop)
            .filter(|d| d.won_in(b))
            .filter_map(|d| Some((d.won_at?.0, d.deal.id, d.cycle_days()?)))
            .collect();
        won.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        won.into_iter().map(|w| w.2).collect()
    }

    fn team_context(&self, period: &Period, manager: Id) -> TeamContext {
        let team = self.team(period);
        let rank = |key: &str| -> Option<usize> {
            if !self.settings.show_ranks {
                return None;
            }
            let own = team.iter().find(|(id, _)| *id == manager)?.1.get(key)?;
            // Competition ranking: managers with the same value share the better place.
            Some(1 + team.iter().filter(|(_, v)| v.get(key).is_some_and(|x| x > own)).count())
        };
        let medians = KPI_KEYS
            .iter()
            .map(|key| {
                let vals: Vec<f64> = team.iter().filter_map(|(_, v)| v.get(key)).collect();
                (key.to_string(), median(&vals))
            })
            .collect();
        TeamContext {
            size: team.len(),
            rank_revenue: rank("revenue"),
            rank_conversion: rank("lead_conversion"),
            medians,
        }
    }

    /// Data-quality notes over the population's records that bear on this period.
    fn notes(&self, pop: &[Id], b: &Bounds, department: bool) -> Vec<String> {
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

    /// A manager's scorecard over `period`.
    pub fn manager_report(&self, period: &Period, manager: Id, generated_at: DateTime<Tz>) -> ReportData {
        let lang = self.settings.language;
        let pop = [manager];
        let b = Bounds::new(period);
        let cur = self.values_in(&pop, &b);
        let prev = self.values_in(&pop, &Bounds::new(&period.previous()));
        let kpis = self.kpis(&cur, &prev, |k| self.manager_target(manager, period.kind, k));
        let user = self.users.get(&manager);
        let mut data = ReportData {
            report: "manager".to_owned(),
            generated_at: generated_at.to_rfc3339_opts(SecondsFormat::Secs, false),
            period: present::period_info(period, lang),
            previous_period: present::period_info(&period.previous(), lang),
            year_ago_period: present::period_info(&period.year_before(), lang),
            currency: self.base.clone(),
            language: lang.code().to_owned(),
            manager: Some(ManagerRef {
                id: manager.to_string(),
                name: self.user_name(manager),
                email: user.and_then(|u| u.email.clone()),
            }),
            kpis,
            kpis_year_ago: None,
            stuck_summary: StuckSummary::default(),
            stuck_deals: self.stuck_deals(&pop, &b),
            managers: None,
            breakdowns: self.breakdowns(&pop, &b, lang),
            trend: self.trend(&pop, period, |kind, k| self.manager_target(manager, kind, k)),
            cycle_days: self.cycle_days(&pop, &b),
            team: Some(self.team_context(period, manager)),
            hints: Vec::new(),
            notes: self.notes(&pop, &b, false),
            definitions: Vec::new(),
            labels: BTreeMap::new(),
            charts: BTreeMap::new(),
        };
        data.stuck_summary = stuck_summary(&data.stuck_deals, self.settings.max_stuck_deals);
        data.hints = super::hints::scorecard_hints(&data, lang);
        present::present(&mut data, lang);
        data
    }

    /// The department report over `period`: all managers in scope as one population.
    pub fn department_report(&self, period: &Period, generated_at: DateTime<Tz>) -> ReportData {
        let lang = self.settings.language;
        let pop = self.manager_ids();
        let b = Bounds::new(period);
        let previous = period.previous();
        let cur = self.values_in(&pop, &b);
        let prev = self.values_in(&pop, &Bounds::new(&previous));
        let kpis = self.kpis(&cur, &prev, |k| self.department_target(period.kind, k));
        let year_ago = self.values_in(&pop, &Bounds::new(&period.year_before()));
        let mut kpis_year_ago = Kpis::default();
        for key in KPI_KEYS {
            kpis_year_ago.get_mut(key).expect("KPI_KEYS and Kpis name the same KPIs").value = year_ago.get(key);
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
                    kpis: self.kpis(&c, &p, |k| self.manager_target(m.id, period.kind, k)),
                    mark: None,
                }
            })
            .collect();
        sort_and_mark(&mut rows, &self.settings.sort_managers_by);

        let mut data = ReportData {
            report: "department".to_owned(),
            generated_at: generated_at.to_rfc3339_opts(SecondsFormat::Secs, false),
            period: present::period_info(period, lang),
            previous_period: present::period_info(&previous, lang),
            year_ago_period: present::period_info(&period.year_before(), lang),
            currency: self.base.clone(),
            language: lang.code().to_owned(),
            manager: None,
            kpis,
            kpis_year_ago: Some(kpis_year_ago),
            stuck_summary: StuckSummary::default(),
            stuck_deals: self.stuck_deals(&pop, &b),
            managers: Some(rows),
            breakdowns: self.breakdowns(&pop, &b, lang),
            trend: self.trend(&pop, period, |kind, k| self.department_target(kind, k)),
            cycle_days: self.cycle_days(&pop, &b),
            team: None,
            hints: Vec::new(),
            notes: self.notes(&pop, &b, true),
            definitions: Vec::new(),
            labels: BTreeMap::new(),
            charts: BTreeMap::new(),
        };
        data.stuck_summary = stuck_summary(&data.stuck_deals, self.settings.max_stuck_deals_department);
        if self.settings.definitions_page {
            data.definitions = present::definitions(self.settings.stuck_after_days, lang);
        }
        present::present(&mut data, lang);
        data
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

/// Orders managers best first by `key` (descending; ascending where less is better), nulls
/// last, ties by name then id; marks the first and last with a value `best` / `worst`.
pub fn sort_and_mark(rows: &mut [ManagerRow], key: &str) {
    let value = |r: &ManagerRow| r.kpis.get(key).and_then(|k| k.value);
    let lower = lower_is_better(key);
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

/// The row of a source, created empty on first sight. Records without a `SOURCE_ID` are
/// grouped under `""` (docs/kpi.md).
fn source_row<'r>(
    rows: &'r mut BTreeMap<String, SourceRow>,
    id: Option<&str>,
    name_of: &dyn Fn(&str) -> String,
) -> &'r mut SourceRow {
    let id = id.unwrap_or("").to_owned();
    rows.entry(id.clone()).or_insert_with(|| SourceRow {
        name: name_of(&id),
        id,
        leads_total: 0,
        leads_converted: 0,
        lead_conversion: None,
        deals_won: 0,
        revenue: 0.0,
        avg_deal_value: None,
    })
}

fn semantics_code(s: Semantics) -> &'static str {
    match s {
        Semantics::Process => "P",
        Semantics::Success => "S",
        Semantics::Failure => "F",
    }
}

#[cfg(test)]
mod tests {
    //! Hand-built portals with a few records each; every expected number is worked out by
    //! hand in the comments, as a sales director would check it in Bitrix24.

    use super::*;
    use crate::config::PeriodTargets;
    use crate::domain::{Currency, DealPipeline, Department, Source};
    use chrono::TimeZone;

    const MSK: Tz = chrono_tz::Europe::Moscow;
    const IVAN: Id = 17;
    const MARIA: Id = 18;
    /// In the accounting department: out of scope.
    const OLEG: Id = 19;
    /// In the sales department but inactive: out of scope.
    const ANNA: Id = 20;

    fn t(s: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn w47() -> Period {
        Period::parse("2026-W47", MSK).unwrap()
    }

    fn slot() -> DateTime<Tz> {
        MSK.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap()
    }

    fn settings() -> KpiSettings {
        KpiSettings {
            scope: Scope { departments: vec![1], managers: vec![], include_subdepartments: true },
            targets: Targets::default(),
            base_currency: None,
            stuck_after_days: 14.0,
            satisfaction_scale: (1.0, 5.0),
            trend_periods: 3,
            show_ranks: true,
            sort_managers_by: "revenue".to_owned(),
            max_stuck_deals: 10,
            max_stuck_deals_department: 20,
            definitions_page: true,
            language: Language::Ru,
        }
    }

    fn user(id: Id, name: &str, dept: Id, active: bool) -> User {
        User { id, name: name.to_owned(), email: Some(format!("u{id}@example.ru")), active, departments: vec![dept] }
    }

    fn stage(id: &str, pipeline_id: Id, name: &str, sort: i64, semantics: Semantics) -> Stage {
        Stage { id: id.to_owned(), pipeline_id, name: name.to_owned(), sort, semantics }
    }

    /// Ivan and Maria sell (Maria in a sub-department); Oleg is in accounting, Anna left.
    fn portal() -> CrmSnapshot {
        CrmSnapshot {
            users: vec![
                user(MARIA, "Мария Сидорова", 2, true),
                user(IVAN, "Иван Петров", 1, true),
                user(OLEG, "Олег Кузнецов", 3, true),
                user(ANNA, "Анна Смирнова", 1, false),
            ],
            departments: vec![
                Department { id: 1, name: "Отдел продаж".into(), parent: None },
                Department { id: 2, name: "Продажи Москва".into(), parent: Some(1) },
                Department { id: 3, name: "Бухгалтерия".into(), parent: None },
            ],
            pipelines: vec![
                DealPipeline { id: 0, name: "Общая".into(), sort: 10 },
                DealPipeline { id: 1, name: "Крупные клиенты".into(), sort: 5 },
            ],
            // Listed out of SORT order on purpose: the funnel must follow SORT.
            stages: vec![
                stage("NEW", 0, "Новая", 10, Semantics::Process),
                stage("NEGOTIATION", 0, "Переговоры", 30, Semantics::Process),
                stage("PROPOSAL", 0, "Предложение", 20, Semantics::Process),
                stage("LOSE", 0, "Сделка провалена", 50, Semantics::Failure),
                stage("WON", 0, "Сделка успешна", 40, Semantics::Success),
                stage("C1:NEW", 1, "Новая", 10, Semantics::Process),
                stage("C1:WON", 1, "Успех", 20, Semantics::Success),
            ],
            sources: vec![
                Source { id: "WEB".into(), name: "Веб-сайт".into() },
                Source { id: "CALL".into(), name: "Звонок".into() },
                Source { id: "ADVERTISING".into(), name: "Реклама".into() },
            ],
            // USD: AMOUNT 9050 / AMOUNT_CNT 100, as crm.currency.list serves it.
            currencies: vec![
                Currency { code: "RUB".into(), rate: 1.0, base: true },
                Currency { code: "USD".into(), rate: 9050.0 / 100.0, base: false },
            ],
            ..CrmSnapshot::default()
        }
    }

    /// A deal in progress in the general pipeline, created long before W47.
    fn deal(id: Id, manager: Id, opportunity: f64) -> Deal {
        Deal {
            id,
            title: format!("Сделка №{id}"),
            pipeline_id: 0,
            stage_id: "NEW".into(),
            stage_semantics: Semantics::Process,
            currency: "RUB".into(),
            opportunity,
            lead_id: None,
            assigned_by: manager,
            created: t("2026-11-02T10:00:00+03:00"),
            moved_time: None,
            close_date: None,
            is_recurring: false,
            is_return_customer: false,
            source_id: None,
            satisfaction: None,
        }
    }

    fn entry(s: &mut CrmSnapshot, deal_id: Id, stage_id: &str, at: &str) {
        let st = s.stages.iter().find(|x| x.id == stage_id).expect("known stage");
        let id = s.stage_history.len() as Id + 1;
        s.stage_history.push(StageChange {
            id,
            deal_id,
            pipeline_id: st.pipeline_id,
            stage_id: stage_id.into(),
            semantics: st.semantics,
            created: t(at),
        });
    }

    /// A deal won at `at` (with its history entry into WON).
    fn win(s: &mut CrmSnapshot, mut d: Deal, at: &str) {
        d.stage_id = "WON".into();
        d.stage_semantics = Semantics::Success;
        entry(s, d.id, "WON", at);
        s.deals.push(d);
    }

    fn lose(s: &mut CrmSnapshot, mut d: Deal, at: &str) {
        d.stage_id = "LOSE".into();
        d.stage_semantics = Semantics::Failure;
        entry(s, d.id, "LOSE", at);
        s.deals.push(d);
    }

    fn lead(id: Id, manager: Id, created: &str, converted: bool, source: Option<&str>) -> Lead {
        Lead {
            id,
            assigned_by: manager,
            created: t(created),
            status_semantics: if converted { Semantics::Success } else { Semantics::Process },
            source_id: source.map(str::to_owned),
        }
    }

    fn activity(
        id: Id,
        manager: Id,
        type_id: u32,
        direction: u32,
        completed: bool,
        created: &str,
    ) -> crate::domain::Activity {
        crate::domain::Activity { id, responsible: manager, type_id, direction, completed, created: t(created) }
    }

    fn scorecard(s: &CrmSnapshot, cfg: &KpiSettings, period: &Period, manager: Id) -> ReportData {
        Analysis::new(s, cfg).manager_report(period, manager, slot())
    }

    fn value(r: &ReportData, key: &str) -> Option<f64> {
        r.kpis.get(key).unwrap().value
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    /// The worked example of docs/kpi.md ("A week worked by hand"), record for record: if
    /// this test changes, the document changes with it.
    #[test]
    fn the_worked_example_of_docs_kpi_md() {
        let mut s = portal();
        // Leads: one from before the week (the origin of deal 101), four created in it.
        s.leads.push(lead(1, IVAN, "2026-11-02T10:00:00+03:00", true, Some("WEB")));
        s.leads.push(lead(2, IVAN, "2026-11-16T11:00:00+03:00", true, Some("WEB")));
        s.leads.push(lead(3, IVAN, "2026-11-17T12:00:00+03:00", false, Some("CALL")));
        s.leads.push(lead(4, IVAN, "2026-11-18T13:00:00+03:00", false, None));
        s.leads.push(lead(5, IVAN, "2026-11-21T14:00:00+03:00", false, Some("WEB")));
        // 101: from lead 1, 120 000 RUB, won on Tuesday 17 November at 15:00, rated 5.
        let mut d101 = deal(101, IVAN, 120_000.0);
        d101.lead_id = Some(1);
        d101.created = t("2026-11-05T09:00:00+03:00");
        d101.satisfaction = Some("5".into());
        win(&mut s, d101, "2026-11-17T15:00:00+03:00");
        // 102: no lead, 1 000 USD at 90.50, a returning customer, won on Friday at 12:00.
        let mut d102 = deal(102, IVAN, 1_000.0);
        d102.currency = "USD".into();
        d102.created = t("2026-11-10T12:00:00+03:00");
        d102.is_return_customer = true;
        d102.satisfaction = Some("4".into());
        win(&mut s, d102, "2026-11-20T12:00:00+03:00");
        // 103: lost on Wednesday.
        lose(&mut s, deal(103, IVAN, 40_000.0), "2026-11-18T11:00:00+03:00");
        // 104: in "Предложение" since Monday 10:00, won half an hour after the week ended.
        entry(&mut s, 104, "PROPOSAL", "2026-11-16T10:00:00+03:00");
        win(&mut s, deal(104, IVAN, 70_000.0), "2026-11-23T00:30:00+03:00");
        // 105: in "Переговоры" since 30 October 12:00: stuck.
        let mut d105 = deal(105, IVAN, 50_000.0);
        d105.created = t("2026-10-20T10:00:00+03:00");
        d105.stage_id = "NEGOTIATION".into();
        entry(&mut s, 105, "NEGOTIATION", "2026-10-30T12:00:00+03:00");
        s.deals.push(d105);
        // 106: created on Thursday 09:00, still in its first stage.
        let mut d106 = deal(106, IVAN, 30_000.0);
        d106.created = t("2026-11-19T09:00:00+03:00");
        s.deals.push(d106);
        s.activities.extend([
            activity(1, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-16T10:00:00+03:00"),
            activity(2, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-17T10:00:00+03:00"),
            activity(3, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-19T10:00:00+03:00"),
            activity(4, IVAN, ACTIVITY_EMAIL, 1, true, "2026-11-19T11:00:00+03:00"), // incoming
            activity(5, IVAN, ACTIVITY_CALL, DIRECTION_OUTGOING, true, "2026-11-20T10:00:00+03:00"),
            activity(6, IVAN, ACTIVITY_CALL, DIRECTION_OUTGOING, false, "2026-11-20T11:00:00+03:00"), // planned
        ]);
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        let v = |k: &str| value(&r, k);
        assert_eq!(v("deals_won"), Some(2.0));
        assert_eq!(v("revenue"), Some(210_500.0));
        assert_eq!(v("avg_deal_value"), Some(105_250.0));
        assert_eq!(v("deals_lost"), Some(1.0));
        assert!(close(v("win_rate"), 200.0 / 3.0));
        assert_eq!((v("leads_total"), v("leads_converted"), v("lead_conversion")), (Some(4.0), Some(1.0), Some(25.0)));
        // 101: 2 Nov 10:00 to 17 Nov 15:00 = 15 days 5 hours; 102: 10 Nov to 20 Nov 12:00 = 10 days.
        let cycle = (15.0 + 5.0 / 24.0 + 10.0) / 2.0;
        assert!(close(v("cycle_days_median"), cycle) && close(v("cycle_days_mean"), cycle));
        assert_eq!((v("emails_sent"), v("calls_made")), (Some(3.0), Some(1.0)));
        assert_eq!((v("csat"), v("csat_responses"), v("repeat_share")), (Some(4.5), Some(2.0), Some(50.0)));
        // 104 (open at the week's end), 105 and 106.
        assert_eq!(v("open_pipeline_value"), Some(150_000.0));
        // 105: 30 Oct 12:00 to 23 Nov 00:00 = 23.5 days idle.
        assert_eq!(r.stuck_deals.len(), 1);
        assert_eq!((r.stuck_deals[0].id.as_str(), r.stuck_deals[0].days), ("105", 23.5));
        let text = |k: &str| r.kpis.get(k).unwrap().text.clone().unwrap().value;
        assert_eq!(text("revenue"), "210\u{a0}500\u{a0}₽");
        assert_eq!(text("win_rate"), "66,7\u{a0}%");
        assert_eq!(text("cycle_days_median"), "12,6");
    }

    #[test]
    fn settings_come_from_the_config() {
        let cfg = KpiSettings::from_config(&Config::embedded());
        assert_eq!(cfg.trend_periods, Config::embedded().report.trend_periods);
        assert!(KPI_KEYS.contains(&cfg.sort_managers_by.as_str()));
    }

    #[test]
    fn managers_are_active_users_of_the_sales_departments_and_their_subdepartments() {
        let s = portal();
        let cfg = settings();
        let names: Vec<_> = Analysis::new(&s, &cfg).managers().iter().map(|u| u.name.clone()).collect();
        assert_eq!(names, ["Иван Петров", "Мария Сидорова"]);

        let mut only_listed = settings();
        only_listed.scope.include_subdepartments = false;
        only_listed.scope.managers = vec![OLEG, ANNA];
        let names: Vec<_> = Analysis::new(&s, &only_listed).managers().iter().map(|u| u.id).collect();
        // Maria's sub-department is off; Oleg is listed; Anna is listed but inactive.
        assert_eq!(names, [IVAN, OLEG]);
    }

    #[test]
    fn an_empty_week_has_zero_counts_and_null_ratios() {
        let s = portal();
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        for key in ["deals_won", "deals_lost", "leads_total", "leads_converted", "emails_sent", "calls_made"] {
            assert_eq!(value(&r, key), Some(0.0), "{key}");
        }
        assert_eq!(value(&r, "revenue"), Some(0.0));
        assert_eq!(value(&r, "open_pipeline_value"), Some(0.0));
        for key in [
            "avg_deal_value",
            "win_rate",
            "lead_conversion",
            "cycle_days_median",
            "cycle_days_mean",
            "csat",
            "repeat_share",
        ] {
            assert_eq!(value(&r, key), None, "{key}");
        }
        let won = &r.kpis.deals_won;
        assert_eq!((won.previous, won.delta, won.delta_pct), (Some(0.0), Some(0.0), None));
        assert_eq!(r.kpis.win_rate.delta, None);
        assert_eq!(r.kpis.avg_deal_value.text.as_ref().unwrap().value, "—");
        assert!(r.stuck_deals.is_empty() && r.cycle_days.is_empty() && r.notes.is_empty());
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
        assert_eq!(r.team.as_ref().unwrap().rank_revenue, Some(1), "both managers share first place at 0");
        assert_eq!(r.team.as_ref().unwrap().rank_conversion, None);
    }

    #[test]
    fn a_deal_won_sunday_before_midnight_and_one_on_monday_fall_into_different_weeks() {
        let mut s = portal();
        win(&mut s, deal(1, IVAN, 100.0), "2026-11-22T23:59:59+03:00");
        win(&mut s, deal(2, IVAN, 200.0), "2026-11-23T00:00:00+03:00");
        // Sunday 23:30 in Moscow, served in UTC.
        win(&mut s, deal(3, IVAN, 400.0), "2026-11-22T20:30:00+00:00");
        // Monday 16.11 00:30 in Moscow, served in UTC as Sunday evening.
        win(&mut s, deal(4, IVAN, 800.0), "2026-11-15T21:30:00+00:00");
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(value(&r, "deals_won"), Some(3.0));
        assert_eq!(value(&r, "revenue"), Some(1300.0));
        let next = scorecard(&s, &cfg, &w47().previous(), IVAN);
        assert_eq!(value(&next, "deals_won"), Some(0.0), "W46 has none");
        let w48 = Period::parse("2026-W48", MSK).unwrap();
        assert_eq!(value(&scorecard(&s, &cfg, &w48, IVAN), "revenue"), Some(200.0));
    }

    #[test]
    fn money_is_converted_into_the_base_currency_at_amount_per_amount_cnt() {
        let mut s = portal();
        let mut usd = deal(1, IVAN, 1000.0);
        usd.currency = "USD".into();
        win(&mut s, usd, "2026-11-18T12:00:00+03:00");
        win(&mut s, deal(2, IVAN, 10_000.0), "2026-11-18T12:00:00+03:00");
        let mut kzt = deal(3, IVAN, 50_000.0);
        kzt.currency = "KZT".into();
        win(&mut s, kzt, "2026-11-18T12:00:00+03:00");
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(r.currency, "RUB");
        // 1000 × 90.5 + 10 000 + the KZT deal at 0 (no rate).
        assert!(close(value(&r, "revenue"), 100_500.0));
        assert_eq!(value(&r, "deals_won"), Some(3.0));
        assert!(close(value(&r, "avg_deal_value"), 33_500.0));
        assert!(r.notes.iter().any(|n| n.contains("(KZT): 1")), "{:?}", r.notes);

        let mut in_usd = settings();
        in_usd.base_currency = Some("USD".into());
        let r = scorecard(&s, &in_usd, &w47(), IVAN);
        assert_eq!(r.currency, "USD");
        assert!(close(value(&r, "revenue"), 1000.0 + 10_000.0 / 90.5));
    }

    #[test]
    fn a_deal_won_and_reopened_is_not_won_and_a_rewon_deal_counts_at_its_latest_win() {
        let mut s = portal();
        let mut reopened = deal(1, IVAN, 5000.0);
        entry(&mut s, 1, "WON", "2026-11-17T12:00:00+03:00");
        entry(&mut s, 1, "NEGOTIATION", "2026-11-19T12:00:00+03:00");
        reopened.stage_id = "NEGOTIATION".into();
        s.deals.push(reopened);
        // Won in W46, reopened, won again in W47: counts in W47 only.
        entry(&mut s, 2, "WON", "2026-11-10T12:00:00+03:00");
        entry(&mut s, 2, "NEGOTIATION", "2026-11-11T12:00:00+03:00");
        win(&mut s, deal(2, IVAN, 700.0), "2026-11-20T12:00:00+03:00");
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(value(&r, "deals_won"), Some(1.0));
        assert_eq!(value(&r, "revenue"), Some(700.0));
        assert_eq!(r.kpis.deals_won.previous, Some(0.0));
    }

    #[test]
    fn recurring_templates_never_count() {
        let mut s = portal();
        let mut template = deal(1, IVAN, 9000.0);
        template.is_recurring = true;
        template.created = t("2026-09-01T10:00:00+03:00");
        s.deals.push(template.clone());
        template.id = 2;
        win(&mut s, template, "2026-11-18T12:00:00+03:00");
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(value(&r, "deals_won"), Some(0.0));
        assert_eq!(value(&r, "open_pipeline_value"), Some(0.0));
        assert!(r.stuck_deals.is_empty());
    }

    #[test]
    fn lost_deals_and_the_win_rate() {
        let mut s = portal();
        for id in 1..=3 {
            win(&mut s, deal(id, IVAN, 100.0), "2026-11-18T12:00:00+03:00");
        }
        lose(&mut s, deal(4, IVAN, 100.0), "2026-11-19T12:00:00+03:00");
        // Lost, then brought back into work: not lost.
        entry(&mut s, 5, "LOSE", "2026-11-19T12:00:00+03:00");
        s.deals.push(deal(5, IVAN, 100.0));
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(value(&r, "deals_lost"), Some(1.0));
        assert_eq!(value(&r, "win_rate"), Some(75.0));
    }

    #[test]
    fn the_cycle_runs_from_the_leads_creation_or_else_the_deals() {
        let mut s = portal();
        // The lead is assigned to Oleg (out of scope): still known, its date still counts.
        s.leads.push(lead(500, OLEG, "2026-11-01T10:00:00+03:00", true, None));
        let mut from_lead = deal(1, IVAN, 100.0);
        from_lead.lead_id = Some(500);
        from_lead.created = t("2026-11-05T10:00:00+03:00");
        win(&mut s, from_lead, "2026-11-18T10:00:00+03:00"); // 17 days
        let mut lead_gone = deal(2, IVAN, 100.0);
        lead_gone.lead_id = Some(999);
        lead_gone.created = t("2026-11-10T10:00:00+03:00");
        win(&mut s, lead_gone, "2026-11-18T10:00:00+03:00"); // 8 days
        let mut direct = deal(3, IVAN, 100.0);
        direct.created = t("2026-11-17T22:00:00+03:00");
        win(&mut s, direct, "2026-11-18T10:00:00+03:00"); // 0.5 days
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert!(close(value(&r, "cycle_days_median"), 8.0));
        assert!(close(value(&r, "cycle_days_mean"), (17.0 + 8.0 + 0.5) / 3.0));
        let mut cycles = r.cycle_days.clone();
        cycles.sort_by(f64::total_cmp);
        assert_eq!(cycles, [0.5, 8.0, 17.0]);
        assert!(r.notes.iter().any(|n| n.contains("лид удалён: 1")), "{:?}", r.notes);
    }

    #[test]
    fn without_a_won_entry_the_won_time_falls_back_to_moved_time_then_closedate() {
        let mut s = portal();
        let mut moved = deal(1, IVAN, 100.0);
        moved.stage_id = "WON".into();
        moved.stage_semantics = Semantics::Success;
        moved.moved_time = Some(t("2026-11-18T10:00:00+03:00"));
        moved.close_date = Some(t("2026-11-30T03:00:00+03:00"));
        let mut closed = moved.clone();
        closed.id = 2;
        closed.moved_time = None;
        closed.close_date = Some(t("2026-11-20T03:00:00+03:00"));
        let mut nothing = closed.clone();
        nothing.id = 3;
        nothing.close_date = None;
        s.deals.extend([moved, closed, nothing]);
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(value(&r, "deals_won"), Some(2.0));
        assert!(r.notes.iter().any(|n| n.contains("MOVED_TIME или CLOSEDATE.") && n.contains(": 2;")), "{:?}", r.notes);
        assert!(r.notes.iter().any(|n| n.contains("без даты выигрыша") && n.contains(": 1;")), "{:?}", r.notes);
    }

    #[test]
    fn leads_activities_csat_and_repeat_customers() {
        let mut s = portal();
        s.leads.push(lead(1, IVAN, "2026-11-16T09:00:00+03:00", true, Some("WEB")));
        s.leads.push(lead(2, IVAN, "2026-11-17T09:00:00+03:00", false, Some("WEB")));
        s.leads.push(lead(3, IVAN, "2026-11-18T09:00:00+03:00", true, None));
        s.leads.push(lead(4, IVAN, "2026-11-23T00:00:00+03:00", true, None)); // next week
        s.activities.extend([
            activity(1, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-17T10:00:00+03:00"),
            activity(2, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-18T10:00:00+03:00"),
            activity(3, IVAN, ACTIVITY_EMAIL, 1, true, "2026-11-18T10:00:00+03:00"), // incoming
            activity(4, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, false, "2026-11-18T10:00:00+03:00"), // draft
            activity(5, IVAN, ACTIVITY_CALL, DIRECTION_OUTGOING, true, "2026-11-19T10:00:00+03:00"),
            activity(6, IVAN, 1, DIRECTION_OUTGOING, true, "2026-11-19T10:00:00+03:00"), // a meeting
            activity(7, IVAN, ACTIVITY_CALL, DIRECTION_OUTGOING, true, "2026-11-24T10:00:00+03:00"), // next week
        ]);
        for (id, score, returning) in [
            (1, Some("4"), true),
            (2, Some("4.0"), false),
            (3, Some(""), false),
            (4, Some("7"), true),
            (5, Some("отлично"), false),
            (6, None, false),
            (7, Some(" 5 "), false),
        ] {
            let mut d = deal(id, IVAN, 100.0);
            d.satisfaction = score.map(str::to_owned);
            d.is_return_customer = returning;
            win(&mut s, d, "2026-11-20T12:00:00+03:00");
        }
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(value(&r, "leads_total"), Some(3.0));
        assert_eq!(value(&r, "leads_converted"), Some(2.0));
        assert!(close(value(&r, "lead_conversion"), 200.0 / 3.0));
        assert_eq!(value(&r, "emails_sent"), Some(2.0));
        assert_eq!(value(&r, "calls_made"), Some(1.0));
        // "4", "4.0" and " 5 " count; "", "7" (out of 1..5), a word and no value do not.
        assert_eq!(value(&r, "csat_responses"), Some(3.0));
        assert!(close(value(&r, "csat"), 13.0 / 3.0));
        assert!(close(value(&r, "repeat_share"), 200.0 / 7.0));
    }

    #[test]
    fn open_pipeline_and_stuck_deals_are_seen_at_the_periods_end_through_the_history() {
        let mut s = portal();
        // In negotiation since 01.11 12:00 at the week's end (won only afterwards): 21.5 days.
        entry(&mut s, 1, "NEW", "2026-10-01T10:00:00+03:00");
        entry(&mut s, 1, "NEGOTIATION", "2026-11-01T12:00:00+03:00");
        entry(&mut s, 1, "WON", "2026-11-25T12:00:00+03:00");
        let mut d1 = deal(1, IVAN, 1000.0);
        d1.created = t("2026-10-01T10:00:00+03:00");
        (d1.stage_id, d1.stage_semantics) = ("WON".into(), Semantics::Success);
        // Created on 20.11 without history: 3 days, open but not stuck.
        let mut d2 = deal(2, IVAN, 2000.0);
        d2.created = t("2026-11-20T00:00:00+03:00");
        // Created after the week: not in the pipeline at its end.
        let mut d3 = deal(3, IVAN, 4000.0);
        d3.created = t("2026-11-25T00:00:00+03:00");
        // Lost before the end.
        entry(&mut s, 4, "LOSE", "2026-11-10T10:00:00+03:00");
        let mut d4 = deal(4, IVAN, 8000.0);
        (d4.stage_id, d4.stage_semantics) = ("LOSE".into(), Semantics::Failure);
        // No history, moved on 20.10: 34 days; deal 5 and deal 6 tie, the lower id first.
        let mut d6 = deal(6, IVAN, 16_000.0);
        d6.created = t("2026-09-01T00:00:00+03:00");
        d6.moved_time = Some(t("2026-10-20T00:00:00+03:00"));
        let mut d5 = d6.clone();
        d5.id = 5;
        d5.opportunity = 32_000.0;
        // Moved after the end: the creation date counts, 53 days.
        let mut d7 = deal(7, IVAN, 64_000.0);
        d7.created = t("2026-10-01T00:00:00+03:00");
        d7.moved_time = Some(t("2026-11-25T00:00:00+03:00"));
        s.deals.extend([d1, d2, d3, d4, d6, d5, d7]);
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(value(&r, "open_pipeline_value"), Some(1000.0 + 2000.0 + 16_000.0 + 32_000.0 + 64_000.0));
        let stuck: Vec<(&str, f64)> = r.stuck_deals.iter().map(|d| (d.id.as_str(), d.days)).collect();
        assert_eq!(stuck, [("7", 53.0), ("5", 34.0), ("6", 34.0), ("1", 21.5)]);
        assert_eq!(r.stuck_deals[3].stage, "Переговоры");
        assert_eq!(r.stuck_deals[0].value_text.as_deref(), Some("64\u{a0}000\u{a0}₽"));
        assert_eq!(r.stuck_deals[0].manager, "Иван Петров");

        assert_eq!((r.stuck_summary.count, r.stuck_summary.shown, r.stuck_summary.more), (4, 4, 0));
        assert_eq!(r.stuck_summary.more_text, None);

        // A shorter list: the data still holds every stuck deal; the summary counts the rest.
        let mut few = settings();
        few.max_stuck_deals = 2;
        let r2 = scorecard(&s, &few, &w47(), IVAN);
        assert_eq!(r2.stuck_deals, r.stuck_deals);
        let sum = &r2.stuck_summary;
        assert_eq!((sum.count, sum.shown, sum.more), (4, 2, 2));
        assert_eq!(sum.value, r.stuck_deals.iter().map(|d| d.value).sum::<f64>());
        assert_eq!(sum.more_value, r.stuck_deals[2].value + r.stuck_deals[3].value);
        let more = present::fmt_money_whole(sum.more_value, "RUB", Language::Ru);
        assert_eq!(sum.more_text.as_deref(), Some(format!("И ещё 2 сделки на сумму {more}.").as_str()));
        few.max_stuck_deals = 0;
        assert_eq!(scorecard(&s, &few, &w47(), IVAN).stuck_summary.shown, 0);
    }

    #[test]
    fn the_sentence_under_a_shortened_list_agrees_with_its_number() {
        let ru = |n| present::more_deals(n, "1\u{a0}₽", Language::Ru);
        assert_eq!(ru(1), "И ещё 1 сделка на сумму 1\u{a0}₽.");
        assert_eq!(ru(3), "И ещё 3 сделки на сумму 1\u{a0}₽.");
        assert_eq!(ru(11), "И ещё 11 сделок на сумму 1\u{a0}₽.");
        assert_eq!(ru(13), "И ещё 13 сделок на сумму 1\u{a0}₽.");
        assert_eq!(ru(21), "И ещё 21 сделка на сумму 1\u{a0}₽.");
        assert_eq!(ru(112), "И ещё 112 сделок на сумму 1\u{a0}₽.");
        assert_eq!(present::more_deals(1, "$1", Language::En), "And 1 more deal worth $1.");
        assert_eq!(present::more_deals(13, "$1", Language::En), "And 13 more deals worth $1.");
    }

    #[test]
    fn the_funnel_lists_every_stage_in_sort_order_with_zeros() {
        let mut s = portal();
        entry(&mut s, 1, "NEW", "2026-11-16T10:00:00+03:00");
        entry(&mut s, 1, "PROPOSAL", "2026-11-17T10:00:00+03:00");
        entry(&mut s, 1, "NEGOTIATION", "2026-11-18T10:00:00+03:00");
        entry(&mut s, 1, "PROPOSAL", "2026-11-19T10:00:00+03:00"); // back again: one deal
        entry(&mut s, 2, "NEW", "2026-11-18T10:00:00+03:00");
        entry(&mut s, 2, "PROPOSAL", "2026-11-10T10:00:00+03:00"); // W46
        s.deals.extend([deal(1, IVAN, 1.0), deal(2, IVAN, 1.0)]);
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        let funnel: Vec<(&str, Vec<(&str, u64)>)> = r
            .breakdowns
            .funnel
            .iter()
            .map(|p| (p.pipeline.as_str(), p.stages.iter().map(|st| (st.id.as_str(), st.deals)).collect()))
            .collect();
        assert_eq!(
            funnel,
            [
                ("Крупные клиенты", vec![("C1:NEW", 0), ("C1:WON", 0)]),
                ("Общая", vec![("NEW", 2), ("PROPOSAL", 1), ("NEGOTIATION", 1), ("WON", 0), ("LOSE", 0)]),
            ]
        );
        let general = &r.breakdowns.funnel[1].stages;
        assert_eq!(general[1].conversion_pct, Some(50.0));
        assert_eq!(general[0].conversion_pct, None);
        assert_eq!(general[4].conversion_pct, None, "failure stages have no conversion");
        // Deal 1 stayed one day in NEW; deal 2 has not left it.
        assert_eq!(general[0].median_days, Some(1.0));
    }

    #[test]
    fn funnel_conversion_counts_deals_that_skipped_a_stage_and_never_exceeds_100() {
        let mut s = portal();
        entry(&mut s, 1, "NEW", "2026-11-16T10:00:00+03:00");
        entry(&mut s, 1, "PROPOSAL", "2026-11-17T10:00:00+03:00");
        entry(&mut s, 1, "NEGOTIATION", "2026-11-18T10:00:00+03:00");
        entry(&mut s, 2, "NEW", "2026-11-18T10:00:00+03:00");
        // Deal 3 entered NEW last week and jumps straight to NEGOTIATION this week.
        entry(&mut s, 3, "NEW", "2026-11-12T10:00:00+03:00");
        entry(&mut s, 3, "NEGOTIATION", "2026-11-19T10:00:00+03:00");
        s.deals.extend([deal(1, IVAN, 1.0), deal(2, IVAN, 1.0), deal(3, IVAN, 1.0)]);
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        let general = &r.breakdowns.funnel[1].stages;
        let rows: Vec<(&str, u64, u64, Option<f64>)> =
            general.iter().map(|st| (st.id.as_str(), st.deals, st.reached, st.conversion_pct)).collect();
        // Entered: NEW {1, 2}, PROPOSAL {1}, NEGOTIATION {1, 3}. Furthest: 1 and 3 at
        // NEGOTIATION, 2 at NEW; so reached NEW 3, PROPOSAL 2, NEGOTIATION 2, WON 0.
        assert_eq!(
            rows,
            [
                ("NEW", 2, 3, None),
                ("PROPOSAL", 1, 2, Some(2.0 * 100.0 / 3.0)),
                ("NEGOTIATION", 2, 2, Some(100.0)),
                ("WON", 0, 0, Some(0.0)),
                ("LOSE", 0, 0, None),
            ]
        );
    }

    #[test]
    fn sources_and_products_are_ordered_by_revenue_then_id() {
        let mut s = portal();
        s.leads.push(lead(1, IVAN, "2026-11-16T09:00:00+03:00", true, None));
        s.leads.push(lead(2, IVAN, "2026-11-16T09:00:00+03:00", false, Some("WEB")));
        for (id, source, amount) in [(1, "WEB", 100.0), (2, "CALL", 300.0), (3, "ADVERTISING", 100.0)] {
            let mut d = deal(id, IVAN, amount);
            d.source_id = Some(source.into());
            win(&mut s, d, "2026-11-18T12:00:00+03:00");
        }
        let mut usd = deal(4, IVAN, 10.0);
        usd.currency = "USD".into();
        win(&mut s, usd, "2026-11-18T12:00:00+03:00");
        let row = |deal_id, product_id, name: &str, price, quantity| ProductRow {
            deal_id,
            product_id,
            name: name.into(),
            price,
            quantity,
        };
        s.product_rows.extend([
            row(1, 12, "Лицензия", 1000.0, 2.0),
            row(2, 12, "Лицензия", 1000.0, 1.0),
            row(2, 0, "Внедрение", 5000.0, 1.0),
            row(4, 7, "Поддержка", 10.0, 1.0),
            row(99, 12, "Лицензия", 1e9, 1.0), // a deal not won this week
        ]);
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        let sources: Vec<(&str, &str, u64, u64, f64)> = r
            .breakdowns
            .sources
            .iter()
            .map(|x| (x.id.as_str(), x.name.as_str(), x.leads_total, x.deals_won, x.revenue))
            .collect();
        assert_eq!(
            sources,
            [
                ("", "Без источника", 1, 1, 905.0),
                ("CALL", "Звонок", 0, 1, 300.0),
                ("ADVERTISING", "Реклама", 0, 1, 100.0),
                ("WEB", "Веб-сайт", 1, 1, 100.0),
            ]
        );
        assert_eq!(r.breakdowns.sources[0].lead_conversion, Some(100.0));
        assert_eq!(r.breakdowns.sources[1].lead_conversion, None);
        let products: Vec<(&str, u64, f64, Option<f64>)> =
            r.breakdowns.products.iter().map(|p| (p.id.as_str(), p.deals_won, p.revenue, p.avg_deal_value)).collect();
        assert_eq!(
            products,
            [("Внедрение", 1, 5000.0, Some(5000.0)), ("12", 2, 3000.0, Some(1500.0)), ("7", 1, 905.0, Some(905.0))]
        );
    }

    fn targets() -> Targets {
        let set = |pairs: &[(&str, f64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let mut t = Targets::default();
        t.default.week = set(&[("revenue", 200_000.0), ("cycle_days_median", 10.0), ("win_rate", 50.0)]);
        t.managers
            .insert(IVAN, PeriodTargets { week: set(&[("deals_won", 4.0), ("calls_made", 20.0)]), month: set(&[]) });
        t.managers.insert(MARIA, PeriodTargets { week: set(&[("deals_won", 2.0)]), month: set(&[]) });
        t.department.week = set(&[("leads_total", 50.0)]);
        t
    }

    #[test]
    fn targets_and_attainment_per_manager_and_for_the_department() {
        let mut s = portal();
        for (id, created) in [(1, "2026-11-10T12:00:00+03:00"), (2, "2026-11-12T12:00:00+03:00")] {
            let mut d = deal(id, IVAN, 75_000.0);
            d.created = t(created);
            win(&mut s, d, "2026-11-18T12:00:00+03:00"); // 8 and 6 days: median 7
        }
        win(&mut s, deal(3, MARIA, 10_000.0), "2026-11-18T12:00:00+03:00");
        let mut cfg = settings();
        cfg.targets = targets();
        let a = Analysis::new(&s, &cfg);
        let r = a.manager_report(&w47(), IVAN, slot());
        assert_eq!((r.kpis.deals_won.target, r.kpis.deals_won.attainment_pct), (Some(4.0), Some(50.0)));
        assert_eq!((r.kpis.revenue.target, r.kpis.revenue.attainment_pct), (Some(200_000.0), Some(75.0)));
        // Less is better: 10 days targeted, 7 achieved.
        assert!(close(r.kpis.cycle_days_median.attainment_pct, 10.0 / 7.0 * 100.0));
        assert_eq!(r.kpis.leads_total.target, None);

        let d = a.department_report(&w47(), slot());
        assert_eq!(d.kpis.deals_won.target, Some(6.0), "4 + 2: every manager has one");
        assert_eq!(d.kpis.revenue.target, Some(400_000.0), "both from the default");
        assert_eq!(d.kpis.calls_made.target, None, "Maria has no calls target");
        assert_eq!(d.kpis.leads_total.target, Some(50.0), "the department's own");
        assert_eq!(d.kpis.win_rate.target, None, "rates do not add up");
        assert_eq!(d.kpis.cycle_days_median.target, None);
        assert!(close(d.kpis.revenue.attainment_pct, 160_000.0 / 400_000.0 * 100.0));
        assert_eq!(d.trend.last().unwrap().target_deals_won, Some(6.0));

        let custom = Period::parse("2026-11-16..2026-11-22", MSK).unwrap();
        let c = a.department_report(&custom, slot());
        assert_eq!(c.kpis.deals_won.value, Some(3.0));
        assert!(KPI_KEYS.iter().all(|k| c.kpis.get(k).unwrap().target.is_none()));
        assert!(KPI_KEYS.iter().all(|k| a.manager_report(&custom, IVAN, slot()).kpis.get(k).unwrap().target.is_none()));
    }

    #[test]
    fn the_department_is_one_population_and_out_of_scope_users_count_nowhere() {
        let mut s = portal();
        // Ivan: cycles 1, 2, 3 days, nothing lost. Maria: cycles 10 and 20 days, 2 lost.
        let won_after = |s: &mut CrmSnapshot, id: Id, who: Id, days: i64| {
            let mut d = deal(id, who, 1000.0 * days as f64);
            d.created = t("2026-11-21T00:00:00+03:00") - chrono::Duration::days(days);
            win(s, d, "2026-11-21T00:00:00+03:00");
        };
        for (id, who, days) in [(1, IVAN, 1), (2, IVAN, 2), (3, IVAN, 3), (4, MARIA, 10), (5, MARIA, 20)] {
            won_after(&mut s, id, who, days);
        }
        lose(&mut s, deal(6, MARIA, 1.0), "2026-11-19T12:00:00+03:00");
        lose(&mut s, deal(7, MARIA, 1.0), "2026-11-19T12:00:00+03:00");
        // Oleg (accounting) and Anna (inactive) sell too; none of it counts.
        won_after(&mut s, 8, OLEG, 100);
        won_after(&mut s, 9, ANNA, 100);
        s.leads.push(lead(1, OLEG, "2026-11-18T09:00:00+03:00", true, None));
        s.activities.push(activity(1, ANNA, ACTIVITY_CALL, DIRECTION_OUTGOING, true, "2026-11-18T09:00:00+03:00"));
        let cfg = settings();
        let a = Analysis::new(&s, &cfg);
        let d = a.department_report(&w47(), slot());
        assert_eq!(d.kpis.deals_won.value, Some(5.0));
        // The median of all five won deals, not (2 + 15) / 2, the median of the medians.
        assert_eq!(d.kpis.cycle_days_median.value, Some(3.0));
        assert!(close(d.kpis.cycle_days_mean.value, 36.0 / 5.0));
        // 5 / 7 from the totals, not the mean of 100 % and 50 %.
        assert!(close(d.kpis.win_rate.value, 500.0 / 7.0));
        assert_eq!(d.kpis.revenue.value, Some(36_000.0));
        assert_eq!(d.kpis.leads_total.value, Some(0.0));
        assert_eq!(d.kpis.calls_made.value, Some(0.0));
        assert_eq!(d.cycle_days.len(), 5);
        assert!(d.notes.iter().any(|n| n.contains("сделок 2, лидов 1, дел 1")), "{:?}", d.notes);

        // Managers by revenue, best first: Maria 30 000, Ivan 6 000.
        let rows = d.managers.as_ref().unwrap();
        let order: Vec<(&str, Option<&str>)> = rows.iter().map(|r| (r.name.as_str(), r.mark.as_deref())).collect();
        assert_eq!(order, [("Мария Сидорова", Some("best")), ("Иван Петров", Some("worst"))]);
        assert_eq!(rows[1].kpis.cycle_days_median.value, Some(2.0));
        assert!(rows[0].kpis.revenue.text.is_some());

        // Ivan's scorecard: second by revenue, team median over both managers.
        let r = a.manager_report(&w47(), IVAN, slot());
        let team = r.team.unwrap();
        assert_eq!((team.size, team.rank_revenue), (2, Some(2)));
        assert_eq!(team.medians["revenue"], Some(18_000.0));
        assert_eq!(team.medians["lead_conversion"], None);
        let mut no_ranks = settings();
        no_ranks.show_ranks = false;
        assert_eq!(Analysis::new(&s, &no_ranks).manager_report(&w47(), IVAN, slot()).team.unwrap().rank_revenue, None);

        // Sorting by cycle time puts the shortest first.
        let mut by_cycle = settings();
        by_cycle.sort_managers_by = "cycle_days_median".into();
        let rows = Analysis::new(&s, &by_cycle).department_report(&w47(), slot()).managers.unwrap();
        assert_eq!(rows[0].name, "Иван Петров");
    }

    #[test]
    fn the_report_frame_carries_periods_slot_and_trend() {
        let mut s = portal();
        win(&mut s, deal(1, IVAN, 100.0), "2026-11-10T12:00:00+03:00");
        s.notes.push("строка 3 пропущена".into());
        let cfg = settings();
        let r = scorecard(&s, &cfg, &w47(), IVAN);
        assert_eq!(r.report, "manager");
        assert_eq!(r.generated_at, "2026-11-23T08:00:00+03:00");
        assert_eq!((r.period.label.as_str(), r.previous_period.label.as_str()), ("2026-W47", "2026-W46"));
        assert_eq!(r.year_ago_period.label, "2025-W47");
        assert_eq!(r.manager.as_ref().unwrap().name, "Иван Петров");
        let trend: Vec<(&str, u64)> = r.trend.iter().map(|p| (p.short.as_str(), p.deals_won)).collect();
        assert_eq!(trend, [("W45", 0), ("W46", 1), ("W47", 0)]);
        assert_eq!(r.labels["manager_report"], "Эффективность менеджера");
        assert_eq!(r.notes, ["строка 3 пропущена"]);
        assert!(r.charts.is_empty());
    }
}
