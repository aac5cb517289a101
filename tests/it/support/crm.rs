//! A fast Bitrix24 emulator and client for tests that check behaviour, not Bitrix24's pace.

use std::path::{Path, PathBuf};
use std::time::Duration;

use salespulse::config::Secret;
use salespulse::crm::bitrix24::{Bitrix24Client, ClientSettings};
use salespulse::crm::emulator::{Emulator, EmulatorOptions};

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

/// The demo portal served by the Bitrix24 emulator on loopback "as of" `slot`, with
/// `options` (the buckets are widened), for tests that change its records or its
/// webhook; the runtime keeps it serving.
pub fn demo_emulator_with(
    slot: chrono::DateTime<chrono_tz::Tz>,
    options: EmulatorOptions,
) -> (tokio::runtime::Runtime, Emulator) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let options = EmulatorOptions { rate_per_sec: 500.0, burst: 1000, ..options };
    let emulator =
        runtime.block_on(async { Emulator::start(salespulse::crm::demo::portal(slot), options).await.unwrap() });
    (runtime, emulator)
}

/// [`demo_emulator_with`] the default options.
pub fn demo_emulator(slot: chrono::DateTime<chrono_tz::Tz>) -> (tokio::runtime::Runtime, Emulator) {
    demo_emulator_with(slot, EmulatorOptions::default())
}

/// The demo config (`config/salespulse.toml`) pointed at `emulator` as a real portal
/// (`crm.source = "bitrix24"`), written into `dir`.
pub fn portal_config(dir: &Path, emulator: &Emulator) -> PathBuf {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/salespulse.toml")).unwrap();
    let config_text = demo.replace(
        "source = \"demo\"\n",
        &format!(
            "source = \"bitrix24\"\nwebhook_url = \"{}\"\nrate_limit_per_sec = 500.0\nrate_limit_burst = 1000\n",
            emulator.webhook_url()
        ),
    );
    assert!(config_text.contains("source = \"bitrix24\""), "the demo config names its source");
    let config = dir.join("portal.toml");
    std::fs::write(&config, config_text).unwrap();
    config
}
