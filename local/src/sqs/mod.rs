//! SQS on one machine: the JSON protocol that `aws-sdk-sqs` and the AWS CLI
//! speak (`POST /` with `X-Amz-Target: AmazonSQS.<Action>` and an
//! `application/x-amz-json-1.0` body), over in-memory queues.
//!
//! Semantics follow SQS where a client can see them: a received message is
//! invisible for the queue's (or the request's) visibility timeout and then
//! comes back with a higher `ApproximateReceiveCount`; `DelaySeconds` hides a
//! new message; a message received more than `maxReceiveCount` times moves
//! to the redrive policy's dead-letter queue; long polling waits up to
//! `WaitTimeSeconds` for a message; errors carry the `__type` and the
//! `x-amzn-query-error` header the SDKs turn into typed errors
//! (`QueueDoesNotExist`, `ReceiptHandleIsInvalid`, ...).
//!
//! Supported: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue,
//! GetQueueAttributes, SetQueueAttributes, PurgeQueue, SendMessage(Batch),
//! ReceiveMessage, DeleteMessage(Batch), ChangeMessageVisibility(Batch).
//! Not emulated: FIFO queues, IAM, message retention beyond the process.
//!
//! Three layers, each using only the one before (the shape of
//! cargo-lambda-watch's trigger router, runtime and scheduler):
//! - [`engine`]: the queues themselves ([`Sqs`]): send, receive, delete,
//!   visibility, redrive, long polling. No HTTP, no JSON framing.
//! - [`wire`]: the JSON protocol. One `Deserialize` request type per action,
//!   the dispatch from `X-Amz-Target`, responses and error shapes
//!   ([`router`]).
//! - [`poller`]: Lambda's event-source mapping ([`EventSourceMapping`]): it
//!   receives batches, invokes a function with the `SqsEvent` Lambda would
//!   send, deletes what succeeded and leaves the `batchItemFailures` (or the
//!   whole batch, on a function error) to reappear after their visibility
//!   timeout.

pub mod engine;
pub mod poller;
pub mod wire;

pub use engine::{
    ACCOUNT, MAX_MESSAGE_BYTES, MAX_VISIBILITY_SECS, QueueSettings, REGION, Received, Sent, Sqs, SqsError, SqsResult,
};
pub use poller::{EventSourceMapping, spawn_mapping, sqs_event};
pub use wire::router;
