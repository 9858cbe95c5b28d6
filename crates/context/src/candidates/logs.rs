//! Log streams by value: the Loki labels whose values include an entity of the alert group. A log
//! pipeline rarely labels a stream the way the alert is labelled (`instance="app-07:9100"` against
//! `host="app-07"`, `application="report-web"` against `service_name="report-web"`), but the values
//! are the same.

use std::collections::{BTreeMap, BTreeSet};

use crate::entities::Entities;
use crate::escape::{is_label_name, matcher};

/// Labels preferred when several hold the same values, most specific first.
const PREFERRED: &[&str] = &[
    "pod",
    "k8s_pod_name",
    "app",
    "service_name",
    "application",
    "container",
    "service",
    "unit",
    "host",
    "hostname",
    "node_name",
    "nodename",
    "instance",
];

/// The stream selectors for a group's logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSelectors {
    /// The workload's streams (its pods, else its app or service), in its namespace when Loki
    /// labels namespaces.
    pub workload: Option<String>,
    /// The host's streams: its kernel and system lines.
    pub host: Option<String>,
}

/// The selectors for `entities`, given each Loki label's values.
pub fn selectors(entities: &Entities, values: &BTreeMap<String, BTreeSet<String>>) -> LogSelectors {
    let namespace = best(&entities.namespaces, values, &[]);
    let workload = best(&entities.pods, values, &[])
        .or_else(|| best(&entities.workloads, values, &["namespace"]));
    let workload = workload.map(|w| {
        let mut matchers: Vec<String> = namespace
            .iter()
            .filter(|n| !w.starts_with(&format!("{}=", label_of(n))))
            .cloned()
            .collect();
        matchers.push(w);
        format!("{{{}}}", matchers.join(", "))
    });
    let host = best(&entities.hosts, values, &["namespace"]).map(|h| format!("{{{h}}}"));
    LogSelectors { workload, host }
}

fn label_of(matcher: &str) -> &str {
    matcher.split(['=', '!', '~']).next().unwrap_or(matcher)
}

/// The matcher of the label whose values hold the most of `wanted` (ties: the preferred label,
/// then by name); `None` when no label holds any.
fn best(
    wanted: &BTreeSet<String>,
    values: &BTreeMap<String, BTreeSet<String>>,
    skip: &[&str],
) -> Option<String> {
    let rank = |label: &str| {
        PREFERRED
            .iter()
            .position(|p| *p == label)
            .unwrap_or(PREFERRED.len())
    };
    values
        .iter()
        .filter(|(label, _)| is_label_name(label) && !skip.contains(&label.as_str()))
        .map(|(label, held)| {
            let found: Vec<&str> = wanted
                .iter()
                .filter(|w| held.contains(*w))
                .map(String::as_str)
                .collect();
            (label, found)
        })
        .filter(|(_, found)| !found.is_empty())
        .max_by(|(a, fa), (b, fb)| {
            fa.len()
                .cmp(&fb.len())
                .then(rank(b).cmp(&rank(a)))
                .then(b.cmp(a))
        })
        .and_then(|(label, found)| matcher(label, &found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
            .collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_host_is_found_under_whatever_label_holds_its_name() {
        let entities = Entities {
            hosts: set(&["app-07"]),
            ..Entities::default()
        };
        let loki = values(&[
            ("job", &["varlogs"]),
            ("host", &["app-06", "app-07"]),
            ("filename", &["/var/log/syslog"]),
        ]);
        let s = selectors(&entities, &loki);
        assert_eq!(s.host.as_deref(), Some(r#"{host="app-07"}"#));
        assert_eq!(s.workload, None);
    }

    #[test]
    fn a_workload_takes_its_pods_first_and_its_namespace() {
        let entities = Entities {
            pods: set(&["cart-1"]),
            namespaces: set(&["shop"]),
            workloads: set(&["cart"]),
            ..Entities::default()
        };
        let loki = values(&[
            ("namespace", &["shop", "db"]),
            ("pod", &["cart-1", "cart-2"]),
            ("app", &["cart"]),
        ]);
        assert_eq!(
            selectors(&entities, &loki).workload.as_deref(),
            Some(r#"{namespace="shop", pod="cart-1"}"#)
        );
        let loki = values(&[
            ("namespace", &["shop"]),
            ("service_name", &["cart"]),
            ("container", &["cart"]),
        ]);
        assert_eq!(
            selectors(&entities, &loki).workload.as_deref(),
            Some(r#"{namespace="shop", service_name="cart"}"#),
            "the preferred of two labels holding the same value"
        );
        // A namespace alone selects too much: no workload selector.
        let loki = values(&[("namespace", &["shop"])]);
        assert_eq!(selectors(&entities, &loki).workload, None);
    }
}
