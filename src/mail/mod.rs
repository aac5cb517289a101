//! E-mail: composing a report's message (subject, HTML and plain-text summary, the PDF
//! attached) and the admin's failure digest ([`compose`], [`compose_digest`]), and
//! delivering them through a [`Mailer`]: [`SmtpMailer`] (lettre, rustls) or [`OutboxMailer`]
//! (`.eml` files into a folder).
//!
//! This module neither decides who gets what nor remembers what was sent: the delivery
//! ledger (`pipeline`, `store`) does, and calls [`Mailer::send`] once per ledger row. A
//! [`MailError`] tells it whether a retry could help ([`MailError::is_transient`]).

mod compose;
mod outbox;
mod smtp;

pub use compose::{
    DigestLine, HEADLINE_KPIS, JobFailure, alert_message_id, compose, compose_chat_text, compose_digest,
    compose_digest_in, compose_job_failure, compose_text, rerun_command, resend_command,
};
pub use outbox::OutboxMailer;
pub use smtp::SmtpMailer;

use crate::config::{JobConfig, MailConfig, MailTransportKind};
use crate::kpi::ReportData;

/// A delivery failure.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Worth retrying: 4xx replies, connection errors, timeouts.
    #[error("failed to send mail ({detail}); will retry")]
    Transient { detail: String },
    /// Not worth retrying for these recipients: 5xx (mailbox unknown, rejected).
    #[error("failed to send mail ({detail})")]
    Permanent { detail: String },
    /// The message could not be built (bad address, template error).
    #[error("failed to compose mail ({detail})")]
    Compose { detail: String },
    /// The mail transport could not be set up (an unreadable `mail.ca_file`, TLS, no
    /// runtime): nothing can be sent until the config or the machine is fixed.
    #[error("failed to set up the mail transport ({detail})")]
    Setup { detail: String },
    /// The server refused the login (535): nothing can be sent until the admin fixes
    /// `mail.username` / `mail.password`, and every further try is one more failed login
    /// (a mailbox may lock after a few), so a run stops sending at the first.
    #[error("failed to send mail ({detail}); the SMTP server refused the login: check mail.username and mail.password")]
    LoginRefused { detail: String },
}

impl MailError {
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Transient { .. })
    }
}

/// A composed message ready to send: the envelope and the exact bytes.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// `Message-ID` without angle brackets; deterministic per (job, period, recipient) so a
    /// resend is recognisable.
    pub message_id: String,
    /// The envelope sender: a bare address (`reports@example.ru`).
    pub from: String,
    /// The envelope recipients: bare addresses.
    pub to: Vec<String>,
    /// The RFC 5322 message, CRLF line ends.
    pub bytes: Vec<u8>,
    /// The PDF was left out because it exceeded `max_attachment_bytes` after base64: the
    /// body says so, and the caller should tell the admin.
    pub attachment_omitted: bool,
}

/// What a report message is made of.
pub struct ReportMail<'a> {
    pub job: &'a JobConfig,
    pub data: &'a ReportData,
    pub pdf: &'a [u8],
    /// The attachment's file name, e.g. `2026-W47 Иван Петров (17).pdf`.
    pub file_name: &'a str,
    pub to: &'a [String],
    /// Distinguishes recipients of one job and period (manager id or `department`).
    pub recipient_key: &'a str,
    /// The row's resend generation: 0 for the first delivery; a deliberate resend gets a
    /// new Message-ID (a mail system may drop a second message with the same one), while a
    /// retry after a crash keeps the same.
    pub generation: u32,
}

/// Delivers composed messages.
pub trait Mailer {
    /// Sends one message; `Ok` means the server accepted it (250 after DATA) or the file was
    /// written.
    fn send(&self, message: &Outgoing) -> impl std::future::Future<Output = Result<(), MailError>> + Send;
}

/// The mailer the config names.
#[derive(Clone, Debug)]
pub enum AnyMailer {
    Smtp(SmtpMailer),
    Outbox(OutboxMailer),
}

impl Mailer for AnyMailer {
    async fn send(&self, message: &Outgoing) -> Result<(), MailError> {
        match self {
            AnyMailer::Smtp(m) => m.send(message).await,
            AnyMailer::Outbox(m) => m.send(message).await,
        }
    }
}

/// Proves the mailer can deliver without sending anything: SMTP connects, upgrades to TLS
/// and logs in; the outbox folder is created and written to. For `check`.
pub async fn check_connection(mailer: &AnyMailer) -> Result<(), MailError> {
    match mailer {
        AnyMailer::Smtp(m) => m.check().await,
        AnyMailer::Outbox(m) => m.check().await,
    }
}

/// Builds the mailer of `[mail]`: SMTP with the system's root certificates, or the outbox.
pub fn mailer_from_config(mail: &MailConfig) -> Result<AnyMailer, MailError> {
    match &mail.transport {
        MailTransportKind::Smtp { .. } => SmtpMailer::new(mail).map(AnyMailer::Smtp),
        MailTransportKind::Outbox { dir } => Ok(AnyMailer::Outbox(OutboxMailer::new(dir.clone()))),
    }
}
