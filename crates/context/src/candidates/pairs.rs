//! Saturation pairs: a usage next to its limit, for the same entity, as a share. A gauge at 760 MiB
//! says little; at 99% of a 768 MiB limit it says why the container was killed.

use std::collections::{BTreeMap, HashMap};

use aiops_model::Resource;

use crate::series::{Series, at, num};

/// A usage and the limit it runs into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub usage: String,
    pub limit: String,
    pub limit_filter: &'static [(&'static str, &'static str)],
    pub on: &'static [&'static str],
    pub what: &'static str,
    pub resource: Resource,
}

/// A pair known by name, across common exporters.
#[derive(Debug, Clone, Copy)]
struct Known {
    usage: &'static str,
    limit: &'static str,
    /// Labels the limit series must carry (`resource="memory"`).
    limit_filter: &'static [(&'static str, &'static str)],
    /// Labels both carry, that pair a usage series with its limit; empty: every label the two
    /// share except `instance` and `job` (which a second exporter changes).
    on: &'static [&'static str],
    /// What the share means, for the title.
    what: &'static str,
    resource: Resource,
}

const POD: &[&str] = &["namespace", "pod", "container"];
const HPA: &[&str] = &["namespace", "horizontalpodautoscaler"];

/// The pairs known across common exporters; [`by_convention`] finds more by their names.
const PAIRS: &[Known] = &[
    Known {
        usage: "container_memory_working_set_bytes",
        limit: "kube_pod_container_resource_limits",
        limit_filter: &[("resource", "memory")],
        on: POD,
        what: "container memory against its limit",
        resource: Resource::Memory,
    },
    Known {
        usage: "container_cpu_usage_seconds_total",
        limit: "kube_pod_container_resource_limits",
        limit_filter: &[("resource", "cpu")],
        on: POD,
        what: "container CPU (cores) against its limit",
        resource: Resource::Cpu,
    },
    Known {
        usage: "container_cpu_cfs_throttled_periods_total",
        limit: "container_cpu_cfs_periods_total",
        limit_filter: &[],
        on: &[],
        what: "CFS periods throttled against all periods (the CPU limit throttles)",
        resource: Resource::CpuThrottling,
    },
    Known {
        usage: "process_open_fds",
        limit: "process_max_fds",
        limit_filter: &[],
        on: &[],
        what: "open file descriptors against the process's maximum",
        resource: Resource::FileDescriptors,
    },
    Known {
        usage: "pg_stat_activity_count",
        limit: "pg_settings_max_connections",
        limit_filter: &[],
        on: &["instance"],
        what: "PostgreSQL connections against max_connections",
        resource: Resource::Connections,
    },
    Known {
        usage: "mysql_global_status_threads_connected",
        limit: "mysql_global_variables_max_connections",
        limit_filter: &[],
        on: &["instance"],
        what: "MySQL connections against max_connections",
        resource: Resource::Connections,
    },
    Known {
        usage: "node_filesystem_avail_bytes",
        limit: "node_filesystem_size_bytes",
        limit_filter: &[],
        on: &["instance", "device", "mountpoint"],
        what: "filesystem space available against its size",
        resource: Resource::Disk,
    },
    Known {
        usage: "node_nf_conntrack_entries",
        limit: "node_nf_conntrack_entries_limit",
        limit_filter: &[],
        on: &["instance"],
        what: "conntrack entries against the table's limit",
        resource: Resource::Conntrack,
    },
    Known {
        usage: "kube_horizontalpodautoscaler_status_desired_replicas",
        limit: "kube_horizontalpodautoscaler_spec_max_replicas",
        limit_filter: &[],
        on: HPA,
        what: "the replicas the autoscaler wants against its maximum",
        resource: Resource::Replicas,
    },
    Known {
        usage: "kube_horizontalpodautoscaler_status_current_replicas",
        limit: "kube_horizontalpodautoscaler_spec_max_replicas",
        limit_filter: &[],
        on: HPA,
        what: "the autoscaler's replicas against its maximum",
        resource: Resource::Replicas,
    },
    Known {
        usage: "jvm_memory_used_bytes",
        limit: "jvm_memory_max_bytes",
        limit_filter: &[],
        on: &[],
        what: "JVM memory used against its maximum",
        resource: Resource::Memory,
    },
    Known {
        usage: "tomcat_threads_busy_threads",
        limit: "tomcat_threads_config_max_threads",
        limit_filter: &[],
        on: &[],
        what: "busy Tomcat threads against the maximum",
        resource: Resource::Threads,
    },
    Known {
        usage: "redis_memory_used_bytes",
        limit: "redis_memory_max_bytes",
        limit_filter: &[],
        on: &["instance"],
        what: "Redis memory against maxmemory",
        resource: Resource::Memory,
    },
];

/// Usage and limit suffixes that pair by name: `x_active` with `x_max`, `x_used_bytes` with
/// `x_max_bytes`.
const CONVENTIONS: &[(&str, &[&str])] = &[
    (
        "_used_bytes",
        &["_max_bytes", "_limit_bytes", "_size_bytes"],
    ),
    ("_usage_bytes", &["_limit_bytes", "_max_bytes"]),
    ("_active", &["_max"]),
    ("_used", &["_max", "_limit"]),
    ("_current", &["_max", "_limit"]),
    ("_open_fds", &["_max_fds"]),
];

/// The pairs among `names`: the known ones, then those the naming conventions make.
pub fn pairs_among(names: &[&str]) -> Vec<Pair> {
    let has = |n: &str| names.contains(&n);
    let mut found: Vec<Pair> = PAIRS
        .iter()
        .filter(|p| has(p.usage) && has(p.limit))
        .map(|k| Pair {
            usage: k.usage.to_owned(),
            limit: k.limit.to_owned(),
            limit_filter: k.limit_filter,
            on: k.on,
            what: k.what,
            resource: k.resource,
        })
        .collect();
    for name in names {
        for (usage, limits) in CONVENTIONS {
            let Some(base) = name.strip_suffix(usage) else {
                continue;
            };
            for limit in *limits {
                let limit = format!("{base}{limit}");
                if has(&limit) && !found.iter().any(|p| p.usage == *name) {
                    found.push(Pair {
                        usage: (*name).to_owned(),
                        limit,
                        limit_filter: &[],
                        on: &[],
                        what: "a usage against its limit, paired by name",
                        resource: Resource::Other,
                    });
                }
            }
        }
    }
    found
}

/// One usage series against its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub labels: BTreeMap<String, String>,
    /// The highest share of the limit in the window, and when.
    pub peak: (f64, f64),
    pub last: f64,
    pub limit: f64,
    pub usage_at_peak: f64,
}

impl Share {
    pub fn line(&self, available: bool) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let (verb, value) = match available {
            // For "available" space, the share used is what matters.
            true => ("used", 1.0 - self.peak.1),
            false => ("at", self.peak.1),
        };
        format!(
            "{{{}}}: {verb} {}% of the limit {} at {} (value {}); now {}%",
            labels.join(", "),
            num(value * 100.0),
            num(self.limit),
            at(self.peak.0),
            num(self.usage_at_peak),
            num(match available {
                true => 1.0 - self.last,
                false => self.last,
            } * 100.0)
        )
    }
}

/// The shares of `pair` among the fetched series by metric name, highest first. For available
/// space (`_avail_`), the lowest share ranks first: less is worse.
pub fn shares(pair: &Pair, by_name: &HashMap<String, Vec<Series>>) -> Vec<Share> {
    let (Some(usages), Some(limits)) = (by_name.get(&pair.usage), by_name.get(&pair.limit)) else {
        return Vec::new();
    };
    let limits: Vec<&Series> = limits
        .iter()
        .filter(|l| {
            pair.limit_filter
                .iter()
                .all(|(k, v)| l.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    let available = pair.usage.contains("_avail");
    let mut out = Vec::new();
    for usage in usages {
        let Some(limit) = limits.iter().find(|l| paired(pair, usage, l)) else {
            continue;
        };
        let Some(limit_now) = limit.points.last().map(|p| p.1).filter(|v| *v > 0.0) else {
            continue;
        };
        let share_at = |t: f64| {
            let l = limit
                .points
                .iter()
                .rev()
                .find(|p| p.0 <= t)
                .map_or(limit_now, |p| p.1);
            (l > 0.0).then_some(l)
        };
        let mut peak: Option<(f64, f64, f64)> = None;
        for &(t, v) in &usage.points {
            let Some(l) = share_at(t) else { continue };
            let share = v / l;
            let worse = match (peak, available) {
                (None, _) => true,
                (Some(p), false) => share > p.1,
                (Some(p), true) => share < p.1,
            };
            if worse {
                peak = Some((t, share, v));
            }
        }
        let (Some((t, share, v)), Some(last)) = (peak, usage.points.last()) else {
            continue;
        };
        out.push(Share {
            labels: identity(pair, usage),
            peak: (t, share),
            last: last.1 / limit_now,
            limit: limit_now,
            usage_at_peak: v,
        });
    }
    out.sort_by(|a, b| match available {
        true => a.peak.1.total_cmp(&b.peak.1),
        false => b.peak.1.total_cmp(&a.peak.1),
    });
    out
}

/// How saturated a share is, on one scale (available space turned into space used).
pub fn severity(share: &Share, pair: &Pair) -> f64 {
    match pair.usage.contains("_avail") {
        true => 1.0 - share.peak.1,
        false => share.peak.1,
    }
}

fn paired(pair: &Pair, usage: &Series, limit: &Series) -> bool {
    let shared: Vec<&str> = match pair.on {
        [] => usage
            .labels
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "__name__" | "instance" | "job"))
            .filter(|k| limit.labels.contains_key(*k))
            .collect(),
        on => on.to_vec(),
    };
    shared
        .iter()
        .all(|k| usage.labels.get(*k) == limit.labels.get(*k))
}

/// The labels that say which entity a share is of.
fn identity(pair: &Pair, usage: &Series) -> BTreeMap<String, String> {
    usage
        .labels
        .iter()
        .filter(|(k, _)| match pair.on {
            [] => !matches!(k.as_str(), "__name__" | "job"),
            on => on.contains(&k.as_str()),
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, labels: &[(&str, &str)], values: &[f64]) -> Series {
        let mut l: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        l.insert("__name__".into(), name.into());
        Series {
            labels: l,
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 * 60.0, *v))
                .collect(),
        }
    }

    #[test]
    fn memory_pairs_with_the_memory_limit_of_the_same_container() {
        let pod = [
            ("namespace", "shop"),
            ("pod", "checkout-1"),
            ("container", "checkout"),
        ];
        let other = [
            ("namespace", "shop"),
            ("pod", "checkout-2"),
            ("container", "checkout"),
        ];
        let with = |base: &[(&'static str, &'static str)],
                    extra: &[(&'static str, &'static str)]| {
            base.iter().chain(extra).copied().collect::<Vec<_>>()
        };
        let by_name: HashMap<String, Vec<Series>> = [
            (
                "container_memory_working_set_bytes",
                vec![
                    series(
                        "container_memory_working_set_bytes",
                        &with(&pod, &[("instance", "n1")]),
                        &[4e8, 6e8, 8e8],
                    ),
                    series(
                        "container_memory_working_set_bytes",
                        &with(&other, &[("instance", "n2")]),
                        &[4e8, 4e8, 4e8],
                    ),
                ],
            ),
            (
                "kube_pod_container_resource_limits",
                vec![
                    series(
                        "kube_pod_container_resource_limits",
                        &with(&pod, &[("resource", "cpu")]),
                        &[1.0, 1.0, 1.0],
                    ),
                    series(
                        "kube_pod_container_resource_limits",
                        &with(&pod, &[("resource", "memory")]),
                        &[805306368.0; 3],
                    ),
                    series(
                        "kube_pod_container_resource_limits",
                        &with(&other, &[("resource", "memory")]),
                        &[805306368.0; 3],
                    ),
                ],
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let names: Vec<&str> = by_name.keys().map(String::as_str).collect();
        let pairs = pairs_among(&names);
        let memory = pairs
            .iter()
            .find(|p| p.usage == "container_memory_working_set_bytes")
            .expect("paired");
        let shares = shares(memory, &by_name);
        assert_eq!(shares.len(), 2);
        assert_eq!(
            shares[0].labels.get("pod").map(String::as_str),
            Some("checkout-1")
        );
        assert!((shares[0].peak.1 - 8e8 / 805306368.0).abs() < 1e-9);
        let line = shares[0].line(false);
        assert!(
            line.contains("805306368") && line.contains("99.34%"),
            "{line}"
        );
    }

    #[test]
    fn names_pair_by_convention_and_available_space_counts_what_is_used() {
        let pairs = pairs_among(&[
            "hikaricp_connections_active",
            "hikaricp_connections_max",
            "x_total",
        ]);
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].limit, "hikaricp_connections_max");
        let fs = [
            ("instance", "edge-01:9100"),
            ("device", "/dev/sda1"),
            ("mountpoint", "/var"),
        ];
        let by_name: HashMap<String, Vec<Series>> = [
            (
                "node_filesystem_avail_bytes",
                vec![series(
                    "node_filesystem_avail_bytes",
                    &fs,
                    &[50.0, 10.0, 1.0],
                )],
            ),
            (
                "node_filesystem_size_bytes",
                vec![series("node_filesystem_size_bytes", &fs, &[100.0; 3])],
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let pairs = pairs_among(&["node_filesystem_avail_bytes", "node_filesystem_size_bytes"]);
        let pair = &pairs[0];
        let s = shares(pair, &by_name);
        assert!((severity(&s[0], pair) - 0.99).abs() < 1e-9);
        assert!(
            s[0].line(true).contains("used 99% of the limit 100"),
            "{}",
            s[0].line(true)
        );
    }
}
