//! The stdout sink. Logs go to stderr, so stdout carries only deliveries.

use std::io::Write;

use aiops_model::{Notification, Notifier, StageError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Document;

/// How the stdout sink prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy)]
pub struct StdoutNotifier {
    format: StdoutFormat,
}

impl StdoutNotifier {
    pub fn new(format: StdoutFormat) -> Self {
        Self { format }
    }

    pub fn render(&self, doc: &Document) -> String {
        match self.format {
            StdoutFormat::Text => doc.to_text(),
            StdoutFormat::Json => {
                let mut line = serde_json::to_string(doc).unwrap_or_default();
                line.push('\n');
                line
            }
        }
    }
}

#[async_trait]
impl Notifier for StdoutNotifier {
    fn name(&self) -> &str {
        "stdout"
    }

    async fn deliver(&self, notification: Notification<'_>) -> Result<Option<String>, StageError> {
        let text = self.render(&Document::new(&notification));
        // One locked write per delivery keeps concurrent deliveries from interleaving.
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| StageError::retriable(format!("cannot write to stdout: {e}")))?;
        Ok(None)
    }
}
