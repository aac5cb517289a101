//! Memory handed back to the system: glibc's malloc keeps what its arenas freed (one arena
//! per thread that allocated), so a process would stay at the peak of its work. The daemon
//! calls [`return_freed`] after each job; the pipeline after the CRM records are dropped,
//! before the render threads (their own arenas) allocate on top of them. The daemon also
//! sets malloc up for a long life at start-up ([`tune_for_long_run`]). Other allocators and
//! platforms: nothing to do.

/// Returns the free pages of glibc's heaps to the system.
pub fn return_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers; it only returns free pages of glibc's heaps.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// The most arenas glibc's malloc may create in a long-running process (the daemon).
pub const DAEMON_ARENAS: i32 = 2;

/// Above this size an allocation gets pages of its own, given back when it is freed; the
/// top of a heap is given back once this much is free there.
pub const DAEMON_TRIM_BYTES: i32 = 128 * 1024;

/// Sets glibc's malloc up for a process that lives for months and works a few minutes a
/// week: at most [`DAEMON_ARENAS`] arenas (by default one per thread that allocated, up to
/// eight per core, each keeping its fragments between jobs), and a fixed trim and mmap
/// threshold of [`DAEMON_TRIM_BYTES`] (by default glibc raises both after each large free,
/// so a render's big buffers end up inside the heaps and stay there). The rendering of one
/// job is a few per cent slower with two arenas, which a daemon does not notice; what it
/// holds between slots is BENCHMARKS.md §4. Called before any thread starts. An admin's
/// `MALLOC_ARENA_MAX`, `MALLOC_TRIM_THRESHOLD_` or `MALLOC_MMAP_THRESHOLD_` in the
/// environment wins: then nothing is changed.
pub fn tune_for_long_run() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let admin_chose = ["MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        if admin_chose {
            return;
        }
        unsafe extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        // glibc's malloc.h.
        const M_TRIM_THRESHOLD: std::ffi::c_int = -1;
        const M_MMAP_THRESHOLD: std::ffi::c_int = -3;
        const M_ARENA_MAX: std::ffi::c_int = -8;
        // SAFETY: mallopt takes no pointers; it only changes malloc's parameters, which glibc
        // allows at any time (arenas already made are kept).
        unsafe {
            mallopt(M_ARENA_MAX, DAEMON_ARENAS);
            mallopt(M_TRIM_THRESHOLD, DAEMON_TRIM_BYTES);
            mallopt(M_MMAP_THRESHOLD, DAEMON_TRIM_BYTES);
        }
    }
}
