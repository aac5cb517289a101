//! The TOML as written (`Raw*`, unknown keys refused) and its validation into a
//! [`Config`]; every error names the file, the line and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::PathBuf;
use std::str::FromStr;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::domain::Id;
use crate::kpi::{Kpi, PeriodTargets, TargetSet, Targets};
use crate::locale::Language;

use super::{Config, ConfigError, DaemonConfig, JobConfig, MAX_CATCH_UP_HOURS, MAX_LIST_LENGTH, ReportConfig};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) language: Option<Spanned<String>>,
    pub(super) state_dir: Option<String>,
    pub(super) crm: Spanned<RawCrm>,
    pub(super) mail: Spanned<RawMail>,
    #[serde(default)]
    pub(super) report: RawReport,
    #[serde(default)]
    pub(super) daemon: RawDaemon,
    #[serde(default)]
    pub(super) job: Vec<Spanned<RawJob>>,
    #[serde(default)]
    pub(super) targets: RawTargets,
    pub(super) telegram: Option<Spanned<RawTelegram>>,
    pub(super) calendar: Option<Spanned<RawCalendar>>,
    #[serde(default)]
    pub(super) alert: Vec<Spanned<RawAlert>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelegram {
    pub(super) bot_token: Option<Spanned<String>>,
    pub(super) bot_token_env: Option<Spanned<String>>,
    pub(super) bot_token_file: Option<Spanned<String>>,
    pub(super) bot_token_credential: Option<Spanned<String>>,
    pub(super) api_url: Option<Spanned<String>>,
    pub(super) timeout_secs: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) chats: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalendar {
    pub(super) working_days: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub(super) holidays: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    pub(super) name: Spanned<String>,
    pub(super) schedule: Spanned<String>,
    pub(super) rule: Spanned<String>,
    pub(super) kpi: Option<Spanned<String>>,
    pub(super) period: Option<Spanned<String>>,
    pub(super) min_share: Option<Spanned<f64>>,
    pub(super) working_days: Option<Spanned<u32>>,
    pub(super) to_manager: Option<bool>,
    #[serde(default)]
    pub(super) recipients: Vec<String>,
    pub(super) channels: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCrm {
    pub(super) source: Spanned<String>,
    pub(super) webhook_url: Option<Spanned<String>>,
    pub(super) webhook_url_env: Option<Spanned<String>>,
    pub(super) webhook_url_file: Option<Spanned<String>>,
    pub(super) webhook_url_credential: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) departments: Vec<Id>,
    #[serde(default)]
    pub(super) managers: Vec<Id>,
    pub(super) include_subdepartments: Option<bool>,
    pub(super) satisfaction_field: Option<String>,
    pub(super) satisfaction_scale: Option<Spanned<[f64; 2]>>,
    pub(super) base_currency: Option<String>,
    pub(super) stuck_after_days: Option<Spanned<f64>>,
    pub(super) rate_limit_per_sec: Option<Spanned<f64>>,
    pub(super) rate_limit_burst: Option<Spanned<u32>>,
    pub(super) timeout_secs: Option<Spanned<u64>>,
    pub(super) max_retries: Option<Spanned<u32>>,
    pub(super) operating_limit_secs: Option<Spanned<u64>>,
    pub(super) cache: Option<bool>,
    pub(super) reconcile_days: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMail {
    pub(super) transport: Spanned<String>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) tls: Option<Spanned<String>>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_env: Option<Spanned<String>>,
    pub(super) password_file: Option<Spanned<String>>,
    pub(super) password_credential: Option<Spanned<String>>,
    pub(super) from: Spanned<String>,
    pub(super) reply_to: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) admin_to: Vec<String>,
    pub(super) outbox_dir: Option<String>,
    pub(super) max_attachment_bytes: Option<u64>,
    pub(super) timeout_secs: Option<Spanned<u64>>,
    pub(super) ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    pub(super) show_ranks: Option<bool>,
    pub(super) sort_managers_by: Option<Spanned<String>>,
    pub(super) trend_periods: Option<Spanned<usize>>,
    pub(super) max_stuck_deals: Option<Spanned<usize>>,
    pub(super) max_stuck_deals_department: Option<Spanned<usize>>,
    pub(super) definitions_page: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) catch_up_hours: Option<Spanned<u64>>,
    pub(super) max_attempts: Option<Spanned<u32>>,
    pub(super) retry_initial_secs: Option<Spanned<u64>>,
    pub(super) retry_max_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub(super) name: Spanned<String>,
    pub(super) report: Spanned<String>,
    pub(super) schedule: Spanned<String>,
    pub(super) period: Spanned<String>,
    #[serde(default)]
    pub(super) recipients: Vec<String>,
    pub(super) template: Option<String>,
    pub(super) subject: Option<String>,
    pub(super) channels: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) bitrix24_recipients: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTargets {
    #[serde(default)]
    pub(super) default: RawPeriodTargets,
    #[serde(default)]
    pub(super) managers: BTreeMap<Spanned<String>, RawPeriodTargets>,
    #[serde(default)]
    pub(super) department: RawPeriodTargets,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPeriodTargets {
    #[serde(default)]
    pub(super) week: BTreeMap<Spanned<String>, f64>,
    #[serde(default)]
    pub(super) month: BTreeMap<Spanned<String>, f64>,
}

/// The text being validated, for turning spans into lines.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) name: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid { file: self.name.to_owned(), line, column, key: key.to_owned(), message: message.into() }
    }

    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        // The key is the text under the span when it looks like one (unknown field, wrong
        // type of a value: toml points at the key or the value).
        let key = key_at(self.text, span.start).unwrap_or_else(|| "?".to_owned());
        self.err(span, &key, message)
    }

    pub(super) fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let timezone = match &raw.timezone {
            None => chrono_tz::Europe::Moscow,
            Some(tz) => Tz::from_str(tz.get_ref())
                .map_err(|_| self.err(tz.span(), "timezone", format!("unknown IANA time zone {:?}", tz.get_ref())))?,
        };
        let language = match &raw.language {
            None => Language::Ru,
            Some(l) => Language::from_code(l.get_ref()).ok_or_else(|| {
                self.err(l.span(), "language", format!("expected \"ru\" or \"en\", got {:?}", l.get_ref()))
            })?,
        };
        let crm = self.crm(raw.crm)?;
        let mail = self.mail(raw.mail)?;
        let report = ReportConfig {
            show_ranks: raw.report.show_ranks.unwrap_or(true),
            sort_managers_by: match raw.report.sort_managers_by {
                None => Kpi::Revenue,
                Some(k) => Kpi::from_key(k.get_ref()).ok_or_else(|| {
                    self.err(k.span(), "report.sort_managers_by", format!("unknown KPI {:?}", k.get_ref()))
                })?,
            },
            trend_periods: self.bounded(raw.report.trend_periods, "report.trend_periods", 12, 2..=60, "periods")?,
            max_stuck_deals: self.bounded(
                raw.report.max_stuck_deals,
                "report.max_stuck_deals",
                10,
                0..=MAX_LIST_LENGTH,
                "deals",
            )?,
            max_stuck_deals_department: self.bounded(
                raw.report.max_stuck_deals_department,
                "report.max_stuck_deals_department",
                20,
                0..=MAX_LIST_LENGTH,
                "deals",
            )?,
            definitions_page: raw.report.definitions_page.unwrap_or(true),
        };
        let d = raw.daemon;
        let daemon = DaemonConfig {
            catch_up_hours: self.bounded(
                d.catch_up_hours,
                "daemon.catch_up_hours",
                72,
                0..=MAX_CATCH_UP_HOURS,
                "hours",
            )?,
            max_attempts: self.bounded(d.max_attempts, "daemon.max_attempts", 5, 1..=100, "attempts")?,
            retry_initial_secs: self.bounded(
                d.retry_initial_secs,
                "daemon.retry_initial_secs",
                30,
                0..=86_400,
                "seconds",
            )?,
            retry_max_secs: self.bounded(d.retry_max_secs, "daemon.retry_max_secs", 1800, 0..=86_400, "seconds")?,
        };
        let telegram = raw.telegram.map(|t| self.telegram(t)).transpose()?;
        let mut jobs: Vec<JobConfig> = Vec::new();
        for job in raw.job {
            let span = job.span();
            let job = self.job(job.into_inner())?;
            if jobs.iter().any(|j| j.name == job.name) {
                return Err(self.err(span, "job.name", format!("job {:?} is defined twice", job.name)));
            }
            self.job_channels(&job, span, &crm, telegram.as_ref())?;
            jobs.push(job);
        }
        let targets = Targets {
            default: self.period_targets(raw.targets.default, "targets.default")?,
            department: self.period_targets(raw.targets.department, "targets.department")?,
            managers: raw
                .targets
                .managers
                .into_iter()
                .map(|(id, t)| {
                    let key = format!("targets.managers.{:?}", id.get_ref());
                    let parsed = id
                        .get_ref()
                        .parse::<Id>()
                        .map_err(|_| self.err(id.span(), &key, "expected a Bitrix24 user ID such as \"17\""))?;
                    Ok((parsed, self.period_targets(t, &key)?))
                })
                .collect::<Result<_, ConfigError>>()?,
        };
        let calendar = self.calendar(raw.calendar)?;
        let alerts = self.alerts(raw.alert, &jobs, &targets, &crm, telegram.as_ref())?;
        Ok(Config {
            source_name: self.name.to_owned(),
            timezone,
            language,
            state_dir: PathBuf::from(raw.state_dir.unwrap_or_else(|| "state".to_owned())),
            crm,
            mail,
            report,
            daemon,
            jobs,
            targets,
            telegram,
            calendar,
            alerts,
        })
    }

    /// A number key: `default` when absent, else a value within `range` (which leaves out
    /// NaN and the infinities); `unit` says what it counts, for the message.
    pub(super) fn bounded<T>(
        &self,
        value: Option<Spanned<T>>,
        key: &str,
        default: T,
        range: RangeInclusive<T>,
        unit: &str,
    ) -> Result<T, ConfigError>
    where
        T: PartialOrd + Copy + fmt::Display,
    {
        let Some(v) = value else { return Ok(default) };
        if range.contains(v.get_ref()) {
            return Ok(*v.get_ref());
        }
        let message = format!("must be {} to {} ({unit}), got {}", range.start(), range.end(), v.get_ref());
        Err(self.err(v.span(), key, message))
    }

    pub(super) fn period_targets(&self, raw: RawPeriodTargets, prefix: &str) -> Result<PeriodTargets, ConfigError> {
        let set = |m: BTreeMap<Spanned<String>, f64>, kind: &str| -> Result<TargetSet, ConfigError> {
            m.into_iter()
                .map(|(k, v)| {
                    let key = format!("{prefix}.{kind}.{}", k.get_ref());
                    let Some(kpi) = Kpi::from_key(k.get_ref()) else {
                        return Err(self.err(
                            k.span(),
                            &key,
                            format!("unknown KPI {:?} (see docs/kpi.md)", k.get_ref()),
                        ));
                    };
                    if !v.is_finite() || v < 0.0 {
                        return Err(self.err(k.span(), &key, "a target must be a number >= 0"));
                    }
                    Ok((kpi, v))
                })
                .collect()
        };
        Ok(PeriodTargets { week: set(raw.week, "week")?, month: set(raw.month, "month")? })
    }
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, column)
}

/// The bare key at `offset`, if the text there looks like one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let rest = text.get(offset..)?;
    let key: String =
        rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-' || *c == '.').collect();
    let after = rest[key.len()..].trim_start();
    if !key.is_empty() && (after.starts_with('=') || after.starts_with(']')) {
        return Some(key);
    }
    // Else name the key of the line the span is on (`key = <bad value>`).
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = &text[line_start..];
    let (k, _) = line.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && !k.contains('\n')).then(|| k.to_owned())
}
