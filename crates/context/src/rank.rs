//! One scale for all evidence: a tier, then a score within it. The budget drops from the bottom.

use std::cmp::Ordering;

/// What a piece of evidence is, from least to most telling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Nothing changed around the alert: background the analyzer may use.
    Background,
    /// Changed around the alert, but modestly (a robust score from [`CHANGED`]).
    Changed,
    /// Changed strongly around the alert (a robust score from [`ANOMALOUS`]), a log template new since
    /// the incident began, a usage at [`SATURATED`] of its limit, a series born or gone near the
    /// alert's start.
    Anomalous,
    /// Other alerts firing on the same entities; targets that are down.
    Correlated,
    /// The alert's own text: its rule, its annotations.
    Alert,
    /// The rule's own expression, which is the anomaly.
    Rule,
}

/// A robust score (robust standard deviations from the baseline) from which a series changed.
pub const CHANGED: f64 = 3.0;
/// A robust score from which a series is anomalous.
pub const ANOMALOUS: f64 = 10.0;
/// What one log template new since the incident began weighs, in robust standard deviations.
pub const NEW_TEMPLATE: f64 = 50.0;
/// The share of its limit from which a usage is saturated.
pub const SATURATED: f64 = 0.9;
/// The share of its limit from which a usage counts as changed.
pub const NEAR_LIMIT: f64 = 0.75;

impl Tier {
    /// The tier of a series whose most anomalous member has robust score `score`.
    pub fn of_score(score: f64) -> Self {
        match score {
            s if s >= ANOMALOUS => Self::Anomalous,
            s if s >= CHANGED => Self::Changed,
            _ => Self::Background,
        }
    }

    /// The tier of a usage at `share` of its limit.
    pub fn of_share(share: f64) -> Self {
        match share {
            s if s >= SATURATED => Self::Anomalous,
            s if s >= NEAR_LIMIT => Self::Changed,
            _ => Self::Background,
        }
    }
}

/// Where a piece of evidence ranks: by tier, then by score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    pub tier: Tier,
    pub score: f64,
}

impl Rank {
    pub fn new(tier: Tier, score: f64) -> Self {
        Self { tier, score }
    }

    /// Highest first.
    pub fn descending(a: &Self, b: &Self) -> Ordering {
        b.tier
            .cmp(&a.tier)
            .then_with(|| b.score.total_cmp(&a.score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tier_decides_before_the_score() {
        let mut ranks = [
            Rank::new(Tier::Background, 1e9),
            Rank::new(Tier::Anomalous, 12.0),
            Rank::new(Tier::Rule, 0.0),
            Rank::new(Tier::Anomalous, 40.0),
        ];
        ranks.sort_by(Rank::descending);
        let order: Vec<(Tier, f64)> = ranks.iter().map(|r| (r.tier, r.score)).collect();
        assert_eq!(
            order,
            [
                (Tier::Rule, 0.0),
                (Tier::Anomalous, 40.0),
                (Tier::Anomalous, 12.0),
                (Tier::Background, 1e9)
            ]
        );
        assert_eq!(Tier::of_score(2.0), Tier::Background);
        assert_eq!(Tier::of_score(5.0), Tier::Changed);
        assert_eq!(Tier::of_score(50.0), Tier::Anomalous);
        assert_eq!(Tier::of_share(0.97), Tier::Anomalous);
    }
}
