//! Breakdowns of a period (docs/kpi.md): lead sources, the funnel of each pipeline,
//! products.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::{Id, Semantics, Stage, days_between};
use crate::locale::Language;

use super::analysis::{Analysis, Bounds};
use super::figures::{median, ratio};
use crate::kpi::model::{Breakdowns, FunnelPipeline, FunnelStage, ProductRowOut, SourceRow};
use crate::kpi::present;

impl Analysis<'_> {
    pub(super) fn breakdowns(&self, pop: &[Id], b: &Bounds, lang: Language) -> Breakdowns {
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
