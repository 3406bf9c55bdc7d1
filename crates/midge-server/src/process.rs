//! The broker process as the operating system sees it (Linux `/proc`), for metrics and
//! `$SYS`: resident memory, CPU time, open file descriptors, and the heap as the allocator
//! reports it when the binary provides a probe.

use std::sync::atomic::{AtomicU64, Ordering};

/// Reports the bytes the allocator has handed out (jemalloc's `stats.allocated`, say).
pub type HeapProbe = fn() -> Option<u64>;

/// The Linux clock tick of `/proc/*/stat` times (USER_HZ, 100 on every architecture
/// Linux exposes to user space).
const TICKS_PER_SEC: f64 = 100.0;

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time in seconds.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces: fields are counted after its closing paren.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Open file descriptors.
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Total memory of the machine in bytes (`MemTotal` of `/proc/meminfo`).
pub fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Memory use as the budget sees it: the allocator's figure when there is a probe, else
/// the resident set.
#[derive(Debug)]
pub struct MemoryGauge {
    probe: Option<HeapProbe>,
    current: AtomicU64,
    maximum: AtomicU64,
}

impl MemoryGauge {
    /// A gauge reading `probe` (or the resident set without one).
    pub fn new(probe: Option<HeapProbe>) -> Self {
        let g = MemoryGauge {
            probe,
            current: AtomicU64::new(0),
            maximum: AtomicU64::new(0),
        };
        g.sample();
        g
    }

    /// Reads the memory in use now and remembers it.
    pub fn sample(&self) -> u64 {
        let v = self
            .probe
            .and_then(|p| p())
            .or_else(resident_bytes)
            .unwrap_or(0);
        self.current.store(v, Ordering::Relaxed);
        self.maximum.fetch_max(v, Ordering::Relaxed);
        v
    }

    /// The last sample.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Relaxed)
    }

    /// The largest sample.
    pub fn maximum(&self) -> u64 {
        self.maximum.load(Ordering::Relaxed)
    }

    /// True when the allocator itself is measured (heap), false for the resident set.
    pub fn is_heap(&self) -> bool {
        self.probe.is_some_and(|p| p().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readings_are_plausible() {
        assert!(resident_bytes().expect("VmRSS") > 1024 * 1024);
        assert!(cpu_seconds().expect("stat") >= 0.0);
        assert!(open_fds().expect("fd dir") >= 3);
        assert!(machine_memory().expect("meminfo") > resident_bytes().expect("VmRSS"));
    }
}
