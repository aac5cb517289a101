//! salespulse: weekly manager scorecards and monthly department reports from Bitrix24.
//!
//! The crate is laid out as the pipeline it runs (ARCHITECTURE.md): `crm` fetches records
//! into a `domain::CrmSnapshot`, `kpi` turns them into `kpi::ReportData` (the report's JSON),
//! `chart` draws SVGs from that data, `render` lays out data and charts in Typst and
//! returns a PDF, `mail` delivers it, `store` remembers what was delivered, `schedule`
//! says when, and `pipeline` / `daemon` / `cli` put the stages in order.

pub mod alert;
pub mod chart;
pub mod chat;
pub mod check;
pub mod cli;
pub mod config;
pub mod crm;
pub mod daemon;
pub mod domain;
pub mod endpoint;
pub mod fnv;
pub mod fonts;
pub mod kpi;
pub mod locale;
pub mod mail;
pub mod memory;
pub mod pipeline;
pub mod private_fs;
pub mod progress;
pub mod render;
pub mod render_worker;
pub mod schedule;
pub mod store;
pub mod text;
