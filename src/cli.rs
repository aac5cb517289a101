//! The command line (README.md "Commands"): `check`, `report`, `send`, `alert`, `run`, `status`.
//!
//! Exit codes: 0 success, 1 failure, 2 bad usage or bad config. Errors are printed once,
//! as a chain (`{:#}`), on standard error; logs go to standard error too, so standard output
//! carries only what a command reports (paths written, a status table).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use chrono::DateTime;
use chrono_tz::Tz;
use clap::{Parser, Subcommand};

use crate::config::{Channel, Config, ConfigError, JobConfig};
use crate::domain::{Id, Period};
use crate::pipeline::deliver::{DeliverOptions, DeliveryIssue, DeliverySummary};
use crate::pipeline::{PipelineRunner, RenderRequest, ReportBuilder, write_reports};
use crate::progress::Progress;
use crate::schedule::{self, Clock, SystemClock};
use crate::store::Store;
use crate::text::one_line;

#[derive(Parser, Debug)]
#[command(name = "salespulse", version, about = "Sales KPI reports from Bitrix24, as PDFs by e-mail")]
struct Cli {
    /// The config file [default: config/salespulse.toml, else the embedded demo config]
    #[arg(long, global = true, env = "SALESPULSE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prove the set-up: config, templates (on the demo data), the next slots; without
    /// --offline also the webhook's scopes, a CRM read and an SMTP login (nothing is sent).
    Check {
        #[arg(long)]
        offline: bool,
    },
    /// Fetch, compute and render one job's PDFs (each with its .json) into a folder; send nothing.
    Report {
        job: String,
        /// 2026-W47, 2026-11 or 2026-11-01..2026-11-15 [default: the job's period for its latest slot]
        #[arg(long)]
        period: Option<String>,
        /// Where to write [default: out]
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Bitrix24 user IDs, comma separated
        #[arg(long, value_delimiter = ',')]
        only: Vec<Id>,
        /// Preview a Typst template file instead of the job's
        #[arg(long)]
        template: Option<PathBuf>,
    },
    /// Render and deliver one job through the delivery ledger.
    Send {
        job: String,
        #[arg(long)]
        period: Option<String>,
        #[arg(long, value_delimiter = ',')]
        only: Vec<Id>,
        /// Send again to recipients who already got this job's report for this period
        #[arg(long)]
        resend: bool,
        /// Only these of the job's channels (email, bitrix24, telegram), comma separated
        #[arg(long, value_delimiter = ',')]
        channel: Vec<String>,
        /// Also write the PDFs and their .json into DIR/JOB/PERIOD/, as `report` does
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Preview an alert: what it would send to whom at a slot; sends nothing.
    Alert {
        alert: String,
        /// The slot, local time of the config's timezone: "2026-11-25 12:00" [default: the
        /// alert's latest slot]
        #[arg(long)]
        at: Option<String>,
    },
    /// The daemon: fire each job and alert on its schedule.
    Run,
    /// Each job's last and next run, and deliveries pending or failed.
    Status,
    /// Lays out PDFs for the daemon (`render_worker`): requests on stdin, PDFs on stdout.
    #[command(hide = true)]
    RenderWorker,
}

/// A failure with its exit code.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        let code = if error.downcast_ref::<ConfigError>().is_some() { 2 } else { 1 };
        Failure { code, error }
    }
}

fn usage(error: anyhow::Error) -> Failure {
    Failure { code: 2, error }
}

/// Reads the secrets a command uses before it starts: a missing one is a config error
/// (exit 2) at once. `status` and `check --offline` read none.
fn require_secrets(config: &Config, crm: bool, mail: bool) -> Result<(), Failure> {
    config.require_secrets(crm, mail).map_err(|e| usage(e.into()))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    // Every writer sets 0600 / 0700 itself (`private_fs`); the umask is the second line of
    // defence, for whatever a library might create on its own.
    crate::private_fs::restrict_umask();
    if std::env::args_os().nth(1).is_some_and(|a| a == "render-worker") {
        // Before anything else: a `systemctl stop` while a worker starts must not kill it.
        crate::render_worker::ignore_stop_signals();
    }
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run) {
        // Before the runtime's threads exist: the daemon's malloc keeps two arenas.
        crate::memory::tune_for_long_run();
    }
    // A bar on a terminal; log lines for the daemon, under systemd or into a pipe or file.
    let progress = Progress::for_command(matches!(cli.command, Command::Run | Command::RenderWorker));
    init_logging(&progress);
    if matches!(cli.command, Command::RenderWorker) {
        // No config, no runtime: the daemon that started it has read the config.
        return match crate::render_worker::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("salespulse render-worker: {e}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    match runtime.block_on(dispatch(cli, progress)) {
        Ok(code) => code,
        Err(Failure { code, error }) => {
            eprintln!("salespulse: {error:#}");
            ExitCode::from(code)
        }
    }
}

/// Logs to the journal with fields when systemd connected stderr to it, else as text on
/// stderr, above the progress bar if one is shown. `SALESPULSE_LOG` filters (`info` by
/// default).
fn init_logging(progress: &Progress) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("SALESPULSE_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(filter())
            .with(journald.with_syslog_identifier("salespulse".into()))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer({
            let progress = progress.clone();
            move || progress.stderr()
        })
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn load_config(path: Option<PathBuf>) -> Result<Config, Failure> {
    let config = match path {
        Some(p) => Config::load(&p),
        None => {
            let default = PathBuf::from("config/salespulse.toml");
            if default.exists() { Config::load(&default) } else { Ok(Config::embedded()) }
        }
    };
    config.map_err(|e| Failure { code: 2, error: e.into() })
}

async fn dispatch(cli: Cli, progress: Progress) -> Result<ExitCode, Failure> {
    let config = Arc::new(load_config(cli.config)?);
    let clock = SystemClock;
    match cli.command {
        Command::Check { offline } => check(&config, offline, &clock, &progress).await,
        Command::Report { job, period, out, only, template } => {
            let job = find_job(&config, &job)?;
            require_secrets(&config, true, false)?;
            let (period, slot) = resolve_period(&config, job, period.as_deref(), &clock)?;
            let pipeline = ReportBuilder::new(Arc::clone(&config)).with_progress(progress);
            let request = RenderRequest { only, template };
            let reports = pipeline.render_job(job, &period, slot, &request).await.map_err(anyhow::Error::from)?;
            write_report_files(&out, job, &period, &reports)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { job, period, only, resend, channel, out } => {
            let job = find_job(&config, &job)?;
            let channels = channels_of(job, &channel)?;
            require_secrets(&config, true, true)?;
            let (period, slot) = resolve_period(&config, job, period.as_deref(), &clock)?;
            refuse_unfinished(&config, job, &period, clock.now())?;
            let runner = PipelineRunner::new(Arc::clone(&config))?.with_progress(progress);
            let request = RenderRequest { only, template: None };
            let reports = runner.render(job, &period, slot, &request).await?;
            if let Some(out) = out {
                write_report_files(&out, job, &period, &reports)?;
            }
            let summary = runner.deliver(job, &period, &reports, DeliverOptions { resend, channels }).await?;
            print_summary(&job.name, &period, &summary);
            Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Alert { alert, at } => {
            let Some(a) = config.alert(&alert) else {
                let names: Vec<&str> = config.alerts.iter().map(|a| a.name.as_str()).collect();
                return Err(usage(anyhow!(
                    "failed to find alert {alert:?} in {} (alerts: {})",
                    config.source_name,
                    names.join(", ")
                )));
            };
            require_secrets(&config, true, false)?;
            let slot = match at {
                Some(at) => parse_at(&at, config.timezone)?,
                None => schedule::latest_slot(&a.cron, config.timezone, clock.now())
                    .ok_or_else(|| usage(anyhow!("alert {} has no past slot; give --at", a.name)))?,
            };
            let builder = ReportBuilder::new(Arc::clone(&config)).with_progress(progress);
            let (evaluation, messages) = crate::alert::preview(&builder, a, slot).await.map_err(anyhow::Error::from)?;
            print!("{}", alert_preview(a, &evaluation, &messages));
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            require_secrets(&config, true, true)?;
            let mut runner = PipelineRunner::new(Arc::clone(&config))?.with_progress(progress);
            // PDFs are laid out in worker processes of this binary, so that Typst's caches
            // leave with them after each job (`render_worker`). `/proc/self/exe` runs the
            // file this daemon runs, even after an upgrade replaced it at its path.
            let own = PathBuf::from("/proc/self/exe");
            match if own.exists() { Ok(own) } else { std::env::current_exe() } {
                Ok(exe) => runner = runner.with_render_workers(exe),
                Err(e) => tracing::warn!("Failed to find the salespulse binary ({e}); rendering in this process."),
            }
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let reason = crate::daemon::run(Arc::clone(&config), clock, crate::daemon::stop_signal(), runner)
                .await
                .map_err(anyhow::Error::from)?;
            Ok(ExitCode::from(reason.exit_code()))
        }
        Command::Status => {
            let store = Store::open(&config.state_dir).context("failed to open the state store")?;
            print!("{}", status_report(&config, &store, clock.now())?);
            Ok(ExitCode::SUCCESS)
        }
        // Served in `main`, before the config and the runtime.
        Command::RenderWorker => Ok(ExitCode::SUCCESS),
    }
}

/// `--at "2026-11-25 12:00"`: local time in `tz` (a time in a DST gap is the first instant
/// after it, as slots are).
fn parse_at(at: &str, tz: Tz) -> Result<DateTime<Tz>, Failure> {
    let trimmed = at.trim();
    let naive = ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(trimmed, f).ok())
        .filter(|t| crate::domain::PERIOD_YEARS.contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| {
            usage(anyhow!(
                "failed to read --at {at:?} (expected local time such as \"2026-11-25 12:00\", years 1970 to 9998)"
            ))
        })?;
    Ok(schedule::resolve_local(tz, naive))
}

/// What `alert` prints: who would get what. CRM strings are flattened to one line each
/// (the bodies are made of flattened strings).
fn alert_preview(
    a: &crate::config::AlertConfig,
    e: &crate::alert::Evaluation,
    messages: &[crate::alert::AlertMessage],
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "alert {} ({}), slot {}: {} manager(s) concerned, {} message(s); nothing sent",
        a.name,
        a.rule.as_str(),
        e.period_key,
        e.findings.len(),
        messages.len()
    );
    for (name, why) in &e.not_checked {
        let _ = writeln!(out, "not checked: {} ({why})", one_line(name));
    }
    for m in messages {
        let _ = writeln!(out);
        let to = if m.to.is_empty() { "no usable e-mail address".to_owned() } else { one_line(&m.to.join(", ")) };
        let _ = writeln!(out, "--- to {} <{to}> [{}]", one_line(&m.recipient_name), one_line(&m.recipient_key));
        let _ = writeln!(out, "subject: {}", one_line(&m.subject));
        for line in m.body.lines() {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Writes each PDF and its `.json` into `out/JOB/PERIOD/` and prints each PDF's path.
fn write_report_files(
    out: &std::path::Path,
    job: &JobConfig,
    period: &Period,
    reports: &[crate::pipeline::RenderedReport],
) -> Result<(), Failure> {
    let dir = out.join(&job.name).join(crate::text::file_name(&period.label(), "period"));
    for path in write_reports(&dir, reports).map_err(anyhow::Error::from)? {
        println!("{}", path.display());
    }
    Ok(())
}

fn find_job<'a>(config: &'a Config, name: &str) -> Result<&'a JobConfig, Failure> {
    config.job(name).ok_or_else(|| {
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        usage(anyhow!("failed to find job {name:?} in {} (jobs: {})", config.source_name, names.join(", ")))
    })
}

/// The period and the slot it belongs to: from `--period`, else the job's rule applied to
/// its most recent slot.
fn resolve_period(
    config: &Config,
    job: &JobConfig,
    period: Option<&str>,
    clock: &dyn Clock,
) -> Result<(Period, DateTime<Tz>), Failure> {
    let tz = config.timezone;
    match period {
        Some(p) => {
            let period = Period::parse(p, tz).map_err(|e| usage(e.into()))?;
            let slot = schedule::slot_for_period(&job.cron, tz, &period);
            Ok((period, slot))
        }
        None => {
            let slot = schedule::latest_slot(&job.cron, tz, clock.now())
                .ok_or_else(|| usage(anyhow!("job {} has no past slot; give --period", job.name)))?;
            Ok((schedule::period_for_slot(job.period, slot), slot))
        }
    }
}

/// `send` delivers a period only once it has ended: numbers of a period still running are
/// partial, and the ledger would then mark every recipient sent, so the scheduled run after
/// the period's end would skip them all.
fn refuse_unfinished(
    config: &Config,
    job: &JobConfig,
    period: &Period,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Failure> {
    if period.has_ended(now) {
        return Ok(());
    }
    let config_arg = if config.source_name == crate::config::EMBEDDED_NAME {
        String::new()
    } else {
        format!(" --config {}", config.source_name)
    };
    Err(usage(anyhow!(
        "refusing to send job {} for {period}: the period has not ended (it ends {}), so its numbers are not final \
         and its recipients would be marked sent before the scheduled run. Preview it with \
         `salespulse{config_arg} report {} --period {period}`; the scheduled run sends it after it ends",
        job.name,
        period.end().format("%Y-%m-%d %H:%M %Z"),
        job.name,
    )))
}

async fn check(config: &Config, offline: bool, clock: &dyn Clock, progress: &Progress) -> Result<ExitCode, Failure> {
    if !offline {
        require_secrets(config, true, true)?;
    }
    for (key, secret) in config.secrets() {
        let read = if offline { "not read offline" } else { "read" };
        println!("secret {key}: {} ({read})", secret.describe());
    }
    Ok(if crate::check::check(config, offline, clock.now(), progress).await {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--channel` names: channels the job sends through.
fn channels_of(job: &JobConfig, names: &[String]) -> Result<Vec<Channel>, Failure> {
    names
        .iter()
        .map(|name| match Channel::from_name(name.trim()) {
            Some(c) if job.channels.contains(&c) => Ok(c),
            Some(c) => Err(usage(anyhow::anyhow!(
                "job {} does not send through {c} (its channels: {})",
                job.name,
                job.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ))),
            None => Err(usage(anyhow::anyhow!("unknown channel {name:?}; expected email, bitrix24 or telegram"))),
        })
        .collect()
}

fn print_summary(job: &str, period: &Period, summary: &DeliverySummary) {
    println!(
        "job {job}, period {period}: {} sent, {} skipped (sent before), {} failed",
        summary.sent,
        summary.skipped,
        summary.failed.len()
    );
    // CRM strings (names, addresses, errors quoting them) are flattened to one line each.
    let who = |f: &DeliveryIssue| match f.channel.as_str() {
        "email" => format!("{} <{}>", one_line(&f.recipient_name), one_line(&f.to.join(", "))),
        channel => format!("{} ({channel}: {})", one_line(&f.recipient_name), one_line(&f.to.join(", "))),
    };
    for f in &summary.failed {
        println!("  failed: {}: {}", who(f), one_line(&f.reason));
    }
    for u in &summary.unknown {
        println!("  sent again after an interrupted attempt: {}", who(u));
    }
    for n in &summary.notices {
        println!("  sent with a note: {}: {}", who(n), one_line(&n.reason));
    }
    if let Some(e) = &summary.digest_error {
        println!("  the admin digest could not be sent: {}", one_line(e));
    }
}

/// A run's outcome with the attempts made for its slot (all runs of the slot, the daemon's
/// retries included) and, while it fails, the last error.
fn run_outcome(run: &crate::store::RunRecord, runs: u32, attempts: u32) -> String {
    use crate::store::RunOutcome;
    let in_runs = if runs > 1 { format!(" in {runs} runs") } else { String::new() };
    let error = run.detail.as_deref().map(|d| format!(": {}", one_line(d))).unwrap_or_default();
    match run.outcome {
        RunOutcome::Running if run.attempts > 0 => {
            format!("running, {} failed attempt(s) so far{in_runs}{error}", run.attempts)
        }
        RunOutcome::Failed => format!("failed after {attempts} attempt(s){in_runs}{error}"),
        RunOutcome::Ok | RunOutcome::Partial if attempts > 1 => {
            format!("{} after {attempts} attempts{in_runs}", run.outcome.as_str())
        }
        _ => run.outcome.as_str().to_owned(),
    }
}

/// `status`: each job's last run and next slot in local time, then deliveries not sent.
fn status_report(config: &Config, store: &Store, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let tz = config.timezone;
    let mut out = String::new();
    for job in &config.jobs {
        let next = schedule::next_slot(&job.cron, tz, now)
            .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|| "never".to_owned());
        let last = match store.last_run(&job.name)? {
            Some(run) => {
                let (runs, attempts) = store.slot_attempts(&job.name, run.slot)?;
                format!(
                    "last run for {} ({}): {} sent, {} failed, {}",
                    run.period,
                    run.slot.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
                    run.sent,
                    run.failed,
                    run_outcome(&run, runs, attempts)
                )
            }
            None => "never run".to_owned(),
        };
        writeln!(out, "{} ({}, \"{}\"): {last}; next {next}", job.name, job.report.as_str(), job.schedule)?;
        if let Some((period, at, count)) = store.last_sent(&job.name)? {
            writeln!(out, "  last delivered: {period}, {count} report(s), last at {at}")?;
        }
    }
    for a in &config.alerts {
        let next = schedule::next_slot(&a.cron, tz, now)
            .map(|t| t.format("%Y-%m-%d %H:%M %Z").to_string())
            .unwrap_or_else(|| "never".to_owned());
        let last = match store.last_run(&a.name)? {
            Some(run) => {
                let (runs, attempts) = store.slot_attempts(&a.name, run.slot)?;
                format!(
                    "last run for {}: {} sent, {} failed, {}",
                    run.period,
                    run.sent,
                    run.failed,
                    run_outcome(&run, runs, attempts)
                )
            }
            None => "never run".to_owned(),
        };
        writeln!(out, "alert {} ({}, \"{}\"): {last}; next {next}", a.name, a.rule.as_str(), a.schedule)?;
        if let Some((period, at, count)) = store.last_alert_sent(&a.name)? {
            writeln!(out, "  last sent: {period}, {count} alert(s), last at {at}")?;
            for row in store.alert_sends(&a.name, &period)? {
                writeln!(
                    out,
                    "    {} {} <{}> [{}]: {}",
                    row.key.channel,
                    one_line(&row.recipient_name),
                    one_line(&row.to.join(", ")),
                    one_line(&row.key.recipient_key),
                    row.state.as_str()
                )?;
            }
        }
    }
    let unsent_alerts = store.unsent_alerts()?;
    if !unsent_alerts.is_empty() {
        writeln!(out, "alerts pending or failed:")?;
        for r in unsent_alerts {
            writeln!(
                out,
                "  {} {} {} {} <{}>: {}{}",
                r.key.alert,
                r.key.period,
                r.key.channel,
                one_line(&r.recipient_name),
                one_line(&r.to.join(", ")),
                r.state.as_str(),
                r.last_error.map(|e| format!(" ({})", one_line(&e))).unwrap_or_default()
            )?;
        }
    }
    let unsent = store.unsent()?;
    if unsent.is_empty() {
        writeln!(out, "no deliveries pending or failed")?;
    } else {
        writeln!(out, "deliveries pending or failed:")?;
        for d in unsent {
            // The name, addresses and error come from the CRM or quote it: one line each.
            let to = match d.key.channel.as_str() {
                "email" => format!("<{}>", one_line(&d.to.join(", "))),
                channel => format!("({channel}: {})", one_line(&d.to.join(", "))),
            };
            writeln!(
                out,
                "  {} {} {} {}: {}{}",
                d.key.job,
                d.key.period,
                one_line(&d.recipient_name),
                to,
                d.state.as_str(),
                d.last_error.map(|e| format!(" ({})", one_line(&e))).unwrap_or_default()
            )?;
        }
    }
    Ok(out)
}
