//! The Bitrix24 client: fetches what one report needs over an incoming webhook and returns
//! it as a complete [`CrmSnapshot`], or an error that says whether a retry can help.
//!
//! How it stays gentle with a portal (Bitrix24's REST documentation): every list is walked
//! in `ID` order with a keyset and pages of several lists are packed into one `batch`
//! (`paging`), a client-side leaky bucket ([`limiter`]) keeps the request rate under the
//! portal's, failures are classified and the transient ones retried (`transport`), and the
//! portal's operating-time limit per method is kept account of (`operating`). The webhook
//! code never leaves the transport: logs and errors show `https://portal/rest/1/***/`, and
//! since a portal may echo the code back (a redirect's `backurl=%2Frest%2F1%2F<code>%2Fbatch`,
//! an `error_description` quoting the path), every error leaves through
//! `Bitrix24Client::scrubbed` (list calls in `run`, the scope call in `scopes`), which
//! scrubs the code from it in every encoding ([`Secret::scrub`]), as do the retry logs.
//!
//! The layers, each using only those below it:
//!
//! | file | its job |
//! |---|---|
//! | `mod.rs` | [`Bitrix24Client`]: the plan walked, the rows assembled, errors scrubbed |
//! | [`cached`] | [`cached::CachedClient`]: the same, reading through the local cache |
//! | `plan` | which lists a [`FetchRequest`] needs |
//! | `assembly` | wire rows into a [`CrmSnapshot`] |
//! | `paging` | lists walked page by page, pages packed into batches; a page becomes rows |
//! | `transport` | one call or batch: HTTP, error classification, retries, rate-limit answers |
//! | `operating` | the operating-time account per method |
//! | [`limiter`] | the client-side leaky bucket |
//! | [`wire`] | the portal's wire format and its quirks, and rows into `domain` records |
//! | [`packed`] | a row as the portal sent it, in one allocation: how rows are held and cached |
//!
//! The KPI arithmetic is `kpi`'s job.

mod assembly;
pub mod cached;
pub mod limiter;
mod operating;
pub mod packed;
mod paging;
mod plan;
mod transport;
pub mod wire;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::config::Secret;
use crate::crm::{CrmError, CrmSource, FetchRequest};
use crate::domain::CrmSnapshot;

use self::assembly::Assembly;
use self::paging::{ListJob, take_rows};
use self::transport::Transport;
use self::wire::WireRow;

pub use self::paging::{BATCH_MAX, PAGE};
pub use self::transport::{ClientSettings, php_query};

/// A Bitrix24 portal behind an incoming webhook. Cheap to clone; clones share the bucket
/// and the operating-time account.
#[derive(Clone)]
pub struct Bitrix24Client {
    transport: Arc<Transport>,
}

// By hand: the transport holds the webhook code.
impl std::fmt::Debug for Bitrix24Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitrix24Client").field("portal", &self.transport.redacted()).finish_non_exhaustive()
    }
}

impl Bitrix24Client {
    /// `webhook_url` is the incoming webhook, `https://portal/rest/<user>/<code>/` (the
    /// trailing slash is optional). Plain `http` is refused except on loopback (the emulator);
    /// the check is [`crate::endpoint::webhook_url`], the one the config makes.
    pub fn new(webhook_url: &Secret, settings: ClientSettings) -> Result<Self, CrmError> {
        Ok(Bitrix24Client { transport: Arc::new(Transport::new(webhook_url, settings)?) })
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests_made(&self) -> u64 {
        self.transport.requests_made()
    }

    /// The webhook URL with its code masked, for logs.
    pub fn redacted_url(&self) -> &str {
        self.transport.redacted()
    }

    /// The webhook's scopes, as the portal's `scope` method lists them (a basic method every
    /// webhook may call).
    pub async fn scopes(&self) -> Result<Vec<String>, CrmError> {
        let answer = self.transport.call("scope", "scope", &json!({})).await.map_err(|e| self.scrubbed(e))?;
        let list = answer.result.as_array().ok_or_else(|| CrmError::Permanent {
            method: "scope".to_owned(),
            detail: format!("unexpected answer: expected a list of scopes, got {}", answer.result),
        })?;
        Ok(list.iter().filter_map(Value::as_str).map(str::to_owned).collect())
    }

    /// Calls one method and returns its `result`: the messenger channel's calls (a message
    /// sent, a file uploaded to a chat's folder, `pipeline::deliver` through `chat`), paced,
    /// retried and scrubbed as every read is. A write retried after an answer that never
    /// came (a timeout) may have been done twice by the portal: the same window an SMTP
    /// transaction has, and the ledger's rule for it is the same.
    pub async fn call(&self, method: &str, params: &Value) -> Result<Value, CrmError> {
        let answer = self.transport.call(method, method, params).await.map_err(|e| self.scrubbed(e))?;
        Ok(answer.result)
    }

    /// Walks every list to its end ([`paging`]). Every list request of both clients (this
    /// one and `cached`) is made here, and the one other call, [`Bitrix24Client::scopes`],
    /// passes its error through [`Bitrix24Client::scrubbed`] too: every `CrmError` leaving
    /// the client has its text scrubbed of the webhook code.
    async fn run(&self, jobs: &mut [ListJob]) -> Result<(), CrmError> {
        paging::walk(&self.transport, jobs).await.map_err(|e| self.scrubbed(e))
    }

    /// `e` without the webhook code, in any encoding a portal may echo it in.
    fn scrubbed(&self, e: CrmError) -> CrmError {
        let scrub = |text: &str| self.transport.scrub(text);
        match e {
            CrmError::Transient { method, detail } => {
                CrmError::Transient { method: scrub(&method), detail: scrub(&detail) }
            }
            CrmError::Permanent { method, detail } => {
                CrmError::Permanent { method: scrub(&method), detail: scrub(&detail) }
            }
        }
    }

    /// Users, departments, deal pipelines, currencies and lead sources, in that order.
    async fn fetch_reference(&self) -> Result<[Vec<WireRow>; 5], CrmError> {
        let mut meta = plan::reference_jobs();
        self.run(&mut meta).await?;
        Ok(take_rows(meta))
    }
}

impl CrmSource for Bitrix24Client {
    async fn fetch(&self, request: &FetchRequest) -> Result<CrmSnapshot, CrmError> {
        tracing::info!(portal = %self.redacted_url(), since = %request.since.to_rfc3339(), "Fetching CRM records.");

        // Reference data: who, where, which pipelines, which money.
        let mut assembly = Assembly::new(self.fetch_reference().await?);

        // Stages of every pipeline, and the records of the window.
        let mut jobs = plan::stage_jobs(assembly.pipelines());
        let stage_jobs = jobs.len();
        jobs.extend(plan::window_jobs(request));
        self.run(&mut jobs).await?;

        let rest = jobs.split_off(stage_jobs);
        assembly.add_stages(jobs.iter().map(ListJob::rows));
        let [modified, open, leads, activities, history] = take_rows(rest);
        assembly.add_window(request, &modified, &open, &leads, &activities, &history);
        drop((modified, open, leads, activities, history));

        // Leads that fetched deals came from, created before the window, and the product
        // rows of the deals won in the report's period.
        let missing = assembly.missing_leads();
        let won = assembly.product_deals(request);
        let mut lead_jobs = plan::missing_lead_jobs(&missing, &wire::LEAD_FIELDS);
        let lead_job_count = lead_jobs.len();
        lead_jobs.extend(won.iter().map(|id| plan::product_rows_job(*id)));
        self.run(&mut lead_jobs).await?;
        let product_jobs = lead_jobs.split_off(lead_job_count);
        for job in &lead_jobs {
            assembly.add_leads(job.rows());
        }
        for (deal_id, job) in won.iter().zip(&product_jobs) {
            assembly.add_product_rows(*deal_id, job.rows());
        }
        let snapshot = assembly.finish();
        tracing::info!(
            portal = %self.redacted_url(),
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

/// The scopes the bitrix24 channel needs on top of [`REQUIRED_SCOPES`] (`chat::bitrix24`).
pub const CHAT_SCOPES: [(&str, &[&str], &str); 2] = [
    (
        "im",
        &["im"],
        "reports sent into the Bitrix24 messenger (im.message.add, im.dialog.get, im.disk.folder.get, im.disk.file.commit)",
    ),
    ("disk", &["disk"], "the report's PDF uploaded to the chat's folder (disk.folder.uploadfile)"),
];

/// The scopes of `needed` that `granted` lacks, each with why it is needed.
pub fn missing_of(
    needed: &[(&'static str, &[&str], &'static str)],
    granted: &[String],
) -> Vec<(&'static str, &'static str)> {
    needed
        .iter()
        .filter(|(_, any_of, _)| !any_of.iter().any(|s| granted.iter().any(|g| g.eq_ignore_ascii_case(s))))
        .map(|(name, _, why)| (*name, *why))
        .collect()
}

/// The required scopes `granted` lacks, each with why it is needed.
pub fn missing_scopes(granted: &[String]) -> Vec<(&'static str, &'static str)> {
    missing_of(&REQUIRED_SCOPES, granted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_need_https_and_are_never_shown() {
        let ok =
            Bitrix24Client::new(&Secret::new("https://acme.bitrix24.ru/rest/1/s3cr3tcode"), ClientSettings::default())
                .unwrap();
        assert_eq!(ok.redacted_url(), "https://acme.bitrix24.ru/rest/1/***/");
        assert_eq!(ok.transport.base().as_str(), "https://acme.bitrix24.ru/rest/1/s3cr3tcode/");
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
}
