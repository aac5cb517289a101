//! The report data: the exact object a template receives and that is written beside each
//! PDF as `.json` (report-templates/README.md). Keys named by docs/kpi.md keep their names and
//! meanings; the other keys are additions for templates and e-mails.
//!
//! Numbers keep full precision; rounding happens only in the pre-formatted `text` strings.

use serde::{Deserialize, Serialize};

use super::catalog::Kpi;

/// One KPI with its comparison (docs/kpi.md "Comparisons and targets").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiValue {
    pub value: Option<f64>,
    pub previous: Option<f64>,
    pub delta: Option<f64>,
    pub delta_pct: Option<f64>,
    pub target: Option<f64>,
    pub attainment_pct: Option<f64>,
    /// Value, previous, delta and attainment formatted for the report's language; filled by
    /// `present`, absent in the raw KPI pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<KpiText>,
}

impl KpiValue {
    /// A KPI from this and the previous period's value and a target (docs/kpi.md
    /// "Comparisons and targets"); `text` is left to `present`.
    pub fn compare(kpi: Kpi, value: Option<f64>, previous: Option<f64>, target: Option<f64>) -> KpiValue {
        let delta = value.zip(previous).map(|(v, p)| v - p);
        let delta_pct = delta.zip(previous).and_then(|(d, p)| (p != 0.0).then(|| d / p.abs() * 100.0));
        let attainment_pct = kpi.attainment_pct(value, target);
        KpiValue { value, previous, delta, delta_pct, target, attainment_pct, text: None }
    }
}

/// Pre-formatted strings of one KPI (`1 234 567 ₽`, `+12,3 %`), for templates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KpiText {
    /// The KPI's name in the report's language.
    pub label: String,
    pub value: String,
    pub previous: String,
    /// `+3`, `−1,5 п.п.`, `—` when null.
    pub delta: String,
    /// `+66,7 %` or `—`.
    pub delta_pct: String,
    pub target: String,
    pub attainment: String,
    /// `up`, `down` or `flat`: the direction of the delta, `none` when null.
    pub direction: String,
    /// Whether the change is good news (`good`), bad (`bad`) or neither (`neutral`): for
    /// cycle time, shorter is better.
    pub tone: String,
}

/// The KPIs of docs/kpi.md, in its table's order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    pub deals_won: KpiValue,
    pub revenue: KpiValue,
    pub avg_deal_value: KpiValue,
    pub deals_lost: KpiValue,
    pub win_rate: KpiValue,
    pub leads_total: KpiValue,
    pub leads_converted: KpiValue,
    pub lead_conversion: KpiValue,
    pub cycle_days_median: KpiValue,
    pub cycle_days_mean: KpiValue,
    pub emails_sent: KpiValue,
    pub calls_made: KpiValue,
    pub csat: KpiValue,
    pub csat_responses: KpiValue,
    pub repeat_share: KpiValue,
    pub open_pipeline_value: KpiValue,
}

/// `$($r)+ $kpis.<field>` for each [`Kpi`]: the one place a `Kpi` meets its field.
macro_rules! kpi_field {
    ($kpis:ident, $kpi:expr, $($r:tt)+) => {
        match $kpi {
            Kpi::DealsWon => $($r)+ $kpis.deals_won,
            Kpi::Revenue => $($r)+ $kpis.revenue,
            Kpi::AvgDealValue => $($r)+ $kpis.avg_deal_value,
            Kpi::DealsLost => $($r)+ $kpis.deals_lost,
            Kpi::WinRate => $($r)+ $kpis.win_rate,
            Kpi::LeadsTotal => $($r)+ $kpis.leads_total,
            Kpi::LeadsConverted => $($r)+ $kpis.leads_converted,
            Kpi::LeadConversion => $($r)+ $kpis.lead_conversion,
            Kpi::CycleDaysMedian => $($r)+ $kpis.cycle_days_median,
            Kpi::CycleDaysMean => $($r)+ $kpis.cycle_days_mean,
            Kpi::EmailsSent => $($r)+ $kpis.emails_sent,
            Kpi::CallsMade => $($r)+ $kpis.calls_made,
            Kpi::Csat => $($r)+ $kpis.csat,
            Kpi::CsatResponses => $($r)+ $kpis.csat_responses,
            Kpi::RepeatShare => $($r)+ $kpis.repeat_share,
            Kpi::OpenPipelineValue => $($r)+ $kpis.open_pipeline_value,
        }
    };
}

impl Kpis {
    /// One KPI.
    pub fn of(&self, kpi: Kpi) -> &KpiValue {
        kpi_field!(self, kpi, &)
    }

    /// One KPI, to fill in.
    pub fn of_mut(&mut self, kpi: Kpi) -> &mut KpiValue {
        kpi_field!(self, kpi, &mut)
    }

    /// The KPI under its docs/kpi.md key (as templates and the report data name it).
    pub fn get(&self, key: &str) -> Option<&KpiValue> {
        Kpi::from_key(key).map(|kpi| self.of(kpi))
    }

    /// Mutable access under a docs/kpi.md key.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut KpiValue> {
        Kpi::from_key(key).map(|kpi| self.of_mut(kpi))
    }
}

/// A period as the report data shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodInfo {
    /// `week`, `month` or `custom`.
    pub kind: String,
    /// `2026-W47`.
    pub label: String,
    /// RFC 3339 with the zone's offset: `2026-11-16T00:00:00+03:00`.
    pub start: String,
    pub end: String,
    /// For people: `16.11.2026 – 22.11.2026` / `Nov 16 – 22, 2026`, `ноябрь 2026`.
    pub title: String,
}

/// The manager a scorecard is for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManagerRef {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
}

/// One row of the department report's side-by-side table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManagerRow {
    pub id: String,
    pub name: String,
    pub kpis: Kpis,
    /// `best` / `worst` by the sort KPI among managers with a value, else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<String>,
}

/// A stuck deal (docs/kpi.md "Stuck deals").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StuckDeal {
    pub id: String,
    pub title: String,
    /// The stage's name.
    pub stage: String,
    pub pipeline: String,
    pub days: f64,
    /// Money in the base currency.
    pub value: f64,
    /// The deal's manager (for the department report).
    pub manager: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_text: Option<String>,
}

/// All stuck deals at a glance, and how many of them the PDF and the e-mail list: the
/// report data's `stuck_deals` holds every one, the PDF and the e-mail the longest
/// `shown` (`report.max_stuck_deals`) and a sentence about the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StuckSummary {
    /// How many deals are stuck (the length of `stuck_deals`).
    pub count: usize,
    /// Their total value in the base currency.
    pub value: f64,
    /// How many of them the PDF and the e-mail list, longest idle first.
    pub shown: usize,
    /// `count - shown`: the deals left out of the lists.
    pub more: usize,
    /// The total value of the deals left out.
    pub more_value: f64,
    /// `1 234 567 ₽`: the total value, formatted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_text: Option<String>,
    /// The sentence under a shortened list (`И ещё 13 сделок на 2 345 000 ₽.`), empty
    /// when nothing was left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more_text: Option<String>,
}

/// A lead source's figures in the period.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceRow {
    pub id: String,
    pub name: String,
    pub leads_total: u64,
    pub leads_converted: u64,
    pub lead_conversion: Option<f64>,
    pub deals_won: u64,
    pub revenue: f64,
    pub avg_deal_value: Option<f64>,
}

/// One stage of a pipeline's funnel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunnelStage {
    pub id: String,
    pub name: String,
    /// Distinct deals with a stage-history entry into this stage in the period.
    pub deals: u64,
    /// Distinct deals that got at least this far in the period: entered this stage or a
    /// later in-progress or success stage of the pipeline (failure stages: = `deals`).
    pub reached: u64,
    /// `P`, `S` or `F`.
    pub semantics: String,
    /// `reached` of this stage divided by `reached` of the previous in-progress or success
    /// stage, times 100 (at most 100); null for the first stage, failure stages, or after
    /// a stage no deal reached.
    pub conversion_pct: Option<f64>,
    /// Median days deals spent in this stage (entries into it during the period that
    /// have left it), null when none.
    pub median_days: Option<f64>,
}

/// A pipeline's funnel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunnelPipeline {
    pub pipeline_id: String,
    pub pipeline: String,
    pub stages: Vec<FunnelStage>,
}

/// A product's figures over the period's won deals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductRowOut {
    pub id: String,
    pub name: String,
    pub deals_won: u64,
    pub revenue: f64,
    pub avg_deal_value: Option<f64>,
}

/// Breakdowns of the period (docs/kpi.md): plain numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdowns {
    pub sources: Vec<SourceRow>,
    pub funnel: Vec<FunnelPipeline>,
    pub products: Vec<ProductRowOut>,
}

/// One period of a trend chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    pub label: String,
    /// Short axis label: `W47`, `ноя`.
    pub short: String,
    pub deals_won: u64,
    pub revenue: f64,
    pub lead_conversion: Option<f64>,
    pub avg_deal_value: Option<f64>,
    pub target_deals_won: Option<f64>,
    pub target_revenue: Option<f64>,
}

/// Where a manager stands in the team (scorecard).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamContext {
    pub size: usize,
    /// 1 = best; null when ranks are switched off or the KPI is null.
    pub rank_revenue: Option<usize>,
    pub rank_conversion: Option<usize>,
    /// Team median per KPI key (over managers with a value).
    pub medians: std::collections::BTreeMap<String, Option<f64>>,
}

/// One entry of the department report's "How the numbers are computed" page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    /// A KPI key, or the rule's name (`period`, `attribution`, `money`, `stage_at_end`,
    /// `stuck_deals`).
    pub key: String,
    /// The KPI's or the rule's name in the report's language.
    pub label: String,
    /// The rule in one or two sentences, in the report's language.
    pub text: String,
}

/// A coaching hint: a plain sentence and the numbers that triggered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hint {
    /// The rule's id, e.g. `conversion_fell_leads_rose`.
    pub rule: String,
    pub text: String,
}

/// The whole report data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    /// `manager` or `department`.
    pub report: String,
    /// The scheduled slot the report belongs to, not the wall clock (determinism).
    pub generated_at: String,
    pub period: PeriodInfo,
    pub previous_period: PeriodInfo,
    /// The same period a year before (department report comparisons).
    pub year_ago_period: PeriodInfo,
    /// Base currency code.
    pub currency: String,
    /// `ru` or `en`.
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<ManagerRef>,
    pub kpis: Kpis,
    /// The same KPIs over the same period a year before (value only), department report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpis_year_ago: Option<Kpis>,
    /// Every stuck deal, longest idle first (ties by id).
    pub stuck_deals: Vec<StuckDeal>,
    pub stuck_summary: StuckSummary,
    /// Department report: one row per manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managers: Option<Vec<ManagerRow>>,
    pub breakdowns: Breakdowns,
    /// The last `trend_periods` periods, oldest first, ending with this one.
    pub trend: Vec<TrendPoint>,
    /// Won deals' cycle times in days (department: all managers), for the distribution.
    pub cycle_days: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamContext>,
    pub hints: Vec<Hint>,
    /// Data-quality notes: what could not be attributed, and why.
    pub notes: Vec<String>,
    /// Department report with `report.definitions_page`: how each number is computed, for
    /// the last page; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definitions: Vec<Definition>,
    /// Labels in the report's language, by key, for templates.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Chart name to the virtual path the template reads it from (`/charts/trend.svg`).
    pub charts: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kpi_is_the_field_of_its_key() {
        let mut kpis = Kpis::default();
        for kpi in Kpi::ALL {
            kpis.of_mut(kpi).value = Some(kpi.index() as f64);
        }
        let json = serde_json::to_value(&kpis).unwrap();
        let fields = json.as_object().unwrap();
        assert_eq!(fields.len(), Kpi::ALL.len());
        for kpi in Kpi::ALL {
            assert_eq!(fields[kpi.key()]["value"], serde_json::json!(kpi.index() as f64), "{kpi}");
            assert_eq!(kpis.get(kpi.key()), Some(kpis.of(kpi)));
        }
        assert_eq!(kpis.get("deals_wonn"), None);
    }
}
