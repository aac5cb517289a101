//! The Bitrix24 client: fetches what one report needs over an incoming webhook and returns
//! it as a complete [`CrmSnapshot`], or an error that says whether a retry can help.
//!
//! How it stays gentle with a portal (Bitrix24's REST documentation): every list is walked in `ID` order
//! with the `>ID` + `start: -1` keyset (no COUNT query after the first page), up to 50 pages
//! of several lists are packed into one `batch` call whose commands chain
//! `$result[prev][49][ID]`, and a client-side leaky bucket ([`limiter`]) keeps the request
//! rate under the portal's. Failures are classified by the `error` field, not the HTTP
//! status; transient ones are retried with capped, jittered backoff. An answer that is not
//! JSON (an HTML page, a cut-off body) is transient once the portal has answered this client
//! with a proper envelope; on first contact an HTML page means a wrong URL. The webhook code never
//! leaves this module: logs and errors show `https://portal/rest/1/***/`, and since a portal
//! may echo the code back (a redirect's `backurl=%2Frest%2F1%2F<code>%2Fbatch`, an
//! `error_description` quoting the path), every error leaves through [`Bitrix24Client::run`],
//! which scrubs the code from it in every encoding ([`Secret::scrub`]), as do the retry logs.
//!
//! The portal's operating-time limit (§3: a method may run 480 s within 10 min, then it is
//! refused OPERATION_TIME_LIMIT) is kept per method from the `time` object of every answer
//! and every `result_time` of a batch: before a method whose last known `operating` is
//! within [`ClientSettings::operating_margin`] of [`ClientSettings::operating_limit`] is
//! called again, the client waits until its `operating_reset_at`, and it packs no more
//! commands of a method into a batch than the cost per call it last saw fits under that
//! margin. A method refused anyway keeps the pages answered before the refusal; the rest of
//! its list is asked for again after the reset (a lone refusal while the known sum is far
//! below the limit is only backed off from; a second one in a row waits for the reset). A
//! wait longer than [`ClientSettings::max_operating_wait`], or more than `max_retries`
//! batches in a row of which the limit lets nothing through, ends the run with a transient
//! error naming the method.
//!
//! Wire types and their conversion are in [`wire`]; the client reading through the local
//! cache of fetched records is [`cached`]; the KPI arithmetic is `kpi`'s job.

pub mod cached;
pub mod limiter;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use url::Url;

use crate::config::Secret;
use crate::crm::{CrmError, CrmSource, FetchRequest};
use crate::domain::{CrmSnapshot, Id, Semantics};

use self::limiter::LeakyBucket;
use self::wire::{ApiError, Envelope, Notes};

/// Bitrix24's fixed page size.
pub const PAGE: usize = 50;
/// At most this many commands go into one `batch`.
pub const BATCH_MAX: usize = 50;

/// How the client paces and retries.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSettings {
    /// Requests per second the client's bucket drains (Bitrix24: 2, Enterprise: 5).
    pub rate_per_sec: f64,
    /// Requests the bucket holds before it waits (Bitrix24: 50, Enterprise: 250).
    pub burst: u32,
    /// Per-request timeout (a cloud portal gives up after 60 s itself).
    pub timeout: Duration,
    /// Retries of one request after a transient failure.
    pub max_retries: u32,
    /// The portal's operating-time limit per method (Bitrix24 cloud: 480 s within 10 min).
    pub operating_limit: Duration,
    /// The fraction of `operating_limit` kept free: a method whose last known operating time
    /// is above `limit × (1 − margin)` waits for its oldest basket to drop out first.
    pub operating_margin: f64,
    /// The longest one wait for an operating-time reset may be; a longer one fails the run.
    pub max_operating_wait: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            rate_per_sec: 2.0,
            burst: 50,
            timeout: Duration::from_secs(60),
            max_retries: 8,
            operating_limit: Duration::from_secs(480),
            operating_margin: 0.1,
            // A basket drops out at most one 10-minute window after it opened.
            max_operating_wait: Duration::from_secs(610),
        }
    }
}

/// A Bitrix24 portal behind an incoming webhook. Cheap to clone; clones share the bucket.
#[derive(Clone)]
pub struct Bitrix24Client {
    inner: Arc<Inner>,
}

// By hand: the base URL holds the webhook code.
impl std::fmt::Debug for Bitrix24Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitrix24Client").field("portal", &self.inner.redacted).finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    /// The webhook base, always ending in `/`. Secret: never printed.
    base: Url,
    /// `https://portal/rest/1/***/`, for logs and errors.
    redacted: String,
    /// The webhook code alone, to scrub it from whatever the portal answers.
    code: Secret,
    settings: ClientSettings,
    bucket: LeakyBucket,
    requests: AtomicU64,
    /// Whether the portal has answered this client with a Bitrix24 envelope: after that,
    /// an HTML page is a hiccup of the portal or a proxy in front of it, not a wrong URL.
    answered: AtomicBool,
    /// The last known operating time of each method.
    operating: Mutex<HashMap<String, MethodTime>>,
}

/// What the portal last said about one method's operating time.
#[derive(Clone, Copy, Debug)]
struct MethodTime {
    /// Seconds used within the portal's window.
    used: f64,
    /// When its oldest basket drops out, if the portal said.
    resets: Option<tokio::time::Instant>,
    /// Seconds one call added last time: how many more calls fit before the limit.
    step: Option<f64>,
    /// Answers in a row that refused the method without serving it once.
    stuck: u32,
}

/// A failure of one attempt, before retries decide.
enum Failure {
    Transient(String, String),
    /// OPERATION_TIME_LIMIT: transient, but a retry waits for the method's reset.
    Operating(String, String),
    Permanent(String, String),
}

/// A batch's answers, and the commands refused for their method's operating time.
struct BatchAnswers {
    answers: BTreeMap<String, Answer>,
    /// (method, detail) of each refused command.
    blocked: Vec<(String, String)>,
}

/// One command of a `batch`.
struct Command {
    key: String,
    method: &'static str,
    query: String,
}

/// One command's answer.
#[derive(Default)]
struct Answer {
    result: Value,
    total: Option<u64>,
    next: Option<u64>,
    operating: Option<wire::Operating>,
}

impl Bitrix24Client {
    /// `webhook_url` is the incoming webhook, `https://portal/rest/<user>/<code>/` (the
    /// trailing slash is optional). Plain `http` is refused except on loopback (the emulator).
    pub fn new(webhook_url: &Secret, settings: ClientSettings) -> Result<Self, CrmError> {
        let bad = |detail: String| CrmError::Permanent { method: "webhook".to_owned(), detail };
        let mut base = Url::parse(webhook_url.expose().trim()).map_err(|e| {
            bad(format!("the webhook URL is not a URL: {e}; expected https://<portal>/rest/<user id>/<code>/"))
        })?;
        let host = base.host_str().unwrap_or_default().to_owned();
        let loopback =
            host == "localhost" || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        match base.scheme() {
            "https" => {}
            "http" if loopback => {}
            other => {
                return Err(bad(format!(
                    "the webhook URL uses {other}://; Bitrix24 requires https:// (plain http only on loopback)"
                )));
            }
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad(
                "the webhook URL has a query or fragment; expected https://<portal>/rest/<user id>/<code>/".into(),
            ));
        }
        let segments: Vec<String> =
            base.path_segments().map(|s| s.filter(|p| !p.is_empty()).map(str::to_owned).collect()).unwrap_or_default();
        let Some(rest) = segments.iter().rposition(|s| s == "rest") else {
            return Err(bad("the webhook URL has no /rest/<user id>/<code>/ path".into()));
        };
        if segments.len() != rest + 3 || segments[rest + 1].parse::<u64>().is_err() {
            return Err(bad("the webhook URL does not end in /rest/<user id>/<code>/".into()));
        }
        base.set_path(&format!("{}/", segments.join("/")));
        let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
        let redacted = format!("{}://{host}{port}/{}/***/", base.scheme(), segments[..rest + 2].join("/"));
        let code = Secret::new(segments[rest + 2].clone());
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(format!("failed to build the HTTP client: {}", e.without_url())))?;
        let bucket = LeakyBucket::new(settings.rate_per_sec, settings.burst);
        Ok(Bitrix24Client {
            inner: Arc::new(Inner {
                http,
                base,
                redacted,
                code,
                settings,
                bucket,
                requests: AtomicU64::new(0),
                answered: AtomicBool::new(false),
                operating: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests_made(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// The webhook URL with its code masked, for logs.
    pub fn redacted_url(&self) -> &str {
        &self.inner.redacted
    }

    /// The webhook's scopes, as the portal's `scope` method lists them (a basic method every
    /// webhook may call).
    pub async fn scopes(&self) -> Result<Vec<String>, CrmError> {
        let answer = self.call("scope", "scope", &json!({})).await?;
        let list = answer.result.as_array().ok_or_else(|| CrmError::Permanent {
            method: "scope".to_owned(),
            detail: format!("unexpected answer: expected a list of scopes, got {}", answer.result),
        })?;
        Ok(list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
    }

    /// Calls one method with retries. `label` names it in errors (for a batch: its commands).
    async fn call(&self, method: &str, label: &str, params: &Value) -> Result<Answer, CrmError> {
        let mut attempt: u32 = 0;
        loop {
            self.await_operating(method).await?;
            self.inner.bucket.acquire().await;
            self.inner.requests.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(portal = %self.inner.redacted, method = label, attempt, "Calling Bitrix24.");
            match self.once(method, label, params).await {
                Ok(answer) => {
                    // The outer `batch` is not accounted; its commands are, in `batch`.
                    if method != "batch"
                        && let Some(operating) = answer.operating
                    {
                        self.note_operating(method, operating);
                    }
                    return Ok(answer);
                }
                Err(Failure::Permanent(method, detail)) => return Err(CrmError::Permanent { method, detail }),
                Err(Failure::Operating(shown, detail)) => {
                    if attempt >= self.inner.settings.max_retries {
                        return Err(CrmError::Transient {
                            method: shown,
                            detail: format!("{detail}; gave up after {} attempts", attempt + 1),
                        });
                    }
                    self.note_refused(method, false);
                    tracing::warn!(portal = %self.inner.redacted, method = %shown, attempt, detail = %self.scrub(&detail), "Bitrix24 method over its operating-time limit; retrying after its reset.");
                    // With a known reset ahead, the wait at the top of the loop is the right
                    // one; without, the portal said nothing of when, so back off.
                    if !self.reset_pending(method) {
                        tokio::time::sleep(self.backoff(attempt)).await;
                    }
                    attempt += 1;
                }
                Err(Failure::Transient(method, detail)) => {
                    if attempt >= self.inner.settings.max_retries {
                        return Err(CrmError::Transient {
                            method,
                            detail: format!("{detail}; gave up after {} attempts", attempt + 1),
                        });
                    }
                    let wait = self.backoff(attempt);
                    tracing::warn!(portal = %self.inner.redacted, method = %method, attempt, wait_ms = wait.as_millis() as u64, detail = %self.scrub(&detail), "Bitrix24 call failed; retrying.");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Capped exponential backoff with jitter. The base is one bucket drain interval
    /// (0.5 s at 2 req/s): after QUERY_LIMIT_EXCEEDED that is when a slot frees up.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = (1.0 / self.inner.settings.rate_per_sec.max(0.001)).clamp(0.01, 1.0);
        let exp = (base * 2f64.powi(attempt.min(16) as i32)).min(30.0);
        Duration::from_secs_f64(exp * (0.5 + fastrand::f64() * 0.5))
    }

    async fn once(&self, method: &str, label: &str, params: &Value) -> Result<Answer, Failure> {
        let transient = |d: String| Failure::Transient(label.to_owned(), d);
        let permanent = |d: String| Failure::Permanent(label.to_owned(), d);
        let url = self.inner.base.join(method).map_err(|e| permanent(format!("bad method name: {e}")))?;
        let response = self.inner.http.post(url).json(params).send().await.map_err(|e| {
            let e = e.without_url();
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "connection failed"
            };
            transient(format!("{what} to {}: {e}", self.inner.redacted))
        })?;
        let status = response.status();
        let location = response.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|e| transient(format!("connection dropped mid-answer: {}", e.without_url())))?;
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                let text = String::from_utf8_lossy(&body);
                let head = text.trim_start();
                return Err(if status.is_redirection() {
                    permanent(format!(
                        "the portal redirected (HTTP {status}{}); the portal may be blocked, unpaid or moved — open it in a browser",
                        location.map(|l| format!(" to {}", redact_location(&l))).unwrap_or_default()
                    ))
                } else if status.is_server_error() {
                    transient(format!("HTTP {status} without a JSON answer"))
                } else if head.starts_with('<') && self.inner.answered.load(Ordering::Relaxed) {
                    // The portal answered JSON earlier in this run, so the URL is right: a PHP
                    // error page or a DDoS-protection challenge, which passes.
                    transient(format!(
                        "the portal answered HTML instead of JSON (HTTP {status}) after answering JSON earlier in this run"
                    ))
                } else if head.starts_with('<') {
                    permanent(format!(
                        "the portal answered HTML instead of JSON (HTTP {status}); check that crm.webhook_url is an incoming webhook URL ending in /rest/<user id>/<code>/"
                    ))
                } else if e.is_eof() {
                    transient(format!("truncated JSON answer (HTTP {status}, {} bytes)", body.len()))
                } else {
                    transient(format!("unreadable JSON answer (HTTP {status}: {e})"))
                });
            }
        };
        let envelope = wire::decode_envelope(&value);
        if envelope.is_ok() {
            self.inner.answered.store(true, Ordering::Relaxed);
        }
        match envelope {
            Ok(Envelope::Success { result, next, total }) => {
                let operating = value.get("time").and_then(wire::decode_operating);
                Ok(Answer { result, next, total, operating })
            }
            Ok(Envelope::Error(api)) => Err(classify(label, &api, status.as_u16())),
            Err(detail) if status.is_server_error() => Err(transient(format!("HTTP {status}: {detail}"))),
            Err(detail) => Err(permanent(format!("the answer is not a Bitrix24 envelope ({detail})"))),
        }
    }

    /// Runs commands in one `batch` (retried as a whole: every command is a read). A
    /// command's own error is classified like a call's; a command refused for its method's
    /// operating time is left out of the answers and named in `blocked`, so that the caller
    /// keeps what was answered and asks for the rest after the reset.
    async fn batch(&self, commands: &[Command]) -> Result<BatchAnswers, CrmError> {
        let methods: BTreeSet<&str> = commands.iter().map(|c| c.method).collect();
        let label = format!("batch [{}]", methods.iter().copied().collect::<Vec<_>>().join(", "));
        let cmd: Map<String, Value> =
            commands.iter().map(|c| (c.key.clone(), Value::String(format!("{}?{}", c.method, c.query)))).collect();
        let params = json!({"halt": 0, "cmd": cmd});
        let mut attempt = 0;
        loop {
            for method in &methods {
                self.await_operating(method).await?;
            }
            let answer = self.call("batch", &label, &params).await?;
            let decoded = wire::decode_batch(&answer.result).map_err(|detail| CrmError::Permanent {
                method: label.clone(),
                detail: format!("broken batch answer: {detail}"),
            })?;
            // In key order, which is execution order: the last word on a method is its latest.
            for c in commands {
                if let Some(operating) = decoded.operating.get(&c.key) {
                    self.note_operating(c.method, *operating);
                }
            }
            let mut retry = None;
            let mut blocked = Vec::new();
            let mut refused = BTreeSet::new();
            for (key, err) in &decoded.errors {
                let method = commands.iter().find(|c| &c.key == key).map(|c| c.method).unwrap_or("batch");
                match classify(method, err, 400) {
                    Failure::Permanent(method, detail) => return Err(CrmError::Permanent { method, detail }),
                    Failure::Transient(method, detail) => retry = Some((method, detail)),
                    Failure::Operating(shown, detail) => {
                        refused.insert(method);
                        blocked.push((shown, detail));
                    }
                }
            }
            for method in refused {
                let served = commands.iter().any(|c| c.method == method && decoded.results.contains_key(&c.key));
                self.note_refused(method, served);
            }
            if retry.is_none()
                && let Some(lost) = commands
                    .iter()
                    .find(|c| !decoded.results.contains_key(&c.key) && !decoded.errors.contains_key(&c.key))
            {
                // Neither a result nor an error: a page silently missing would make the
                // list look shorter than it is, so the batch is asked again.
                retry = Some((lost.method.to_owned(), format!("the batch answer lacks command {}", lost.key)));
            }
            if let Some((method, detail)) = retry {
                if attempt >= self.inner.settings.max_retries {
                    return Err(CrmError::Transient {
                        method,
                        detail: format!("{detail}; gave up after {} attempts", attempt + 1),
                    });
                }
                let wait = self.backoff(attempt);
                tracing::warn!(portal = %self.inner.redacted, method = %method, attempt, detail = %self.scrub(&detail), "Bitrix24 batch command failed; retrying the batch.");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let mut answers = BTreeMap::new();
            for c in commands.iter().filter(|c| !decoded.errors.contains_key(&c.key)) {
                answers.insert(
                    c.key.clone(),
                    Answer {
                        result: decoded.results.get(&c.key).cloned().unwrap_or(Value::Null),
                        total: decoded.totals.get(&c.key).copied(),
                        next: decoded.nexts.get(&c.key).copied(),
                        operating: decoded.operating.get(&c.key).copied(),
                    },
                );
            }
            return Ok(BatchAnswers { answers, blocked });
        }
    }

    fn note_operating(&self, method: &str, operating: wire::Operating) {
        let resets = operating.resets_in.map(|d| tokio::time::Instant::now() + d);
        let mut known = self.inner.operating.lock().expect("no panics while holding the operating times");
        let step = match known.get(method) {
            // A drop means a basket dropped out: the step is unknown, keep the last one.
            Some(before) if operating.used > before.used => Some(operating.used - before.used),
            Some(before) => before.step,
            // The first word on a method: its sum is at most what this call cost.
            None => (operating.used > 0.0).then_some(operating.used),
        };
        known.insert(method.to_owned(), MethodTime { used: operating.used, resets, step, stuck: 0 });
    }

    /// One answer's refusal of `method` (once per answer); `served` when the same answer
    /// also served it (a batch that crossed the limit midway).
    fn note_refused(&self, method: &str, served: bool) {
        let limit = self.inner.settings.operating_limit.as_secs_f64();
        let threshold = self.operating_threshold();
        let mut known = self.inner.operating.lock().expect("no panics while holding the operating times");
        let t = known.entry(method.to_owned()).or_insert(MethodTime { used: 0.0, resets: None, step: None, stuck: 0 });
        t.stuck = if served { 0 } else { t.stuck + 1 };
        // Explained by the sum the portal reported, or refused twice in a row without being
        // served: the method is at its limit, and the next call waits for its reset. A lone
        // refusal while far under the limit (a glitch, or another user of the webhook) is
        // only backed off from: its reset may be ten minutes away for nothing.
        if t.used >= threshold || t.stuck >= 2 {
            t.used = t.used.max(limit);
        }
    }

    /// Whether [`Self::await_operating`] will wait for `method`'s reset.
    fn reset_pending(&self, method: &str) -> bool {
        let threshold = self.operating_threshold();
        let known = self.inner.operating.lock().expect("no panics while holding the operating times");
        known
            .get(method)
            .filter(|t| t.used >= threshold)
            .and_then(|t| t.resets)
            .is_some_and(|at| at > tokio::time::Instant::now())
    }

    /// The threshold the operating time of a method is kept under, in seconds.
    fn operating_threshold(&self) -> f64 {
        let s = &self.inner.settings;
        s.operating_limit.as_secs_f64() * (1.0 - s.operating_margin.clamp(0.0, 1.0))
    }

    /// How many commands of `method` one batch may hold: as many as its last known step
    /// fits under the threshold, at least one (after a reset the sum is not known until the
    /// next answer, and the call that crosses a limit is still served).
    fn operating_room(&self, method: &str) -> usize {
        let threshold = self.operating_threshold();
        let known = self.inner.operating.lock().expect("no panics while holding the operating times");
        match known.get(method).and_then(|t| Some((t.used, t.step?))) {
            Some((used, step)) if step > 0.0 => (((threshold - used) / step).floor().max(1.0) as usize).min(BATCH_MAX),
            _ => BATCH_MAX,
        }
    }

    /// Waits while `method`'s last known operating time is within the margin of the limit
    /// and its oldest basket has not dropped out yet; fails when that is too far away.
    async fn await_operating(&self, method: &str) -> Result<(), CrmError> {
        let s = &self.inner.settings;
        let limit = s.operating_limit.as_secs_f64();
        let threshold = self.operating_threshold();
        let pending = {
            let known = self.inner.operating.lock().expect("no panics while holding the operating times");
            known.get(method).filter(|t| t.used >= threshold).and_then(|t| {
                let wait = t.resets?.saturating_duration_since(tokio::time::Instant::now());
                (!wait.is_zero()).then_some((wait, t.used))
            })
        };
        let Some((wait, used)) = pending else { return Ok(()) };
        if wait > s.max_operating_wait {
            return Err(CrmError::Transient {
                method: method.to_owned(),
                detail: format!(
                    "the portal's operating-time limit for the method was reached ({used:.1} s of {limit:.0} s used); \
                     it frees up in {} s, longer than a run waits ({} s)",
                    wait.as_secs(),
                    s.max_operating_wait.as_secs()
                ),
            });
        }
        tracing::info!(portal = %self.inner.redacted, method, used_s = used, wait_ms = wait.as_millis() as u64, "Bitrix24 method near its operating-time limit; waiting for its reset.");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Walks every list to its end, packing up to [`BATCH_MAX`] pages per `batch`. Every
    /// request of both clients (this one and `cached`) is made here, so every `CrmError`
    /// they return passes here: the one place its text is scrubbed of the webhook code.
    async fn run(&self, jobs: &mut [ListJob]) -> Result<(), CrmError> {
        self.walk(jobs).await.map_err(|e| match e {
            CrmError::Transient { method, detail } => {
                CrmError::Transient { method: self.scrub(&method), detail: self.scrub(&detail) }
            }
            CrmError::Permanent { method, detail } => {
                CrmError::Permanent { method: self.scrub(&method), detail: self.scrub(&detail) }
            }
        })
    }

    /// `text` without the webhook code, plain or encoded.
    fn scrub(&self, text: &str) -> String {
        self.inner.code.scrub(text)
    }

    async fn walk(&self, jobs: &mut [ListJob]) -> Result<(), CrmError> {
        let mut rounds = 0usize;
        // Rounds in a row in which the operating-time limit let nothing through.
        let mut stalled: u32 = 0;
        while jobs.iter().any(|j| !j.done) {
            rounds += 1;
            let mut commands = Vec::new();
            let mut plan: Vec<(usize, usize)> = Vec::new(); // (job, commands)
            // Commands each method may still take this round under its operating time.
            let mut budget: HashMap<&'static str, usize> = HashMap::new();
            for (i, job) in jobs.iter_mut().enumerate() {
                let left = budget.entry(job.method).or_insert_with(|| self.operating_room(job.method));
                let room = (BATCH_MAX - commands.len()).min(*left);
                if job.done || room == 0 {
                    continue;
                }
                let cmds = job.commands(i, rounds, room);
                *left = left.saturating_sub(cmds.len());
                plan.push((i, cmds.len()));
                commands.extend(cmds);
            }
            let BatchAnswers { mut answers, blocked } = self.batch(&commands).await?;
            let mut at = 0;
            let mut progressed = false;
            for (i, n) in plan {
                // A job takes its pages up to the first refused one: later ones chained on it
                // (`$result[..]`) and are asked for again next round.
                let mine: Vec<Answer> = commands[at..at + n].iter().map_while(|c| answers.remove(&c.key)).collect();
                at += n;
                if !mine.is_empty() {
                    progressed = true;
                    jobs[i].absorb(mine)?;
                }
            }
            if let Some((method, detail)) = blocked.into_iter().next() {
                if progressed {
                    stalled = 0;
                } else {
                    if stalled >= self.inner.settings.max_retries {
                        return Err(CrmError::Transient {
                            method,
                            detail: format!("{detail}; gave up after {} attempts", stalled + 1),
                        });
                    }
                    // The next batch waits for a reset the portal announced; without one, back off.
                    if !self.reset_pending(&method) {
                        tokio::time::sleep(self.backoff(stalled)).await;
                    }
                    stalled += 1;
                }
            }
        }
        Ok(())
    }
}

/// How a list is paged.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Paging {
    /// `start` = 0, 50, …: small lists of reference data, and methods without `>ID`.
    Offset,
    /// First page with `start=0` (for `total`), then `>ID` + `start=-1` chains.
    Keyset,
    /// One call, no paging (`crm.currency.list`, `crm.deal.productrows.get`, `@ID` chunks).
    Single,
}

struct ListJob {
    method: &'static str,
    params: Value,
    paging: Paging,
    /// `items` for `crm.stagehistory.list`: where the rows sit inside a result.
    wrap: Option<&'static str>,
    rows: Vec<Map<String, Value>>,
    total: Option<u64>,
    next_offset: Option<u64>,
    last_id: Option<u64>,
    probed: bool,
    done: bool,
}

impl ListJob {
    fn new(method: &'static str, params: Value, paging: Paging) -> ListJob {
        ListJob {
            method,
            params,
            paging,
            wrap: None,
            rows: Vec::new(),
            total: None,
            next_offset: None,
            last_id: None,
            probed: false,
            done: false,
        }
    }

    fn query(&self, extra: &[(&str, Value)]) -> String {
        let mut p = self.params.clone();
        let obj = p.as_object_mut().expect("list params are an object");
        for (k, v) in extra {
            if let Some(key) = k.strip_prefix("filter.") {
                let f = obj.entry("filter").or_insert_with(|| json!({}));
                f.as_object_mut().expect("filter is an object").insert(key.to_owned(), v.clone());
            } else {
                obj.insert((*k).to_owned(), v.clone());
            }
        }
        php_query(&p)
    }

    fn commands(&self, job: usize, round: usize, room: usize) -> Vec<Command> {
        // Zero-padded so that the keys sort in execution order: a JSON object may reach the
        // portal with its keys sorted, and a `$result[..]` reference must point backwards.
        let key = |n: usize| format!("j{job:03}r{round:04}p{n:02}");
        let cmd = |n: usize, query: String| Command { key: key(n), method: self.method, query };
        if !self.probed {
            return vec![cmd(
                0,
                match self.paging {
                    Paging::Single => self.query(&[]),
                    _ => self.query(&[("start", json!(0))]),
                },
            )];
        }
        match self.paging {
            Paging::Single => Vec::new(),
            Paging::Offset => {
                let from = self.next_offset.unwrap_or(0);
                let until = self.total.unwrap_or(from + 1).max(from + 1);
                let pages = (until - from).div_ceil(PAGE as u64).max(1) as usize;
                (0..pages.min(room))
                    .map(|n| cmd(n, self.query(&[("start", json!(from + (n * PAGE) as u64))])))
                    .collect()
            }
            Paging::Keyset => {
                let remaining = self.total.unwrap_or(0).saturating_sub(self.rows.len() as u64);
                let pages = (remaining.div_ceil(PAGE as u64) as usize).max(1).min(room);
                let wrap = self.wrap.map(|w| format!("[{w}]")).unwrap_or_default();
                (0..pages)
                    .map(|n| {
                        let after = if n == 0 {
                            json!(self.last_id.unwrap_or(0))
                        } else {
                            // Resolved by the portal from the previous command's last row.
                            json!(format!("$result[{}]{wrap}[{}][ID]", key(n - 1), PAGE - 1))
                        };
                        cmd(n, self.query(&[("filter.>ID", after), ("start", json!(-1))]))
                    })
                    .collect()
            }
        }
    }

    fn absorb(&mut self, answers: Vec<Answer>) -> Result<(), CrmError> {
        let broken = |detail: String| CrmError::Permanent { method: self.method.to_owned(), detail };
        let probing = !self.probed;
        self.probed = true;
        for answer in answers {
            let page = wire::rows(&answer.result).map_err(|d| broken(format!("unexpected answer: {d}")))?;
            let n = page.len();
            let before = self.last_id;
            if let Some(last) = page.last() {
                self.last_id = wire::Row::new(last).id(&["ID", "id"]).ok().flatten().or(self.last_id);
            }
            self.rows.extend(page);
            match self.paging {
                Paging::Single => {
                    // A count (`start=0`) answers its `total` here too.
                    self.total = answer.total;
                    self.done = true;
                }
                Paging::Offset => {
                    if probing {
                        self.total = answer.total;
                    }
                    self.next_offset = answer.next;
                    if answer.next.is_none() {
                        self.done = true;
                    }
                }
                Paging::Keyset => {
                    if probing {
                        self.total = answer.total;
                    }
                    if n < PAGE || self.total.is_some_and(|t| self.rows.len() as u64 >= t) {
                        self.done = true;
                    } else if self.last_id <= before && !probing {
                        return Err(broken(format!("paging by >ID did not advance past ID {:?}", before)));
                    }
                }
            }
            if self.done {
                break;
            }
        }
        Ok(())
    }
}

/// `http_build_query` as PHP writes it: `filter[>ID]=5&select[0]=ID&order[ID]=ASC`.
pub fn php_query(params: &Value) -> String {
    fn enc(s: &str) -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        let key = |k: &str| if prefix.is_empty() { enc(k) } else { format!("{prefix}[{}]", enc(k)) };
        match v {
            Value::Object(m) => m.iter().for_each(|(k, x)| walk(&key(k), x, out)),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| walk(&key(&i.to_string()), x, out)),
            // PHP leaves nulls out.
            Value::Null => {}
            Value::Bool(b) => out.push(format!("{prefix}={}", u8::from(*b))),
            Value::Number(n) => out.push(format!("{prefix}={n}")),
            Value::String(s) => out.push(format!("{prefix}={}", enc(s))),
        }
    }
    let mut out = Vec::new();
    walk("", params, &mut out);
    out.join("&")
}

/// Masks the webhook code in a redirect target before it goes into an error.
fn redact_location(location: &str) -> String {
    match location.find("/rest/") {
        Some(i) => format!("{}/rest/***", &location[..i]),
        None => location.to_owned(),
    }
}

/// Sorts an error into retry-later or tell-the-admin, by its code first (statuses vary:
/// QUERY_LIMIT_EXCEEDED has been 429, 503 and 200), then by the HTTP status.
fn classify(method: &str, api: &ApiError, status: u16) -> Failure {
    let shown = if api.description.is_empty() {
        api.code.clone()
    } else if api.code.is_empty() {
        api.description.clone()
    } else {
        format!("{}: {}", api.code, api.description)
    };
    let t = |d: String| Failure::Transient(method.to_owned(), d);
    let p = |d: String| Failure::Permanent(method.to_owned(), d);
    match api.code.to_ascii_uppercase().as_str() {
        "QUERY_LIMIT_EXCEEDED" => t(format!("the portal's request limit was hit ({shown})")),
        "OPERATION_TIME_LIMIT" => Failure::Operating(
            method.to_owned(),
            format!("the portal's operating-time limit for the method was reached ({shown})"),
        ),
        "INTERNAL_SERVER_ERROR" | "ERROR_UNEXPECTED_ANSWER" | "ERROR_INTERNAL" => {
            t(format!("the portal had an internal error ({shown})"))
        }
        "INVALID_CREDENTIALS" | "NO_AUTH_FOUND" | "EXPIRED_TOKEN" | "INVALID_TOKEN" => p(format!(
            "the portal rejected the webhook ({shown}); check crm.webhook_url, or create a new incoming webhook in Bitrix24"
        )),
        "INSUFFICIENT_SCOPE" => p(format!(
            "the webhook lacks a permission ({shown}); give the incoming webhook the crm, user_basic (or user) and department scopes (docs/operations.md)"
        )),
        "ACCESS_DENIED" | "ALLOWED_ONLY_INTRANET_USER" => p(format!(
            "access denied ({shown}); the REST API needs a commercial plan, and the webhook's user needs read access to the CRM"
        )),
        "ERROR_METHOD_NOT_FOUND" => {
            p(format!("method not found ({shown}); check that crm.webhook_url ends in /rest/<user id>/<code>/"))
        }
        "INVALID_REQUEST" => p(format!("the portal refused the request ({shown}); the webhook URL must use https://")),
        "OVERLOAD_LIMIT" => {
            p(format!("the portal blocked REST access ({shown}); ask Bitrix24 support to lift the block"))
        }
        "PORTAL_DELETED" => p(format!("the portal is gone ({shown}); check crm.webhook_url")),
        _ if status >= 500 => t(format!("HTTP {status} ({shown})")),
        _ => p(format!(
            "the portal refused the request (HTTP {status}: {shown}); this is a bug or a portal salespulse does not support, please report it"
        )),
    }
}

impl CrmSource for Bitrix24Client {
    async fn fetch(&self, request: &FetchRequest) -> Result<CrmSnapshot, CrmError> {
        let since = Value::String(request.since.to_rfc3339());
        tracing::info!(portal = %self.inner.redacted, since = %request.since.to_rfc3339(), "Fetching CRM records.");

        // Reference data: who, where, which pipelines, which money.
        let mut assembly = Assembly::new(self.fetch_reference().await?);

        // Stages of every pipeline, and the records of the window.
        let deal_select = deal_select(request);
        let mut jobs = assembly.stage_jobs();
        let stage_jobs = jobs.len();
        jobs.push(deal_job(json!({">=DATE_MODIFY": since}), &deal_select));
        jobs.push(deal_job(json!({"STAGE_SEMANTIC_ID": "P"}), &deal_select));
        jobs.push(lead_job(json!({">=DATE_CREATE": since}), &wire::LEAD_FIELDS));
        jobs.push(activity_job(">=CREATED", since.clone(), &wire::ACTIVITY_FIELDS));
        jobs.push(history_job(json!({">=CREATED_TIME": since}), &HISTORY_FIELDS));
        self.run(&mut jobs).await?;

        let rest = jobs.split_off(stage_jobs);
        assembly.add_stages(jobs);
        let [modified, open, leads, activities, history] = take_rows(rest);
        assembly.add_window(request, &modified, &open, &leads, &activities, &history);

        // Leads that fetched deals came from, created before the window, and the product
        // rows of the deals won in the report's period.
        let missing = assembly.missing_leads();
        let won = assembly.product_deals(request);
        let mut lead_jobs = missing_lead_jobs(&missing, &wire::LEAD_FIELDS);
        let lead_job_count = lead_jobs.len();
        lead_jobs.extend(won.iter().map(|id| product_rows_job(*id)));
        self.run(&mut lead_jobs).await?;
        let product_jobs = lead_jobs.split_off(lead_job_count);
        for job in &lead_jobs {
            assembly.add_leads(&job.rows);
        }
        for (deal_id, job) in won.iter().zip(&product_jobs) {
            assembly.add_product_rows(*deal_id, &job.rows);
        }
        let snapshot = assembly.finish();
        tracing::info!(
            portal = %self.inner.redacted,
            requests = self.requests_made(),
            deals = snapshot.deals.len(),
            leads = snapshot.leads.len(),
            activities = snapshot.activities.len(),
            "CRM records fetched."
        );
        Ok(snapshot)
    }
}

/// The webhook scopes salespulse needs: the scope to tick, the scopes that satisfy it
/// (Bitrix24 nests `user_brief` < `user_basic` < `user`), and why (docs/operations.md).
pub const REQUIRED_SCOPES: [(&str, &[&str], &str); 3] = [
    (
        "crm",
        &["crm"],
        "deals, leads, activities, stage history, pipelines and stages, currencies, lead sources, product rows (crm.*)",
    ),
    ("user_basic", &["user_basic", "user"], "the managers with their departments and e-mail addresses (user.get)"),
    ("department", &["department"], "the sales departments and their sub-departments (department.get)"),
];

/// The required scopes `granted` lacks, each with why it is needed.
pub fn missing_scopes(granted: &[String]) -> Vec<(&'static str, &'static str)> {
    REQUIRED_SCOPES
        .iter()
        .filter(|(_, any_of, _)| !any_of.iter().any(|s| granted.iter().any(|g| g.eq_ignore_ascii_case(s))))
        .map(|(name, _, why)| (*name, *why))
        .collect()
}

/// The stage history fields the client selects.
const HISTORY_FIELDS: [&str; 6] = ["ID", "OWNER_ID", "CREATED_TIME", "CATEGORY_ID", "STAGE_SEMANTIC_ID", "STAGE_ID"];

/// One wire row.
type WireRow = Map<String, Value>;

impl Bitrix24Client {
    /// Users, departments, deal pipelines, currencies and lead sources, in that order.
    async fn fetch_reference(&self) -> Result<[Vec<WireRow>; 5], CrmError> {
        let mut meta = reference_jobs();
        self.run(&mut meta).await?;
        Ok(take_rows(meta))
    }
}

/// The lists of [`Bitrix24Client::fetch_reference`]; they depend on nothing else.
fn reference_jobs() -> Vec<ListJob> {
    vec![
        ListJob::new("user.get", json!({"sort": "ID", "order": "ASC"}), Paging::Offset),
        ListJob::new("department.get", json!({"sort": "ID", "order": "ASC"}), Paging::Offset),
        ListJob::new("crm.category.list", json!({"entityTypeId": 2}), Paging::Offset),
        ListJob::new("crm.currency.list", json!({}), Paging::Single),
        ListJob::new(
            "crm.status.list",
            json!({"filter": {"ENTITY_ID": "SOURCE"}, "order": {"SORT": "ASC"}}),
            Paging::Offset,
        ),
    ]
}

/// The deal fields to select: [`wire::DEAL_FIELDS`] and the satisfaction field.
fn deal_select(request: &FetchRequest) -> Vec<&str> {
    wire::DEAL_FIELDS.iter().copied().chain(request.satisfaction_field.as_deref()).collect()
}

fn deal_job(filter: Value, select: &[&str]) -> ListJob {
    ListJob::new("crm.deal.list", json!({"order": {"ID": "ASC"}, "filter": filter, "select": select}), Paging::Keyset)
}

fn lead_job(filter: Value, select: &[&str]) -> ListJob {
    ListJob::new("crm.lead.list", json!({"order": {"ID": "ASC"}, "filter": filter, "select": select}), Paging::Keyset)
}

/// The activities docs/kpi.md counts (outgoing calls and e-mails), with one more condition.
fn activity_filter(field: &str, value: Value) -> Value {
    json!({field: value, "@TYPE_ID": [crate::domain::ACTIVITY_CALL, crate::domain::ACTIVITY_EMAIL],
           "DIRECTION": crate::domain::DIRECTION_OUTGOING})
}

fn activity_job(field: &str, value: Value, select: &[&str]) -> ListJob {
    ListJob::new(
        "crm.activity.list",
        json!({"order": {"ID": "ASC"}, "filter": activity_filter(field, value), "select": select}),
        Paging::Keyset,
    )
}

fn history_job(filter: Value, select: &[&str]) -> ListJob {
    let mut job = ListJob::new(
        "crm.stagehistory.list",
        json!({"entityTypeId": 2, "order": {"ID": "ASC"}, "filter": filter, "select": select}),
        Paging::Keyset,
    );
    job.wrap = Some("items");
    job
}

/// Leads by id, 50 a command (a lead that is not returned was deleted).
fn missing_lead_jobs(ids: &[Id], select: &[&str]) -> Vec<ListJob> {
    ids.chunks(PAGE)
        .map(|ids| {
            ListJob::new(
                "crm.lead.list",
                json!({"order": {"ID": "ASC"}, "filter": {"@ID": ids}, "select": select, "start": -1}),
                Paging::Single,
            )
        })
        .collect()
}

fn product_rows_job(deal_id: Id) -> ListJob {
    ListJob::new("crm.deal.productrows.get", json!({"id": deal_id}), Paging::Single)
}

/// Wire rows turned into a snapshot, always in the same order (reference data, stages,
/// deals modified then open, leads, activities, history, older leads, product rows), so
/// that the same rows give the same snapshot and the same notes whether they came from
/// the portal just now or from the cache (`cached`).
struct Assembly {
    snapshot: CrmSnapshot,
    notes: Vec<String>,
    semantics: BTreeMap<String, Semantics>,
    deals: BTreeMap<Id, crate::domain::Deal>,
    leads: BTreeMap<Id, crate::domain::Lead>,
    activities: BTreeMap<Id, crate::domain::Activity>,
    history: BTreeMap<Id, crate::domain::StageChange>,
}

impl Assembly {
    fn new([users, departments, categories, currencies, sources]: [Vec<WireRow>; 5]) -> Assembly {
        let mut notes_vec = Vec::new();
        let notes = &mut Notes { notes: &mut notes_vec };
        let mut snapshot = CrmSnapshot {
            users: users.iter().filter_map(|r| wire::user(r, notes)).collect(),
            departments: departments.iter().filter_map(|r| wire::department(r, notes)).collect(),
            pipelines: categories.iter().filter_map(|r| wire::pipeline(r, notes)).collect(),
            ..CrmSnapshot::default()
        };
        if !snapshot.pipelines.iter().any(|p| p.id == 0) {
            // Pipeline 0 always exists; a portal that leaves it out of the list still has deals in it.
            snapshot.pipelines.insert(0, crate::domain::DealPipeline { id: 0, name: "#0".into(), sort: 0 });
        }
        snapshot.currencies = currencies.iter().filter_map(|r| wire::currency(r, notes)).collect();
        snapshot.sources = sources.iter().filter_map(|r| wire::source(r, notes)).collect();
        Assembly {
            snapshot,
            notes: notes_vec,
            semantics: BTreeMap::new(),
            deals: BTreeMap::new(),
            leads: BTreeMap::new(),
            activities: BTreeMap::new(),
            history: BTreeMap::new(),
        }
    }

    /// One `crm.status.list` job per pipeline, in pipeline order.
    fn stage_jobs(&self) -> Vec<ListJob> {
        self.snapshot
            .pipelines
            .iter()
            .map(|p| {
                let entity = if p.id == 0 { "DEAL_STAGE".to_owned() } else { format!("DEAL_STAGE_{}", p.id) };
                ListJob::new(
                    "crm.status.list",
                    json!({"filter": {"ENTITY_ID": entity}, "order": {"SORT": "ASC"}}),
                    Paging::Offset,
                )
            })
            .collect()
    }

    fn add_stages(&mut self, jobs: Vec<ListJob>) {
        let notes = &mut Notes { notes: &mut self.notes };
        for job in &jobs {
            self.snapshot.stages.extend(job.rows.iter().filter_map(|r| wire::stage(r, notes)));
        }
        self.semantics = self.snapshot.stages.iter().map(|s| (s.id.clone(), s.semantics)).collect();
    }

    fn add_window(
        &mut self,
        request: &FetchRequest,
        modified: &[WireRow],
        open: &[WireRow],
        leads: &[WireRow],
        activities: &[WireRow],
        history: &[WireRow],
    ) {
        let notes = &mut Notes { notes: &mut self.notes };
        let semantics = &self.semantics;
        let known = |stage: &str| semantics.get(stage).copied();
        for row in modified.iter().chain(open) {
            if let Some(d) = wire::deal(row, request.satisfaction_field.as_deref(), known, notes) {
                self.deals.insert(d.id, d);
            }
        }
        self.leads.extend(leads.iter().filter_map(|r| wire::lead(r, notes)).map(|l| (l.id, l)));
        self.activities.extend(activities.iter().filter_map(|r| wire::activity(r, notes)).map(|a| (a.id, a)));
        self.history.extend(history.iter().filter_map(|r| wire::stage_change(r, known, notes)).map(|h| (h.id, h)));
    }

    /// Leads the deals came from that are not among the window's leads: created before
    /// the window, their DATE_CREATE is the deal's first contact.
    fn missing_leads(&self) -> Vec<Id> {
        self.deals
            .values()
            .filter_map(|d| d.lead_id)
            .filter(|l| !self.leads.contains_key(l))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The deals whose product rows count: won in the report's period by docs/kpi.md's rule,
    /// as the KPI pass will see them in these same rows.
    fn product_deals(&self, request: &FetchRequest) -> Vec<Id> {
        crate::domain::deals_won_in(self.deals.values(), self.history.values(), request.period_start, request.until)
    }

    fn add_leads(&mut self, rows: &[WireRow]) {
        let notes = &mut Notes { notes: &mut self.notes };
        self.leads.extend(rows.iter().filter_map(|r| wire::lead(r, notes)).map(|l| (l.id, l)));
    }

    fn add_product_rows(&mut self, deal_id: Id, rows: &[WireRow]) {
        let notes = &mut Notes { notes: &mut self.notes };
        self.snapshot.product_rows.extend(rows.iter().filter_map(|r| wire::product_row(deal_id, r, notes)));
    }

    fn finish(self) -> CrmSnapshot {
        CrmSnapshot {
            deals: self.deals.into_values().collect(),
            leads: self.leads.into_values().collect(),
            activities: self.activities.into_values().collect(),
            stage_history: self.history.into_values().collect(),
            notes: self.notes,
            ..self.snapshot
        }
    }
}

fn take_rows<const N: usize>(jobs: Vec<ListJob>) -> [Vec<WireRow>; N] {
    let v: Vec<_> = jobs.into_iter().map(|j| j.rows).collect();
    v.try_into().unwrap_or_else(|_| panic!("exactly {N} list jobs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_php_query_strings() {
        let q = php_query(&json!({"order": {"ID": "ASC"}, "filter": {">ID": "$result[a][49][ID]", "@TYPE_ID": [2, 4]},
                                   "select": ["ID", "TITLE"], "start": -1}));
        assert_eq!(
            q,
            "filter[%3EID]=%24result%5Ba%5D%5B49%5D%5BID%5D&filter[%40TYPE_ID][0]=2&filter[%40TYPE_ID][1]=4&order[ID]=ASC&select[0]=ID&select[1]=TITLE&start=-1"
        );
    }

    #[test]
    fn webhook_urls_need_https_and_are_never_shown() {
        let ok =
            Bitrix24Client::new(&Secret::new("https://acme.bitrix24.ru/rest/1/s3cr3tcode"), ClientSettings::default())
                .unwrap();
        assert_eq!(ok.redacted_url(), "https://acme.bitrix24.ru/rest/1/***/");
        assert_eq!(ok.inner.base.as_str(), "https://acme.bitrix24.ru/rest/1/s3cr3tcode/");
        assert!(!format!("{ok:?}").contains("s3cr3tcode"));
        Bitrix24Client::new(&Secret::new("http://127.0.0.1:8080/rest/1/abc/"), ClientSettings::default()).unwrap();
        let plain =
            Bitrix24Client::new(&Secret::new("http://acme.bitrix24.ru/rest/1/s3cr3tcode/"), ClientSettings::default())
                .unwrap_err();
        assert!(!plain.is_transient());
        assert!(plain.to_string().contains("https") && !plain.to_string().contains("s3cr3tcode"), "{plain}");
        let path = Bitrix24Client::new(&Secret::new("https://acme.bitrix24.ru/s3cr3tcode/"), ClientSettings::default())
            .unwrap_err();
        assert!(!path.to_string().contains("s3cr3tcode"), "{path}");
    }

    #[test]
    fn errors_are_classified_by_code_not_status() {
        let e = |code: &str, status| match classify(
            "crm.deal.list",
            &ApiError { code: code.into(), description: "x".into() },
            status,
        ) {
            Failure::Transient(..) => "transient",
            Failure::Operating(..) => "operating time",
            Failure::Permanent(..) => "permanent",
        };
        assert_eq!(e("QUERY_LIMIT_EXCEEDED", 200), "transient");
        assert_eq!(e("QUERY_LIMIT_EXCEEDED", 429), "transient");
        assert_eq!(e("OPERATION_TIME_LIMIT", 429), "operating time");
        assert_eq!(e("OPERATION_TIME_LIMIT", 200), "operating time", "inside a batch");
        assert_eq!(e("INTERNAL_SERVER_ERROR", 500), "transient");
        assert_eq!(e("", 503), "transient");
        assert_eq!(e("INVALID_CREDENTIALS", 401), "permanent");
        assert_eq!(e("insufficient_scope", 403), "permanent");
        assert_eq!(e("ERROR_METHOD_NOT_FOUND", 404), "permanent");
        assert_eq!(e("", 400), "permanent");
    }
}
