//! Cost control: how many requests run at once, how many requests and tokens a minute, and a cache
//! of analyses keyed by the group and its context.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aiops_model::{Analysis, Context, WebhookPayload};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};

const MINUTE: Duration = Duration::from_secs(60);
/// Analyses kept in the cache at most; the oldest go first.
const CACHE_ENTRIES: usize = 1024;

/// Limits on requests in flight, requests per minute and tokens per minute.
#[derive(Debug)]
pub struct Limits {
    in_flight: Semaphore,
    requests_per_minute: u32,
    tokens_per_minute: u32,
    /// Requests sent in the last minute: when, and their token estimate.
    window: Mutex<VecDeque<(Instant, u32)>>,
}

impl Limits {
    pub fn new(concurrency: usize, requests_per_minute: u32, tokens_per_minute: u32) -> Self {
        Self {
            in_flight: Semaphore::new(concurrency.max(1)),
            requests_per_minute,
            tokens_per_minute,
            window: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits for a slot among the analyses talking to the LLM at once. The permit ends the slot when
    /// dropped.
    pub async fn slot(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        match self.in_flight.acquire().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the semaphore is never closed"),
        }
    }

    /// Waits for room in the per-minute budgets for one HTTP request of about `tokens`, then books
    /// it. Every request is booked: a retry and a repair round count like the first request.
    pub async fn book(&self, tokens: u32) {
        // No per-minute budget: nothing to count (the window would only cost time and memory).
        if self.requests_per_minute == 0 && self.tokens_per_minute == 0 {
            return;
        }
        loop {
            let wait = {
                let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while window
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) >= MINUTE)
                {
                    window.pop_front();
                }
                let requests = u32::try_from(window.len()).unwrap_or(u32::MAX);
                let used: u32 = window.iter().map(|(_, t)| *t).sum();
                let over_requests =
                    self.requests_per_minute > 0 && requests >= self.requests_per_minute;
                // A request larger than the whole budget still goes, alone in its minute.
                let over_tokens = self.tokens_per_minute > 0
                    && !window.is_empty()
                    && used.saturating_add(tokens) > self.tokens_per_minute;
                match (over_requests || over_tokens, window.front()) {
                    (true, Some((oldest, _))) => MINUTE.saturating_sub(now.duration_since(*oldest)),
                    _ => {
                        window.push_back((now, tokens));
                        Duration::ZERO
                    }
                }
            };
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait + Duration::from_millis(10)).await;
        }
    }
}

/// Analyses by the hash of the group and its context.
#[derive(Debug)]
pub struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Instant, Analysis)>>,
}

impl Cache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The key: the group (its key, status and alerts' fingerprints and states) and its context.
    pub fn key(payload: &WebhookPayload, context: &Context) -> [u8; 32] {
        let mut alerts: Vec<String> = payload
            .alerts
            .iter()
            .map(|a| format!("{}|{}", a.fingerprint, a.status.as_str()))
            .collect();
        alerts.sort_unstable();
        let mut hasher = Sha256::new();
        hasher.update(payload.group_key.as_bytes());
        hasher.update([0]);
        hasher.update(payload.status.as_str().as_bytes());
        for a in &alerts {
            hasher.update([0]);
            hasher.update(a.as_bytes());
        }
        hasher.update([0]);
        // The evidence, not the window: the same findings a minute later are the same context.
        hasher.update(serde_json::to_vec(&context.evidence).unwrap_or_default());
        hasher.finalize().into()
    }

    pub fn get(&self, key: &[u8; 32]) -> Option<Analysis> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, a)| a.clone())
    }

    pub fn put(&self, key: [u8; 32], analysis: &Analysis) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        if entries.len() >= CACHE_ENTRIES
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| *k)
        {
            entries.remove(&oldest);
        }
        entries.insert(key, (Instant::now(), analysis.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_request_budget_makes_the_next_request_wait_for_the_minute() {
        let limits = Limits::new(4, 2, 0);
        let start = Instant::now();
        limits.book(10).await;
        limits.book(10).await;
        assert!(start.elapsed() < Duration::from_secs(1));
        let third = tokio::time::timeout(Duration::from_millis(200), limits.book(10)).await;
        assert!(
            third.is_err(),
            "a third request within the minute must wait"
        );
    }

    #[tokio::test]
    async fn the_token_budget_lets_a_large_request_go_alone() {
        let limits = Limits::new(4, 0, 100);
        limits.book(500).await;
        let second = tokio::time::timeout(Duration::from_millis(200), limits.book(10)).await;
        assert!(second.is_err(), "the minute's tokens are spent");
    }
}
