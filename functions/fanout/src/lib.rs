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
//! ([`broadcast::sweep_all`]). [`Trigger::parse`] tells the three kinds of
//! payload apart; [`invoke`] runs each.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard::Context;
use switchboard::broadcast::{self, FanoutJob};
use switchboard::event::Envelope;
use switchboard::ids::TenantId;
use switchboard::protocol::{PublishRequest, Report};

/// One event a back-end service publishes: the one [`PublishRequest`]
/// every edge reads, and the tenant it is for (IAM decided the invoker may
/// speak for it).
#[derive(Debug, Clone, PartialEq)]
pub struct DirectPublish {
    /// The tenant the event belongs to.
    pub tenant_id: TenantId,
    /// What, for whom, with what.
    pub request: PublishRequest,
}

impl DirectPublish {
    /// `{"tenant_id", "type", "data", "target"}`; anything else is refused.
    fn from_value(item: Value) -> Result<DirectPublish, String> {
        let Value::Object(mut obj) = item else { return Err("must be a JSON object".into()) };
        let tenant_id = match obj.remove("tenant_id") {
            Some(Value::String(t)) => TenantId::parse(t).map_err(|e| e.to_string())?,
            Some(_) => return Err("`tenant_id` must be a string".into()),
            None => return Err("missing field `tenant_id`".into()),
        };
        let request = PublishRequest::from_object(obj).map_err(|e| e.to_string())?;
        Ok(DirectPublish { tenant_id, request })
    }
}

/// What the function was invoked with.
#[derive(Debug)]
pub enum Trigger {
    /// The template's schedule: `{"action":"sweep"}`.
    Sweep,
    /// A batch of the events queue (`Records` from `aws:sqs`): fan-out jobs.
    Jobs(SqsEvent),
    /// A back-end service's publish: one event or `{"events":[...]}`.
    Publish(Vec<DirectPublish>),
}

impl Trigger {
    /// Tells the payloads apart; a malformed publish is refused whole,
    /// naming the event and the field.
    pub fn parse(payload: Value) -> Result<Trigger, FanoutError> {
        if payload == serde_json::json!({"action": "sweep"}) {
            return Ok(Trigger::Sweep);
        }
        let from_sqs = payload
            .get("Records")
            .and_then(Value::as_array)
            .is_some_and(|r| r.first().and_then(|f| f.get("eventSource")).and_then(Value::as_str) == Some("aws:sqs"));
        if from_sqs {
            return serde_json::from_value(payload).map(Trigger::Jobs).map_err(|e| FanoutError::Invalid(e.to_string()));
        }
        parse(payload).map(Trigger::Publish)
    }
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
pub fn parse(payload: Value) -> Result<Vec<DirectPublish>, FanoutError> {
    let items = match payload {
        Value::Object(mut obj) if obj.contains_key("events") => {
            let events = obj.remove("events");
            if let Some(extra) = obj.keys().next() {
                return Err(FanoutError::Invalid(format!("unknown field `{extra}` beside \"events\"")));
            }
            match events {
                Some(Value::Array(items)) => items,
                _ => return Err(FanoutError::Invalid("\"events\" must be an array of events".into())),
            }
        }
        single => vec![single],
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
        .map(|(i, item)| DirectPublish::from_value(item).map_err(|e| FanoutError::Invalid(format!("event {i}: {e}"))))
        .collect()
}

/// Publishes every event of the request, in order.
pub async fn handle(ctx: &Context, payload: Value) -> Result<FanoutResponse, FanoutError> {
    let events = parse(payload)?;
    for (i, e) in events.iter().enumerate() {
        // A back end is trusted with every channel, but only of a declared namespace.
        if let Some(channel) = e.request.target.channel()
            && ctx.config.channels.get(channel.namespace()).is_none()
        {
            return Err(FanoutError::Invalid(format!(
                "event {i}: channel {channel}: namespace '{}' is not declared (declared: {})",
                channel.namespace(),
                ctx.config.channels
            )));
        }
    }
    publish_all(ctx, events).await
}

/// Publishes `events` as one batch per tenant (each connection gets one
/// frame with all of its events); the results in request order.
async fn publish_all(ctx: &Context, events: Vec<DirectPublish>) -> Result<FanoutResponse, FanoutError> {
    let n = events.len();
    type Items = Vec<(usize, Envelope, switchboard::event::Target)>;
    let mut tenants: Vec<(TenantId, Items)> = Vec::new();
    for (i, DirectPublish { tenant_id, request }) in events.into_iter().enumerate() {
        let event = Envelope::new(tenant_id.clone(), request.event_type, request.data);
        match tenants.iter_mut().find(|(t, _)| *t == tenant_id) {
            Some((_, items)) => items.push((i, event, request.target)),
            None => tenants.push((tenant_id, vec![(i, event, request.target)])),
        }
    }
    let mut results: Vec<Option<Published>> = vec![None; n];
    let mut published = 0;
    for (_, items) in tenants {
        let order: Vec<usize> = items.iter().map(|(i, _, _)| *i).collect();
        let batch = items.into_iter().map(|(_, e, t)| (e, t)).collect();
        let done = broadcast::publish_batch(ctx, batch, None).await.map_err(|e| {
            let source = match e {
                broadcast::PublishError::Failed(source) => source,
                other => broadcast::BroadcastError::Store(switchboard::store::StoreError::Corrupt(other.to_string())),
            };
            FanoutError::Failed { published, source }
        })?;
        published += done.len();
        for (i, p) in order.into_iter().zip(done) {
            results[i] = Some(Published { event_id: p.event_id, report: p.report });
        }
    }
    let results: Vec<Published> = results.into_iter().flatten().collect();
    let mut total = Report::default();
    for r in &results {
        total += r.report;
    }
    Ok(FanoutResponse { results, total })
}

/// A job's outcome, logged in its span: true when it is done.
fn ran(outcome: Result<Report, broadcast::JobError>, span: &tracing::Span) -> bool {
    match outcome {
        Ok(report) => {
            tracing::debug!(parent: span, ?report, "fan-out job done");
            true
        }
        Err(e) => {
            tracing::warn!(parent: span, error = %e, "fan-out job will be retried");
            false
        }
    }
}

/// Runs the queued fan-out jobs of one SQS batch, concurrently; failed
/// records (store or SQS down, posts that failed) come back for a retry.
pub async fn handle_sqs(ctx: &Context, event: SqsEvent) -> SqsBatchResponse {
    use tracing::Instrument as _;
    let runs = event.records.iter().map(|record| async move {
        let body = record.body.as_deref().unwrap_or_default();
        // A queued batch (`{"batch":[...]}`) or one event's job.
        if let Ok(batch) = serde_json::from_str::<broadcast::BatchJob>(body) {
            let first = batch.batch.first().map(|j| (j.event.tenant_id.to_string(), j.event.id.clone()));
            let (tenant, event) = first.unwrap_or_default();
            let span = tracing::info_span!("job", tenant_id = %tenant, event_id = %event, batch = batch.batch.len());
            return ran(broadcast::run_batch_job(ctx, &batch).instrument(span.clone()).await, &span);
        }
        let job: FanoutJob = match serde_json::from_str(body) {
            Ok(job) => job,
            Err(e) => {
                // Retrying cannot fix it; the queue's redrive policy moves it aside.
                tracing::error!(message_id = ?record.message_id, error = %e, "not a fan-out job");
                return false;
            }
        };
        let span = tracing::info_span!("job", tenant_id = %job.event.tenant_id, event_id = %job.event.id,
            chunk = ?job.chunk.as_ref().map(|c| c.index));
        ran(broadcast::run_job(ctx, &job).instrument(span.clone()).await, &span)
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
    use tracing::Instrument as _;
    let trigger = Trigger::parse(payload);
    let kind = match &trigger {
        Ok(Trigger::Sweep) => "sweep",
        Ok(Trigger::Jobs(_)) => "jobs",
        Ok(Trigger::Publish(_)) | Err(_) => "publish",
    };
    let span = tracing::info_span!("invocation", function = "fanout", trigger = kind);
    run(ctx, trigger?).instrument(span).await
}

/// Runs one trigger.
async fn run(ctx: &Context, trigger: Trigger) -> Result<Value, FanoutError> {
    let answer = match trigger {
        Trigger::Sweep => {
            let report =
                broadcast::sweep_all(ctx).await.map_err(|source| FanoutError::Failed { published: 0, source })?;
            if report.gone + report.failed > 0 {
                tracing::info!(?report, "swept");
            } else {
                tracing::debug!(?report, "swept");
            }
            serde_json::to_value(report)
        }
        Trigger::Jobs(event) => serde_json::to_value(handle_sqs(ctx, event).await),
        Trigger::Publish(events) => serde_json::to_value(publish_all(ctx, events).await?),
    };
    Ok(answer.expect("plain JSON"))
}
