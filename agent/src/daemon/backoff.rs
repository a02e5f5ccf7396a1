//! How long to wait before retrying a delivery that failed for a reason that may pass
//! (connection refused, timeout, 5xx). A pure function of the attempt number and a random
//! number the caller draws, so every property is tested without a clock or an RNG.
//!
//! Capped exponential backoff with full jitter (the "Full Jitter" of the AWS architecture
//! blog's "Exponential Backoff And Jitter"): the envelope doubles from `base` up to `cap`,
//! and the wait is uniformly spread over `[0, envelope)`. Full jitter is what spreads a
//! fleet of agents out after a collector outage, so they do not all come back at once.

use std::time::Duration;

/// The largest wait for retry number `attempt` (0 for the first retry): `base * 2^attempt`,
/// never more than `cap`. Non-decreasing in `attempt`; saturates instead of overflowing.
pub fn envelope(attempt: u32, base: Duration, cap: Duration) -> Duration {
    // 2^31 still fits the u32 that `saturating_mul` takes; past it the cap rules anyway.
    let factor = 1u32 << attempt.min(31);
    base.saturating_mul(factor).min(cap)
}

/// The wait before retry number `attempt`: `envelope(attempt, base, cap) * random`, where
/// `random` is drawn uniformly from `[0, 1)`. A `random` outside that range (or NaN) is
/// clamped into it, so the result is always within `[0, envelope]`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, random: f64) -> Duration {
    let random = if random.is_nan() {
        0.0
    } else {
        random.clamp(0.0, 1.0)
    };
    let ceiling = envelope(attempt, base, cap);
    // f64 -> u64 `as` saturates (and NaN is excluded above), so this cannot overflow; the
    // precision lost above 2^53 ns (104 days) does not matter for a retry delay.
    let nanos = (ceiling.as_nanos() as f64 * random) as u64;
    Duration::from_nanos(nanos).min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(300);

    #[test]
    fn envelope_doubles_from_base() {
        assert_eq!(envelope(0, BASE, CAP), Duration::from_secs(1));
        assert_eq!(envelope(1, BASE, CAP), Duration::from_secs(2));
        assert_eq!(envelope(2, BASE, CAP), Duration::from_secs(4));
        assert_eq!(envelope(8, BASE, CAP), Duration::from_secs(256));
    }

    #[test]
    fn envelope_is_capped() {
        assert_eq!(envelope(9, BASE, CAP), CAP);
        assert_eq!(envelope(40, BASE, CAP), CAP);
        assert_eq!(envelope(u32::MAX, BASE, CAP), CAP);
        // A base larger than the cap is held to the cap from the first retry.
        assert_eq!(envelope(0, Duration::from_secs(900), CAP), CAP);
    }

    #[test]
    fn envelope_never_overflows() {
        let huge = Duration::MAX;
        assert_eq!(envelope(u32::MAX, huge, huge), huge);
        assert_eq!(
            backoff(u32::MAX, huge, huge, 0.999),
            backoff(63, huge, huge, 0.999)
        );
    }

    #[test]
    fn envelope_is_monotonic() {
        let mut last = Duration::ZERO;
        for attempt in 0..100 {
            let e = envelope(attempt, Duration::from_millis(250), CAP);
            assert!(e >= last, "attempt {attempt}: {e:?} < {last:?}");
            last = e;
        }
        assert_eq!(last, CAP);
    }

    #[test]
    fn backoff_is_within_zero_and_the_envelope() {
        for attempt in 0..20 {
            let ceiling = envelope(attempt, BASE, CAP);
            for i in 0..100 {
                let r = f64::from(i) / 100.0;
                let d = backoff(attempt, BASE, CAP, r);
                assert!(d <= ceiling, "attempt {attempt} r {r}: {d:?} > {ceiling:?}");
            }
            assert_eq!(backoff(attempt, BASE, CAP, 0.0), Duration::ZERO);
        }
    }

    #[test]
    fn backoff_scales_linearly_with_random() {
        // Full jitter: the wait is the envelope times the draw.
        assert_eq!(backoff(3, BASE, CAP, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(3, BASE, CAP, 0.25), Duration::from_secs(2));
        assert_eq!(backoff(20, BASE, CAP, 0.5), Duration::from_secs(150));
        let almost_one = 1.0 - f64::EPSILON;
        let d = backoff(3, BASE, CAP, almost_one);
        assert!(d < Duration::from_secs(8) && d > Duration::from_millis(7999));
    }

    #[test]
    fn backoff_is_deterministic_given_random() {
        for attempt in 0..12 {
            assert_eq!(
                backoff(attempt, BASE, CAP, 0.3712),
                backoff(attempt, BASE, CAP, 0.3712)
            );
        }
    }

    #[test]
    fn backoff_clamps_bad_random() {
        assert_eq!(backoff(2, BASE, CAP, -1.0), Duration::ZERO);
        assert_eq!(backoff(2, BASE, CAP, f64::NAN), Duration::ZERO);
        assert_eq!(backoff(2, BASE, CAP, 7.0), Duration::from_secs(4));
        assert_eq!(backoff(2, BASE, CAP, f64::INFINITY), Duration::from_secs(4));
    }

    #[test]
    fn zero_base_means_retry_at_once() {
        assert_eq!(backoff(5, Duration::ZERO, CAP, 0.9), Duration::ZERO);
    }
}
