//! Peers and common factors: the series of the rule's own expression that alert, against their
//! siblings that do not. One disk filling while its twin has room points at the host; all of them
//! failing points at what they share. Labels every alerting series shares and the others mostly do
//! not (a rack, a zone, a node, a version) are the common factors.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aiops_model::Fact;

use crate::series::{Series, Threshold, distinguishing_labels, median, num};

/// Peers listed by name, at most.
const SHOWN: usize = 3;
/// Common factors reported, at most.
const FACTORS: usize = 3;

/// Whether `series` is one the alert with `labels` is about: every label both carry is equal, and
/// they share one at least.
fn about(series: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    let mut shared = 0;
    for (k, v) in series.iter().filter(|(k, _)| *k != "__name__") {
        match labels.get(k) {
            Some(a) if a == v => shared += 1,
            Some(_) => return false,
            None => {}
        }
    }
    shared > 0
}

/// The value closest to `at`.
fn value_at(series: &Series, at: f64) -> Option<f64> {
    series
        .points
        .iter()
        .min_by(|a, b| (a.0 - at).abs().total_cmp(&(b.0 - at).abs()))
        .map(|p| p.1)
}

/// The contrast, as lines: how many series alert, what the others looked like when the alert
/// started (and whether they crossed the threshold), and the labels the alerting ones share and the
/// others mostly do not. `None` when the expression has a single series or no alert matches one.
pub fn contrast(
    series: &[Series],
    alerts: &[BTreeMap<String, String>],
    threshold: Option<Threshold>,
    alert_at: f64,
) -> Option<(String, Vec<Fact>)> {
    let series: Vec<&Series> = series.iter().filter(|s| !s.points.is_empty()).collect();
    if series.len() < 2 {
        return None;
    }
    let (alerting, others): (Vec<&Series>, Vec<&Series>) = series
        .iter()
        .partition(|s| alerts.iter().any(|a| about(&s.labels, a)));
    if alerting.is_empty() {
        return None;
    }
    let mut facts = Vec::new();
    let metric = alerting[0]
        .labels
        .get("__name__")
        .cloned()
        .unwrap_or_else(|| "the rule's expression".to_owned());
    let mut out = format!(
        "Peers: {} of the expression's {} series are the alerts' own.",
        alerting.len(),
        series.len()
    );
    if others.is_empty() {
        out.push_str(" Every series alerts: the cause is shared, not one target's.");
    } else {
        let values: Vec<f64> = others
            .iter()
            .filter_map(|s| value_at(s, alert_at))
            .collect();
        let (lo, hi) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
                (l.min(*v), h.max(*v))
            });
        let _ = write!(
            out,
            " The {} others when the alert started: median {} (from {} to {})",
            others.len(),
            num(median(&values)),
            num(lo),
            num(hi)
        );
        let mut crossed = 0;
        if let Some(t) = threshold {
            crossed = others
                .iter()
                .filter(|s| s.points.iter().any(|p| t.holds(p.1)))
                .count();
            let _ = write!(
                out,
                "; {crossed} of them crossed {} in the window",
                t.describe()
            );
        }
        out.push('.');
        facts.push(Fact::PeerContrast {
            metric,
            alerting: count(alerting.len()),
            peers: count(others.len()),
            peers_crossed: count(crossed),
        });
        let differing = distinguishing_labels(&series);
        for s in others.iter().take(SHOWN) {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| differing.contains(k))
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            let _ = write!(
                out,
                "\n  peer {{{}}}: {} at the start",
                labels.join(", "),
                value_at(s, alert_at).map_or_else(|| "no value".into(), num)
            );
        }
        if others.len() > SHOWN {
            let _ = write!(out, "\n  ({} more peers)", others.len() - SHOWN);
        }
    }
    let factors = factors(&alerting, &others);
    if !factors.is_empty() {
        let shown: Vec<&str> = factors.iter().map(|f| f.1.as_str()).collect();
        let _ = write!(out, "\nCommon to the alerting series: {}", shown.join("; "));
    }
    facts.extend(factors.into_iter().take(1).map(|(f, _)| f));
    Some((out, facts))
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `label="value"` that every alerting series (two or more) carries, with how many of the others
/// do, when that is a smaller share: the most telling first.
fn factors(alerting: &[&Series], others: &[&Series]) -> Vec<(Fact, String)> {
    if alerting.len() < 2 || others.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<(f64, Fact, String)> = Vec::new();
    for (k, v) in alerting[0].labels.iter().filter(|(k, _)| *k != "__name__") {
        if !alerting.iter().all(|s| s.labels.get(k) == Some(v)) {
            continue;
        }
        let also = others.iter().filter(|s| s.labels.get(k) == Some(v)).count();
        let share = also as f64 / others.len() as f64;
        if share < 1.0 {
            let fact = Fact::CommonFactor {
                label: k.clone(),
                value: v.clone(),
                firing: count(alerting.len()),
                others_with: count(also),
                others: count(others.len()),
            };
            found.push((
                share,
                fact,
                format!(
                    "{k}={v:?} (all {} alerting; {also} of {} others)",
                    alerting.len(),
                    others.len()
                ),
            ));
        }
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found
        .into_iter()
        .take(FACTORS)
        .map(|(_, fact, f)| (fact, f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Comparison;

    fn series(labels: &[(&str, &str)], value: f64) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            points: (0..10).map(|i| (f64::from(i) * 60.0, value)).collect(),
        }
    }

    fn alert(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn one_disk_fills_while_its_twin_has_room() {
        let all = [
            series(&[("instance", "edge-01:9100"), ("mountpoint", "/var")], 3.0),
            series(
                &[("instance", "edge-02:9100"), ("mountpoint", "/var")],
                61.0,
            ),
            series(&[("instance", "edge-01:9100"), ("mountpoint", "/")], 62.0),
        ];
        let alerts = [alert(&[
            ("alertname", "HostOutOfDiskSpace"),
            ("instance", "edge-01:9100"),
            ("mountpoint", "/var"),
        ])];
        let threshold = Threshold {
            op: Comparison::Less,
            value: 10.0,
        };
        let (text, facts) = contrast(&all, &alerts, Some(threshold), 300.0).expect("a contrast");
        assert!(
            matches!(
                &facts[0],
                Fact::PeerContrast {
                    alerting: 1,
                    peers: 2,
                    peers_crossed: 0,
                    ..
                }
            ),
            "{facts:?}"
        );
        assert!(
            text.starts_with("Peers: 1 of the expression's 3 series"),
            "{text}"
        );
        assert!(
            text.contains("median 61.5 (from 61 to 62); 0 of them crossed < 10"),
            "{text}"
        );
        assert!(
            text.contains(r#"peer {instance="edge-02:9100", mountpoint="/var"}: 61"#),
            "{text}"
        );
        assert!(
            !text.contains("Common to"),
            "one alerting series has no common factor: {text}"
        );
    }

    #[test]
    fn targets_down_in_one_rack_share_the_rack() {
        let node = |i: &str, rack: &str, up: f64| {
            series(
                &[
                    ("instance", i),
                    ("job", "node"),
                    ("rack", rack),
                    ("datacenter", "fra1"),
                ],
                up,
            )
        };
        let all = [
            node("db-11:9100", "r11", 1.0),
            node("db-21:9100", "r12", 0.0),
            node("db-22:9100", "r12", 0.0),
            node("db-23:9100", "r12", 0.0),
            node("db-24:9100", "r12", 1.0),
            node("db-31:9100", "r13", 1.0),
        ];
        let alerts: Vec<_> = ["db-21:9100", "db-22:9100", "db-23:9100"]
            .iter()
            .map(|i| alert(&[("instance", i), ("job", "node"), ("rack", "r12")]))
            .collect();
        let (text, facts) = contrast(&all, &alerts, None, 300.0).expect("a contrast");
        assert!(
            text.contains(
                r#"Common to the alerting series: rack="r12" (all 3 alerting; 1 of 3 others)"#
            ),
            "{text}"
        );
        assert!(
            !text.contains("datacenter"),
            "shared by all is no factor: {text}"
        );
        assert!(!text.contains(r#"job="#), "{text}");
        let factor = Fact::CommonFactor {
            label: "rack".into(),
            value: "r12".into(),
            firing: 3,
            others_with: 1,
            others: 3,
        };
        assert!(facts.contains(&factor), "{facts:?}");
    }
}
