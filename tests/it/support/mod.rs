//! Shared helpers of the integration tests:
//!
//! - `bin`: the real binary in a subprocess, with the demo config or one aimed at a portal.
//! - `crm`: a fast Bitrix24 emulator and client; the demo portal served for the binary.
//! - `delivery`: three managers' scorecards and a config mailing them to the test server.
//! - `fixtures`: hand-built report data (a scorecard, a department report).
//! - `logs`: the product's log lines in a test, to count what it did instead of timing it.
//! - `pdf`: a PDF's text and page sizes, read back.
//! - `proxy`: a fault-injecting HTTP proxy between the client and the emulator.
//! - `reference`: docs/kpi.md over a portal's wire records, the KPIs' reference.
//! - `smtp`: an SMTP server with STARTTLS and AUTH that records what it accepts.
//! - `telegram`: a Telegram Bot API on loopback that records what the bot sent.

pub mod bin;
pub mod crm;
pub mod delivery;
pub mod fixtures;
pub mod logs;
pub mod pdf;
pub mod proxy;
pub mod reference;
pub mod smtp;
pub mod telegram;
