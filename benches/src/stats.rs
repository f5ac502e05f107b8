//! Percentiles, and the server's resident memory and CPU time.

use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Latency {
    /// Percentiles of `samples` (microseconds).
    pub fn of(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
        Self {
            count: samples.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: *samples.last().unwrap_or(&0),
        }
    }
}

/// Resident memory (VmRSS) of a process in KiB, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User plus system CPU time of a process in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU time summed over several processes (each counted once), in seconds;
/// `None` when there is none or one cannot be read.
pub fn cpu_seconds_of(pids: &[u32]) -> Option<f64> {
    let mut unique = pids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    if unique.is_empty() {
        return None;
    }
    unique.into_iter().map(cpu_seconds).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=1000).collect());
        assert_eq!(
            (l.count, l.p50_us, l.p99_us, l.p999_us, l.max_us),
            (1000, 500, 990, 999, 1000)
        );
        assert_eq!(Latency::of(vec![]), Latency::default());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        let me = std::process::id();
        assert!(cpu_seconds(me).is_some());
        let once = cpu_seconds_of(&[me, me]).unwrap();
        assert!(once <= cpu_seconds(me).unwrap(), "a pid given twice counts once");
        assert_eq!(cpu_seconds_of(&[]), None);
    }
}
