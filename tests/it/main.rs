//! The integration tests: real servers on loopback (Bitrix24 emulator, SMTP with STARTTLS
//! and AUTH), real SQLite files, the real binary. One file per subject (each file's first
//! lines say what it proves); run one with `cargo test --test it -- MODULE::`.
//!
//! - The reports: `e2e` (the whole product through the binary), `reports` (golden data,
//!   documented keys, every section, both languages), `render` (the PDFs), `crm_strings`.
//! - The CRM: `bitrix24` (the client against the emulator), `cache`, `faults` (a
//!   misbehaving portal through the fault proxy).
//! - Mail and delivery: `smtp` (the mailer), `delivery` (exactly once through the ledger),
//!   `daemon_crash` (killed mid-send), `chat` (the Bitrix24 messenger and Telegram channels).
//! - Alerts: `alerts` (the preview, the daemon sending Wednesday's pace alert once).
//! - The daemon: `daemon` (schedule, catch-up, retries, shutdown, signals),
//!   `daemon_faults` (over the real pipeline, CRM faults), `render_worker` (the daemon's PDFs
//!   laid out in worker processes).
//! - Operations: `install` (install script, systemd unit), `check`, `secrets`, `private`,
//!   `bounds`, `docs`, `bench_smoke`, `architecture` (ARCHITECTURE.md against the imports),
//!   `progress` (the bar on a terminal, the log lines without one).
//!
//! Shared helpers are in `support/` (its `mod.rs` lists them).

mod alerts;
mod architecture;
mod bench_smoke;
mod bitrix24;
mod bounds;
mod cache;
mod chat;
mod check;
mod crm_strings;
mod daemon;
mod daemon_crash;
mod daemon_faults;
mod delivery;
mod docs;
mod e2e;
mod faults;
mod install;
mod private;
mod progress;
mod render;
mod render_worker;
mod reports;
mod secrets;
mod smtp;
mod support;
