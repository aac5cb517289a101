//! Alerts (`[[alert]]`, docs/kpi.md "Alerts"): at each slot of its schedule an alert reads
//! the CRM as of the slot, checks every manager in scope against its rule (a pace behind
//! a pro-rated target, silence, deals newly stuck), and sends each manager concerned a
//! short text, and each fixed recipient one summary, through the alert ledger, exactly
//! once per (alert, slot, recipient, channel).
//!
//! - `rules`: the arithmetic, pure;
//! - `message`: the texts, in the configured language;
//! - `deliver`: the ledger and the one send function.
//!
//! An alert's period (its key in the ledger) is its slot, written
//! `2026-11-25T12:00+03:00`: Wednesday's and Thursday's pace alerts are two alerts.

pub mod deliver;
pub mod message;
pub mod rules;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::config::{AlertConfig, AlertRule, Config};
use crate::domain::{CrmSnapshot, Id, Period, PeriodKind, days_between, local_midnight};
use crate::kpi::{Analysis, Kpi, StuckDeal};
use crate::pipeline::{PipelineError, ReportBuilder};
use crate::schedule;
use crate::store::Store;

pub use deliver::{AlertMessage, AlertSummary, CHANNEL_EMAIL};
use rules::{Pace, PaceOutcome};

/// How many open deals a message names as the ones to call first.
pub const CALL_FIRST: usize = 3;

/// What is off for one manager.
#[derive(Clone, Debug, PartialEq)]
pub enum Issue {
    /// The KPI to date is behind the pro-rated target of `period`.
    Pace { kpi: Kpi, period: Period, figures: Pace },
    /// No outgoing e-mail or call since local midnight of `since`.
    Silence { since: NaiveDate, working_days: u32 },
    /// `deals` crossed `stuck_after_days` since the previous slot `since`, most money first.
    NewlyStuck { deals: Vec<StuckDeal>, since: DateTime<Tz>, stuck_after_days: f64 },
}

/// One manager an alert is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub manager: Id,
    pub name: String,
    pub email: Option<String>,
    pub issue: Issue,
    /// The deals to call first, most money first (at most [`CALL_FIRST`]): the manager's
    /// open deals, or for newly stuck deals those deals.
    pub call_first: Vec<StuckDeal>,
    /// How many more there are than `call_first` shows.
    pub more: usize,
}

/// What one alert found at one slot.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub alert: String,
    pub slot: DateTime<Tz>,
    /// The ledger's period: the slot.
    pub period_key: String,
    pub currency: String,
    pub findings: Vec<Finding>,
    /// Managers not checked, with why (no target, a target of zero, no working days).
    pub not_checked: Vec<(String, &'static str)>,
}

/// The ledger's period of a slot: `2026-11-25T12:00+03:00`.
pub fn period_key(slot: DateTime<Tz>) -> String {
    slot.format("%Y-%m-%dT%H:%M%:z").to_string()
}

/// The slot a ledger period names (see [`period_key`]).
pub fn parse_period_key(key: &str, tz: Tz) -> Option<DateTime<Tz>> {
    DateTime::parse_from_str(key, "%Y-%m-%dT%H:%M%:z").ok().map(|t| t.with_timezone(&tz))
}

/// The period a pace alert pro-rates at `slot`: the week or month the slot's local date
/// is in (a slot at Monday 00:00 is the new week's start: nothing has elapsed).
pub fn pace_period(kind: PeriodKind, slot: DateTime<Tz>) -> Period {
    let day = slot.date_naive();
    match kind {
        PeriodKind::Month => Period::month_of(day, slot.timezone()),
        _ => Period::week_of(day, slot.timezone()),
    }
}

/// The slot before `slot` in the alert's schedule (newly-stuck looks back to it).
pub fn previous_slot(alert: &AlertConfig, slot: DateTime<Tz>) -> Option<DateTime<Tz>> {
    schedule::latest_slot(&alert.cron, slot.timezone(), slot.with_timezone(&Utc) - Duration::seconds(1))
}

/// The start of the oldest window the alert's rule reads at `slot`: what to fetch from.
pub fn window_start(config: &Config, alert: &AlertConfig, slot: DateTime<Tz>) -> DateTime<Tz> {
    let tz = slot.timezone();
    match &alert.rule {
        AlertRule::Pace { period, .. } => pace_period(*period, slot).start(),
        AlertRule::Silence { working_days } => {
            local_midnight(config.calendar.working_days_back(slot.date_naive(), *working_days), tz)
        }
        // The history since the previous slot, and a day before it.
        AlertRule::NewlyStuck => previous_slot(alert, slot).unwrap_or(slot) - Duration::days(1),
    }
}

/// Checks every manager in scope against the alert's rule at `slot`.
pub fn evaluate(config: &Config, alert: &AlertConfig, snapshot: &CrmSnapshot, slot: DateTime<Tz>) -> Evaluation {
    let settings = config.kpi_settings();
    let analysis = Analysis::new(snapshot, &settings);
    let at = slot.fixed_offset();
    let mut findings = Vec::new();
    let mut not_checked = Vec::new();
    let call_first = |m: Id| {
        let open = analysis.open_deals(m, &at);
        let more = open.len().saturating_sub(CALL_FIRST);
        (open.into_iter().take(CALL_FIRST).collect::<Vec<_>>(), more)
    };
    for m in analysis.managers() {
        let issue = match &alert.rule {
            AlertRule::Pace { kpi, period: kind, min_share } => {
                let period = pace_period(*kind, slot);
                let value =
                    analysis.values_between(&[m.id], period.start().fixed_offset(), at).get(*kpi).unwrap_or(0.0);
                let target = config.targets.manager(m.id, *kind, *kpi);
                let working_days = config.calendar.working_days(period.first_day, period.end_day);
                let elapsed = config.calendar.elapsed(&period, slot.naive_local());
                match rules::pace(value, target, elapsed, working_days, *min_share) {
                    PaceOutcome::Behind(figures) => Some(Issue::Pace { kpi: *kpi, period, figures }),
                    PaceOutcome::OnPace(_) => None,
                    PaceOutcome::NoTarget => {
                        not_checked.push((m.name.clone(), "no target"));
                        None
                    }
                    PaceOutcome::ZeroTarget => {
                        not_checked.push((m.name.clone(), "a target of zero"));
                        None
                    }
                    PaceOutcome::NoWorkingDays => {
                        not_checked.push((m.name.clone(), "no working days in the period"));
                        None
                    }
                }
            }
            AlertRule::Silence { working_days } => {
                let since = config.calendar.working_days_back(slot.date_naive(), *working_days);
                let v = analysis.values_between(&[m.id], local_midnight(since, slot.timezone()).fixed_offset(), at);
                let touches = v.get(Kpi::EmailsSent).unwrap_or(0.0) + v.get(Kpi::CallsMade).unwrap_or(0.0);
                (touches == 0.0).then_some(Issue::Silence { since, working_days: *working_days })
            }
            AlertRule::NewlyStuck => {
                let stuck_after = config.crm.stuck_after_days;
                previous_slot(alert, slot).and_then(|prev| {
                    let window = days_between(&prev.fixed_offset(), &at);
                    let deals: Vec<StuckDeal> = analysis
                        .open_deals(m.id, &at)
                        .into_iter()
                        .filter(|d| rules::newly_stuck(d.days, stuck_after, window))
                        .collect();
                    (!deals.is_empty()).then_some(Issue::NewlyStuck {
                        deals,
                        since: prev,
                        stuck_after_days: stuck_after,
                    })
                })
            }
        };
        let Some(issue) = issue else { continue };
        let (first, more) = match &issue {
            Issue::NewlyStuck { deals, .. } => {
                (deals.iter().take(CALL_FIRST).cloned().collect(), deals.len().saturating_sub(CALL_FIRST))
            }
            _ => call_first(m.id),
        };
        findings.push(Finding {
            manager: m.id,
            name: m.name.clone(),
            email: m.email.clone(),
            issue,
            call_first: first,
            more,
        });
    }
    Evaluation {
        alert: alert.name.clone(),
        slot,
        period_key: period_key(slot),
        currency: analysis.currency().to_owned(),
        findings,
        not_checked,
    }
}

/// Fetches the CRM as of `slot` and evaluates the alert (nothing is sent): `alert --at`.
pub async fn preview(
    builder: &ReportBuilder,
    alert: &AlertConfig,
    slot: DateTime<Tz>,
) -> Result<(Evaluation, Vec<AlertMessage>), PipelineError> {
    let config = builder.config();
    let snapshot = builder.fetch_since(window_start(config, alert, slot), slot).await?;
    let evaluation = evaluate(config, alert, &snapshot, slot);
    let messages = message::messages(config, alert, &evaluation);
    Ok((evaluation, messages))
}

/// One slot of an alert: fetch, evaluate, then send each message exactly once through the
/// ledger.
pub async fn run<M: crate::mail::Mailer + Sync>(
    builder: &ReportBuilder,
    store: &Store,
    mailer: &M,
    alert: &AlertConfig,
    slot: DateTime<Tz>,
) -> anyhow::Result<AlertSummary> {
    let (evaluation, messages) = preview(builder, alert, slot).await?;
    tracing::info!(alert = %alert.name, slot = %evaluation.period_key, concerned = evaluation.findings.len(),
        messages = messages.len(), "Alert evaluated.");
    Ok(deliver::deliver(store, mailer, builder.config(), &alert.name, &evaluation.period_key, slot, &messages).await?)
}

#[cfg(test)]
mod tests;
