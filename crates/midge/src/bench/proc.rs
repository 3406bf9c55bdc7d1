//! Reading a broker process's resident memory and CPU time from /proc (Linux).

/// Memory and CPU of a process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size since start, KiB.
    pub peak_rss_kib: u64,
    /// User plus system CPU time, seconds.
    pub cpu_secs: f64,
}

/// Samples process `pid`; `None` if it cannot be read.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcSample {
        rss_kib: field("VmRSS:"),
        peak_rss_kib: field("VmHWM:"),
        cpu_secs: ticks as f64 / clock_ticks_per_sec(),
    })
}

fn clock_ticks_per_sec() -> f64 {
    // USER_HZ is 100 on every Linux architecture this runs on.
    100.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn samples_this_process() {
        let s = super::sample(std::process::id()).expect("/proc is readable");
        assert!(s.rss_kib > 0 && s.peak_rss_kib >= s.rss_kib);
    }
}
