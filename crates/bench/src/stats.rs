//! Latency distributions and process CPU/memory from /proc.

use serde::Serialize;

/// Percentiles of a set of durations, in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Distribution {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

impl Distribution {
    /// Summarises nanosecond samples.
    pub fn from_ns(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        Self {
            count: samples.len(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: samples[samples.len() - 1] as f64 / 1000.0,
        }
    }
}

/// CPU time and resident memory of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// User + system CPU time, microseconds.
    pub cpu_us: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

impl ProcSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` 0 = this process).
    pub fn read(pid: u32) -> std::io::Result<Self> {
        let dir = if pid == 0 {
            "/proc/self".to_owned()
        } else {
            format!("/proc/{pid}")
        };
        let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let cpu_us = (ticks(11) + ticks(12)) * 1_000_000 / hz;
        let status = std::fs::read_to_string(format!("{dir}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Ok(Self { cpu_us, rss_kib })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let d = Distribution::from_ns((1..=1000).map(|i| i * 1000).collect());
        assert_eq!(
            (d.count, d.p50_us, d.p99_us, d.max_us),
            (1000, 500.0, 990.0, 1000.0)
        );
        assert_eq!(Distribution::from_ns(vec![]).count, 0);
    }

    #[test]
    fn reads_own_process() {
        let s = ProcSample::read(0).unwrap();
        assert!(s.rss_kib > 0);
    }
}
