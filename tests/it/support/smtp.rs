//! An SMTP server for tests, in-process on 127.0.0.1: STARTTLS with a certificate made
//! here (a throw-away CA and a `localhost`/`127.0.0.1` leaf it signs), AUTH PLAIN and LOGIN
//! with one fixed user, and every accepted message recorded for the test to read back.
//!
//! Knobs make it misbehave the way real servers do: refuse the first N `DATA` commands
//! with 451 (try again later), reject given recipients with 550 (no such mailbox), go
//! "down" (421 to every new connection) and come back, keep a message but hang up before
//! saying so, or wait before confirming one (a window to kill the sender in).
//!
//! ```ignore
//! let smtp = TestSmtp::start(SmtpOptions::default());
//! let mailer = smtp.mailer();            // an SmtpMailer trusting the test CA
//! // or: mailer_from_config(&smtp.mail_config()), or smtp.mail_toml() in a config file
//! mailer.send(&outgoing).await?;
//! assert_eq!(smtp.received().len(), 1);
//! ```
//!
//! The server runs on its own threads for the rest of the test process (mailin-embedded has
//! no shutdown); each `start` gets a fresh port, so tests do not share state.

#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailin_embedded::response::{AUTH_OK, INTERNAL_ERROR, INVALID_CREDENTIALS, NO_MAILBOX, NO_SERVICE, OK};
use mailin_embedded::{Action, AuthMechanism, Handler, Response, Server, SslConfig};
use salespulse::config::{MailConfig, MailTransportKind, Secret, TlsMode};
use salespulse::mail::SmtpMailer;

pub const TEST_USER: &str = "reports@example.ru";
pub const TEST_PASSWORD: &str = "s3cret-Пароль-42";

/// How the server behaves.
#[derive(Clone, Debug, Default)]
pub struct SmtpOptions {
    /// Answer the first N `DATA` commands with `451`.
    pub refuse_data: usize,
    /// Answer `RCPT TO` for these addresses with `550`.
    pub reject_recipients: Vec<String>,
    /// Keep the first N messages but answer `421` and hang up after their final dot: the
    /// client believes it failed, the message was delivered (a retry duplicates it).
    pub accept_then_hang_up: usize,
    /// Keep each message, then wait this long before answering `250`: a window in which a
    /// test can kill the sender, which then never learns the message went out.
    pub delay_after_data: Option<Duration>,
    /// Speak TLS from the first byte (port 465 style) instead of offering STARTTLS. mailin
    /// cannot, so a TLS front relays to it in plain text; mailin then offers no AUTH (it
    /// allows AUTH only under its own TLS), and [`TestSmtp::mail_config`] sends none.
    pub implicit_tls: bool,
    /// Refuse every login with `535`, echoing what the client sent in base64 (AUTH PLAIN's
    /// `\0user\0password`, AUTH LOGIN's password), as some servers do.
    pub refuse_login: bool,
    /// Offer AUTH LOGIN only (PLAIN is offered first otherwise, and clients prefer it).
    pub auth_login_only: bool,
}

/// One message the server accepted (250 after DATA).
#[derive(Clone, Debug)]
pub struct Received {
    /// `MAIL FROM`.
    pub from: String,
    /// `RCPT TO`, in order.
    pub to: Vec<String>,
    /// The message as transmitted (dot-unstuffed), CRLF line ends.
    pub data: Vec<u8>,
    /// Who logged in on the connection, if anyone.
    pub user: Option<String>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    refuse_data: AtomicUsize,
    data_attempts: AtomicUsize,
    connections: AtomicUsize,
    down: AtomicBool,
    reject: Mutex<Vec<String>>,
    hang_up: AtomicUsize,
    delay_after_data: Mutex<Option<Duration>>,
    refuse_login: AtomicBool,
    logins: AtomicUsize,
}

/// A running test server.
pub struct TestSmtp {
    pub port: u16,
    /// The CA that signed the server's certificate, for [`SmtpMailer::with_root_certificate`].
    pub ca_pem: String,
    pub username: String,
    pub password: String,
    shared: Arc<Shared>,
    implicit_tls: bool,
    /// Holds `ca.pem` (see [`Self::ca_file`]) for as long as the server lives.
    dir: tempfile::TempDir,
}

impl TestSmtp {
    /// Starts a server on a free loopback port.
    pub fn start(options: SmtpOptions) -> TestSmtp {
        let shared = Arc::new(Shared::default());
        shared.refuse_data.store(options.refuse_data, Ordering::SeqCst);
        *shared.reject.lock().unwrap() = options.reject_recipients.iter().map(|a| a.to_ascii_lowercase()).collect();
        shared.hang_up.store(options.accept_then_hang_up, Ordering::SeqCst);
        *shared.delay_after_data.lock().unwrap() = options.delay_after_data;
        shared.refuse_login.store(options.refuse_login, Ordering::SeqCst);

        let certs = certificates();
        let ca_pem = certs.ca_pem.clone();
        // mailin-embedded reads PEM files; `ca.pem` stays for clients (`ca_file`).
        let dir = tempfile::tempdir().expect("temp dir for the test certificates");
        let cert_path = dir.path().join("leaf.pem");
        let key_path = dir.path().join("leaf.key");
        let chain_path = dir.path().join("ca.pem");
        std::fs::write(&cert_path, &certs.leaf_pem).unwrap();
        std::fs::write(&key_path, &certs.key_pem).unwrap();
        std::fs::write(&chain_path, &ca_pem).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let mut port = listener.local_addr().unwrap().port();
        let handler = Session { shared: shared.clone(), ..Session::default() };
        let mut server = Server::new(handler);
        server.with_name("localhost").with_num_threads(16).with_tcp_listener(listener);
        if options.implicit_tls {
            let front = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
            let backend = port;
            port = front.local_addr().unwrap().port();
            spawn_tls_front(front, backend, certs);
        } else {
            if !options.auth_login_only {
                server.with_auth(AuthMechanism::Plain);
            }
            server
                .with_auth(AuthMechanism::Login)
                .with_ssl(SslConfig::Trusted {
                    cert_path: cert_path.display().to_string(),
                    key_path: key_path.display().to_string(),
                    chain_path: chain_path.display().to_string(),
                })
                .expect("the test certificate loads");
        }
        std::thread::Builder::new()
            .name(format!("test-smtp-{port}"))
            .spawn(move || {
                let _ = server.serve();
            })
            .unwrap();
        TestSmtp {
            port,
            ca_pem,
            username: TEST_USER.to_owned(),
            password: TEST_PASSWORD.to_owned(),
            shared,
            implicit_tls: options.implicit_tls,
            dir,
        }
    }

    /// The CA certificate as a PEM file, for `ca_file` in `[mail]` (the binary in a
    /// subprocess trusts the server through it).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A `[mail]` section for a config file that sends to this server, for tests that run
    /// the binary.
    pub fn mail_toml(&self) -> String {
        let login = if self.implicit_tls {
            "tls = \"tls\"\n".to_owned()
        } else {
            format!("tls = \"starttls\"\nusername = \"{}\"\npassword = \"{}\"\n", self.username, self.password)
        };
        format!(
            "[mail]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\n{login}\
             from = \"Отчёты продаж <{TEST_USER}>\"\nadmin_to = [\"it@example.ru\"]\nca_file = '{}'\n\
             timeout_secs = 10\n",
            self.port,
            self.ca_file().display()
        )
    }

    /// The messages accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// How many `DATA` commands arrived (accepted or refused).
    pub fn data_attempts(&self) -> usize {
        self.shared.data_attempts.load(Ordering::SeqCst)
    }

    /// How many connections were greeted.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Refuses the next `n` `DATA` commands with 451.
    pub fn refuse_next(&self, n: usize) {
        self.shared.refuse_data.store(n, Ordering::SeqCst);
    }

    /// Rejects `RCPT TO:<address>` with 550 from now on.
    pub fn reject_recipient(&self, address: &str) {
        self.shared.reject.lock().unwrap().push(address.to_ascii_lowercase());
    }

    /// Delays the `250` after each message's final dot (the message is kept first).
    pub fn set_delay_after_data(&self, delay: Option<Duration>) {
        *self.shared.delay_after_data.lock().unwrap() = delay;
    }

    /// Waits (blocking the thread) until at least `n` messages were accepted; false on
    /// timeout.
    pub fn wait_received(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, || self.shared.received.lock().unwrap().len() >= n)
    }

    /// Waits (blocking the thread) until at least `n` `DATA` commands arrived; false on
    /// timeout.
    pub fn wait_data_attempts(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, || self.data_attempts() >= n)
    }

    fn wait(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let end = Instant::now() + timeout;
        while !done() {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// How many logins were tried (accepted or refused).
    pub fn logins(&self) -> usize {
        self.shared.logins.load(Ordering::SeqCst)
    }

    /// Refuses (`true`) or accepts (`false`) logins from now on.
    pub fn set_refuse_login(&self, refuse: bool) {
        self.shared.refuse_login.store(refuse, Ordering::SeqCst);
    }

    /// While down, every new session gets `421` and is closed, as from a server in
    /// maintenance; sessions already open carry on.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// `[mail]` for this server: STARTTLS, the test user, `from` with a Cyrillic name, the
    /// test CA as `ca_file` (so `mailer_from_config` trusts it too).
    pub fn mail_config(&self) -> MailConfig {
        MailConfig {
            transport: if self.implicit_tls {
                MailTransportKind::Smtp {
                    host: "127.0.0.1".to_owned(),
                    port: self.port,
                    tls: TlsMode::Tls,
                    username: None,
                    password: None,
                }
            } else {
                MailTransportKind::Smtp {
                    host: "127.0.0.1".to_owned(),
                    port: self.port,
                    tls: TlsMode::Starttls,
                    username: Some(self.username.clone()),
                    password: Some(Secret::new(self.password.clone()).into()),
                }
            },
            from: format!("Отчёты продаж <{TEST_USER}>"),
            reply_to: None,
            admin_to: vec!["it@example.ru".to_owned()],
            max_attachment_bytes: 10 * 1024 * 1024,
            timeout_secs: 10,
            ca_file: Some(self.ca_file()),
        }
    }

    /// A mailer for [`Self::mail_config`] that trusts the test CA.
    pub fn mailer(&self) -> SmtpMailer {
        self.mailer_for(&self.mail_config())
    }

    /// A mailer for any config aimed at this server, trusting the test CA.
    pub fn mailer_for(&self, config: &MailConfig) -> SmtpMailer {
        SmtpMailer::with_root_certificate(config, self.ca_pem.as_bytes()).expect("a mailer for the test server")
    }
}

/// The test PKI.
struct Certs {
    ca_pem: String,
    leaf_pem: String,
    key_pem: String,
    leaf_der: Vec<u8>,
    key_der: Vec<u8>,
}

/// A CA and a leaf for `localhost` and `127.0.0.1` signed by it: rustls will not accept a
/// self-signed CA certificate as a server's own.
fn certificates() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name.push(DnType::CommonName, "salespulse test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf.signed_by(&leaf_key, &ca).unwrap();
    Certs {
        ca_pem: ca.pem(),
        leaf_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        leaf_der: leaf.der().to_vec(),
        key_der: leaf_key.serialize_der(),
    }
}

/// Terminates TLS on `front` and relays each connection to the plain server on `backend`.
fn spawn_tls_front(front: TcpListener, backend: u16, certs: Certs) {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(certs.leaf_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certs.key_der)),
        )
        .expect("the test certificate loads");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    front.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let front = tokio::net::TcpListener::from_std(front).unwrap();
            while let Ok((tcp, _)) = front.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
    });
}

/// One SMTP session's state; mailin-embedded clones the handler per connection.
#[derive(Clone, Default)]
struct Session {
    shared: Arc<Shared>,
    user: Option<String>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Session {
    /// `sent` is what the client sent, decoded: echoed in base64 when refusing.
    fn login(&mut self, user: &str, password: &str, sent: &str) -> Response {
        self.shared.logins.fetch_add(1, Ordering::SeqCst);
        if self.shared.refuse_login.load(Ordering::SeqCst) {
            use base64::Engine as _;
            let echoed = base64::engine::general_purpose::STANDARD.encode(sent);
            return Response::custom(535, format!("5.7.8 Authentication credentials invalid: {echoed}"));
        }
        if user == TEST_USER && password == TEST_PASSWORD {
            self.user = Some(user.to_owned());
            AUTH_OK
        } else {
            INVALID_CREDENTIALS
        }
    }
}

impl Handler for Session {
    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> Response {
        self.shared.connections.fetch_add(1, Ordering::SeqCst);
        if self.shared.down.load(Ordering::SeqCst) { NO_SERVICE } else { OK }
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let to = to.trim_matches(['<', '>']).to_ascii_lowercase();
        if self.shared.reject.lock().unwrap().contains(&to) { NO_MAILBOX } else { OK }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.shared.data_attempts.fetch_add(1, Ordering::SeqCst);
        // Refused at the DATA command: mailin 0.6 keeps a session in DATA mode after a
        // refusal at the final dot, which would wedge the client's next command.
        let refused =
            self.shared.refuse_data.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if refused {
            return INTERNAL_ERROR;
        }
        self.from = from.trim_matches(['<', '>']).to_owned();
        self.to = to.iter().map(|t| t.trim_matches(['<', '>']).to_owned()).collect();
        self.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.shared.received.lock().unwrap().push(Received {
            from: self.from.clone(),
            to: self.to.clone(),
            data: std::mem::take(&mut self.data),
            user: self.user.clone(),
        });
        let hang_up =
            self.shared.hang_up.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if hang_up {
            let mut bye = NO_SERVICE;
            bye.action = Action::Close;
            return bye;
        }
        let delay = *self.shared.delay_after_data.lock().unwrap();
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        OK
    }

    fn auth_plain(&mut self, authorization_id: &str, authentication_id: &str, password: &str) -> Response {
        self.login(authentication_id, password, &format!("{authorization_id}\0{authentication_id}\0{password}"))
    }

    fn auth_login(&mut self, username: &str, password: &str) -> Response {
        self.login(username, password, password)
    }
}
