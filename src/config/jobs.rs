//! `[[job]]`: what a job renders, on which schedule, for which period, to whom.

use std::path::PathBuf;
use std::str::FromStr;

use crate::domain::PeriodKind;

use super::parse::{Ctx, RawJob};
use super::{Channel, ConfigError, CrmConfig, CrmSourceKind, TelegramConfig};

/// The kind of report a job renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// One PDF per manager, to that manager.
    Manager,
    /// One PDF for the department, to `recipients`.
    Department,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Manager => "manager",
            ReportKind::Department => "department",
        }
    }
}

/// Which complete period a scheduled run reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodRule {
    PreviousWeek,
    PreviousMonth,
}

impl PeriodRule {
    pub fn kind(self) -> PeriodKind {
        match self {
            PeriodRule::PreviousWeek => PeriodKind::Week,
            PeriodRule::PreviousMonth => PeriodKind::Month,
        }
    }
}

/// `[[job]]`.
#[derive(Clone, Debug)]
pub struct JobConfig {
    pub name: String,
    pub report: ReportKind,
    /// The 5-field crontab line as written.
    pub schedule: String,
    /// The parsed line (minute granularity).
    pub cron: croner::Cron,
    pub period: PeriodRule,
    /// Department report: who gets it. Manager report: extra copies of every scorecard
    /// (each recipient sees all managers' scorecards), usually empty.
    pub recipients: Vec<String>,
    /// A Typst template file instead of the built-in one.
    pub template: Option<PathBuf>,
    /// A minijinja template for the subject instead of the built-in one.
    pub subject: Option<String>,
    /// Where the reports go (`channels`, default `["email"]`), in the order named.
    pub channels: Vec<Channel>,
    /// Bitrix24 dialogs that get every report of the job in the messenger (a department
    /// report's readers, or extra copies of the scorecards): user ids (`"1"`) or group
    /// chats (`"chat42"`). A scorecard also goes to its manager's own dialog.
    pub bitrix24_recipients: Vec<String>,
}

impl Ctx<'_> {
    pub(super) fn job(&self, raw: RawJob) -> Result<JobConfig, ConfigError> {
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(self.err(raw.name.span(), "job.name", "use letters, digits, '-' and '_' only"));
        }
        let report = match raw.report.get_ref().as_str() {
            "manager" => ReportKind::Manager,
            "department" => ReportKind::Department,
            other => {
                return Err(self.err(
                    raw.report.span(),
                    "job.report",
                    format!("expected \"manager\" or \"department\", got {other:?}"),
                ));
            }
        };
        let cron = parse_cron(raw.schedule.get_ref()).map_err(|m| self.err(raw.schedule.span(), "job.schedule", m))?;
        let period = match raw.period.get_ref().as_str() {
            "previous-week" => PeriodRule::PreviousWeek,
            "previous-month" => PeriodRule::PreviousMonth,
            other => {
                return Err(self.err(
                    raw.period.span(),
                    "job.period",
                    format!("expected \"previous-week\" or \"previous-month\", got {other:?}"),
                ));
            }
        };
        for r in &raw.recipients {
            if r.parse::<lettre::message::Mailbox>().is_err() {
                return Err(self.err(raw.name.span(), "job.recipients", format!("not an e-mail address: {r:?}")));
            }
        }
        if report == ReportKind::Department && raw.recipients.is_empty() {
            return Err(self.err(raw.name.span(), "job.recipients", "a department report needs recipients"));
        }
        if let Some(s) = &raw.subject
            && let Err(e) = minijinja::Environment::new().template_from_str(s)
        {
            return Err(self.err(raw.name.span(), "job.subject", format!("bad template: {e}")));
        }
        let channels = self.channels(raw.channels, "job.channels")?;
        let bitrix24_recipients = self.dialog_ids(raw.bitrix24_recipients, "job.bitrix24_recipients")?;
        Ok(JobConfig {
            channels,
            bitrix24_recipients,
            name,
            report,
            schedule: raw.schedule.into_inner(),
            cron,
            period,
            recipients: raw.recipients,
            template: raw.template.map(PathBuf::from),
            subject: raw.subject,
        })
    }
}

impl Ctx<'_> {
    /// What a job's channels need from the rest of the config: Bitrix24 a real portal (its
    /// webhook carries the messages), a department report's chat readers, Telegram its
    /// section.
    pub(super) fn job_channels(
        &self,
        job: &JobConfig,
        span: std::ops::Range<usize>,
        crm: &CrmConfig,
        telegram: Option<&TelegramConfig>,
    ) -> Result<(), ConfigError> {
        let bitrix24 = job.channels.contains(&Channel::Bitrix24);
        if bitrix24 && crm.source == CrmSourceKind::Demo {
            return Err(self.err(
                span,
                "job.channels",
                "the bitrix24 channel sends through the CRM's webhook: it needs crm.source = \"bitrix24\"",
            ));
        }
        if bitrix24 && job.report == ReportKind::Department && job.bitrix24_recipients.is_empty() {
            return Err(self.err(
                span,
                "job.bitrix24_recipients",
                "a department report in the bitrix24 channel needs bitrix24_recipients (user ids such as \"1\" or chats such as \"chat42\")",
            ));
        }
        if !bitrix24 && !job.bitrix24_recipients.is_empty() {
            return Err(self.err(
                span,
                "job.bitrix24_recipients",
                "the job does not send through bitrix24: add \"bitrix24\" to channels, or remove bitrix24_recipients",
            ));
        }
        if job.channels.contains(&Channel::Telegram) && telegram.is_none() {
            return Err(self.err(
                span,
                "job.channels",
                "the telegram channel needs a [telegram] section (bot_token_env and the chats)",
            ));
        }
        Ok(())
    }
}

/// Parses a crontab(5) line of five fields (or an `@daily`-style alias).
pub fn parse_cron(line: &str) -> Result<croner::Cron, String> {
    let trimmed = line.trim();
    let fields = trimmed.split_whitespace().count();
    if !trimmed.starts_with('@') && fields != 5 {
        return Err(format!(
            "expected 5 crontab fields (minute hour day-of-month month day-of-week), got {fields} in {line:?}"
        ));
    }
    let cron = croner::Cron::from_str(trimmed).map_err(|e| format!("bad crontab line {line:?}: {e}"))?;
    // `0 0 30 2 *` parses but never fires: a job that silently never runs is worse than an
    // error. Any line that fires at all fires within eight years of any date.
    let from = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).expect("valid date");
    match cron.find_next_occurrence(&from, false) {
        Ok(next) if next < from + chrono::Duration::days(8 * 366) => Ok(cron),
        _ => Err(format!("crontab line {line:?} never fires")),
    }
}
