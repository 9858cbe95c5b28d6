//! Resolution and discovery: the group's entities widened through the series that relate them, and
//! every metric their series carry, fetched in batches, scored, paired with limits.

use super::*;

impl Gatherer {
    /// The group's entities widened through the series that relate them (a workload's pods, a
    /// pod's node, a host's other names), where those series exist. `None` when the deadline
    /// passed meanwhile (`out` says so).
    pub(super) async fn resolve(
        &self,
        entities: Entities,
        window: Window,
        deadline: Deadline,
        out: &mut Collected,
    ) -> Entities {
        let Some(prom) = &self.prometheus else {
            return entities;
        };
        // The logs and discovery wait for this: it gets a quarter of the deadline, after which they
        // go on with the entities as the alerts name them.
        let share = Duration::from_secs(deadline.secs) / 4;
        let cutoff = deadline.at.min(tokio::time::Instant::now() + share);
        let cut = |what: &str| SourceFailure {
            source: EvidenceSource::Prometheus,
            query: None,
            error: format!(
                "{what} did not finish within a quarter of the context deadline ({}s); the entities were not widened",
                share.as_secs_f64()
            ),
        };
        let failure = |query: Option<String>, error: String| SourceFailure {
            source: EvidenceSource::Prometheus,
            query,
            error,
        };
        // 1. Entities through series: owners before pods' nodes, which need the pods.
        let mut entities = entities;
        let range = format!("{}s", (window.end - window.start).max(60));
        let resolvers: Vec<String> = RESOLVERS.iter().map(|m| (*m).to_owned()).collect();
        let exists = match tokio::time::timeout_at(
            cutoff,
            prom.existing(&resolvers, window.start, window.end),
        )
        .await
        {
            Ok(Ok(exists)) => exists,
            Ok(Err(e)) => {
                out.failures.push(failure(None, format!("cannot tell whether the series that relate pods, workloads and hosts exist, so the entities were not widened: {e}")));
                HashSet::new()
            }
            Err(_) => {
                out.failures.push(cut(
                    "listing the series that relate pods, workloads and hosts",
                ));
                return entities;
            }
        };
        let exists = |m: &str| exists.contains(m);
        for step in 0..2 {
            let (query, what) = match step {
                0 => (
                    entities.owners_query(&range, exists),
                    "the workloads' pods (kube_pod_owner)",
                ),
                _ => (
                    entities.hosts_query(&range, exists),
                    "the pods' nodes and the hosts' names (kube_pod_info, node_uname_info)",
                ),
            };
            let Some(query) = query else { continue };
            match tokio::time::timeout_at(cutoff, prom.instant(&query, window.end)).await {
                Ok(Ok(series)) => {
                    for s in &series {
                        entities.absorb(&s.labels);
                    }
                }
                Ok(Err(e)) => out
                    .failures
                    .push(failure(Some(query), format!("cannot resolve {what}: {e}"))),
                Err(_) => {
                    let mut failure = cut(&format!("resolving {what}"));
                    failure.query = Some(query);
                    out.failures.push(failure);
                    return entities;
                }
            }
        }
        entities
    }

    /// Discovery (`candidates::metrics`): every metric whose series carry the group's entities, or
    /// the leads' (`followed`), fetched in a batch per scope and kind, every series scored; the
    /// best `context.max_candidates` metrics become evidence, and each usage found next to its
    /// limit (`candidates::pairs`) becomes a share.
    pub(super) async fn discover(
        &self,
        rules: &[Rule],
        entities: &Entities,
        followed: &[(&str, &Entities)],
        skip: &BTreeSet<String>,
        window: Window,
        deadline: Deadline,
    ) -> Collected {
        let mut out = Collected::default();
        let Some(prom) = &self.prometheus else {
            return out;
        };
        let failure = |query: Option<String>, error: String| SourceFailure {
            source: EvidenceSource::Prometheus,
            query,
            error,
        };

        // The metric names of each scope (the group's, then the leads'), and which are counters.
        let mut scopes = metrics::scopes(entities);
        for (why, lead) in followed {
            let why = why
                .rsplit_once(" (")
                .map_or("", |(_, w)| w.trim_end_matches(')'));
            let name = leads::lead_name(lead);
            scopes.extend(metrics::scopes(lead).into_iter().map(|mut s| {
                s.what = format!("{} ({why})", s.what);
                s.related = name.clone();
                s
            }));
        }
        if scopes.is_empty() {
            return out;
        }
        let lookups = scopes.iter().map(|scope| async move {
            prom.names_of(&scope.selectors(), window.start, window.end)
                .await
        });
        let listed = tokio::time::timeout_at(
            deadline.at,
            futures_util::future::join(futures_util::future::join_all(lookups), prom.counters()),
        )
        .await;
        let Ok((names, counters)) = listed else {
            let what = "listing the metrics of the group's pods, hosts and workloads";
            out.failures
                .push(deadline.failure(EvidenceSource::Prometheus, None, what));
            return out;
        };
        let counters = counters.unwrap_or_else(|e| {
            out.failures.push(failure(None, format!("cannot read the metrics' types (/api/v1/metadata); counters are told by their _total suffix: {e}")));
            HashMap::new()
        });
        // Each name in the first (most specific) scope that has it, batched by kind.
        let own: HashSet<&str> = rules
            .iter()
            .flat_map(|r| r.selectors.iter().map(|s| s.metric.as_str()))
            .collect();
        let mut histograms = 0;
        // What an earlier pass fetched is evidence already.
        let mut seen: HashSet<String> = skip.iter().cloned().collect();
        let mut batches: Vec<(usize, metrics::Kind, Vec<String>)> = Vec::new();
        for (i, (scope, names)) in scopes.iter().zip(names).enumerate() {
            let names = match names {
                Ok(names) => names,
                Err(e) => {
                    out.failures.push(failure(
                        None,
                        format!("cannot list the metrics of {}: {e}", scope.what),
                    ));
                    continue;
                }
            };
            let mut by_kind: BTreeMap<metrics::Kind, Vec<String>> = BTreeMap::new();
            for name in names {
                if self.deny.iter().any(|d| d.is_match(&name)) {
                    continue;
                }
                // A histogram (not the rule's own) as its 99th percentile, a query each.
                if let Some(base) = metrics::histogram_of(&name)
                    && !own.contains(name.as_str())
                    && !own.contains(base)
                    && histograms < metrics::MAX_HISTOGRAMS
                    && seen.insert(name.clone())
                {
                    histograms += 1;
                    batches.push((i, metrics::Kind::Histogram, vec![name]));
                    continue;
                }
                if let Some(kind) = metrics::kind(&name, counters.get(&name).copied())
                    && seen.insert(name.clone())
                {
                    by_kind.entry(kind).or_default().push(name);
                }
            }
            for (kind, names) in by_kind {
                for chunk in names.chunks(BATCH_NAMES) {
                    batches.push((i, kind, chunk.to_vec()));
                }
            }
        }
        // The batches, concurrently, until the deadline.
        let mut pending: FuturesUnordered<_> = batches
            .iter()
            .enumerate()
            .map(|(b, (scope, _, names))| {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                let query = match batches[b].1 {
                    metrics::Kind::Histogram => metrics::quantile(
                        metrics::histogram_of(names[0]).unwrap_or(names[0]),
                        &scopes[*scope],
                    ),
                    _ => metrics::batch(&names, &scopes[*scope]),
                };
                // A counter's rate needs a span behind the window's first point.
                let from = match batches[b].1 {
                    metrics::Kind::Counter => window.start - i64::from(metrics::RATE_SECS),
                    _ => window.start,
                };
                async move {
                    let answer = prom.range_post(&query, from, window.end, window.step).await;
                    (b, answer)
                }
            })
            .collect();
        let mut fetched: Vec<(usize, metrics::Kind, Vec<Series>)> = Vec::new();
        let mut unanswered = vec![true; batches.len()];
        loop {
            match tokio::time::timeout_at(deadline.at, pending.next()).await {
                Ok(Some((b, answer))) => {
                    unanswered[b] = false;
                    let (scope, kind, names) = &batches[b];
                    match answer {
                        Ok(series) => fetched.push((
                            *scope,
                            *kind,
                            match kind {
                                metrics::Kind::Counter => {
                                    metrics::rates(series, window.start as f64)
                                }
                                metrics::Kind::Gauge => series,
                                // The quantile has no name: it is the histogram's.
                                metrics::Kind::Histogram => series
                                    .into_iter()
                                    .map(|mut s| {
                                        s.labels.insert("__name__".into(), names[0].clone());
                                        s
                                    })
                                    .filter(|s| !s.points.is_empty())
                                    .collect(),
                            },
                        )),
                        Err(e) => out.failures.push(failure(
                            Some(names.join(", ")),
                            format!("cannot fetch these metrics of {}: {e}", scopes[*scope].what),
                        )),
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    for (b, _) in unanswered.iter().enumerate().filter(|(_, u)| **u) {
                        let (scope, _, names) = &batches[b];
                        let what = format!("fetching these metrics of {}", scopes[*scope].what);
                        out.failures.push(deadline.failure(
                            EvidenceSource::Prometheus,
                            Some(names.join(", ")),
                            &what,
                        ));
                    }
                    break;
                }
            }
        }
        // Every metric scored; the best become evidence, the pairs shares.
        let frame = Frame {
            start: window.start as f64,
            alert: window.alert as f64,
            end: window.end as f64,
            step: window.step,
        };
        let mut by_name: BTreeMap<String, (usize, metrics::Kind, Vec<Series>)> = BTreeMap::new();
        for (scope, kind, series) in fetched {
            for s in series {
                let Some(name) = s.labels.get("__name__").cloned() else {
                    continue;
                };
                by_name
                    .entry(name)
                    .or_insert_with(|| (scope, kind, Vec::new()))
                    .2
                    .push(s);
            }
        }
        out.fetched.extend(by_name.keys().cloned());
        let mut found: Vec<(Rank, Evidence)> = Vec::new();
        for (name, (scope, kind, series)) in &by_name {
            let ranked = summarize_in(series, frame, None);
            let Some(top) = ranked.first() else { continue };
            if own.contains(name.as_str()) {
                // The rule's own metric is evidence already; what tells its anomalous series
                // apart may still name a service.
                if Tier::of_score(top.score) >= Tier::Anomalous {
                    out.values.extend(telling(&top.labels));
                }
                continue;
            }
            let alternative = series
                .iter()
                .find(|s| {
                    s.labels
                        .iter()
                        .all(|(k, v)| top.labels.get(k).is_none_or(|t| t == v))
                })
                .map_or(&[][..], |s| scopes[*scope].alternative_of(s));
            let (text, title) = metrics::shown(name, alternative, *kind, &scopes[*scope].what);
            let summary = self.series_lines(&ranked, None);
            let full = |s: &SeriesSummary| crate::facts::full_labels(series, s);
            // Resources named after the group are named, as dependencies, by their host.
            let related = scopes[*scope].related.as_ref().map(|r| match r.is_empty() {
                true => full(top)
                    .get("instance")
                    .and_then(|i| crate::entities::host_of(i))
                    .unwrap_or_else(|| crate::facts::subject(&full(top))),
                false => r.clone(),
            });
            let found_in = crate::facts::Found {
                metric: name,
                alert: window.alert as f64,
                related: related.as_deref(),
            };
            let facts = crate::facts::of_series(found_in, &ranked, series);
            let rank = Rank::new(Tier::of_score(top.score), top.score);
            if rank.tier >= Tier::Anomalous {
                out.values.extend(telling(&top.labels));
                let instance = series
                    .iter()
                    .find(|s| top.labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
                    .and_then(|s| s.labels.get("instance"))
                    .and_then(|i| crate::entities::host_of(i));
                out.hosts.extend(instance);
            }
            let mut item = evidence(format!("found-{}", found.len() + 1), title, text, summary);
            item.facts = facts;
            found.push((rank, item));
        }
        found.sort_by(|a, b| Rank::descending(&a.0, &b.0));
        found.truncate(self.config.max_candidates);
        out.evidence.extend(found);
        let series_by_name: HashMap<String, Vec<Series>> = by_name
            .into_iter()
            .map(|(name, (_, _, series))| (name, series))
            .collect();
        let names: Vec<&str> = series_by_name.keys().map(String::as_str).collect();
        for (n, pair) in pairs::pairs_among(&names).iter().enumerate() {
            let shares = pairs::shares(pair, &series_by_name);
            let Some(worst) = shares.first() else {
                continue;
            };
            let severity = pairs::severity(worst, pair);
            let available = pair.usage.contains("_avail");
            let mut lines: Vec<String> = shares
                .iter()
                .take(self.config.top_series)
                .map(|s| s.line(available))
                .collect();
            if shares.len() > self.config.top_series {
                lines.push(format!(
                    "({} more, less saturated, left out)",
                    shares.len() - self.config.top_series
                ));
            }
            let filter: Vec<String> = pair
                .limit_filter
                .iter()
                .map(|(k, v)| format!("{k}={}", quote(v)))
                .collect();
            let text = format!("{} / {}{{{}}}", pair.usage, pair.limit, filter.join(", "));
            let title = format!(
                "Saturation: {} ({} / {})",
                pair.what, pair.usage, pair.limit
            );
            let mut item = evidence(format!("limit-{}", n + 1), title, text, lines.join("\n"));
            if crate::facts::saturated(pair.resource, severity) {
                item.facts.push(crate::facts::saturation(
                    pair.resource,
                    &worst.labels,
                    match available {
                        true => worst.limit - worst.usage_at_peak,
                        false => worst.usage_at_peak,
                    },
                    worst.limit,
                    severity,
                    worst.peak.0,
                ));
            }
            out.evidence
                .push((Rank::new(Tier::of_share(severity), severity), item));
        }
        out
    }
}
