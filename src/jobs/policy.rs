//! When a failed job restarts, and when it is given up.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// When a failed job restarts, and when it is given up (`failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// This many failures within `window` mark the job `failed`.
    pub max_failures: usize,
    pub window: Duration,
    /// The first restart delay, doubled with each further failure up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl FailurePolicy {
    /// The restart delay after `failures` recent failures.
    pub fn backoff(&self, failures: usize) -> Duration {
        let exponent = failures.saturating_sub(1).min(16) as u32;
        (self.backoff * 2u32.pow(exponent)).min(self.backoff_max)
    }

    /// Records a failure at `now`, forgetting those older than the window;
    /// true when the job has failed too often and must be marked `failed`.
    pub fn record_failure(&self, history: &mut VecDeque<Instant>, now: Instant) -> bool {
        history.push_back(now);
        while history
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            history.pop_front();
        }
        history.len() >= self.max_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's defaults (see `Config`).
    const POLICY: FailurePolicy = FailurePolicy {
        max_failures: 5,
        window: Duration::from_secs(600),
        backoff: Duration::from_millis(500),
        backoff_max: Duration::from_secs(60),
    };

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(POLICY.backoff(1), Duration::from_millis(500));
        assert_eq!(POLICY.backoff(2), Duration::from_secs(1));
        assert_eq!(POLICY.backoff(4), Duration::from_secs(4));
        assert_eq!(POLICY.backoff(100), Duration::from_secs(60));
    }

    #[test]
    fn five_failures_within_ten_minutes_give_up() {
        let start = Instant::now();
        let mut history = VecDeque::new();
        for i in 0..4 {
            assert!(!POLICY.record_failure(&mut history, start + Duration::from_secs(i * 60)));
        }
        assert!(POLICY.record_failure(&mut history, start + Duration::from_secs(300)));

        // Spread over more than the window, they never add up to five.
        let mut history = VecDeque::new();
        for i in 0..20 {
            assert!(!POLICY.record_failure(&mut history, start + Duration::from_secs(i * 200)));
        }
    }

    #[test]
    fn the_defaults_are_the_policy_above() {
        let settings = super::super::Settings::from_config(&crate::config::Config::from_env());
        assert_eq!(settings.failures, POLICY);
    }
}
