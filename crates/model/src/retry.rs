//! Retrying a remote call no sooner than its `Retry-After` asks, for every stage that calls out (the
//! LLM, Slack, webhooks).

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `Retry-After` longer than this is capped; the job's own retry takes over after the last attempt.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The wait the last failed attempt's `Retry-After` asked for, shared between the attempt that reads
/// it and the backoff that honours it.
#[derive(Debug, Clone, Default)]
pub struct RetryAfter(Arc<Mutex<Option<Duration>>>);

impl RetryAfter {
    /// The wait a `Retry-After` header value in seconds asks for, at most [`MAX_RETRY_AFTER`]. An
    /// HTTP date or anything else unreadable asks for nothing.
    pub fn parse(value: Option<&str>) -> Option<Duration> {
        let secs: u64 = value?.trim().parse().ok()?;
        Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
    }

    /// Records what the failed attempt asked for (`None`: nothing).
    pub fn set(&self, asked: Option<Duration>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = asked;
    }

    /// `backoff`, with each delay raised to what the attempt before it asked for.
    pub fn honoured_by(
        &self,
        backoff: impl Iterator<Item = Duration>,
    ) -> impl Iterator<Item = Duration> {
        let asked = self.0.clone();
        backoff.map(move |d| {
            let asked = asked.lock().unwrap_or_else(|e| e.into_inner()).take();
            asked.map_or(d, |a| a.max(d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_read_and_capped_and_anything_else_asks_for_nothing() {
        assert_eq!(RetryAfter::parse(Some(" 7 ")), Some(Duration::from_secs(7)));
        assert_eq!(RetryAfter::parse(Some("3600")), Some(MAX_RETRY_AFTER));
        assert_eq!(
            RetryAfter::parse(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(RetryAfter::parse(None), None);
    }

    #[test]
    fn the_asked_wait_raises_only_the_next_delay() {
        let retry_after = RetryAfter::default();
        let mut delays = retry_after.honoured_by(std::iter::repeat(Duration::from_millis(10)));
        retry_after.set(Some(Duration::from_secs(2)));
        assert_eq!(delays.next(), Some(Duration::from_secs(2)));
        assert_eq!(delays.next(), Some(Duration::from_millis(10)));
    }
}
