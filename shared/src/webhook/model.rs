//! What is stored: a webhook's configuration, a delivery (the SQS message), a delivery-log entry.

use super::*;

/// A webhook of a tenant, as stored in its registry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookConfig {
    /// `wh_` + 32 hex digits.
    pub id: WebhookId,
    /// A label for people.
    pub name: String,
    /// Where deliveries go (checked by the SSRF guard on save and on delivery).
    pub url: String,
    /// Topics it receives (`call.incoming`, `call.*`, `*`).
    pub events: Vec<crate::event::Topic>,
    /// Channels it receives events of (`queue:*`, `call:*`, `team:east`);
    /// empty: every event of its topics, whatever its target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<crate::channel::ChannelPattern>,
    /// The signing secret (shown once, on create).
    pub secret: String,
    /// Paused webhooks receive nothing.
    pub is_active: bool,
    /// Attempts after the first before a delivery is dead-lettered (legacy hub's default 3).
    pub retry_count: u32,
    /// Per-attempt timeout in seconds (legacy hub's default 30).
    pub timeout: u32,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// Secrets rotated out that still sign until they expire (never shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_secrets: Vec<RetiredSecret>,
    /// Why the system disabled the webhook (410 from the receiver, failing for days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// A rotated-out secret in its grace period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetiredSecret {
    /// The old secret.
    pub secret: String,
    /// Unix milliseconds after which it no longer signs.
    pub expires_at: i64,
}

impl WebhookConfig {
    /// An active webhook of `url` for `events`, with a fresh id and secret
    /// and the defaults `POST /v1/webhooks` gives (3 retries, a 30 s
    /// timeout), created `now` (Unix ms).
    pub fn new(name: impl Into<String>, url: impl Into<String>, events: Vec<crate::event::Topic>, now: i64) -> Self {
        WebhookConfig {
            id: WebhookConfig::new_id(),
            name: name.into(),
            url: url.into(),
            events,
            channels: vec![],
            secret: Secret::generate().expose().to_owned(),
            is_active: true,
            retry_count: 3,
            timeout: 30,
            created_at: now,
            updated_at: now,
            previous_secrets: vec![],
            disabled_reason: None,
        }
    }

    /// A fresh id.
    pub fn new_id() -> WebhookId {
        WebhookId::parse(format!("wh_{}", uuid::Uuid::now_v7().simple())).expect("wh_ and hex digits")
    }

    /// Is `id` shaped like a webhook id?
    pub fn valid_id(id: &str) -> bool {
        id.strip_prefix("wh_").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Does this webhook want `event`, published to `channel` (`None`:
    /// the tenant, a user or a connection)? Its topics must match; with
    /// channel patterns, the event must also be a matching channel's.
    pub fn wants(&self, event: crate::event::EventType, channel: Option<&crate::channel::Channel>) -> bool {
        let channel_ok = match channel {
            _ if self.channels.is_empty() => true,
            Some(c) => self.channels.iter().any(|p| p.matches(c)),
            None => false,
        };
        self.is_active && channel_ok && self.events.iter().any(|t| t.matches(event))
    }

    /// The configuration without its secrets (what list and get answer).
    pub fn public_view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("plain data");
        if let Some(obj) = v.as_object_mut() {
            obj.remove("secret");
            obj.remove("previous_secrets");
        }
        v
    }

    /// The secrets that sign a delivery at `now_ms`: the current one first,
    /// then rotated-out ones still in their grace period. Unparseable stored
    /// secrets are skipped (and logged).
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<Secret> {
        std::iter::once(self.secret.as_str())
            .chain(self.previous_secrets.iter().filter(|r| r.expires_at > now_ms).map(|r| r.secret.as_str()))
            .filter_map(|raw| match Secret::parse(raw) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(webhook_id = %self.id, error = %e, "stored webhook secret does not parse");
                    None
                }
            })
            .collect()
    }

    /// Replaces the secret with `new`; the old one keeps signing for
    /// `grace`. A zero grace revokes every old secret at once (a leak).
    pub fn rotate(&mut self, new: Secret, grace: Duration, now_ms: i64) {
        self.previous_secrets.retain(|r| r.expires_at > now_ms);
        let old = std::mem::replace(&mut self.secret, new.expose().to_owned());
        if grace.is_zero() {
            self.previous_secrets.clear();
        } else {
            self.previous_secrets.push(RetiredSecret { secret: old, expires_at: now_ms + grace.as_millis() as i64 });
        }
        self.updated_at = now_ms;
    }
}

/// One delivery of one event to one webhook: the SQS message body.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Delivery {
    /// Idempotency key: the Standard Webhooks `webhook-id`, the same on every attempt.
    pub delivery_id: String,
    /// The event's tenant.
    pub tenant_id: crate::ids::TenantId,
    /// The webhook's id (the legacy hub's `X-Webhook-ID`).
    pub webhook_id: WebhookId,
    /// The event type.
    pub event: crate::event::EventType,
    /// When the event happened, Unix seconds (the legacy hub's payload field).
    pub timestamp: i64,
    /// The event's data.
    pub data: serde_json::Value,
    /// The channel the event was published to, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<crate::channel::Channel>,
    /// Attempts made before this message was (re)queued: a delivery paused
    /// by the circuit breaker is queued again with its count so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt_base: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Delivery {
    /// The legacy hub's payload: `{"event","timestamp","data"}`, and
    /// `"channel"` for an event published to one.
    pub fn payload(&self) -> Vec<u8> {
        let mut body = serde_json::json!({"event": self.event, "timestamp": self.timestamp, "data": self.data});
        if let Some(channel) = &self.channel {
            body["channel"] = serde_json::json!(channel);
        }
        serde_json::to_vec(&body).expect("plain JSON")
    }
}

/// A delivery-log entry's status, as the log and the API spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStatus {
    /// The receiver answered 2xx.
    Delivered,
    /// The attempt failed and another is scheduled (`next_attempt_at`).
    Failed,
    /// A test or replay the receiver refused for good (4xx, or a URL the
    /// policy refuses): a queued delivery so refused is `dead`.
    Rejected,
    /// The receiver answered 410: the webhook is disabled.
    Gone,
    /// No more attempts: the delivery is in the dead-letter queue.
    Dead,
    /// Not sent: the webhook was deleted or disabled before the attempt.
    Dropped,
}

impl LogStatus {
    /// Every status, in the order the API documents them.
    pub const ALL: [LogStatus; 6] = [
        LogStatus::Delivered,
        LogStatus::Failed,
        LogStatus::Rejected,
        LogStatus::Gone,
        LogStatus::Dead,
        LogStatus::Dropped,
    ];

    /// The log's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStatus::Delivered => "delivered",
            LogStatus::Failed => "failed",
            LogStatus::Rejected => "rejected",
            LogStatus::Gone => "gone",
            LogStatus::Dead => "dead",
            LogStatus::Dropped => "dropped",
        }
    }
}

impl std::fmt::Display for LogStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the delivery log (the legacy hub's `webhook_logs` row).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// The delivery (Standard Webhooks `webhook-id`).
    pub delivery_id: String,
    /// The event type.
    pub event: crate::event::EventType,
    /// 1 for the first try.
    pub attempt: u32,
    /// HTTP status, when there was a response.
    pub response_code: Option<u16>,
    /// The first 20 KB of the response body.
    pub response_body: String,
    /// Transport or policy error.
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// What came of it.
    pub status: LogStatus,
    /// When, Unix milliseconds.
    pub created_at: i64,
    /// Next attempt, Unix milliseconds, when one is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// The delivery itself, so it can be replayed; its `data` is null when
    /// it was too large to keep (see `data_omitted`).
    pub delivery: Delivery,
    /// Set when the event's data was left out of the log to keep the entry
    /// within `WEBHOOK_LOG_ENTRY_BYTES`: its size and SHA-256, to match it
    /// with the event. Such a delivery is replayed from the dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_omitted: Option<OmittedData>,
}

/// What the log keeps of data it could not keep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OmittedData {
    /// The data's JSON length.
    pub bytes: usize,
    /// Lowercase hex SHA-256 of that JSON.
    pub sha256: String,
}

impl LogEntry {
    /// The entry as the log stores it, within about `max_bytes` of JSON:
    /// the response excerpt cut to a quarter of it (measured after JSON
    /// escaping: binary bytes escape to six characters each, so a 20 KB
    /// excerpt could be 120 KB), and the event's data kept only when it
    /// fits in half, else replaced by its size and hash.
    pub fn bounded(mut self, max_bytes: usize) -> LogEntry {
        self.response_body = cut_escaped(&self.response_body, max_bytes / 4);
        let data = serde_json::to_string(&self.delivery.data).expect("plain JSON");
        if data.len() > max_bytes / 2 {
            use sha2::Digest;
            let sha256 = Sha256::digest(data.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
            self.data_omitted = Some(OmittedData { bytes: data.len(), sha256 });
            self.delivery.data = serde_json::Value::Null;
        }
        self
    }
}

/// The longest prefix of `text` whose JSON string escaping is at most `max` bytes.
pub fn cut_escaped(text: &str, max: usize) -> String {
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        let escaped = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if used + escaped > max {
            break;
        }
        used += escaped;
        end = i + c.len_utf8();
    }
    text[..end].to_owned()
}
