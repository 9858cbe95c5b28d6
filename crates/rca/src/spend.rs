//! `llm.daily_budget_usd`: what the LLM may cost per UTC day, a budget that cannot be exceeded.
//!
//! Before each request its worst case (the request's estimated tokens at the prompt price,
//! `llm.max_completion_tokens` at the completion price) is booked in the ledger, and the request is
//! sent only if the day's total stays within the budget; once the answer's usage is known the
//! booking is corrected to the real cost (to nothing when no answer came). The daemon's ledger is
//! the store, shared by every replica and kept across restarts; `aiops analyze` and `aiops eval`
//! count in memory. A request cut off by the deadline keeps its worst case booked: the count errs
//! on the side of the budget.

use std::sync::{Arc, Mutex, PoisonError};

use aiops_model::{Ledger, StoreError};
use async_trait::async_trait;

use crate::config::LlmConfig;

/// The budget, its prices and where the spend is booked.
#[derive(Debug)]
pub(crate) struct DailyBudget {
    usd: f64,
    price_in: f64,
    price_out: f64,
    ledger: Arc<dyn Ledger>,
}

/// A request's worst case, booked; [`DailyBudget::settle`] corrects it.
#[derive(Debug)]
pub(crate) struct Booking {
    day: i64,
    usd: f64,
}

impl DailyBudget {
    pub(crate) fn new(config: &LlmConfig) -> Self {
        Self {
            usd: config.daily_budget_usd,
            price_in: config.price_per_mtok_in,
            price_out: config.price_per_mtok_out,
            ledger: Arc::new(MemoryLedger::default()),
        }
    }

    pub(crate) fn with_ledger(self, ledger: Arc<dyn Ledger>) -> Self {
        Self { ledger, ..self }
    }

    fn cost(&self, prompt: u32, completion: u32) -> f64 {
        (f64::from(prompt) * self.price_in + f64::from(completion) * self.price_out) / 1e6
    }

    /// Books a request of `prompt` tokens that may answer `completion` tokens, or refuses it when
    /// the day's spend with it could pass the budget. No budget: nothing is booked.
    pub(crate) async fn reserve(
        &self,
        prompt: u32,
        completion: u32,
    ) -> Result<Option<Booking>, String> {
        if self.usd <= 0.0 {
            return Ok(None);
        }
        let day = utc_day();
        let worst = self.cost(prompt, completion);
        let total = self
            .ledger
            .book(day, worst)
            .await
            .map_err(|e| unknown(&e))?;
        if total <= self.usd {
            return Ok(Some(Booking { day, usd: worst }));
        }
        if let Err(e) = self.ledger.book(day, -worst).await {
            tracing::warn!(error = %e, "cannot give back a refused LLM request's booking");
        }
        Err(format!(
            "LLM budget exhausted: daily spend ${:.6} of ${:.6} (llm.daily_budget_usd), and this \
             request may cost up to ${worst:.6}",
            (total - worst).max(0.0),
            self.usd
        ))
    }

    /// Corrects a booking to what the request cost: `prompt` and `completion` tokens by the
    /// answer's usage (0 and 0 when no answer came).
    pub(crate) async fn settle(&self, booking: Option<Booking>, prompt: u32, completion: u32) {
        let Some(booking) = booking else {
            return;
        };
        let delta = self.cost(prompt, completion) - booking.usd;
        if let Err(e) = self.ledger.book(booking.day, delta).await {
            tracing::warn!(error = %e, "cannot correct the LLM's daily spend; its worst case stays booked");
        }
    }
}

/// The reason when the ledger cannot be read: no request is sent on an unknown spend.
fn unknown(e: &StoreError) -> String {
    format!("LLM budget exhausted: daily spend unknown, the store failed ({e})")
}

/// Today's UTC day number.
fn utc_day() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(0)
}

/// The spend of this process only: `aiops analyze`, `aiops eval`, tests.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    days: Mutex<std::collections::HashMap<i64, f64>>,
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn book(&self, day: i64, usd: f64) -> Result<f64, StoreError> {
        let mut days = self.days.lock().unwrap_or_else(PoisonError::into_inner);
        let total = days.entry(day).or_insert(0.0);
        *total += usd;
        Ok(*total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(usd: f64) -> DailyBudget {
        DailyBudget::new(&LlmConfig {
            daily_budget_usd: usd,
            price_per_mtok_in: 1.0,
            price_per_mtok_out: 2.0,
            ..LlmConfig::default()
        })
    }

    #[tokio::test]
    async fn a_request_whose_worst_case_would_pass_the_budget_is_refused_and_books_nothing() {
        let b = budget(0.01);
        // 4,000 in + 1,000 out at $1 / $2 per million: $0.006 at worst.
        let first = b.reserve(4_000, 1_000).await.expect("within");
        let refused = b.reserve(4_000, 1_000).await.expect_err("0.012 > 0.01");
        assert!(
            refused.starts_with("LLM budget exhausted: daily spend $0.006000 of $0.010000"),
            "{refused}"
        );
        // The first cost less than its worst case: 1,000 in + 100 out = $0.0012.
        b.settle(first, 1_000, 100).await;
        let second = b.reserve(4_000, 1_000).await.expect("0.0072 <= 0.01");
        b.settle(second, 0, 0).await;
        let day = utc_day();
        let total = b.ledger.book(day, 0.0).await.expect("read");
        assert!((total - 0.0012).abs() < 1e-12, "{total}");
    }

    #[tokio::test]
    async fn no_budget_books_nothing() {
        let b = budget(0.0);
        assert!(
            b.reserve(u32::MAX, u32::MAX)
                .await
                .expect("no limit")
                .is_none()
        );
        assert_eq!(b.ledger.book(utc_day(), 0.0).await.expect("read"), 0.0);
    }
}
