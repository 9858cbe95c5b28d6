//! The buttons of aiops' Slack message: the notify crate draws them, `POST /slack/interactions`
//! acts on them; the `action_id` each one carries names it.

use crate::job::Verdict;

/// What a button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackAction {
    /// An Alertmanager silence of the group, for this many hours.
    Silence { hours: u8 },
    /// The on-call's verdict on the analysis.
    Feedback(Verdict),
    /// A new analysis of the same group.
    Reanalyze,
}

impl SlackAction {
    /// Every button, in the message's order.
    pub const ALL: [Self; 5] = [
        Self::Silence { hours: 1 },
        Self::Silence { hours: 4 },
        Self::Feedback(Verdict::Right),
        Self::Feedback(Verdict::Wrong),
        Self::Reanalyze,
    ];

    /// The button's `action_id` (also the metrics' `action` label).
    pub fn action_id(self) -> &'static str {
        match self {
            Self::Silence { hours: 1 } => "silence_1h",
            Self::Silence { .. } => "silence_4h",
            Self::Feedback(Verdict::Right) => "feedback_right",
            Self::Feedback(Verdict::Wrong) => "feedback_wrong",
            Self::Reanalyze => "reanalyze",
        }
    }

    /// The button's text.
    pub fn label(self) -> &'static str {
        match self {
            Self::Silence { hours: 1 } => "🔕 Silence 1h",
            Self::Silence { .. } => "🔕 Silence 4h",
            Self::Feedback(Verdict::Right) => "👍 Right",
            Self::Feedback(Verdict::Wrong) => "👎 Wrong",
            Self::Reanalyze => "🔁 Re-analyze",
        }
    }

    /// The action an `action_id` names, if it is one of aiops'.
    pub fn parse(action_id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.action_id() == action_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_reads_back_from_its_id_and_only_those() {
        for action in SlackAction::ALL {
            assert_eq!(SlackAction::parse(action.action_id()), Some(action));
        }
        assert_eq!(SlackAction::parse("silence_2h"), None);
        assert_eq!(
            SlackAction::parse("silence_4h"),
            Some(SlackAction::Silence { hours: 4 })
        );
    }
}
