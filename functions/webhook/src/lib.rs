//! `webhook`: delivers queued webhook deliveries (SQS-triggered, with
//! `ReportBatchItemFailures`).
//!
//! For each record, concurrently:
//!
//! 1. Load the webhook's current configuration, so a disable or a secret
//!    rotation takes effect at once. A deleted or disabled webhook's
//!    deliveries are dropped (and logged).
//! 2. If the endpoint's circuit breaker is open, the delivery waits: it is
//!    queued again, delayed until the pause ends, with the attempts it has
//!    made so far, and does not spend an attempt.
//! 3. Sign (current secret, plus any in its rotation grace period) and POST
//!    through one pooled client with the webhook's timeout.
//! 4. 2xx: done. 410: done, and the webhook is disabled. 408, 429, 5xx,
//!    timeouts and connection errors: the message's visibility is set to the
//!    backoff for this attempt (a `Retry-After` is honoured, up to 12 h) and
//!    the record is listed in `batchItemFailures`, so SQS delivers it again
//!    then. Any other 4xx, or the last attempt failed: the delivery goes to
//!    the dead-letter queue with its history.
//! 5. A retry that would wait past the queue's retention is dead-lettered
//!    now; a delivery for a deleted or disabled webhook is logged `dropped`.
//! 6. Every attempt is logged (status, first 20 KB of the body, error,
//!    duration, attempt) and counted by the breaker. An endpoint failing for
//!    longer than `WEBHOOK_DISABLE_AFTER_SECS` is disabled and a
//!    `system.alert` event goes to its tenant.

use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use serde_json::json;
use switchboard::Context;
use switchboard::event::{Envelope, EventType, Target};
use switchboard::ids::TenantId;
use switchboard::store::{Breaker, Health, StoreError};
use switchboard::webhook::{self, Attempt, Delivery, LogStatus, Outcome, WebhookConfig};

pub use switchboard::webhook_sender::{WebhookSender, log_entry};

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Done {
    /// Delete it.
    Finished,
    /// Leave it; SQS delivers it again after its visibility timeout.
    Again,
}

/// Handles one SQS batch; the records to retry come back in `batchItemFailures`.
pub async fn handle(d: &WebhookSender, event: SqsEvent) -> SqsBatchResponse {
    let outcomes = futures::future::join_all(event.records.iter().map(|r| process(d, r))).await;
    let mut response = SqsBatchResponse::default();
    for (record, done) in event.records.iter().zip(outcomes) {
        if done == Done::Again {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

async fn process(d: &WebhookSender, record: &SqsMessage) -> Done {
    let ctx = d.context();
    let body = record.body.as_deref().unwrap_or_default();
    let delivery: Delivery = match serde_json::from_str(body) {
        Ok(delivery) => delivery,
        Err(e) => {
            tracing::error!(message_id = ?record.message_id, error = %e, "not a webhook delivery: dead-lettered");
            return dead_letter(d, json!({"body": body, "error": format!("not a webhook delivery: {e}")})).await;
        }
    };
    let receives: u32 =
        record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1).max(1);
    let attempt = delivery.attempt_base + receives;
    let span = tracing::info_span!("delivery", tenant_id = %delivery.tenant_id, webhook_id = %delivery.webhook_id,
        delivery_id = %delivery.delivery_id, attempt);
    let _enter = span.enter();

    // The configuration and the breaker's state, read together.
    let (stored, health) = match ctx.store.webhook_and_health(&delivery.tenant_id, delivery.webhook_id.as_str()).await {
        Ok(both) => both,
        Err(e @ StoreError::Corrupt(_)) => {
            tracing::error!(error = %e, "stored webhook does not parse; delivery dead-lettered");
            return dead_letter(d, json!({"delivery": delivery, "error": "stored webhook does not parse"})).await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable; the delivery returns to the queue");
            return Done::Again;
        }
    };
    let hook = match stored {
        None => {
            tracing::info!("webhook deleted; delivery dropped");
            drop_logged(d, &delivery, attempt, "the webhook was deleted").await;
            return Done::Finished;
        }
        Some(hook) => hook,
    };
    if !hook.is_active {
        tracing::info!("webhook disabled; delivery dropped");
        let why = match &hook.disabled_reason {
            Some(reason) => format!("the webhook is disabled ({reason})"),
            None => "the webhook is disabled".to_owned(),
        };
        drop_logged(d, &delivery, attempt, &why).await;
        return Done::Finished;
    }

    let now = switchboard::time::now_millis();
    if let Health { paused_until: Some(until), .. } = health
        && until > now
    {
        switchboard::metrics::breaker_open();
        return wait_out_pause(d, &delivery, attempt - 1, Duration::from_millis((until - now) as u64)).await;
    }

    let secrets = hook.signing_secrets(now);
    let result = webhook::send(d.client(), &hook, &secrets, &delivery, attempt, ctx.config.webhook_urls).await;
    let max_attempts = hook.retry_count + 1;
    let schedule = &ctx.config.webhooks.schedule;
    let (status, retry_in) = match &result.outcome {
        Outcome::Delivered => (LogStatus::Delivered, None),
        Outcome::Gone => (LogStatus::Gone, None),
        Outcome::Retry { retry_after } if attempt < max_attempts => {
            let scheduled = schedule.delay_after(attempt, rand::random::<f64>());
            (LogStatus::Failed, Some(schedule.with_retry_after(scheduled, *retry_after)))
        }
        Outcome::Retry { .. } | Outcome::Rejected => (LogStatus::Dead, None),
    };
    // The queue keeps a message `queue_retention` after it was sent: a retry
    // scheduled past that would expire unseen. Dead-letter it now instead.
    let sent_ms: i64 = record.attributes.get("SentTimestamp").and_then(|t| t.parse().ok()).unwrap_or(now);
    let retention = ctx.config.webhooks.queue_retention;
    let (status, retry_in, expiry) = match retry_in {
        Some(wait) if !webhook::RetrySchedule::fits_retention(sent_ms, now, wait, retention) => (
            LogStatus::Dead,
            None,
            Some(format!(
                "the next attempt (in {} s) would come after the queue's {} s retention; dead-lettered",
                wait.as_secs(),
                retention.as_secs()
            )),
        ),
        other => (status, other, None),
    };
    let next = retry_in.map(|d| now + d.as_millis() as i64);
    let mut entry = log_entry(&delivery, &result, status, next, now);
    if let Some(why) = &expiry {
        entry.error = Some(match entry.error.take() {
            Some(e) => format!("{e}; {why}"),
            None => why.clone(),
        });
    }
    let health = match d.record(&entry, result.outcome == Outcome::Delivered, d.breaker()).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "attempt not logged");
            None
        }
    };
    tracing::info!(%status, code = ?result.status, error = ?result.error, duration_ms = result.duration_ms, "attempt");

    if result.outcome == Outcome::Gone {
        disable(ctx, &delivery.tenant_id, &hook, "the receiver answered 410 Gone").await;
    } else if let Some(since) = health.and_then(|h| h.failing_since)
        && now - since >= ctx.config.webhooks.disable_after.as_millis() as i64
    {
        let reason = format!("failing since {} (every attempt for {} s)", since, (now - since) / 1000);
        if disable(ctx, &delivery.tenant_id, &hook, &reason).await {
            let alert = Envelope::new(
                delivery.tenant_id.clone(),
                EventType::SystemAlert,
                // Every subscriber of the tenant hears this: the URL redacted
                // (its path may be the credential); admins read it whole.
                json!({"kind": "webhook.disabled", "webhook_id": hook.id,
                    "url": switchboard::ssrf::redacted(&hook.url), "reason": reason}),
            );
            if let Err(e) = switchboard::broadcast::publish(ctx, &alert, &Target::Tenant).await {
                tracing::warn!(error = %e, "system.alert not sent");
            }
        }
    }

    match (status, retry_in) {
        (LogStatus::Failed, Some(wait)) => {
            retry_later(d, record, wait).await;
            Done::Again
        }
        (LogStatus::Dead, _) => {
            dead_letter(d, json!({"delivery": delivery, "attempts": attempt, "last_attempt": entry})).await
        }
        _ => Done::Finished,
    }
}

/// A delivery its webhook no longer takes (deleted, disabled) leaves a
/// `dropped` entry with the reason in the delivery log, so it does not
/// vanish. Not an attempt: nothing was sent, the breaker is not fed.
async fn drop_logged(d: &WebhookSender, delivery: &Delivery, attempt: u32, reason: &str) {
    let now = switchboard::time::now_millis();
    let nothing_sent = Attempt {
        attempt,
        status: None,
        body_excerpt: String::new(),
        error: Some(format!("not sent: {reason}")),
        duration_ms: 0,
        outcome: Outcome::Rejected,
    };
    let entry = log_entry(delivery, &nothing_sent, LogStatus::Dropped, None, now);
    // threshold 0: no pause; `success` keeps the health as a clean slate for a re-enabled webhook.
    let no_breaker = Breaker { threshold: 0, cooldown_ms: 0 };
    if let Err(e) = d.record(&entry, true, no_breaker).await {
        tracing::warn!(error = %e, "dropped delivery not logged");
    }
}

/// Sets the record's visibility to `wait`; SQS delivers it again then.
async fn retry_later(d: &WebhookSender, record: &SqsMessage, wait: Duration) {
    let (Some((queues, url)), Some(handle)) = (d.context().webhook_queue(), record.receipt_handle.as_deref()) else {
        tracing::warn!("no WEBHOOK_QUEUE_URL: the retry waits for the queue's visibility timeout");
        return;
    };
    if let Err(e) = queues.retry_after(url, handle, wait).await {
        tracing::warn!(error = %e, "visibility not changed: the retry waits for the queue's visibility timeout");
    }
}

/// The breaker is open: queue the delivery again, delayed, keeping its attempt count.
async fn wait_out_pause(d: &WebhookSender, delivery: &Delivery, attempts_so_far: u32, pause: Duration) -> Done {
    let Some((queues, url)) = d.context().webhook_queue() else {
        return Done::Again;
    };
    let again = Delivery { attempt_base: attempts_so_far, ..delivery.clone() };
    let body = serde_json::to_string(&again).expect("plain JSON");
    // Never sooner than a second, never later than SQS's 15-minute delay limit.
    let delay = pause.max(Duration::from_secs(1));
    match queues.send(url, body, delay).await {
        Ok(_) => {
            tracing::info!(
                pause_ms = pause.as_millis() as u64,
                "endpoint paused by the circuit breaker; delivery waits"
            );
            Done::Finished
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not queue the paused delivery again; it returns to the queue");
            Done::Again
        }
    }
}

/// Sends `body` to the dead-letter queue; `Again` when that fails (nothing is dropped).
async fn dead_letter(d: &WebhookSender, mut body: serde_json::Value) -> Done {
    let Some((queues, url)) = d.context().webhook_dlq() else {
        tracing::error!("no WEBHOOK_DLQ_URL: the final failure stays in the queue for its redrive policy");
        return Done::Again;
    };
    body["dead_at"] = json!(switchboard::time::now_millis());
    match queues.send(url, body.to_string(), Duration::ZERO).await {
        Ok(_) => {
            switchboard::metrics::dead_lettered("webhooks", 1);
            Done::Finished
        }
        Err(e) => {
            tracing::error!(error = %e, "dead-letter queue unreachable; the delivery returns to the queue");
            Done::Again
        }
    }
}

/// Disables `hook` with `reason`; false when it was already disabled or gone.
async fn disable(ctx: &Context, tenant: &TenantId, hook: &WebhookConfig, reason: &str) -> bool {
    let stored = match ctx.store.webhook(tenant, hook.id.as_str()).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(error = %e, "webhook not disabled");
            return false;
        }
    };
    let Some(mut current) = stored.filter(|h| h.is_active) else { return false };
    current.is_active = false;
    current.disabled_reason = Some(reason.to_owned());
    current.updated_at = switchboard::time::now_millis();
    match ctx.store.save_webhook(tenant, &current).await {
        Ok(()) => {
            tracing::warn!(webhook_id = %hook.id, reason, "webhook disabled");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook not disabled");
            false
        }
    }
}
