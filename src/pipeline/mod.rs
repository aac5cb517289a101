//! One job for one period: fetch, compute, chart, render; then `deliver` hands the PDFs to
//! the mailer through the delivery ledger. The only module that knows the order of stages.
//!
//! TODO(lead): being written.

use crate::kpi::ReportData;

pub mod deliver;

/// One rendered report of a job: a PDF for one recipient group.
#[derive(Clone, Debug)]
pub struct RenderedReport {
    /// Distinguishes the reports of one job and period: the manager's Bitrix24 id, or
    /// `department`. The delivery ledger keys rows by (job, period, recipient_key).
    pub recipient_key: String,
    /// The manager's name, or the department report's title.
    pub recipient_name: String,
    /// E-mail addresses this PDF goes to; empty when the manager has no e-mail (the
    /// ledger records that as a failure the admin hears about).
    pub to: Vec<String>,
    /// `2026-W47 Иван Петров.pdf`: safe on every file system.
    pub file_name: String,
    pub pdf: Vec<u8>,
    pub data: ReportData,
    /// `data` as written beside the PDF.
    pub json: String,
}
