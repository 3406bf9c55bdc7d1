//! The broker process as the operating system sees it (Linux `/proc`), for metrics and
//! `$SYS`: resident memory, CPU time, open file descriptors, and the heap as the allocator
//! reports it when the binary provides a probe.

use std::path::{Path, PathBuf};
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

/// The memory this process may use: the machine's RAM, or less when a cgroup memory limit
/// (systemd's `MemoryMax=`, a container's `--memory`) is lower.
pub fn memory_limit() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| cgroup_memory_limit(Path::new("/sys/fs/cgroup"), &t));
    match (machine_memory(), cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// Limits at or above this are "no limit" (cgroup v1 writes 2^63 rounded to a page).
const UNLIMITED: u64 = 1 << 62;

/// The tightest memory limit on the cgroups listed in `proc_cgroup` (the text of
/// `/proc/self/cgroup`) and their ancestors, under the cgroup file systems at `root`:
/// `memory.max` of cgroup v2 (mounted at `root`, or at `root/unified` next to v1) and
/// `memory.limit_in_bytes` of v1's memory controller. Ancestors count: a limit on a parent
/// bounds its children, and in a container without its own cgroup namespace the listed
/// path does not exist below the container's mount, whose root is the container's cgroup.
fn cgroup_memory_limit(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let mut tightest: Option<u64> = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let places: Vec<(PathBuf, &str)> = if controllers.is_empty() {
            vec![
                (root.to_path_buf(), "memory.max"),
                (root.join("unified"), "memory.max"),
            ]
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![(root.join("memory"), "memory.limit_in_bytes")]
        } else {
            continue;
        };
        for (mount, file) in places {
            let mut dir = Some(Path::new(path.trim_start_matches('/')));
            while let Some(d) = dir {
                let limit = std::fs::read_to_string(mount.join(d).join(file))
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .filter(|&l| l < UNLIMITED);
                if let Some(l) = limit {
                    tightest = Some(tightest.map_or(l, |t| t.min(l)));
                }
                dir = d.parent();
            }
        }
    }
    tightest
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
        assert!(memory_limit().expect("a limit") <= machine_memory().expect("meminfo"));
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn cgroup_limits_are_found_in_v1_v2_and_ancestors_and_the_tightest_wins() {
        let root = std::env::temp_dir().join(format!("midge-cgroup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // v2 only: the service's own limit.
        write(
            &root,
            "system.slice/midge.service/memory.max",
            "536870912\n",
        );
        write(&root, "system.slice/memory.max", "max\n");
        let v2 = "0::/system.slice/midge.service\n";
        assert_eq!(cgroup_memory_limit(&root, v2), Some(512 << 20));
        // A tighter parent bounds it.
        write(&root, "system.slice/memory.max", "268435456\n");
        assert_eq!(cgroup_memory_limit(&root, v2), Some(256 << 20));
        // v1 memory controller, "unlimited" ignored; a container whose listed path does
        // not exist below its mount finds the mount's own limit.
        write(&root, "memory/memory.limit_in_bytes", "1073741824\n");
        write(
            &root,
            "memory/user/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let v1 = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n";
        assert_eq!(cgroup_memory_limit(&root, v1), Some(1 << 30));
        let unlimited = "4:memory:/user\n";
        assert_eq!(cgroup_memory_limit(&root, unlimited), Some(1 << 30));
        // Nothing readable: no limit.
        assert_eq!(cgroup_memory_limit(&root.join("none"), v2), None);
        assert_eq!(cgroup_memory_limit(&root, "garbage\n"), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
