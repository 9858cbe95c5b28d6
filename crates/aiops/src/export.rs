//! `aiops eval --export-feedback DIR`: every analysis an on-call judged (Slack's Right / Wrong) as
//! the skeleton of an eval scenario, so real incidents become evals. Per judged job, a folder with
//! `alert.json` (the group as Alertmanager sent it, `startsAt` made relative: `-15m`),
//! `expect.toml` (the verdicts; the category when the analysis was judged right, `unknown` with a
//! TODO when wrong), and `evidence.md` (what aiops saw: each cited evidence with its query and
//! finding, the root cause it gave). The metrics and logs are not in the store: `evidence.md` lists
//! the queries to export them with (docs/EVAL.md, "Adding a scenario"); until `metrics.om` and
//! `logs.jsonl` are there, `aiops eval --check` says what is missing.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use aiops_model::{JobRecord, SystemClock, Verdict};
use anyhow::Context as _;
use serde_json::Value;

use crate::config::Config;

/// Judged jobs exported at most, the most recently judged first.
const MAX_EXPORTED: u32 = 500;

pub async fn export_feedback(config: &Config, dir: &Path) -> anyhow::Result<()> {
    let backend = crate::app::open_store(config, Arc::new(SystemClock)).await?;
    let ids = backend.store.judged(MAX_EXPORTED).await?;
    let mut written = 0;
    for id in ids {
        let Some(job) = backend.store.get(id).await? else {
            continue;
        };
        let name = format!("feedback-{}-{}", slug(&job.alertname), &id.to_string()[..8]);
        let folder = dir.join(&name);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        write(&folder.join("alert.json"), &alert(&job)?)?;
        write(&folder.join("expect.toml"), &expect(&job)?)?;
        write(&folder.join("evidence.md"), &evidence(&job))?;
        println!("{name}");
        written += 1;
    }
    eprintln!(
        "{written} judged analyses written to {} as scenario skeletons",
        dir.display()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c.is_ascii_alphanumeric() {
            true if c.is_ascii_uppercase() && !out.is_empty() && !out.ends_with('-') => {
                out.push('-');
                out.push(c.to_ascii_lowercase());
            }
            true => out.push(c.to_ascii_lowercase()),
            false if !out.ends_with('-') => out.push('-'),
            false => {}
        }
    }
    out.trim_matches('-').to_owned()
}

/// The group as Alertmanager sent it, its alerts starting 15 minutes before the data's end.
fn alert(job: &JobRecord) -> anyhow::Result<String> {
    let mut payload = job.payload.clone();
    if let Some(alerts) = payload["alerts"].as_array_mut() {
        for a in alerts {
            a["startsAt"] = Value::String("-15m".into());
        }
    }
    Ok(serde_json::to_string_pretty(&payload)? + "\n")
}

fn expect(job: &JobRecord) -> anyhow::Result<String> {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let analysis = job.analysis.as_ref();
    let judged_right = job
        .feedback
        .last()
        .is_some_and(|f| f.verdict == Verdict::Right);
    let category = match (analysis, judged_right) {
        (Some(a), true) => a.category.as_str(),
        _ => "unknown",
    };
    let mut out = String::new();
    writeln!(
        out,
        "# Exported by `aiops eval --export-feedback` from analysis {} ({}).",
        job.id, job.created_at
    )?;
    for f in &job.feedback {
        writeln!(
            out,
            "# {} judged it {} at {}.",
            f.user,
            f.verdict.as_str(),
            f.at
        )?;
    }
    if let Some(a) = analysis {
        writeln!(
            out,
            "# aiops said ({}): {}",
            a.category.as_str(),
            a.root_cause
        )?;
    }
    if !judged_right {
        writeln!(
            out,
            "# TODO: the real category and culprit (the on-call said the analysis was wrong)."
        )?;
    }
    writeln!(
        out,
        "# TODO: metrics.om and logs.jsonl from the queries in evidence.md; facts; secrets."
    )?;
    writeln!(
        out,
        "description = {}",
        quote(analysis.map_or("", |a| a.summary.as_str()))
    )?;
    writeln!(out, "category = {}", quote(category))?;
    writeln!(out, "culprit = []")?;
    writeln!(out, "tags = [\"from_feedback\"]")?;
    Ok(out)
}

fn evidence(job: &JobRecord) -> String {
    let mut out = format!("# What aiops saw: {} ({})\n\n", job.alertname, job.id);
    let Some(a) = &job.analysis else {
        out.push_str("No analysis was stored.\n");
        return out;
    };
    let _ = writeln!(out, "Root cause it gave: {}\n", a.root_cause);
    for e in &a.evidence {
        let _ = writeln!(out, "## {}\n", e.id);
        if let Some(q) = &e.query {
            let _ = writeln!(out, "```\n{q}\n```\n");
        }
        if let Some(f) = &e.finding {
            let _ = writeln!(out, "{f}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_folder_slugs() {
        assert_eq!(slug("KubePodCrashLooping"), "kube-pod-crash-looping");
        assert_eq!(slug("node_cpu:high"), "node-cpu-high");
    }
}
