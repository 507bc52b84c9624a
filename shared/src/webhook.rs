//! Webhook signing and verification, and the retry schedule.
//!
//! Every delivery carries two signatures of the same body:
//!
//! - the legacy hub's `X-Webhook-Signature`: hex HMAC-SHA256 of the body, keyed by
//!   the webhook's secret string as stored (what the legacy hub's receivers check);
//! - the Standard Webhooks `webhook-signature`: `v1,<base64 HMAC-SHA256 of
//!   "{webhook-id}.{webhook-timestamp}.{body}">`, keyed by the base64-decoded
//!   part of a `whsec_...` secret, so off-the-shelf verifiers work. During a
//!   secret rotation both the new and the old signature are sent,
//!   space-separated.
//!
//! Signing is a pure function, tested against fixed vectors and against the
//! published `standardwebhooks` crate. [`verify_signature`] is what a Rust
//! receiver calls: constant-time comparison, timestamp tolerance.
//!
//! The retry schedule is data ([`RetrySchedule`]): a list of delays, with
//! jitter, so tests shrink it and operators tune it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The most retries a webhook may ask for (`retry_count`). The webhook
/// queue's redrive `maxReceiveCount` is this + 2 (the first attempt, and
/// one spare), in the SAM template and the emulator alike.
pub const MAX_RETRY_COUNT: u32 = 10;

/// The prefix of generated secrets, as in Standard Webhooks.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A secret that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid webhook secret: {0}")]
pub struct InvalidSecret(pub String);

impl Secret {
    /// A new `whsec_` secret from 32 random bytes.
    pub fn generate() -> Self {
        // The thread-local CSPRNG, seeded from the OS (two UUIDv4s held only 244 random bits).
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        Secret(format!("{SECRET_PREFIX}{}", B64.encode(bytes)))
    }

    /// Accepts a `whsec_<base64>` secret (Standard Webhooks), or any other
    /// string of 16 to 256 bytes (a legacy-style secret, used as is).
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidSecret> {
        let raw = raw.into();
        if let Some(encoded) = raw.strip_prefix(SECRET_PREFIX) {
            let key = B64.decode(encoded).map_err(|_| InvalidSecret("the part after whsec_ is not base64".into()))?;
            if !(16..=64).contains(&key.len()) {
                return Err(InvalidSecret(format!("the key is {} bytes; 16 to 64 are accepted", key.len())));
            }
        } else if !(16..=256).contains(&raw.len()) {
            return Err(InvalidSecret(format!("is {} bytes; 16 to 256 are accepted", raw.len())));
        }
        Ok(Secret(raw))
    }

    /// The secret as stored and shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The HMAC key of the Standard Webhooks signature: the decoded bytes of
    /// a `whsec_` secret, else the string's bytes.
    fn standard_key(&self) -> Vec<u8> {
        match self.0.strip_prefix(SECRET_PREFIX) {
            Some(encoded) => B64.decode(encoded).unwrap_or_else(|_| self.0.as_bytes().to_vec()),
            None => self.0.as_bytes().to_vec(),
        }
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// The legacy hub's `X-Webhook-Signature`: lowercase hex HMAC-SHA256 of the body.
pub fn legacy_signature(secret: &Secret, body: &[u8]) -> String {
    let mut m = mac(secret.0.as_bytes());
    m.update(body);
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// One Standard Webhooks signature, `v1,<base64>`.
pub fn standard_signature(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut m = mac(&secret.standard_key());
    m.update(msg_id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1,{}", B64.encode(m.finalize().into_bytes()))
}

/// The `webhook-signature` header value: the current secret's signature,
/// then those of secrets still in their rotation grace period.
pub fn signature_header(secrets: &[&Secret], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| standard_signature(s, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Why a delivery did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp is not a number.
    #[error("webhook-timestamp is not a Unix timestamp")]
    BadTimestamp,
    /// Older or newer than the tolerance allows (replay protection).
    #[error("webhook-timestamp is outside the tolerance")]
    StaleTimestamp,
    /// No `v1` signature matched.
    #[error("no matching signature")]
    NoMatch,
}

/// Verifies a Standard Webhooks delivery: `msg_id`, `timestamp` and
/// `signatures` are the `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` headers. Any one matching `v1` signature suffices
/// (rotations send two); comparison is constant-time.
pub fn verify_signature(
    secret: &Secret,
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
    now_secs: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now_secs - ts).unsigned_abs() > tolerance.as_secs() {
        return Err(VerifyError::StaleTimestamp);
    }
    let key = secret.standard_key();
    for candidate in signatures.split_whitespace() {
        let Some(encoded) = candidate.strip_prefix("v1,") else { continue };
        let Ok(expected) = B64.decode(encoded) else { continue };
        let mut m = mac(&key);
        m.update(msg_id.as_bytes());
        m.update(b".");
        m.update(ts.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        if m.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

/// Delays between delivery attempts: attempt `n` (1-based) failed, the next
/// one waits `delays[n-1]`, give or take `jitter` (a fraction). Past the end
/// of the list the last delay repeats.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule {
    /// Base delays, in order.
    pub delays: Vec<Duration>,
    /// ± this fraction of each delay, so retries of many deliveries spread out.
    pub jitter: f64,
}

impl Default for RetrySchedule {
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Svix's schedule, within SQS's 12-hour visibility limit).
    fn default() -> Self {
        let secs = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
        RetrySchedule { delays: secs.iter().map(|s| Duration::from_secs(*s)).collect(), jitter: 0.2 }
    }
}

impl RetrySchedule {
    /// The wait after failed attempt `attempt` (1-based); `unit` in [0, 1)
    /// picks the point in the jitter band (random in production, fixed in tests).
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Duration {
        let Some(last) = self.delays.last() else { return Duration::ZERO };
        let base = self.delays.get(attempt.saturating_sub(1) as usize).unwrap_or(last);
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor.max(0.0))
    }

    /// Would a retry `wait` from `now_ms` still find its message in a queue
    /// that keeps messages `retention` after `sent_ms`? A margin of ten
    /// minutes covers the visibility timeout and the clocks. When it would
    /// not, the delivery is dead-lettered now: a message that expires is
    /// gone without a dead letter or a log line.
    pub fn fits_retention(sent_ms: i64, now_ms: i64, wait: Duration, retention: Duration) -> bool {
        const MARGIN_MS: i64 = 10 * 60 * 1000;
        now_ms + wait.as_millis() as i64 <= sent_ms + retention.as_millis() as i64 - MARGIN_MS
    }

    /// A `Retry-After` the receiver sent, clamped into [the scheduled delay, 12 h]:
    /// honoured when it asks for more time, never below our own backoff.
    pub fn with_retry_after(&self, scheduled: Duration, retry_after: Option<Duration>) -> Duration {
        let cap = Duration::from_secs(12 * 3600);
        retry_after.map_or(scheduled, |r| r.max(scheduled)).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixed vector from the Standard Webhooks specification's examples.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_specification_vector() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        assert_eq!(standard_signature(&secret, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
        verify_signature(
            &secret,
            SPEC_ID,
            &SPEC_TS.to_string(),
            SPEC_BODY,
            SPEC_SIG,
            SPEC_TS + 10,
            Duration::from_secs(300),
        )
        .unwrap();
    }

    #[test]
    fn legacy_signature_is_hex_hmac_of_the_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let secret = Secret("Jefe".into());
        assert_eq!(
            legacy_signature(&secret, b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verification_refuses_tampering_staleness_and_wrong_keys() {
        let secret = Secret::generate();
        let sig = standard_signature(&secret, "msg_1", 1_000, b"{}");
        let ok = |body: &[u8], sigs: &str, now| {
            verify_signature(&secret, "msg_1", "1000", body, sigs, now, Duration::from_secs(300))
        };
        assert_eq!(ok(b"{}", &sig, 1_100), Ok(()));
        assert_eq!(ok(b"{ }", &sig, 1_100), Err(VerifyError::NoMatch), "body changed");
        assert_eq!(ok(b"{}", &sig, 2_000), Err(VerifyError::StaleTimestamp));
        assert_eq!(ok(b"{}", "v1,AAAA", 1_100), Err(VerifyError::NoMatch));
        let other = Secret::generate();
        let both = signature_header(&[&other, &secret], "msg_1", 1_000, b"{}");
        assert_eq!(both.split(' ').count(), 2);
        assert_eq!(ok(b"{}", &both, 1_100), Ok(()), "one of two signatures suffices (rotation)");
        assert_eq!(
            verify_signature(&secret, "msg_1", "soon", b"{}", &sig, 1_000, Duration::from_secs(1)),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn secrets_are_validated() {
        let s = Secret::generate();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(Secret::parse(s.expose()).unwrap(), s);
        assert!(Secret::parse("whsec_!!!").is_err());
        assert!(Secret::parse("short").is_err());
        assert!(Secret::parse("a-seed-style-secret-of-enough-length").is_ok());
        assert!(!format!("{s:?}").contains(s.expose()));
    }

    #[test]
    fn rotation_keeps_old_secrets_for_their_grace_only() {
        let first = Secret::generate();
        let mut hook = WebhookConfig {
            id: WebhookConfig::new_id(),
            name: "n".into(),
            url: "https://example.com/h".into(),
            events: vec!["*".parse().unwrap()],
            secret: first.expose().into(),
            is_active: true,
            retry_count: 3,
            timeout: 30,
            created_at: 0,
            updated_at: 0,
            previous_secrets: vec![],
            disabled_reason: None,
        };
        let second = Secret::generate();
        hook.rotate(second.clone(), Duration::from_secs(10), 1_000);
        assert_eq!(hook.signing_secrets(5_000), [second.clone(), first.clone()], "current first, then the old one");
        assert_eq!(hook.signing_secrets(11_000), std::slice::from_ref(&second), "grace over");
        assert!(!hook.public_view().to_string().contains(first.expose()), "old secrets are never shown");
        let third = Secret::generate();
        hook.rotate(third.clone(), Duration::ZERO, 2_000);
        assert_eq!(hook.signing_secrets(2_001), [third], "a zero grace revokes every old secret");
    }

    #[test]
    fn log_entries_are_bounded_after_escaping() {
        let delivery = Delivery {
            delivery_id: "msg_1".into(),
            tenant_id: "acme".parse().unwrap(),
            webhook_id: "wh_1".into(),
            event: crate::event::EventType::ChatMessage,
            timestamp: 0,
            data: serde_json::json!({"text": "z".repeat(100_000)}),
            attempt_base: 0,
        };
        // A binary answer: each control byte escapes to six characters.
        let binary: String = (0..RESPONSE_EXCERPT_BYTES).map(|i| char::from((i % 32) as u8)).collect();
        let entry = LogEntry {
            webhook_id: "wh_1".into(),
            delivery_id: "msg_1".into(),
            event: crate::event::EventType::ChatMessage,
            attempt: 1,
            response_code: Some(500),
            response_body: binary,
            error: None,
            duration_ms: 1,
            status: "failed".into(),
            created_at: 0,
            next_attempt_at: None,
            delivery,
            data_omitted: None,
        };
        let unbounded = serde_json::to_string(&entry).unwrap().len();
        assert!(unbounded > 200_000, "{unbounded}");
        let bounded = entry.clone().bounded(16 * 1024);
        let text = serde_json::to_string(&bounded).unwrap();
        assert!(text.len() <= 16 * 1024, "{} bytes", text.len());
        assert_eq!(bounded.delivery.data, serde_json::Value::Null);
        let omitted = bounded.data_omitted.unwrap();
        assert_eq!(omitted.bytes, serde_json::to_string(&entry.delivery.data).unwrap().len());
        assert_eq!(omitted.sha256.len(), 64);
        let small =
            LogEntry { delivery: Delivery { data: serde_json::json!({"a": 1}), ..entry.delivery.clone() }, ..entry };
        assert_eq!(small.bounded(16 * 1024).delivery.data, serde_json::json!({"a": 1}), "small data is kept");
        assert_eq!(cut_escaped("ab\"cd", 4), "ab\"");
        assert_eq!(cut_escaped("héllo", 2), "h", "never mid-character");
    }

    #[test]
    fn the_schedule_is_data() {
        let s = RetrySchedule { delays: vec![Duration::from_secs(10), Duration::from_secs(60)], jitter: 0.5 };
        assert_eq!(s.delay_after(1, 0.5), Duration::from_secs(10));
        assert_eq!(s.delay_after(1, 0.0), Duration::from_secs(5));
        assert_eq!(s.delay_after(2, 1.0), Duration::from_secs(90));
        assert_eq!(s.delay_after(9, 0.5), Duration::from_secs(60), "the last delay repeats");
        assert_eq!(
            s.with_retry_after(Duration::from_secs(10), Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(s.with_retry_after(Duration::from_secs(10), Some(Duration::from_secs(1))), Duration::from_secs(10));
        assert_eq!(
            s.with_retry_after(Duration::from_secs(10), Some(Duration::from_secs(86_400))),
            Duration::from_secs(43_200)
        );
        let day = Duration::from_secs(86_400);
        assert!(RetrySchedule::fits_retention(0, 3_600_000, Duration::from_secs(12 * 3600), day));
        assert!(
            !RetrySchedule::fits_retention(0, 20 * 3_600_000, Duration::from_secs(4 * 3600), day),
            "24 h would pass the day"
        );
        assert!(!RetrySchedule::fits_retention(0, 0, day, day), "the margin counts");
        assert_eq!(RetrySchedule::default().delays.len(), 7);
        assert!(RetrySchedule::default().delays.iter().all(|d| d.as_secs() <= 12 * 3600), "SQS's limit");
    }
}

/// A webhook of a tenant, as stored in its registry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebhookConfig {
    /// `wh_` + 32 hex digits.
    pub id: String,
    /// A label for people.
    pub name: String,
    /// Where deliveries go (checked by the SSRF guard on save and on delivery).
    pub url: String,
    /// Topics it receives (`call.incoming`, `call.*`, `*`).
    pub events: Vec<crate::event::Topic>,
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RetiredSecret {
    /// The old secret.
    pub secret: String,
    /// Unix milliseconds after which it no longer signs.
    pub expires_at: i64,
}

impl WebhookConfig {
    /// A fresh id.
    pub fn new_id() -> String {
        format!("wh_{}", uuid::Uuid::now_v7().simple())
    }

    /// Is `id` shaped like a webhook id?
    pub fn valid_id(id: &str) -> bool {
        id.strip_prefix("wh_").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// Does this webhook want `event`?
    pub fn wants(&self, event: crate::event::EventType) -> bool {
        self.is_active && self.events.iter().any(|t| t.matches(event))
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
    pub webhook_id: String,
    /// The event type.
    pub event: crate::event::EventType,
    /// When the event happened, Unix seconds (the legacy hub's payload field).
    pub timestamp: i64,
    /// The event's data.
    pub data: serde_json::Value,
    /// Attempts made before this message was (re)queued: a delivery paused
    /// by the circuit breaker is queued again with its count so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt_base: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Delivery {
    /// The legacy hub's payload: `{"event","timestamp","data"}`.
    pub fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"event": self.event, "timestamp": self.timestamp, "data": self.data}))
            .expect("plain JSON")
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 410: the receiver is gone for good; disable the webhook.
    Gone,
    /// 408, 429, 5xx, 3xx, timeouts and connection errors: try again later
    /// (no sooner than `retry_after` if the receiver said so).
    Retry {
        /// The receiver's `Retry-After`, in seconds form.
        retry_after: Option<Duration>,
    },
    /// Any other 4xx, or a URL the policy refuses: retrying will not help.
    Rejected,
}

impl Outcome {
    /// The log's word for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::Retry { .. } => "failed",
            Outcome::Rejected => "rejected",
        }
    }
}

/// The longest response-body excerpt kept in the log.
pub const RESPONSE_EXCERPT_BYTES: usize = 20 * 1024;

/// One line of the delivery log (the legacy hub's `webhook_logs` row).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// The webhook.
    pub webhook_id: String,
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
    /// `delivered`, `failed` (will retry), `rejected`, `gone`, `dead` (no more attempts), `paused` (breaker open).
    pub status: String,
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

/// The record of one attempt (the delivery log's entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first try.
    pub attempt: u32,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The first 20 KB of the response body.
    pub body_excerpt: String,
    /// Transport or policy error, when there was no response.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// What to do next.
    pub outcome: Outcome,
}

/// Reads at most `max` bytes of a response body, then drops the response
/// (closing its connection): a receiver answering 400 MB must not cost a
/// function 400 MB. The read is bounded in time by the request's timeout,
/// which covers the body too; what arrived before an error or the timeout
/// is kept. Cut back to a character boundary, never mid-character.
pub async fn read_excerpt(mut response: reqwest::Response, max: usize) -> String {
    let mut bytes: Vec<u8> = Vec::new();
    while bytes.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk[..chunk.len().min(max - bytes.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    drop(response);
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            // Invalid bytes mid-body are shown replaced; a character cut at the end is dropped.
            if cut_mid_character(&bytes, valid) {
                String::from_utf8_lossy(&bytes[..valid]).into_owned()
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

/// Is everything after `valid` the start of one multi-byte character (cut by the limit)?
fn cut_mid_character(bytes: &[u8], valid: usize) -> bool {
    let tail = &bytes[valid..];
    !tail.is_empty() && tail.len() < 4 && std::str::from_utf8(tail).is_err_and(|e| e.error_len().is_none())
}

/// Sends one attempt: the legacy hub's payload and headers plus the Standard
/// Webhooks headers, signed with `secrets` (current first, then any in
/// their rotation grace period), through `client` (see
/// [`crate::ssrf::delivery_client`]) within the webhook's timeout. The URL
/// is checked against `policy` again first: a stored URL may predate a
/// stricter policy.
pub async fn send(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    secrets: &[Secret],
    delivery: &Delivery,
    attempt: u32,
    policy: crate::ssrf::UrlPolicy,
) -> Attempt {
    let started = std::time::Instant::now();
    let done = |status, body_excerpt, error, outcome| Attempt {
        attempt,
        status,
        body_excerpt,
        error,
        duration_ms: started.elapsed().as_millis() as u64,
        outcome,
    };
    let url = match crate::ssrf::check_url(&hook.url, policy) {
        Ok(url) => url,
        Err(e) => return done(None, String::new(), Some(e.to_string()), Outcome::Rejected),
    };
    let body = delivery.payload();
    let now = crate::time::now_millis() / 1000;
    let seed = secrets.first().map(|s| legacy_signature(s, &body)).unwrap_or_default();
    let request = client
        .post(url)
        .timeout(Duration::from_secs(u64::from(hook.timeout.max(1))))
        .header("content-type", "application/json")
        .header("x-webhook-event", delivery.event.as_str())
        .header("x-webhook-id", &hook.id)
        .header("x-webhook-attempt", attempt.to_string())
        .header("x-webhook-signature", seed)
        .header("webhook-id", &delivery.delivery_id)
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            signature_header(&secrets.iter().collect::<Vec<_>>(), &delivery.delivery_id, now, &body),
        )
        .body(body);
    match request.send().await {
        Err(e) => {
            // Without the URL: this text is logged, and the URL may be a credential.
            let e = e.without_url();
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                message = format!("{message}: {inner}");
                source = inner.source();
            }
            done(None, String::new(), Some(message), Outcome::Retry { retry_after: None })
        }
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let excerpt = read_excerpt(response, RESPONSE_EXCERPT_BYTES).await;
            let outcome = match status.as_u16() {
                200..=299 => Outcome::Delivered,
                410 => Outcome::Gone,
                408 | 429 => Outcome::Retry { retry_after },
                400..=499 => Outcome::Rejected,
                _ => Outcome::Retry { retry_after },
            };
            done(Some(status.as_u16()), excerpt, None, outcome)
        }
    }
}
