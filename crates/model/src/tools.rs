//! The tools an LLM may call during a bounded investigation: their definitions in the
//! OpenAI-compatible `tools` wire format, the calls parsed and checked from a model's `tool_calls`
//! arguments, and the port ([`Investigator`]) the context stage implements to run them. A call the
//! model got wrong is an error message it can read and correct, never a crash.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::context::Evidence;

/// Minutes before or after the alert's start a query may reach, at most.
pub const MAX_MINUTES: u32 = 180;
/// Characters of a query or selector, at most.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// The window a range call reads when the model does not say: as the context stage's.
const DEFAULT_BEFORE: u32 = 30;
const DEFAULT_AFTER: u32 = 5;

/// One call of a tool, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tool", rename_all = "snake_case")]
pub enum ToolCall {
    /// A PromQL range query over the alert's start - `minutes_before` to + `minutes_after`.
    PromqlRange {
        query: String,
        minutes_before: u32,
        minutes_after: u32,
    },
    /// A PromQL instant query at the alert's start.
    PromqlInstant { query: String },
    /// The metric names with series that `selector` selects.
    MetricNames { selector: String },
    /// The values of `label` among the series `selector` selects.
    LabelValues { label: String, selector: String },
    /// A LogQL log query over the alert's start - `minutes_before` to + `minutes_after`.
    Logql {
        query: String,
        minutes_before: u32,
        minutes_after: u32,
    },
    /// The label names Loki knows.
    LokiLabels,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ranged {
    query: String,
    #[serde(default)]
    minutes_before: Option<u32>,
    #[serde(default)]
    minutes_after: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Query {
    query: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Names {
    selector: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Values {
    label: String,
    selector: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

/// The tools' names, as the definitions give them.
pub const TOOLS: [&str; 6] = [
    "promql_range",
    "promql_instant",
    "metric_names",
    "label_values",
    "logql",
    "loki_labels",
];

impl ToolCall {
    /// The call a model asked for by `name` with JSON `arguments`, checked; the error tells the
    /// model what to fix.
    pub fn parse(name: &str, arguments: &str) -> Result<Self, String> {
        let arguments = match arguments.trim() {
            "" => "{}",
            a => a,
        };
        fn args<T: for<'de> Deserialize<'de>>(name: &str, arguments: &str) -> Result<T, String> {
            serde_json::from_str(arguments)
                .map_err(|e| format!("the arguments of {name} are not valid: {e}"))
        }
        let call = match name {
            "promql_range" | "logql" => {
                let a: Ranged = args(name, arguments)?;
                let (query, minutes_before, minutes_after) = (
                    a.query,
                    a.minutes_before.unwrap_or(DEFAULT_BEFORE),
                    a.minutes_after.unwrap_or(DEFAULT_AFTER),
                );
                match name {
                    "logql" => Self::Logql {
                        query,
                        minutes_before,
                        minutes_after,
                    },
                    _ => Self::PromqlRange {
                        query,
                        minutes_before,
                        minutes_after,
                    },
                }
            }
            "promql_instant" => Self::PromqlInstant {
                query: args::<Query>(name, arguments)?.query,
            },
            "metric_names" => Self::MetricNames {
                selector: args::<Names>(name, arguments)?.selector,
            },
            "label_values" => {
                let a: Values = args(name, arguments)?;
                Self::LabelValues {
                    label: a.label,
                    selector: a.selector,
                }
            }
            "loki_labels" => {
                args::<Nothing>(name, arguments)?;
                Self::LokiLabels
            }
            other => {
                return Err(format!(
                    "there is no tool {other:?}; the tools are {}",
                    TOOLS.join(", ")
                ));
            }
        };
        call.check()?;
        Ok(call)
    }

    fn check(&self) -> Result<(), String> {
        let text = |what: &str, s: &str| -> Result<(), String> {
            match s.trim().is_empty() {
                true => Err(format!("{}: {what} is empty", self.name())),
                false if s.chars().count() > MAX_QUERY_CHARS => Err(format!(
                    "{}: {what} is longer than {MAX_QUERY_CHARS} characters",
                    self.name()
                )),
                false => Ok(()),
            }
        };
        let minutes = |before: u32, after: u32| -> Result<(), String> {
            match before > MAX_MINUTES || after > MAX_MINUTES {
                true => Err(format!(
                    "{}: minutes_before and minutes_after are at most {MAX_MINUTES}",
                    self.name()
                )),
                false => Ok(()),
            }
        };
        match self {
            Self::PromqlRange {
                query,
                minutes_before,
                minutes_after,
            }
            | Self::Logql {
                query,
                minutes_before,
                minutes_after,
            } => {
                text("query", query)?;
                minutes(*minutes_before, *minutes_after)
            }
            Self::PromqlInstant { query } => text("query", query),
            Self::MetricNames { selector } => text("selector", selector),
            Self::LabelValues { label, selector } => {
                text("selector", selector)?;
                let mut chars = label.chars();
                let valid = chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
                match valid {
                    true => Ok(()),
                    false => Err(format!("label_values: {label:?} is not a label name")),
                }
            }
            Self::LokiLabels => Ok(()),
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PromqlRange { .. } => TOOLS[0],
            Self::PromqlInstant { .. } => TOOLS[1],
            Self::MetricNames { .. } => TOOLS[2],
            Self::LabelValues { .. } => TOOLS[3],
            Self::Logql { .. } => TOOLS[4],
            Self::LokiLabels => TOOLS[5],
        }
    }

    /// The tools as an OpenAI-compatible chat completion request's `tools`.
    pub fn definitions() -> Value {
        let minutes = json!({
            "type": "integer", "minimum": 0, "maximum": MAX_MINUTES,
        });
        let ranged = |what: &str| {
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": what},
                    "minutes_before": minutes.clone(),
                    "minutes_after": minutes.clone(),
                },
                "required": ["query"],
                "additionalProperties": false,
            })
        };
        let function = |name: &str, description: &str, parameters: Value| {
            json!({
                "type": "function",
                "function": {"name": name, "description": description, "parameters": parameters},
            })
        };
        json!([
            function(
                "promql_range",
                "Run a PromQL range query around the alert's start (default 30 minutes before to 5 after). The answer is summarized per series: baseline, peak, when it changed.",
                ranged("PromQL")
            ),
            function(
                "promql_instant",
                "Run a PromQL instant query at the alert's start.",
                json!({"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"], "additionalProperties": false})
            ),
            function(
                "metric_names",
                "List the metric names with series that a selector such as {instance=\"db-1:9100\"} selects at the alert's start.",
                json!({"type": "object", "properties": {"selector": {"type": "string"}}, "required": ["selector"], "additionalProperties": false})
            ),
            function(
                "label_values",
                "List the values of a label among the series a selector selects at the alert's start.",
                json!({"type": "object", "properties": {"label": {"type": "string"}, "selector": {"type": "string"}}, "required": ["label", "selector"], "additionalProperties": false})
            ),
            function(
                "logql",
                "Run a LogQL log query (a stream selector and line filters) around the alert's start. The lines come back as templates with counts before and after the incident began.",
                ranged("LogQL")
            ),
            function(
                "loki_labels",
                "List the label names of Loki's streams.",
                json!({"type": "object", "properties": {}, "additionalProperties": false})
            ),
        ])
    }
}

/// Runs tool calls against the monitored systems: the context stage implements it.
#[async_trait]
pub trait Investigator: Send + Sync + std::fmt::Debug {
    /// Runs `call` for a group whose alerts started at `alert_at` (Unix seconds). The result is
    /// evidence with `id`, compressed and redacted as gathered evidence is, its summary cut to
    /// `max_tokens`; an error is a message for the model (a bad query, a source down).
    async fn run(
        &self,
        call: &ToolCall,
        alert_at: i64,
        id: &str,
        max_tokens: usize,
    ) -> Result<Evidence, String>;
}

impl ToolCall {
    /// Whether this call asks for nothing `earlier` did not answer already: the same tool and
    /// query or selector (whitespace aside), over a window within the earlier one's. A model that
    /// asks again with a narrower window, or reformatted, is told its result is above.
    #[must_use]
    pub fn repeats(&self, earlier: &ToolCall) -> bool {
        let same = |a: &str, b: &str| {
            a.chars()
                .filter(|c| !c.is_whitespace())
                .eq(b.chars().filter(|c| !c.is_whitespace()))
        };
        match (self, earlier) {
            (
                Self::PromqlRange {
                    query: q,
                    minutes_before: b,
                    minutes_after: a,
                },
                Self::PromqlRange {
                    query: eq,
                    minutes_before: eb,
                    minutes_after: ea,
                },
            )
            | (
                Self::Logql {
                    query: q,
                    minutes_before: b,
                    minutes_after: a,
                },
                Self::Logql {
                    query: eq,
                    minutes_before: eb,
                    minutes_after: ea,
                },
            ) => same(q, eq) && b <= eb && a <= ea,
            (Self::PromqlInstant { query: q }, Self::PromqlInstant { query: eq }) => same(q, eq),
            (Self::MetricNames { selector: s }, Self::MetricNames { selector: es }) => same(s, es),
            (
                Self::LabelValues { label, selector },
                Self::LabelValues {
                    label: el,
                    selector: es,
                },
            ) => label == el && same(selector, es),
            (Self::LokiLabels, Self::LokiLabels) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_the_same_ask_reformatted_or_within_the_earlier_window() {
        let range = |q: &str, b: u32, a: u32| ToolCall::PromqlRange {
            query: q.into(),
            minutes_before: b,
            minutes_after: a,
        };
        let earlier = range("rate(x[5m])", 60, 5);
        assert!(range("rate( x[5m] )", 60, 5).repeats(&earlier));
        assert!(range("rate(x[5m])", 30, 0).repeats(&earlier), "narrower");
        assert!(
            !range("rate(x[5m])", 120, 5).repeats(&earlier),
            "wider asks more"
        );
        assert!(!range("rate(y[5m])", 30, 5).repeats(&earlier));
        let logs = ToolCall::Logql {
            query: "rate(x[5m])".into(),
            minutes_before: 30,
            minutes_after: 0,
        };
        assert!(!logs.repeats(&earlier), "another tool");
        let values = |l: &str| ToolCall::LabelValues {
            label: l.into(),
            selector: "up".into(),
        };
        assert!(values("job").repeats(&values("job")));
        assert!(!values("instance").repeats(&values("job")));
        assert!(ToolCall::LokiLabels.repeats(&ToolCall::LokiLabels));
    }

    #[test]
    fn calls_are_parsed_and_a_wrong_one_says_what_to_fix() {
        assert_eq!(
            ToolCall::parse("promql_range", r#"{"query": "up", "minutes_before": 60}"#),
            Ok(ToolCall::PromqlRange {
                query: "up".into(),
                minutes_before: 60,
                minutes_after: 5,
            })
        );
        assert_eq!(ToolCall::parse("loki_labels", ""), Ok(ToolCall::LokiLabels));
        let wrong = [
            ("promql_range", "{\"query\": ", "not valid"),
            (
                "promql_range",
                r#"{"query": "up", "minutes_before": 999}"#,
                "at most 180",
            ),
            ("promql_range", r#"{"query": "  "}"#, "query is empty"),
            (
                "promql_instant",
                r#"{"query": "up", "at": 1}"#,
                "unknown field `at`",
            ),
            (
                "label_values",
                r#"{"label": "a-b", "selector": "up"}"#,
                "not a label name",
            ),
            ("metric_names", r#"{}"#, "missing field `selector`"),
            ("rm_rf", "{}", "there is no tool \"rm_rf\""),
        ];
        for (name, arguments, says) in wrong {
            let err = ToolCall::parse(name, arguments).expect_err(arguments);
            assert!(err.contains(says), "{name} {arguments}: {err}");
        }
        let long = format!(r#"{{"query": "{}"}}"#, "x".repeat(MAX_QUERY_CHARS + 1));
        assert!(ToolCall::parse("logql", &long).is_err());
    }

    #[test]
    fn the_definitions_name_every_tool_in_the_openai_format() {
        let defs = ToolCall::definitions();
        let names: Vec<&str> = defs
            .as_array()
            .expect("a list")
            .iter()
            .map(|d| {
                assert_eq!(d["type"], "function");
                assert_eq!(d["function"]["parameters"]["type"], "object");
                d["function"]["name"].as_str().expect("a name")
            })
            .collect();
        assert_eq!(names, TOOLS);
    }
}
