//! What the benchmarks of issue 6 share: a synthetic company of any size (`synth`), the
//! cores that `kpi`, `render` and `fetch` time (`kpi_core`, `render_core`, `fetch_core`),
//! and memory, machine and table helpers (`measure`); `kill_core`, the SIGKILL harness of
//! `kill`. The smoke test
//! `tests/it/bench_smoke.rs` includes this module too and runs each core at a tiny size, so
//! the benchmarks keep compiling and working; timings are never asserted.

// Each bench binary uses part of this module; the smoke test uses another part.
#![allow(dead_code)]

pub mod fetch_core;
pub mod kill_core;
pub mod kpi_core;
pub mod measure;
pub mod render_core;
pub mod synth;
