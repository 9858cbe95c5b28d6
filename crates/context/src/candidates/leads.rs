//! Leads from log lines: the dependencies an error names (`dial tcp redis-0.redis.svc:6379:
//! connect: connection refused`, `https://api.partner.example/v2`, `10.20.0.53:53: i/o timeout`)
//! and the pods whose lines mention the group's entities. Each is followed one hop: its own
//! error lines and its metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use regex::Regex;

use crate::entities::{Entities, host_of};
use crate::loki::LogLine;

/// Hosts named as dependencies, at most.
const MAX_HOSTS: usize = 8;
/// Pods whose lines mention the group, at most.
const MAX_PODS: usize = 8;

/// Services named in lines, at most.
const MAX_NAMES: usize = 4;
/// Names too common in lines, or whose scrape job covers everything (every container, every
/// host), to follow.
const NOT_FOLLOWED: &[&str] = &[
    "kubelet",
    "kube-state-metrics",
    "node-exporter",
    "cadvisor",
    "apiserver",
    "prometheus",
    "kubernetes",
];

/// What lines lead to, beyond the group's own entities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leads {
    /// Hosts the lines name (most named first), without port or scheme.
    pub hosts: Vec<String>,
    /// Pods whose lines mention the group.
    pub pods: BTreeSet<String>,
    /// Services the lines name by a word that Prometheus knows as a job or Loki as a workload
    /// (`org.elasticsearch.action…` names `elasticsearch`).
    pub names: Vec<String>,
}

impl Leads {
    /// The leads as entities of their own: the hosts (with their short names and StatefulSet
    /// workloads) and the pods; the named services apart (`named`), as jobs and workloads, since
    /// a job's scope is only taken where no host is known.
    pub fn entities(&self) -> Entities {
        let labels: BTreeMap<String, Vec<String>> = [
            ("instance".to_owned(), self.hosts.clone()),
            ("pod".to_owned(), self.pods.iter().cloned().collect()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        Entities::of(&labels)
    }

    /// The named services as entities: jobs and workloads.
    pub fn named(&self) -> Entities {
        let labels: BTreeMap<String, Vec<String>> = match self.names.is_empty() {
            true => BTreeMap::new(),
            false => [
                ("job".to_owned(), self.names.clone()),
                ("app".to_owned(), self.names.clone()),
            ]
            .into(),
        };
        Entities::of(&labels)
    }
}

/// Whether a service named in a line or a label value is worth following: long enough not to be a
/// common word, and not a scrape job that covers everything.
pub fn followable(name: &str) -> bool {
    name.len() >= 5 && !NOT_FOLLOWED.contains(&name)
}

/// The services `lines` name by a word in `known` (job and workload names), not the group's own:
/// the most named first.
pub fn named(lines: &[LogLine], known: &BTreeSet<String>, own: &Entities) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in lines {
        let words: BTreeSet<&str> = line
            .line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .filter(|w| w.len() >= 5)
            .collect();
        for w in words {
            if let Some(k) = known.get(w)
                && followable(w)
                && !own.workloads.contains(w)
                && !own.jobs.contains(w)
                && !own.hosts.contains(w)
            {
                *counts.entry(k.as_str()).or_default() += 1;
            }
        }
    }
    let mut names: Vec<(&str, usize)> = counts.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    names
        .into_iter()
        .take(MAX_NAMES)
        .map(|(n, _)| n.to_owned())
        .collect()
}

fn fqdn() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\b((?:[a-z0-9][a-z0-9-]*\.)+[a-z][a-z0-9-]*[a-z])\b").expect("regex")
    })
}

/// The hosts a text (an alert's annotations) names: URLs, `host:port`s and dotted names
/// (`www.example.com`).
pub fn hosts_in(text: &str) -> Vec<String> {
    let mut found: BTreeSet<String> = BTreeSet::new();
    for c in url().captures_iter(text) {
        found.extend(c.get(1).and_then(|m| host_of(m.as_str())));
    }
    for c in host_port()
        .captures_iter(text)
        .chain(fqdn().captures_iter(text))
    {
        found.extend(c.get(1).map(|m| m.as_str().to_owned()));
    }
    found
        .into_iter()
        .map(|h| h.trim_end_matches('.').to_owned())
        .filter(|h| plausible(h) && h.contains('.'))
        .collect()
}

fn url() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\b[a-z][a-z0-9+.-]*://(?:[^@/\s]*@)?([A-Za-z0-9][A-Za-z0-9.-]*)")
            .expect("regex")
    })
}

fn host_port() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?:^|[\s(\[\x22'=>@/,])([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]):([0-9]{2,5})\b")
            .expect("regex")
    })
}

/// Whether `host` can be a host a line names: a dotted IPv4 address, or a name with a letter and a
/// dot or a dash (not a time like `10:41`, not a word like `error:`).
fn plausible(host: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return !host.starts_with("127.") && host != "0.0.0.0";
    }
    host.chars().any(|c| c.is_ascii_alphabetic())
        && host.contains(['.', '-'])
        && host != "localhost"
        && !host.ends_with('.')
        && !source_file(host)
        && !package(host)
}

/// What to call a lead in facts: its workload or job, else its first host name (an address last).
pub fn lead_name(lead: &Entities) -> Option<String> {
    lead.workloads
        .iter()
        .chain(&lead.jobs)
        .chain(
            lead.hosts
                .iter()
                .filter(|h| h.parse::<std::net::IpAddr>().is_err()),
        )
        .chain(&lead.hosts)
        .next()
        .cloned()
}

/// `client.go`, `PriceCache.java`: a source file a log line names, not a host.
fn source_file(name: &str) -> bool {
    const EXTENSIONS: &[&str] = &[
        "go", "java", "py", "rs", "js", "ts", "rb", "c", "cc", "cpp", "h", "php", "scala", "kt",
        "cs", "ex", "erl", "class", "jar", "log", "conf", "yaml", "yml", "json", "toml",
    ];
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| EXTENSIONS.contains(&ext))
}

/// `org.elasticsearch.action`, `com.example.shop`: a Java package, not a host.
fn package(name: &str) -> bool {
    const ROOTS: &[&str] = &["org", "com", "java", "javax", "io", "net", "sun", "jdk"];
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 3 && ROOTS.contains(&parts[0])
}

/// The leads in `lines` for a group with `own` entities: hosts the lines name (URLs and
/// `host:port`s, not the group's own), counted across lines, and, when `mentions`, the pods the
/// lines came from.
pub fn leads(lines: &[LogLine], own: &Entities, mentions: bool) -> Leads {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in lines {
        let mut named: BTreeSet<String> = BTreeSet::new();
        for c in url().captures_iter(&line.line) {
            named.extend(c.get(1).and_then(|m| host_of(m.as_str())));
        }
        for c in host_port().captures_iter(&line.line) {
            named.extend(c.get(1).map(|m| m.as_str().to_owned()));
        }
        for host in named {
            let host = host.trim_end_matches('.').to_owned();
            let short = host.split('.').next().unwrap_or(&host).to_owned();
            if plausible(&host) && !own.hosts.contains(&host) && !own.hosts.contains(&short) {
                *counts.entry(host).or_default() += 1;
            }
        }
    }
    let mut hosts: Vec<(String, usize)> = counts.into_iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let pods = match mentions {
        true => lines
            .iter()
            .filter_map(|l| l.stream.get("pod"))
            .filter(|p| !own.pods.contains(*p) && !own.owned.contains(*p))
            .take(MAX_PODS)
            .cloned()
            .collect(),
        false => BTreeSet::new(),
    };
    Leads {
        hosts: hosts.into_iter().take(MAX_HOSTS).map(|(h, _)| h).collect(),
        pods,
        names: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, pod: Option<&str>) -> LogLine {
        LogLine {
            ts_ns: 0,
            stream: pod
                .map(|p| [("pod".to_owned(), p.to_owned())].into())
                .unwrap_or_default(),
            line: text.to_owned(),
        }
    }

    #[test]
    fn errors_name_their_dependencies_and_times_are_not_hosts() {
        let own = Entities {
            hosts: ["cart-api".to_owned()].into(),
            ..Entities::default()
        };
        let lines = [
            line(
                r#"{"level":"error","error":"dial tcp 10.96.113.40:6379: connect: connection refused","redis":"redis://:[REDACTED]@redis-cart-master.shop.svc:6379/0"}"#,
                None,
            ),
            line(
                "2024/11/28 10:41:21 [error] upstream timed out (110) while connecting to upstream, upstream: \"http://10.0.3.7:8080/api\"",
                None,
            ),
            line(
                "[ERROR] plugin/errors: 2 api.partner-bank.example. A: read udp 10.244.0.11:40000->10.20.0.53:53: i/o timeout",
                None,
            ),
            line(
                "Post \"https://api.partner-bank.example/v2/settlements\": dial tcp: lookup api.partner-bank.example on 10.96.0.10:53: server misbehaving",
                None,
            ),
            line("listening on cart-api:8080 and 127.0.0.1:9000", None),
        ];
        let found = leads(&lines, &own, false);
        for host in [
            "10.96.113.40",
            "redis-cart-master.shop.svc",
            "10.0.3.7",
            "10.20.0.53",
            "api.partner-bank.example",
            "10.96.0.10",
        ] {
            assert!(
                found.hosts.contains(&host.to_owned()),
                "{host} in {:?}",
                found.hosts
            );
        }
        assert!(found.hosts.len() <= MAX_HOSTS);
        for not in ["10", "41", "cart-api", "127.0.0.1"] {
            assert!(
                !found.hosts.contains(&not.to_owned()),
                "{not} in {:?}",
                found.hosts
            );
        }
        assert!(found.pods.is_empty());
        let e = Leads {
            hosts: vec!["redis-cart-master.shop.svc".into()],
            ..Leads::default()
        }
        .entities();
        assert!(
            e.hosts.contains("redis-cart-master") && e.hosts.contains("redis-cart-master.shop.svc")
        );
    }

    #[test]
    fn an_error_names_a_service_prometheus_knows_and_annotations_name_hosts() {
        let known: BTreeSet<String> = ["elasticsearch", "node", "kubelet", "catalog-search"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let own = Entities {
            jobs: ["catalog-search".to_owned()].into(),
            ..Entities::default()
        };
        let lines = [line(
            "ERROR c.e.c.search.SearchService - search failed: org.elasticsearch.action.search.SearchPhaseExecutionException on node es-2 (kubelet says catalog-search)",
            None,
        )];
        assert_eq!(named(&lines, &known, &own), ["elasticsearch"]);
        assert_eq!(
            hosts_in(
                "7% of requests to www.example.com fail; see https://grafana.example.net/d/x or db-1.db.svc:5432. p95 is 3.4s, e.g. 503."
            ),
            ["db-1.db.svc", "grafana.example.net", "www.example.com"]
        );
    }

    #[test]
    fn lines_that_mention_the_group_lead_to_their_pods() {
        let own = Entities {
            pods: ["web-1".to_owned()].into(),
            ..Entities::default()
        };
        let lines = [
            line(
                "2 api.partner-bank.example. A: i/o timeout",
                Some("coredns-5d78c9869d-8xj2k"),
            ),
            line("web-1 ready", Some("web-1")),
        ];
        let found = leads(&lines, &own, true);
        assert_eq!(found.pods, ["coredns-5d78c9869d-8xj2k".to_owned()].into());
    }
}
