//! The transport: one HTTP call or one `batch` to the portal, paced by the client's bucket
//! ([`super::limiter`]), retried when the failure is transient, and accounted against the
//! portal's operating-time limit ([`super::operating`]). This is where a rate-limit answer
//! (QUERY_LIMIT_EXCEEDED) is handled.
//!
//! Failures are classified by the `error` field, not the HTTP status ([`classify`]);
//! transient ones are retried with capped, jittered backoff, and every retry loop gives up
//! the same way ([`Attempts`]). An answer that is not JSON (an HTML page, a cut-off body) is
//! transient once the portal has answered this client with a proper envelope; on first
//! contact an HTML page means a wrong URL. The webhook code never leaves this module: the
//! base URL is private, logs show `https://portal/rest/1/***/`, and the retry logs scrub the
//! code from whatever the portal answered ([`crate::config::Secret::scrub`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};
use url::Url;

use super::limiter::LeakyBucket;
use super::operating::OperatingAccount;
use super::wire::{self, ApiError, Envelope};
use crate::config::Secret;
use crate::crm::CrmError;

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
    /// Where requests and rows are counted for a person to see (off by default).
    pub progress: crate::progress::Progress,
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
            progress: crate::progress::Progress::off(),
        }
    }
}

impl ClientSettings {
    /// The pace, timeout and retries `[crm]` sets, with nothing shown.
    pub fn from_config(crm: &crate::config::CrmConfig) -> ClientSettings {
        ClientSettings {
            rate_per_sec: crm.rate_limit_per_sec,
            burst: crm.rate_limit_burst,
            timeout: Duration::from_secs(crm.timeout_secs),
            max_retries: crm.max_retries,
            operating_limit: Duration::from_secs(crm.operating_limit_secs),
            ..ClientSettings::default()
        }
    }
}

/// The connection to one portal: its webhook, pace, retries and operating-time account.
pub(super) struct Transport {
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
    operating: OperatingAccount,
}

/// A failure of one attempt, before retries decide.
pub(super) enum Failure {
    Transient(String, String),
    /// OPERATION_TIME_LIMIT: transient, but a retry waits for the method's reset.
    Operating(String, String),
    Permanent(String, String),
}

/// One command of a `batch`.
pub(super) struct Command {
    pub(super) key: String,
    pub(super) method: &'static str,
    pub(super) query: String,
}

/// One call's or one command's answer.
#[derive(Default)]
pub(super) struct Answer {
    pub(super) result: Value,
    pub(super) total: Option<u64>,
    pub(super) next: Option<u64>,
    operating: Option<wire::Operating>,
}

/// A batch's answers, and the commands refused for their method's operating time.
pub(super) struct BatchAnswers {
    pub(super) answers: BTreeMap<String, Answer>,
    /// (method, detail) of each refused command.
    pub(super) blocked: Vec<(String, String)>,
}

/// The attempts at one thing (a call, a batch, a round of pages) after transient
/// failures: the one place a retry loop gives up.
pub(super) struct Attempts {
    failed: u32,
    max_retries: u32,
}

impl Attempts {
    pub(super) fn new(max_retries: u32) -> Attempts {
        Attempts { failed: 0, max_retries }
    }

    /// How many attempts failed so far (0 while the first one runs).
    pub(super) fn failed(&self) -> u32 {
        self.failed
    }

    /// After a failed attempt: its number (0 for the first) when another one is allowed,
    /// else the transient error that ends the loop, "…; gave up after N attempts".
    pub(super) fn retry(&mut self, method: String, detail: &str) -> Result<u32, CrmError> {
        if self.failed >= self.max_retries {
            return Err(CrmError::Transient {
                method,
                detail: format!("{detail}; gave up after {} attempts", self.failed + 1),
            });
        }
        self.failed += 1;
        Ok(self.failed - 1)
    }

    /// An attempt that got somewhere: the count starts over.
    pub(super) fn reset(&mut self) {
        self.failed = 0;
    }
}

impl Transport {
    pub(super) fn new(webhook_url: &Secret, settings: ClientSettings) -> Result<Transport, CrmError> {
        let bad = |detail: String| CrmError::Permanent { method: "webhook".to_owned(), detail };
        let webhook = crate::endpoint::webhook_url(webhook_url.expose()).map_err(bad)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| bad(format!("failed to build the HTTP client: {}", e.without_url())))?;
        let bucket = LeakyBucket::new(settings.rate_per_sec, settings.burst);
        let operating = OperatingAccount::new(
            settings.operating_limit,
            settings.operating_margin,
            settings.max_operating_wait,
            webhook.redacted.clone(),
        );
        Ok(Transport {
            http,
            base: webhook.base,
            redacted: webhook.redacted,
            code: Secret::new(webhook.code),
            settings,
            bucket,
            requests: AtomicU64::new(0),
            answered: AtomicBool::new(false),
            operating,
        })
    }

    /// HTTP requests sent so far, retries included.
    pub(super) fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The webhook URL with its code masked.
    pub(super) fn redacted(&self) -> &str {
        &self.redacted
    }

    #[cfg(test)]
    pub(super) fn base(&self) -> &Url {
        &self.base
    }

    /// `text` without the webhook code, plain or encoded.
    pub(super) fn scrub(&self, text: &str) -> String {
        self.code.scrub(text)
    }

    pub(super) fn operating(&self) -> &OperatingAccount {
        &self.operating
    }

    /// Where requests and rows are counted for a person to see.
    pub(super) fn progress(&self) -> &crate::progress::Progress {
        &self.settings.progress
    }

    /// A fresh count of attempts, allowing `max_retries` retries.
    pub(super) fn attempts(&self) -> Attempts {
        Attempts::new(self.settings.max_retries)
    }

    /// Capped exponential backoff with jitter. The base is one bucket drain interval
    /// (0.5 s at 2 req/s): after QUERY_LIMIT_EXCEEDED that is when a slot frees up.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let base = (1.0 / self.settings.rate_per_sec.max(0.001)).clamp(0.01, 1.0);
        let exp = (base * 2f64.powi(attempt.min(16) as i32)).min(30.0);
        Duration::from_secs_f64(exp * (0.5 + fastrand::f64() * 0.5))
    }

    /// Calls one method with retries. `label` names it in errors (for a batch: its commands).
    pub(super) async fn call(&self, method: &str, label: &str, params: &Value) -> Result<Answer, CrmError> {
        let mut attempts = self.attempts();
        loop {
            self.operating.await_reset(method).await?;
            self.bucket.acquire().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(portal = %self.redacted, method = label, attempt = attempts.failed(), "Calling Bitrix24.");
            let outcome = self.once(method, label, params).await;
            self.settings.progress.request_done();
            match outcome {
                Ok(answer) => {
                    // The outer `batch` is not accounted; its commands are, in `batch`.
                    if method != "batch"
                        && let Some(operating) = answer.operating
                    {
                        self.operating.note(method, operating);
                    }
                    return Ok(answer);
                }
                Err(Failure::Permanent(method, detail)) => return Err(CrmError::Permanent { method, detail }),
                Err(Failure::Operating(shown, detail)) => {
                    let attempt = attempts.retry(shown.clone(), &detail)?;
                    self.operating.note_refused(method, false);
                    tracing::warn!(portal = %self.redacted, method = %shown, attempt, detail = %self.scrub(&detail), "Bitrix24 method over its operating-time limit; retrying after its reset.");
                    // With a known reset ahead, the wait at the top of the loop is the right
                    // one; without, the portal said nothing of when, so back off.
                    if !self.operating.reset_pending(method) {
                        tokio::time::sleep(self.backoff(attempt)).await;
                    }
                }
                Err(Failure::Transient(method, detail)) => {
                    let attempt = attempts.retry(method.clone(), &detail)?;
                    let wait = self.backoff(attempt);
                    tracing::warn!(portal = %self.redacted, method = %method, attempt, wait_ms = wait.as_millis() as u64, detail = %self.scrub(&detail), "Bitrix24 call failed; retrying.");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One HTTP request and its answer decoded: the envelope's result, or a classified failure.
    async fn once(&self, method: &str, label: &str, params: &Value) -> Result<Answer, Failure> {
        let transient = |d: String| Failure::Transient(label.to_owned(), d);
        let permanent = |d: String| Failure::Permanent(label.to_owned(), d);
        let url = self.base.join(method).map_err(|e| permanent(format!("bad method name: {e}")))?;
        let response = self.http.post(url).json(params).send().await.map_err(|e| {
            let e = e.without_url();
            transient(format!("{} to {}: {e}", crate::endpoint::send_failure(&e), self.redacted))
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
                } else if head.starts_with('<') && self.answered.load(Ordering::Relaxed) {
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
            self.answered.store(true, Ordering::Relaxed);
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
    pub(super) async fn batch(&self, commands: &[Command]) -> Result<BatchAnswers, CrmError> {
        let methods: BTreeSet<&str> = commands.iter().map(|c| c.method).collect();
        let label = format!("batch [{}]", methods.iter().copied().collect::<Vec<_>>().join(", "));
        let cmd: Map<String, Value> =
            commands.iter().map(|c| (c.key.clone(), Value::String(format!("{}?{}", c.method, c.query)))).collect();
        let params = json!({"halt": 0, "cmd": cmd});
        let mut attempts = self.attempts();
        loop {
            for method in &methods {
                self.operating.await_reset(method).await?;
            }
            let answer = self.call("batch", &label, &params).await?;
            let decoded = wire::decode_batch(&answer.result).map_err(|detail| CrmError::Permanent {
                method: label.clone(),
                detail: format!("broken batch answer: {detail}"),
            })?;
            // In key order, which is execution order: the last word on a method is its latest.
            for c in commands {
                if let Some(operating) = decoded.operating.get(&c.key) {
                    self.operating.note(c.method, *operating);
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
                self.operating.note_refused(method, served);
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
                let attempt = attempts.retry(method.clone(), &detail)?;
                let wait = self.backoff(attempt);
                tracing::warn!(portal = %self.redacted, method = %method, attempt, detail = %self.scrub(&detail), "Bitrix24 batch command failed; retrying the batch.");
                tokio::time::sleep(wait).await;
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
}

/// `http_build_query` as PHP writes it: `filter[>ID]=5&select[0]=ID&order[ID]=ASC`: how a
/// command's parameters travel inside a `batch`.
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
pub(super) fn classify(method: &str, api: &ApiError, status: u16) -> Failure {
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
        "ACCESS_ERROR" | "USER_NOT_FOUND" | "USER_ID_EMPTY" | "DIALOG_ID_EMPTY" | "CHAT_ID" | "CHAT_ID_EMPTY" => {
            p(format!(
                "the portal refused the dialog ({shown}); check the recipient's Bitrix24 user id or chat (bitrix24_recipients), and that the webhook's user may write to it"
            ))
        }
        "ERROR_COULD_NOT_SAVE_FILE" | "SAVE_ERROR" => {
            p(format!("the portal could not store the file ({shown}); check the Bitrix24 Disk's free space"))
        }
        "MESSAGE_EMPTY" | "PARAMS_ERROR" => p(format!("the portal refused the message ({shown})")),
        "INSUFFICIENT_SCOPE" if method.starts_with("im.") || method.starts_with("disk.") => p(format!(
            "the webhook lacks a permission ({shown}); the bitrix24 channel needs the im and disk scopes: tick them in the incoming webhook (docs/operations.md)"
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

    #[test]
    fn a_retry_loop_gives_up_after_max_retries_plus_one_attempts() {
        let mut attempts = Attempts::new(2);
        assert_eq!(attempts.retry("m".into(), "x").unwrap(), 0);
        assert_eq!(attempts.retry("m".into(), "x").unwrap(), 1);
        let e = attempts.retry("m".into(), "x").unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.to_string(), "failed to call m (x; gave up after 3 attempts); will retry");
        attempts.reset();
        assert_eq!(attempts.failed(), 0);
    }
}
