//! The log side of the investigation: Loki's labels and values, the group's log queries (errors,
//! other lines, the host's, mentions anywhere), the services lines may name, and the leads' lines.

use super::*;

impl Gatherer {
    /// Loki's labels and each one's values over the logs' span (cached), for matching streams by
    /// value. `None` when they cannot be listed (`out` says why).
    pub(super) async fn loki_streams(
        &self,
        loki: &Loki,
        window: Window,
        deadline: Deadline,
        out: &mut Collected,
    ) -> Option<(Vec<String>, BTreeMap<String, BTreeSet<String>>)> {
        let (start, end) = (
            window.logs_start * 1_000_000_000,
            window.logs_end * 1_000_000_000,
        );
        let failure = |error: String| SourceFailure {
            source: EvidenceSource::Loki,
            query: None,
            error,
        };
        let listed = tokio::time::timeout_at(deadline.at, async {
            let known = loki.labels(start, end).await?;
            let names: Vec<String> = known
                .iter()
                .filter(|n| !n.starts_with("__"))
                .take(MAX_LOKI_LABELS)
                .cloned()
                .collect();
            let lookups = names.iter().map(|n| loki.label_values(n, start, end, None));
            let answers = futures_util::future::join_all(lookups).await;
            Ok::<_, String>((known, names, answers))
        })
        .await;
        let (known, names, answers) = match listed {
            Ok(Ok(listed)) => listed,
            Ok(Err(e)) => {
                out.failures
                    .push(failure(format!("cannot list Loki's labels: {e}")));
                return None;
            }
            Err(_) => {
                let what = "listing Loki's labels and their values, which plans the log queries";
                out.failures
                    .push(deadline.failure(EvidenceSource::Loki, None, what));
                return None;
            }
        };
        let mut values = BTreeMap::new();
        for (name, answer) in names.iter().zip(answers) {
            match answer {
                Ok(v) => drop(values.insert(name.clone(), v.into_iter().collect())),
                Err(e) => out.failures.push(failure(format!(
                    "cannot list the values of Loki's label {name}, so its streams were not matched: {e}"
                ))),
            }
        }
        Some((known, values))
    }

    /// The group's log queries: error-like lines of the streams whose label values name its
    /// workload or host (`candidates::logs`), else of the labels `loki.labels` maps by name; a
    /// sample of lines just before the alert; the host's own error-like lines when the workload
    /// and the host are both known; and lines anywhere that mention the group's entities.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn log_queries(
        &self,
        loki: &Loki,
        labels: &BTreeMap<String, Vec<String>>,
        entities: &Entities,
        terms: &[String],
        known: &[String],
        values: &BTreeMap<String, BTreeSet<String>>,
        window: Window,
        out: &mut Collected,
    ) -> Vec<Query> {
        let span = (
            window.logs_start * 1_000_000_000,
            window.logs_end * 1_000_000_000,
        );
        let mut queries = Vec::new();
        let found = logs::selectors(entities, values);
        let by_name = || loki_selector(&self.loki_config, labels, known);
        let primary = found
            .workload
            .clone()
            .or(found.host.clone())
            .or_else(by_name);
        match &primary {
            Some(primary) => {
                queries.push(Query {
                    id: "logs-errors".into(),
                    title: "Error-like log lines, as templates".into(),
                    text: self
                        .errors_query(loki, known, primary, span, &mut out.failures)
                        .await,
                    purpose: Purpose::LogErrors,
                });
                queries.push(Query {
                    id: "logs-other".into(),
                    title: "The other log lines (not error-like), as templates".into(),
                    text: format!("{primary} !~ {}", quote(ERROR_LINES)),
                    purpose: Purpose::LogOther,
                });
            }
            None => out.failures.push(SourceFailure {
                source: EvidenceSource::Loki,
                query: None,
                error: "no Loki label holds a value of the alerts' hosts, pods or workloads, and none maps by name (loki.labels)".into(),
            }),
        }
        if let Some(host) = found.host.filter(|h| Some(h) != primary.as_ref()) {
            queries.push(Query {
                id: "logs-host".into(),
                title: "Error-like lines of the host (kernel, system services), as templates"
                    .into(),
                text: self
                    .errors_query(loki, known, &host, span, &mut out.failures)
                    .await,
                purpose: Purpose::LogErrors,
            });
        }
        if let Some(filter) = logs::mentions(terms) {
            let own: BTreeSet<String> = entities
                .hosts
                .iter()
                .chain(&entities.pods)
                .chain(&entities.owned)
                .chain(&entities.workloads)
                .cloned()
                .collect();
            let own = Arc::new(own);
            for (n, selector) in logs::cover(known).into_iter().enumerate() {
                queries.push(Query {
                    id: format!("logs-mentions-{}", n + 1),
                    title: format!(
                        "Lines elsewhere that mention {}, as templates",
                        terms.join(", ")
                    ),
                    text: format!("{selector} {filter}"),
                    purpose: Purpose::Mentions { own: own.clone() },
                });
            }
        }
        queries
    }

    /// The names a service goes by that a line may name: Prometheus' jobs and Loki's workload
    /// labels' values.
    pub(super) async fn service_names(
        &self,
        values: &BTreeMap<String, BTreeSet<String>>,
        window: Window,
        deadline: Deadline,
        out: &mut Collected,
    ) -> BTreeSet<String> {
        let mut known: BTreeSet<String> = [
            "app",
            "service_name",
            "application",
            "service",
            "container",
            "job",
        ]
        .iter()
        .filter_map(|l| values.get(*l))
        .flatten()
        .cloned()
        .collect();
        if let Some(prom) = &self.prometheus {
            let jobs = tokio::time::timeout_at(
                deadline.at,
                prom.values_of("job", window.start, window.end),
            )
            .await
            .unwrap_or_else(|_| Err("the context deadline passed".into()));
            match jobs {
                Ok(jobs) => known.extend(jobs),
                Err(e) => out.failures.push(SourceFailure {
                    source: EvidenceSource::Prometheus,
                    query: None,
                    error: format!("cannot list Prometheus' jobs, so services named in the logs were matched against Loki's labels only: {e}"),
                }),
            }
        }
        known
    }

    /// The lines of the leads (the dependencies the group's lines name, by host or by service),
    /// found by value as the group's own streams are: all of them, mined, the new first.
    pub(super) fn lead_queries(
        &self,
        followed: &[(String, Entities)],
        values: &BTreeMap<String, BTreeSet<String>>,
    ) -> Vec<Query> {
        let mut queries = Vec::new();
        for (what, entities) in followed {
            let found = logs::selectors(entities, values);
            // One selector per lead: its workload's streams, else its host's.
            if let Some(selector) = found.workload.or(found.host) {
                queries.push(Query {
                    id: format!("logs-lead-{}", queries.len() + 1),
                    title: format!("The lines of {what}, as templates"),
                    text: selector,
                    purpose: Purpose::LeadLines {
                        lead: leads::lead_name(entities).unwrap_or_else(|| what.clone()),
                    },
                });
            }
        }
        queries
    }

    /// Error-like lines of `selector`'s streams: by their level label when those streams carry an
    /// error-like level, else by a case-insensitive regex over the line (also when the levels cannot
    /// be read, which `failures` records).
    pub(super) async fn errors_query(
        &self,
        loki: &Loki,
        known: &[String],
        selector: &str,
        window: (i64, i64),
        failures: &mut Vec<SourceFailure>,
    ) -> String {
        let error_level = regex::Regex::new(&format!("^{ERROR_LEVELS}$")).ok();
        for level in self
            .loki_config
            .level_labels
            .iter()
            .filter(|l| known.contains(l))
        {
            let levels = match loki
                .label_values(level, window.0, window.1, Some(selector))
                .await
            {
                Ok(levels) => levels,
                Err(e) => {
                    failures.push(SourceFailure {
                        source: EvidenceSource::Loki,
                        query: Some(selector.to_owned()),
                        error: format!(
                            "cannot read the {level} values of these streams; error lines are matched by their text: {e}"
                        ),
                    });
                    continue;
                }
            };
            if levels
                .iter()
                .any(|v| error_level.as_ref().is_some_and(|re| re.is_match(v)))
            {
                return format!(
                    "{{{}, {level}=~{}}}",
                    &selector[1..selector.len() - 1],
                    quote(ERROR_LEVELS)
                );
            }
        }
        format!("{selector} |~ {}", quote(ERROR_LINES))
    }
}
