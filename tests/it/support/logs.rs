//! What the product logs during a test, to count what it did instead of timing it: a
//! client that says it is "waiting for its reset" before every such wait can be checked
//! for the waits it made, however slow the machine is.
//!
//! ```ignore
//! let logs = logs::capture(); // until `logs` is dropped
//! client.fetch(&request).await?;
//! assert_eq!(logs.count("waiting for its reset"), 0);
//! ```
//!
//! The capture is this thread's: a `#[tokio::test]` (current-thread runtime) runs every task
//! it spawns on the test's thread, so it sees all of them; a multi-thread runtime's workers
//! are not seen.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

/// Log lines captured on this thread until dropped.
pub struct Logs {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

/// Starts capturing this thread's log events at `info` and above, as plain text lines.
pub fn capture() -> Logs {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || Sink(sink.clone()))
        .finish();
    Logs { lines, _guard: tracing::subscriber::set_default(subscriber) }
}

impl Logs {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }

    /// How many captured lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
