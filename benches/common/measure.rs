//! What the benchmarks read off the machine: peak and current resident memory from
//! `/proc/self/status`, the machine's description for BENCHMARKS.md, and a plain text table.
//! Nothing here judges a number: benchmarks report, they do not pass or fail.

use std::time::Duration;

/// A `/proc/self/status` field in KiB (`VmHWM`, `VmRSS`); 0 where there is no procfs.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(field)?.strip_prefix(':').map(|v| v.trim().trim_end_matches("kB").trim().to_owned())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Peak resident memory so far (since the last [`reset_peak`]), in KiB.
pub fn peak_kib() -> u64 {
    status_kib("VmHWM")
}

/// Resident memory now, in KiB.
pub fn rss_kib() -> u64 {
    status_kib("VmRSS")
}

/// Resident memory split as the kernel counts it: anonymous (the heap, stacks) and file-backed
/// (the executable's and libraries' pages that ran, shared and reclaimable), in KiB.
pub fn rss_split_kib() -> (u64, u64) {
    (status_kib("RssAnon"), status_kib("RssFile"))
}

/// What glibc's malloc holds for live allocations (chunks in use in all arenas, and blocks of
/// their own mapping), in KiB: the part of the anonymous memory the program still uses, as
/// against the allocator's free but resident pages. `None` with another C library.
pub fn malloc_in_use_kib() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        #[repr(C)]
        struct Mallinfo2 {
            arena: usize,
            ordblks: usize,
            smblks: usize,
            hblks: usize,
            hblkhd: usize,
            usmblks: usize,
            fsmblks: usize,
            uordblks: usize,
            fordblks: usize,
            keepcost: usize,
        }
        unsafe extern "C" {
            fn mallinfo2() -> Mallinfo2;
        }
        // SAFETY: mallinfo2 takes nothing and returns a plain struct (glibc ≥ 2.33).
        let m = unsafe { mallinfo2() };
        Some(((m.uordblks + m.hblkhd) / 1024) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Resets `VmHWM` to the current RSS (Linux ≥ 4.0: `5` into `/proc/self/clear_refs`), so
/// that a stage's peak is not the previous stage's. Returns whether the kernel took it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The machine's load average (1, 5, 15 minutes), as `/proc/loadavg` gives it: how busy the
/// shared cores were around a figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// `1 234 MiB` style.
pub fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

pub fn secs(d: Duration) -> String {
    if d.as_secs_f64() >= 10.0 { format!("{:.1} s", d.as_secs_f64()) } else { format!("{:.3} s", d.as_secs_f64()) }
}

pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The machine, for the header of every table: CPU model, cores, memory, kernel, date.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches("kB").trim().to_owned()))
        })
        .and_then(|v| v.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    #[allow(clippy::disallowed_methods)] // When a benchmark ran is part of its record.
    let now = chrono::Utc::now();
    let profile = if cfg!(debug_assertions) { "DEBUG build (numbers not meaningful)" } else { "release build" };
    format!("{cpu}, {cores} cores, {mem}, Linux {}, {}, {profile}", kernel.trim(), now.format("%Y-%m-%d %H:%M UTC"))
}

/// A plain text table: a title, headers and rows, columns padded to their widest cell.
pub struct Table {
    title: String,
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, headers: &[&str]) -> Table {
        Table { title: title.to_owned(), headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) -> &mut Table {
        self.rows.push(cells);
        self
    }

    pub fn render(&self) -> String {
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&self.headers[i]))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.headers.len()).map(width).collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    format!("{c}{}", " ".repeat(widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count())))
                })
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        let mut out = format!("\n{}\n\n", self.title);
        out.push_str(&line(&self.headers));
        out.push('\n');
        out.push_str(&format!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|")));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }
}

/// Positional arguments after `cargo bench --bench x --`, without the `--bench` flag cargo adds.
pub fn args() -> Vec<String> {
    std::env::args().skip(1).filter(|a| a != "--bench").collect()
}

/// Whether `--flag` was given.
pub fn flag(name: &str) -> bool {
    args().iter().any(|a| a == name)
}

/// The value after `--name`, if given.
pub fn option(name: &str) -> Option<String> {
    let a = args();
    a.iter().position(|x| x == name).and_then(|i| a.get(i + 1).cloned())
}

/// The first positional number, else `default`.
pub fn size_arg(default: usize) -> usize {
    let a = args();
    let mut skip = false;
    for x in &a {
        if skip {
            skip = false;
            continue;
        }
        if x.starts_with("--") {
            // Options with a value: the next argument belongs to them.
            skip = matches!(x.as_str(), "--threads" | "--sample" | "--job");
            continue;
        }
        if let Ok(n) = x.replace('_', "").parse() {
            return n;
        }
    }
    default
}
