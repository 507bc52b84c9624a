//! `fanout`: publish events from back-end code by invoking a function.
//!
//! Services inside the AWS account invoke it directly (IAM decides who may),
//! with one event or a batch:
//!
//! ```json
//! {"tenant_id": "acme", "type": "call.incoming", "data": {...}, "target": {"user": "42"}}
//! {"events": [ ...the same shape... ]}
//! ```
//!
//! Each event goes through the broadcaster (`switchboard::broadcast`); the
//! answer lists, per event, its id and the fan-out report, plus the totals.
//! A malformed request is refused whole, with a message naming the field,
//! before anything is sent.
//!
//! The same function is the events queue's consumer ([`handle_sqs`]): each
//! record is a [`FanoutJob`] (`POST /v1/events?async=true` queues them;
//! large broadcasts are split into chunk jobs here and queued again). A
//! record that fails is listed in `batchItemFailures` and retried by SQS;
//! claims in the store keep a retried job from posting twice to anyone.
//!
//! And it sweeps: `{"action":"sweep"}` (the template's schedule, every 5
//! minutes) probes every tenant's idle connections and forgets the ghosts
//! ([`broadcast::sweep_all`]). [`invoke`] tells the kinds of payload apart.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard::Context;
use switchboard::broadcast::{self, FanoutJob};
use switchboard::event::{Envelope, EventType, Target};
use switchboard::ids::TenantId;
use switchboard::protocol::Report;

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The tenant the event belongs to.
    pub tenant_id: TenantId,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Payload.
    #[serde(default)]
    pub data: Value,
    /// Recipients inside the tenant; absent = the whole tenant.
    #[serde(default)]
    pub target: Target,
}

/// What came of one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Published {
    /// The new event's id.
    pub event_id: String,
    /// The fan-out report.
    pub report: Report,
}

/// The function's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutResponse {
    /// One entry per event, in request order.
    pub results: Vec<Published>,
    /// The reports added up.
    pub total: Report,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// The request does not have the documented shape.
    #[error("invalid fan-out request: {0}")]
    Invalid(String),
    /// The store (or SQS) failed; events before the failure may have gone out.
    #[error("fan-out failed after {published} event(s): {source}")]
    Failed {
        /// Events already published.
        published: usize,
        /// The failure.
        source: broadcast::BroadcastError,
    },
}

/// The most events one invocation may carry: each is published in turn
/// within the function's timeout, and its report is one EMF value.
pub const MAX_EVENTS: usize = 100;

/// Parses `{"events":[...]}` (at most [`MAX_EVENTS`]) or a single event.
pub fn parse(payload: Value) -> Result<Vec<PublishRequest>, FanoutError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        events: Vec<Value>,
    }
    let items = match payload.get("events") {
        Some(_) => serde_json::from_value::<Batch>(payload).map_err(|e| FanoutError::Invalid(e.to_string()))?.events,
        None => vec![payload],
    };
    if items.is_empty() {
        return Err(FanoutError::Invalid("\"events\" is empty".into()));
    }
    if items.len() > MAX_EVENTS {
        return Err(FanoutError::Invalid(format!(
            "\"events\" holds {} events; one invocation takes at most {MAX_EVENTS}",
            items.len()
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| serde_json::from_value(item).map_err(|e| FanoutError::Invalid(format!("event {i}: {e}"))))
        .collect()
}

/// Publishes every event of the request, in order.
pub async fn handle(ctx: &Context, payload: Value) -> Result<FanoutResponse, FanoutError> {
    let requests = parse(payload)?;
    let mut response = FanoutResponse { results: Vec::with_capacity(requests.len()), total: Report::default() };
    for request in requests {
        let event = Envelope::new(request.tenant_id, request.event_type, request.data);
        let report = broadcast::publish(ctx, &event, &request.target)
            .await
            .map_err(|source| FanoutError::Failed { published: response.results.len(), source })?;
        response.total += report;
        response.results.push(Published { event_id: event.id, report });
    }
    Ok(response)
}

/// Runs the queued fan-out jobs of one SQS batch, concurrently; failed
/// records (store or SQS down, posts that failed) come back for a retry.
pub async fn handle_sqs(ctx: &Context, event: SqsEvent) -> SqsBatchResponse {
    let runs = event.records.iter().map(|record| async move {
        let body = record.body.as_deref().unwrap_or_default();
        let job: FanoutJob = match serde_json::from_str(body) {
            Ok(job) => job,
            Err(e) => {
                // Retrying cannot fix it; the queue's redrive policy moves it aside.
                tracing::error!(message_id = ?record.message_id, error = %e, "not a fan-out job");
                return false;
            }
        };
        match broadcast::run_job(ctx, &job).await {
            Ok(report) => {
                tracing::debug!(event_id = %job.event.id, chunk = ?job.chunk.as_ref().map(|c| c.index), ?report, "fan-out job done");
                true
            }
            Err(e) => {
                tracing::warn!(event_id = %job.event.id, error = %e, "fan-out job will be retried");
                false
            }
        }
    });
    let done = futures::future::join_all(runs).await;
    let mut response = SqsBatchResponse::default();
    for (record, ok) in event.records.iter().zip(done) {
        if !ok {
            retry_soon(ctx, record).await;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// A failed job comes back after 1, 2, 4 ... 60 s (by its receive count)
/// rather than the queue's visibility timeout: live events are worth
/// little late. Best effort: without it SQS still redelivers.
async fn retry_soon(ctx: &Context, record: &aws_lambda_events::sqs::SqsMessage) {
    let (Some((queues, url)), Some(handle)) = (ctx.events_queue(), record.receipt_handle.as_deref()) else {
        return;
    };
    let receives: u32 = record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
    let wait = std::time::Duration::from_secs((1u64 << receives.saturating_sub(1).min(6)).min(60));
    if let Err(e) = queues.retry_after(url, handle, wait).await {
        tracing::warn!(error = %e, "fan-out retry waits for the queue's visibility timeout");
    }
}

/// The Lambda entry: an SQS event (`Records` from `aws:sqs`) or a direct
/// publish request, answered as JSON.
pub async fn invoke(ctx: &Context, payload: Value) -> Result<Value, FanoutError> {
    if payload == serde_json::json!({"action": "sweep"}) {
        // The template's schedule (every 5 minutes): forget ghost connections.
        let report = broadcast::sweep_all(ctx).await.map_err(|source| FanoutError::Failed { published: 0, source })?;
        if report.gone + report.failed > 0 {
            tracing::info!(?report, "swept");
        } else {
            tracing::debug!(?report, "swept");
        }
        return Ok(serde_json::to_value(report).expect("plain JSON"));
    }
    let from_sqs = payload
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|r| r.first().and_then(|f| f.get("eventSource")).and_then(Value::as_str) == Some("aws:sqs"));
    if from_sqs {
        let event: SqsEvent = serde_json::from_value(payload).map_err(|e| FanoutError::Invalid(e.to_string()))?;
        return Ok(serde_json::to_value(handle_sqs(ctx, event).await).expect("plain JSON"));
    }
    Ok(serde_json::to_value(handle(ctx, payload).await?).expect("plain JSON"))
}
