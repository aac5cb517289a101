//! The portal's operating-time limit, as the client keeps account of it (§3: a method may
//! run 480 s within 10 min, then it is refused OPERATION_TIME_LIMIT).
//!
//! The account is kept per method from the `time` object of every answer and every
//! `result_time` of a batch: before a method whose last known `operating` is within
//! [`ClientSettings::operating_margin`] of [`ClientSettings::operating_limit`] is called
//! again, the client waits until its `operating_reset_at`, and it packs no more commands of
//! a method into a batch than the cost per call it last saw fits under that margin. A
//! method refused anyway keeps the pages answered before the refusal; the rest of its list
//! is asked for again after the reset (a lone refusal while the known sum is far below the
//! limit is only backed off from; a second one in a row waits for the reset). A wait longer
//! than [`ClientSettings::max_operating_wait`], or more than `max_retries` batches in a row
//! of which the limit lets nothing through, ends the run with a transient error naming the
//! method.
//!
//! This module only keeps the account and waits; the transport ([`super::transport`])
//! feeds it every answer, and the paging ([`super::paging`]) asks it how many commands of a
//! method one batch may hold.
//!
//! [`ClientSettings::operating_margin`]: super::ClientSettings::operating_margin
//! [`ClientSettings::operating_limit`]: super::ClientSettings::operating_limit
//! [`ClientSettings::max_operating_wait`]: super::ClientSettings::max_operating_wait

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::wire;
use crate::crm::CrmError;

/// What the portal last said about one method's operating time.
#[derive(Clone, Copy, Debug)]
struct MethodTime {
    /// Seconds used within the portal's window.
    used: f64,
    /// When its oldest basket drops out, if the portal said.
    resets: Option<tokio::time::Instant>,
    /// Seconds one call added last time: how many more calls fit before the limit.
    step: Option<f64>,
    /// Answers in a row that refused the method without serving it once.
    stuck: u32,
}

/// The last known operating time of each method, and the rules for waiting on it.
pub(super) struct OperatingAccount {
    /// The portal's limit per method, in seconds.
    limit: f64,
    /// The fraction of `limit` kept free.
    margin: f64,
    /// The longest one wait for a reset may be.
    max_wait: Duration,
    /// The webhook URL with its code masked, for logs.
    portal: String,
    known: Mutex<HashMap<String, MethodTime>>,
}

impl OperatingAccount {
    pub(super) fn new(limit: Duration, margin: f64, max_wait: Duration, portal: String) -> OperatingAccount {
        OperatingAccount { limit: limit.as_secs_f64(), margin, max_wait, portal, known: Mutex::new(HashMap::new()) }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, MethodTime>> {
        self.known.lock().expect("no panics while holding the operating times")
    }

    /// One answer's word on `method`'s operating time.
    pub(super) fn note(&self, method: &str, operating: wire::Operating) {
        let resets = operating.resets_in.map(|d| tokio::time::Instant::now() + d);
        let mut known = self.known();
        let step = match known.get(method) {
            // A drop means a basket dropped out: the step is unknown, keep the last one.
            Some(before) if operating.used > before.used => Some(operating.used - before.used),
            Some(before) => before.step,
            // The first word on a method: its sum is at most what this call cost.
            None => (operating.used > 0.0).then_some(operating.used),
        };
        known.insert(method.to_owned(), MethodTime { used: operating.used, resets, step, stuck: 0 });
    }

    /// One answer's refusal of `method` (once per answer); `served` when the same answer
    /// also served it (a batch that crossed the limit midway).
    pub(super) fn note_refused(&self, method: &str, served: bool) {
        let limit = self.limit;
        let threshold = self.threshold();
        let mut known = self.known();
        let t = known.entry(method.to_owned()).or_insert(MethodTime { used: 0.0, resets: None, step: None, stuck: 0 });
        t.stuck = if served { 0 } else { t.stuck + 1 };
        // Explained by the sum the portal reported, or refused twice in a row without being
        // served: the method is at its limit, and the next call waits for its reset. A lone
        // refusal while far under the limit (a glitch, or another user of the webhook) is
        // only backed off from: its reset may be ten minutes away for nothing.
        if t.used >= threshold || t.stuck >= 2 {
            t.used = t.used.max(limit);
        }
    }

    /// Whether [`Self::await_reset`] will wait for `method`'s reset.
    pub(super) fn reset_pending(&self, method: &str) -> bool {
        let threshold = self.threshold();
        self.known()
            .get(method)
            .filter(|t| t.used >= threshold)
            .and_then(|t| t.resets)
            .is_some_and(|at| at > tokio::time::Instant::now())
    }

    /// The threshold the operating time of a method is kept under, in seconds.
    fn threshold(&self) -> f64 {
        self.limit * (1.0 - self.margin.clamp(0.0, 1.0))
    }

    /// How many commands of `method` one batch of at most `most` may hold: as many as its
    /// last known step fits under the threshold, at least one (after a reset the sum is not
    /// known until the next answer, and the call that crosses a limit is still served).
    pub(super) fn room(&self, method: &str, most: usize) -> usize {
        let threshold = self.threshold();
        match self.known().get(method).and_then(|t| Some((t.used, t.step?))) {
            Some((used, step)) if step > 0.0 => (((threshold - used) / step).floor().max(1.0) as usize).min(most),
            _ => most,
        }
    }

    /// Waits while `method`'s last known operating time is within the margin of the limit
    /// and its oldest basket has not dropped out yet; fails when that is too far away.
    pub(super) async fn await_reset(&self, method: &str) -> Result<(), CrmError> {
        let limit = self.limit;
        let threshold = self.threshold();
        let pending = self.known().get(method).filter(|t| t.used >= threshold).and_then(|t| {
            let wait = t.resets?.saturating_duration_since(tokio::time::Instant::now());
            (!wait.is_zero()).then_some((wait, t.used))
        });
        let Some((wait, used)) = pending else { return Ok(()) };
        if wait > self.max_wait {
            return Err(CrmError::Transient {
                method: method.to_owned(),
                detail: format!(
                    "the portal's operating-time limit for the method was reached ({used:.1} s of {limit:.0} s used); \
                     it frees up in {} s, longer than a run waits ({} s)",
                    wait.as_secs(),
                    self.max_wait.as_secs()
                ),
            });
        }
        tracing::info!(portal = %self.portal, method, used_s = used, wait_ms = wait.as_millis() as u64, "Bitrix24 method near its operating-time limit; waiting for its reset.");
        tokio::time::sleep(wait).await;
        Ok(())
    }
}
