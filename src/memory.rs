//! Memory handed back to the system: glibc's malloc keeps what its arenas freed (one arena
//! per thread that allocated), so a process would stay at the peak of its work. The daemon
//! calls [`return_freed`] after each job; the pipeline after the CRM records are dropped,
//! before the render threads (their own arenas) allocate on top of them. Other allocators
//! and platforms: nothing to do.

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
