//! Log streams by value: the Loki labels whose values include an entity of the alert group. A log
//! pipeline rarely labels a stream the way the alert is labelled (`instance="app-07:9100"` against
//! `host="app-07"`, `application="report-web"` against `service_name="report-web"`), but the values
//! are the same.

use std::collections::{BTreeMap, BTreeSet};

use crate::entities::{Entities, workload_of};
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
    // The alert's own pods, else its workload (all its pods' streams), else the pods found through
    // the workload's owner series.
    let workload = best(&entities.pods, values, &[])
        .or_else(|| best(&entities.workloads, values, &["namespace"]))
        .or_else(|| best(&entities.owned, values, &[]));
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

/// Labels that most pipelines put on every stream, in the order a cover tries them.
const COVER: &[&str] = &[
    "namespace",
    "job",
    "service_name",
    "host",
    "hostname",
    "app",
    "container",
    "unit",
    "filename",
    "source",
];
/// Selectors in a cover, at most.
const MAX_COVER: usize = 3;

/// Selectors that together select every stream once, from the labels Loki knows: `{namespace=~".+"}`,
/// then `{namespace="", job=~".+"}` (the streams without a namespace), and so on. Loki refuses a
/// selector that matches everything, so "every stream" is spelled this way.
pub fn cover(known: &[String]) -> Vec<String> {
    let labels: Vec<&str> = COVER
        .iter()
        .copied()
        .filter(|l| known.iter().any(|k| k == l))
        .take(MAX_COVER)
        .collect();
    (0..labels.len())
        .map(|i| {
            let mut matchers: Vec<String> =
                labels[..i].iter().map(|l| format!("{l}=\"\"")).collect();
            matchers.push(format!("{}=~\".+\"", labels[i]));
            format!("{{{}}}", matchers.join(", "))
        })
        .collect()
}

/// A case-insensitive line filter for any of `terms`, each on word boundaries (a term ending in `/`,
/// `namespace/`, is followed by the object's name).
pub fn mentions(terms: &[String]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    let alternation: Vec<String> = terms.iter().map(|t| regex::escape(t)).collect();
    Some(format!(
        "|~ {}",
        crate::escape::quote(&format!("(?i)\\b({})\\b", alternation.join("|")))
    ))
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
            // A value that is wanted, else a pod of a wanted workload (`redis-0` of `redis`): an
            // exact value says more, so a label holding one wins.
            let exact: Vec<&str> = held
                .iter()
                .filter(|h| wanted.contains(*h))
                .map(String::as_str)
                .collect();
            let found = match exact.is_empty() && label.contains("pod") {
                true => held
                    .iter()
                    .filter(|h| workload_of(h).is_some_and(|w| wanted.contains(&w)))
                    .map(String::as_str)
                    .collect(),
                false => exact.clone(),
            };
            (label, exact.len(), found)
        })
        .filter(|(_, _, found)| !found.is_empty())
        .max_by(|(a, ea, fa), (b, eb, fb)| {
            ea.cmp(eb)
                .then(fa.len().cmp(&fb.len()))
                .then(rank(b).cmp(&rank(a)))
                .then(b.cmp(a))
        })
        .map(|(label, _, found)| (label, found))
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
    fn a_cover_selects_every_stream_once_and_mentions_are_whole_words() {
        let known: Vec<String> = ["app", "job", "namespace", "pod"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            cover(&known),
            [
                r#"{namespace=~".+"}"#,
                r#"{namespace="", job=~".+"}"#,
                r#"{namespace="", job="", app=~".+"}"#
            ]
        );
        let filter = mentions(&["pg-0.db".to_owned(), "r12".to_owned()]).expect("a filter");
        assert_eq!(filter, r#"|~ "(?i)\\b(pg\\-0\\.db|r12)\\b""#);
        let re = regex::Regex::new(r"(?i)\b(pg\-0\.db|r12)\b").expect("regex");
        assert!(re.is_match("link down [to tor-r12 Ethernet48]") && !re.is_match("r123"));
    }

    #[test]
    fn a_workloads_pods_are_its_streams() {
        let entities = Entities {
            workloads: set(&["redis-cart-master"]),
            ..Entities::default()
        };
        let loki = values(&[(
            "pod",
            &["redis-cart-master-0", "redis-cart-master-x", "cart-1"],
        )]);
        assert_eq!(
            selectors(&entities, &loki).workload.as_deref(),
            Some(r#"{pod="redis-cart-master-0"}"#)
        );
        // A label holding the workload's own name covers all its pods' streams: it wins.
        let entities = Entities {
            workloads: set(&["web-frontend"]),
            ..Entities::default()
        };
        let loki = values(&[
            ("pod", &["web-frontend-66b9c7d8f-q7x2n"]),
            ("app", &["web-frontend", "auth-service"]),
        ]);
        assert_eq!(
            selectors(&entities, &loki).workload.as_deref(),
            Some(r#"{app="web-frontend"}"#)
        );
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
