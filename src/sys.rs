//! Every call into C that Rust cannot check: the allocator's tuning (glibc)
//! and SQLite's global settings. Each is a plain setting with no pointers;
//! nothing else in the crate is `unsafe` (the crate denies `unsafe_code`,
//! and this module alone allows it).

#![allow(unsafe_code)]

/// glibc raises its mmap threshold after the first large free, so the 19 MiB
/// blocks of argon2id hashing would then stay in the heap and RSS would grow
/// by one block per hashing thread. A fixed threshold keeps large blocks
/// mmapped (returned to the OS when freed), and a 4 MiB trim threshold
/// avoids trimming churn after bursts of small frees. (mimalloc was tried:
/// ~25% more requests/s, but twice the RSS, since it keeps freed pages.)
/// Called first thing in `main`, so that every allocation sees it.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters, under the main arena's
    // lock (safe from any thread); the arguments are plain integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    }
}

/// Start-up (migrations, the OpenAPI document, the router) frees a few MiB
/// of small allocations in the middle of the heap, which glibc keeps mapped
/// until asked: hand those pages back before serving.
pub fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it is
    // thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Turns off SQLite's memory statistics, which take a global mutex on every
/// allocation and free inside SQLite (nothing here reads them). Must run
/// before the first connection initialises the library; later it is a no-op.
pub fn tune_sqlite() {
    // SAFETY: sqlite3_config only changes global settings, and SQLite refuses
    // it (SQLITE_MISUSE, ignored) once initialised; the one variadic argument
    // is the int that SQLITE_CONFIG_MEMSTATUS takes.
    unsafe {
        libsqlite3_sys::sqlite3_config(
            libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
            0 as std::ffi::c_int,
        );
    }
}
