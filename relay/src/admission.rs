//! Handshake admission after the global cookie limiter: token buckets per source address and
//! per tenant. A rate of 0 switches a budget off (benchmarks).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Most keys a budget remembers; past that, full buckets are forgotten (a full bucket is the
/// same as no entry) and, if still too many, everything is.
const MAX_KEYS: usize = 100_000;

/// A token bucket per key: `rate` tokens a second, at most `burst` saved.
#[derive(Debug)]
pub struct Budget<K> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, (f64, Instant)>,
}

impl<K: Hash + Eq + Clone> Budget<K> {
    /// `rate` per second (0 = unlimited), `burst` at least 1.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether this budget is switched off.
    pub fn is_off(&self) -> bool {
        self.rate <= 0.0
    }

    /// Takes one token for `key`; `false` when the budget is spent.
    pub fn admit(&mut self, key: &K, now: Instant) -> bool {
        if self.is_off() {
            return true;
        }
        if self.buckets.len() >= MAX_KEYS && !self.buckets.contains_key(key) {
            self.prune(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let entry = self.buckets.entry(key.clone()).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(entry.1).as_secs_f64();
        entry.0 = (entry.0 + elapsed * rate).min(burst);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            true
        } else {
            false
        }
    }

    fn prune(&mut self, now: Instant) {
        let full = Duration::from_secs_f64(self.burst / self.rate);
        self.buckets
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < full);
        if self.buckets.len() >= MAX_KEYS {
            self.buckets.clear();
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(2, 3);
        assert!(b.admit(&1, t0));
        assert!(b.admit(&1, t0));
        assert!(b.admit(&1, t0));
        assert!(!b.admit(&1, t0));
        // Another key has its own bucket.
        assert!(b.admit(&2, t0));
        // Half a second at 2/s = one token.
        assert!(b.admit(&1, t0 + Duration::from_millis(500)));
        assert!(!b.admit(&1, t0 + Duration::from_millis(500)));
        // Refill is capped at the burst.
        let later = t0 + Duration::from_secs(100);
        assert!((0..3).all(|_| b.admit(&1, later)));
        assert!(!b.admit(&1, later));
    }

    #[test]
    fn zero_is_off() {
        let mut b = Budget::new(0, 0);
        let t0 = Instant::now();
        assert!((0..10_000).all(|i| b.admit(&i, t0)));
        assert!(b.is_empty());
    }
}
