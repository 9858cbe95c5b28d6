//! Metric discovery: the metric names whose series carry the group's entities (a host under any
//! exporter's port, a pod), whatever a template would have thought to ask, each queried once: a
//! counter as a rate, a gauge as it is. Their scores decide which reach the analyzer.

use crate::entities::Entities;
use crate::escape::{is_metric_name, quote};

/// Where an entity's series are: a label and the regex its values match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub label: &'static str,
    pub pattern: String,
    /// What the scope is, for titles: `app-03`, `shop/cart-7d9`.
    pub what: String,
}

impl Scope {
    /// The scope as a PromQL matcher.
    pub fn matcher(&self) -> String {
        format!("{}=~{}", self.label, quote(&self.pattern))
    }
}

/// The scopes of `entities`: its hosts as `instance` (any port) and as `node`, its pods as `pod`.
pub fn scopes(entities: &Entities) -> Vec<Scope> {
    let alternation = |values: &std::collections::BTreeSet<String>| {
        values
            .iter()
            .filter_map(|v| literal(v))
            .collect::<Vec<_>>()
            .join("|")
    };
    let names = |values: &std::collections::BTreeSet<String>| {
        values.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    let mut scopes = Vec::new();
    if !entities.hosts.is_empty() {
        let hosts = alternation(&entities.hosts);
        scopes.push(Scope {
            label: "instance",
            pattern: format!("({hosts})(:[0-9]+)?"),
            what: names(&entities.hosts),
        });
        scopes.push(Scope {
            label: "node",
            pattern: format!("({hosts})"),
            what: names(&entities.hosts),
        });
    }
    if !entities.pods.is_empty() {
        scopes.push(Scope {
            label: "pod",
            pattern: format!("({})", alternation(&entities.pods)),
            what: names(&entities.pods),
        });
    }
    scopes
}

/// `value` as a regex that matches it literally, with no backslash: a character class for each
/// metacharacter (`app.example` → `app[.]example`), so the pattern reads the same inside a PromQL
/// string literal and a `match[]` selector. `None` for a value no host or pod name can have.
fn literal(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' | ']' | '^' | '"' => return None,
            c if c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '/' | '@' | '%' | '=') => {
                out.push(c)
            }
            c => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
        }
    }
    Some(out)
}

/// Names that describe the scrape or an alert, or parts of a histogram, rather than the entity.
fn is_noise(name: &str) -> bool {
    const PREFIXES: &[&str] = &["scrape_", "ALERTS", "promhttp_"];
    const SUFFIXES: &[&str] = &["_bucket", "_sum", "_count", "_created", "_info"];
    name == "up"
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The query for `metric` in `scope`, and its title; `None` for noise. `counter` says what
/// `/api/v1/metadata` declared; without it, the name decides (`_total`).
pub fn query(metric: &str, scope: &Scope, counter: Option<bool>) -> Option<(String, String)> {
    if !is_metric_name(metric) || is_noise(metric) {
        return None;
    }
    let selector = format!("{metric}{{{}}}", scope.matcher());
    Some(match counter.unwrap_or(metric.ends_with("_total")) {
        true => (
            format!("rate({selector}[5m])"),
            format!("Per-second rate of {metric} on {}", scope.what),
        ),
        false => (selector, format!("{metric} on {}", scope.what)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities(hosts: &[&str], pods: &[&str]) -> Entities {
        Entities {
            hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
            pods: pods.iter().map(|s| (*s).to_owned()).collect(),
            ..Entities::default()
        }
    }

    #[test]
    fn a_host_is_every_exporter_on_it_and_a_pod_its_containers() {
        let s = scopes(&entities(&["app-03", "10.0.0.7"], &["cart-1"]));
        assert_eq!(
            s[0].matcher(),
            r#"instance=~"(10[.]0[.]0[.]7|app-03)(:[0-9]+)?""#
        );
        assert_eq!(s[1].matcher(), r#"node=~"(10[.]0[.]0[.]7|app-03)""#);
        assert_eq!(s[2].matcher(), r#"pod=~"(cart-1)""#);
        let re = regex::Regex::new(&format!("^(?:{})$", s[0].pattern)).expect("regex");
        assert!(
            re.is_match("app-03:9256") && re.is_match("app-03") && !re.is_match("app-030:9100")
        );
    }

    #[test]
    fn counters_become_rates_and_noise_is_left_out() {
        let scope = &scopes(&entities(&["app-03"], &[]))[0];
        let (q, title) =
            query("namedprocess_namegroup_cpu_seconds_total", scope, None).expect("a query");
        assert_eq!(
            q,
            r#"rate(namedprocess_namegroup_cpu_seconds_total{instance=~"(app-03)(:[0-9]+)?"}[5m])"#
        );
        assert!(title.contains("app-03"));
        let (q, _) =
            query("node_vmstat_oom_kill", scope, Some(true)).expect("a counter by metadata");
        assert!(q.starts_with("rate("));
        let (q, _) = query("node_load1", scope, Some(false)).expect("a gauge");
        assert!(!q.starts_with("rate("));
        for noise in [
            "up",
            "scrape_duration_seconds",
            "http_request_duration_seconds_bucket",
            "node_uname_info",
        ] {
            assert_eq!(query(noise, scope, None), None, "{noise}");
        }
    }
}
