//! What an alert group is about: its hosts, pods, namespaces and workloads, as values to look for
//! wherever they are recorded. A log pipeline labels a host `host`, `hostname` or `node_name`, a
//! workload `app`, `service_name` or `container`; the names differ, the values are the same, so the
//! values are what the stage matches on (see `candidates::logs`).

use std::collections::{BTreeMap, BTreeSet};

/// Alert labels that name a host, possibly with a port, a scheme or a path around it.
const HOST_LABELS: &[&str] = &["instance", "node", "hostname", "nodename", "host", "server"];
/// Alert labels that name a workload.
const WORKLOAD_LABELS: &[&str] = &[
    "deployment",
    "statefulset",
    "daemonset",
    "service",
    "app",
    "application",
    "service_name",
    "container",
    "consumergroup",
    "horizontalpodautoscaler",
    "ingress",
    "cronjob",
    "job_name",
    "job",
];
/// Words looked for in any log line, at most.
const MAX_TERMS: usize = 12;
/// Pods a workload resolves to, at most: enough to compare them, few enough for one regex.
const MAX_RESOLVED_PODS: usize = 24;

/// The group's entities: each set holds the values the alerts carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entities {
    pub hosts: BTreeSet<String>,
    pub pods: BTreeSet<String>,
    pub namespaces: BTreeSet<String>,
    pub workloads: BTreeSet<String>,
    /// Scrape jobs (`job`): a service's own metrics when no host is known.
    pub jobs: BTreeSet<String>,
    /// Pods found through the workloads' owner series: their siblings, not the alert's own.
    pub owned: BTreeSet<String>,
}

impl Entities {
    /// The entities of the alerts' labels (`labels`: every label name with its values across the
    /// group).
    pub fn of(labels: &BTreeMap<String, Vec<String>>) -> Self {
        let values = |names: &[&str]| -> Vec<&str> {
            names
                .iter()
                .filter_map(|n| labels.get(*n))
                .flatten()
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .collect()
        };
        let mut hosts = BTreeSet::new();
        for value in values(HOST_LABELS) {
            if let Some(host) = host_of(value) {
                // A log pipeline may know the host by its short name.
                if let Some(short) = short_name(&host) {
                    hosts.insert(short.to_owned());
                }
                hosts.insert(host);
            }
        }
        let pods: BTreeSet<String> = values(&["pod"]).into_iter().map(str::to_owned).collect();
        // A pod's workload and a StatefulSet host's (`pg-0.pg.db.svc` → `pg`), by Kubernetes'
        // naming: the streams and series of the workload are the pod's siblings'.
        let derived: Vec<String> = pods
            .iter()
            .chain(hosts.iter().filter(|h| !h.contains('.')))
            .filter_map(|name| workload_of(name))
            .collect();
        Self {
            hosts,
            pods,
            namespaces: values(&["namespace"])
                .into_iter()
                .map(str::to_owned)
                .collect(),
            workloads: values(WORKLOAD_LABELS)
                .into_iter()
                .map(str::to_owned)
                .chain(derived)
                .collect(),
            jobs: values(&["job"]).into_iter().map(str::to_owned).collect(),
            owned: BTreeSet::new(),
        }
    }

    /// The pods the workloads own, through kube-state-metrics' owner series: a pod owned directly
    /// (StatefulSet, DaemonSet, Job) or through a ReplicaSet of a Deployment; at any time in the
    /// window (`range`, e.g. `2100s`). `None` without workloads, or when `exists` says the series
    /// are not there.
    pub fn owners_query(&self, range: &str, exists: impl Fn(&str) -> bool) -> Option<String> {
        if !exists("kube_pod_owner") || !exists("kube_replicaset_owner") {
            return None;
        }
        let workloads = alternation(&self.workloads)?;
        let ns = alternation(&self.namespaces)
            .map(|n| format!(", namespace=~\"({n})\""))
            .unwrap_or_default();
        Some(format!(
            "last_over_time(kube_pod_owner{{owner_name=~\"({workloads})\"{ns}}}[{range}]) or on(namespace, pod) (last_over_time(kube_pod_owner{{owner_kind=\"ReplicaSet\"{ns}}}[{range}]) * on(namespace, owner_name) group_left() label_replace(last_over_time(kube_replicaset_owner{{owner_name=~\"({workloads})\"{ns}}}[{range}]), \"owner_name\", \"$1\", \"replicaset\", \"(.*)\"))"
        ))
    }

    /// The nodes and host IPs of the pods (`kube_pod_info`), and each host's other names
    /// (`node_uname_info`: the instance an exporter scrapes, the kernel's nodename).
    pub fn hosts_query(&self, range: &str, exists: impl Fn(&str) -> bool) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(pods) = alternation(&self.all_pods()).filter(|_| exists("kube_pod_info")) {
            parts.push(format!(
                "last_over_time(kube_pod_info{{pod=~\"({pods})\"}}[{range}])"
            ));
        }
        if let Some(hosts) = alternation(&self.hosts).filter(|_| exists("node_uname_info")) {
            parts.push(format!(
                "last_over_time(node_uname_info{{instance=~\"({hosts})(:[0-9]+)?\"}}[{range}]) or last_over_time(node_uname_info{{nodename=~\"({hosts})\"}}[{range}])"
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" or "))
    }

    /// Adds the pods (as `owned`, up to [`MAX_RESOLVED_PODS`]) and hosts that `labels` (one series
    /// of a resolution query) name. Returns whether anything was new.
    pub fn absorb(&mut self, labels: &BTreeMap<String, String>) -> bool {
        let mut new = false;
        if let Some(pod) = labels.get("pod").filter(|p| !p.is_empty())
            && self.owned.len() < MAX_RESOLVED_PODS
            && !self.pods.contains(pod)
        {
            new |= self.owned.insert(pod.clone());
        }
        for name in ["node", "nodename", "host_ip", "instance"] {
            let Some(host) = labels.get(name).and_then(|v| host_of(v)) else {
                continue;
            };
            if let Some(short) = short_name(&host) {
                new |= self.hosts.insert(short.to_owned());
            }
            new |= self.hosts.insert(host);
        }
        new
    }

    /// Words to look for in any log line: the hosts, pods and workloads specific enough not to match
    /// everywhere (six characters, or a `-`, `.` or digit in them), at most [`MAX_TERMS`]; a job
    /// counts only when named like a service (`orders-api`, not `node`).
    pub fn terms(&self) -> Vec<String> {
        let specific = |v: &&String| {
            v.chars().count() >= 6
                || v.contains(['-', '.'])
                || v.chars().any(|c| c.is_ascii_digit())
        };
        // A namespace is named `namespace/object` by Kubernetes' own components (a rescale of
        // `shop/cart`, a policy `shop/egress`, a sync of `shop/cart`): that form is specific.
        let objects = self.namespaces.iter().map(|n| format!("{n}/"));
        let mut terms: Vec<String> = self
            .hosts
            .iter()
            .chain(&self.pods)
            .chain(
                self.workloads
                    .iter()
                    .filter(|w| !self.jobs.contains(*w) || w.contains('-')),
            )
            .filter(|v| v.chars().count() >= 3)
            .filter(specific)
            .cloned()
            .chain(objects)
            .collect();
        terms.sort_unstable();
        terms.dedup();
        // The longest first: they say the most.
        terms.sort_by_key(|t| std::cmp::Reverse(t.chars().count()));
        terms.truncate(MAX_TERMS);
        terms
    }

    /// The alert's pods and those found through their workloads.
    pub fn all_pods(&self) -> BTreeSet<String> {
        self.pods.union(&self.owned).cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.pods.is_empty()
            && self.namespaces.is_empty()
            && self.workloads.is_empty()
    }
}

/// The workload a pod's name says it belongs to, by Kubernetes' naming: a Deployment's pod
/// `cart-7d9c8b6f5-k2j4m` → `cart`, a StatefulSet's `pg-orders-0` → `pg-orders`, a DaemonSet's or
/// Job's `node-exporter-x8k2p` → `node-exporter`. Kubernetes' random suffixes have no vowels
/// (`bcdfghjklmnpqrstvwxz2456789`), which tells them from words.
pub fn workload_of(pod: &str) -> Option<String> {
    let random = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len())
            && s.chars()
                .all(|c| (c.is_ascii_lowercase() && !"aeiou".contains(c)) || c.is_ascii_digit())
    };
    let parts: Vec<&str> = pod.split('-').collect();
    let n = parts.len();
    let keep = match n {
        n if n >= 3 && random(parts[n - 2], 6..=10) && random(parts[n - 1], 5..=5) => n - 2,
        n if n >= 2
            && !parts[n - 1].is_empty()
            && parts[n - 1].chars().all(|c| c.is_ascii_digit()) =>
        {
            n - 1
        }
        n if n >= 2 && random(parts[n - 1], 5..=5) => n - 1,
        _ => return None,
    };
    Some(parts[..keep].join("-")).filter(|w| !w.is_empty())
}

/// The values as a literal regex alternation (see `candidates::metrics::literal`); `None` when
/// there is none.
fn alternation(values: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<String> = values
        .iter()
        .filter_map(|v| crate::candidates::metrics::literal(v))
        .collect();
    (!parts.is_empty()).then(|| parts.join("|"))
}

/// The host in `value`: `app-07:9100` → `app-07`, `https://shop.example.com/health` →
/// `shop.example.com`, `[::1]:9100` → `::1`, `redis://:pw@redis-0.svc:6379/0` → `redis-0.svc`.
pub fn host_of(value: &str) -> Option<String> {
    let rest = value.split_once("://").map_or(value, |(_, r)| r);
    let rest = rest.split(['/', '?']).next().unwrap_or(rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => match rest.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => rest,
        },
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// The first label of a DNS name (`pg-0.pg.db.svc` → `pg-0`); none for an IP address or a name
/// without dots.
fn short_name(host: &str) -> Option<&str> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    host.split_once('.')
        .map(|(first, _)| first)
        .filter(|f| !f.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_ports_schemes_paths_and_credentials() {
        assert_eq!(host_of("app-07:9100").as_deref(), Some("app-07"));
        assert_eq!(
            host_of("https://shop.example.com/health").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(host_of("[::1]:9100").as_deref(), Some("::1"));
        assert_eq!(
            host_of("redis://:pw@redis-0.svc:6379/0").as_deref(),
            Some("redis-0.svc")
        );
        assert_eq!(host_of("10.0.0.7").as_deref(), Some("10.0.0.7"));
        assert_eq!(host_of(""), None);
    }

    #[test]
    fn a_pods_name_says_its_workload() {
        assert_eq!(workload_of("cart-7d9c8b6f5-k2j4m").as_deref(), Some("cart"));
        assert_eq!(workload_of("pg-orders-0").as_deref(), Some("pg-orders"));
        assert_eq!(
            workload_of("node-exporter-x8k2p").as_deref(),
            Some("node-exporter")
        );
        assert_eq!(workload_of("redis-cart-master").as_deref(), None);
        assert_eq!(workload_of("envoy-proxy").as_deref(), None);
        assert_eq!(workload_of("edge-01").as_deref(), Some("edge"));
    }

    #[test]
    fn entities_come_from_the_labels_that_name_them() {
        let labels: BTreeMap<String, Vec<String>> = [
            ("instance", vec!["pg-0.pg.db.svc:9187", "10.0.0.7:9100"]),
            ("namespace", vec!["shop"]),
            ("pod", vec!["cart-7d9-x2"]),
            ("service", vec!["cart"]),
            ("severity", vec!["critical"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(String::from).collect()))
        .collect();
        let e = Entities::of(&labels);
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(e.hosts, set(&["10.0.0.7", "pg-0", "pg-0.pg.db.svc"]));
        assert_eq!(e.pods, set(&["cart-7d9-x2"]));
        assert_eq!(e.namespaces, set(&["shop"]));
        assert_eq!(
            e.workloads,
            set(&["cart", "pg"]),
            "pg-0 is a StatefulSet's pod"
        );
        assert_eq!(
            e.terms(),
            ["pg-0.pg.db.svc", "cart-7d9-x2", "10.0.0.7", "shop/", "pg-0"]
        );
    }
}
