//! Delivering webhooks: one queued delivery from the webhook queue to its
//! receiver ([`deliver`]: read the webhook and its endpoint's health, send,
//! record, decide with [`crate::webhook::decide`], act), and the HTTP API's
//! synchronous attempts (`test`, replay). The `webhook` function is the SQS
//! glue around [`deliver`].

mod process;

pub use process::{Done, Received, deliver};

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::Context;
use crate::store::{AttemptRecord, Breaker, Health};
use crate::webhook::{self, Attempt, Delivery, LogEntry, LogStatus, Outcome, WebhookConfig};

/// What sends webhook deliveries: the context and one pooled delivery client.
#[derive(Clone)]
pub struct WebhookSender {
    ctx: Context,
    /// Built on first use: building it loads the system's root certificates
    /// (milliseconds), which the HTTP API's cold start should not pay for a
    /// route (test, replay) it rarely serves.
    client: Arc<OnceLock<reqwest::Client>>,
}

impl WebhookSender {
    /// A deliverer whose client enforces the configured URL policy (SSRF guard).
    pub fn new(ctx: Context) -> Self {
        WebhookSender { ctx, client: Arc::new(OnceLock::new()) }
    }

    /// The context.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The pooled delivery client (vetted DNS, no redirects).
    pub fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| crate::ssrf::delivery_client(self.ctx.config.webhook_urls, Duration::from_secs(30)))
    }

    /// One synchronous attempt, logged like any other (the API's test and
    /// replay use it). Returns the attempt.
    pub async fn attempt(&self, hook: &WebhookConfig, delivery: &Delivery, attempt: u32) -> Attempt {
        let now = crate::time::now_millis();
        let secrets = hook.signing_secrets(now);
        let result =
            webhook::send(self.client(), hook, &secrets, delivery, attempt, self.ctx.config.webhook_urls).await;
        let entry = log_entry(delivery, &result, result.outcome.status(), None, now);
        if let Err(e) = self.record(&entry, result.outcome == Outcome::Delivered, self.breaker()).await {
            tracing::warn!(error = %e, "attempt not logged");
        }
        result
    }

    /// The configured circuit breaker.
    pub fn breaker(&self) -> Breaker {
        let settings = &self.ctx.config.webhooks;
        Breaker { threshold: settings.breaker_threshold, cooldown_ms: settings.breaker_cooldown.as_millis() as i64 }
    }

    /// Logs `entry` (bounded) and feeds `breaker`: one round trip.
    pub async fn record(
        &self,
        entry: &LogEntry,
        success: bool,
        breaker: Breaker,
    ) -> Result<Health, crate::store::StoreError> {
        let settings = &self.ctx.config.webhooks;
        crate::metrics::webhook_attempt(entry.status.as_str(), std::time::Duration::from_millis(entry.duration_ms));
        let text = serde_json::to_string(&entry.clone().bounded(settings.log_entry_bytes)).expect("plain JSON");
        self.ctx
            .store
            .webhook_attempt(
                &entry.delivery.tenant_id,
                &AttemptRecord {
                    webhook_id: entry.webhook_id.as_str(),
                    delivery_id: &entry.delivery_id,
                    entry: &text,
                    success,
                    at_ms: entry.created_at,
                    first: entry.attempt <= 1,
                    dead: entry.status == LogStatus::Dead,
                    duration_ms: entry.duration_ms,
                },
                breaker,
                settings.log_bounds(),
            )
            .await
    }
}

/// The log entry of attempt `a` of `delivery`, with its `status` and the next attempt's time.
pub fn log_entry(delivery: &Delivery, a: &Attempt, status: LogStatus, next: Option<i64>, now: i64) -> LogEntry {
    LogEntry {
        webhook_id: delivery.webhook_id.clone(),
        delivery_id: delivery.delivery_id.clone(),
        event: delivery.event,
        attempt: a.attempt,
        response_code: a.status,
        response_body: a.body_excerpt.clone(),
        error: a.error.clone(),
        duration_ms: a.duration_ms,
        status,
        created_at: now,
        next_attempt_at: next,
        delivery: delivery.clone(),
        data_omitted: None,
    }
}
