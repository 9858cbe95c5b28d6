//! What gets notified. A filter in `[notify.filter]` keeps Slack and the webhook for the alerts that
//! matter (the seed design's "critical alerts only", by configuration); every job is still stored,
//! analyzed and visible in the history, and the local sinks (stdout, file) still get it.

use aiops_model::{Context, Notification, Notifier, StageError, WebhookPayload};
use async_trait::async_trait;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::LabelMap;

/// The `[notify.filter]` section. Empty parts let everything through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// Severities that are notified (the `severity` label), e.g. `["critical", "warning"]`.
    pub severities: Vec<String>,
    /// A regular expression the alert name must match (anchored), e.g. `"Node.*|Kube.*"`.
    pub alertname: String,
    /// Label name → anchored regular expression its value must match, e.g. `{ team = "db|infra" }`.
    pub labels: LabelMap,
}

impl Filter {
    /// Checks the regular expressions.
    pub fn validate(&self) -> Result<(), String> {
        self.compiled().map(drop)
    }

    fn compiled(&self) -> Result<Compiled, String> {
        let anchored = |p: &str| Regex::new(&format!("^(?:{p})$"));
        let alertname = match self.alertname.is_empty() {
            true => None,
            false => Some(
                anchored(&self.alertname).map_err(|e| format!("notify.filter.alertname: {e}"))?,
            ),
        };
        let labels = self
            .labels
            .iter()
            .map(|(k, v)| {
                anchored(v)
                    .map(|re| (k.clone(), re))
                    .map_err(|e| format!("notify.filter.labels.{k}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Compiled {
            severities: self.severities.iter().map(|s| s.to_lowercase()).collect(),
            alertname,
            labels,
        })
    }
}

/// A [`Filter`] with its regular expressions compiled.
#[derive(Debug)]
struct Compiled {
    severities: Vec<String>,
    alertname: Option<Regex>,
    labels: Vec<(String, Regex)>,
}

/// A sink behind a filter. A filtered notification counts as delivered, with the detail `filtered`,
/// so the history shows why nothing was posted.
#[derive(Debug)]
pub struct Filtered<N> {
    inner: N,
    filter: Compiled,
}

impl<N: Notifier> Filtered<N> {
    pub fn new(inner: N, filter: &Filter) -> Result<Self, String> {
        Ok(Self {
            inner,
            filter: filter.compiled()?,
        })
    }

    /// Whether the group is notified.
    pub fn allows(&self, payload: &WebhookPayload) -> bool {
        let f = &self.filter;
        let severity = payload.label("severity").unwrap_or("").to_lowercase();
        (f.severities.is_empty() || f.severities.contains(&severity))
            && f.alertname
                .as_ref()
                .is_none_or(|re| re.is_match(payload.alertname()))
            && f.labels
                .iter()
                .all(|(k, re)| re.is_match(payload.label(k).unwrap_or("")))
    }
}

#[async_trait]
impl<N: Notifier> Notifier for Filtered<N> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn deliver(&self, notification: Notification<'_>) -> Result<Option<String>, StageError> {
        if !self.allows(notification.payload) {
            return Ok(Some("filtered".into()));
        }
        self.inner.deliver(notification).await
    }

    async fn first_look(
        &self,
        notification: Notification<'_>,
        context: &Context,
    ) -> Result<Option<String>, StageError> {
        match self.allows(notification.payload) {
            true => self.inner.first_look(notification, context).await,
            false => Ok(None),
        }
    }

    async fn deliver_after(
        &self,
        notification: Notification<'_>,
        first_look: Option<&str>,
    ) -> Result<Option<String>, StageError> {
        if !self.allows(notification.payload) {
            return Ok(Some("filtered".into()));
        }
        self.inner.deliver_after(notification, first_look).await
    }
}
