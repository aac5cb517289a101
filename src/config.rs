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

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono_tz::Tz;
use serde::Deserialize;
use toml::Spanned;

use crate::domain::{Id, PeriodKind};
use crate::endpoint;
use crate::locale::Language;

/// The config used when `--config` is not given and `config/salespulse.toml` does not exist:
/// the demo portal with mail into `outbox/`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/salespulse.toml");

/// The name an embedded config is reported under in errors.
pub const EMBEDDED_NAME: &str = "<embedded config/salespulse.toml>";

/// KPI keys of docs/kpi.md that targets may name.
pub const KPI_KEYS: [&str; 16] = [
    "deals_won",
    "revenue",
    "avg_deal_value",
    "deals_lost",
    "win_rate",
    "leads_total",
    "leads_converted",
    "lead_conversion",
    "cycle_days_median",
    "cycle_days_mean",
    "emails_sent",
    "calls_made",
    "csat",
    "csat_responses",
    "repeat_share",
    "open_pipeline_value",
];

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

/// A secret value: printable only on purpose, through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must send it (an HTTP request, SMTP AUTH).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with this secret masked in every form a server may echo it in: as it is,
    /// percent-encoded and base64-encoded ([`crate::text::scrub`]). Every error text that
    /// may hold a server's words goes through this before it is shown or stored.
    pub fn scrub(&self, text: &str) -> String {
        crate::text::scrub(text, &self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret is, as the config names it; read by [`SecretRef::resolve`] only when a
/// command needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    source: SecretSource,
    /// The config file, and the line, column and key that named the secret.
    file: String,
    line: usize,
    column: usize,
    key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SecretSource {
    Inline(Secret),
    Env(String),
    File(PathBuf),
    /// A file of `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`).
    Credential(String),
}

/// The variable systemd sets to the directory of a service's credentials.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

impl From<Secret> for SecretRef {
    /// A secret given in code (tests, the demo portal): there is nothing to read.
    fn from(secret: Secret) -> SecretRef {
        SecretRef { source: SecretSource::Inline(secret), file: String::new(), line: 0, column: 0, key: String::new() }
    }
}

impl SecretRef {
    /// Reads the secret where the config says it is. The error names the config file, line
    /// and key, and never the value.
    pub fn resolve(&self) -> Result<Secret, ConfigError> {
        self.with_credentials_dir(std::env::var_os(CREDENTIALS_DIRECTORY).as_deref())
    }

    /// [`SecretRef::resolve`] with the credentials directory given.
    fn with_credentials_dir(&self, credentials: Option<&std::ffi::OsStr>) -> Result<Secret, ConfigError> {
        let read_file = |path: &Path| match std::fs::read_to_string(path) {
            Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
            Ok(_) => Err(self.err(format!("{} is empty", path.display()))),
            Err(e) => Err(self.err(format!("cannot read {}: {e}", path.display()))),
        };
        match &self.source {
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret(v.trim().to_owned())),
                _ => Err(self.err(format!("environment variable {name} is not set"))),
            },
            SecretSource::File(path) => read_file(path),
            SecretSource::Credential(name) => match credentials {
                Some(dir) if !dir.is_empty() => read_file(&Path::new(dir).join(name)),
                _ => Err(self.err(format!(
                    "credential {name}: ${CREDENTIALS_DIRECTORY} is not set (systemd sets it for a service with \
                     LoadCredential=; by hand, set it to the folder holding the file {name})"
                ))),
            },
        }
    }

    /// [`SecretRef::resolve`], then `check` on the value; its complaint is a config error too.
    pub fn resolve_checked(&self, check: impl Fn(&str) -> Result<(), String>) -> Result<Secret, ConfigError> {
        let secret = self.resolve()?;
        check(secret.expose()).map_err(|m| self.err(m))?;
        Ok(secret)
    }

    /// Where the secret is read from, for `check --offline`; never the value.
    pub fn describe(&self) -> String {
        match &self.source {
            SecretSource::Inline(_) => "given inline".to_owned(),
            SecretSource::Env(name) => format!("from environment variable {name}"),
            SecretSource::File(path) => format!("from file {}", path.display()),
            SecretSource::Credential(name) => format!("from systemd credential {name}"),
        }
    }

    fn err(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            key: self.key.clone(),
            message,
        }
    }
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
    /// The KPI the department report sorts managers by (descending).
    pub sort_managers_by: String,
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
}

/// KPI key to target value.
pub type TargetSet = BTreeMap<String, f64>;

/// Targets for weeks and months.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeriodTargets {
    pub week: TargetSet,
    pub month: TargetSet,
}

impl PeriodTargets {
    pub fn for_kind(&self, kind: PeriodKind) -> Option<&TargetSet> {
        match kind {
            PeriodKind::Week => Some(&self.week),
            PeriodKind::Month => Some(&self.month),
            PeriodKind::Custom => None,
        }
    }
}

/// `[targets]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Targets {
    pub default: PeriodTargets,
    pub managers: BTreeMap<Id, PeriodTargets>,
    pub department: PeriodTargets,
}

impl Targets {
    /// A manager's target for a KPI: their own, else the default, else none (docs/kpi.md).
    pub fn manager(&self, manager: Id, kind: PeriodKind, kpi: &str) -> Option<f64> {
        let own = self.managers.get(&manager).and_then(|t| t.for_kind(kind)).and_then(|s| s.get(kpi));
        own.or_else(|| self.default.for_kind(kind).and_then(|s| s.get(kpi))).copied()
    }

    /// The department's own target for a KPI, if the config gives one.
    pub fn department(&self, kind: PeriodKind, kpi: &str) -> Option<f64> {
        self.department.for_kind(kind).and_then(|s| s.get(kpi)).copied()
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
        Ok(())
    }
}

// ---- the TOML as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    timezone: Option<Spanned<String>>,
    language: Option<Spanned<String>>,
    state_dir: Option<String>,
    crm: Spanned<RawCrm>,
    mail: Spanned<RawMail>,
    #[serde(default)]
    report: RawReport,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    job: Vec<Spanned<RawJob>>,
    #[serde(default)]
    targets: RawTargets,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCrm {
    source: Spanned<String>,
    webhook_url: Option<String>,
    webhook_url_env: Option<Spanned<String>>,
    webhook_url_file: Option<Spanned<String>>,
    webhook_url_credential: Option<Spanned<String>>,
    #[serde(default)]
    departments: Vec<Id>,
    #[serde(default)]
    managers: Vec<Id>,
    include_subdepartments: Option<bool>,
    satisfaction_field: Option<String>,
    satisfaction_scale: Option<Spanned<[f64; 2]>>,
    base_currency: Option<String>,
    stuck_after_days: Option<Spanned<f64>>,
    rate_limit_per_sec: Option<Spanned<f64>>,
    rate_limit_burst: Option<Spanned<u32>>,
    timeout_secs: Option<Spanned<u64>>,
    max_retries: Option<Spanned<u32>>,
    operating_limit_secs: Option<Spanned<u64>>,
    cache: Option<bool>,
    reconcile_days: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMail {
    transport: Spanned<String>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    tls: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    password_credential: Option<Spanned<String>>,
    from: Spanned<String>,
    reply_to: Option<Spanned<String>>,
    #[serde(default)]
    admin_to: Vec<String>,
    outbox_dir: Option<String>,
    max_attachment_bytes: Option<u64>,
    timeout_secs: Option<Spanned<u64>>,
    ca_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReport {
    show_ranks: Option<bool>,
    sort_managers_by: Option<Spanned<String>>,
    trend_periods: Option<Spanned<usize>>,
    max_stuck_deals: Option<Spanned<usize>>,
    max_stuck_deals_department: Option<Spanned<usize>>,
    definitions_page: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    catch_up_hours: Option<Spanned<u64>>,
    max_attempts: Option<Spanned<u32>>,
    retry_initial_secs: Option<Spanned<u64>>,
    retry_max_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Spanned<String>,
    report: Spanned<String>,
    schedule: Spanned<String>,
    period: Spanned<String>,
    #[serde(default)]
    recipients: Vec<String>,
    template: Option<String>,
    subject: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTargets {
    #[serde(default)]
    default: RawPeriodTargets,
    #[serde(default)]
    managers: BTreeMap<Spanned<String>, RawPeriodTargets>,
    #[serde(default)]
    department: RawPeriodTargets,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPeriodTargets {
    #[serde(default)]
    week: BTreeMap<Spanned<String>, f64>,
    #[serde(default)]
    month: BTreeMap<Spanned<String>, f64>,
}

/// The text being validated, for turning spans into lines.
struct Ctx<'a> {
    text: &'a str,
    name: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.text, span.start);
        ConfigError::Invalid { file: self.name.to_owned(), line, column, key: key.to_owned(), message: message.into() }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        // The key is the text under the span when it looks like one (unknown field, wrong
        // type of a value: toml points at the key or the value).
        let key = key_at(self.text, span.start).unwrap_or_else(|| "?".to_owned());
        self.err(span, &key, message)
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
                None => "revenue".to_owned(),
                Some(k) if KPI_KEYS.contains(&k.get_ref().as_str()) => k.into_inner(),
                Some(k) => {
                    return Err(self.err(
                        k.span(),
                        "report.sort_managers_by",
                        format!("unknown KPI {:?}", k.get_ref()),
                    ));
                }
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
        let mut jobs: Vec<JobConfig> = Vec::new();
        for job in raw.job {
            let span = job.span();
            let job = self.job(job.into_inner())?;
            if jobs.iter().any(|j| j.name == job.name) {
                return Err(self.err(span, "job.name", format!("job {:?} is defined twice", job.name)));
            }
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
        })
    }

    fn crm(&self, raw: Spanned<RawCrm>) -> Result<CrmConfig, ConfigError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let source = match raw.source.get_ref().as_str() {
            "demo" => CrmSourceKind::Demo,
            "bitrix24" => {
                let given = SecretForms {
                    inline: raw.webhook_url,
                    env: raw.webhook_url_env,
                    file: raw.webhook_url_file,
                    credential: raw.webhook_url_credential,
                };
                let url = self.secret(given, "crm.webhook_url", span.clone())?.ok_or_else(|| {
                    self.err(
                        span.clone(),
                        "crm.webhook_url",
                        "crm.source = \"bitrix24\" needs webhook_url, webhook_url_env, webhook_url_file or \
                         webhook_url_credential",
                    )
                })?;
                if let SecretSource::Inline(inline) = &url.source {
                    check_webhook_url(inline.expose()).map_err(|m| self.err(span.clone(), "crm.webhook_url", m))?;
                }
                CrmSourceKind::Bitrix24 { webhook_url: url }
            }
            other => {
                return Err(self.err(
                    raw.source.span(),
                    "crm.source",
                    format!("expected \"bitrix24\" or \"demo\", got {other:?}"),
                ));
            }
        };
        if matches!(source, CrmSourceKind::Bitrix24 { .. }) && raw.departments.is_empty() && raw.managers.is_empty() {
            return Err(self.err(
                span,
                "crm.departments",
                "name the sales departments (departments = [3]) or the managers (managers = [17, 21])",
            ));
        }
        let satisfaction_scale = match raw.satisfaction_scale {
            None => (1.0, 5.0),
            Some(s) => {
                let [lo, hi] = *s.get_ref();
                if !lo.is_finite() || !hi.is_finite() || lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
                    return Err(self.err(s.span(), "crm.satisfaction_scale", "expected [min, max] with min < max"));
                }
                (lo, hi)
            }
        };
        if let Some(f) = &raw.satisfaction_field
            && !f.starts_with("UF_CRM_")
        {
            return Err(self.err(
                span,
                "crm.satisfaction_field",
                format!("expected a deal user field code such as UF_CRM_CSAT, got {f:?}"),
            ));
        }
        Ok(CrmConfig {
            source,
            departments: raw.departments,
            managers: raw.managers,
            include_subdepartments: raw.include_subdepartments.unwrap_or(true),
            satisfaction_field: raw.satisfaction_field,
            satisfaction_scale,
            base_currency: raw.base_currency,
            stuck_after_days: self.bounded(raw.stuck_after_days, "crm.stuck_after_days", 14.0, 0.0..=3650.0, "days")?,
            rate_limit_per_sec: self.bounded(
                raw.rate_limit_per_sec,
                "crm.rate_limit_per_sec",
                2.0,
                0.01..=1_000_000.0,
                "requests per second",
            )?,
            rate_limit_burst: self.bounded(
                raw.rate_limit_burst,
                "crm.rate_limit_burst",
                50,
                1..=1_000_000,
                "requests",
            )?,
            timeout_secs: self.bounded(raw.timeout_secs, "crm.timeout_secs", 60, 1..=3600, "seconds")?,
            max_retries: self.bounded(raw.max_retries, "crm.max_retries", 8, 0..=100, "retries")?,
            // The portal counts operating time per method within ten minutes.
            operating_limit_secs: self.bounded(
                raw.operating_limit_secs,
                "crm.operating_limit_secs",
                480,
                1..=600,
                "seconds",
            )?,
            cache: raw.cache.unwrap_or(true),
            reconcile_days: self.bounded(raw.reconcile_days, "crm.reconcile_days", 28, 1..=3650, "days")?,
        })
    }

    fn mail(&self, raw: Spanned<RawMail>) -> Result<MailConfig, ConfigError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let transport = match raw.transport.get_ref().as_str() {
            "outbox" => {
                MailTransportKind::Outbox { dir: PathBuf::from(raw.outbox_dir.unwrap_or_else(|| "outbox".to_owned())) }
            }
            "smtp" => {
                let host =
                    raw.host.ok_or_else(|| self.err(span.clone(), "mail.host", "transport = \"smtp\" needs host"))?;
                let tls = match raw.tls.as_ref().map(|t| t.get_ref().as_str()) {
                    None | Some("starttls") => TlsMode::Starttls,
                    Some("tls") => TlsMode::Tls,
                    Some("none") => TlsMode::None,
                    Some(other) => {
                        let t = raw.tls.as_ref().expect("matched Some");
                        return Err(self.err(
                            t.span(),
                            "mail.tls",
                            format!("expected \"starttls\", \"tls\" or \"none\", got {other:?}"),
                        ));
                    }
                };
                if tls == TlsMode::None && !endpoint::is_loopback_host(host.get_ref()) {
                    return Err(self.err(
                        host.span(),
                        "mail.host",
                        "tls = \"none\" is allowed only to a loopback address (a local relay)",
                    ));
                }
                let default_port = match tls {
                    TlsMode::Starttls => 587,
                    TlsMode::Tls => 465,
                    TlsMode::None => 25,
                };
                let port = self.bounded(raw.port, "mail.port", default_port, 1..=u16::MAX, "a TCP port")?;
                let given = SecretForms {
                    inline: raw.password,
                    env: raw.password_env,
                    file: raw.password_file,
                    credential: raw.password_credential,
                };
                let password = self.secret(given, "mail.password", span.clone())?;
                MailTransportKind::Smtp { host: host.into_inner(), port, tls, username: raw.username, password }
            }
            other => {
                return Err(self.err(
                    raw.transport.span(),
                    "mail.transport",
                    format!("expected \"smtp\" or \"outbox\", got {other:?}"),
                ));
            }
        };
        if raw.from.get_ref().parse::<lettre::message::Mailbox>().is_err() {
            return Err(self.err(
                raw.from.span(),
                "mail.from",
                format!("not an e-mail address: {:?}", raw.from.get_ref()),
            ));
        }
        if let Some(r) = &raw.reply_to
            && r.get_ref().parse::<lettre::message::Mailbox>().is_err()
        {
            return Err(self.err(r.span(), "mail.reply_to", format!("not an e-mail address: {:?}", r.get_ref())));
        }
        for a in &raw.admin_to {
            if a.parse::<lettre::message::Mailbox>().is_err() {
                return Err(self.err(span.clone(), "mail.admin_to", format!("not an e-mail address: {a:?}")));
            }
        }
        Ok(MailConfig {
            transport,
            from: raw.from.into_inner(),
            reply_to: raw.reply_to.map(Spanned::into_inner),
            admin_to: raw.admin_to,
            max_attachment_bytes: raw.max_attachment_bytes.unwrap_or(10 * 1024 * 1024),
            timeout_secs: self.bounded(raw.timeout_secs, "mail.timeout_secs", 60, 1..=3600, "seconds")?,
            ca_file: match raw.ca_file {
                None => None,
                Some(f) if Path::new(f.get_ref()).is_file() => Some(PathBuf::from(f.into_inner())),
                Some(f) => return Err(self.err(f.span(), "mail.ca_file", format!("cannot read {}", f.get_ref()))),
            },
        })
    }

    fn job(&self, raw: RawJob) -> Result<JobConfig, ConfigError> {
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
        Ok(JobConfig {
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

    /// A number key: `default` when absent, else a value within `range` (which leaves out
    /// NaN and the infinities); `unit` says what it counts, for the message.
    fn bounded<T>(
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

    fn period_targets(&self, raw: RawPeriodTargets, prefix: &str) -> Result<PeriodTargets, ConfigError> {
        let set = |m: BTreeMap<Spanned<String>, f64>, kind: &str| -> Result<TargetSet, ConfigError> {
            m.into_iter()
                .map(|(k, v)| {
                    let key = format!("{prefix}.{kind}.{}", k.get_ref());
                    if !KPI_KEYS.contains(&k.get_ref().as_str()) {
                        return Err(self.err(
                            k.span(),
                            &key,
                            format!("unknown KPI {:?} (see docs/kpi.md)", k.get_ref()),
                        ));
                    }
                    if !v.is_finite() || v < 0.0 {
                        return Err(self.err(k.span(), &key, "a target must be a number >= 0"));
                    }
                    Ok((k.into_inner(), v))
                })
                .collect()
        };
        Ok(PeriodTargets { week: set(raw.week, "week")?, month: set(raw.month, "month")? })
    }

    /// Where one secret is, from its inline, `_env`, `_file` or `_credential` form; at most
    /// one may be given. Nothing is read here ([`SecretRef::resolve`]).
    fn secret(&self, given: SecretForms, key: &str, section: Range<usize>) -> Result<Option<SecretRef>, ConfigError> {
        let SecretForms { inline, env, file, credential } = given;
        let count = inline.is_some() as u8 + env.is_some() as u8 + file.is_some() as u8 + credential.is_some() as u8;
        if count > 1 {
            return Err(self.err(
                section,
                key,
                format!("give only one of {key}, {key}_env, {key}_file, {key}_credential"),
            ));
        }
        let at = |span: Range<usize>, key: String, source: SecretSource| {
            let (line, column) = line_col(self.text, span.start);
            SecretRef { source, file: self.name.to_owned(), line, column, key }
        };
        if let Some(v) = inline {
            return Ok(Some(at(section, key.to_owned(), SecretSource::Inline(Secret(v)))));
        }
        let (form, value) = match (env, file, credential) {
            (Some(v), _, _) => ("env", v),
            (_, Some(v), _) => ("file", v),
            (_, _, Some(v)) => ("credential", v),
            _ => return Ok(None),
        };
        let form_key = format!("{key}_{form}");
        let name = value.get_ref().trim();
        let source = match form {
            "env" if !name.is_empty() => SecretSource::Env(name.to_owned()),
            "file" if !name.is_empty() => SecretSource::File(PathBuf::from(name)),
            "credential" if !name.is_empty() && !name.contains('/') && name != "." && name != ".." => {
                SecretSource::Credential(name.to_owned())
            }
            "credential" => {
                return Err(self.err(
                    value.span(),
                    &form_key,
                    "expected the name of a credential (LoadCredential=NAME:...)",
                ));
            }
            _ => return Err(self.err(value.span(), &form_key, "must not be empty")),
        };
        Ok(Some(at(value.span(), form_key, source)))
    }
}

/// The forms a secret may be given in; at most one is.
struct SecretForms {
    inline: Option<String>,
    env: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    credential: Option<Spanned<String>>,
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

/// The webhook check the Bitrix24 client makes ([`endpoint::webhook_url`]): https (plain
/// http only to a loopback host, a local test portal), ending in `/rest/<user id>/<code>/`.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    endpoint::webhook_url(url).map(|_| ())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml")
    }

    const MINIMAL: &str = r#"
[crm]
source = "demo"
[mail]
transport = "outbox"
from = "reports@example.ru"
"#;

    #[test]
    fn every_file_in_config_parses() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                // Without any secret present: they are read when used.
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
        let c = Config::embedded();
        assert_eq!(c.crm.source, CrmSourceKind::Demo);
        assert!(c.job("manager-weekly").is_some() && c.job("department-monthly").is_some());
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.timezone, chrono_tz::Europe::Moscow);
        assert_eq!(c.language, Language::Ru);
        assert_eq!(c.crm.stuck_after_days, 14.0);
        assert_eq!(c.crm.satisfaction_scale, (1.0, 5.0));
    }

    fn invalid(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(ConfigError::Invalid { line, key, message, file, .. }) => {
                assert_eq!(file, "test.toml");
                (line, key, message)
            }
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let (line, key, _) = invalid(&format!("{MINIMAL}colour = \"red\"\n").replace("[mail]", "tipo = 1\n[mail]"));
        assert_eq!((line, key.as_str()), (4, "tipo"));
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let (line, key, msg) =
            invalid(&MINIMAL.replace("source = \"demo\"", "source = \"demo\"\nstuck_after_days = \"two weeks\""));
        assert_eq!((line, key.as_str()), (4, "stuck_after_days"), "{msg}");
    }

    #[test]
    fn bad_time_zone_and_cron() {
        let (line, key, _) = invalid(&format!("timezone = \"Europe/Atlantis\"\n{MINIMAL}"));
        assert_eq!((line, key.as_str()), (1, "timezone"));
        let job =
            "[[job]]\nname = \"w\"\nreport = \"manager\"\nschedule = \"0 8 * * MON *\"\nperiod = \"previous-week\"\n";
        let (line, key, msg) = invalid(&format!("{MINIMAL}{job}"));
        assert_eq!((line, key.as_str()), (10, "job.schedule"), "{msg}");
        let bad_hour = job.replace("0 8 * * MON *", "0 25 * * MON");
        let (_, key, _) = invalid(&format!("{MINIMAL}{bad_hour}"));
        assert_eq!(key, "job.schedule");
        let never = job.replace("0 8 * * MON *", "0 0 30 2 *");
        let (_, key, msg) = invalid(&format!("{MINIMAL}{never}"));
        assert_eq!(key, "job.schedule");
        assert!(msg.contains("never fires"), "{msg}");
        assert!(parse_cron("0 9 29 2 *").is_ok(), "29 February fires in leap years");
    }

    #[test]
    fn missing_secret_is_named_and_not_printed() {
        let text = r#"
[crm]
source = "bitrix24"
webhook_url_env = "SALESPULSE_TEST_UNSET_VARIABLE"
departments = [3]
[mail]
transport = "outbox"
from = "reports@example.ru"
"#;
        // Reading the config reads no secret; the command that needs it does.
        let c = parse(text).unwrap();
        c.require_secrets(false, true).unwrap();
        match c.require_secrets(true, false) {
            Err(ConfigError::Invalid { file, line, key, message, .. }) => {
                assert_eq!((file.as_str(), line, key.as_str()), ("test.toml", 4, "crm.webhook_url_env"));
                assert!(message.contains("SALESPULSE_TEST_UNSET_VARIABLE"), "{message}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }

        let inline = text.replace(
            "webhook_url_env = \"SALESPULSE_TEST_UNSET_VARIABLE\"",
            "webhook_url = \"https://x.bitrix24.ru/rest/1/topsecret/\"",
        );
        let c = parse(&inline).unwrap();
        assert!(!format!("{c:?}").contains("topsecret"));
    }

    #[test]
    fn a_credential_is_read_from_the_credentials_directory_when_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("smtp_password"), "s3cret\n").unwrap();
        std::fs::write(dir.path().join("webhook"), "http://portal.example.ru/rest/1/x/\n").unwrap();
        let text = |url_key: &str| {
            format!(
                "[crm]\nsource = \"bitrix24\"\n{url_key}\ndepartments = [1]\n[mail]\ntransport = \"smtp\"\n\
                 host = \"smtp.example.ru\"\nusername = \"r@example.ru\"\npassword_credential = \"smtp_password\"\n\
                 from = \"a@b.ru\"\n"
            )
        };
        let c = parse(&text("webhook_url_credential = \"webhook\"")).unwrap();
        let MailTransportKind::Smtp { password: Some(password), .. } = &c.mail.transport else { panic!() };
        assert_eq!(password.describe(), "from systemd credential smtp_password");
        // Outside systemd (no $CREDENTIALS_DIRECTORY) the error says what to do.
        let no_dir = password.with_credentials_dir(None).unwrap_err().to_string();
        assert!(no_dir.contains("test.toml:9") && no_dir.contains("mail.password_credential"), "{no_dir}");
        assert!(no_dir.contains("CREDENTIALS_DIRECTORY"), "{no_dir}");
        let found = password.with_credentials_dir(Some(dir.path().as_os_str())).unwrap();
        assert_eq!(found.expose(), "s3cret");
        // A webhook read later is checked as an inline one is at load.
        let CrmSourceKind::Bitrix24 { webhook_url } = &c.crm.source else { panic!() };
        let url = webhook_url.with_credentials_dir(Some(dir.path().as_os_str())).unwrap();
        assert!(check_webhook_url(url.expose()).is_err());
        let (line, key, _) = invalid(&text("webhook_url_credential = \"../etc/passwd\""));
        assert_eq!((line, key.as_str()), (3, "crm.webhook_url_credential"));
        let (_, key, msg) = invalid(&text("webhook_url_credential = \"w\"\nwebhook_url_env = \"W\""));
        assert_eq!(key, "crm.webhook_url", "{msg}");
    }

    #[test]
    fn plain_http_and_tls_none_only_to_loopback() {
        let text = |url: &str| {
            format!(
                "[crm]\nsource = \"bitrix24\"\nwebhook_url = \"{url}\"\ndepartments = [1]\n[mail]\ntransport = \"outbox\"\nfrom = \"a@b.ru\"\n"
            )
        };
        assert!(parse(&text("http://127.0.0.1:8080/rest/1/x/")).is_ok());
        let (_, key, _) = invalid(&text("http://portal.example.ru/rest/1/x/"));
        assert_eq!(key, "crm.webhook_url");
        let smtp = |host: &str| {
            format!(
                "[crm]\nsource = \"demo\"\n[mail]\ntransport = \"smtp\"\nhost = \"{host}\"\ntls = \"none\"\nfrom = \"a@b.ru\"\n"
            )
        };
        assert!(parse(&smtp("127.0.0.1")).is_ok());
        let (line, key, _) = invalid(&smtp("smtp.example.ru"));
        assert_eq!((line, key.as_str()), (5, "mail.host"));
    }

    #[test]
    fn targets_name_known_kpis_and_manager_ids() {
        let t =
            format!("{MINIMAL}[targets.default.week]\ndeals_won = 3\n[targets.managers.\"17\".week]\ndeals_won = 5\n");
        let c = parse(&t).unwrap();
        assert_eq!(c.targets.manager(17, PeriodKind::Week, "deals_won"), Some(5.0));
        assert_eq!(c.targets.manager(18, PeriodKind::Week, "deals_won"), Some(3.0));
        assert_eq!(c.targets.manager(18, PeriodKind::Month, "deals_won"), None);
        assert_eq!(c.targets.manager(18, PeriodKind::Custom, "deals_won"), None);
        let (line, key, _) = invalid(&format!("{MINIMAL}[targets.default.week]\ndeals_wonn = 3\n"));
        assert_eq!((line, key.as_str()), (8, "targets.default.week.deals_wonn"));
    }
}
