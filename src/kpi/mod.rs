//! docs/kpi.md as pure, synchronous functions: a CRM snapshot and a period in, report data out.
//! Nothing here touches the network or the clock.

pub mod compute;
pub mod hints;
pub mod model;
pub mod present;

pub use compute::{Analysis, KpiSettings};
pub use model::*;
