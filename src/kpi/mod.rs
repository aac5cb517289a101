//! docs/kpi.md as pure, synchronous functions: a CRM snapshot and a period in, report data out.
//! Nothing here touches the network or the clock, or knows the config file.
//!
//! Inside, each module uses only the ones listed before it: `catalog` (the KPIs themselves),
//! `model` (the report data), `targets`, `present` (formatted strings and labels), `hints`,
//! then `compute`, which runs the pass and calls the others.

pub mod catalog;
pub mod compute;
pub mod hints;
pub mod model;
pub mod present;
pub mod targets;

pub use catalog::{Direction, Kpi, Unit};
pub use compute::{Analysis, KpiSettings};
pub use model::*;
pub use targets::{PeriodTargets, TargetSet, Targets};
