//! Exactly once under SIGKILL, measured (issue 10, point 8): `salespulse send` of the demo
//! portal's weekly scorecards to the SMTP test server (STARTTLS, AUTH; the one the
//! integration tests use), SIGKILLed at random points of its delivery KILLS times (default
//! 200), each round run to the end after its kills. Prints how many kills, rounds and
//! messages there were, how many duplicates (the same message twice: a kill between the
//! server's 250 and the ledger's `sent`), and checks the invariant: every recipient got their
//! report, none got two different messages, every possible duplicate was told to the admin.
//! The core is `common/kill_core.rs`; `tests/it/bench_smoke.rs` runs it with a few kills.
//!
//! `cargo bench --bench kill -- [KILLS] [--seed N]`. Exits 1 if the invariant failed.

mod common;

use common::kill_core::{self, Options};
use common::measure::{self, Table, ms, secs};

fn us(d: std::time::Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let kills = measure::size_arg(200);
    let seed = measure::option("--seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    println!("salespulse kill benchmark: {kills} SIGKILLs during `send`, seed {seed}\nmachine: {}", measure::machine());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = Options {
        bin: env!("CARGO_BIN_EXE_salespulse").into(),
        dir: dir.path().to_owned(),
        kills,
        seed,
        job: "manager-weekly".into(),
        period: "2026-W47".into(),
    };
    let f = kill_core::run(&options);
    let mut delays = f.kill_delays.clone();
    delays.sort();
    let median = delays.get(delays.len() / 2).copied().unwrap_or_default();
    let mut table = Table::new("Kills during `send manager-weekly --period 2026-W47`", &["figure", "value"]);
    for (k, v) in [
        ("kills (SIGKILL)", f.kills.to_string()),
        ("rounds (fresh ledger, run to the end)", f.rounds.to_string()),
        ("send processes", f.processes.to_string()),
        ("reports (recipients x rounds)", f.reports.to_string()),
        ("messages accepted (to managers)", f.messages.to_string()),
        ("duplicates (same message twice)", f.duplicates.to_string()),
        ("duplicates per kill", format!("{:.2} %", 100.0 * f.duplicates as f64 / f.kills.max(1) as f64)),
        ("rounds with a duplicate", f.rounds_with_duplicates.to_string()),
        ("two different messages to one recipient", f.different.to_string()),
        ("recipients without their report", f.missing.to_string()),
        ("rows not sent at the end", f.unsent.to_string()),
        ("duplicates not told to the admin", f.duplicates_untold.to_string()),
        ("uninterrupted SMTP phase (kill delays drawn from 0 to this)", ms(f.delivery)),
        ("median kill delay", ms(median)),
        ("wall time", secs(f.wall)),
    ] {
        table.row(vec![k.to_owned(), v]);
    }
    print!("{}", table.render());

    // The ledger's side of the window, on the same disk as the kills' state directories.
    let (before, after) = kill_core::ledger_writes(&dir.path().join("ledger-writes"), 500);
    let pct = |v: &[std::time::Duration], p: f64| us(v[((v.len() - 1) as f64 * p) as usize]);
    let mut table =
        Table::new("Ledger writes around one SMTP transaction (500 rows)", &["write", "median", "p99", "max"]);
    for (name, v) in [
        ("claim + attempt count, before (synchronous = FULL)", &before),
        ("mark_sent, after the 250 (NORMAL: the window)", &after),
    ] {
        table.row(vec![name.to_owned(), pct(v, 0.5), pct(v, 0.99), pct(v, 1.0)]);
    }
    print!("{}", table.render());
    if !f.invariant_holds() {
        eprintln!("the exactly-once invariant failed: {f:?}");
        std::process::exit(1);
    }
}
