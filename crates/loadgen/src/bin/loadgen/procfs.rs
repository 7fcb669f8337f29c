//! Samples another process (the server under test) from `/proc`: CPU seconds
//! spent (user + system, all threads) and resident memory.

use std::io;

use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc/<pid>/stat` times. Linux fixes USER_HZ at
/// 100 on every architecture this runs on; reading it through `sysconf` would
/// need `unsafe`.
const USER_HZ: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    /// User + system CPU time so far, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
}

/// Reads `pid`'s CPU time and RSS.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let cpu_seconds = parse_cpu_seconds(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc stat"))?;
    let rss_bytes = parse_rss_bytes(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc status"))?;
    Ok(ProcSample {
        cpu_seconds,
        rss_bytes,
    })
}

/// utime + stime from `/proc/<pid>/stat`; the command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

fn parse_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0";
        assert_eq!(parse_cpu_seconds(stat), Some(4.0));
        assert_eq!(
            parse_rss_bytes("Name:\tx\nVmRSS:\t  1024 kB\n"),
            Some(1024 * 1024)
        );
    }

    #[test]
    fn samples_itself() {
        let me = sample(std::process::id()).expect("own /proc");
        assert!(me.rss_bytes > 0);
    }
}
