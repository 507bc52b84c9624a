//! The queue engine: queues, messages, visibility, delays, redrive and
//! long polling, behind a mutex. It knows nothing of HTTP or JSON framing
//! (that is [`super::wire`]) nor of Lambda (that is [`super::poller`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
/// How long after a `PurgeQueue` another one is refused (`PurgeQueueInProgress`).
pub const PURGE_COOLDOWN: Duration = Duration::from_secs(60);
/// Most message attributes on one message.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

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
    pub(super) fn new(code: &'static str, query_code: &'static str, message: impl Into<String>) -> Self {
        SqsError { code, query_code, message: message.into() }
    }
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", "InvalidParameterValue", message)
    }
    pub(super) fn missing(name: &str) -> Self {
        Self::new("MissingParameter", "MissingParameter", format!("the request must contain the parameter {name}"))
    }
    pub(super) fn no_queue(url: &str) -> Self {
        Self::new(
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            format!("the specified queue does not exist: {url}"),
        )
    }
    pub(super) fn bad_receipt(handle: &str) -> Self {
        Self::new(
            "ReceiptHandleIsInvalid",
            "ReceiptHandleIsInvalid",
            format!("the receipt handle '{handle}' is not valid"),
        )
    }
}

/// What the engine's operations return.
pub type SqsResult<T> = Result<T, SqsError>;

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
    /// When it was last purged: SQS refuses another purge within [`PURGE_COOLDOWN`].
    purged_at: Option<Instant>,
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

/// A message accepted by [`Sqs::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The new message's id.
    pub message_id: String,
    /// MD5 of the body, hex.
    pub md5_of_body: String,
    /// MD5 of the message attributes, when there are any.
    pub md5_of_message_attributes: Option<String>,
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

/// Is `data_type` one SQS takes: `String`, `Number` or `Binary`, optionally
/// followed by `.` and a custom label (`Number.int`), 256 characters at most?
fn valid_data_type(data_type: &str) -> bool {
    let (base, label) = match data_type.split_once('.') {
        Some((base, label)) => (base, Some(label)),
        None => (data_type, None),
    };
    matches!(base, "String" | "Number" | "Binary") && data_type.len() <= 256 && label.is_none_or(|l| !l.is_empty())
}

/// SQS's MD5 of message attributes: for each attribute in name order, the
/// length-prefixed name, data type, a transport byte and the value. Also
/// what checks that each attribute is well formed.
pub(super) fn md5_of_attributes(attributes: &Map<String, Value>) -> SqsResult<Option<String>> {
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
        if !valid_data_type(data_type) {
            return Err(SqsError::invalid(format!(
                "the type of message attribute '{name}' is invalid ('{data_type}'): use String, Number or Binary, \
                 optionally with a custom label (Number.int)"
            )));
        }
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
                    purged_at: None,
                },
            );
        }
        Ok(self.url_of(name))
    }

    /// The URL of the queue `name`, if it exists.
    pub fn queue_url(&self, name: &str) -> SqsResult<String> {
        if !self.lock().contains_key(name) {
            return Err(SqsError::no_queue(name));
        }
        Ok(self.url_of(name))
    }

    /// The URLs of up to `max` queues whose names start with `prefix` and
    /// come after `after`, in name order, and the name to go on after when
    /// more remain.
    pub fn list_queues(&self, prefix: &str, after: Option<&str>, max: usize) -> (Vec<String>, Option<String>) {
        let queues = self.lock();
        let mut names = queues.keys().filter(|n| n.starts_with(prefix) && after.is_none_or(|a| n.as_str() > a));
        let page: Vec<&String> = names.by_ref().take(max).collect();
        let next = match (names.next(), page.last()) {
            (Some(_), Some(last)) => Some((*last).clone()),
            _ => None,
        };
        (page.into_iter().map(|n| self.url_of(n)).collect(), next)
    }

    /// Deletes a queue and its messages.
    pub fn delete_queue(&self, url: &str) -> SqsResult<()> {
        self.lock().remove(name_from_url(url)).map(drop).ok_or_else(|| SqsError::no_queue(url))
    }

    /// Changes a queue's settings (`VisibilityTimeout`, `RedrivePolicy`, ...).
    pub fn set_attributes(&self, url: &str, attributes: &Map<String, Value>) -> SqsResult<()> {
        self.with_queue(url, |q| apply_attributes(&mut q.settings, attributes))
    }

    /// The queue's default long-polling wait (`ReceiveMessageWaitTimeSeconds`).
    pub fn receive_wait(&self, url: &str) -> SqsResult<u64> {
        self.with_queue(url, |q| Ok(q.settings.receive_wait))
    }

    fn with_queue<T>(&self, url: &str, f: impl FnOnce(&mut Queue) -> SqsResult<T>) -> SqsResult<T> {
        let mut queues = self.lock();
        let queue = queues.get_mut(name_from_url(url)).ok_or_else(|| SqsError::no_queue(url))?;
        f(queue)
    }

    /// Sends one message.
    pub fn send(&self, url: &str, body: &str, delay: Option<u64>, attributes: Map<String, Value>) -> SqsResult<Sent> {
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
        if attributes.len() > MAX_MESSAGE_ATTRIBUTES {
            return Err(SqsError::invalid(format!(
                "a message has at most {MAX_MESSAGE_ATTRIBUTES} message attributes, not {}",
                attributes.len()
            )));
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
        Ok(Sent { message_id: id, md5_of_body, md5_of_message_attributes: md5_of_attributes })
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
                    // As the functions count theirs (a small, fixed label set).
                    let label = match dlq.name.as_str() {
                        crate::queues::WEBHOOKS_DLQ => "webhooks",
                        crate::queues::EVENTS_DLQ => "events",
                        _ => "other",
                    };
                    switchboard::metrics::dead_lettered(label, dead.len());
                    // The receive count goes along: SQS counts receives
                    // across the source queue and its dead-letter queue.
                    for mut m in dead {
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

    /// Drops every message of a queue; refused within [`PURGE_COOLDOWN`] of
    /// the last purge, as SQS does.
    pub fn purge(&self, url: &str) -> SqsResult<()> {
        self.with_queue(url, |q| {
            let now = Instant::now();
            if let Some(at) = q.purged_at
                && now.duration_since(at) < PURGE_COOLDOWN
            {
                return Err(SqsError::new(
                    "PurgeQueueInProgress",
                    "AWS.SimpleQueueService.PurgeQueueInProgress",
                    format!(
                        "only one PurgeQueue is allowed every {} seconds; the last was {} seconds ago",
                        PURGE_COOLDOWN.as_secs(),
                        now.duration_since(at).as_secs()
                    ),
                ));
            }
            q.messages.clear();
            q.purged_at = Some(now);
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

    /// The attributes `wanted` (all of them for `All`; none for none, as SQS answers).
    pub fn attributes(&self, url: &str, wanted: &[String]) -> SqsResult<Map<String, Value>> {
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
            if wanted.iter().any(|w| w == "All") {
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
