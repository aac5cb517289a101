//! A fault-injecting HTTP proxy for the Bitrix24 client: it sits on loopback between the
//! client and the emulator and, on the wire, does what portals and the proxies in front of
//! them do now and then: refuse connections (an outage window), reset a connection in the
//! middle of the body, stall past the client's timeout, drip the answer slowly, answer a PHP
//! error page or a DDoS-protection challenge with status 200, answer 502/504 with HTML, or
//! cut the JSON short.
//!
//! Each request gets its own upstream connection (`Connection: close` both ways), so a fault
//! hits exactly one request. With [`FaultProxy::seeded`], which request gets which fault is
//! decided by a seeded generator in request order, at a given rate. An HTML page with
//! status 200 is only injected after the portal has answered this proxy with JSON: on first
//! contact it means a wrong URL, which no retry fixes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// One kind of misbehaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Connections refused for [`FaultProxy::outage_length`]: the port is closed.
    Outage,
    /// The answer's head and half its body, then a TCP reset.
    ResetMidBody,
    /// Nothing at all until long after the client's timeout.
    Stall,
    /// The whole answer, a few bytes at a time.
    SlowDrip,
    /// A PHP fatal error page with status 200.
    Html200,
    /// `502 Bad Gateway` from a reverse proxy, with an HTML body.
    BadGateway,
    /// `504 Gateway Timeout` from a reverse proxy, with an HTML body.
    GatewayTimeout,
    /// Status 200 and a Content-Length that fits, but only half of the JSON.
    TruncatedJson,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::Outage,
        Fault::ResetMidBody,
        Fault::Stall,
        Fault::SlowDrip,
        Fault::Html200,
        Fault::BadGateway,
        Fault::GatewayTimeout,
        Fault::TruncatedJson,
    ];
}

/// What the proxy does to the requests it has not been told about one by one.
struct Plan {
    rng: fastrand::Rng,
    rate: f64,
    faults: Vec<Fault>,
    /// What the next requests get, in order (`None`: passed as they are), before the seeded
    /// plan.
    queued: std::collections::VecDeque<Option<Fault>>,
}

struct State {
    upstream: SocketAddr,
    plan: Mutex<Plan>,
    /// How long a stall lasts (longer than the client's timeout).
    stall: Duration,
    /// How long an [`Fault::Outage`] drawn by the generator closes the port.
    outage: Duration,
    down: AtomicBool,
    changed: tokio::sync::Notify,
    /// Whether the upstream has answered a request through the proxy (JSON seen).
    answered: AtomicBool,
    requests: AtomicUsize,
    injected: Mutex<Vec<Fault>>,
}

/// The proxy; it stops when dropped.
pub struct FaultProxy {
    pub port: u16,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (the emulator's `http://127.0.0.1:port/rest/1/code/` URL) that
    /// passes everything until told otherwise.
    pub async fn start(upstream_url: &str) -> FaultProxy {
        FaultProxy::seeded(upstream_url, 0, 0.0, &Fault::ALL).await
    }

    /// A proxy that injects one of `faults` into each request with probability `rate`,
    /// drawn from a generator seeded with `seed`.
    pub async fn seeded(upstream_url: &str, seed: u64, rate: f64, faults: &[Fault]) -> FaultProxy {
        let url = url::Url::parse(upstream_url).unwrap();
        let upstream: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap()).parse().unwrap();
        let state = Arc::new(State {
            upstream,
            plan: Mutex::new(Plan {
                rng: fastrand::Rng::with_seed(seed),
                rate,
                faults: faults.to_vec(),
                queued: Default::default(),
            }),
            stall: Duration::from_secs(4),
            outage: Duration::from_millis(300),
            down: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
            answered: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
            injected: Mutex::new(Vec::new()),
        });
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(accept_loop(listener, port, Arc::clone(&state)));
        FaultProxy { port, state, task }
    }

    /// The webhook URL through the proxy, for the emulator's `upstream_url`.
    pub fn url(&self, upstream_url: &str) -> String {
        let mut url = url::Url::parse(upstream_url).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    /// Closes the port (connections refused) or opens it again.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }

    /// An outage of `d` from now: connections refused, then served again.
    pub fn outage_for(&self, d: Duration) {
        self.set_down(true);
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            state.down.store(false, Ordering::SeqCst);
            state.changed.notify_waiters();
        });
    }

    /// The next requests get these faults, in order (`None`: passed as it is); then the
    /// seeded plan again. Queued faults are injected as they are, on first contact too.
    pub fn queue(&self, plan: &[Option<Fault>]) {
        self.state.plan.lock().unwrap().queued.extend(plan.iter().copied());
    }

    /// Requests that reached the proxy.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The faults injected so far, in order.
    pub fn injected(&self) -> Vec<Fault> {
        self.state.injected.lock().unwrap().clone()
    }
}

/// A listener with SO_REUSEADDR, so that the port can be opened again after an outage.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn accept_loop(listener: TcpListener, port: u16, state: Arc<State>) {
    let mut listener = Some(listener);
    loop {
        let changed = state.changed.notified();
        if state.down.load(Ordering::SeqCst) {
            // Closed: connecting clients get ECONNREFUSED.
            listener = None;
            changed.await;
            continue;
        }
        if listener.is_none() {
            match bind(SocketAddr::from(([127, 0, 0, 1], port))) {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
        }
        let open = listener.as_ref().unwrap();
        tokio::select! {
            accepted = open.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(serve(client, Arc::clone(&state)));
                }
            }
            _ = changed => {}
        }
    }
}

/// Reads one HTTP request: its head (without the final blank line) and its body.
async fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = content_length(&head).unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok()).flatten()
    })
}

/// The head with `Connection: close` instead of whatever it said.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> =
        head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
    lines.push("Connection: close");
    lines.join("\r\n")
}

impl State {
    /// The fault for the next request, if any.
    fn draw(&self) -> Option<Fault> {
        let mut plan = self.plan.lock().unwrap();
        if let Some(next) = plan.queued.pop_front() {
            return next;
        }
        if plan.faults.is_empty() || plan.rate <= 0.0 || plan.rng.f64() >= plan.rate {
            return None;
        }
        let count = plan.faults.len();
        let i = plan.rng.usize(..count);
        let fault = plan.faults[i];
        // An HTML page on first contact is a wrong URL, not a hiccup: not injected then.
        (fault != Fault::Html200 || self.answered.load(Ordering::SeqCst)).then_some(fault)
    }
}

fn html(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(mut client: TcpStream, state: Arc<State>) {
    let Some((head, body)) = read_request(&mut client).await else { return };
    state.requests.fetch_add(1, Ordering::SeqCst);
    let fault = state.draw();
    if let Some(f) = fault {
        state.injected.lock().unwrap().push(f);
    }
    match fault {
        Some(Fault::Outage) => {
            // This connection is reset; the port stays closed for the outage.
            reset_on_close(&client);
            drop(client);
            state.down.store(true, Ordering::SeqCst);
            state.changed.notify_waiters();
            tokio::time::sleep(state.outage).await;
            state.down.store(false, Ordering::SeqCst);
            state.changed.notify_waiters();
            return;
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(state.stall).await;
            return;
        }
        Some(Fault::Html200) => {
            let page = "<!DOCTYPE html><html><body><b>Fatal error</b>: Allowed memory size of 134217728 bytes exhausted in <b>/home/bitrix/www/bitrix/modules/rest/lib/rest.php</b> on line <b>812</b></body></html>";
            let _ = client.write_all(&html("200 OK", page)).await;
            return;
        }
        Some(Fault::BadGateway) => {
            let page = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
            let _ = client.write_all(&html("502 Bad Gateway", page)).await;
            return;
        }
        Some(Fault::GatewayTimeout) => {
            let page = "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1></center><hr><center>nginx</center></body></html>";
            let _ = client.write_all(&html("504 Gateway Time-out", page)).await;
            return;
        }
        _ => {}
    }
    let Some(answer) = forward(state.upstream, &head, &body).await else {
        reset_on_close(&client);
        return;
    };
    let Some(split) = find(&answer, b"\r\n\r\n") else { return };
    let (answer_head, answer_body) = (&answer[..split], &answer[split + 4..]);
    if answer_body.first() == Some(&b'{') {
        state.answered.store(true, Ordering::SeqCst);
    }
    match fault {
        Some(Fault::ResetMidBody) => {
            let _ = client.write_all(&answer[..split + 4 + answer_body.len() / 2]).await;
            let _ = client.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            // SO_LINGER 0: closing sends RST instead of FIN.
            reset_on_close(&client);
        }
        Some(Fault::TruncatedJson) => {
            let cut = &answer_body[..answer_body.len() / 2];
            let head = String::from_utf8_lossy(answer_head);
            let head: Vec<String> = head
                .split("\r\n")
                .map(|l| {
                    if l.to_ascii_lowercase().starts_with("content-length:") {
                        format!("content-length: {}", cut.len())
                    } else {
                        l.to_owned()
                    }
                })
                .collect();
            let mut out = head.join("\r\n").into_bytes();
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(cut);
            let _ = client.write_all(&out).await;
        }
        Some(Fault::SlowDrip) => {
            let step = (answer.len() / 16).max(1);
            for piece in answer.chunks(step) {
                if client.write_all(piece).await.is_err() {
                    return;
                }
                let _ = client.flush().await;
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
        _ => {
            let _ = client.write_all(&answer).await;
        }
    }
}

/// SO_LINGER 0: closing the socket sends RST instead of FIN. (Deprecated in tokio because a
/// non-zero linger blocks the thread on drop; a zero one closes at once.)
#[allow(deprecated)]
fn reset_on_close(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

/// Sends the request upstream on a connection of its own; returns the whole answer.
async fn forward(upstream: SocketAddr, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut conn = TcpStream::connect(upstream).await.ok()?;
    let mut request = closing(head).into_bytes();
    request.extend_from_slice(b"\r\n\r\n");
    request.extend_from_slice(body);
    conn.write_all(&request).await.ok()?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.ok()?;
    Some(answer)
}
