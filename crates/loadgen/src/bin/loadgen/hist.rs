//! A mergeable latency histogram: microseconds in log-linear buckets (about
//! 1.6 % wide), so shards in other processes can ship theirs as JSON and the
//! coordinator can add them up before taking percentiles.

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
}
