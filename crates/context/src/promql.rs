//! Reading an alerting rule's expression: the signal it compares against a threshold, and the
//! selectors it is made of.

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};

use crate::escape::{is_label_name, is_metric_name, quote};
use crate::series::{Comparison, Threshold};

/// What the planner reads from a rule expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The expression to graph: the side of a top-level comparison that is not a number (so the
    /// whole shape is seen, not only where the condition held), else the expression itself.
    pub signal: String,
    pub threshold: Option<Threshold>,
    /// Each vector selector with a metric name.
    pub selectors: Vec<SelectorPart>,
}

/// A vector selector of the expression: its metric and its own matchers, rendered as PromQL.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectorPart {
    pub metric: String,
    /// Matchers other than the name, e.g. `status=~"5.."`.
    pub matchers: Vec<String>,
    /// Label names the selector already constrains.
    pub constrained: Vec<String>,
}

/// Reads `expr`; an error is the parser's message.
pub fn read_rule(expr: &str) -> Result<Rule, String> {
    let parsed = parser::parse(expr)?;
    let (signal, threshold) = split_threshold(&parsed);
    let mut collector = Selectors::default();
    let _ = walk_expr(&mut collector, &parsed);
    Ok(Rule {
        signal: signal.map_or_else(|| expr.trim().to_owned(), |s| s.to_string()),
        threshold,
        selectors: collector.parts,
    })
}

fn unparen(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

fn number(expr: &Expr) -> Option<f64> {
    match unparen(expr) {
        Expr::NumberLiteral(n) => Some(n.val),
        _ => None,
    }
}

/// `signal > 0.9` → (`signal`, `> 0.9`); `0.9 < signal` likewise. A condition joined on with `and`
/// or `unless` (`… < 10 and on(instance) node_filesystem_readonly == 0`) only filters which series
/// alert: the comparison on its left is the signal, so every series of it (the peers that do not
/// alert too) is graphed.
fn split_threshold(expr: &Expr) -> (Option<&Expr>, Option<Threshold>) {
    let Expr::Binary(b) = unparen(expr) else {
        return (None, None);
    };
    if matches!(b.op.to_string().to_lowercase().as_str(), "and" | "unless") {
        let (signal, threshold) = split_threshold(&b.lhs);
        return match threshold {
            Some(_) => (signal, threshold),
            None => (None, None),
        };
    }
    if !b.op.is_comparison_operator() || b.return_bool() {
        return (None, None);
    }
    let op = match b.op.to_string().as_str() {
        ">" => Comparison::Greater,
        ">=" => Comparison::GreaterOrEqual,
        "<" => Comparison::Less,
        "<=" => Comparison::LessOrEqual,
        "==" => Comparison::Equal,
        "!=" => Comparison::NotEqual,
        _ => return (None, None),
    };
    match (number(&b.lhs), number(&b.rhs)) {
        (None, Some(value)) => (Some(&*b.lhs), Some(Threshold { op, value })),
        (Some(value), None) => {
            let flipped = match op {
                Comparison::Greater => Comparison::Less,
                Comparison::GreaterOrEqual => Comparison::LessOrEqual,
                Comparison::Less => Comparison::Greater,
                Comparison::LessOrEqual => Comparison::GreaterOrEqual,
                same => same,
            };
            (Some(&*b.rhs), Some(Threshold { op: flipped, value }))
        }
        _ => (None, None),
    }
}

#[derive(Default)]
struct Selectors {
    parts: Vec<SelectorPart>,
}

impl ExprVisitor for Selectors {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        let vs = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        });
        let Some(metric) = name.filter(|n| is_metric_name(n)) else {
            return Ok(true);
        };
        let mut part = SelectorPart {
            metric,
            matchers: Vec::new(),
            constrained: Vec::new(),
        };
        for m in vs
            .matchers
            .matchers
            .iter()
            .filter(|m| m.name != "__name__" && is_label_name(&m.name))
        {
            let op = match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
                MatchOp::Re(_) => "=~",
                MatchOp::NotRe(_) => "!~",
            };
            part.matchers
                .push(format!("{}{op}{}", m.name, quote(&m.value)));
            part.constrained.push(m.name.clone());
        }
        if !self.parts.contains(&part) {
            self.parts.push(part);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comparison_splits_into_signal_and_threshold() {
        let rule = read_rule("instance_cpu_usage{job=\"node\"} > 0.9").expect("parses");
        assert_eq!(rule.signal, "instance_cpu_usage{job=\"node\"}");
        assert_eq!(
            rule.threshold,
            Some(Threshold {
                op: Comparison::Greater,
                value: 0.9
            })
        );
        assert_eq!(rule.selectors.len(), 1);
        assert_eq!(rule.selectors[0].metric, "instance_cpu_usage");
        assert_eq!(rule.selectors[0].matchers, ["job=\"node\""]);

        let flipped = read_rule("(0.05 <= (rate(errors_total[5m]) / rate(requests_total[5m])))")
            .expect("parses");
        assert_eq!(
            flipped.threshold.map(|t| (t.op, t.value)),
            Some((Comparison::GreaterOrEqual, 0.05))
        );
        let metrics: Vec<&str> = flipped
            .selectors
            .iter()
            .map(|s| s.metric.as_str())
            .collect();
        assert_eq!(metrics, ["errors_total", "requests_total"]);
    }

    #[test]
    fn a_condition_joined_with_and_leaves_the_comparison_on_its_left() {
        let rule = read_rule(
            "(node_filesystem_avail_bytes * 100) / node_filesystem_size_bytes < 10 and ON (instance, device, mountpoint) node_filesystem_readonly == 0",
        )
        .expect("parses");
        assert_eq!(
            rule.signal,
            "(node_filesystem_avail_bytes * 100) / node_filesystem_size_bytes"
        );
        assert_eq!(
            rule.threshold.map(|t| (t.op, t.value)),
            Some((Comparison::Less, 10.0))
        );
        assert_eq!(
            rule.selectors.len(),
            3,
            "the condition's metric is still a component"
        );
        let plain = read_rule("up == 0 and on(job) vector(1)").expect("parses");
        assert_eq!(plain.signal, "up");
        let none = read_rule("a and b").expect("parses");
        assert_eq!((none.signal.as_str(), none.threshold), ("a and b", None));
    }

    #[test]
    fn no_threshold_keeps_the_expression() {
        let rule = read_rule("absent(up{job=\"api\"})").expect("parses");
        assert_eq!(rule.signal, "absent(up{job=\"api\"})");
        assert_eq!(rule.threshold, None);
        assert_eq!(read_rule("up == bool 0").expect("parses").threshold, None);
        assert!(read_rule("up{").is_err());
    }
}
