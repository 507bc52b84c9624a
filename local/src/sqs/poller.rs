//! Lambda's event-source mapping for SQS, over the [`engine`](super::engine):
//! pollers that long-poll a queue, gather a batch within the batching
//! window, invoke a function with the `SqsEvent` Lambda sends, delete what
//! succeeded and leave `batchItemFailures` (or the whole batch, on a
//! function error) to come back after their visibility timeout.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::engine::{REGION, Received, Sqs};

/// Lambda's SQS poller for one queue and one function.
#[derive(Debug, Clone)]
pub struct EventSourceMapping {
    /// The queue's name.
    pub queue: String,
    /// The function to invoke (`webhook`, `fanout`).
    pub function: &'static str,
    /// Most records per invocation (Lambda: 1-10 without a window).
    pub batch_size: usize,
    /// How long to gather records before invoking (Lambda's MaximumBatchingWindowInSeconds).
    pub batch_window: Duration,
    /// Concurrent pollers (Lambda starts with five).
    pub pollers: usize,
}

/// Builds the event Lambda sends for `messages` of `queue`.
pub fn sqs_event(queue: &str, messages: &[Received]) -> aws_lambda_events::sqs::SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let message_attributes: Map<String, Value> = m
                .message_attributes
                .iter()
                .map(|(k, v)| {
                    let mut a = Map::new();
                    if let Some(s) = v.get("StringValue") {
                        a.insert("stringValue".into(), s.clone());
                    }
                    if let Some(b) = v.get("BinaryValue") {
                        a.insert("binaryValue".into(), b.clone());
                    }
                    a.insert("stringListValues".into(), json!([]));
                    a.insert("binaryListValues".into(), json!([]));
                    a.insert("dataType".into(), v.get("DataType").cloned().unwrap_or(Value::Null));
                    (k.clone(), Value::Object(a))
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": m.attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body,
                "md5OfMessageAttributes": m.md5_of_message_attributes,
                "eventSource": "aws:sqs",
                "eventSourceARN": Sqs::arn_of(queue),
                "awsRegion": REGION,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("the documented SQS event shape")
}

/// Runs the pollers of `mapping` until `stop` is cancelled.
pub fn spawn_mapping(
    sqs: Arc<Sqs>,
    mapping: EventSourceMapping,
    functions: Arc<dyn crate::functions::Functions>,
    stop: tokio_util::sync::CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    for _ in 0..mapping.pollers.max(1) {
        let (sqs, mapping, functions, stop) = (sqs.clone(), mapping.clone(), functions.clone(), stop.clone());
        tasks.spawn(async move {
            let url = sqs.url_of(&mapping.queue);
            loop {
                let batch = tokio::select! {
                    _ = stop.cancelled() => return,
                    b = gather(&sqs, &url, &mapping) => b,
                };
                if batch.is_empty() {
                    continue;
                }
                let event = sqs_event(&mapping.queue, &batch);
                match functions.queue(mapping.function, event).await {
                    Ok(response) => {
                        let failed: HashSet<_> =
                            response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
                        for m in batch.iter().filter(|m| !failed.contains(&m.message_id)) {
                            let _ = sqs.delete(&url, &m.receipt_handle);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(function = mapping.function, %error, records = batch.len(),
                            "function error: the batch returns to the queue after its visibility timeout");
                    }
                }
            }
        });
    }
}

/// One batch: waits (long polling, 1 s at a time) for a first message,
/// then gathers up to the batch size within the batching window.
async fn gather(sqs: &Sqs, url: &str, mapping: &EventSourceMapping) -> Vec<Received> {
    let mut batch = match sqs.receive(url, mapping.batch_size.min(10), None, Duration::from_secs(1)).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "event source mapping cannot receive");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Vec::new();
        }
    };
    let deadline = Instant::now() + mapping.batch_window;
    while !batch.is_empty() && batch.len() < mapping.batch_size && Instant::now() < deadline {
        let want = (mapping.batch_size - batch.len()).min(10);
        let wait = deadline.saturating_duration_since(Instant::now());
        match sqs.receive(url, want, None, wait).await {
            Ok(more) if !more.is_empty() => batch.extend(more),
            _ => break,
        }
    }
    batch
}
