//! Compressing log lines: Drain templates with counts before and after the alert started, and a few
//! verbatim lines from just before it.

use std::fmt::Write as _;

use crate::drain::Drain;
use crate::loki::LogLine;
use crate::series::at;

/// One mined template and how it behaved around the alert.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSummary {
    pub template: String,
    pub example: String,
    /// Unix seconds.
    pub first_seen: f64,
    pub before: usize,
    pub after: usize,
    /// The labels of the stream the example line came from.
    pub stream: std::collections::BTreeMap<String, String>,
}

impl TemplateSummary {
    /// Seen only from shortly before the alert on: the strongest log evidence.
    pub fn is_new(&self) -> bool {
        self.before == 0
    }

    /// New templates first, then by how much more often they appear after the start.
    fn rank(&self) -> f64 {
        let growth = (self.after as f64 + 1.0) / (self.before as f64 + 1.0);
        let novelty = if self.is_new() { 1e6 } else { 0.0 };
        novelty + growth * 1000.0 + self.after as f64
    }

    pub fn line(&self) -> String {
        let mut s = format!(
            "[{}x after, {}x before{}] {}",
            self.after,
            self.before,
            if self.is_new() { ", new" } else { "" },
            self.template
        );
        let _ = write!(
            s,
            " (first {}; e.g. {:?})",
            at(self.first_seen),
            self.example
        );
        s
    }
}

/// Templates of `lines`, ranked; `start` and `new_since` in Unix seconds: a line at or after
/// `new_since` counts as "after" (the incident's lead time before the alert belongs to it).
pub fn mine(lines: &[LogLine], new_since: f64, keep: usize) -> Vec<TemplateSummary> {
    let mut drain = Drain::default();
    let mut stats: Vec<TemplateSummary> = Vec::new();
    for line in lines {
        let i = drain.add(&line.line);
        let t = line.ts_ns as f64 / 1e9;
        if i == stats.len() {
            stats.push(TemplateSummary {
                template: String::new(),
                example: truncate(&line.line, 240),
                first_seen: t,
                before: 0,
                after: 0,
                stream: line.stream.clone(),
            });
        }
        let s = &mut stats[i];
        s.first_seen = s.first_seen.min(t);
        match t >= new_since {
            true => s.after += 1,
            false => s.before += 1,
        }
    }
    for (s, c) in stats.iter_mut().zip(drain.clusters()) {
        s.template = truncate(&c.template(), 400);
    }
    stats.sort_by(|a, b| b.rank().total_cmp(&a.rank()));
    stats.truncate(keep);
    stats
}

pub use aiops_model::facts::truncate;

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: i64, text: &str) -> LogLine {
        LogLine {
            ts_ns: t * 1_000_000_000,
            stream: Default::default(),
            line: text.into(),
        }
    }

    #[test]
    fn a_template_new_at_the_alert_ranks_first() {
        let mut lines = Vec::new();
        for i in 0..50 {
            lines.push(line(i, &format!("GET /health 200 in {i}ms")));
        }
        for i in 40..45 {
            lines.push(line(
                i,
                &format!("ERROR pool exhausted: 0 of {i} connections free"),
            ));
        }
        lines.sort_by_key(|l| l.ts_ns);
        let mined = mine(&lines, 40.0, 5);
        assert_eq!(
            mined[0].template,
            "ERROR pool exhausted: <*> of <*> connections free"
        );
        assert!(mined[0].is_new());
        assert_eq!((mined[0].before, mined[0].after), (0, 5));
        assert_eq!(mined[1].template, "GET /health <*> in <*>");
        assert_eq!((mined[1].before, mined[1].after), (40, 10));
        assert!(mined[0].line().contains("[5x after, 0x before, new]"));
    }
}
