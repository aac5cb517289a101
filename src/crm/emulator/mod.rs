//! A Bitrix24 portal on loopback: the REST methods the client uses, over real HTTP, with
//! Bitrix24's quirks (Bitrix24's REST documentation): legacy string typing, `[]` for empty maps, PHP
//! arrays for `0..n` keys, `items` wrappers, `batch` with `$result[..]` references, the
//! generic filter prefixes, `start` paging with `next`/`total` and `start=-1`, the `time`
//! object, the error envelopes and status codes, and a real leaky bucket answering
//! QUERY_LIMIT_EXCEEDED. Fault injection (5xx, rate-limit answers, truncated bodies,
//! delays) is deterministic given a seed.
//!
//! It also keeps a real operating-time account per webhook and method (§3): every command
//! adds its measured execution time (plus [`EmulatorOptions::operating_cost_per_command`],
//! so that a test reaches a small limit quickly) to ten baskets spanning
//! [`EmulatorOptions::operating_window`]; every answer's `time` object (top level and each
//! `result_time` of a `batch`) reports the method's sum as `operating` and when its oldest
//! basket drops out as `operating_reset_at`. Once a sum is over
//! [`EmulatorOptions::operating_limit`], the next call of that method is refused —
//! HTTP 429 `OPERATION_TIME_LIMIT` alone, a `result_error` entry inside a `batch` — until
//! baskets drop out; other methods are served, and the outer `batch` costs nothing.
//!
//! It serves whatever [`PortalData`] it is given (the demo portal is `super::demo`); it
//! knows nothing of KPIs. The client that talks to it is `super::bitrix24`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// A wire-format record, as `crm.*.list` serves it.
pub type Record = Map<String, Value>;

/// What the emulated portal holds, per entity, in Bitrix24's wire format.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PortalData {
    /// `user.get` rows (`ACTIVE` a boolean, `UF_DEPARTMENT` an array of integers).
    pub users: Vec<Record>,
    /// `department.get` rows.
    pub departments: Vec<Record>,
    /// `crm.status.list` rows of every entity (`SOURCE`, `STATUS`, `DEAL_STAGE`, `DEAL_STAGE_<n>`).
    pub statuses: Vec<Record>,
    /// `crm.category.list` rows of deals (typed numbers, camelCase).
    pub categories: Vec<Record>,
    /// `crm.currency.list` rows.
    pub currencies: Vec<Record>,
    pub deals: Vec<Record>,
    pub leads: Vec<Record>,
    pub activities: Vec<Record>,
    /// `crm.stagehistory.list` items of deals (`entityTypeId` 2).
    pub stage_history: Vec<Record>,
    /// `crm.deal.productrows.get` rows by deal id.
    pub product_rows: BTreeMap<u64, Vec<Record>>,
}

/// How the emulated portal behaves. Fractions are per HTTP request, drawn from a PRNG
/// seeded with `seed`, so a sequential client sees the same faults on every run.
#[derive(Clone, Debug, PartialEq)]
pub struct EmulatorOptions {
    /// The portal's leaky bucket: drain per second (Bitrix24: 2) and size (50).
    pub rate_per_sec: f64,
    pub burst: u32,
    /// The webhook code the portal accepts (`/rest/1/<token>/`).
    pub token: String,
    /// Fraction of requests answered 500 INTERNAL_SERVER_ERROR.
    pub server_errors: f64,
    /// Fraction of requests answered 503 QUERY_LIMIT_EXCEEDED regardless of the bucket.
    pub rate_limit_errors: f64,
    /// Fraction of answers cut in the middle of their JSON.
    pub garbage_bodies: f64,
    /// Fraction of requests delayed by `delay` (longer than a client's timeout = a timeout).
    pub delays: f64,
    pub delay: Duration,
    pub seed: u64,
    /// Fraction of commands inside a `batch` answered OPERATION_TIME_LIMIT in `result_error`
    /// (the method's operating-time limit, which surfaces per command).
    pub command_errors: f64,
    /// Methods the webhook has no scope for: answered 403 `insufficient_scope`, alone or
    /// inside a `batch`.
    pub denied_methods: Vec<String>,
    /// The webhook's scopes, as the `scope` method lists them. A method outside them is
    /// answered 403 `insufficient_scope` like a real portal's: `crm.*` needs `crm`,
    /// `user.*` one of `user`, `user_basic`, `user_brief`, `department.*` `department`.
    pub scopes: Vec<String>,
    /// The operating-time limit per method and webhook (Bitrix24 cloud: 480 s within
    /// 10 min); `None` accounts the time but never refuses (an on-premise portal).
    pub operating_limit: Option<Duration>,
    /// The span the operating time is summed over, in ten baskets (Bitrix24: 10 min).
    pub operating_window: Duration,
    /// Added to every command's measured execution time, so that a test reaches the limit
    /// after a few commands instead of after eight minutes of work.
    pub operating_cost_per_command: Duration,
    /// Answer every request with the webhook code in the answer, as a portal may.
    pub leak_token: Option<TokenLeak>,
}

/// How a portal shows a request's webhook code back in its answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TokenLeak {
    /// `302` to the portal's login page with the request path in `backurl`, percent-encoded
    /// with upper-case hex (`/auth/?backurl=%2Frest%2F1%2F<code>%2Fbatch`), and an HTML page:
    /// what a blocked, unpaid or moved portal answers.
    Redirect,
    /// `401 NO_AUTH_FOUND` whose `error_description` quotes the request path as it came, and
    /// again percent-encoded with lower-case hex.
    EchoPath,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            rate_per_sec: 2.0,
            burst: 50,
            token: "demo-webhook-code".to_owned(),
            server_errors: 0.0,
            rate_limit_errors: 0.0,
            garbage_bodies: 0.0,
            delays: 0.0,
            delay: Duration::ZERO,
            seed: 1,
            command_errors: 0.0,
            denied_methods: Vec::new(),
            scopes: ["crm", "user", "department"].map(str::to_owned).to_vec(),
            operating_limit: Some(Duration::from_secs(480)),
            operating_window: Duration::from_secs(600),
            operating_cost_per_command: Duration::ZERO,
            leak_token: None,
        }
    }
}

/// What the emulator has served.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmulatorStats {
    /// HTTP requests received, refused ones included.
    pub requests: u64,
    /// Methods executed (a `batch` of 50 counts 50).
    pub commands: u64,
    /// Requests refused by the leaky bucket.
    pub rate_limited: u64,
    /// Injected faults (errors, garbage, delays).
    pub faults: u64,
    /// Time spent inside the handler, summed.
    pub server_time: Duration,
    /// Calls refused OPERATION_TIME_LIMIT because their method was over its operating-time
    /// limit (alone or inside a `batch`; injected `command_errors` are counted in `faults`).
    pub operation_limited: u64,
}

/// A running emulator. Dropping it leaves the server running until the runtime stops;
/// [`Emulator::shutdown`] stops it.
pub struct Emulator {
    addr: std::net::SocketAddr,
    token: String,
    state: Arc<Portal>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

struct Portal {
    /// Behind a lock so that a test can change the portal between fetches
    /// ([`Emulator::update`]), as users change a real one.
    data: RwLock<PortalData>,
    options: EmulatorOptions,
    bucket: Mutex<(f64, Instant)>,
    rng: Mutex<fastrand::Rng>,
    requests: AtomicU64,
    commands: AtomicU64,
    rate_limited: AtomicU64,
    faults: AtomicU64,
    server_nanos: AtomicU64,
    /// Operating time per (webhook code, method).
    operating: Mutex<HashMap<(String, String), Account>>,
    operation_limited: AtomicU64,
}

/// One method's operating time: what it cost in each of the last ten baskets, oldest first.
/// A basket opens with the first call after the previous one closed and drops out a window
/// after it opened, as on a portal (Bitrix24's REST limits).
#[derive(Debug, Default)]
struct Account {
    baskets: VecDeque<(Instant, Duration)>,
}

impl Account {
    fn expire(&mut self, now: Instant, window: Duration) {
        while self.baskets.front().is_some_and(|(opened, _)| *opened + window <= now) {
            self.baskets.pop_front();
        }
    }

    fn used(&self) -> Duration {
        self.baskets.iter().map(|(_, cost)| *cost).sum()
    }

    fn add(&mut self, now: Instant, cost: Duration, window: Duration) {
        match self.baskets.back_mut() {
            Some((opened, sum)) if now < *opened + window / 10 => *sum += cost,
            _ => self.baskets.push_back((now, cost)),
        }
    }

    /// When the oldest basket drops out (a window from now when there is none).
    fn reset_at(&self, now: Instant, window: Duration) -> Instant {
        self.baskets.front().map_or(now, |(opened, _)| *opened) + window
    }
}

/// A method's operating time as its answer reports it.
struct Operating {
    used: Duration,
    reset_at: Instant,
}

impl Emulator {
    /// Binds `127.0.0.1:0` inside the current tokio runtime and starts serving.
    pub async fn start(mut data: PortalData, options: EmulatorOptions) -> std::io::Result<Emulator> {
        sort_tables(&mut data);
        let state = Arc::new(Portal::new(data, options.clone()));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new().route("/rest/{user}/{token}/{*method}", any(handle)).with_state(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "Bitrix24 emulator stopped with an error.");
            }
        });
        Ok(Emulator { addr, token: options.token, state, stop, task })
    }

    /// The incoming-webhook URL of the emulated portal.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/rest/1/{}/", self.addr, self.token)
    }

    pub fn stats(&self) -> EmulatorStats {
        let s = &self.state;
        EmulatorStats {
            requests: s.requests.load(AtomicOrdering::Relaxed),
            commands: s.commands.load(AtomicOrdering::Relaxed),
            rate_limited: s.rate_limited.load(AtomicOrdering::Relaxed),
            faults: s.faults.load(AtomicOrdering::Relaxed),
            server_time: Duration::from_nanos(s.server_nanos.load(AtomicOrdering::Relaxed)),
            operation_limited: s.operation_limited.load(AtomicOrdering::Relaxed),
        }
    }

    /// Changes what the portal holds, as its users would between two report runs (a deal
    /// moved, a lead added, a deal deleted). Requests wait while `change` runs.
    pub fn update(&self, change: impl FnOnce(&mut PortalData)) {
        let mut data = self.state.data.write().expect("no panics while holding the portal data");
        change(&mut data);
        sort_tables(&mut data);
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Keyset paging relies on ID order; a portal keeps its tables in it.
fn sort_tables(data: &mut PortalData) {
    for rows in [
        &mut data.users,
        &mut data.departments,
        &mut data.deals,
        &mut data.leads,
        &mut data.activities,
        &mut data.stage_history,
    ] {
        rows.sort_by_key(record_id);
    }
}

fn record_id(r: &Record) -> u64 {
    r.get("ID").or_else(|| r.get("id")).and_then(|v| text(v).parse().ok()).unwrap_or(0)
}

/// A method's error: HTTP status, `error`, `error_description`.
type Fail = (StatusCode, &'static str, String);

/// A method's success: `result` and the list fields.
struct Done {
    result: Value,
    total: Option<u64>,
    next: Option<u64>,
}

async fn handle(
    State(portal): State<Arc<Portal>>,
    Path((user, token, method)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    #[allow(clippy::disallowed_methods)] // A portal's `time` object carries its wall clock.
    let started_wall = SystemTime::now();
    portal.requests.fetch_add(1, AtomicOrdering::Relaxed);
    if let Some(leak) = portal.options.leak_token {
        return leak_path(leak, &format!("/rest/{user}/{token}/{method}"));
    }
    let response = serve(&portal, &token, &method, query, &headers, &body, started_wall).await;
    portal.server_nanos.fetch_add(started.elapsed().as_nanos() as u64, AtomicOrdering::Relaxed);
    response
}

async fn serve(
    portal: &Portal,
    token: &str,
    method: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
    started: SystemTime,
) -> Response {
    if !portal.admit() {
        portal.rate_limited.fetch_add(1, AtomicOrdering::Relaxed);
        return error(StatusCode::SERVICE_UNAVAILABLE, "QUERY_LIMIT_EXCEEDED", "Too many requests");
    }
    if token != portal.options.token {
        return error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS", "Invalid request credentials");
    }
    let (fault, delay, garbage, cut) = {
        let mut rng = portal.rng.lock().expect("rng lock");
        let o = &portal.options;
        let roll = rng.f64();
        let fault = if roll < o.server_errors {
            Some(0)
        } else if roll < o.server_errors + o.rate_limit_errors {
            Some(1)
        } else {
            None
        };
        (fault, rng.f64() < o.delays, rng.f64() < o.garbage_bodies, rng.f64())
    };
    if fault.is_some() || delay || garbage {
        portal.faults.fetch_add(1, AtomicOrdering::Relaxed);
    }
    if delay {
        tokio::time::sleep(portal.options.delay).await;
    }
    match fault {
        Some(0) => return error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", "Internal server error"),
        Some(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "QUERY_LIMIT_EXCEEDED", "Too many requests"),
        None => {}
    }
    let method = method.trim_end_matches('/');
    let method = method.strip_suffix(".json").unwrap_or(method).to_ascii_lowercase();
    let mut params = match query.as_deref() {
        Some(q) if !q.is_empty() => parse_php_query(q),
        _ => json!({}),
    };
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !body.is_empty() {
        let from_body = if is_form {
            Ok(parse_php_query(&String::from_utf8_lossy(body)))
        } else {
            serde_json::from_slice::<Value>(body)
        };
        match from_body {
            Ok(Value::Object(m)) => params.as_object_mut().expect("params are an object").extend(m),
            Ok(_) | Err(_) => {
                return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "Request body must be a JSON object");
            }
        }
    }
    let outcome = portal.call(token, &method, &params, true);
    let mut response = match outcome {
        Ok((done, operating)) => {
            let mut env = Map::new();
            env.insert("result".into(), done.result);
            if let Some(n) = done.next {
                env.insert("next".into(), json!(n));
            }
            if let Some(t) = done.total {
                env.insert("total".into(), json!(t));
            }
            env.insert("time".into(), time_object(started, &operating));
            (StatusCode::OK, serde_json::to_string(&Value::Object(env)).expect("JSON serializes"))
        }
        Err((status, code, description)) => (status, error_body(code, &description)),
    };
    if garbage {
        let keep = ((response.1.len() as f64) * (0.1 + 0.8 * cut)) as usize;
        let keep = (0..=keep).rev().find(|i| response.1.is_char_boundary(*i)).unwrap_or(0);
        response.1.truncate(keep);
        response.0 = StatusCode::OK;
    }
    json_response(response.0, response.1)
}

/// The answer of a portal that shows `path` (with the webhook code in it) back.
fn leak_path(leak: TokenLeak, path: &str) -> Response {
    let encode = |upper: bool| -> String {
        path.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' if upper => (b as char).to_string(),
                _ if upper => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect()
    };
    match leak {
        TokenLeak::Redirect => (
            StatusCode::FOUND,
            [
                (header::LOCATION, format!("/auth/?backurl={}", encode(true))),
                (header::CONTENT_TYPE, "text/html".into()),
            ],
            format!("<html><body>Redirecting to <a href=\"/auth/?backurl={}\">login</a></body></html>", encode(true)),
        )
            .into_response(),
        TokenLeak::EchoPath => error(
            StatusCode::UNAUTHORIZED,
            "NO_AUTH_FOUND",
            &format!("Wrong authorization data for {path} ({})", encode(false)),
        ),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

fn error_body(code: &str, description: &str) -> String {
    json!({"error": code, "error_description": description}).to_string()
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    json_response(status, error_body(code, description))
}

/// The `time` object of every successful answer, with the method's operating time.
#[allow(clippy::disallowed_methods)] // A portal's `time` object carries its wall clock.
fn time_object(started: SystemTime, operating: &Operating) -> Value {
    let finished = SystemTime::now();
    // A whole second, as a portal writes it; rounded up so that a client waiting for it
    // never wakes before the basket has really dropped out.
    let reset_at = finished + operating.reset_at.saturating_duration_since(Instant::now());
    let reset_at = reset_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64().ceil() as u64;
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let date = |t: SystemTime| {
        DateTime::<chrono::Utc>::from(t).with_timezone(&moscow()).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    };
    json!({
        "start": secs(started), "finish": secs(finished), "duration": secs(finished) - secs(started),
        "processing": secs(finished) - secs(started), "date_start": date(started), "date_finish": date(finished),
        "operating_reset_at": reset_at, "operating": operating.used.as_secs_f64()
    })
}

fn moscow() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).expect("+03:00 is a valid offset")
}

impl Portal {
    /// A portal serving `data` (already in ID order) with fresh counters.
    fn new(data: PortalData, options: EmulatorOptions) -> Portal {
        Portal {
            rng: Mutex::new(fastrand::Rng::with_seed(options.seed)),
            bucket: Mutex::new((0.0, Instant::now())),
            data: RwLock::new(data),
            options,
            requests: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            server_nanos: AtomicU64::new(0),
            operating: Mutex::new(HashMap::new()),
            operation_limited: AtomicU64::new(0),
        }
    }

    /// The portal's leaky bucket: one unit per HTTP request, refused above `burst`.
    fn admit(&self) -> bool {
        let mut b = self.bucket.lock().expect("bucket lock");
        let now = Instant::now();
        let level = (b.0 - now.duration_since(b.1).as_secs_f64() * self.options.rate_per_sec).max(0.0);
        if level + 1.0 > f64::from(self.options.burst) {
            *b = (level, now);
            return false;
        }
        *b = (level + 1.0, now);
        true
    }

    /// Runs one method under its operating-time account: refused while the account is over
    /// the limit (checked before the call, so the call that crosses it completes), its
    /// execution time added after. The outer `batch` is not accounted; its commands are.
    fn call(&self, token: &str, method: &str, params: &Value, top: bool) -> Result<(Done, Operating), Fail> {
        let window = self.options.operating_window;
        if method == "batch" {
            let done = self.execute(token, method, params, top)?;
            return Ok((done, Operating { used: Duration::ZERO, reset_at: Instant::now() + window }));
        }
        let key = (token.to_owned(), method.to_owned());
        if let Some(limit) = self.options.operating_limit {
            let mut accounts = self.operating.lock().expect("operating lock");
            let account = accounts.entry(key.clone()).or_default();
            account.expire(Instant::now(), window);
            if account.used() > limit {
                self.operation_limited.fetch_add(1, AtomicOrdering::Relaxed);
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    "OPERATION_TIME_LIMIT",
                    "Method is blocked due to operation time limit.".into(),
                ));
            }
        }
        let started = Instant::now();
        let outcome = match self.execute(token, method, params, top) {
            // An injected refusal did not run: it costs nothing.
            Err(fail) if fail.1 == "OPERATION_TIME_LIMIT" => return Err(fail),
            other => other,
        };
        let now = Instant::now();
        let cost = now.duration_since(started) + self.options.operating_cost_per_command;
        let mut accounts = self.operating.lock().expect("operating lock");
        let account = accounts.entry(key).or_default();
        account.expire(now, window);
        account.add(now, cost, window);
        let operating = Operating { used: account.used(), reset_at: account.reset_at(now, window) };
        outcome.map(|done| (done, operating))
    }

    /// Whether the webhook's scopes cover `method` (`scope`, `batch` and the other basic
    /// methods need none).
    fn in_scope(&self, method: &str) -> bool {
        let granted = |s: &str| self.options.scopes.iter().any(|g| g.eq_ignore_ascii_case(s));
        let prefix = method.split('.').next().unwrap_or_default().to_ascii_lowercase();
        match prefix.as_str() {
            "crm" => granted("crm"),
            "user" => granted("user") || granted("user_basic") || granted("user_brief"),
            "department" => granted("department"),
            _ => true,
        }
    }

    fn execute(&self, token: &str, method: &str, params: &Value, top: bool) -> Result<Done, Fail> {
        self.commands.fetch_add(u64::from(method != "batch"), AtomicOrdering::Relaxed);
        if self.options.denied_methods.iter().any(|m| m.eq_ignore_ascii_case(method)) || !self.in_scope(method) {
            return Err((
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "The request requires higher privileges than provided by the webhook token".into(),
            ));
        }
        if !top
            && self.options.command_errors > 0.0
            && self.rng.lock().expect("rng lock").f64() < self.options.command_errors
        {
            self.faults.fetch_add(1, AtomicOrdering::Relaxed);
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                "OPERATION_TIME_LIMIT",
                "Method is blocked due to operation time limit.".into(),
            ));
        }
        if method == "batch" {
            return if top {
                self.batch(token, params)
            } else {
                Err((
                    StatusCode::METHOD_NOT_ALLOWED,
                    "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "Method not allowed in batch".into(),
                ))
            };
        }
        // Taken per method, not per batch: a batch's commands each read under their own guard.
        let d = &*self.data.read().expect("no panics while holding the portal data");
        match method {
            "user.get" => {
                let filter = param(params, "filter").cloned().unwrap_or(json!({}));
                let order = match (param(params, "sort").map(text), param(params, "order").map(text)) {
                    (Some(field), dir) => json!({ field: dir.unwrap_or_else(|| "ASC".into()) }),
                    (None, _) => json!({"ID": "ASC"}),
                };
                let p = json!({"filter": filter, "order": order, "start": param(params, "start").cloned().unwrap_or(Value::Null)});
                list(&d.users, &p, Typing::AsStored)
            }
            "department.get" => {
                let mut filter = Map::new();
                if let Some(o) = params.as_object() {
                    for (k, v) in o {
                        if !["sort", "order", "start"].contains(&k.to_ascii_lowercase().as_str()) {
                            filter.insert(k.clone(), v.clone());
                        }
                    }
                }
                let order = match param(params, "sort").map(text) {
                    Some(field) => json!({ field: param(params, "order").map(text).unwrap_or_else(|| "ASC".into()) }),
                    None => json!({"ID": "ASC"}),
                };
                let p = json!({"filter": filter, "order": order, "start": param(params, "start").cloned().unwrap_or(Value::Null)});
                list(&d.departments, &p, Typing::AsStored)
            }
            // The webhook's scopes (basic scope: any webhook may ask).
            "scope" => Ok(Done { result: json!(self.options.scopes), total: None, next: None }),
            "crm.status.list" => list(&d.statuses, params, Typing::Legacy),
            "crm.category.list" => {
                if param(params, "entityTypeId").map(text).as_deref() != Some("2") {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "ENTITY_TYPE_NOT_SUPPORTED",
                        "Entity type is not supported".into(),
                    ));
                }
                let mut done = list(&d.categories, params, Typing::AsStored)?;
                done.result = json!({"categories": done.result});
                Ok(done)
            }
            "crm.currency.list" => {
                let rows: Vec<Value> = d.currencies.iter().map(|r| Value::Object(legacy(r))).collect();
                // "total" is always 0 for this method on real portals.
                Ok(Done { result: Value::Array(rows), total: Some(0), next: None })
            }
            "crm.deal.list" => list(&d.deals, params, Typing::Legacy),
            "crm.lead.list" => list(&d.leads, params, Typing::Legacy),
            "crm.activity.list" => list(&d.activities, params, Typing::Legacy),
            "crm.stagehistory.list" => {
                let rows: &[Record] = match param(params, "entityTypeId").map(text).as_deref() {
                    Some("2") => &d.stage_history,
                    Some("1") => &[],
                    _ => {
                        return Err((
                            StatusCode::BAD_REQUEST,
                            "ENTITY_TYPE_NOT_SUPPORTED",
                            "Entity type is not supported".into(),
                        ));
                    }
                };
                let mut done = list(rows, params, Typing::Legacy)?;
                done.result = json!({"items": done.result});
                Ok(done)
            }
            "crm.deal.productrows.get" => {
                let id = param(params, "id").map(text).and_then(|s| s.parse::<u64>().ok());
                let Some(id) = id else {
                    return Err((StatusCode::BAD_REQUEST, "", "ID is not defined or invalid.".into()));
                };
                // Deals are kept in ID order (see `start`).
                let at = d.deals.partition_point(|r| record_id(r) < id);
                if d.deals.get(at).is_none_or(|r| record_id(r) != id) {
                    return Err((StatusCode::BAD_REQUEST, "", "Not found".into()));
                }
                let rows = d
                    .product_rows
                    .get(&id)
                    .map(|r| r.iter().map(|x| Value::Object(legacy(x))).collect())
                    .unwrap_or_default();
                Ok(Done { result: Value::Array(rows), total: None, next: None })
            }
            _ => Err((StatusCode::NOT_FOUND, "ERROR_METHOD_NOT_FOUND", "Method not found!".into())),
        }
    }

    fn batch(&self, token: &str, params: &Value) -> Result<Done, Fail> {
        let cmds: Vec<(String, String)> = match param(params, "cmd") {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            Some(Value::Array(a)) => a.iter().enumerate().map(|(i, v)| (i.to_string(), text(v))).collect(),
            _ => return Err((StatusCode::BAD_REQUEST, "INVALID_ARG_VALUE", "cmd must be a map of commands".into())),
        };
        if cmds.len() > 50 {
            return Err((StatusCode::BAD_REQUEST, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded".into()));
        }
        let halt = param(params, "halt").is_some_and(|h| matches!(text(h).as_str(), "1" | "true" | "Y"));
        let mut results: Vec<(String, Value)> = Vec::new();
        let mut errors: Vec<(String, Value)> = Vec::new();
        let mut totals: Vec<(String, Value)> = Vec::new();
        let mut nexts: Vec<(String, Value)> = Vec::new();
        let mut times: Vec<(String, Value)> = Vec::new();
        let mut done_so_far: Map<String, Value> = Map::new();
        for (key, cmd) in cmds {
            #[allow(clippy::disallowed_methods)] // Per-command `result_time`, as a portal has.
            let started = SystemTime::now();
            let (method, query) = cmd.split_once('?').unwrap_or((&cmd, ""));
            let mut p = parse_php_query(query);
            substitute(&mut p, &done_so_far);
            match self.call(token, &method.trim_end_matches('/').to_ascii_lowercase(), &p, false) {
                Ok((done, operating)) => {
                    done_so_far.insert(key.clone(), done.result.clone());
                    results.push((key.clone(), done.result));
                    if let Some(t) = done.total {
                        totals.push((key.clone(), json!(t)));
                    }
                    if let Some(n) = done.next {
                        nexts.push((key.clone(), json!(n)));
                    }
                    times.push((key, time_object(started, &operating)));
                }
                Err((_, code, description)) => {
                    errors.push((key, json!({"error": code, "error_description": description})));
                    if halt {
                        break;
                    }
                }
            }
        }
        Ok(Done {
            result: json!({
                "result": php_map(results), "result_error": php_map(errors), "result_total": php_map(totals),
                "result_next": php_map(nexts), "result_time": php_map(times),
            }),
            total: None,
            next: None,
        })
    }
}

/// `json_encode` of a PHP array: `[]` when empty, a list when keyed `0..n`, else an object.
fn php_map(entries: Vec<(String, Value)>) -> Value {
    if entries.iter().enumerate().all(|(i, (k, _))| *k == i.to_string()) {
        Value::Array(entries.into_iter().map(|(_, v)| v).collect())
    } else {
        Value::Object(entries.into_iter().collect())
    }
}

/// A parameter by name, any case (`filter`, `FILTER`).
fn param<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    let o = params.as_object()?;
    o.get(name).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// A scalar as text; `null` as `""`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "Y" } else { "N" }.to_owned(),
        other => other.to_string(),
    }
}

/// The elements of a list parameter: an array, a PHP map `{"0": .., "1": ..}`, or one value.
fn elements(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Object(m) => m.values().cloned().collect(),
        other => vec![other.clone()],
    }
}

/// Legacy methods serve every scalar as a string.
fn legacy(r: &Record) -> Record {
    r.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Number(n) => Value::String(n.to_string()),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Typing {
    Legacy,
    AsStored,
}

/// One filter condition.
struct Cond {
    field: String,
    op: Op,
    values: Vec<Key>,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    Like,
    NotLike,
}

/// A value prepared for comparison: as a number and as an instant where it parses.
struct Key {
    text: String,
    number: Option<f64>,
    instant: Option<i64>,
}

impl Key {
    fn of(v: &Value) -> Key {
        let text = text(v);
        let t = text.trim();
        let number = t.parse::<f64>().ok().filter(|f| f.is_finite());
        let instant = if number.is_none() && t.len() >= 19 {
            DateTime::parse_from_rfc3339(t).ok().map(|d| d.timestamp_micros())
        } else {
            None
        };
        Key { text, number, instant }
    }

    fn cmp(&self, other: &Key) -> Ordering {
        if let (Some(a), Some(b)) = (self.number, other.number) {
            return a.partial_cmp(&b).unwrap_or(Ordering::Equal);
        }
        if let (Some(a), Some(b)) = (self.instant, other.instant) {
            return a.cmp(&b);
        }
        self.text.cmp(&other.text)
    }
}

fn parse_conditions(filter: Option<&Value>) -> Vec<Cond> {
    let Some(Value::Object(m)) = filter else { return Vec::new() };
    m.iter()
        .map(|(key, v)| {
            const PREFIXES: [(&str, Op); 14] = [
                ("!=%", Op::NotLike),
                ("!%=", Op::NotLike),
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!@", Op::NotIn),
                ("!=", Op::Ne),
                ("=%", Op::Like),
                ("%=", Op::Like),
                ("!%", Op::NotLike),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("@", Op::In),
                ("%", Op::Like),
                ("!", Op::Ne),
            ];
            let (op, field) = PREFIXES
                .iter()
                .find_map(|(p, op)| key.strip_prefix(p).map(|f| (*op, f)))
                .unwrap_or_else(|| (Op::Eq, key.strip_prefix('=').unwrap_or(key)));
            let values: Vec<Key> = match (op, v) {
                (Op::In | Op::NotIn, v) => elements(v).iter().map(Key::of).collect(),
                // An unprefixed array is IN, as user.get and department.get take it.
                (Op::Eq, Value::Array(_)) => elements(v).iter().map(Key::of).collect(),
                (_, v) => vec![Key::of(v)],
            };
            let op = if op == Op::Eq && v.is_array() { Op::In } else { op };
            Cond { field: field.to_owned(), op, values }
        })
        .collect()
}

fn like(hay: &str, pattern: &str) -> bool {
    let hay = hay.to_lowercase();
    let pattern = pattern.to_lowercase();
    if !pattern.contains('%') {
        return hay.contains(&pattern);
    }
    // `%` is a wildcard: every piece must appear in order.
    let mut rest = hay.as_str();
    let parts: Vec<&str> = pattern.split('%').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        match rest.find(part) {
            Some(at) if i > 0 || at == 0 => rest = &rest[at + part.len()..],
            _ => return false,
        }
    }
    parts.last().is_some_and(|p| p.is_empty()) || rest.is_empty()
}

fn matches(row: &Record, conds: &[Cond]) -> bool {
    conds.iter().all(|c| {
        let cell = row.get(&c.field).cloned().unwrap_or(Value::Null);
        // A multiple field (UF_DEPARTMENT) matches when any of its values does.
        let cells: Vec<Key> = match &cell {
            Value::Array(a) => a.iter().map(Key::of).collect(),
            Value::Bool(b) => vec![Key::of(&Value::String(if *b { "Y" } else { "N" }.into()))],
            other => vec![Key::of(other)],
        };
        let flag_eq = |k: &Key, v: &Key| {
            if matches!(cell, Value::Bool(_)) {
                let yes = |s: &str| matches!(s, "Y" | "true" | "1");
                yes(&k.text) == yes(&v.text)
            } else {
                k.cmp(v) == Ordering::Equal
            }
        };
        let any = |f: &dyn Fn(&Key) -> bool| cells.iter().any(f);
        let v0 = &c.values[0];
        match c.op {
            Op::Eq => any(&|k| flag_eq(k, v0)),
            Op::Ne => !any(&|k| flag_eq(k, v0)),
            Op::Gt => any(&|k| !k.text.is_empty() && k.cmp(v0) == Ordering::Greater),
            Op::Ge => any(&|k| !k.text.is_empty() && k.cmp(v0) != Ordering::Less),
            Op::Lt => any(&|k| !k.text.is_empty() && k.cmp(v0) == Ordering::Less),
            Op::Le => any(&|k| !k.text.is_empty() && k.cmp(v0) != Ordering::Greater),
            Op::In => any(&|k| c.values.iter().any(|v| flag_eq(k, v))),
            Op::NotIn => !any(&|k| c.values.iter().any(|v| flag_eq(k, v))),
            Op::Like => any(&|k| like(&k.text, &v0.text)),
            Op::NotLike => !any(&|k| like(&k.text, &v0.text)),
        }
    })
}

/// A list method: filter, order, `start` paging (50 a page; `-1` = no count, no `next`),
/// select.
fn list(rows: &[Record], params: &Value, typing: Typing) -> Result<Done, Fail> {
    let conds = parse_conditions(param(params, "filter"));
    let order: Vec<(String, bool)> = match param(params, "order") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), !text(v).eq_ignore_ascii_case("DESC"))).collect(),
        _ => Vec::new(),
    };
    let start: i64 = param(params, "start").map(text).and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let by_id_asc = order.is_empty() || (order.len() == 1 && order[0].0.eq_ignore_ascii_case("ID") && order[0].1);
    let page_of = |i: usize| i;
    let (page, total): (Vec<&Record>, u64) = if by_id_asc {
        // Rows are kept in ID order: a `>ID` bound starts the scan by binary search, and
        // `start=-1` stops after one page, as the fast path on a real portal does.
        let from = conds
            .iter()
            .filter(|c| c.field == "ID" && matches!(c.op, Op::Gt | Op::Ge))
            .filter_map(|c| c.values[0].number)
            .map(|n| rows.partition_point(|r| (record_id(r) as f64) < n))
            .max()
            .unwrap_or(0);
        let hits = rows[from..].iter().filter(|r| matches(r, &conds));
        if start < 0 {
            (hits.take(50).collect(), 0)
        } else {
            let all: Vec<&Record> = hits.collect();
            let total = all.len() as u64;
            (all.into_iter().skip(page_of(start as usize)).take(50).collect(), total)
        }
    } else {
        let mut all: Vec<&Record> = rows.iter().filter(|r| matches(r, &conds)).collect();
        all.sort_by(|a, b| {
            order
                .iter()
                .map(|(field, asc)| {
                    let (x, y) =
                        (Key::of(a.get(field).unwrap_or(&Value::Null)), Key::of(b.get(field).unwrap_or(&Value::Null)));
                    if *asc { x.cmp(&y) } else { y.cmp(&x) }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
        let total = if start < 0 { 0 } else { all.len() as u64 };
        (all.into_iter().skip(start.max(0) as usize).take(50).collect(), total)
    };
    let select: Vec<String> =
        param(params, "select").map(|s| elements(s).iter().map(text).collect()).unwrap_or_default();
    let all_fields = select.is_empty() || select.iter().any(|s| s == "*");
    let uf = select.iter().any(|s| s == "UF_*");
    let out: Vec<Value> = page
        .into_iter()
        .map(|r| {
            let picked: Record = if all_fields && (uf || select.is_empty()) {
                r.clone()
            } else {
                r.iter()
                    .filter(|(k, _)| {
                        k.as_str() == "ID"
                            || k.as_str() == "id"
                            || select.contains(k)
                            || (all_fields && !k.starts_with("UF_"))
                            || (uf && k.starts_with("UF_"))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            Value::Object(if typing == Typing::Legacy { legacy(&picked) } else { picked })
        })
        .collect();
    let next = (start >= 0 && (start as u64 + 50) < total).then(|| start as u64 + 50);
    Ok(Done { result: Value::Array(out), total: Some(total), next })
}

/// PHP's `parse_str`: `filter[>ID]=5&select[]=ID&select[]=TITLE` into nested objects
/// (lists as `{"0": .., "1": ..}`, as PHP holds them).
pub fn parse_php_query(query: &str) -> Value {
    let mut root = Map::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let (base, rest) = match key.find('[') {
            Some(i) if key.ends_with(']') => (&key[..i], &key[i + 1..key.len() - 1]),
            _ => (key.as_ref(), ""),
        };
        if base.is_empty() {
            continue;
        }
        let mut path: Vec<&str> = vec![base];
        if key.contains('[') && key.ends_with(']') {
            path.extend(rest.split("]["));
        }
        let mut node = &mut root;
        for (i, part) in path.iter().enumerate() {
            let part = if part.is_empty() { node.len().to_string() } else { (*part).to_owned() };
            if i + 1 == path.len() {
                node.insert(part, Value::String(value.to_string()));
                break;
            }
            let child = node.entry(part).or_insert_with(|| json!({}));
            if !child.is_object() {
                *child = json!({});
            }
            node = child.as_object_mut().expect("just made an object");
        }
    }
    Value::Object(root)
}

/// Replaces `$result[cmd][path..]` in string parameters with earlier commands' results;
/// an unresolvable reference becomes `""`, as on a real portal.
fn substitute(v: &mut Value, results: &Map<String, Value>) {
    match v {
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, results)),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, results)),
        Value::String(s) if s.starts_with("$result[") => {
            let mut node: Option<&Value> = None;
            let mut rest = &s["$result".len()..];
            let mut first = true;
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                let seg = &stripped[..end];
                node = if first {
                    results.get(seg)
                } else {
                    node.and_then(|n| match n {
                        Value::Object(m) => m.get(seg),
                        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                        _ => None,
                    })
                };
                first = false;
                rest = &stripped[end + 1..];
            }
            *v = match node {
                Some(Value::String(x)) => Value::String(x.clone()),
                Some(x @ (Value::Number(_) | Value::Bool(_))) => Value::String(text(x)),
                Some(x @ (Value::Array(_) | Value::Object(_))) => x.clone(),
                _ => Value::String(String::new()),
            };
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u64) -> Vec<Record> {
        (1..=n)
            .map(|i| {
                json!({"ID": i.to_string(), "TYPE_ID": (i % 4 + 1).to_string(), "DATE_CREATE": format!("2026-01-{:02}T10:00:00+03:00", i % 28 + 1), "TITLE": format!("Сделка {i}")})
                    .as_object()
                    .cloned()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn filters_compare_numbers_dates_and_text() {
        let r = rows(120);
        let get = |p: Value| list(&r, &p, Typing::Legacy).unwrap();
        let d = get(json!({"filter": {">ID": "9", "<=ID": 12}}));
        assert_eq!(d.result.as_array().unwrap().len(), 3, "9 < ID <= 12 compares as numbers, not text");
        let d = get(json!({"filter": {"@TYPE_ID": {"0": "2", "1": "4"}}}));
        assert_eq!(d.total, Some(60));
        assert_eq!(d.next, Some(50));
        let d = get(json!({"filter": {">=DATE_CREATE": "2026-01-28T09:00:00+02:00"}}));
        assert!(
            d.result.as_array().unwrap().iter().all(|r| r["DATE_CREATE"].as_str().unwrap().starts_with("2026-01-28"))
        );
        let d = get(json!({"filter": {"%TITLE": "сделка 11"}, "select": ["TITLE"]}));
        assert_eq!(d.total, Some(11));
        assert_eq!(d.result[0].as_object().unwrap().len(), 2, "ID and the selected field");
        let d = get(json!({"filter": {"!@TYPE_ID": ["1", "2", "3"]}, "order": {"ID": "DESC"}, "start": "-1"}));
        assert_eq!(d.total, Some(0));
        assert_eq!(d.next, None);
        assert_eq!(d.result[0]["ID"], "119");
    }

    #[test]
    fn batch_references_walk_pages_by_id() {
        let portal = Portal::new(PortalData { deals: rows(120), ..Default::default() }, EmulatorOptions::default());
        let cmd = json!({"a": "crm.deal.list?order[ID]=ASC&filter[%3EID]=0&start=-1",
                         "b": "crm.deal.list?order[ID]=ASC&filter[%3EID]=%24result%5Ba%5D%5B49%5D%5BID%5D&start=-1",
                         "c": "crm.deal.list?order[ID]=ASC&filter[>ID]=$result[b][49][ID]&start=-1",
                         "d": "no.such.method"});
        let (done, _) = portal.call("t", "batch", &json!({"halt": 0, "cmd": cmd}), true).unwrap();
        let r = &done.result["result"];
        assert_eq!(r["b"][0]["ID"], "51");
        assert_eq!(r["c"].as_array().unwrap().len(), 20);
        assert_eq!(done.result["result_error"]["d"]["error"], "ERROR_METHOD_NOT_FOUND");
        assert_eq!(done.result["result_next"], json!([]), "an empty PHP map is []");
    }
}
