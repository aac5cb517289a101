//! The emulated portal's limits: its leaky bucket of requests (QUERY_LIMIT_EXCEEDED above
//! `burst`), and its operating-time account.
//!
//! It also keeps a real operating-time account per webhook and method (§3): every command
//! adds its measured execution time (plus [`EmulatorOptions::operating_cost_per_command`],
//! so that a test reaches a small limit quickly) to ten baskets spanning
//! [`EmulatorOptions::operating_window`]; every answer's `time` object (top level and each
//! `result_time` of a `batch`) reports the method's sum as `operating` and when its oldest
//! basket drops out as `operating_reset_at`. Once a sum is over
//! [`EmulatorOptions::operating_limit`], the next call of that method is refused —
//! HTTP 429 `OPERATION_TIME_LIMIT` alone, a `result_error` entry inside a `batch` — until
//! baskets drop out; other methods are served, and the outer `batch` costs nothing.

use std::collections::VecDeque;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::Value;

use super::{Done, Fail, Portal};

/// One method's operating time: what it cost in each of the last ten baskets, oldest first.
/// A basket opens with the first call after the previous one closed and drops out a window
/// after it opened, as on a portal (Bitrix24's REST limits).
#[derive(Debug, Default)]
pub(super) struct Account {
    baskets: VecDeque<(Instant, Duration)>,
}

impl Account {
    fn expire(&mut self, now: Instant, window: Duration) {
        while self.baskets.front().is_some_and(|(opened, _)| *opened + window <= now) {
            self.baskets.pop_front();
        }
    }

    fn used(&self) -> Duration {
        self.baskets.iter().map(|(_, cost)| *cost).sum()
    }

    fn add(&mut self, now: Instant, cost: Duration, window: Duration) {
        match self.baskets.back_mut() {
            Some((opened, sum)) if now < *opened + window / 10 => *sum += cost,
            _ => self.baskets.push_back((now, cost)),
        }
    }

    /// When the oldest basket drops out (a window from now when there is none).
    fn reset_at(&self, now: Instant, window: Duration) -> Instant {
        self.baskets.front().map_or(now, |(opened, _)| *opened) + window
    }
}

/// A method's operating time as its answer reports it.
pub(super) struct Operating {
    pub(super) used: Duration,
    pub(super) reset_at: Instant,
}

impl Portal {
    /// The portal's leaky bucket: one unit per HTTP request, refused above `burst`.
    pub(super) fn admit(&self) -> bool {
        let mut b = self.bucket.lock().expect("bucket lock");
        let now = Instant::now();
        let level = (b.0 - now.duration_since(b.1).as_secs_f64() * self.options.rate_per_sec).max(0.0);
        if level + 1.0 > f64::from(self.options.burst) {
            *b = (level, now);
            return false;
        }
        *b = (level + 1.0, now);
        true
    }

    /// Runs one method under its operating-time account: refused while the account is over
    /// the limit (checked before the call, so the call that crosses it completes), its
    /// execution time added after. The outer `batch` is not accounted; its commands are.
    pub(super) fn call(&self, token: &str, method: &str, params: &Value, top: bool) -> Result<(Done, Operating), Fail> {
        let window = self.options.operating_window;
        if method == "batch" {
            let done = self.execute(token, method, params, top)?;
            return Ok((done, Operating { used: Duration::ZERO, reset_at: Instant::now() + window }));
        }
        let key = (token.to_owned(), method.to_owned());
        if let Some(limit) = self.options.operating_limit {
            let mut accounts = self.operating.lock().expect("operating lock");
            let account = accounts.entry(key.clone()).or_default();
            account.expire(Instant::now(), window);
            if account.used() > limit {
                self.operation_limited.fetch_add(1, AtomicOrdering::Relaxed);
                return Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    "OPERATION_TIME_LIMIT",
                    "Method is blocked due to operation time limit.".into(),
                ));
            }
        }
        let started = Instant::now();
        let outcome = match self.execute(token, method, params, top) {
            // An injected refusal did not run: it costs nothing.
            Err(fail) if fail.1 == "OPERATION_TIME_LIMIT" => return Err(fail),
            other => other,
        };
        let now = Instant::now();
        let cost = now.duration_since(started) + self.options.operating_cost_per_command;
        let mut accounts = self.operating.lock().expect("operating lock");
        let account = accounts.entry(key).or_default();
        account.expire(now, window);
        account.add(now, cost, window);
        let operating = Operating { used: account.used(), reset_at: account.reset_at(now, window) };
        outcome.map(|done| (done, operating))
    }
}
