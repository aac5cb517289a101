//! One job for one period: fetch, compute, chart, render; then `deliver` hands the PDFs to
//! the mailer through the delivery ledger. The only module that knows the order of stages.
//!
//! A run is all or nothing up to rendering: the CRM snapshot is complete or the run fails,
//! and every report of the job is rendered before anything is delivered, so a broken
//! template or a CRM fault never leaves half a job sent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use chrono::DateTime;
use chrono_tz::Tz;
use tracing::{info, warn};

use crate::config::{Config, CrmSourceKind, JobConfig, ReportKind};
use crate::crm::bitrix24::cached::{CacheSettings, CachedClient};
use crate::crm::bitrix24::{Bitrix24Client, ClientSettings};
use crate::crm::emulator::{Emulator, EmulatorOptions};
use crate::crm::{CrmError, CrmSource, FetchRequest};
use crate::domain::{CrmSnapshot, Id, Period, Timestamp};
use crate::kpi::{Analysis, ReportData};
use crate::mail::{AnyMailer, Mailer, Outgoing};
use crate::progress::{Progress, Stage};
use crate::render::{RenderError, Renderer, Template};
use crate::store::Store;
use deliver::{DeliverOptions, DeliverySummary};

pub mod deliver;

/// The demo portal's request budget (see [`ReportBuilder::fetch`]).
const DEMO_RATE_PER_SEC: f64 = 200.0;
const DEMO_BURST: u32 = 1000;

/// One rendered report of a job: a PDF for one recipient group.
#[derive(Clone, Debug)]
pub struct RenderedReport {
    /// Distinguishes the reports of one job and period: the manager's Bitrix24 id, or
    /// `department`. The delivery ledger keys rows by (job, period, recipient_key).
    pub recipient_key: String,
    /// The manager's name, or the department report's title.
    pub recipient_name: String,
    /// E-mail addresses this PDF goes to; empty when the manager has no e-mail (the
    /// ledger records that as a failure the admin hears about).
    pub to: Vec<String>,
    /// `2026-W47 Иван Петров (17).pdf`: unique within the job and period, safe on every
    /// file system.
    pub file_name: String,
    pub pdf: Vec<u8>,
    pub data: ReportData,
    /// `data` as written beside the PDF.
    pub json: String,
}

/// A job that could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Crm(#[from] CrmError),
    #[error("failed to render {report} for job {job} ({source})")]
    Render { job: String, report: String, source: RenderError },
    #[error("failed to draw charts for job {job} ({detail})")]
    Chart { job: String, detail: String },
    #[error("failed to start the demo portal ({0})")]
    Demo(std::io::Error),
    #[error("failed to find manager(s) {ids} among the managers in scope")]
    UnknownManagers { ids: String },
    #[error("failed to write {path} ({source})")]
    Write { path: String, source: std::io::Error },
    /// A bug (in salespulse, Typst or plotters) hit by this report's data or template.
    #[error(
        "failed to render {report} for job {job}: salespulse panicked ({message}); this is a bug, please report it"
    )]
    Panic { job: String, report: String, message: String },
    /// A secret the config names could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl PipelineError {
    /// Only CRM faults and a render worker that was killed (by the out-of-memory killer,
    /// say) are worth a retry: a template or data error, or a worker that crashed on its own,
    /// stays until someone acts.
    pub fn is_transient(&self) -> bool {
        match self {
            PipelineError::Crm(e) => e.is_transient(),
            PipelineError::Render { source: RenderError::Worker { killed, .. }, .. } => *killed,
            _ => false,
        }
    }
}

/// What to render.
#[derive(Clone, Debug, Default)]
pub struct RenderRequest {
    /// Only these managers (manager reports); all when empty.
    pub only: Vec<Id>,
    /// A template file instead of the job's (preview of a changed template).
    pub template: Option<PathBuf>,
}

/// Builds a job's reports: fetch, KPIs, charts, PDFs. Shared by every run of a process:
/// the renderer keeps its fonts loaded.
#[derive(Clone)]
pub struct ReportBuilder {
    config: Arc<Config>,
    renderer: Arc<Renderer>,
    progress: Progress,
    /// The binary whose `render-worker` lays out the PDFs; `None`: this process does.
    render_workers: Option<Arc<PathBuf>>,
}

impl ReportBuilder {
    pub fn new(config: Arc<Config>) -> ReportBuilder {
        ReportBuilder { config, renderer: Arc::new(Renderer::new()), progress: Progress::off(), render_workers: None }
    }

    /// Shows each run's stages and counts through `progress` (off by default).
    pub fn with_progress(self, progress: Progress) -> ReportBuilder {
        ReportBuilder { progress, ..self }
    }

    /// Lays out each job's PDFs in worker processes of `exe` (`exe render-worker`, one per
    /// render thread, for the job's length) instead of in this process: the daemon does,
    /// so that Typst's caches do not stay in it between jobs (`render_worker`).
    pub fn with_render_workers(self, exe: PathBuf) -> ReportBuilder {
        ReportBuilder { render_workers: Some(Arc::new(exe)), ..self }
    }

    /// Where the runs' progress is shown.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Fetches, computes and renders every report of `job` for `period`. `slot` is the
    /// scheduled time the run belongs to: the report's `generated_at` and the demo portal's
    /// "now", so the same period renders the same whenever it runs.
    pub async fn render_job(
        &self,
        job: &JobConfig,
        period: &Period,
        slot: DateTime<Tz>,
        request: &RenderRequest,
    ) -> Result<Vec<RenderedReport>, PipelineError> {
        let template = template_for(job, request.template.as_deref())?;
        let _shown = self.progress.begin(&format!("{} {}", job.name, period.label()));
        self.progress.stage(Stage::Fetch, None);
        let snapshot = self.fetch(&fetch_request(&self.config, job, period), slot).await?;
        self.progress.stage(Stage::Kpi, None);
        let reports = self.pending(job, period, slot, &request.only, &snapshot)?;
        // The reports hold what rendering reads; the records go before it, and the memory
        // they held goes back (the render threads allocate in arenas of their own).
        drop(snapshot);
        crate::memory::return_freed();
        info!(job = %job.name, period = %period, reports = reports.len(), "Report data computed.");
        self.progress.stage(Stage::Render, Some(reports.len() as u64));
        self.render_all(job, template, reports).await
    }

    /// The job's first report only (a scorecard of the first manager, or the department
    /// report), rendered with the job's template: `check` proves the templates on it.
    pub async fn render_sample(
        &self,
        job: &JobConfig,
        period: &Period,
        slot: DateTime<Tz>,
    ) -> Result<Option<RenderedReport>, PipelineError> {
        let template = template_for(job, None)?;
        let _shown = self.progress.begin(&format!("{} {}", job.name, period.label()));
        self.progress.stage(Stage::Fetch, None);
        let snapshot = self.fetch(&fetch_request(&self.config, job, period), slot).await?;
        self.progress.stage(Stage::Kpi, None);
        let mut reports = self.pending(job, period, slot, &[], &snapshot)?;
        reports.truncate(1);
        self.progress.stage(Stage::Render, Some(reports.len() as u64));
        Ok(self.render_all(job, template, reports).await?.pop())
    }

    /// Compiles the job's template against an empty `period` (every "no data" branch of
    /// it), without a fetch: `check` runs it before [`ReportBuilder::render_sample`].
    pub fn check_empty(&self, job: &JobConfig, period: &Period, slot: DateTime<Tz>) -> Result<(), PipelineError> {
        let template = template_for(job, None)?;
        let settings = self.config.kpi_settings();
        let snapshot = CrmSnapshot::default();
        let analysis = Analysis::new(&snapshot, &settings);
        let mut data = match job.report {
            ReportKind::Manager => analysis.manager_report(period, 0, slot),
            ReportKind::Department => analysis.department_report(period, slot),
        };
        let charts = draw_charts(job, &mut data)?;
        crate::render::check_template(&self.renderer, &template, &data, &charts)
            .map_err(|source| PipelineError::Render { job: job.name.clone(), report: template.name.clone(), source })
    }

    /// The report data of each report of `job` (only the managers in `only`, when given).
    fn pending(
        &self,
        job: &JobConfig,
        period: &Period,
        slot: DateTime<Tz>,
        only: &[Id],
        snapshot: &CrmSnapshot,
    ) -> Result<Vec<Pending>, PipelineError> {
        let settings = self.config.kpi_settings();
        let reports = {
            let analysis = Analysis::new(snapshot, &settings);
            match job.report {
                ReportKind::Department => vec![Pending {
                    key: "department".to_owned(),
                    name: department_title(&self.config),
                    to: job.recipients.clone(),
                    data: analysis.department_report(period, slot),
                }],
                ReportKind::Manager => {
                    let managers = analysis.managers();
                    let unknown: Vec<String> = only
                        .iter()
                        .filter(|id| !managers.iter().any(|m| m.id == **id))
                        .map(|id| id.to_string())
                        .collect();
                    if !unknown.is_empty() {
                        return Err(PipelineError::UnknownManagers { ids: unknown.join(", ") });
                    }
                    managers
                        .into_iter()
                        .filter(|m| only.is_empty() || only.contains(&m.id))
                        .map(|m| Pending {
                            key: m.id.to_string(),
                            name: m.name.clone(),
                            to: m.email.iter().cloned().chain(job.recipients.iter().cloned()).collect(),
                            data: analysis.manager_report(period, m.id, slot),
                        })
                        .collect()
                }
            }
        };
        Ok(reports)
    }

    /// Renders on every core: one blocking task per core, each taking reports in turn.
    async fn render_all(
        &self,
        job: &JobConfig,
        template: Template,
        pending: Vec<Pending>,
    ) -> Result<Vec<RenderedReport>, PipelineError> {
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(pending.len().max(1));
        let template = Arc::new(template);
        let queue = Arc::new(std::sync::Mutex::new(pending.into_iter().enumerate().collect::<Vec<_>>()));
        let mut tasks = Vec::with_capacity(workers);
        for _ in 0..workers {
            let queue = Arc::clone(&queue);
            let renderer = Arc::clone(&self.renderer);
            let template = Arc::clone(&template);
            let job = job.clone();
            let progress = self.progress.clone();
            let exe = self.render_workers.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let mut done = Vec::new();
                // This thread's worker process, started when there is a report for it.
                let mut worker = WorkerSlot::new(exe.as_deref().map(PathBuf::as_path));
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some((index, item)) = next else { break };
                    // A panic in Typst or plotters is this report's failure, not the process's.
                    let name = item.name.clone();
                    let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        render_one(&renderer, &mut worker, &template, &job, item)
                    }))
                    .unwrap_or_else(|payload| {
                        Err(PipelineError::Panic {
                            job: job.name.clone(),
                            report: name,
                            message: crate::text::panic_message(&*payload),
                        })
                    });
                    done.push((index, rendered?));
                    progress.item_done();
                }
                Ok::<_, PipelineError>(done)
            }));
        }
        let mut all = Vec::new();
        let mut failed = None;
        for task in tasks {
            let done = task.await.unwrap_or_else(|e| {
                let message = match e.try_into_panic() {
                    Ok(payload) => crate::text::panic_message(&*payload),
                    Err(e) => e.to_string(),
                };
                Err(PipelineError::Panic { job: job.name.clone(), report: "a render worker".to_owned(), message })
            });
            match done {
                Ok(done) => all.extend(done),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        all.sort_by_key(|(index, _)| *index);
        Ok(all.into_iter().map(|(_, r)| r).collect())
    }

    /// Reaches the CRM with a fetch of the hour before the slot (`check`).
    pub async fn check_crm(&self, slot: DateTime<Tz>) -> Result<(), PipelineError> {
        let until = slot.fixed_offset();
        let request = FetchRequest {
            since: until - chrono::Duration::hours(1),
            until,
            period_start: until - chrono::Duration::hours(1),
            scope: self.config.crm.scope(),
            satisfaction_field: self.config.crm.satisfaction_field.clone(),
        };
        let _shown = self.progress.begin("check: CRM read");
        self.progress.stage(Stage::Fetch, None);
        self.fetch(&request, slot).await.map(drop)
    }

    /// The CRM snapshot an alert reads: the records from `since` (the start of the oldest
    /// window its rule looks at), as of `slot` (the demo portal is generated as of it). No
    /// product rows: an alert needs none.
    pub async fn fetch_since(&self, since: DateTime<Tz>, slot: DateTime<Tz>) -> Result<CrmSnapshot, PipelineError> {
        let until = slot.fixed_offset();
        let request = FetchRequest {
            since: since.fixed_offset().min(until),
            until,
            period_start: until,
            scope: self.config.crm.scope(),
            satisfaction_field: self.config.crm.satisfaction_field.clone(),
        };
        let _shown = self.progress.begin("alert: CRM read");
        self.progress.stage(Stage::Fetch, None);
        self.fetch(&request, slot).await
    }

    /// The scopes of the configured webhook (the portal's `scope` method); `None` for the
    /// demo portal, which has them all.
    pub async fn webhook_scopes(&self) -> Result<Option<Vec<String>>, PipelineError> {
        match &self.config.crm.source {
            CrmSourceKind::Bitrix24 { webhook_url } => {
                let webhook_url = webhook_url.resolve_checked(crate::config::check_webhook_url)?;
                Ok(Some(Bitrix24Client::new(&webhook_url, self.client_settings())?.scopes().await?))
            }
            CrmSourceKind::Demo => Ok(None),
        }
    }

    /// The Bitrix24 client's settings from `[crm]`.
    fn client_settings(&self) -> ClientSettings {
        ClientSettings { progress: self.progress.clone(), ..ClientSettings::from_config(&self.config.crm) }
    }

    /// The CRM snapshot for a job's period, its trend and its comparisons.
    async fn fetch(&self, request: &FetchRequest, slot: DateTime<Tz>) -> Result<CrmSnapshot, PipelineError> {
        let crm = &self.config.crm;
        let settings = self.client_settings();
        match &crm.source {
            CrmSourceKind::Bitrix24 { webhook_url } => {
                let webhook_url = webhook_url.resolve_checked(crate::config::check_webhook_url)?;
                let client = Bitrix24Client::new(&webhook_url, settings)?;
                if crm.cache {
                    let cached = CachedClient::new(client, self.cache_settings(None));
                    return Ok(cached.fetch(request).await?);
                }
                Ok(client.fetch(request).await?)
            }
            CrmSourceKind::Demo => {
                // The demo portal is served by the Bitrix24 emulator on loopback, so the
                // default run exercises the same client code a real portal gets.
                // It is our own process on loopback, so it gets a bucket far above a real
                // portal's: the demo then runs in a blink instead of at 2 requests a second.
                let options =
                    EmulatorOptions { rate_per_sec: DEMO_RATE_PER_SEC, burst: DEMO_BURST, ..Default::default() };
                let emulator =
                    Emulator::start(crate::crm::demo::portal(slot), options).await.map_err(PipelineError::Demo)?;
                let url = crate::config::Secret::new(emulator.webhook_url());
                let settings = ClientSettings { rate_per_sec: DEMO_RATE_PER_SEC, burst: DEMO_BURST, ..settings };
                let result = async {
                    let client = Bitrix24Client::new(&url, settings)?;
                    if crm.cache {
                        // The demo's records are generated as of the slot: the slot is its "now".
                        let cached = CachedClient::new(client, self.cache_settings(Some("demo")));
                        return cached.fetch_at(request, slot.fixed_offset()).await;
                    }
                    client.fetch(request).await
                }
                .await;
                emulator.shutdown().await;
                Ok(result?)
            }
        }
    }
}

impl ReportBuilder {
    /// The CRM cache in the state directory (`crm::bitrix24::cached`).
    fn cache_settings(&self, portal_name: Option<&str>) -> CacheSettings {
        CacheSettings {
            state_dir: self.config.state_dir.clone(),
            reconcile_every: chrono::Duration::days(i64::from(self.config.crm.reconcile_days)),
            portal_name: portal_name.map(str::to_owned),
        }
    }
}

/// A report computed and waiting for its PDF.
struct Pending {
    key: String,
    name: String,
    to: Vec<String>,
    data: ReportData,
}

/// The template a job renders with: `preview` (`report --template`), else the job's own
/// file, else the built-in one.
fn template_for(job: &JobConfig, preview: Option<&Path>) -> Result<Template, PipelineError> {
    match preview.or(job.template.as_deref()) {
        Some(path) => Template::from_file(path).map_err(|source| PipelineError::Render {
            job: job.name.clone(),
            report: path.display().to_string(),
            source,
        }),
        None => Ok(Template::builtin(job.report)),
    }
}

/// Draws the charts of a report of `job` and attaches them to its data.
fn draw_charts(job: &JobConfig, data: &mut ReportData) -> Result<Vec<crate::chart::Chart>, PipelineError> {
    let charts = match job.report {
        ReportKind::Manager => crate::chart::manager_charts(data),
        ReportKind::Department => crate::chart::department_charts(data),
    }
    .map_err(|e| PipelineError::Chart { job: job.name.clone(), detail: e.to_string() })?;
    crate::chart::attach(data, &charts);
    Ok(charts)
}

/// A render thread's worker process: not started yet, running, or not to be used (this
/// process renders: `send`, `report`, `check`, or a worker that could not be started).
enum WorkerSlot<'a> {
    NotStarted(&'a Path),
    Running(crate::render_worker::Worker),
    InProcess,
}

impl<'a> WorkerSlot<'a> {
    fn new(exe: Option<&'a Path>) -> WorkerSlot<'a> {
        exe.map_or(WorkerSlot::InProcess, WorkerSlot::NotStarted)
    }

    /// The running worker; `None` when this process is to render.
    fn get(&mut self) -> Option<&mut crate::render_worker::Worker> {
        if let WorkerSlot::NotStarted(exe) = *self {
            *self = match crate::render_worker::Worker::start(exe) {
                Ok(worker) => WorkerSlot::Running(worker),
                Err(e) => {
                    warn!(
                        exe = %exe.display(),
                        "Failed to start a render worker ({e}); rendering in the daemon's own process instead."
                    );
                    WorkerSlot::InProcess
                }
            };
        }
        match self {
            WorkerSlot::Running(worker) => Some(worker),
            _ => None,
        }
    }
}

fn render_one(
    renderer: &Renderer,
    worker: &mut WorkerSlot<'_>,
    template: &Template,
    job: &JobConfig,
    item: Pending,
) -> Result<RenderedReport, PipelineError> {
    let Pending { key, name, to, mut data } = item;
    let charts = draw_charts(job, &mut data)?;
    let failed = |source| PipelineError::Render { job: job.name.clone(), report: name.clone(), source };
    let pdf = match worker.get() {
        None => renderer.render(template, &data, &charts).map_err(failed)?,
        Some(worker) => match worker.render(template, &data, &charts) {
            crate::render_worker::Rendered::Pdf(pdf) => pdf,
            crate::render_worker::Rendered::Failed(source) => return Err(failed(source)),
            crate::render_worker::Rendered::Panicked(message) => {
                return Err(PipelineError::Panic { job: job.name.clone(), report: name.clone(), message });
            }
        },
    };
    let json = serde_json::to_string_pretty(&data).expect("report data serializes");
    let file_name = report_file_name(&data.period.label, &name, &key);
    Ok(RenderedReport { recipient_key: key, recipient_name: name, to, file_name, pdf, data, json })
}

/// The records a job needs: its period, the trend before it, the previous period and, for
/// the department report, the same period a year before.
pub fn fetch_request(config: &Config, job: &JobConfig, period: &Period) -> FetchRequest {
    let mut starts: Vec<DateTime<Tz>> =
        period.trailing(config.report.trend_periods).iter().map(Period::start).collect();
    starts.push(period.previous().start());
    if job.report == ReportKind::Department {
        starts.push(period.year_before().start());
    }
    let since = starts.into_iter().min().expect("at least the period itself");
    FetchRequest {
        since: since.fixed_offset(),
        until: period.end().fixed_offset(),
        period_start: period.start().fixed_offset(),
        scope: config.crm.scope(),
        satisfaction_field: config.crm.satisfaction_field.clone(),
    }
}

fn department_title(config: &Config) -> String {
    match config.language {
        crate::locale::Language::Ru => "Отдел продаж".to_owned(),
        crate::locale::Language::En => "Sales department".to_owned(),
    }
}

/// The longest part of a file name a person's name may take, in bytes: with the period,
/// the id and `.pdf`, the whole stays within [`crate::text::MAX_FILE_NAME_BYTES`].
const NAME_BYTES: usize = 64;

/// A report's PDF and attachment name: `2026-W47 Иван Петров (17).pdf`. The manager's id
/// makes it unique (two managers may share a name); the name is cut by bytes, and the whole
/// goes through [`crate::text::file_name`] (no separators, controls or format characters).
/// The department report is `2026-10 Отдел продаж.pdf`.
fn report_file_name(period: &str, name: &str, key: &str) -> String {
    let name = crate::text::cut_bytes(name, NAME_BYTES);
    let stem = if key == "department" { format!("{period} {name}") } else { format!("{period} {name} ({key})") };
    crate::text::file_name(&format!("{stem}.pdf"), "report.pdf")
}

/// Writes each report's PDF and its `.json` into `dir` (the `report` command).
pub fn write_reports(dir: &Path, reports: &[RenderedReport]) -> Result<Vec<PathBuf>, PipelineError> {
    let write = |path: PathBuf, bytes: &[u8]| {
        crate::private_fs::write_file(&path, bytes)
            .map_err(|source| PipelineError::Write { path: path.display().to_string(), source })
    };
    crate::private_fs::create_dir_all(dir)
        .map_err(|source| PipelineError::Write { path: dir.display().to_string(), source })?;
    let mut written = Vec::new();
    for r in reports {
        let pdf = dir.join(&r.file_name);
        write(pdf.clone(), &r.pdf)?;
        write(pdf.with_extension("json"), r.json.as_bytes())?;
        written.push(pdf);
    }
    Ok(written)
}

/// The instant a report looks at, as served offsets go.
pub fn as_of(slot: DateTime<Tz>) -> Timestamp {
    slot.fixed_offset()
}

/// The pipeline behind `send` and the daemon: render a job's reports, then deliver them
/// through the ledger with the configured mailer.
pub struct PipelineRunner {
    builder: ReportBuilder,
    store: Store,
    mailer: AnyMailer,
}

impl PipelineRunner {
    pub fn new(config: Arc<Config>) -> anyhow::Result<PipelineRunner> {
        let store = Store::open(&config.state_dir).context("failed to open the state store")?;
        let mailer = crate::mail::mailer_from_config(&config.mail)?;
        Ok(PipelineRunner { builder: ReportBuilder::new(config), store, mailer })
    }

    /// Shows each run's stages and counts through `progress` (off by default).
    pub fn with_progress(self, progress: Progress) -> PipelineRunner {
        PipelineRunner { builder: self.builder.with_progress(progress), ..self }
    }

    /// Lays out the PDFs in worker processes of `exe` ([`ReportBuilder::with_render_workers`]).
    pub fn with_render_workers(self, exe: PathBuf) -> PipelineRunner {
        PipelineRunner { builder: self.builder.with_render_workers(exe), ..self }
    }

    /// Renders every report of `job` for `period`, then delivers each exactly once.
    pub async fn render_and_deliver(
        &self,
        job: &JobConfig,
        period: &Period,
        slot: DateTime<Tz>,
        request: &RenderRequest,
        options: DeliverOptions,
    ) -> anyhow::Result<DeliverySummary> {
        let reports = self.builder.render_job(job, period, slot, request).await?;
        self.deliver(job, period, &reports, options).await
    }

    /// Renders every report of `job` for `period` (nothing is sent).
    pub async fn render(
        &self,
        job: &JobConfig,
        period: &Period,
        slot: DateTime<Tz>,
        request: &RenderRequest,
    ) -> anyhow::Result<Vec<RenderedReport>> {
        Ok(self.builder.render_job(job, period, slot, request).await?)
    }

    /// Delivers rendered reports through the ledger, each exactly once.
    pub async fn deliver(
        &self,
        job: &JobConfig,
        period: &Period,
        reports: &[RenderedReport],
        options: DeliverOptions,
    ) -> anyhow::Result<DeliverySummary> {
        let config = self.builder.config();
        let progress = self.builder.progress();
        let _shown = progress.resume();
        progress.stage(Stage::Delivery, Some(reports.len() as u64));
        let mailer = Counted { mailer: &self.mailer, progress };
        Ok(deliver::deliver(&self.store, &mailer, config, job, period, reports, &options).await?)
    }

    /// The mailer the reports are sent with.
    pub fn mailer(&self) -> &AnyMailer {
        &self.mailer
    }

    /// The builder its runs fetch with (alerts fetch through it too).
    pub fn builder(&self) -> &ReportBuilder {
        &self.builder
    }

    /// The state store its deliveries are recorded in.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The mailer, counting each message it is handed for the progress shown.
struct Counted<'a> {
    mailer: &'a AnyMailer,
    progress: &'a Progress,
}

impl Mailer for Counted<'_> {
    async fn send(&self, message: &Outgoing) -> Result<(), crate::mail::MailError> {
        let sent = self.mailer.send(message).await;
        self.progress.item_done();
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_file_names_carry_the_id_and_stay_short() {
        assert_eq!(report_file_name("2026-W47", "Иван Петров", "17"), "2026-W47 Иван Петров (17).pdf");
        assert_eq!(report_file_name("2026-10", "Отдел продаж", "department"), "2026-10 Отдел продаж.pdf");
        assert_eq!(report_file_name("2026-W47", "a/b\u{202E}fdp.exe", "9"), "2026-W47 a_bfdp.exe (9).pdf");
        let long = report_file_name("2026-11-01..2026-11-15", &"😀".repeat(100), "18446744073709551615");
        assert!(long.len() <= crate::text::MAX_FILE_NAME_BYTES, "{long}");
        assert!(long.ends_with("😀 (18446744073709551615).pdf"), "{long}");
    }

    #[test]
    fn a_killed_render_worker_is_retried_and_a_crashed_one_or_a_broken_template_is_not() {
        let render = |source| PipelineError::Render { job: "manager-weekly".into(), report: "Иван".into(), source };
        let worker = |killed| RenderError::Worker {
            template: "builtin:manager.typ".into(),
            message: "the worker process ended".into(),
            killed,
        };
        assert!(render(worker(true)).is_transient());
        assert!(!render(worker(false)).is_transient(), "a worker that crashed on its own would crash again");
        let broken =
            RenderError::Template { template: "t.typ".into(), line: 3, column: 21, message: "unknown variable".into() };
        assert!(!render(broken).is_transient());
        let export = RenderError::Pdf { template: "t.typ".into(), message: "no pages".into() };
        assert!(!render(export).is_transient());
    }
}
