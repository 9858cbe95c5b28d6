//! Label-driven query templates (USE/RED), read from `configs/context-templates.toml` (built in) and
//! from the file named by `context.templates_file`.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::escape::{is_label_name, is_metric_name, matcher};

/// The built-in templates.
pub const BUILT_IN: &str = include_str!("../../../configs/context-templates.toml");

/// One template; see the comments in `configs/context-templates.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub name: String,
    pub labels: Vec<String>,
    #[serde(default)]
    pub narrow: Vec<String>,
    pub metrics: Vec<String>,
    pub query: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    template: Vec<Template>,
    #[serde(default)]
    discovery: Discovery,
}

/// `[discovery]`: what metric discovery leaves out.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Discovery {
    /// Regular expressions over metric names: the metrics that describe the exporter or the scrape
    /// rather than the entity.
    #[serde(default)]
    deny: Vec<String>,
}

/// The metric names discovery skips, from the built-in file and `extra_file` (if not empty).
pub fn deny_list(extra_file: &str) -> Result<Vec<regex::Regex>, String> {
    let mut texts = vec![(
        BUILT_IN.to_owned(),
        "configs/context-templates.toml (built in)".to_owned(),
    )];
    if !extra_file.is_empty() {
        let text = std::fs::read_to_string(extra_file)
            .map_err(|e| format!("context.templates_file {extra_file}: {e}"))?;
        texts.push((text, extra_file.to_owned()));
    }
    let mut deny = Vec::new();
    for (text, origin) in texts {
        let file: File = toml::from_str(&text).map_err(|e| format!("{origin}: {e}"))?;
        for pattern in file.discovery.deny {
            deny.push(regex::Regex::new(&pattern).map_err(|e| {
                format!("{origin}: [discovery] deny: {pattern:?} is not a regex: {e}")
            })?);
        }
    }
    Ok(deny)
}

/// Parses a templates file and checks every template; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Template>, String> {
    let file: File = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    for t in &file.template {
        let problem = if t.labels.is_empty() {
            Some("needs at least one label".to_owned())
        } else if let Some(bad) = t.labels.iter().chain(&t.narrow).find(|l| !is_label_name(l)) {
            Some(format!("{bad:?} is not a label name"))
        } else if t.metrics.is_empty() {
            Some("needs at least one metric".to_owned())
        } else if let Some(bad) = t.metrics.iter().find(|m| !is_metric_name(m)) {
            Some(format!("{bad:?} is not a metric name"))
        } else if !t.query.contains("$selector") {
            Some("the query must use $selector".to_owned())
        } else {
            promql_parser::parser::parse(&t.render_with("x=\"y\"", "x"))
                .err()
                .map(|e| format!("the query does not parse: {e}"))
        };
        if let Some(problem) = problem {
            return Err(format!("{origin}: template {:?}: {problem}", t.name));
        }
    }
    Ok(file.template)
}

/// The built-in templates, then those of `extra_file` (if not empty).
pub fn load(extra_file: &str) -> Result<Vec<Template>, String> {
    let mut templates = parse(BUILT_IN, "configs/context-templates.toml (built in)")?;
    if !extra_file.is_empty() {
        let text = std::fs::read_to_string(extra_file)
            .map_err(|e| format!("context.templates_file {extra_file}: {e}"))?;
        templates.extend(parse(&text, extra_file)?);
    }
    Ok(templates)
}

impl Template {
    fn render_with(&self, selector: &str, by: &str) -> String {
        self.query.replace("$selector", selector).replace("$by", by)
    }

    /// The query for alerts with these label values, narrowed by the labels the template's series
    /// carry (`carried`). `None` when the alerts lack a required label or the series do not carry it.
    pub fn render(
        &self,
        alert_labels: &BTreeMap<String, Vec<String>>,
        carried: &HashSet<String>,
    ) -> Option<String> {
        let mut matchers = Vec::new();
        for label in &self.labels {
            if !carried.contains(label) {
                return None;
            }
            let values: Vec<&str> = alert_labels
                .get(label)?
                .iter()
                .map(String::as_str)
                .collect();
            matchers.push(matcher(label, &values)?);
        }
        for label in self.narrow.iter().filter(|l| carried.contains(*l)) {
            if let Some(values) = alert_labels.get(label) {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                matchers.extend(matcher(label, &values));
            }
        }
        Some(self.render_with(&matchers.join(", "), &self.labels.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deny_list_reads_both_files_and_refuses_a_bad_regex() {
        let deny = deny_list("").expect("the built-in list");
        assert!(
            deny.iter()
                .any(|d| d.is_match("node_scrape_collector_duration_seconds"))
        );
        assert!(!deny.iter().any(|d| d.is_match("node_load1")));
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("extra.toml");
        std::fs::write(&file, "[discovery]\ndeny = ['^myapp_debug_']\n").expect("write");
        let deny = deny_list(file.to_str().expect("utf-8")).expect("both");
        assert!(deny.iter().any(|d| d.is_match("myapp_debug_queue")));
        std::fs::write(&file, "[discovery]\ndeny = ['(']\n").expect("write");
        let e = deny_list(file.to_str().expect("utf-8")).expect_err("a bad regex");
        assert!(
            e.contains("[discovery] deny") && e.contains("extra.toml"),
            "{e}"
        );
    }

    #[test]
    fn the_built_in_templates_are_valid() {
        let templates = load("").expect("built-in templates parse");
        assert!(templates.len() >= 15, "{}", templates.len());
        for label in ["instance", "pod", "job", "service"] {
            assert!(
                templates
                    .iter()
                    .any(|t| t.labels.iter().any(|l| l == label)),
                "no template for {label}"
            );
        }
    }

    #[test]
    fn render_escapes_values_and_narrows_only_by_carried_labels() {
        let t = Template {
            name: "cpu".into(),
            labels: vec!["instance".into()],
            narrow: vec!["namespace".into(), "pod".into()],
            metrics: vec!["m".into()],
            query: "avg by ($by) (m{$selector})".into(),
        };
        let labels: BTreeMap<String, Vec<String>> = [
            ("instance".to_owned(), vec![r#"a"}or{b=""#.to_owned()]),
            ("namespace".to_owned(), vec!["prod".to_owned()]),
            ("pod".to_owned(), vec!["api-1".to_owned()]),
        ]
        .into_iter()
        .collect();
        let carried: HashSet<String> = ["instance", "namespace"].map(String::from).into();
        let query = t.render(&labels, &carried).expect("renders");
        assert_eq!(
            query,
            r#"avg by (instance) (m{instance="a\"}or{b=\"", namespace="prod"})"#
        );
        promql_parser::parser::parse(&query).expect("still one valid query");
        let without_instance: HashSet<String> = ["namespace"].map(String::from).into();
        assert_eq!(t.render(&labels, &without_instance), None);
    }

    #[test]
    fn a_bad_template_is_refused_with_its_name() {
        let err = parse(
            "[[template]]\nname = \"x\"\nlabels = [\"instance\"]\nmetrics = [\"m\"]\nquery = \"m{$selector\"\n",
            "mine.toml",
        )
        .expect_err("invalid query");
        assert!(err.contains("mine.toml") && err.contains("\"x\""), "{err}");
    }
}
