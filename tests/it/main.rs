//! The integration tests: real servers on loopback (Bitrix24 emulator, SMTP with STARTTLS
//! and AUTH), real SQLite files, the real binary.

mod bench_smoke;
mod bitrix24;
mod bounds;
mod cache;
mod check;
mod crm_strings;
mod daemon;
mod daemon_faults;
mod docs;
mod e2e;
mod faults;
mod install;
mod private;
mod render;
mod reports;
mod secrets;
mod smtp;
mod support;
