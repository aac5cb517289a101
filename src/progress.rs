//! Progress a person can see while a job runs (issue 13, goal 5): the stage (fetch, KPI,
//! charts+render, delivery), the requests done of those expected, the rows fetched, the time
//! elapsed and the time left.
//!
//! [`Progress`] is a cheap-to-clone handle with counters; the pipeline sets the stage, the
//! Bitrix24 client counts requests and rows into it (the transport when a request
//! completes, the pager after each batch, when the lists' `total`s say how many pages are
//! left). Two views:
//!
//! - on a terminal, an `indicatif` bar on stderr, one per stage, with the job's elapsed time
//!   and `indicatif`'s estimate of the time left; log lines are printed above it;
//! - without one (stderr not a TTY, `JOURNAL_STREAM` set, the daemon), no bar: one `tracing`
//!   line when a stage starts and one every [`LOG_EVERY`] while a fetch runs.
//!
//! What it shows is numbers, stage names and the job's name and period from the config
//! (flattened to one line): never a CRM string, never the webhook. Standard output is never
//! written.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a log line tells how a long fetch is going (no terminal).
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// How often the terminal bar redraws while nothing moves (its clock and spinner).
const TICK: Duration = Duration::from_millis(250);

/// A stage of a job run, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Fetch,
    Kpi,
    Render,
    Delivery,
}

impl Stage {
    /// The stage's name as shown.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Fetch => "fetch",
            Stage::Kpi => "KPI",
            Stage::Render => "charts+render",
            Stage::Delivery => "delivery",
        }
    }

    /// What the stage counts.
    fn unit(self) -> &'static str {
        match self {
            Stage::Fetch => "requests",
            Stage::Kpi => "",
            Stage::Render => "reports",
            Stage::Delivery => "messages",
        }
    }

    /// The bar's layout: the stage, its counter, the elapsed time and the time left.
    fn template(self) -> String {
        match self {
            Stage::Fetch => {
                "{prefix} [{bar:24}] {pos}/~{len} requests, {msg} rows, {elapsed} elapsed, ~{eta} left".to_owned()
            }
            Stage::Kpi => "{prefix} {spinner} computing, {elapsed} elapsed".to_owned(),
            Stage::Render | Stage::Delivery => {
                format!("{{prefix}} [{{bar:24}}] {{pos}}/{{len}} {}, {{elapsed}} elapsed, ~{{eta}} left", self.unit())
            }
        }
    }

    fn style(self) -> ProgressStyle {
        ProgressStyle::with_template(&self.template())
            .expect("the stage templates are valid")
            .progress_chars("#>-")
            .tick_chars("-\\|/ ")
    }
}

/// The counters of a run, as they stand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// HTTP requests to the CRM completed, retries included.
    pub requests: u64,
    /// Requests expected in all: those done and those the lists' totals say are left.
    pub expected: u64,
    /// Rows fetched from the CRM.
    pub rows: u64,
    /// Reports rendered (charts+render) or messages handed to the mailer (delivery).
    pub items: u64,
    /// What `items` counts towards.
    pub items_total: u64,
}

/// The progress of the run in hand, shown on a terminal or logged; off by default (tests,
/// benchmarks, library use). Cheap to clone: clones share one state.
#[derive(Clone, Default)]
pub struct Progress {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = match self.inner.as_deref().map(|i| &i.view) {
            None => "off",
            Some(View::Bar { .. }) => "bar",
            Some(View::Log { .. }) => "log",
        };
        write!(f, "Progress({view})")
    }
}

/// Two handles are equal when they are one (or both off).
impl PartialEq for Progress {
    fn eq(&self, other: &Progress) -> bool {
        match (&self.inner, &other.inner) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

type Target = Box<dyn Fn() -> ProgressDrawTarget + Send + Sync>;

enum View {
    /// An `indicatif` bar per stage, drawn on what `target` makes (stderr).
    Bar { target: Target },
    /// `tracing` lines: one per stage, one every `every` during a fetch.
    Log { every: Duration },
}

struct Inner {
    view: View,
    requests: AtomicU64,
    expected: AtomicU64,
    rows: AtomicU64,
    items: AtomicU64,
    items_total: AtomicU64,
    state: Mutex<State>,
}

struct State {
    /// `manager-weekly 2026-W47`: from the config, one line.
    what: String,
    started: Instant,
    stage: Option<(Stage, Instant)>,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// No progress at all.
    pub fn off() -> Progress {
        Progress::default()
    }

    /// A bar on stderr (a terminal).
    pub fn terminal() -> Progress {
        Progress::with_view(View::Bar { target: Box::new(ProgressDrawTarget::stderr) })
    }

    /// A bar drawn on what `target` makes (tests draw on a recorder).
    pub fn bar_on(target: impl Fn() -> ProgressDrawTarget + Send + Sync + 'static) -> Progress {
        Progress::with_view(View::Bar { target: Box::new(target) })
    }

    /// Log lines: one per stage, and one every `every` while a fetch runs.
    pub fn log_lines(every: Duration) -> Progress {
        Progress::with_view(View::Log { every: every.max(Duration::from_millis(1)) })
    }

    /// What a command shows: log lines for the daemon, under systemd (`JOURNAL_STREAM`) or
    /// when stderr is not a terminal (or a dumb one); else a bar.
    pub fn for_command(daemon: bool) -> Progress {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        if daemon || std::env::var_os("JOURNAL_STREAM").is_some() || !terminal || dumb {
            Progress::log_lines(LOG_EVERY)
        } else {
            Progress::terminal()
        }
    }

    fn with_view(view: View) -> Progress {
        Progress {
            inner: Some(Arc::new(Inner {
                view,
                requests: AtomicU64::new(0),
                expected: AtomicU64::new(0),
                rows: AtomicU64::new(0),
                items: AtomicU64::new(0),
                items_total: AtomicU64::new(0),
                state: Mutex::new(State {
                    what: String::new(),
                    started: Instant::now(),
                    stage: None,
                    bar: None,
                    ticker: None,
                }),
            })),
        }
    }

    /// Starts a run of `what` (a job and period): counters at zero, the clock from now. The
    /// bar goes away (and the periodic line stops) when the returned guard drops.
    pub fn begin(&self, what: &str) -> Shown<'_> {
        if let Some(inner) = &self.inner {
            for counter in [&inner.requests, &inner.expected, &inner.rows, &inner.items, &inner.items_total] {
                counter.store(0, Ordering::Relaxed);
            }
            let mut state = inner.state();
            state.close();
            state.what = crate::text::one_line(what);
            state.started = Instant::now();
        }
        Shown(self)
    }

    /// Goes on with the run begun last (delivery after rendering); the bar goes away when
    /// the guard drops.
    pub fn resume(&self) -> Shown<'_> {
        Shown(self)
    }

    /// Enters `stage`; `total` is what it counts towards (reports, messages), when known.
    pub fn stage(&self, stage: Stage, total: Option<u64>) {
        let Some(inner) = &self.inner else { return };
        inner.items.store(0, Ordering::Relaxed);
        inner.items_total.store(total.unwrap_or(0), Ordering::Relaxed);
        let line = {
            let mut state = inner.state();
            state.close();
            state.stage = Some((stage, Instant::now()));
            match &inner.view {
                View::Bar { target } => {
                    let done = inner.requests.load(Ordering::Relaxed);
                    let len = match stage {
                        // At least the first request is to come.
                        Stage::Fetch => Some(inner.expected.load(Ordering::Relaxed).max(done + 1)),
                        Stage::Kpi => None,
                        Stage::Render | Stage::Delivery => total,
                    };
                    let bar = ProgressBar::with_draw_target(len, target())
                        .with_style(stage.style())
                        .with_prefix(format!("{} {}", state.what, stage.label()))
                        .with_elapsed(state.started.elapsed());
                    if stage == Stage::Fetch {
                        bar.set_message(inner.rows.load(Ordering::Relaxed).to_string());
                        bar.set_position(done);
                    }
                    bar.enable_steady_tick(TICK);
                    state.bar = Some(bar);
                    None
                }
                View::Log { every } => {
                    if stage == Stage::Fetch {
                        state.ticker = spawn_ticker(inner, *every);
                    }
                    Some(inner.stage_line(&state, stage))
                }
            }
        };
        // Logged outside the lock: a log writer may ask the state for the bar.
        if let Some(line) = line {
            tracing::info!(stage = stage.label(), "{line}");
        }
    }

    /// One HTTP request to the CRM completed (retries count).
    pub fn request_done(&self) {
        let Some(inner) = &self.inner else { return };
        let done = inner.requests.fetch_add(1, Ordering::Relaxed) + 1;
        inner.expected.fetch_max(done, Ordering::Relaxed);
        inner.draw_fetch();
    }

    /// A batch of pages was read: `rows` more rows, and the lists' totals say
    /// `requests_left` requests remain of the lists being walked.
    pub fn fetched(&self, rows: u64, requests_left: u64) {
        let Some(inner) = &self.inner else { return };
        inner.rows.fetch_add(rows, Ordering::Relaxed);
        inner.expected.store(inner.requests.load(Ordering::Relaxed) + requests_left, Ordering::Relaxed);
        inner.draw_fetch();
    }

    /// One more report rendered, or message handed to the mailer.
    pub fn item_done(&self) {
        let Some(inner) = &self.inner else { return };
        let done = inner.items.fetch_add(1, Ordering::Relaxed) + 1;
        // The admin's digest goes through the mailer too: the total grows with it.
        let total = inner.items_total.fetch_max(done, Ordering::Relaxed).max(done);
        if let Some(bar) = inner.state().bar.clone() {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// The counters as they stand.
    pub fn counts(&self) -> Counts {
        let Some(inner) = &self.inner else { return Counts::default() };
        Counts {
            requests: inner.requests.load(Ordering::Relaxed),
            expected: inner.expected.load(Ordering::Relaxed),
            rows: inner.rows.load(Ordering::Relaxed),
            items: inner.items.load(Ordering::Relaxed),
            items_total: inner.items_total.load(Ordering::Relaxed),
        }
    }

    /// The stage being shown, if any.
    pub fn current_stage(&self) -> Option<Stage> {
        self.inner.as_ref().and_then(|inner| inner.state().stage.map(|(stage, _)| stage))
    }

    /// Runs `f` with the bar taken off the screen (to write a log line above it).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        let bar = self.inner.as_ref().and_then(|inner| inner.state().bar.clone());
        match bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Standard error, writing around the bar: the log's writer.
    pub fn stderr(&self) -> Stderr {
        Stderr(self.clone())
    }

    /// Redraws the bar now, whatever its refresh rate (tests).
    pub fn draw(&self) {
        if let Some(bar) = self.inner.as_ref().and_then(|inner| inner.state().bar.clone()) {
            bar.force_draw();
        }
    }

    /// Takes the bar off the screen and stops the periodic line; the counters stay.
    fn clear(&self) {
        if let Some(inner) = &self.inner {
            inner.state().close();
        }
    }
}

/// Clears the bar when dropped ([`Progress::begin`], [`Progress::resume`]): what a command
/// prints on stdout after a stage never lands in the middle of a bar.
#[must_use = "the bar goes away when this drops"]
pub struct Shown<'a>(&'a Progress);

impl Drop for Shown<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Standard error for log lines: each write is made with the bar off the screen.
pub struct Stderr(Progress);

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.suspend(|| std::io::stderr().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn draw_fetch(&self) {
        let state = self.state();
        if let (Some(bar), Some((Stage::Fetch, _))) = (&state.bar, state.stage) {
            let done = self.requests.load(Ordering::Relaxed);
            bar.set_message(self.rows.load(Ordering::Relaxed).to_string());
            bar.set_length(self.expected.load(Ordering::Relaxed).max(done));
            bar.set_position(done);
        }
    }

    /// `manager-weekly 2026-W47: KPI (after 42 requests, 12345 rows; 3m02s elapsed).`
    fn stage_line(&self, state: &State, stage: Stage) -> String {
        let total = self.items_total.load(Ordering::Relaxed);
        let of = match stage {
            Stage::Render | Stage::Delivery => format!(" of {total} {}", stage.unit()),
            Stage::Fetch | Stage::Kpi => String::new(),
        };
        format!(
            "{}: {}{of} (after {} requests, {} rows; {} elapsed).",
            state.what,
            stage.label(),
            self.requests.load(Ordering::Relaxed),
            self.rows.load(Ordering::Relaxed),
            human(state.started.elapsed()),
        )
    }

    /// `manager-weekly 2026-W47: fetch, 120 of ~1021 requests, 5950 rows; 1m00s elapsed,
    /// ~7m30s left.`: the time left at the pace of the fetch so far.
    fn fetch_line(&self) -> Option<String> {
        let state = self.state();
        let (Stage::Fetch, since) = state.stage? else { return None };
        let done = self.requests.load(Ordering::Relaxed);
        let expected = self.expected.load(Ordering::Relaxed).max(done);
        let left = match done {
            0 => "unknown".to_owned(),
            _ => format!("~{}", human(since.elapsed().mul_f64((expected - done) as f64 / done as f64))),
        };
        Some(format!(
            "{}: fetch, {done} of ~{expected} requests, {} rows; {} elapsed, {left} left.",
            state.what,
            self.rows.load(Ordering::Relaxed),
            human(state.started.elapsed()),
        ))
    }

    fn log_fetch(&self) {
        if let Some(line) = self.fetch_line() {
            tracing::info!(stage = Stage::Fetch.label(), "{line}");
        }
    }
}

impl State {
    /// Ends what is shown: the bar cleared, the periodic line stopped.
    fn close(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.stage = None;
    }
}

/// The periodic fetch line, on the runtime the fetch runs on (none outside one).
fn spawn_ticker(inner: &Arc<Inner>, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let inner = Arc::downgrade(inner);
    let first = tokio::time::Instant::now() + every;
    Some(runtime.spawn(async move {
        let mut interval = tokio::time::interval_at(first, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            inner.log_fetch();
        }
    }))
}

/// `42s`, `3m02s`, `1h05m`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests;
