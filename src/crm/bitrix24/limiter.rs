//! The client-side leaky bucket: the same arithmetic as the portal's (Bitrix24's REST limits),
//! so that a normal run waits a little instead of being answered QUERY_LIMIT_EXCEEDED.
//! Retrying after a refusal is `super::transport`'s job.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// A bucket that drains `rate` per second and holds at most `burst - 1` requests.
#[derive(Debug)]
pub struct LeakyBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl LeakyBucket {
    pub fn new(rate_per_sec: f64, burst: u32) -> LeakyBucket {
        LeakyBucket {
            rate: rate_per_sec.max(0.001),
            // One request of headroom: the portal counts a request when it arrives, and
            // uneven network delays can bunch two arrivals closer than we sent them.
            burst: f64::from(burst.saturating_sub(1).max(1)),
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Waits until one more request fits, then counts it.
    pub async fn acquire(&self) {
        // The lock is held across the sleep on purpose: requests leave in arrival order and
        // never two at once over the limit.
        let mut state = self.state.lock().await;
        let now = Instant::now();
        let level = (state.0 - now.duration_since(state.1).as_secs_f64() * self.rate).max(0.0);
        let mut at = now;
        let mut level = level;
        if level + 1.0 > self.burst {
            let wait = Duration::from_secs_f64((level + 1.0 - self.burst) / self.rate);
            tokio::time::sleep(wait).await;
            at = Instant::now();
            level = (level - at.duration_since(now).as_secs_f64() * self.rate).max(0.0);
        }
        *state = (level + 1.0, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // On tokio's paused clock the bucket's sleeps take no wall time and `Instant` (tokio's)
    // moves by exactly what was slept: the waits are measured, not raced against the load.
    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_requests_leave_at_the_rate() {
        // Burst 6: five pass at once, one slot is kept as headroom.
        let bucket = LeakyBucket::new(50.0, 6);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst does not wait");
        for _ in 0..5 {
            bucket.acquire().await;
        }
        let waited = start.elapsed().as_secs_f64();
        assert!((0.099..0.101).contains(&waited), "5 more requests at 50/s take 0.1 s, took {waited}");
    }
}
