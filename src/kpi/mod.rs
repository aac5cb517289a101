//! KPI.md as pure, synchronous functions: a CRM snapshot and a period in, report data out.
//! Nothing here touches the network or the clock.

pub mod model;

pub use model::*;
