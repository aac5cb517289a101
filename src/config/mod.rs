//! The configuration: one TOML file (docs/configuration.md) read once into an
//! immutable [`Config`].
//!
//! Unknown keys are errors, and every error names the file, the line and the key, so an
//! admin can fix it without reading code. Secrets come inline, from an environment variable
//! (`*_env`), a file (`*_file`) or a systemd credential (`*_credential`, a file in
//! `$CREDENTIALS_DIRECTORY`). Reading the config does not read them: a [`SecretRef`] says
//! where one is and is resolved by the code that uses it, so `status` and `check --offline`
//! run without any secret present; a missing one is still a config error naming file, line
//! and key. They are never printed: [`Secret`] has no `Display` and its `Debug` is redacted. Relative paths are relative to the working
//! directory, as on any command line; the systemd unit sets that directory.

mod alerts;
mod channels;
mod jobs;
mod parse;
mod secrets;
mod sections;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use chrono_tz::Tz;

use crate::domain::{Calendar, Id, Scope};
use crate::kpi::{Kpi, KpiSettings, Targets};
use crate::locale::Language;

use parse::{Ctx, RawConfig};

pub use alerts::{AlertConfig, AlertRule, MAX_SILENCE_DAYS, pace_kpi_ok};
pub use channels::{Channel, TELEGRAM_API_URL, TelegramConfig, check_api_url, is_dialog_id, is_telegram_chat_id};
pub use jobs::{JobConfig, PeriodRule, ReportKind, parse_cron};
pub use secrets::{CREDENTIALS_DIRECTORY, Secret, SecretRef};
pub use sections::check_webhook_url;

/// The config used when `--config` is not given and `config/salespulse.toml` does not exist:
/// the demo portal with mail into `outbox/`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/salespulse.toml");

/// The name an embedded config is reported under in errors.
pub const EMBEDDED_NAME: &str = "<embedded config/salespulse.toml>";

/// The most rows `report.max_stuck_deals*` may ask a PDF and an e-mail to list; the
/// report data holds every row anyway.
pub const MAX_LIST_LENGTH: usize = 1000;

/// A config that could not be read. The message names file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config {path} ({source})")]
    Io { path: String, source: std::io::Error },
    #[error("failed to read config {file}:{line}:{column} (key `{key}`: {message})")]
    Invalid { file: String, line: usize, column: usize, key: String, message: String },
}

/// The whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it was read from (or [`EMBEDDED_NAME`]).
    pub source_name: String,
    pub timezone: Tz,
    pub language: Language,
    pub state_dir: PathBuf,
    pub crm: CrmConfig,
    pub mail: MailConfig,
    pub report: ReportConfig,
    pub daemon: DaemonConfig,
    pub jobs: Vec<JobConfig>,
    pub targets: Targets,
    /// `[telegram]`, when a job sends through Telegram.
    pub telegram: Option<TelegramConfig>,
    /// `[calendar]`: working days and holidays, for alerts.
    pub calendar: Calendar,
    /// `[[alert]]`.
    pub alerts: Vec<AlertConfig>,
}

/// Where CRM data comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum CrmSourceKind {
    /// A real portal through an incoming webhook.
    Bitrix24 { webhook_url: SecretRef },
    /// The built-in demo portal, served by the Bitrix24 emulator on loopback.
    Demo,
}

/// `[crm]`.
#[derive(Clone, Debug)]
pub struct CrmConfig {
    pub source: CrmSourceKind,
    /// Sales departments (`UF_DEPARTMENT`).
    pub departments: Vec<Id>,
    /// Managers named one by one, in addition to the departments.
    pub managers: Vec<Id>,
    pub include_subdepartments: bool,
    /// A numeric `UF_CRM_*` deal field holding customer satisfaction.
    pub satisfaction_field: Option<String>,
    /// Values outside `[min, max]` are no value.
    pub satisfaction_scale: (f64, f64),
    /// Overrides the portal's base currency.
    pub base_currency: Option<String>,
    pub stuck_after_days: f64,
    /// The client's leaky bucket: requests per second it drains (Bitrix24: 2, Enterprise 5).
    pub rate_limit_per_sec: f64,
    /// The bucket's size (Bitrix24: 50, Enterprise 250).
    pub rate_limit_burst: u32,
    /// Per-request timeout.
    pub timeout_secs: u64,
    /// Retries of one request after a transient failure, with backoff (default 8); the
    /// daemon's own retries of the whole job (`[daemon]`) come on top.
    pub max_retries: u32,
    /// The portal's operating-time limit per method within ten minutes (Bitrix24 cloud:
    /// 480 s); the client keeps under it.
    pub operating_limit_secs: u64,
    /// Keep fetched records in `state_dir/crm-cache.sqlite3` and ask the portal only for
    /// changes (`crm::bitrix24::cached`). Default on.
    pub cache: bool,
    /// List every cached id against the portal at least this often (days; default 28).
    /// Deletions are caught on every run by counts; this is the backstop.
    pub reconcile_days: u32,
}

impl CrmConfig {
    /// Who is in scope: the departments and managers named.
    pub fn scope(&self) -> Scope {
        Scope {
            departments: self.departments.clone(),
            managers: self.managers.clone(),
            include_subdepartments: self.include_subdepartments,
        }
    }
}

/// How mail leaves.
#[derive(Clone, Debug, PartialEq)]
pub enum MailTransportKind {
    Smtp {
        host: String,
        port: u16,
        tls: TlsMode,
        username: Option<String>,
        password: Option<SecretRef>,
    },
    /// Writes each message as an `.eml` file into the directory.
    Outbox {
        dir: PathBuf,
    },
}

/// `tls` of `[mail]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS (port 587).
    Starttls,
    /// Implicit TLS from the first byte (port 465).
    Tls,
    /// No TLS: loopback relays only.
    None,
}

/// `[mail]`.
#[derive(Clone, Debug)]
pub struct MailConfig {
    pub transport: MailTransportKind,
    /// `From:`, e.g. `Отчёты продаж <reports@example.ru>`.
    pub from: String,
    /// `Reply-To:` of every message, for replies to reach a person rather than a robot's
    /// mailbox; none by default.
    pub reply_to: Option<String>,
    /// Who hears about failures.
    pub admin_to: Vec<String>,
    /// An attachment larger than this after base64 is left out and the admin is told.
    pub max_attachment_bytes: u64,
    pub timeout_secs: u64,
    /// An extra CA certificate (PEM) to trust for the SMTP server, for a relay with a
    /// private CA; the system roots are trusted as well.
    pub ca_file: Option<PathBuf>,
}

/// `[report]`: presentation choices.
#[derive(Clone, Debug)]
pub struct ReportConfig {
    /// Show each manager their rank in the team (some teams don't want ranks).
    pub show_ranks: bool,
    /// The KPI the department report sorts managers by (best first).
    pub sort_managers_by: Kpi,
    /// How many periods the trend charts show.
    pub trend_periods: usize,
    /// How many stuck deals a scorecard's PDF and e-mail list, longest idle first; the
    /// report data holds all, and the PDF and e-mail say how many more there are.
    pub max_stuck_deals: usize,
    /// The same for the department report.
    pub max_stuck_deals_department: usize,
    /// The department report ends with a page "How the numbers are computed".
    pub definitions_page: bool,
}

/// The largest `catch_up_hours`: a slot more than a year old is not caught up.
pub const MAX_CATCH_UP_HOURS: u64 = 366 * 24;

/// `[daemon]`.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// A slot missed while the daemon was down runs at start-up unless older than this.
    pub catch_up_hours: u64,
    /// Attempts for a transient failure before a row is marked failed.
    pub max_attempts: u32,
    /// First retry delay; doubles each attempt up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
}

impl DaemonConfig {
    /// `catch_up_hours` as a duration, saturating rather than overflowing (validation keeps
    /// it at most [`MAX_CATCH_UP_HOURS`]; a `DaemonConfig` built in code is not validated).
    pub fn catch_up_horizon(&self) -> chrono::Duration {
        i64::try_from(self.catch_up_hours).ok().and_then(chrono::Duration::try_hours).unwrap_or(chrono::Duration::MAX)
    }
}

impl Config {
    /// Reads the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The embedded default (demo portal, outbox mail).
    pub fn embedded() -> Config {
        Config::parse(EMBEDDED_DEFAULT, EMBEDDED_NAME).expect("the embedded config is tested to parse")
    }

    /// Parses config text; `name` is used in error messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let ctx = Ctx { text, name };
        let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
        ctx.validate(raw)
    }

    /// What the KPI pass needs from this config; a job's language, when it has one, may
    /// replace `language` afterwards.
    pub fn kpi_settings(&self) -> KpiSettings {
        KpiSettings {
            scope: self.crm.scope(),
            targets: self.targets.clone(),
            base_currency: self.crm.base_currency.clone(),
            stuck_after_days: self.crm.stuck_after_days,
            satisfaction_scale: self.crm.satisfaction_scale,
            trend_periods: self.report.trend_periods,
            show_ranks: self.report.show_ranks,
            sort_managers_by: self.report.sort_managers_by,
            max_stuck_deals: self.report.max_stuck_deals,
            max_stuck_deals_department: self.report.max_stuck_deals_department,
            definitions_page: self.report.definitions_page,
            language: self.language,
        }
    }

    /// Whether any job or alert sends through `channel`.
    pub fn uses_channel(&self, channel: Channel) -> bool {
        self.jobs.iter().any(|j| j.channels.contains(&channel))
            || self.alerts.iter().any(|a| a.channels.contains(&channel))
    }

    pub fn alert(&self, name: &str) -> Option<&AlertConfig> {
        self.alerts.iter().find(|a| a.name == name)
    }

    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The secrets the config names, by key: what `check --offline` lists.
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut found = Vec::new();
        if let CrmSourceKind::Bitrix24 { webhook_url } = &self.crm.source {
            found.push(("crm.webhook_url", webhook_url));
        }
        if let MailTransportKind::Smtp { password: Some(password), .. } = &self.mail.transport {
            found.push(("mail.password", password));
        }
        if let Some(telegram) = &self.telegram {
            found.push(("telegram.bot_token", &telegram.bot_token));
        }
        found
    }

    /// Reads the secrets a command will use (the CRM's, the mail server's) now, so that one
    /// that is missing stops it at start with a config error rather than midway.
    pub fn require_secrets(&self, crm: bool, mail: bool) -> Result<(), ConfigError> {
        if crm && let CrmSourceKind::Bitrix24 { webhook_url } = &self.crm.source {
            webhook_url.resolve_checked(check_webhook_url)?;
        }
        if mail && let MailTransportKind::Smtp { password: Some(password), .. } = &self.mail.transport {
            password.resolve()?;
        }
        // The bot token is a delivery secret, like the mail password.
        if mail && let Some(telegram) = &self.telegram {
            telegram.bot_token.resolve()?;
        }
        Ok(())
    }
}
