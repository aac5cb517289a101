//! `[calendar]` (working days and holidays) and `[[alert]]` (pace, silence and newly-stuck
//! alerts: docs/configuration.md, docs/kpi.md "Alerts").

use std::collections::BTreeSet;

use chrono::NaiveDate;
use toml::Spanned;

use crate::domain::{Calendar, PeriodKind};
use crate::kpi::{Direction, Kpi, Targets};

use super::parse::{Ctx, RawAlert, RawCalendar};
use super::{Channel, ConfigError, CrmConfig, CrmSourceKind, JobConfig, TelegramConfig, parse_cron};

/// The longest silence an alert may look back over, in working days.
pub const MAX_SILENCE_DAYS: u32 = 250;

/// What an alert watches, with its thresholds.
#[derive(Clone, Debug, PartialEq)]
pub enum AlertRule {
    /// The period-to-date value of `kpi` below `min_share` of its target pro-rated by the
    /// working days elapsed.
    Pace { kpi: Kpi, period: PeriodKind, min_share: f64 },
    /// No outgoing e-mail or call for `working_days` working days.
    Silence { working_days: u32 },
    /// Deals that crossed `[crm] stuck_after_days` since the alert's previous slot.
    NewlyStuck,
}

impl AlertRule {
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertRule::Pace { .. } => "pace",
            AlertRule::Silence { .. } => "silence",
            AlertRule::NewlyStuck => "newly-stuck",
        }
    }
}

/// `[[alert]]`.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    pub name: String,
    /// The 5-field crontab line as written.
    pub schedule: String,
    pub cron: croner::Cron,
    pub rule: AlertRule,
    /// Each manager concerned gets their own message.
    pub to_manager: bool,
    /// Fixed addresses (the head of sales): each gets one summary per slot naming every
    /// manager concerned.
    pub recipients: Vec<String>,
    /// Where the messages go (`channels`, default `["email"]`): the Bitrix24 messenger
    /// reaches the managers in their own dialogs (fixed recipients get e-mail); Telegram
    /// whoever `[telegram.chats]` names.
    pub channels: Vec<Channel>,
}

/// The KPIs a pace alert can watch: counts and sums that grow through a period, where
/// more is better. Rates, averages, the cycle time and the open pipeline (a stock, not a
/// flow) do not grow with the days worked, so pro-rating them means nothing.
pub fn pace_kpi_ok(kpi: Kpi) -> bool {
    kpi.is_additive() && kpi.direction() == Direction::HigherIsBetter && kpi != Kpi::OpenPipelineValue
}

const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

impl Ctx<'_> {
    pub(super) fn calendar(&self, raw: Option<Spanned<RawCalendar>>) -> Result<Calendar, ConfigError> {
        let Some(raw) = raw else { return Ok(Calendar::default()) };
        let raw = raw.into_inner();
        let mut calendar = Calendar::default();
        if let Some(days) = raw.working_days {
            let mut weekdays = [false; 7];
            for d in days.get_ref() {
                let lower = d.trim().to_ascii_lowercase();
                let Some(i) = WEEKDAYS.iter().position(|(short, long)| lower == *short || lower == *long) else {
                    return Err(self.err(
                        days.span(),
                        "calendar.working_days",
                        format!("expected weekdays such as \"mon\", \"tue\", ... \"sun\", got {d:?}"),
                    ));
                };
                // A day named twice is harmless.
                weekdays[i] = true;
            }
            if !weekdays.contains(&true) {
                return Err(self.err(days.span(), "calendar.working_days", "name at least one working day"));
            }
            calendar.working_weekdays = weekdays;
        }
        let mut holidays = BTreeSet::new();
        for h in raw.holidays {
            let day = NaiveDate::parse_from_str(h.get_ref().trim(), "%Y-%m-%d")
                .ok()
                .filter(|d| crate::domain::PERIOD_YEARS.contains(&chrono::Datelike::year(d)))
                .ok_or_else(|| {
                    self.err(
                        h.span(),
                        "calendar.holidays",
                        format!("expected a date such as \"2026-11-04\" (years 1970 to 9998), got {:?}", h.get_ref()),
                    )
                })?;
            // A date listed twice is harmless.
            holidays.insert(day);
        }
        calendar.holidays = holidays;
        Ok(calendar)
    }

    pub(super) fn alert(&self, raw: Spanned<RawAlert>, targets: &Targets) -> Result<AlertConfig, ConfigError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(self.err(raw.name.span(), "alert.name", "use letters, digits, '-' and '_' only"));
        }
        let cron =
            parse_cron(raw.schedule.get_ref()).map_err(|m| self.err(raw.schedule.span(), "alert.schedule", m))?;
        // A key that belongs to another rule is a mistake worth saying, not ignoring.
        let not_for = |key: &str, present: bool, rule: &str| -> Result<(), ConfigError> {
            if present {
                return Err(self.err(span.clone(), &format!("alert.{key}"), format!("not a key of rule = \"{rule}\"")));
            }
            Ok(())
        };
        let rule = match raw.rule.get_ref().as_str() {
            "pace" => {
                not_for("working_days", raw.working_days.is_some(), "pace")?;
                let kpi_raw = raw.kpi.as_ref().ok_or_else(|| {
                    self.err(span.clone(), "alert.kpi", "rule = \"pace\" needs kpi (e.g. \"revenue\")")
                })?;
                let kpi = Kpi::from_key(kpi_raw.get_ref()).ok_or_else(|| {
                    self.err(
                        kpi_raw.span(),
                        "alert.kpi",
                        format!("unknown KPI {:?} (see docs/kpi.md)", kpi_raw.get_ref()),
                    )
                })?;
                if !pace_kpi_ok(kpi) {
                    return Err(self.err(
                        kpi_raw.span(),
                        "alert.kpi",
                        format!(
                            "{:?} cannot be pro-rated by working days (a rate, an average, a lower-is-better KPI or \
                             a stock); use deals_won, revenue, leads_total, leads_converted, emails_sent, calls_made \
                             or csat_responses",
                            kpi.key()
                        ),
                    ));
                }
                let period = match raw.period.as_ref().map(|p| p.get_ref().as_str()) {
                    Some("week") => PeriodKind::Week,
                    Some("month") => PeriodKind::Month,
                    Some(other) => {
                        let p = raw.period.as_ref().expect("matched Some");
                        return Err(self.err(
                            p.span(),
                            "alert.period",
                            format!("expected \"week\" or \"month\", got {other:?}"),
                        ));
                    }
                    None => return Err(self.err(span.clone(), "alert.period", "rule = \"pace\" needs period")),
                };
                let has_target = targets.default.for_kind(period).is_some_and(|t| t.contains_key(&kpi))
                    || targets.managers.values().any(|m| m.for_kind(period).is_some_and(|t| t.contains_key(&kpi)));
                if !has_target {
                    let kind = period.target_key().unwrap_or("week");
                    return Err(self.err(
                        kpi_raw.span(),
                        "alert.kpi",
                        format!(
                            "no {kind}ly target for {:?}: add it under [targets.default.{kind}] or a manager's \
                             [targets.managers.\"ID\".{kind}]",
                            kpi.key()
                        ),
                    ));
                }
                let min_share = match raw.min_share {
                    None => {
                        return Err(self.err(
                            span.clone(),
                            "alert.min_share",
                            "rule = \"pace\" needs min_share (e.g. 0.6)",
                        ));
                    }
                    Some(v) => {
                        self.bounded(Some(v), "alert.min_share", 0.6, 0.01..=1.0, "a share of the pro-rated target")?
                    }
                };
                AlertRule::Pace { kpi, period, min_share }
            }
            "silence" => {
                not_for("kpi", raw.kpi.is_some(), "silence")?;
                not_for("period", raw.period.is_some(), "silence")?;
                not_for("min_share", raw.min_share.is_some(), "silence")?;
                let Some(days) = raw.working_days else {
                    return Err(self.err(
                        span.clone(),
                        "alert.working_days",
                        "rule = \"silence\" needs working_days (e.g. 2)",
                    ));
                };
                let working_days =
                    self.bounded(Some(days), "alert.working_days", 2, 1..=MAX_SILENCE_DAYS, "working days")?;
                AlertRule::Silence { working_days }
            }
            "newly-stuck" => {
                not_for("kpi", raw.kpi.is_some(), "newly-stuck")?;
                not_for("period", raw.period.is_some(), "newly-stuck")?;
                not_for("min_share", raw.min_share.is_some(), "newly-stuck")?;
                not_for("working_days", raw.working_days.is_some(), "newly-stuck")?;
                AlertRule::NewlyStuck
            }
            other => {
                return Err(self.err(
                    raw.rule.span(),
                    "alert.rule",
                    format!("expected \"pace\", \"silence\" or \"newly-stuck\", got {other:?}"),
                ));
            }
        };
        let mut recipients: Vec<String> = Vec::new();
        for r in &raw.recipients {
            match r.parse::<lettre::message::Mailbox>() {
                Ok(m) if !recipients.iter().any(|x| x.eq_ignore_ascii_case(m.email.as_ref())) => {
                    // One bare address each: it is the recipient's key in the ledger.
                    recipients.push(m.email.to_string());
                }
                Ok(_) => {} // Listed twice: harmless.
                Err(_) => {
                    return Err(self.err(span.clone(), "alert.recipients", format!("not an e-mail address: {r:?}")));
                }
            }
        }
        let to_manager = raw.to_manager.unwrap_or(true);
        if !to_manager && recipients.is_empty() {
            return Err(self.err(
                span,
                "alert.recipients",
                "with to_manager = false the alert needs recipients (e.g. the head of sales)",
            ));
        }
        let channels = self.channels(raw.channels, "alert.channels")?;
        Ok(AlertConfig { name, schedule: raw.schedule.into_inner(), cron, rule, to_manager, recipients, channels })
    }

    /// Validates every `[[alert]]`: names unique among jobs and alerts.
    pub(super) fn alerts(
        &self,
        raw: Vec<Spanned<RawAlert>>,
        jobs: &[JobConfig],
        targets: &Targets,
        crm: &CrmConfig,
        telegram: Option<&TelegramConfig>,
    ) -> Result<Vec<AlertConfig>, ConfigError> {
        let mut alerts: Vec<AlertConfig> = Vec::new();
        for a in raw {
            let span = a.span();
            let alert = self.alert(a, targets)?;
            if alert.channels.contains(&Channel::Bitrix24) && crm.source == CrmSourceKind::Demo {
                return Err(self.err(
                    span,
                    "alert.channels",
                    "the bitrix24 channel sends through the CRM's webhook: it needs crm.source = \"bitrix24\"",
                ));
            }
            if alert.channels.contains(&Channel::Telegram) && telegram.is_none() {
                return Err(self.err(
                    span,
                    "alert.channels",
                    "the telegram channel needs a [telegram] section (bot_token_env and the chats)",
                ));
            }
            if jobs.iter().any(|j| j.name == alert.name) || alerts.iter().any(|x| x.name == alert.name) {
                return Err(self.err(
                    span,
                    "alert.name",
                    format!("{:?} is already the name of a job or an alert", alert.name),
                ));
            }
            alerts.push(alert);
        }
        Ok(alerts)
    }
}
