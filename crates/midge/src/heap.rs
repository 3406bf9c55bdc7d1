//! The heap as jemalloc reports it (`stats.allocated`): what the memory budget, `$SYS/broker/
//! heap/*` and `/metrics` measure. Without jemalloc they fall back to the resident set.

/// A probe of the bytes allocated, when the allocator can tell.
pub fn probe() -> Option<midge_server::process::HeapProbe> {
    #[cfg(feature = "jemalloc")]
    {
        Some(allocated)
    }
    #[cfg(not(feature = "jemalloc"))]
    {
        None
    }
}

#[cfg(feature = "jemalloc")]
fn allocated() -> Option<u64> {
    // jemalloc's statistics are refreshed when the epoch advances.
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    tikv_jemalloc_ctl::stats::allocated::read()
        .ok()
        .map(|v| v as u64)
}
