//! The integration tests: real servers on loopback (Bitrix24 emulator, SMTP with STARTTLS
//! and AUTH), real SQLite files, the real binary.

mod support;
