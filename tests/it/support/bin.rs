//! The real binary in a subprocess, with the demo config or a config aimed at a portal
//! served by the Bitrix24 emulator on loopback.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use salespulse::crm::emulator::{Emulator, EmulatorOptions, PortalData};

pub const BIN: &str = env!("CARGO_BIN_EXE_salespulse");
pub const DEMO_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/salespulse.toml");

/// Runs `salespulse --config CONFIG ARGS...` in `dir`, logging warnings and errors.
pub fn run(dir: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("SALESPULSE_LOG", "warn")
        .output()
        .expect("the binary runs")
}

/// Its stdout, after asserting it exited 0.
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The demo config with `crm.source = "bitrix24"` aimed at `webhook_url` when given, and
/// `[mail]` replaced by `mail` when given, written to `dir/portal.toml`.
pub fn config_with(dir: &Path, webhook_url: Option<&str>, mail: Option<&str>) -> PathBuf {
    let mut text = std::fs::read_to_string(DEMO_CONFIG).unwrap();
    if let Some(url) = webhook_url {
        text = text.replace(
            "source = \"demo\"\n",
            &format!(
                "source = \"bitrix24\"\nwebhook_url = \"{url}\"\nrate_limit_per_sec = 500.0\nrate_limit_burst = 1000\n"
            ),
        );
        assert!(text.contains("source = \"bitrix24\""), "the demo config's crm source was replaced");
    }
    if let Some(mail) = mail {
        let start = text.find("[mail]").expect("the demo config has [mail]");
        let end = text[start + 1..].find("\n[").map(|i| start + 2 + i).unwrap_or(text.len());
        text.replace_range(start..end, mail);
    }
    let path = dir.join("portal.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A portal in its own runtime, for tests that run the binary against it.
pub struct Portal {
    pub runtime: tokio::runtime::Runtime,
    pub emulator: Emulator,
}

impl Portal {
    /// Serves `data` with `options` (the bucket is widened for speed).
    pub fn start(data: PortalData, options: EmulatorOptions) -> Portal {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let options = EmulatorOptions { rate_per_sec: 500.0, burst: 1000, ..options };
        let emulator = runtime.block_on(Emulator::start(data, options)).unwrap();
        Portal { runtime, emulator }
    }

    /// The demo config with `crm.source = "bitrix24"` aimed at this portal, and `[mail]`
    /// replaced by `mail` when given, written to `dir/portal.toml`.
    pub fn config(&self, dir: &Path, mail: Option<&str>) -> PathBuf {
        config_with(dir, Some(&self.emulator.webhook_url()), mail)
    }

    pub fn stop(self) {
        let Portal { runtime, emulator } = self;
        runtime.block_on(emulator.shutdown());
    }
}
