//! A Bitrix24 portal on loopback: the REST methods the client uses, over real HTTP, with
//! Bitrix24's quirks (Bitrix24's REST documentation): legacy string typing, `[]` for empty maps, PHP
//! arrays for `0..n` keys, `items` wrappers, `batch` with `$result[..]` references, the
//! generic filter prefixes, `start` paging with `next`/`total` and `start=-1`, the `time`
//! object, the error envelopes and status codes, and a real leaky bucket answering
//! QUERY_LIMIT_EXCEEDED. Fault injection (5xx, rate-limit answers, truncated bodies,
//! delays) is deterministic given a seed.
//!
//! It serves whatever [`PortalData`] it is given (the demo portal is `super::demo`); it
//! knows nothing of KPIs. The client that talks to it is `super::bitrix24`.
//!
//! | file | its job |
//! |---|---|
//! | `mod.rs` | what the portal holds ([`PortalData`]), how it behaves ([`EmulatorOptions`]), the server |
//! | `http` | a request routed to its method, faults injected, the answer's envelope and `time` object |
//! | `limits` | the portal's leaky bucket and its operating-time account per method |
//! | `methods` | each REST method and `batch`, the webhook's scopes |
//! | `messenger` | the messenger and Disk methods a report sent into a chat uses, and what they took |
//! | `lists` | a list method's filter, order, paging and select; PHP query strings |

mod http;
mod limits;
mod lists;
mod messenger;
mod methods;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;
use serde::Serialize;
use serde_json::{Map, Value};

use self::http::handle;
use self::limits::Account;
use self::lists::text;

pub use self::lists::parse_php_query;
pub use self::messenger::ChatDelivery;

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
    /// Group chats the webhook's user is in (`chat42` is 42); private dialogs with active
    /// users need none.
    pub group_chats: Vec<u64>,
    /// The largest file `disk.folder.uploadfile` stores; a larger one is refused
    /// ERROR_COULD_NOT_SAVE_FILE, as a portal whose Disk is full refuses it.
    pub max_upload_bytes: u64,
    /// The longest MESSAGE the messenger takes (an assumption: Bitrix24 documents none).
    pub max_message_chars: usize,
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
            group_chats: Vec::new(),
            max_upload_bytes: 100 * 1024 * 1024,
            max_message_chars: 20_000,
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
    messenger: Mutex<messenger::Messenger>,
}

impl Emulator {
    /// Binds `127.0.0.1:0` inside the current tokio runtime and starts serving.
    pub async fn start(mut data: PortalData, options: EmulatorOptions) -> std::io::Result<Emulator> {
        sort_tables(&mut data);
        let state = Arc::new(Portal::new(data, options.clone()));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        // Uploads travel as base64 inside the JSON body: room for the largest file stored.
        let body_limit = usize::try_from(options.max_upload_bytes.saturating_mul(2)).unwrap_or(usize::MAX).max(2 << 20);
        let app = Router::new()
            .route("/rest/{user}/{token}/{*method}", any(handle))
            .layer(axum::extract::DefaultBodyLimit::max(body_limit))
            .with_state(state.clone());
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

    /// What the messenger took so far (`im.message.add`, `im.disk.file.commit`), in order.
    pub fn messages(&self) -> Vec<ChatDelivery> {
        self.state.messenger.lock().expect("no panics while holding the messenger").delivered.clone()
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
            messenger: Mutex::new(messenger::Messenger::default()),
        }
    }
}

#[cfg(test)]
mod tests;
