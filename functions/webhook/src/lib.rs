//! `webhook`: delivers queued webhook deliveries (SQS-triggered, with
//! `ReportBatchItemFailures`).
//!
//! SQS glue around [`switchboard::webhook_delivery::deliver`], which does
//! the work (read the webhook and its endpoint's health, send, record,
//! decide, act): each record of the batch concurrently, and the records to
//! deliver again in `batchItemFailures`.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use switchboard::webhook_delivery::{Done, Received, deliver};

pub use switchboard::webhook_delivery::WebhookSender;

/// Handles one SQS batch; the records to retry come back in `batchItemFailures`.
pub async fn handle(d: &WebhookSender, event: SqsEvent) -> SqsBatchResponse {
    use tracing::Instrument as _;
    let span = tracing::info_span!("invocation", function = "webhook", records = event.records.len());
    let deliveries = event.records.iter().map(|r| deliver(d, received(r)));
    let outcomes = futures::future::join_all(deliveries).instrument(span).await;
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

/// What a delivery reads of an SQS record.
fn received(record: &SqsMessage) -> Received<'_> {
    fn attribute<T: std::str::FromStr>(record: &SqsMessage, name: &str) -> Option<T> {
        record.attributes.get(name).and_then(|n| n.parse().ok())
    }
    Received {
        body: record.body.as_deref().unwrap_or_default(),
        receives: attribute(record, "ApproximateReceiveCount").map_or(1, |n: u32| n.max(1)),
        sent_ms: attribute(record, "SentTimestamp"),
        receipt_handle: record.receipt_handle.as_deref(),
    }
}
