//! Retry delays: the seed's table-then-polynomial formula with jitter, and `Retry-After`.

use std::time::Duration;

/// How long a failed step waits before its next attempt.
///
/// In a configuration file it is the `backoff` key, each field optional: `table_seconds`,
/// `multiplier`, `max_seconds`, `jitter_enabled`, `jitter`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffConfig {
    /// Delays for the first retries, in seconds (the seed's `[1, 2, 4, 8, 16, 32]`).
    #[serde(rename = "table_seconds")]
    pub table: Vec<f64>,
    /// Exponent applied to the attempt number past the table (the seed's 2.0).
    pub multiplier: f64,
    /// Upper bound of any delay, including a server's `Retry-After` (the seed's 300 s).
    #[serde(
        rename = "max_seconds",
        deserialize_with = "crate::seconds::deserialize"
    )]
    pub max: Duration,
    /// Whether to spread delays by up to `jitter` of their length.
    pub jitter_enabled: bool,
    /// Largest jitter as a fraction of the delay (the seed's 0.1).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            table: vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
            multiplier: 2.0,
            max: Duration::from_secs(300),
            jitter_enabled: true,
            jitter: 0.1,
        }
    }
}

impl BackoffConfig {
    /// A config with fixed delays and no jitter; handy for tests.
    pub fn fixed(delay: Duration) -> Self {
        Self {
            table: vec![delay.as_secs_f64()],
            multiplier: 0.0,
            // The cap still bounds a server's `Retry-After`, so it keeps its default.
            max: BackoffConfig::default().max.max(delay),
            jitter_enabled: false,
            jitter: 0.0,
        }
    }

    /// The delay before the retry that follows attempt number `attempts` (1-based), honouring a
    /// server's `retry_after` when given. Both are capped at `max`.
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(requested) = retry_after {
            return requested.min(self.max);
        }
        let n = attempts.max(1) as usize;
        let base = match self.table.get(n - 1) {
            Some(seconds) => *seconds,
            None if self.multiplier > 0.0 => (n as f64).powf(self.multiplier).floor(),
            None => self.table.last().copied().unwrap_or(0.0),
        };
        let max = self.max.as_secs_f64();
        let mut seconds = base.clamp(0.0, max);
        if self.jitter_enabled && self.jitter > 0.0 && seconds > 0.0 {
            let spread = seconds * self.jitter;
            seconds += (fastrand::f64() * 2.0 - 1.0) * spread;
            // The seed floors a jittered delay at half the first table entry.
            let floor = self.table.first().copied().unwrap_or(0.0) * 0.5;
            seconds = seconds.max(floor).min(max);
        }
        Duration::from_secs_f64(seconds.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter() -> BackoffConfig {
        BackoffConfig {
            jitter_enabled: false,
            ..BackoffConfig::default()
        }
    }

    #[test]
    fn follows_the_seed_table_then_squares_then_caps() {
        let b = no_jitter();
        let secs: Vec<u64> = (1..=8).map(|n| b.delay(n, None).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 49, 64]);
        assert_eq!(b.delay(40, None), Duration::from_secs(300));
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let b = no_jitter();
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(9000))),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let b = BackoffConfig::default();
        for _ in 0..1000 {
            let d = b.delay(5, None).as_secs_f64();
            assert!((14.4..=17.6).contains(&d), "{d}");
        }
    }
}
