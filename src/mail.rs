//! E-mail: composing a report's message (subject, HTML and plain-text summary, the PDF
//! attached) and delivering it through a [`Mailer`]: [`SmtpMailer`] (lettre, rustls) or
//! [`OutboxMailer`] (`.eml` files into a folder).
//!
//! TODO(mail helper): being written. The signatures below are the contract the delivery
//! code builds on.

use crate::config::{JobConfig, MailConfig};
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
    pub from: String,
    pub to: Vec<String>,
    /// The RFC 5322 message, CRLF line ends.
    pub bytes: Vec<u8>,
}

/// What a report message is made of.
pub struct ReportMail<'a> {
    pub job: &'a JobConfig,
    pub data: &'a ReportData,
    pub pdf: &'a [u8],
    /// The attachment's file name, e.g. `2026-W47 Иван Петров.pdf`.
    pub file_name: &'a str,
    pub to: &'a [String],
    /// Distinguishes recipients of one job and period (manager id or `department`).
    pub recipient_key: &'a str,
}

/// Builds the message for one report.
pub fn compose(_mail: &MailConfig, _report: &ReportMail<'_>) -> Result<Outgoing, MailError> {
    todo!("mail helper")
}

/// Delivers composed messages.
pub trait Mailer {
    /// Sends one message; `Ok` means the server accepted it (250 after DATA) or the file was
    /// written.
    fn send(&self, message: &Outgoing) -> impl std::future::Future<Output = Result<(), MailError>> + Send;
}
