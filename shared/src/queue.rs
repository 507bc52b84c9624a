//! SQS: sending deliveries and fan-out jobs, and changing visibility for retries.
//!
//! One `aws-sdk-sqs` client per process. In AWS it takes the function's
//! credentials (and `AWS_ENDPOINT_URL_SQS` when set, the SDK's own
//! override); the emulator hands its functions a client pointed at its own
//! SQS endpoint. Sends go out in batches of at most ten and 1 MiB (SQS's
//! limits per call);
//! entries SQS refuses are retried once and then reported, never dropped
//! silently.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::config::QueueUrls;

/// The largest message SQS takes (1 MiB since August 2025; the emulator's too).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The largest SendMessageBatch SQS takes: the sum of its bodies.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// SendMessageBatch's most entries.
pub const MAX_BATCH_ENTRIES: usize = 10;

/// Groups `bodies`, in order, into batches of at most ten entries and
/// [`MAX_BATCH_BYTES`]; returns them and how many bodies are too large for
/// any message.
pub fn batches(bodies: &[String]) -> (Vec<Vec<&String>>, usize) {
    let mut out: Vec<Vec<&String>> = Vec::new();
    let (mut bytes, mut oversize) = (0, 0);
    for body in bodies {
        if body.len() > MAX_MESSAGE_BYTES {
            oversize += 1;
            continue;
        }
        match out.last_mut() {
            Some(batch) if batch.len() < MAX_BATCH_ENTRIES && bytes + body.len() <= MAX_BATCH_BYTES => {
                bytes += body.len();
                batch.push(body);
            }
            _ => {
                bytes = body.len();
                out.push(vec![body]);
            }
        }
    }
    (out, oversize)
}

/// A boxed error: the SDK's, kept as the source.
type Source = Box<dyn std::error::Error + Send + Sync>;

/// A failure talking to SQS.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The call failed: the network, credentials, throttling, a queue that
    /// does not exist. `detail` is the SDK's whole error chain, for logs.
    #[error("sqs {action}: {detail}")]
    Call {
        /// The SQS action (`SendMessageBatch`).
        action: &'static str,
        /// The error and its causes, as one line.
        detail: String,
        /// The SDK's error.
        #[source]
        source: Source,
    },
    /// SQS took the call but refused these entries (`id: reason`), after one more try.
    #[error("sqs refused {}", .0.join("; "))]
    Refused(Vec<String>),
    /// Messages over [`MAX_MESSAGE_BYTES`]: they can never be sent.
    #[error("{0} message(s) over SQS's {MAX_MESSAGE_BYTES} bytes")]
    Oversize(usize),
    /// Part of a [`Queues::send_all`] was not sent; `causes` says why.
    #[error("{not_sent} of {total} messages not sent: {}", .causes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Partial {
        /// Messages not sent.
        not_sent: usize,
        /// Messages given.
        total: usize,
        /// One error per failed call (and the oversize ones).
        causes: Vec<QueueError>,
    },
}

fn call_error<E: std::error::Error + Send + Sync + 'static>(action: &'static str) -> impl FnOnce(E) -> QueueError {
    move |e| QueueError::Call {
        action,
        detail: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
        source: Box::new(e),
    }
}

/// The SQS client and the queues this deployment uses.
#[derive(Debug, Clone)]
pub struct Queues {
    /// Built on first use: building an SDK client loads the TLS roots.
    config: aws_sdk_sqs::Config,
    client: Arc<OnceLock<Client>>,
    /// The queue URLs.
    pub urls: QueueUrls,
}

impl Queues {
    /// For a Lambda function: credentials and region from the environment.
    pub async fn from_env(urls: QueueUrls) -> Self {
        Self::with_config(aws_sdk_sqs::Config::from(crate::aws::sdk_config().await), urls)
    }

    /// For the emulator and tests: SQS at `endpoint`, dummy credentials.
    pub fn local(endpoint: &str, urls: QueueUrls) -> Self {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(crate::connections_api::local_credentials())
            .build();
        Self::with_config(config, urls)
    }

    fn with_config(config: aws_sdk_sqs::Config, urls: QueueUrls) -> Self {
        Queues { config, client: Arc::new(OnceLock::new()), urls }
    }

    /// The SDK client, for callers that need more than this module offers.
    pub fn client(&self) -> &Client {
        self.client.get_or_init(|| Client::from_conf(self.config.clone()))
    }

    /// Sends `bodies` to `url` in as few SendMessageBatch calls as SQS
    /// allows (ten entries and [`MAX_BATCH_BYTES`] a call), the calls
    /// concurrently. A body over [`MAX_MESSAGE_BYTES`] cannot be sent at all
    /// and is counted as not sent. Returns how many were accepted; an error
    /// names how many were not.
    pub async fn send_all(&self, url: &str, bodies: &[String]) -> Result<usize, QueueError> {
        let (batches, oversize) = batches(bodies);
        let calls = batches.into_iter().map(|batch| self.send_batch(url, batch));
        let results = futures::future::join_all(calls).await;
        let mut sent = 0;
        let mut causes = Vec::new();
        if oversize > 0 {
            causes.push(QueueError::Oversize(oversize));
        }
        for r in results {
            match r {
                Ok(n) => sent += n,
                Err(e) => causes.push(e),
            }
        }
        if causes.is_empty() {
            Ok(sent)
        } else {
            Err(QueueError::Partial { not_sent: bodies.len() - sent, total: bodies.len(), causes })
        }
    }

    /// One SendMessageBatch of at most ten; entries SQS refuses are tried once more.
    async fn send_batch(&self, url: &str, chunk: Vec<&String>) -> Result<usize, QueueError> {
        let mut pending: Vec<(String, &String)> =
            chunk.into_iter().enumerate().map(|(i, b)| (i.to_string(), b)).collect();
        let mut sent = 0;
        for round in 0..2 {
            let entries = pending
                .iter()
                .map(|(id, body)| SendMessageBatchRequestEntry::builder().id(id).message_body(*body).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(call_error("SendMessageBatch"))?;
            let out = self
                .client()
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(call_error("SendMessageBatch"))?;
            sent += out.successful().len();
            let failed: Vec<_> =
                out.failed().iter().map(|f| (f.id().to_owned(), f.message().unwrap_or("").to_owned())).collect();
            if failed.is_empty() {
                return Ok(sent);
            }
            if round == 1 {
                return Err(QueueError::Refused(failed.iter().map(|(id, m)| format!("entry {id}: {m}")).collect()));
            }
            pending.retain(|(id, _)| failed.iter().any(|(f, _)| f == id));
        }
        Ok(sent)
    }

    /// Sends one message, visible after `delay` (at most 15 minutes).
    pub async fn send(&self, url: &str, body: String, delay: Duration) -> Result<String, QueueError> {
        let out = self
            .client()
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(delay.as_secs().min(900) as i32)
            .send()
            .await
            .map_err(call_error("SendMessage"))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    /// Makes a received message reappear after `after` (at most 12 hours).
    pub async fn retry_after(&self, url: &str, receipt_handle: &str, after: Duration) -> Result<(), QueueError> {
        self.client()
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(after.as_secs().min(12 * 3600) as i32)
            .send()
            .await
            .map_err(call_error("ChangeMessageVisibility"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_both_sqs_limits() {
        let small: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        let (b, over) = batches(&small);
        assert_eq!((b.iter().map(Vec::len).collect::<Vec<_>>(), over), (vec![10, 10, 5], 0));
        // 120 KB each: eight fit in 1 MiB, not ten.
        let big: Vec<String> = (0..10).map(|_| "x".repeat(120 * 1024)).collect();
        let (b, _) = batches(&big);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![8, 2]);
        let too_big = vec!["y".repeat(MAX_MESSAGE_BYTES + 1), "z".into()];
        let (b, over) = batches(&too_big);
        assert_eq!((b.len(), over), (1, 1));
    }
}
