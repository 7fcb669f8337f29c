//! A long run's drift: the server sampled through the plateau window (RSS, CPU,
//! ticks, the store's size on disk), and what changed from the window's first
//! stretch to its last.
//!
//! A soak asks whether a server that is fine for a minute is still fine after
//! half an hour with the same viewers: memory and the store's files must not
//! grow with time, and the CPU a tick costs must not creep up. The samples stay
//! in the report, so the whole curve can be looked at later; the summary
//! compares the start with the end, and — because a server's memory and files
//! grow once while every viewer's first write lands — also the end of the
//! first fifth with the end, which is the growth that would go on.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The server at one moment of the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowSample {
    /// Seconds since the window opened.
    pub seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// CPU seconds (user + sys) the server has used since it started.
    pub cpu_seconds: f64,
    /// Ticks the server has accepted since it started.
    pub ticks: f64,
    /// Positions the server has written since it started.
    pub writes: f64,
    /// Bytes of the store's files on disk, when the store's directory was named.
    pub store_bytes: Option<u64>,
}

/// Start against end of a window. Fields missing from an older report read
/// as their defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Drift {
    /// Seconds from the first sample to the last.
    pub seconds: f64,
    /// Seconds of each compared stretch (the first and the last fifth of the window).
    pub stretch_seconds: f64,
    /// RSS at the first sample, bytes.
    pub rss_start_bytes: u64,
    /// RSS at the last sample, bytes.
    pub rss_end_bytes: u64,
    /// (end − start) RSS per hour of window, bytes.
    pub rss_growth_bytes_per_hour: f64,
    /// RSS growth per hour from the end of the first fifth to the end: once
    /// every viewer has written, what keeps growing.
    pub rss_settled_growth_bytes_per_hour: f64,
    /// The store's files at the first sample, bytes.
    pub store_start_bytes: Option<u64>,
    /// The store's files at the last sample, bytes.
    pub store_end_bytes: Option<u64>,
    /// (end − start) store bytes per hour of window.
    pub store_growth_bytes_per_hour: Option<f64>,
    /// Store growth per hour from the end of the first fifth to the end.
    pub store_settled_growth_bytes_per_hour: Option<f64>,
    /// Server CPU µs per accepted tick over the first stretch.
    pub cpu_us_per_tick_start: f64,
    /// Server CPU µs per accepted tick over the last stretch.
    pub cpu_us_per_tick_end: f64,
    /// Positions written per second over the first stretch.
    pub writes_per_second_start: f64,
    /// Positions written per second over the last stretch.
    pub writes_per_second_end: f64,
}

/// Compares the first and the last fifth of the window (at least one sample
/// interval each); `None` with fewer than two samples.
pub fn summarize(samples: &[WindowSample]) -> Option<Drift> {
    let (first, last) = (samples.first()?, samples.last()?);
    if samples.len() < 2 || last.seconds <= first.seconds {
        return None;
    }
    let intervals = samples.len() - 1;
    let stretch = (intervals / 5).max(1);
    let early = (&samples[0], &samples[stretch]);
    let late = (&samples[intervals - stretch], last);
    let settled = early.1;
    let growth = |from: &WindowSample, bytes: fn(&WindowSample) -> Option<u64>| {
        let hours = (last.seconds - from.seconds) / 3600.0;
        match (bytes(from), bytes(last)) {
            (Some(start), Some(end)) if hours > 0.0 => Some((end as f64 - start as f64) / hours),
            _ => None,
        }
    };
    let rss = |s: &WindowSample| Some(s.rss_bytes);
    let store = |s: &WindowSample| s.store_bytes;
    Some(Drift {
        seconds: last.seconds - first.seconds,
        stretch_seconds: early.1.seconds - early.0.seconds,
        rss_start_bytes: first.rss_bytes,
        rss_end_bytes: last.rss_bytes,
        rss_growth_bytes_per_hour: growth(first, rss).unwrap_or(0.0),
        rss_settled_growth_bytes_per_hour: growth(settled, rss).unwrap_or(0.0),
        store_start_bytes: first.store_bytes,
        store_end_bytes: last.store_bytes,
        store_growth_bytes_per_hour: growth(first, store),
        store_settled_growth_bytes_per_hour: growth(settled, store),
        cpu_us_per_tick_start: cpu_us_per_tick(early),
        cpu_us_per_tick_end: cpu_us_per_tick(late),
        writes_per_second_start: per_second(early, |s| s.writes),
        writes_per_second_end: per_second(late, |s| s.writes),
    })
}

fn cpu_us_per_tick((from, to): (&WindowSample, &WindowSample)) -> f64 {
    let ticks = to.ticks - from.ticks;
    if ticks > 0.0 {
        (to.cpu_seconds - from.cpu_seconds) * 1e6 / ticks
    } else {
        0.0
    }
}

fn per_second(
    (from, to): (&WindowSample, &WindowSample),
    counter: impl Fn(&WindowSample) -> f64,
) -> f64 {
    (counter(to) - counter(from)) / (to.seconds - from.seconds).max(1e-9)
}

/// Bytes of every file under `dir`, recursively (what the store holds on disk).
pub fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seconds: f64, rss: u64, cpu: f64, ticks: f64, store: u64) -> WindowSample {
        WindowSample {
            seconds,
            rss_bytes: rss,
            cpu_seconds: cpu,
            ticks,
            writes: ticks / 4.0,
            store_bytes: Some(store),
        }
    }

    #[test]
    fn compares_the_first_and_last_fifth_and_scales_growth_to_an_hour() {
        // 11 samples 60 s apart: fifths of two intervals each. The first stretch
        // costs 10 µs per tick, the last 20 µs; RSS grows 1 MiB in 10 minutes.
        let mut samples = Vec::new();
        let mut cpu = 0.0;
        for i in 0..=10u32 {
            let ticks = f64::from(i) * 60_000.0;
            samples.push(sample(
                f64::from(i) * 60.0,
                (100 << 20) + u64::from(i) * ((1 << 20) / 10),
                cpu,
                ticks,
                5_000 + u64::from(i) * 100,
            ));
            cpu += if i < 8 { 0.6 } else { 1.2 };
        }
        let drift = summarize(&samples).unwrap();
        assert_eq!(drift.seconds, 600.0);
        assert_eq!(drift.stretch_seconds, 120.0);
        assert!(
            (drift.cpu_us_per_tick_start - 10.0).abs() < 1e-9,
            "{drift:?}"
        );
        assert!((drift.cpu_us_per_tick_end - 20.0).abs() < 1e-9, "{drift:?}");
        assert_eq!(drift.store_start_bytes, Some(5_000));
        assert_eq!(drift.store_end_bytes, Some(6_000));
        assert!((drift.store_growth_bytes_per_hour.unwrap() - 6_000.0).abs() < 1e-6);
        let rss_growth = (samples[10].rss_bytes - samples[0].rss_bytes) as f64 * 6.0;
        assert!((drift.rss_growth_bytes_per_hour - rss_growth).abs() < 1e-6);
        assert!((drift.writes_per_second_end - 250.0).abs() < 1e-9);
    }

    #[test]
    fn growth_that_stops_after_the_first_writes_is_not_a_rate() {
        // Memory and the store grow in the first minute, then stay put.
        let samples: Vec<_> = (0..=30u32)
            .map(|i| {
                let grown = u64::from(i > 0);
                sample(
                    f64::from(i) * 60.0,
                    (95 << 20) + grown * (1 << 20),
                    f64::from(i),
                    f64::from(i) * 1e5,
                    1_000 + grown * 800,
                )
            })
            .collect();
        let drift = summarize(&samples).unwrap();
        assert!(drift.rss_growth_bytes_per_hour > 0.0, "{drift:?}");
        assert_eq!(drift.rss_settled_growth_bytes_per_hour, 0.0, "{drift:?}");
        assert!(
            drift.store_growth_bytes_per_hour.unwrap() > 0.0,
            "{drift:?}"
        );
        assert_eq!(
            drift.store_settled_growth_bytes_per_hour,
            Some(0.0),
            "{drift:?}"
        );
    }

    #[test]
    fn needs_two_samples_in_time() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[sample(0.0, 1, 0.0, 0.0, 0)]), None);
        assert!(summarize(&[sample(0.0, 1, 0.0, 0.0, 0), sample(1.0, 1, 0.0, 0.0, 0)]).is_some());
    }

    #[test]
    fn counts_files_in_nested_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(dir.path()).unwrap(), 123);
    }
}
