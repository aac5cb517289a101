//! Where CRM records come from: the [`CrmSource`] trait, the Bitrix24 client
//! (`bitrix24`), the Bitrix24 emulator (`emulator`) and the demo portal (`demo`), which is
//! served by the emulator so that the default run goes through the real client.

pub mod bitrix24;
pub mod demo;
pub mod emulator;

use crate::domain::{CrmSnapshot, Timestamp};

/// Who is in scope, a domain notion (docs/kpi.md "Who is a manager"); named here too
/// because a [`FetchRequest`] carries it.
pub use crate::domain::Scope;

/// What a report run needs from the CRM.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchRequest {
    /// The earliest instant any of the report's periods (trend, previous, year-ago) starts.
    pub since: Timestamp,
    /// The instant the report looks at (the end of its period); records after it are
    /// still fetched where docs/kpi.md needs the current state.
    pub until: Timestamp,
    /// The start of the report's own period. Product rows are fetched only for the deals
    /// won in `[period_start, until)`: docs/kpi.md's product breakdown covers no other deals,
    /// and one `crm.deal.productrows.get` per won deal of the whole trend window was more
    /// than half of all requests on a large portal.
    pub period_start: Timestamp,
    pub scope: Scope,
    /// The satisfaction user field to select on deals (`UF_CRM_*`).
    pub satisfaction_field: Option<String>,
}

/// A CRM failure, with the REST method and what the admin should do.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// Worth retrying later: rate limits, 5xx, timeouts, resets, truncated answers.
    #[error("failed to call {method} ({detail}); will retry")]
    Transient { method: String, detail: String },
    /// Not worth retrying until the admin acts: credentials, scopes, a wrong URL.
    #[error("failed to call {method} ({detail})")]
    Permanent { method: String, detail: String },
}

impl CrmError {
    pub fn is_transient(&self) -> bool {
        matches!(self, CrmError::Transient { .. })
    }
}

/// A source of CRM records. A source returns a complete snapshot or an error: never a part.
pub trait CrmSource {
    fn fetch(&self, request: &FetchRequest) -> impl std::future::Future<Output = Result<CrmSnapshot, CrmError>> + Send;
}
