//! The webhook registry, the delivery log and each endpoint's health.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{StoreError, StoreResult};
use crate::ids::TenantId;
use crate::webhook::WebhookConfig;

/// Webhook configurations cross the store's boundary typed; a backend that
/// keeps them as JSON (Redis) parses them with these two functions and no
/// others, under one rule for data that does not parse (written by a bug,
/// an older version, or a hand in `redis-cli`): a single read answers
/// [`StoreError::Corrupt`] naming the webhook, and a list skips it with an
/// error log, so one bad entry cannot stop the tenant's other webhooks or
/// its publishes.
pub(super) fn parse_webhook(tenant: &TenantId, id: &str, raw: &str) -> StoreResult<WebhookConfig> {
    serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("webhook {id} of tenant {tenant} does not parse: {e}")))
}

/// The configurations of `raw` that parse; the others are logged and skipped.
pub(super) fn parse_listed_webhooks(tenant: &TenantId, raw: &[String]) -> Vec<WebhookConfig> {
    raw.iter()
        .filter_map(|r| match serde_json::from_str::<WebhookConfig>(r) {
            Ok(hook) => Some(hook),
            Err(e) => {
                tracing::error!(tenant_id = %tenant, error = %e, bytes = r.len(), "stored webhook does not parse; skipped");
                None
            }
        })
        .collect()
}

/// A webhook endpoint's recent record: what the circuit breaker decides on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// When the first of those failures happened (Unix ms).
    pub failing_since: Option<i64>,
    /// Deliveries wait until then (Unix ms).
    pub paused_until: Option<i64>,
}

/// The circuit breaker's policy, applied when an attempt is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that pause the endpoint (0: never pause).
    pub threshold: u32,
    /// How long a pause lasts, in ms; each failure while at the threshold renews it.
    pub cooldown_ms: i64,
}

/// How much of the delivery log a tenant keeps: at most `max_entries`
/// (approximately, as `MAXLEN ~`), none older than `max_age_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBounds {
    /// Entries kept per tenant.
    pub max_entries: usize,
    /// Entries older than this (ms) are trimmed when the next is written.
    pub max_age_ms: i64,
}

/// One delivery attempt, as the webhook function records it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptRecord<'a> {
    /// The webhook.
    pub webhook_id: &'a str,
    /// The delivery.
    pub delivery_id: &'a str,
    /// The log entry, JSON.
    pub entry: &'a str,
    /// The receiver took it (2xx).
    pub success: bool,
    /// When (Unix ms): the breaker's clock and the stats bucket.
    pub at_ms: i64,
    /// The delivery's first attempt (counts one more delivery in the stats).
    pub first: bool,
    /// No more attempts follow (dead-lettered).
    pub dead: bool,
    /// How long the attempt took.
    pub duration_ms: u64,
}

/// Width of one stats bucket: 5 minutes. The stats window is the current
/// bucket and the [`STATS_BUCKETS`]` - 1` before it.
pub const STATS_BUCKET_MS: i64 = 300_000;
/// Buckets in the stats window (an hour).
pub const STATS_BUCKETS: i64 = 12;

/// The stats bucket an attempt at `at_ms` counts in.
pub fn stats_bucket(at_ms: i64) -> i64 {
    at_ms.div_euclid(STATS_BUCKET_MS)
}

/// The buckets of the stats window ending at `now_ms`.
pub fn stats_window(now_ms: i64) -> std::ops::RangeInclusive<i64> {
    let last = stats_bucket(now_ms);
    last - STATS_BUCKETS + 1..=last
}

/// A webhook's attempts over the stats window, counted as they were
/// recorded (never by reading the log back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptStats {
    /// Attempts.
    pub attempts: u64,
    /// Attempts the receiver took.
    pub succeeded: u64,
    /// Deliveries dead-lettered.
    pub dead: u64,
    /// Deliveries started (first attempts).
    pub deliveries: u64,
    /// Milliseconds all attempts took together.
    pub duration_ms: u64,
}

impl AttemptStats {
    /// Adds one bucket's counts.
    pub fn add(&mut self, o: AttemptStats) {
        self.attempts += o.attempts;
        self.succeeded += o.succeeded;
        self.dead += o.dead;
        self.deliveries += o.deliveries;
        self.duration_ms += o.duration_ms;
    }

    /// One attempt's counts.
    pub fn of(a: &AttemptRecord<'_>) -> Self {
        AttemptStats {
            attempts: 1,
            succeeded: u64::from(a.success),
            dead: u64::from(a.dead),
            deliveries: u64::from(a.first),
            duration_ms: a.duration_ms,
        }
    }
}

impl crate::config::WebhookSettings {
    /// How much of the delivery log a tenant keeps (defined here, beside
    /// [`LogBounds`], so that `config` does not depend on the store).
    pub fn log_bounds(&self) -> LogBounds {
        LogBounds { max_entries: self.log_max_entries, max_age_ms: self.log_ttl.as_millis() as i64 }
    }
}

/// Which delivery-log entries to read, newest first.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogQuery<'a> {
    /// Only this webhook's attempts.
    pub webhook_id: &'a str,
    /// Only this delivery's attempts.
    pub delivery_id: Option<&'a str>,
    /// Only entries older than this entry id (the previous page's cursor).
    pub before: Option<&'a str>,
    /// Only entries since this Unix ms.
    pub since_ms: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// One delivery-log entry: its id (`<ms>-<seq>`, the page cursor) and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Stream entry id.
    pub id: String,
    /// The attempt, as JSON.
    pub entry: String,
}

/// The tenant's webhooks, their delivery log, stats and health.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores `hook` under its id in the tenant's registry (replacing one
    /// of the same id).
    async fn save_webhook(&self, tenant: &TenantId, hook: &WebhookConfig) -> StoreResult<()>;

    /// One webhook, if the tenant has it; `Corrupt` when what is stored
    /// does not parse.
    async fn webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<WebhookConfig>>;

    /// The tenant's webhooks that parse, in no particular order.
    async fn webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<WebhookConfig>>;

    /// How many webhooks the tenant has registered, whether they parse or
    /// not (what `WEBHOOK_MAX_PER_TENANT` counts).
    async fn webhook_count(&self, tenant: &TenantId) -> StoreResult<usize>;

    /// Removes a webhook; false when the tenant had no such webhook.
    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<bool>;

    /// Logs one delivery attempt in the tenant's log (capped by count and
    /// by age, see [`LogBounds`]), counts it in the webhook's stats bucket,
    /// and updates the endpoint's health: a success clears it, a failure
    /// counts and, at the breaker's threshold, pauses the endpoint. One round trip.
    async fn webhook_attempt(
        &self,
        tenant: &TenantId,
        attempt: &AttemptRecord<'_>,
        breaker: Breaker,
        log: LogBounds,
    ) -> StoreResult<Health>;

    /// The webhook's attempts in the stats window ending at `now_ms` (the
    /// last [`STATS_BUCKETS`] buckets): a few counters, whatever the traffic.
    async fn webhook_stats(&self, tenant: &TenantId, webhook_id: &str, now_ms: i64) -> StoreResult<AttemptStats>;

    /// The endpoint's health.
    async fn webhook_health(&self, tenant: &TenantId, webhook_id: &str) -> StoreResult<Health>;

    /// What a delivery attempt reads first: the webhook (if the tenant
    /// still has it; `Corrupt` when it does not parse) and its endpoint's
    /// health. One round trip on Redis.
    async fn webhook_and_health(&self, tenant: &TenantId, id: &str) -> StoreResult<(Option<WebhookConfig>, Health)>;

    /// Delivery-log entries of one webhook, newest first.
    async fn webhook_log(&self, tenant: &TenantId, query: &LogQuery<'_>) -> StoreResult<Vec<LogRecord>>;
}
