//! A fast Bitrix24 emulator and client for tests that check behaviour, not Bitrix24's pace.

use std::time::Duration;

use salespulse::config::Secret;
use salespulse::crm::bitrix24::{Bitrix24Client, ClientSettings};
use salespulse::crm::emulator::EmulatorOptions;

/// A portal whose buckets never get in the way.
pub fn fast_portal() -> EmulatorOptions {
    EmulatorOptions { rate_per_sec: 10_000.0, burst: 10_000, ..EmulatorOptions::default() }
}

/// A client as fast as [`fast_portal`], with room for injected faults.
pub fn fast_client(url: &str) -> Bitrix24Client {
    let settings = ClientSettings {
        rate_per_sec: 10_000.0,
        burst: 10_000,
        timeout: Duration::from_secs(10),
        max_retries: 12,
        ..ClientSettings::default()
    };
    Bitrix24Client::new(&Secret::new(url), settings).unwrap()
}
