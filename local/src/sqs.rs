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
//! [`EventSourceMapping`] is Lambda's SQS poller: it receives batches,
//! invokes a function with the `SqsEvent` Lambda would send, deletes what
//! succeeded and leaves the `batchItemFailures` (or the whole batch, on a
//! function error) to reappear after their visibility timeout.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The account id in queue URLs and ARNs.
pub const ACCOUNT: &str = "000000000000";
/// The region in ARNs and events.
pub const REGION: &str = "us-east-1";
/// SQS's largest message (1 MiB since August 2025).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// SQS's longest visibility timeout.
pub const MAX_VISIBILITY_SECS: u64 = 12 * 3600;

/// An SQS error as the SDKs expect it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct SqsError {
    /// The JSON protocol's error shape name (`QueueDoesNotExist`).
    pub code: &'static str,
    /// The query protocol's code, sent in `x-amzn-query-error`.
    pub query_code: &'static str,
    /// For people.
    pub message: String,
}

impl SqsError {
    fn new(code: &'static str, query_code: &'static str, message: impl Into<String>) -> Self {
        SqsError { code, query_code, message: message.into() }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", "InvalidParameterValue", message)
    }
    fn missing(name: &str) -> Self {
        Self::new("MissingParameter", "MissingParameter", format!("the request must contain the parameter {name}"))
    }
    fn no_queue(url: &str) -> Self {
        Self::new(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            format!("the specified queue does not exist: {url}"),
        )
    }
    fn bad_receipt(handle: &str) -> Self {
        Self::new(
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            format!("the receipt handle '{handle}' is not valid"),
        )
    }
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        let body = json!({"__type": format!("com.amazonaws.sqs#{}", self.code), "message": self.message});
        let mut response = (StatusCode::BAD_REQUEST, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
        if let Ok(v) = HeaderValue::from_str(&format!("{};Sender", self.query_code)) {
            headers.insert("x-amzn-query-error", v);
        }
        response
    }
}

type SqsResult<T> = Result<T, SqsError>;

/// A queue's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSettings {
    /// Seconds a received message stays invisible.
    pub visibility_timeout: u64,
    /// Seconds a new message stays invisible.
    pub delay_seconds: u64,
    /// Seconds a message is kept.
    pub retention: u64,
    /// Default long-polling wait of ReceiveMessage.
    pub receive_wait: u64,
    /// Largest message body.
    pub max_message_size: usize,
    /// Dead-letter queue ARN and `maxReceiveCount`.
    pub redrive: Option<(String, u32)>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            visibility_timeout: 30,
            delay_seconds: 0,
            retention: 345_600,
            receive_wait: 0,
            max_message_size: MAX_MESSAGE_BYTES,
            redrive: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    md5_of_body: String,
    attributes: Map<String, Value>,
    md5_of_attributes: Option<String>,
    sent_at_ms: i64,
    first_received_ms: Option<i64>,
    visible_at: Instant,
    receive_count: u32,
    receipt: Option<String>,
}

#[derive(Debug)]
struct Queue {
    name: String,
    arn: String,
    settings: QueueSettings,
    created_at: i64,
    messages: VecDeque<Message>,
    notify: Arc<Notify>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The message id.
    pub message_id: String,
    /// The handle for delete and visibility changes (new on every receive).
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// MD5 of the body, hex.
    pub md5_of_body: String,
    /// Message attributes as sent.
    pub message_attributes: Map<String, Value>,
    /// MD5 of the message attributes, when there are any.
    pub md5_of_message_attributes: Option<String>,
    /// `ApproximateReceiveCount`, `SentTimestamp`, ... as SQS reports them.
    pub attributes: BTreeMap<String, String>,
}

/// The queues of one emulator.
pub struct Sqs {
    base_url: String,
    queues: Mutex<BTreeMap<String, Queue>>,
}

fn now_ms() -> i64 {
    switchboard::time::now_millis()
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// SQS's MD5 of message attributes: for each attribute in name order, the
/// length-prefixed name, data type, a transport byte and the value.
fn md5_of_attributes(attributes: &Map<String, Value>) -> SqsResult<Option<String>> {
    if attributes.is_empty() {
        return Ok(None);
    }
    fn push(buf: &mut Vec<u8>, bytes: &[u8]) {
        buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(bytes);
    }
    let mut buf = Vec::new();
    let mut names: Vec<_> = attributes.keys().collect();
    names.sort();
    for name in names {
        let attr = &attributes[name];
        let data_type = attr
            .get("DataType")
            .and_then(Value::as_str)
            .ok_or_else(|| SqsError::invalid(format!("message attribute '{name}' has no DataType")))?;
        push(&mut buf, name.as_bytes());
        push(&mut buf, data_type.as_bytes());
        if let Some(s) = attr.get("StringValue").and_then(Value::as_str) {
            buf.push(1);
            push(&mut buf, s.as_bytes());
        } else if let Some(b) = attr.get("BinaryValue").and_then(Value::as_str) {
            let bytes = B64
                .decode(b)
                .map_err(|_| SqsError::invalid(format!("message attribute '{name}' BinaryValue is not base64")))?;
            buf.push(2);
            push(&mut buf, &bytes);
        } else {
            return Err(SqsError::invalid(format!("message attribute '{name}' has no StringValue or BinaryValue")));
        }
    }
    Ok(Some(md5_hex(&buf)))
}

fn name_from_url(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or_default()
}

fn valid_queue_name(name: &str) -> bool {
    (1..=80).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn int_attr(attrs: &Map<String, Value>, name: &str, max: u64) -> SqsResult<Option<u64>> {
    match attrs.get(name) {
        None => Ok(None),
        Some(v) => {
            let n = v
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or_else(|| v.as_u64())
                .filter(|n| *n <= max)
                .ok_or_else(|| {
                    SqsError::new(
                        "InvalidAttributeValue",
                        "InvalidAttributeValue",
                        format!("invalid value for the parameter {name}: must be a whole number from 0 to {max}"),
                    )
                })?;
            Ok(Some(n))
        }
    }
}

fn apply_attributes(settings: &mut QueueSettings, attrs: &Map<String, Value>) -> SqsResult<()> {
    const KNOWN: &[&str] = &[
        "VisibilityTimeout",
        "DelaySeconds",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "MaximumMessageSize",
        "RedrivePolicy",
        "Policy",
        "SqsManagedSseEnabled",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
    ];
    if let Some(unknown) = attrs.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(SqsError::new(
            "InvalidAttributeName",
            "InvalidAttributeName",
            format!("unknown attribute {unknown} (FIFO queues are not emulated)"),
        ));
    }
    if let Some(n) = int_attr(attrs, "VisibilityTimeout", MAX_VISIBILITY_SECS)? {
        settings.visibility_timeout = n;
    }
    if let Some(n) = int_attr(attrs, "DelaySeconds", 900)? {
        settings.delay_seconds = n;
    }
    if let Some(n) = int_attr(attrs, "MessageRetentionPeriod", 1_209_600)? {
        settings.retention = n.max(60);
    }
    if let Some(n) = int_attr(attrs, "ReceiveMessageWaitTimeSeconds", 20)? {
        settings.receive_wait = n;
    }
    if let Some(n) = int_attr(attrs, "MaximumMessageSize", MAX_MESSAGE_BYTES as u64)? {
        settings.max_message_size = (n as usize).max(1024);
    }
    if let Some(v) = attrs.get("RedrivePolicy") {
        let text = v.as_str().unwrap_or_default();
        if text.is_empty() {
            settings.redrive = None;
        } else {
            let bad = || {
                SqsError::new(
                    "InvalidAttributeValue",
                    "InvalidAttributeValue",
                    "RedrivePolicy must be JSON {\"deadLetterTargetArn\":\"arn:...\",\"maxReceiveCount\":N}",
                )
            };
            let policy: Value = serde_json::from_str(text).map_err(|_| bad())?;
            let arn = policy.get("deadLetterTargetArn").and_then(Value::as_str).ok_or_else(bad)?;
            let max = policy
                .get("maxReceiveCount")
                .and_then(|m| m.as_u64().or_else(|| m.as_str().and_then(|s| s.parse().ok())))
                .filter(|m| (1..=1000).contains(m))
                .ok_or_else(bad)?;
            settings.redrive = Some((arn.to_owned(), max as u32));
        }
    }
    Ok(())
}

/// One entry of a batch request, checked.
fn batch_entries(body: &Value, key: &str) -> SqsResult<Vec<Value>> {
    let entries = body.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    if entries.is_empty() {
        return Err(SqsError::new(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "there should be at least one entry in the request",
        ));
    }
    if entries.len() > 10 {
        return Err(SqsError::new(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!("at most 10 entries per batch, got {}", entries.len()),
        ));
    }
    let mut ids = std::collections::HashSet::new();
    for e in &entries {
        let id = e.get("Id").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() || id.len() > 80 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(SqsError::new(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "a batch entry id is 1-80 letters, digits, '-' or '_'",
            ));
        }
        if !ids.insert(id.to_owned()) {
            return Err(SqsError::new(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("the id {id} is used twice"),
            ));
        }
    }
    Ok(entries)
}

fn batch_failure(id: &Value, e: &SqsError) -> Value {
    json!({"Id": id, "SenderFault": true, "Code": e.code, "Message": e.message})
}

impl Sqs {
    /// Queues whose URLs start with `base_url` (`http://127.0.0.1:9324`).
    pub fn new(base_url: impl Into<String>) -> Self {
        Sqs { base_url: base_url.into().trim_end_matches('/').to_owned(), queues: Mutex::new(BTreeMap::new()) }
    }

    /// A queue's URL.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}/{ACCOUNT}/{name}", self.base_url)
    }

    /// A queue's ARN.
    pub fn arn_of(name: &str) -> String {
        format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Queue>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a queue (idempotent when the settings agree); returns its URL.
    pub fn create_queue(&self, name: &str, attributes: &Map<String, Value>) -> SqsResult<String> {
        if !valid_queue_name(name) {
            return Err(SqsError::invalid(
                "a queue name is 1-80 letters, digits, '-' or '_' (FIFO queues are not emulated)",
            ));
        }
        let mut settings = QueueSettings::default();
        apply_attributes(&mut settings, attributes)?;
        let mut queues = self.lock();
        if let Some(existing) = queues.get(name) {
            if !attributes.is_empty() && existing.settings != settings {
                return Err(SqsError::new(
                    "QueueNameExists",
                    "QueueAlreadyExists",
                    format!("a queue named {name} already exists with different attributes"),
                ));
            }
        } else {
            queues.insert(
                name.to_owned(),
                Queue {
                    name: name.to_owned(),
                    arn: Self::arn_of(name),
                    settings,
                    created_at: now_ms() / 1000,
                    messages: VecDeque::new(),
                    notify: Arc::new(Notify::new()),
                },
            );
        }
        Ok(self.url_of(name))
    }

    fn with_queue<T>(&self, url: &str, f: impl FnOnce(&mut Queue) -> SqsResult<T>) -> SqsResult<T> {
        let mut queues = self.lock();
        let queue = queues.get_mut(name_from_url(url)).ok_or_else(|| SqsError::no_queue(url))?;
        f(queue)
    }

    /// Sends one message; returns its id and the MD5 of its body.
    pub fn send(
        &self,
        url: &str,
        body: &str,
        delay: Option<u64>,
        attributes: Map<String, Value>,
    ) -> SqsResult<(String, String, Option<String>)> {
        if body.is_empty() {
            return Err(SqsError::missing("MessageBody"));
        }
        if let Some(bad) = body.chars().find(|c| {
            !matches!(*c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        }) {
            return Err(SqsError::new(
                "InvalidMessageContents",
                "InvalidMessageContents",
                format!("the message contains characters outside the allowed set (U+{:04X})", bad as u32),
            ));
        }
        if delay.is_some_and(|d| d > 900) {
            return Err(SqsError::invalid("DelaySeconds must be from 0 to 900"));
        }
        let md5_of_attributes = md5_of_attributes(&attributes)?;
        let md5_of_body = md5_hex(body.as_bytes());
        let id = uuid::Uuid::new_v4().to_string();
        self.with_queue(url, |q| {
            let size = body.len() + attributes.iter().map(|(k, v)| k.len() + v.to_string().len()).sum::<usize>();
            if size > q.settings.max_message_size {
                return Err(SqsError::invalid(format!(
                    "the message is {size} bytes; this queue takes at most {}",
                    q.settings.max_message_size
                )));
            }
            let delay = delay.unwrap_or(q.settings.delay_seconds);
            q.messages.push_back(Message {
                id: id.clone(),
                body: body.to_owned(),
                md5_of_body: md5_of_body.clone(),
                attributes,
                md5_of_attributes: md5_of_attributes.clone(),
                sent_at_ms: now_ms(),
                first_received_ms: None,
                visible_at: Instant::now() + Duration::from_secs(delay),
                receive_count: 0,
                receipt: None,
            });
            q.notify.notify_waiters();
            Ok(())
        })?;
        Ok((id, md5_of_body, md5_of_attributes))
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first.
    pub async fn receive(
        &self,
        url: &str,
        max: usize,
        visibility: Option<u64>,
        wait: Duration,
    ) -> SqsResult<Vec<Received>> {
        let deadline = Instant::now() + wait;
        loop {
            let notify = self.with_queue(url, |q| Ok(q.notify.clone()))?;
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (got, next_visible) = self.take_visible(url, max, visibility)?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Takes visible messages, moving over-received ones to their DLQ.
    /// Returns them and when the next invisible message becomes visible.
    fn take_visible(
        &self,
        url: &str,
        max: usize,
        visibility: Option<u64>,
    ) -> SqsResult<(Vec<Received>, Option<Instant>)> {
        let mut queues = self.lock();
        let queue = queues.get_mut(name_from_url(url)).ok_or_else(|| SqsError::no_queue(url))?;
        let now = Instant::now();
        let now_ms = now_ms();
        let retention_ms = queue.settings.retention as i64 * 1000;
        queue.messages.retain(|m| now_ms - m.sent_at_ms < retention_ms);
        let visibility = Duration::from_secs(visibility.unwrap_or(queue.settings.visibility_timeout));
        let redrive = queue.settings.redrive.clone();
        let arn = queue.arn.clone();
        let mut got = Vec::new();
        let mut dead = Vec::new();
        let mut next_visible: Option<Instant> = None;
        let mut i = 0;
        while i < queue.messages.len() && got.len() < max {
            let m = &mut queue.messages[i];
            if m.visible_at > now {
                next_visible = Some(next_visible.map_or(m.visible_at, |t| t.min(m.visible_at)));
                i += 1;
                continue;
            }
            if let Some((_, max_receives)) = &redrive
                && m.receive_count >= *max_receives
            {
                dead.push(queue.messages.remove(i).expect("index in range"));
                continue;
            }
            m.receive_count += 1;
            m.first_received_ms.get_or_insert(now_ms);
            m.visible_at = now + visibility;
            let receipt = format!("{}#{}", m.id, uuid::Uuid::new_v4().simple());
            m.receipt = Some(receipt.clone());
            let mut attributes = BTreeMap::new();
            attributes.insert("ApproximateReceiveCount".into(), m.receive_count.to_string());
            attributes.insert("SentTimestamp".into(), m.sent_at_ms.to_string());
            attributes
                .insert("ApproximateFirstReceiveTimestamp".into(), m.first_received_ms.unwrap_or(now_ms).to_string());
            attributes.insert("SenderId".into(), ACCOUNT.into());
            got.push(Received {
                message_id: m.id.clone(),
                receipt_handle: receipt,
                body: m.body.clone(),
                md5_of_body: m.md5_of_body.clone(),
                message_attributes: m.attributes.clone(),
                md5_of_message_attributes: m.md5_of_attributes.clone(),
                attributes,
            });
            i += 1;
        }
        if let Some((dlq_arn, _)) = redrive
            && !dead.is_empty()
        {
            match queues.values_mut().find(|q| q.arn == dlq_arn) {
                Some(dlq) => {
                    tracing::info!(queue = %arn, dlq = %dlq.name, count = dead.len(), "redriven to the dead-letter queue");
                    for mut m in dead {
                        m.receive_count = 0;
                        m.receipt = None;
                        m.visible_at = now;
                        dlq.messages.push_back(m);
                    }
                    dlq.notify.notify_waiters();
                }
                None => tracing::warn!(queue = %arn, dlq = %dlq_arn, "dead-letter queue missing: messages dropped"),
            }
        }
        Ok((got, next_visible))
    }

    fn find_receipt(q: &Queue, handle: &str) -> SqsResult<usize> {
        let id = handle.split('#').next().unwrap_or_default();
        q.messages
            .iter()
            .position(|m| m.id == id && m.receipt.as_deref() == Some(handle))
            .ok_or_else(|| SqsError::bad_receipt(handle))
    }

    /// Deletes a received message. A handle of a message already deleted is
    /// accepted, as SQS does.
    pub fn delete(&self, url: &str, handle: &str) -> SqsResult<()> {
        if handle.is_empty() || !handle.contains('#') {
            return Err(SqsError::bad_receipt(handle));
        }
        self.with_queue(url, |q| {
            let id = handle.split('#').next().unwrap_or_default();
            if let Some(i) = q.messages.iter().position(|m| m.id == id) {
                q.messages.remove(i);
            }
            Ok(())
        })
    }

    /// Sets a received message's remaining invisibility.
    pub fn change_visibility(&self, url: &str, handle: &str, secs: u64) -> SqsResult<()> {
        if secs > MAX_VISIBILITY_SECS {
            return Err(SqsError::invalid(format!("VisibilityTimeout must be from 0 to {MAX_VISIBILITY_SECS}")));
        }
        self.with_queue(url, |q| {
            let i = Self::find_receipt(q, handle)?;
            let m = &mut q.messages[i];
            let now = Instant::now();
            if m.visible_at <= now {
                return Err(SqsError::new(
                    "MessageNotInflight",
                    "AWS.SimpleQueueService.MessageNotInflight",
                    "the message is not in flight (its visibility timeout has expired)",
                ));
            }
            m.visible_at = now + Duration::from_secs(secs);
            if secs == 0 {
                q.notify.notify_waiters();
            }
            Ok(())
        })
    }

    /// Drops every message of a queue.
    pub fn purge(&self, url: &str) -> SqsResult<()> {
        self.with_queue(url, |q| {
            q.messages.clear();
            Ok(())
        })
    }

    /// Messages visible now, in flight, and delayed (never received yet).
    pub fn counts(&self, url: &str) -> SqsResult<(usize, usize, usize)> {
        self.with_queue(url, |q| {
            let now = Instant::now();
            let visible = q.messages.iter().filter(|m| m.visible_at <= now).count();
            let delayed = q.messages.iter().filter(|m| m.visible_at > now && m.receive_count == 0).count();
            Ok((visible, q.messages.len() - visible - delayed, delayed))
        })
    }

    fn attributes(&self, url: &str, wanted: &[String]) -> SqsResult<Map<String, Value>> {
        let (visible, in_flight, delayed) = self.counts(url)?;
        self.with_queue(url, |q| {
            let s = &q.settings;
            let mut all = Map::new();
            let mut put = |k: &str, v: String| {
                all.insert(k.to_owned(), Value::String(v));
            };
            put("QueueArn", q.arn.clone());
            put("ApproximateNumberOfMessages", visible.to_string());
            put("ApproximateNumberOfMessagesNotVisible", in_flight.to_string());
            put("ApproximateNumberOfMessagesDelayed", delayed.to_string());
            put("CreatedTimestamp", q.created_at.to_string());
            put("LastModifiedTimestamp", q.created_at.to_string());
            put("VisibilityTimeout", s.visibility_timeout.to_string());
            put("DelaySeconds", s.delay_seconds.to_string());
            put("MessageRetentionPeriod", s.retention.to_string());
            put("ReceiveMessageWaitTimeSeconds", s.receive_wait.to_string());
            put("MaximumMessageSize", s.max_message_size.to_string());
            put("SqsManagedSseEnabled", "false".into());
            if let Some((arn, max)) = &s.redrive {
                put("RedrivePolicy", json!({"deadLetterTargetArn": arn, "maxReceiveCount": max}).to_string());
            }
            if wanted.is_empty() || wanted.iter().any(|w| w == "All") {
                return Ok(all);
            }
            let mut out = Map::new();
            for w in wanted {
                match all.get(w) {
                    Some(v) => {
                        out.insert(w.clone(), v.clone());
                    }
                    None if w == "RedrivePolicy" => {}
                    None => {
                        return Err(SqsError::new(
                            "InvalidAttributeName",
                            "InvalidAttributeName",
                            format!("unknown attribute {w}"),
                        ));
                    }
                }
            }
            Ok(out)
        })
    }

    /// Runs one JSON-protocol action.
    pub async fn call(&self, action: &str, body: &Value) -> SqsResult<Value> {
        let url = || -> SqsResult<String> {
            body.get("QueueUrl").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| SqsError::missing("QueueUrl"))
        };
        let attrs = |key: &str| body.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
        match action {
            "CreateQueue" => {
                let name =
                    body.get("QueueName").and_then(Value::as_str).ok_or_else(|| SqsError::missing("QueueName"))?;
                Ok(json!({"QueueUrl": self.create_queue(name, &attrs("Attributes"))?}))
            }
            "GetQueueUrl" => {
                let name =
                    body.get("QueueName").and_then(Value::as_str).ok_or_else(|| SqsError::missing("QueueName"))?;
                if !self.lock().contains_key(name) {
                    return Err(SqsError::no_queue(name));
                }
                Ok(json!({"QueueUrl": self.url_of(name)}))
            }
            "ListQueues" => {
                let prefix = body.get("QueueNamePrefix").and_then(Value::as_str).unwrap_or_default();
                let max = body.get("MaxResults").and_then(Value::as_u64).unwrap_or(1000) as usize;
                let urls: Vec<String> =
                    self.lock().keys().filter(|n| n.starts_with(prefix)).take(max).map(|n| self.url_of(n)).collect();
                Ok(json!({"QueueUrls": urls}))
            }
            "DeleteQueue" => {
                let url = url()?;
                self.lock().remove(name_from_url(&url)).ok_or_else(|| SqsError::no_queue(&url))?;
                Ok(json!({}))
            }
            "GetQueueAttributes" => {
                let wanted: Vec<String> = body
                    .get("AttributeNames")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                Ok(json!({"Attributes": self.attributes(&url()?, &wanted)?}))
            }
            "SetQueueAttributes" => {
                let url = url()?;
                let new = attrs("Attributes");
                self.with_queue(&url, |q| apply_attributes(&mut q.settings, &new))?;
                Ok(json!({}))
            }
            "PurgeQueue" => {
                self.purge(&url()?)?;
                Ok(json!({}))
            }
            "SendMessage" => {
                let text =
                    body.get("MessageBody").and_then(Value::as_str).ok_or_else(|| SqsError::missing("MessageBody"))?;
                let delay = body.get("DelaySeconds").and_then(Value::as_u64);
                let (id, md5, md5_attrs) = self.send(&url()?, text, delay, attrs("MessageAttributes"))?;
                let mut out = json!({"MessageId": id, "MD5OfMessageBody": md5});
                if let Some(m) = md5_attrs {
                    out["MD5OfMessageAttributes"] = Value::String(m);
                }
                Ok(out)
            }
            "SendMessageBatch" => {
                let url = url()?;
                let entries = batch_entries(body, "Entries")?;
                let total: usize =
                    entries.iter().map(|e| e.get("MessageBody").and_then(Value::as_str).map_or(0, str::len)).sum();
                if total > MAX_MESSAGE_BYTES {
                    return Err(SqsError::new(
                        "BatchRequestTooLong",
                        "AWS.SimpleQueueService.BatchRequestTooLong",
                        format!("the batch is {total} bytes; at most {MAX_MESSAGE_BYTES}"),
                    ));
                }
                let (mut ok, mut failed) = (Vec::new(), Vec::new());
                for e in &entries {
                    let text = e.get("MessageBody").and_then(Value::as_str).unwrap_or_default();
                    let delay = e.get("DelaySeconds").and_then(Value::as_u64);
                    let entry_attrs =
                        e.get("MessageAttributes").and_then(Value::as_object).cloned().unwrap_or_default();
                    match self.send(&url, text, delay, entry_attrs) {
                        Ok((id, md5, md5_attrs)) => {
                            let mut out = json!({"Id": e["Id"], "MessageId": id, "MD5OfMessageBody": md5});
                            if let Some(m) = md5_attrs {
                                out["MD5OfMessageAttributes"] = Value::String(m);
                            }
                            ok.push(out);
                        }
                        Err(err) if err.code == "QueueDoesNotExist" => return Err(err),
                        Err(err) => failed.push(batch_failure(&e["Id"], &err)),
                    }
                }
                Ok(json!({"Successful": ok, "Failed": failed}))
            }
            "ReceiveMessage" => self.receive_action(&url()?, body).await,
            "DeleteMessage" => {
                let handle = body
                    .get("ReceiptHandle")
                    .and_then(Value::as_str)
                    .ok_or_else(|| SqsError::missing("ReceiptHandle"))?;
                self.delete(&url()?, handle)?;
                Ok(json!({}))
            }
            "DeleteMessageBatch" => {
                let url = url()?;
                let (mut ok, mut failed) = (Vec::new(), Vec::new());
                for e in batch_entries(body, "Entries")? {
                    let handle = e.get("ReceiptHandle").and_then(Value::as_str).unwrap_or_default();
                    match self.delete(&url, handle) {
                        Ok(()) => ok.push(json!({"Id": e["Id"]})),
                        Err(err) if err.code == "QueueDoesNotExist" => return Err(err),
                        Err(err) => failed.push(batch_failure(&e["Id"], &err)),
                    }
                }
                Ok(json!({"Successful": ok, "Failed": failed}))
            }
            "ChangeMessageVisibility" => {
                let handle = body
                    .get("ReceiptHandle")
                    .and_then(Value::as_str)
                    .ok_or_else(|| SqsError::missing("ReceiptHandle"))?;
                let secs = body
                    .get("VisibilityTimeout")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
                self.change_visibility(&url()?, handle, secs)?;
                Ok(json!({}))
            }
            "ChangeMessageVisibilityBatch" => {
                let url = url()?;
                let (mut ok, mut failed) = (Vec::new(), Vec::new());
                for e in batch_entries(body, "Entries")? {
                    let handle = e.get("ReceiptHandle").and_then(Value::as_str).unwrap_or_default();
                    let secs = e.get("VisibilityTimeout").and_then(Value::as_u64).unwrap_or(0);
                    match self.change_visibility(&url, handle, secs) {
                        Ok(()) => ok.push(json!({"Id": e["Id"]})),
                        Err(err) if err.code == "QueueDoesNotExist" => return Err(err),
                        Err(err) => failed.push(batch_failure(&e["Id"], &err)),
                    }
                }
                Ok(json!({"Successful": ok, "Failed": failed}))
            }
            other => Err(SqsError::new(
                "UnsupportedOperation",
                "AWS.SimpleQueueService.UnsupportedOperation",
                format!("{other} is not supported by switchboard-local"),
            )),
        }
    }

    async fn receive_action(&self, url: &str, body: &Value) -> SqsResult<Value> {
        let max = body.get("MaxNumberOfMessages").and_then(Value::as_u64).unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(SqsError::invalid("MaxNumberOfMessages must be from 1 to 10"));
        }
        let visibility = body.get("VisibilityTimeout").and_then(Value::as_u64);
        if visibility.is_some_and(|v| v > MAX_VISIBILITY_SECS) {
            return Err(SqsError::invalid(format!("VisibilityTimeout must be from 0 to {MAX_VISIBILITY_SECS}")));
        }
        let default_wait = self.with_queue(url, |q| Ok(q.settings.receive_wait))?;
        let wait = body.get("WaitTimeSeconds").and_then(Value::as_u64).unwrap_or(default_wait);
        if wait > 20 {
            return Err(SqsError::invalid("WaitTimeSeconds must be from 0 to 20"));
        }
        let names = |key: &str| -> Vec<String> {
            body.get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let mut system = names("MessageSystemAttributeNames");
        system.extend(names("AttributeNames"));
        let wanted_attrs = names("MessageAttributeNames");
        let got = self.receive(url, max as usize, visibility, Duration::from_secs(wait)).await?;
        let messages: Vec<Value> = got
            .into_iter()
            .map(|m| {
                let mut out = json!({
                    "MessageId": m.message_id,
                    "ReceiptHandle": m.receipt_handle,
                    "MD5OfBody": m.md5_of_body,
                    "Body": m.body,
                });
                let attrs: Map<String, Value> = m
                    .attributes
                    .into_iter()
                    .filter(|(k, _)| system.iter().any(|w| w == "All" || w == k))
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                if !attrs.is_empty() {
                    out["Attributes"] = Value::Object(attrs);
                }
                let message_attrs: Map<String, Value> = m
                    .message_attributes
                    .into_iter()
                    .filter(|(k, _)| {
                        wanted_attrs.iter().any(|w| {
                            w == "All" || w == ".*" || w == k || w.strip_suffix(".*").is_some_and(|p| k.starts_with(p))
                        })
                    })
                    .collect();
                if !message_attrs.is_empty() {
                    out["MessageAttributes"] = Value::Object(message_attrs);
                    if let Some(md5) = m.md5_of_message_attributes {
                        out["MD5OfMessageAttributes"] = Value::String(md5);
                    }
                }
                out
            })
            .collect();
        Ok(json!({"Messages": messages}))
    }
}

/// The SQS endpoint: `POST /` with `X-Amz-Target: AmazonSQS.<Action>`.
pub fn router(sqs: Arc<Sqs>) -> Router {
    Router::new().fallback(handle_http).with_state(sqs)
}

async fn handle_http(State(sqs): State<Arc<Sqs>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(action) = target.strip_prefix("AmazonSQS.") else {
        let query = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let hint = if query.starts_with("application/x-www-form-urlencoded") {
            "; this emulator speaks the SQS JSON protocol (current AWS SDKs and AWS CLI), not the query protocol"
        } else {
            ""
        };
        return SqsError::new(
            "InvalidAction",
            "InvalidAction",
            format!("missing or unknown X-Amz-Target header (expected AmazonSQS.<Action>){hint}"),
        )
        .into_response();
    };
    let parsed: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return SqsError::new(
                    "InvalidParameterValue",
                    "InvalidParameterValue",
                    "the body is not a JSON object",
                )
                .into_response();
            }
        }
    };
    match sqs.call(action, &parsed).await {
        Ok(v) => {
            let mut response = (StatusCode::OK, v.to_string()).into_response();
            response.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
            response.headers_mut().insert(
                "x-amzn-requestid",
                HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid is a header value"),
            );
            response
        }
        Err(e) => e.into_response(),
    }
}

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
                        let failed: std::collections::HashSet<_> =
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_attributes_matches_the_sdk_documentation_vector() {
        // The encoding botocore's checksum handler uses, spelled out.
        let attrs: Map<String, Value> =
            serde_json::from_value(json!({"a": {"DataType": "String", "StringValue": "b"}})).unwrap();
        let mut buf = Vec::new();
        for part in [&b"a"[..], b"String"] {
            buf.extend_from_slice(&(part.len() as u32).to_be_bytes());
            buf.extend_from_slice(part);
        }
        buf.push(1);
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.push(b'b');
        assert_eq!(md5_of_attributes(&attrs).unwrap(), Some(md5_hex(&buf)));
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn names_come_from_the_last_url_segment() {
        assert_eq!(name_from_url("http://127.0.0.1:9324/000000000000/webhooks"), "webhooks");
        assert_eq!(name_from_url("http://sqs:9324/000000000000/events/"), "events");
    }
}
