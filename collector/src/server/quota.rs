//! Quotas on what peers may make the collector do. Nothing an unauthenticated peer sends
//! may grow without bound, and a compromised node must not be able to flood the store: so
//! token-less enrolments are limited per source address and in number, pending claims
//! expire, and each node may send only so many reports a minute.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// The collector's quotas. [`Quotas::default`] is what `serve` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Enrolments without a token, per source address (IP) per minute.
    pub enrolls_per_minute: u32,
    /// Pending nodes at most; further token-less enrolments are refused until some are
    /// approved, deleted or expire.
    pub max_pending: usize,
    /// How long a pending claim waits for approval before it is dropped.
    pub pending_ttl_secs: i64,
    /// Statements per node per minute that would add something to the store: accepted
    /// reports and chain breaks not recorded before. Duplicates and repeats of a recorded
    /// break add nothing and are not counted, so a peer re-sending a node's captured
    /// envelopes cannot use up the node's quota.
    pub reports_per_minute: u32,
}

impl Default for Quotas {
    /// 20 token-less enrolments a minute per address, 1000 pending nodes, pending claims
    /// kept 24 hours, 120 reports a minute per node (a backlog of 2000 spooled reports is
    /// delivered in under 17 minutes; a daemon scans every 5 minutes by default).
    fn default() -> Quotas {
        Quotas {
            enrolls_per_minute: 20,
            max_pending: 1000,
            pending_ttl_secs: 24 * 60 * 60,
            reports_per_minute: 120,
        }
    }
}

/// At most this many keys are tracked by one [`RateLimiter`]; past it, keys whose window
/// is over are forgotten, and if that is not enough a new key is refused (memory stays
/// bounded whatever the number of addresses).
const MAX_TRACKED: usize = 65_536;

/// Fixed one-minute windows per key. The clock is given, so tests need no sleeps.
#[derive(Debug)]
pub struct RateLimiter<K: Eq + Hash>(Mutex<HashMap<K, (i64, u32)>>);

impl<K: Eq + Hash> Default for RateLimiter<K> {
    fn default() -> Self {
        RateLimiter(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// Whether `key` could do one more thing in the minute of `now` with at most
    /// `per_minute`, without counting it.
    pub fn peek(&self, key: &K, now: i64, per_minute: u32) -> bool {
        let window = now.div_euclid(60);
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(key) {
            Some((w, n)) if *w == window => *n < per_minute,
            Some(_) => per_minute > 0,
            None => per_minute > 0 && map.len() < MAX_TRACKED,
        }
    }

    /// Whether `key` may do one more thing in the minute of `now` (Unix seconds) with at
    /// most `per_minute`; counts it when so.
    pub fn allow(&self, key: &K, now: i64, per_minute: u32) -> bool {
        let window = now.div_euclid(60);
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(key) && map.len() >= MAX_TRACKED {
            map.retain(|_, (w, _)| *w == window);
            if map.len() >= MAX_TRACKED {
                return false;
            }
        }
        let entry = map.entry(key.clone()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= per_minute {
            return false;
        }
        entry.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_quota_per_minute() {
        let limiter = RateLimiter::default();
        for _ in 0..3 {
            assert!(limiter.allow(&"a", 120, 3));
        }
        assert!(
            !limiter.allow(&"a", 179, 3),
            "the fourth in the same minute"
        );
        assert!(limiter.allow(&"b", 179, 3), "another key has its own quota");
        assert!(limiter.allow(&"a", 180, 3), "the next minute starts over");
        assert!(limiter.peek(&"a", 180, 3) && limiter.peek(&"a", 180, 3));
        assert!(limiter.allow(&"a", 180, 3) && limiter.allow(&"a", 180, 3));
        assert!(!limiter.peek(&"a", 180, 3), "peeking does not count");
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = RateLimiter::default();
        for i in 0..MAX_TRACKED {
            assert!(limiter.allow(&i, 0, 1));
        }
        assert!(
            !limiter.allow(&usize::MAX, 0, 1),
            "full of this minute's keys"
        );
        assert!(
            limiter.allow(&usize::MAX, 60, 1),
            "old windows are forgotten"
        );
        assert!(limiter.0.lock().unwrap().len() <= MAX_TRACKED);
    }
}
