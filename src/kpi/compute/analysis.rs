//! [`Analysis`], the snapshot indexed once for the KPI pass: who the managers are, each
//! deal's facts (`won_at`, `lost_at`, money, stage history), each manager's leads and
//! counted activities sorted by time, so that a period's records are a slice away.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::domain::{
    ACTIVITY_CALL, ACTIVITY_EMAIL, CrmSnapshot, DIRECTION_OUTGOING, Deal, EventSource, Id, Lead, Period, ProductRow,
    Scope, Semantics, Stage, StageChange, Timestamp, User, days_between,
};
use crate::kpi::catalog::Kpi;
use crate::kpi::targets::Targets;
use crate::locale::Language;

/// What the KPI pass needs from the config (`Config::kpi_settings`).
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
    /// The KPI the department report orders managers by.
    pub sort_managers_by: Kpi,
    /// How many stuck deals a scorecard's PDF and e-mail list (the data holds all).
    pub max_stuck_deals: usize,
    /// The same for the department report.
    pub max_stuck_deals_department: usize,
    /// The department report ends with a page of definitions.
    pub definitions_page: bool,
    pub language: Language,
}

/// Every manager's values over one period, in the managers' order.
pub(super) type TeamValues = Arc<Vec<(Id, Values)>>;

/// A snapshot indexed for the KPI pass.
pub struct Analysis<'a> {
    pub(super) snapshot: &'a CrmSnapshot,
    pub(super) settings: &'a KpiSettings,
    pub(super) base: String,
    pub(super) rates: BTreeMap<String, f64>,
    pub(super) managers: Vec<&'a User>,
    pub(super) users: HashMap<Id, &'a User>,
    pub(super) stages: HashMap<&'a str, &'a Stage>,
    pub(super) deals: HashMap<Id, Vec<DealFacts<'a>>>,
    /// Each manager's leads, by `DATE_CREATE`: a period is a slice found by binary search.
    pub(super) leads: HashMap<Id, Vec<&'a Lead>>,
    /// Each manager's counted activities (outgoing, completed), `CREATED` sorted, per KPI:
    /// a department report asks for some twenty periods, and a scan of two million
    /// activities per period was most of its time (BENCHMARKS.md).
    pub(super) emails_sent: HashMap<Id, Vec<Timestamp>>,
    pub(super) calls_made: HashMap<Id, Vec<Timestamp>>,
    pub(super) product_rows: HashMap<Id, Vec<&'a ProductRow>>,
    /// Deals, leads and activities of users out of scope: counted nowhere, noted.
    pub(super) out_of_scope: (usize, usize, usize),
    /// Every manager's values per period, for ranks and team medians: computed once per
    /// period, not once per scorecard.
    pub(super) team_cache: Mutex<HashMap<Period, TeamValues>>,
}

/// The sixteen KPI values of one population and period; `None` is docs/kpi.md's null.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values([Option<f64>; Kpi::ALL.len()]);

impl Values {
    pub fn get(&self, kpi: Kpi) -> Option<f64> {
        self.0[kpi.index()]
    }

    pub(super) fn set(&mut self, kpi: Kpi, v: Option<f64>) {
        self.0[kpi.index()] = v;
    }
}

/// A period's bounds as instants, computed once: `Period::contains` would resolve local
/// midnight again for every record.
#[derive(Clone, Debug)]
pub(super) struct Bounds {
    pub(super) start: Timestamp,
    pub(super) end: Timestamp,
}

impl Bounds {
    pub(super) fn new(period: &Period) -> Bounds {
        Bounds { start: period.start().fixed_offset(), end: period.end().fixed_offset() }
    }

    pub(super) fn contains(&self, t: &Timestamp) -> bool {
        *t >= self.start && *t < self.end
    }
}

/// A deal with what docs/kpi.md derives from it, computed once per snapshot.
#[derive(Debug)]
pub(super) struct DealFacts<'a> {
    pub(super) deal: &'a Deal,
    /// `OPPORTUNITY` in the base currency; 0 when the currency has no rate.
    pub(super) money: f64,
    pub(super) has_rate: bool,
    pub(super) won_at: Option<(Timestamp, EventSource)>,
    /// The deal is won now but no time stamp says when.
    pub(super) won_without_time: bool,
    pub(super) lost_at: Option<Timestamp>,
    /// The lead's `DATE_CREATE` when the lead is known, else the deal's.
    pub(super) first_contact: Timestamp,
    /// `LEAD_ID` names a lead the snapshot does not have (deleted).
    pub(super) lead_gone: bool,
    /// Stage history, oldest first (ties by entry id).
    pub(super) history: Vec<&'a StageChange>,
}

impl DealFacts<'_> {
    pub(super) fn won_in(&self, b: &Bounds) -> bool {
        self.won_at.is_some_and(|(t, _)| b.contains(&t))
    }

    pub(super) fn cycle_days(&self) -> Option<f64> {
        self.won_at.map(|(t, _)| days_between(&self.first_contact, &t))
    }

    /// The deal's stage at `end` (docs/kpi.md "The stage of a deal at the period's end"): its
    /// stage id, semantics and since when it was there (`None` when only the current stage is
    /// known). `None` when the deal did not exist yet. The history holds only the entries
    /// since the start of the report's window: a deal whose entries all lie before it is
    /// taken in its current stage, which it has been in since before the window.
    pub(super) fn stage_at(&self, end: &Timestamp) -> Option<(&str, Semantics, Option<Timestamp>)> {
        if self.deal.created >= *end {
            return None;
        }
        match self.history.iter().rev().find(|h| h.created < *end) {
            Some(h) => Some((h.stage_id.as_str(), h.semantics, Some(h.created))),
            None => Some((self.deal.stage_id.as_str(), self.deal.stage_semantics, None)),
        }
    }

    /// Open at `end`, with the days its stage had not changed.
    pub(super) fn open_at(&self, end: &Timestamp) -> Option<(&str, f64)> {
        let (stage, semantics, since) = self.stage_at(end)?;
        if semantics != Semantics::Process {
            return None;
        }
        let since = since.or_else(|| self.deal.moved_time.filter(|t| t < end)).unwrap_or(self.deal.created);
        Some((stage, days_between(&since, end)))
    }
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

impl<'a> Analysis<'a> {
    /// Managers in scope per docs/kpi.md "Who is a manager", sorted by name then id.
    pub fn managers(&self) -> Vec<&'a User> {
        self.managers.clone()
    }

    /// The base currency the money is in.
    pub fn currency(&self) -> &str {
        &self.base
    }

    pub(super) fn manager_ids(&self) -> Vec<Id> {
        self.managers.iter().map(|u| u.id).collect()
    }

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

    pub(super) fn deals_of<'s>(&'s self, pop: &'s [Id]) -> impl Iterator<Item = &'s DealFacts<'a>> + 's {
        pop.iter().flat_map(|m| self.deals.get(m).into_iter().flatten())
    }

    /// The population's leads created in `b`.
    pub(super) fn leads_in<'s>(&'s self, pop: &'s [Id], b: &'s Bounds) -> impl Iterator<Item = &'a Lead> + 's {
        pop.iter().flat_map(move |m| {
            let list = self.leads.get(m).map_or(&[][..], Vec::as_slice);
            let from = list.partition_point(|l| l.created < b.start);
            let to = list.partition_point(|l| l.created < b.end);
            list[from..to].iter().copied()
        })
    }

    /// How many of the population's time stamps in `by_manager` fall into `b`.
    pub(super) fn count_in(by_manager: &HashMap<Id, Vec<Timestamp>>, pop: &[Id], b: &Bounds) -> usize {
        pop.iter()
            .filter_map(|m| by_manager.get(m))
            .map(|list| list.partition_point(|t| *t < b.end) - list.partition_point(|t| *t < b.start))
            .sum()
    }
}
