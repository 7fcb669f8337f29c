//! Latency histograms. [`Histogram`] is the clients' own: microseconds in
//! log-linear buckets (about 1.6 % wide), mergeable, so shards in other
//! processes can ship theirs as JSON and the coordinator can add them up before
//! taking percentiles. [`ServerHistogram`] is one the server exports on
//! `/metrics`: read at two moments, the difference is the histogram of the time
//! between them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two; sets the precision (1/64).
const SUB_BUCKETS: u64 = 64;

/// Counts of latencies by bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histogram {
    /// Samples by bucket index (only non-empty buckets).
    buckets: BTreeMap<u32, u64>,
    /// Samples recorded.
    count: u64,
    /// Largest sample, exact, in microseconds.
    max_us: u64,
}

fn bucket_of(us: u64) -> u32 {
    if us < 2 * SUB_BUCKETS {
        return us as u32;
    }
    let exponent = 63 - u64::from(us.leading_zeros());
    let shift = exponent - 6;
    let mantissa = us >> shift;
    (shift * SUB_BUCKETS + mantissa) as u32
}

fn lower_bound(bucket: u32) -> u64 {
    let bucket = u64::from(bucket);
    if bucket < 2 * SUB_BUCKETS {
        return bucket;
    }
    let shift = bucket / SUB_BUCKETS - 1;
    let mantissa = bucket - shift * SUB_BUCKETS;
    mantissa << shift
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        self.record_us(latency.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Records one latency in microseconds.
    pub fn record_us(&mut self, us: u64) {
        *self.buckets.entry(bucket_of(us)).or_default() += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (bucket, n) in &other.buckets {
            *self.buckets.entry(*bucket).or_default() += n;
        }
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latency at quantile `q` (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (bucket, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return lower_bound(*bucket).min(self.max_us) as f64 / 1000.0;
            }
        }
        self.max_ms()
    }

    /// The largest latency in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }
}

/// A Prometheus histogram read from the text exposition: cumulative counts per
/// upper bound (`_bucket{le=…}`), and the `_sum` and `_count` of the samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerHistogram {
    /// (upper bound, samples at or below it), ascending; the last bound is +Inf.
    buckets: Vec<(f64, f64)>,
    /// Sum of the samples, in the metric's unit.
    sum: f64,
    /// Samples.
    count: f64,
}

impl ServerHistogram {
    /// Histogram `name` from Prometheus text; empty when it is not there.
    /// Assumes one series (no labels but `le`).
    pub fn parse(text: &str, name: &str) -> Self {
        let bucket_prefix = format!("{name}_bucket{{");
        let mut histogram = Self::default();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            if let Some(labels) = key.strip_prefix(&bucket_prefix) {
                let bound = labels
                    .split_once("le=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .and_then(|(bound, _)| bound.parse::<f64>().ok());
                if let Some(bound) = bound {
                    histogram.buckets.push((bound, value));
                }
            } else if key.strip_prefix(name) == Some("_sum") {
                histogram.sum = value;
            } else if key.strip_prefix(name) == Some("_count") {
                histogram.count = value;
            }
        }
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        histogram
    }

    /// The samples recorded after `earlier` (a reading of the same histogram).
    pub fn since(&self, earlier: &Self) -> Self {
        let buckets = self
            .buckets
            .iter()
            .map(|&(bound, n)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(b, _)| *b == bound)
                    .map_or(0.0, |(_, n)| *n);
                (bound, n - before)
            })
            .collect();
        Self {
            buckets,
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// Sum of the samples.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Mean sample; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            0.0
        }
    }

    /// The sample at quantile `q` (0..=1), interpolated linearly inside its
    /// bucket as Prometheus' `histogram_quantile` does: only as precise as the
    /// buckets. In the +Inf bucket it is the largest finite bound; 0 when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        let Some(&(_, total)) = self.buckets.last() else {
            return 0.0;
        };
        if total <= 0.0 {
            return 0.0;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > below {
                if bound.is_infinite() {
                    return lower;
                }
                return lower + (bound - lower) * (rank - below) / (cumulative - below);
            }
            (lower, below) = (bound, cumulative);
        }
        lower
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in 0..1_000_000u64 {
            let bucket = bucket_of(us);
            assert!(bucket >= last);
            last = bucket;
            let low = lower_bound(bucket);
            assert!(low <= us && us - low <= us / 64 + 1, "{us} -> {low}");
        }
    }

    #[test]
    fn quantiles_of_merged_histograms() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        (1..=500).for_each(|ms| a.record_us(ms * 1000));
        (501..=1000).for_each(|ms| b.record_us(ms * 1000));
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        assert!((a.quantile_ms(0.5) - 500.0).abs() < 10.0);
        assert!((a.quantile_ms(0.99) - 990.0).abs() < 20.0);
        assert_eq!(a.max_ms(), 1000.0);
    }

    const SCRAPE: &str = "# HELP resume_store_write_seconds x\n\
        # TYPE resume_store_write_seconds histogram\n\
        resume_store_write_seconds_sum 1.5\n\
        resume_store_write_seconds_count 100\n\
        resume_store_write_seconds_bucket{le=\"0.001\"} 10\n\
        resume_store_write_seconds_bucket{le=\"0.002\"} 90\n\
        resume_store_write_seconds_bucket{le=\"0.004\"} 99\n\
        resume_store_write_seconds_bucket{le=\"+Inf\"} 100\n\
        resume_store_writes_total{outcome=\"ok\"} 100\n";

    #[test]
    fn server_histogram_quantiles_interpolate_within_buckets() {
        let h = ServerHistogram::parse(SCRAPE, "resume_store_write_seconds");
        assert_eq!(h.count, 100.0);
        assert!((h.mean() - 0.015).abs() < 1e-12);
        // Rank 50 is the 40th of the 80 samples in (1 ms, 2 ms].
        assert!((h.quantile(0.5) - 0.0015).abs() < 1e-12);
        // Rank 99 is the last sample of (2 ms, 4 ms].
        assert!((h.quantile(0.99) - 0.004).abs() < 1e-12);
        // Rank 100 falls in +Inf: the largest finite bound.
        assert_eq!(h.quantile(1.0), 0.004);
        assert_eq!(ServerHistogram::default().quantile(0.5), 0.0);
    }

    #[test]
    fn server_histogram_difference_is_the_window() {
        let end = ServerHistogram::parse(SCRAPE, "resume_store_write_seconds");
        let start = ServerHistogram::parse(
            "resume_store_write_seconds_sum 0.5\n\
             resume_store_write_seconds_count 10\n\
             resume_store_write_seconds_bucket{le=\"0.001\"} 10\n\
             resume_store_write_seconds_bucket{le=\"0.002\"} 10\n\
             resume_store_write_seconds_bucket{le=\"0.004\"} 10\n\
             resume_store_write_seconds_bucket{le=\"+Inf\"} 10\n",
            "resume_store_write_seconds",
        );
        let window = end.since(&start);
        assert_eq!(window.count, 90.0);
        assert!((window.sum() - 1.0).abs() < 1e-12);
        // None of the window's samples is at or below 1 ms.
        assert!(window.quantile(0.01) > 0.001);
        assert!((window.quantile(0.5) - (0.001 + 0.001 * 45.0 / 80.0)).abs() < 1e-12);
    }
}
