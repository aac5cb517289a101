//! The assembly: wire rows turned into a [`CrmSnapshot`], record by record ([`wire`]
//! converts each row and notes what it could not read). It knows nothing of requests: the
//! plain client hands it the rows it just fetched, the cache the rows it keeps, and both get
//! the same snapshot from the same rows.

use std::collections::{BTreeMap, BTreeSet};

use super::wire::{self, Notes, WireRow};
use crate::crm::FetchRequest;
use crate::domain::{Activity, CrmSnapshot, Deal, DealPipeline, Id, Lead, Semantics, StageChange};

/// Wire rows turned into a snapshot, always in the same order (reference data, stages,
/// deals modified then open, leads, activities, history, older leads, product rows), so
/// that the same rows give the same snapshot and the same notes whether they came from
/// the portal just now or from the cache (`cached`).
pub(super) struct Assembly {
    snapshot: CrmSnapshot,
    notes: Vec<String>,
    semantics: BTreeMap<String, Semantics>,
    deals: BTreeMap<Id, Deal>,
    leads: BTreeMap<Id, Lead>,
    activities: BTreeMap<Id, Activity>,
    history: BTreeMap<Id, StageChange>,
}

impl Assembly {
    pub(super) fn new([users, departments, categories, currencies, sources]: [Vec<WireRow>; 5]) -> Assembly {
        let mut notes_vec = Vec::new();
        let notes = &mut Notes { notes: &mut notes_vec };
        let mut snapshot = CrmSnapshot {
            users: users.iter().filter_map(|r| wire::user(r, notes)).collect(),
            departments: departments.iter().filter_map(|r| wire::department(r, notes)).collect(),
            pipelines: categories.iter().filter_map(|r| wire::pipeline(r, notes)).collect(),
            ..CrmSnapshot::default()
        };
        if !snapshot.pipelines.iter().any(|p| p.id == 0) {
            // Pipeline 0 always exists; a portal that leaves it out of the list still has deals in it.
            snapshot.pipelines.insert(0, DealPipeline { id: 0, name: "#0".into(), sort: 0 });
        }
        snapshot.currencies = currencies.iter().filter_map(|r| wire::currency(r, notes)).collect();
        snapshot.sources = sources.iter().filter_map(|r| wire::source(r, notes)).collect();
        Assembly {
            snapshot,
            notes: notes_vec,
            semantics: BTreeMap::new(),
            deals: BTreeMap::new(),
            leads: BTreeMap::new(),
            activities: BTreeMap::new(),
            history: BTreeMap::new(),
        }
    }

    /// The pipelines, for their stages' lists.
    pub(super) fn pipelines(&self) -> &[DealPipeline] {
        &self.snapshot.pipelines
    }

    /// The stages of every pipeline, one list per pipeline.
    pub(super) fn add_stages(&mut self, lists: impl IntoIterator<Item = impl AsRef<[WireRow]>>) {
        let notes = &mut Notes { notes: &mut self.notes };
        for rows in lists {
            self.snapshot.stages.extend(rows.as_ref().iter().filter_map(|r| wire::stage(r, notes)));
        }
        self.semantics = self.snapshot.stages.iter().map(|s| (s.id.clone(), s.semantics)).collect();
    }

    pub(super) fn add_window<'r>(
        &mut self,
        request: &FetchRequest,
        modified: impl IntoIterator<Item = &'r WireRow>,
        open: impl IntoIterator<Item = &'r WireRow>,
        leads: impl IntoIterator<Item = &'r WireRow>,
        activities: impl IntoIterator<Item = &'r WireRow>,
        history: impl IntoIterator<Item = &'r WireRow>,
    ) {
        let notes = &mut Notes { notes: &mut self.notes };
        let semantics = &self.semantics;
        let known = |stage: &str| semantics.get(stage).copied();
        for row in modified.into_iter().chain(open) {
            if let Some(d) = wire::deal(row, request.satisfaction_field.as_deref(), known, notes) {
                self.deals.insert(d.id, d);
            }
        }
        self.leads.extend(leads.into_iter().filter_map(|r| wire::lead(r, notes)).map(|l| (l.id, l)));
        self.activities.extend(activities.into_iter().filter_map(|r| wire::activity(r, notes)).map(|a| (a.id, a)));
        self.history.extend(history.into_iter().filter_map(|r| wire::stage_change(r, known, notes)).map(|h| (h.id, h)));
    }

    /// Leads the deals came from that are not among the window's leads: created before
    /// the window, their DATE_CREATE is the deal's first contact.
    pub(super) fn missing_leads(&self) -> Vec<Id> {
        self.deals
            .values()
            .filter_map(|d| d.lead_id)
            .filter(|l| !self.leads.contains_key(l))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The deals whose product rows count: won in the report's period by docs/kpi.md's rule,
    /// as the KPI pass will see them in these same rows.
    pub(super) fn product_deals(&self, request: &FetchRequest) -> Vec<Id> {
        crate::domain::deals_won_in(self.deals.values(), self.history.values(), request.period_start, request.until)
    }

    pub(super) fn add_leads<'r>(&mut self, rows: impl IntoIterator<Item = &'r WireRow>) {
        let notes = &mut Notes { notes: &mut self.notes };
        self.leads.extend(rows.into_iter().filter_map(|r| wire::lead(r, notes)).map(|l| (l.id, l)));
    }

    pub(super) fn add_product_rows(&mut self, deal_id: Id, rows: &[WireRow]) {
        let notes = &mut Notes { notes: &mut self.notes };
        self.snapshot.product_rows.extend(rows.iter().filter_map(|r| wire::product_row(deal_id, r, notes)));
    }

    pub(super) fn finish(self) -> CrmSnapshot {
        CrmSnapshot {
            deals: self.deals.into_values().collect(),
            leads: self.leads.into_values().collect(),
            activities: self.activities.into_values().collect(),
            stage_history: self.history.into_values().collect(),
            notes: self.notes,
            ..self.snapshot
        }
    }
}
