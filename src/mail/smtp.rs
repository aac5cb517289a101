//! Delivery over SMTP with lettre: STARTTLS (required, never downgraded), implicit TLS, or
//! plain text to a loopback relay; AUTH with the configured user; pooled connections.
//!
//! What it leaves to others: retries and their timing (the delivery ledger decides, from
//! [`MailError::is_transient`]), and which hosts may go without TLS (the config refuses
//! `tls = "none"` to anything but loopback).
//!
//! The password is handed to lettre and to nothing else; every error text is scrubbed of it
//! before it leaves this file, as it is and in the base64 forms AUTH sends it in (a server
//! may echo `AUTH PLAIN`'s `\0user\0password` or `AUTH LOGIN`'s password in its 535).

use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters, TlsParametersBuilder};
use lettre::transport::smtp::{AsyncSmtpTransport, PoolConfig};
use lettre::{AsyncTransport, Tokio1Executor};

use super::{MailError, Mailer, Outgoing};
use crate::config::{MailConfig, MailTransportKind, Secret, TlsMode};

/// Sends through the configured SMTP server.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, for error messages.
    server: String,
    /// Kept only to scrub it from error texts.
    password: Option<Secret>,
    /// `timeout_secs`: lettre's async transport bounds only the TCP connect with it, so a
    /// server that accepts and then says nothing is bounded here.
    timeout: Duration,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer").field("server", &self.server).finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer trusting the system's root certificates and `ca_file` if the config names
    /// one. Call it inside a Tokio runtime: the connection pool starts a clean-up task.
    pub fn new(mail: &MailConfig) -> Result<SmtpMailer, MailError> {
        SmtpMailer::build(mail, Vec::new())
    }

    /// A mailer that also trusts the CA in `pem` (a test server's, or a company CA).
    pub fn with_root_certificate(mail: &MailConfig, pem: &[u8]) -> Result<SmtpMailer, MailError> {
        SmtpMailer::build(mail, vec![certificate(pem, "the root certificate")?])
    }

    fn build(mail: &MailConfig, mut roots: Vec<Certificate>) -> Result<SmtpMailer, MailError> {
        if let Some(path) = &mail.ca_file {
            let pem = std::fs::read(path).map_err(|e| MailError::Setup {
                detail: format!("cannot read mail.ca_file {} ({e})", path.display()),
            })?;
            roots.push(certificate(&pem, &format!("mail.ca_file {}", path.display()))?);
        }
        let MailTransportKind::Smtp { host, port, tls, username, password } = &mail.transport else {
            return Err(MailError::Setup { detail: "the mail transport is not smtp".to_owned() });
        };
        let server = format!("{host}:{port}");
        if tokio::runtime::Handle::try_current().is_err() {
            // lettre's pool would panic spawning its clean-up task.
            return Err(MailError::Setup { detail: format!("smtp {server}: the mailer needs a Tokio runtime") });
        }
        let tls_parameters = || -> Result<TlsParameters, MailError> {
            let mut b = TlsParametersBuilder::new(host.clone());
            for cert in &roots {
                b = b.add_root_certificate(cert.clone());
            }
            b.build().map_err(|e| MailError::Setup { detail: format!("smtp {server}: cannot set up TLS: {e}") })
        };
        let tls = match tls {
            TlsMode::Starttls => Tls::Required(tls_parameters()?),
            TlsMode::Tls => Tls::Wrapper(tls_parameters()?),
            TlsMode::None => Tls::None,
        };
        let timeout = Duration::from_secs(mail.timeout_secs.max(1));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(*port)
            .tls(tls)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(4).idle_timeout(Duration::from_secs(60)));
        let password = match password {
            Some(p) => Some(p.resolve().map_err(|e| MailError::Setup { detail: e.to_string() })?),
            None => None,
        };
        if let Some(user) = username {
            let pass = password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), pass));
        }
        Ok(SmtpMailer { transport: builder.build(), server, password, timeout })
    }

    /// Connects, says EHLO, upgrades to TLS and logs in if configured, without sending
    /// anything: what `check` does to prove the settings work.
    pub async fn check(&self) -> Result<(), MailError> {
        let checked = tokio::time::timeout(self.timeout, self.transport.test_connection()).await;
        match checked.map_err(|_| self.timed_out(self.timeout))? {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(MailError::Transient { detail: format!("smtp {}: the server did not answer NOOP", self.server) })
            }
            Err(e) => Err(self.classify(&e)),
        }
    }

    /// Maps lettre's error onto retry-or-not, with a text free of the password.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> MailError {
        let detail = self.scrub(format!("smtp {}: {}", self.server, error_chain(e)));
        if e.status().is_some_and(|code| code.to_string() == "535") {
            // 535 5.7.8: authentication credentials invalid.
            MailError::LoginRefused { detail }
        } else if e.is_permanent() {
            // 5xx: unknown mailbox, rejected sender, authentication refused.
            MailError::Permanent { detail }
        } else if e.is_transient() || e.is_timeout() {
            MailError::Transient { detail }
        } else if detail.contains("invalid peer certificate") || (e.is_tls() && detail.contains("certificate")) {
            // A certificate that does not verify will not verify in five minutes either.
            MailError::Permanent { detail }
        } else if e.is_client() {
            // lettre refused before the wire (e.g. no common AUTH mechanism): a setup problem.
            MailError::Permanent { detail }
        } else {
            // Connection refused or reset, TLS handshake cut short, garbled reply.
            MailError::Transient { detail }
        }
    }

    fn timed_out(&self, after: Duration) -> MailError {
        MailError::Transient { detail: format!("smtp {}: no answer within {} s", self.server, after.as_secs()) }
    }

    /// The whole transaction's deadline: the configured timeout plus a second per 64 KiB,
    /// so a large PDF on a slow link (0.5 Mbit/s) is not cut off.
    fn deadline(&self, bytes: usize) -> Duration {
        self.timeout.saturating_add(Duration::from_secs((bytes / (64 * 1024)) as u64))
    }

    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(p) => p.scrub(&text),
            None => text,
        }
    }
}

fn certificate(pem: &[u8], what: &str) -> Result<Certificate, MailError> {
    Certificate::from_pem(pem).map_err(|e| MailError::Setup { detail: format!("cannot read {what} as PEM ({e})") })
}

/// The error and its sources, deduplicated (lettre's `Display` already shows the first).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl Mailer for SmtpMailer {
    async fn send(&self, message: &Outgoing) -> Result<(), MailError> {
        let bad =
            |what: &str, a: &str| MailError::Compose { detail: format!("{what} is not an e-mail address: {a:?}") };
        let from: Address = message.from.parse().map_err(|_| bad("the sender", &message.from))?;
        let to = message
            .to
            .iter()
            .map(|a| a.parse::<Address>().map_err(|_| bad("a recipient", a)))
            .collect::<Result<Vec<_>, _>>()?;
        let envelope = Envelope::new(Some(from), to)
            .map_err(|e| MailError::Compose { detail: format!("cannot build the envelope: {e}") })?;
        let deadline = self.deadline(message.bytes.len());
        match tokio::time::timeout(deadline, self.transport.send_raw(&envelope, &message.bytes)).await {
            Ok(sent) => sent.map(drop).map_err(|e| self.classify(&e)),
            Err(_) => Err(self.timed_out(deadline)),
        }
    }
}
