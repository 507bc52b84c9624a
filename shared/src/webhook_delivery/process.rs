//! One queued delivery, from the webhook queue to its receiver:
//!
//! 1. Load the webhook's current configuration, so a disable or a secret
//!    rotation takes effect at once. A deleted or disabled webhook's
//!    deliveries are dropped (and logged).
//! 2. If the endpoint's circuit breaker is open, the delivery waits: it is
//!    queued again, delayed until the pause ends, with the attempts it has
//!    made so far, and does not spend an attempt.
//! 3. Sign (current secret, plus any in its rotation grace period) and POST
//!    through one pooled client with the webhook's timeout.
//! 4. Decide ([`crate::webhook::decide`]): 2xx done; 410 done, and the
//!    webhook is disabled; 408, 429, 5xx, timeouts and connection errors
//!    retried after the schedule's wait (a `Retry-After` honoured, up to
//!    12 h) by setting the message's visibility; any other 4xx, the last
//!    attempt, or a retry that would outlive the queue's retention: the
//!    dead-letter queue, with its history.
//! 5. Every attempt is logged (status, first 20 KB of the body, error,
//!    duration, attempt) and counted by the breaker. An endpoint failing for
//!    longer than `WEBHOOK_DISABLE_AFTER_SECS` is disabled and a
//!    `system.alert` event goes to its tenant.

use std::time::Duration;

use serde_json::json;
use tracing::Instrument as _;

use super::{WebhookSender, log_entry};
use crate::Context;
use crate::event::{Envelope, EventType, Target};
use crate::ids::TenantId;
use crate::store::{Breaker, Health, StoreError};
use crate::webhook::{
    self, Attempt, DeadLetter, Decision, Delivery, Disable, LogStatus, Outcome, Retries, WebhookConfig, When,
};

/// What became of one queue message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Delete it.
    Finished,
    /// Leave it; the queue delivers it again after its visibility timeout.
    Again,
}

/// One message of the webhook queue, as the delivery needs it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// Its body (a [`Delivery`], when well formed).
    pub body: &'a str,
    /// How many times the queue has handed it out, this one included.
    pub receives: u32,
    /// When it was first sent to the queue (Unix ms), if the queue said.
    pub sent_ms: Option<i64>,
    /// What changes its visibility (the retry's wait).
    pub receipt_handle: Option<&'a str>,
}

/// Delivers one queued delivery (see the module's steps).
pub async fn deliver(d: &WebhookSender, message: Received<'_>) -> Done {
    let delivery: Delivery = match serde_json::from_str(message.body) {
        Ok(delivery) => delivery,
        Err(e) => {
            tracing::error!(error = %e, "not a webhook delivery: dead-lettered");
            let error = Some(format!("not a webhook delivery: {e}"));
            return dead_letter(d, DeadLetter { body: Some(message.body.to_owned()), error, ..DeadLetter::default() })
                .await;
        }
    };
    let attempt = delivery.attempt_base + message.receives.max(1);
    let span = tracing::info_span!("delivery", tenant_id = %delivery.tenant_id, webhook_id = %delivery.webhook_id,
        delivery_id = %delivery.delivery_id, attempt);
    attempt_delivery(d, message, delivery, attempt).instrument(span).await
}

/// Attempt `attempt` of `delivery`, inside its span.
async fn attempt_delivery(d: &WebhookSender, message: Received<'_>, delivery: Delivery, attempt: u32) -> Done {
    let (hook, health) = match current_webhook(d, &delivery, attempt).await {
        Ok(both) => both,
        Err(done) => return done,
    };
    let ctx = d.context();
    let now = crate::time::now_millis();
    if let Some(until) = health.paused_until.filter(|until| *until > now) {
        crate::metrics::breaker_open();
        return wait_out_pause(d, &delivery, attempt - 1, Duration::from_millis((until - now) as u64)).await;
    }
    let secrets = hook.signing_secrets(now);
    let result = webhook::send(d.client(), &hook, &secrets, &delivery, attempt, ctx.config.webhook_urls).await;
    let settings = &ctx.config.webhooks;
    let retries = Retries {
        max_attempts: hook.retry_count + 1,
        schedule: &settings.schedule,
        retention: settings.queue_retention,
    };
    let when = When { now_ms: now, sent_ms: message.sent_ms.unwrap_or(now), jitter: rand::random::<f64>() };
    let decision = webhook::decide(&result.outcome, attempt, &retries, when);
    let entry = attempt_entry(&delivery, &result, &decision, now);
    let health = match d.record(&entry, result.outcome == Outcome::Delivered, d.breaker()).await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "attempt not logged");
            None
        }
    };
    tracing::info!(status = %decision.status, code = ?result.status, error = ?result.error,
        duration_ms = result.duration_ms, "attempt");
    let failing_since = health.and_then(|h| h.failing_since);
    if let Some(disabled) = webhook::disable(&result.outcome, failing_since, now, settings.disable_after) {
        disable_and_alert(ctx, &delivery.tenant_id, &hook, &disabled).await;
    }
    match decision {
        Decision { status: LogStatus::Failed, retry_in: Some(wait), .. } => {
            retry_later(d, &message, wait).await;
            Done::Again
        }
        Decision { status: LogStatus::Dead, .. } => {
            let letter = DeadLetter {
                delivery: Some(delivery),
                attempts: Some(attempt),
                last_attempt: Some(entry),
                ..DeadLetter::default()
            };
            dead_letter(d, letter).await
        }
        _ => Done::Finished,
    }
}

/// The webhook as stored now, with its endpoint's health; otherwise what
/// becomes of the message: dropped (deleted, disabled: logged),
/// dead-lettered (it does not parse) or returned (the store is down).
async fn current_webhook(
    d: &WebhookSender,
    delivery: &Delivery,
    attempt: u32,
) -> Result<(WebhookConfig, Health), Done> {
    let stored = d.context().store.webhook_and_health(&delivery.tenant_id, delivery.webhook_id.as_str()).await;
    let (hook, health) = match stored {
        Ok(both) => both,
        Err(e @ StoreError::Corrupt(_)) => {
            tracing::error!(error = %e, "stored webhook does not parse; delivery dead-lettered");
            let error = Some("stored webhook does not parse".to_owned());
            let letter = DeadLetter { delivery: Some(delivery.clone()), error, ..DeadLetter::default() };
            return Err(dead_letter(d, letter).await);
        }
        Err(e) => {
            tracing::warn!(error = %e, "store unavailable; the delivery returns to the queue");
            return Err(Done::Again);
        }
    };
    let Some(hook) = hook else {
        tracing::info!("webhook deleted; delivery dropped");
        drop_logged(d, delivery, attempt, "the webhook was deleted").await;
        return Err(Done::Finished);
    };
    if !hook.is_active {
        tracing::info!("webhook disabled; delivery dropped");
        let why = match &hook.disabled_reason {
            Some(reason) => format!("the webhook is disabled ({reason})"),
            None => "the webhook is disabled".to_owned(),
        };
        drop_logged(d, delivery, attempt, &why).await;
        return Err(Done::Finished);
    }
    Ok((hook, health))
}

/// The attempt's log entry, with the decision's status, next attempt and note.
fn attempt_entry(delivery: &Delivery, result: &Attempt, decision: &Decision, now: i64) -> webhook::LogEntry {
    let next = decision.retry_in.map(|d| now + d.as_millis() as i64);
    let mut entry = log_entry(delivery, result, decision.status, next, now);
    if let Some(why) = &decision.note {
        entry.error = Some(match entry.error.take() {
            Some(e) => format!("{e}; {why}"),
            None => why.clone(),
        });
    }
    entry
}

/// A delivery its webhook no longer takes (deleted, disabled) leaves a
/// `dropped` entry with the reason in the delivery log, so it does not
/// vanish. Not an attempt: nothing was sent, the breaker is not fed.
async fn drop_logged(d: &WebhookSender, delivery: &Delivery, attempt: u32, reason: &str) {
    let now = crate::time::now_millis();
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

/// Sets the message's visibility to `wait`; the queue delivers it again then.
async fn retry_later(d: &WebhookSender, message: &Received<'_>, wait: Duration) {
    let (Some((queues, url)), Some(handle)) = (d.context().webhook_queue(), message.receipt_handle) else {
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

/// Sends `letter` to the dead-letter queue; `Again` when that fails (nothing is dropped).
async fn dead_letter(d: &WebhookSender, letter: DeadLetter) -> Done {
    let Some((queues, url)) = d.context().webhook_dlq() else {
        tracing::error!("no WEBHOOK_DLQ_URL: the final failure stays in the queue for its redrive policy");
        return Done::Again;
    };
    let letter = DeadLetter { dead_at: crate::time::now_millis(), ..letter };
    match queues.send(url, letter.to_json(), Duration::ZERO).await {
        Ok(_) => {
            crate::metrics::dead_lettered("webhooks", 1);
            Done::Finished
        }
        Err(e) => {
            tracing::error!(error = %e, "dead-letter queue unreachable; the delivery returns to the queue");
            Done::Again
        }
    }
}

/// Disables `hook`; a webhook disabled for failing too long is announced
/// to its tenant as a `system.alert`.
async fn disable_and_alert(ctx: &Context, tenant: &TenantId, hook: &WebhookConfig, disabled: &Disable) {
    if !disable(ctx, tenant, hook, disabled.reason()).await {
        return;
    }
    let Disable::FailingTooLong(reason) = disabled else { return };
    let alert = Envelope::new(
        tenant.clone(),
        EventType::SystemAlert,
        // Every subscriber of the tenant hears this: the URL redacted
        // (its path may be the credential); admins read it whole.
        json!({"kind": "webhook.disabled", "webhook_id": hook.id,
            "url": crate::ssrf::redacted(&hook.url), "reason": reason}),
    );
    if let Err(e) = crate::broadcast::publish(ctx, &alert, &Target::Tenant).await {
        tracing::warn!(error = %e, "system.alert not sent");
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
    current.updated_at = crate::time::now_millis();
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
