//! A flapping group: one that fires again soon after it resolved. Its incident goes on (the same
//! Slack message and thread, "flapping ×N"), and its earlier analysis is reused while the evidence
//! has not changed.

use std::time::Duration;

use aiops_model::alertmanager::AlertStatus;
use aiops_model::{GroupEvent, JobId};

/// Where a job stands in its group's incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incident {
    /// How many times the group fired in this incident: each firing that follows a resolution by
    /// at most the window counts again. 1 for a group that does not flap.
    pub firings: u32,
    /// The latest earlier firing job of the incident with an analysis, whose analysis may be reused.
    pub previous: Option<JobId>,
}

impl Incident {
    pub const SINGLE: Self = Self {
        firings: 1,
        previous: None,
    };
}

/// The incident of the first job of `history` (the group's webhook jobs, newest first, the job
/// itself first). A group's firing jobs between two resolutions are one firing (the group's alerts
/// changed); a firing that starts more than `window` after the resolution before it ends the walk.
pub fn incident(history: &[GroupEvent], window: Duration) -> Incident {
    let mut firings = 0u32;
    let mut previous = None;
    // The earliest firing of the firing being walked, and the latest resolution before it.
    let mut started: Option<time::OffsetDateTime> = None;
    let mut resolved: Option<time::OffsetDateTime> = None;
    for (i, event) in history.iter().enumerate() {
        match event.status {
            AlertStatus::Resolved => {
                if started.is_some() && resolved.is_none() {
                    resolved = Some(event.received_at);
                }
            }
            AlertStatus::Firing => {
                match (started, resolved.take()) {
                    (None, _) => firings = 1,
                    (Some(start), Some(end)) => {
                        let gap = start - end;
                        if gap > window {
                            break;
                        }
                        firings += 1;
                    }
                    (Some(_), None) => {}
                }
                if i > 0 && event.analyzed && previous.is_none() {
                    previous = Some(event.id);
                }
                started = Some(event.received_at);
            }
        }
    }
    Incident {
        firings: firings.max(1),
        previous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn event(n: u128, status: AlertStatus, minute: i64, analyzed: bool) -> GroupEvent {
        GroupEvent {
            id: JobId(uuid::Uuid::from_u128(n)),
            status,
            received_at: OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute),
            analyzed,
        }
    }

    const WINDOW: Duration = Duration::from_secs(30 * 60);
    use AlertStatus::{Firing, Resolved};

    #[test]
    fn a_first_firing_is_one_firing_with_nothing_to_reuse() {
        let history = [event(1, Firing, 0, false)];
        assert_eq!(incident(&history, WINDOW), Incident::SINGLE);
        assert_eq!(incident(&[], WINDOW), Incident::SINGLE);
    }

    #[test]
    fn firing_again_within_the_window_counts_and_points_at_the_last_analysis() {
        // Newest first: fired at 0, resolved at 10, fired again at 20 (the job), all analyzed.
        let history = [
            event(3, Firing, 20, false),
            event(2, Resolved, 10, false),
            event(1, Firing, 0, true),
        ];
        let got = incident(&history, WINDOW);
        assert_eq!(got.firings, 2);
        assert_eq!(got.previous, Some(JobId(uuid::Uuid::from_u128(1))));
    }

    #[test]
    fn the_resolution_of_a_flapping_incident_counts_its_firings() {
        let history = [
            event(5, Resolved, 40, false),
            event(4, Firing, 30, true),
            event(3, Resolved, 20, false),
            event(2, Firing, 5, true),
            event(1, Firing, 0, true),
        ];
        assert_eq!(incident(&history, WINDOW).firings, 2);
    }

    #[test]
    fn firing_again_after_the_window_starts_a_new_incident() {
        let history = [
            event(3, Firing, 100, false),
            event(2, Resolved, 10, false),
            event(1, Firing, 0, true),
        ];
        assert_eq!(incident(&history, WINDOW).firings, 1);
        // An incident that flapped long ago does not make today's flap ×3.
        let history = [
            event(6, Firing, 300, false),
            event(5, Resolved, 290, false),
            event(4, Firing, 280, true),
            event(3, Resolved, 100, false),
            event(2, Firing, 90, true),
            event(1, Resolved, 80, false),
        ];
        let got = incident(&history, WINDOW);
        assert_eq!(got.firings, 2);
        assert_eq!(got.previous, Some(JobId(uuid::Uuid::from_u128(4))));
    }

    #[test]
    fn changes_within_one_firing_are_not_flaps() {
        // A second alert joined the group at 5: one firing, the update may reuse nothing new.
        let history = [event(2, Firing, 5, false), event(1, Firing, 0, true)];
        let got = incident(&history, WINDOW);
        assert_eq!(got.firings, 1);
        assert_eq!(got.previous, Some(JobId(uuid::Uuid::from_u128(1))));
    }
}
