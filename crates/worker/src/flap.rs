//! A flapping group: one that fires again soon after it resolved. Its incident goes on (the same
//! Slack message and thread, "flapping ×N"), and its earlier analysis is reused while the evidence
//! has not changed.
//!
//! The store answers the group's latest resolutions before the job, each with the group's first
//! firing after it (`Store::resolutions`, two index lookups a resolution); the walk below counts
//! the firings of the job's incident from them. A group that never resolved costs one lookup that
//! finds nothing, however many jobs it has.

use std::time::Duration;

use aiops_model::Resolution;

/// How many times the group fired in the incident of the job that asked: 1, plus one for each
/// firing that started within `window` of the resolution before it, walking back from the job's
/// own firing (or, for a resolution, the firing it ends). `resolutions` are newest first; the walk
/// stops at the first firing that came later than the window, or at a resolution that no firing
/// followed before the next one.
pub fn firings(resolutions: &[Resolution], window: Duration) -> u32 {
    let mut firings = 1;
    // The resolution after the one being looked at: its firing must come before it.
    let mut later: Option<time::OffsetDateTime> = None;
    for r in resolutions {
        let Some(refired) = r.refired_at else {
            break;
        };
        if later.is_some_and(|l| refired > l) || refired - r.resolved_at > window {
            break;
        }
        firings += 1;
        later = Some(r.resolved_at);
    }
    firings
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn at(minute: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute)
    }

    fn resolution(resolved: i64, refired: Option<i64>) -> Resolution {
        Resolution {
            resolved_at: at(resolved),
            refired_at: refired.map(at),
        }
    }

    const WINDOW: Duration = Duration::from_secs(30 * 60);

    #[test]
    fn a_group_that_never_resolved_fires_once() {
        assert_eq!(firings(&[], WINDOW), 1);
    }

    #[test]
    fn firing_again_within_the_window_counts() {
        // Fired at 0, resolved at 10, fired again at 20 (the job).
        assert_eq!(firings(&[resolution(10, Some(20))], WINDOW), 2);
        // Resolved at 10, 40 and 60; fired again at 30, 50 and 70: ×4.
        let flapping = [
            resolution(60, Some(70)),
            resolution(40, Some(50)),
            resolution(10, Some(30)),
        ];
        assert_eq!(firings(&flapping, WINDOW), 4);
    }

    #[test]
    fn firing_again_after_the_window_starts_a_new_incident() {
        assert_eq!(firings(&[resolution(10, Some(100))], WINDOW), 1);
        // An incident that flapped long ago does not make today's flap ×3.
        let history = [
            resolution(290, Some(300)),
            resolution(100, Some(280)),
            resolution(80, Some(90)),
        ];
        assert_eq!(firings(&history, WINDOW), 2);
    }

    #[test]
    fn a_resolution_no_firing_followed_ends_the_walk() {
        // Resolved twice in a row (at 10 and 12), then fired at 20: the earlier resolution's first
        // firing after it is the same 20, after the later resolution; it is not another flap.
        let history = [resolution(12, Some(20)), resolution(10, Some(20))];
        assert_eq!(firings(&history, WINDOW), 2);
        // A resolution job whose group never fired after the previous resolution.
        assert_eq!(firings(&[resolution(10, None)], WINDOW), 1);
    }
}
