//! Connection, subscription, presence and offline-queue state.
//!
//! Handlers are stateless; everything they know about connections lives
//! behind the [`Store`] trait. Two implementations honour one contract
//! (the suite in `tests/tests/suite/store_contract.rs` runs against both, and
//! against a 3-node Redis Cluster):
//!
//! - [`RedisStore`]: production. Single node or Redis Cluster. Every
//!   per-tenant key carries the tenant in a hash tag, so one tenant's keys
//!   share a cluster slot and each operation is one Lua script — one round
//!   trip, atomic.
//! - [`MemoryStore`]: the emulator's zero-configuration default.
//!
//! The key layout is the README's "Redis layout" table, the one place
//! it is written out for readers; [`Keys`] builds every name, and a test
//! (`deployment::every_redis_key_is_in_the_readme`) checks that each key
//! [`Keys`] documents is in that table.
//!
//! Connections leave on `$disconnect`, on a post's `410 Gone`, or when a
//! sweep (`broadcast::sweep`) probes one that sent nothing for
//! `CONNECTION_IDLE_SECS` and API Gateway says it is gone: a connection
//! whose `$disconnect` never came cannot stay a ghost.
//!
//! Presence follows the legacy hub: a user is online while their heartbeat key
//! exists. `$connect` and `ping` refresh it; the last `$disconnect` deletes
//! it; a user whose connections vanished without `$disconnect` (API
//! Gateway's is best-effort) drops out when the key expires.

mod keys;
mod memory;
mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::event::{Envelope, EventType, Topic};
pub use crate::event::{Position, Since};
use crate::ids::Role;
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::protocol::Target;
use crate::webhook::WebhookConfig;

pub use self::keys::Keys;
pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;

/// A live WebSocket connection as recorded by `$connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// API Gateway's id for the connection.
    pub id: ConnectionId,
    /// From the authorizer context; never from the client.
    pub tenant_id: TenantId,
    /// From the authorizer context.
    pub user_id: UserId,
    /// From the authorizer context.
    pub role: Role,
    /// The `@connections` endpoint that reaches this connection
    /// (`https://{domainName}/{stage}`), so a fan-out from anywhere can post to it.
    pub endpoint: String,
    /// Unix milliseconds.
    pub connected_at: i64,
}

/// What `register` changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The user was offline before this connection: announce `presence.online`.
    pub came_online: bool,
    /// The user's connections, this one included.
    pub user_connections: usize,
    /// When the user came online: who must hear `presence.online` (the
    /// tenant's subscribers and webhooks), read in the same round trip.
    pub presence: Option<Resolution>,
    /// When the user came online: the `presence.online` event, recorded in
    /// the tenant's history in the same round trip (with its position).
    pub presence_event: Option<Envelope>,
}

/// What `unregister` removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Unregistered {
    /// Whose connection it was.
    pub user_id: UserId,
    /// It was the user's last connection: announce `presence.offline`.
    pub went_offline: bool,
    /// When the user went offline: who must hear `presence.offline`, read
    /// in the same round trip.
    pub presence: Option<Resolution>,
    /// When the user went offline: the `presence.offline` event, recorded
    /// in the tenant's history in the same round trip (with its position).
    pub presence_event: Option<Envelope>,
}

/// A user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The heartbeat is alive.
    pub online: bool,
    /// Connections recorded for the user.
    pub connections: usize,
}

/// One connection an event should be posted to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Recipient {
    /// Where to post.
    pub connection_id: ConnectionId,
    /// Whose connection.
    pub user_id: UserId,
    /// The `@connections` endpoint recorded with the connection.
    pub endpoint: String,
}

/// The recipients of one event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// Live connections in the target that subscribed to the event.
    pub recipients: Vec<Recipient>,
    /// Live connections in the target, subscribed or not. Zero for a user
    /// target means the user is offline and the event belongs in their queue.
    pub target_connections: usize,
    /// The tenant's webhook configurations (JSON), read in the same round
    /// trip so a publish costs one whatever it fans out to. Read them with
    /// [`parse_listed_webhooks`].
    pub webhooks: Vec<String>,
    /// Where the event was recorded in the tenant's history, when the
    /// resolve recorded it ([`Store::record_and_resolve`] with history on).
    pub position: Option<Position>,
    /// A synchronous publish to a user with no connection (history on):
    /// the store queued it for them in the same step, before recording it
    /// (the queue's length), or refused it. A refusal of the caller's doing
    /// ([`OfflineRefusal::is_callers_fault`]) recorded nothing: the event
    /// is in no history, no queue, and nothing was resolved.
    pub offline: Option<Result<usize, OfflineRefusal>>,
}

impl Resolution {
    /// The offline queue's refusal of a synchronous publish, when it was of
    /// the caller's doing: the publish was refused whole (nothing recorded).
    pub fn refused_whole(&self) -> Option<OfflineRefusal> {
        match self.offline {
            Some(Err(refusal)) if refusal.is_callers_fault() => Some(refusal),
            _ => None,
        }
    }
}

/// A new event for [`Store::record_and_resolve`] to record in its tenant's
/// history, in the round trip that resolves its recipients.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// What it is.
    pub event_type: EventType,
    /// The envelope, serialised without a position.
    pub text: &'a str,
    /// The event's id (what proves a position at it).
    pub id: &'a str,
    /// A queued job's event: recorded the first time only, and a retried
    /// job gets the same position back. False for a synchronous publish
    /// (it is never retried).
    pub once: bool,
}

/// One event of a tenant's history (the memory store's copy; Redis keeps
/// the same fields in its stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its offset.
    pub offset: u64,
    /// Its id.
    pub id: String,
    /// Its type.
    pub event_type: EventType,
    /// Whom it was published to.
    pub target: Target,
    /// The target's user: the user of a user target, the owner of a
    /// connection target (when it was live); `None` for the tenant.
    pub user: Option<UserId>,
    /// The envelope without its position; `None` when it was larger than
    /// `HISTORY_MAX_EVENT_BYTES` (its place is kept, its text is not).
    pub text: Option<String>,
}

/// Whose events a history read returns: what they could have received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Every event of the tenant (admins and services over the HTTP API).
    Everyone,
    /// The tenant-wide events and those addressed to this user or to one
    /// of their connections (agents and supervisors over the HTTP API).
    User(&'a UserId),
    /// What one connection of a user would have received: the tenant-wide
    /// events, its user's and its own (a `subscribe` with `since`).
    Connection(&'a UserId, &'a ConnectionId),
}

impl Audience<'_> {
    /// Is `entry` addressed to this audience? Exactly the resolve's rule
    /// for a connection.
    pub fn admits(&self, entry: &HistoryEntry) -> bool {
        match (self, &entry.target) {
            (Audience::Everyone, _) | (_, Target::Tenant) => true,
            (Audience::User(user), _) => entry.user.as_ref() == Some(*user),
            (Audience::Connection(user, _), Target::User(u)) => u == *user,
            (Audience::Connection(_, conn), Target::Connection(c)) => c == *conn,
        }
    }

    /// Its mode and ids as the history script takes them.
    pub(crate) fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            Audience::Everyone => ("everyone", "", ""),
            Audience::User(u) => ("user", u.as_str(), ""),
            Audience::Connection(u, c) => ("connection", u.as_str(), c.as_str()),
        }
    }
}

/// A read of a tenant's history after a reader's position.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery<'a> {
    /// Where the reader stands; `None`: only where the history stands now.
    pub since: Option<&'a Since>,
    /// Whose events.
    pub audience: Audience<'a>,
    /// Most events one read returns (more: [`ReadStatus::Truncated`]).
    pub max_events: usize,
    /// Most bytes of events one read returns (more: [`ReadStatus::Truncated`]).
    pub max_bytes: usize,
}

/// What a history read could give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadStatus {
    /// Every event after the position that the reader would have had.
    #[default]
    Complete,
    /// The first of them, up to the read's caps: there are more.
    Truncated,
    /// The history cannot prove it holds them all: another epoch (Redis
    /// restarted, failed over, lost the history), a position it never gave
    /// or no longer holds, an event at the position that is not the one
    /// the reader saw, or one too large to have been kept. Nothing is given.
    Lost,
}

/// A history read's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryRead {
    /// The history's epoch (made on first use).
    pub epoch: String,
    /// The latest offset handed out (0: none yet).
    pub top: u64,
    /// The id of the event at `top`, when known: with it, `top` is a
    /// position a reader can prove.
    pub top_id: Option<String>,
    /// Whether `events` is all of it.
    pub status: ReadStatus,
    /// The events, oldest first: offset and envelope without its position.
    pub events: Vec<(u64, String)>,
}

impl HistoryRead {
    /// The events as first sent (with their position), oldest first.
    pub fn envelopes(&self) -> impl Iterator<Item = (u64, String)> + '_ {
        self.events.iter().map(|(offset, text)| {
            let p = Position { epoch: self.epoch.clone(), offset: *offset };
            (*offset, crate::event::with_position(text, &p))
        })
    }

    /// The bytes of the events returned.
    pub fn bytes(&self) -> usize {
        self.events.iter().map(|(_, t)| t.len()).sum()
    }
}

/// What a history read costs against the tenant's requests per second,
/// beyond the one request it was let in as: one more per 100 events and
/// per 64 KiB it returned (the history script's `charge`, the same rule).
pub fn read_cost(read: &HistoryRead) -> u32 {
    (read.events.len() / 100 + read.bytes() / 65536) as u32
}

/// What a subscribe with recovery returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resubscribed {
    /// The connection's topics after the change, sorted.
    pub topics: Vec<Topic>,
    /// Where the connection is reached (to post the replay).
    pub endpoint: String,
    /// The history after the position, read at the moment the
    /// subscription took effect: later events reach the connection live.
    pub history: HistoryRead,
}

/// Webhook configurations travel through a backend as the JSON the
/// registry holds (what the contract tests check); they are parsed here
/// and nowhere else, with one rule for data that does not parse (written
/// by a bug, an older version, or a hand in `redis-cli`): a single read
/// answers [`StoreError::Corrupt`] naming the webhook, and a list skips
/// it with an error log, so one bad entry cannot stop the tenant's other
/// webhooks or its publishes.
/// A user's `presence.online` or `presence.offline` event (new id, now).
pub fn presence_event(tenant: &TenantId, user: &UserId, online: bool) -> Envelope {
    let event_type = if online { EventType::PresenceOnline } else { EventType::PresenceOffline };
    Envelope::new(tenant.clone(), event_type, serde_json::json!({ "user_id": user }))
}

/// [`presence_event`] serialised in the three parts a script joins around
/// an event id and a user id it reads from Redis: `head .. id .. mid ..
/// user .. tail`. Ids and user ids need no JSON escaping (their alphabets
/// are letters, digits, `-`, `_`, `.`).
fn presence_parts(tenant: &TenantId, online: bool) -> [String; 3] {
    let mut event = presence_event(tenant, &UserId::parse("u").expect("a valid user id"), online);
    event.id = "\u{1}".into();
    event.data = serde_json::json!({ "user_id": "\u{2}" });
    let text = serde_json::to_string(&event).expect("an envelope is plain JSON");
    let (head, rest) = text.split_once("\\u0001").expect("the id placeholder");
    let (mid, tail) = rest.split_once("\\u0002").expect("the user placeholder");
    [head.to_owned(), mid.to_owned(), tail.to_owned()]
}

fn parse_webhook(tenant: &TenantId, id: &str, raw: &str) -> StoreResult<WebhookConfig> {
    serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("webhook {id} of tenant {tenant} does not parse: {e}")))
}

/// The configurations of `raw` that parse; the others are logged and skipped.
pub fn parse_listed_webhooks(tenant: &TenantId, raw: &[String]) -> Vec<WebhookConfig> {
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

pub use crate::protocol::OfflineRefusal;

/// A connection the sweep probes ([`Store::idle_connections`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    /// Where to reach it.
    pub recipient: Recipient,
    /// How long its client has sent nothing.
    pub idle: std::time::Duration,
}

/// One member's claim in a queued fan-out job ([`Store::fanout_claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Claimed by this attempt: send to it.
    Mine,
    /// Sent already (or the job finished): skip it.
    Sent,
    /// Another attempt holds its lease: it may still fail; try again later.
    Busy,
}

/// How queued fan-out jobs claim their recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimSettings {
    /// How long one attempt holds a claim before another may take it (an
    /// attempt killed mid-way gives its recipients back so).
    pub lease: std::time::Duration,
    /// How long a job's claims, and its finished marker, are kept: as long
    /// as the events queue may deliver the job again.
    pub ttl: std::time::Duration,
    /// Jobs of one tenant with claims at once.
    pub max_live_jobs: usize,
}

/// What an attempt of a queued fan-out job settles ([`Store::fanout_settle`]).
#[derive(Debug, Clone, Copy)]
pub enum Settled<'a> {
    /// Part way: these were sent, those are given back.
    Partly {
        /// Sent (or found gone): never again.
        sent: &'a [String],
        /// Not reached: the next attempt's.
        released: &'a [String],
    },
    /// The job is done.
    Finished,
}

impl OfflineRefusal {
    /// The caller could have avoided it (a budget it filled, a message too
    /// big): a synchronous publish is refused whole (429 / 413) rather than
    /// half done. An unknown user is not an error: the rest of the fan-out
    /// (webhooks) goes on and the report says why nothing was queued.
    pub fn is_callers_fault(self) -> bool {
        !matches!(self, OfflineRefusal::UnknownUser)
    }

    /// What the reply says.
    pub fn describe(self, limits: &crate::config::Limits) -> String {
        match self {
            OfflineRefusal::UnknownUser => "the user has not connected within the offline TTL".into(),
            OfflineRefusal::TenantQueuesFull => format!(
                "the tenant's {} offline queues are all in use (OFFLINE_MAX_QUEUES_PER_TENANT); retry once users have synced",
                limits.offline_max_queues
            ),
            OfflineRefusal::TenantBytesFull => format!(
                "the tenant's offline queues hold their {} bytes (OFFLINE_MAX_BYTES_PER_TENANT); retry once users have synced",
                limits.offline_max_bytes
            ),
            OfflineRefusal::MessageTooLarge => format!(
                "the event is bigger than the tenant's whole offline budget of {} bytes (OFFLINE_MAX_BYTES_PER_TENANT)",
                limits.offline_max_bytes
            ),
        }
    }
}

/// A store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The connection is not registered (never was, or already gone).
    #[error("unknown connection")]
    UnknownConnection,
    /// A subscribe would exceed the per-connection limit.
    #[error("too many subscriptions: at most {limit} topics per connection")]
    TooManySubscriptions {
        /// The configured limit.
        limit: usize,
    },
    /// The backend returned data that does not parse (a bug or tampering).
    #[error("store returned unexpected data: {0}")]
    Corrupt(String),
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// The operations the handlers need; one round trip each on Redis.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a connection, adds it to its tenant and user, marks the user
    /// online and refreshes the heartbeat. Registering the same connection
    /// again changes nothing else.
    async fn register(&self, conn: &Connection) -> StoreResult<Registered>;

    /// Forgets a connection and all its subscriptions; the user goes offline
    /// when it was their last. `None` when it was not registered (idempotent).
    async fn unregister(&self, tenant: &TenantId, conn: &ConnectionId) -> StoreResult<Option<Unregistered>> {
        Ok(self.unregister_many(tenant, std::slice::from_ref(conn)).await?.pop())
    }

    /// Forgets several connections of one tenant at once (the stale ones a
    /// fan-out found): one round trip. Returns one entry per connection that
    /// was registered, in the order given; unknown ids are skipped.
    async fn unregister_many(&self, tenant: &TenantId, conns: &[ConnectionId]) -> StoreResult<Vec<Unregistered>>;

    /// The recorded connection, if live.
    async fn connection(&self, tenant: &TenantId, conn: &ConnectionId) -> StoreResult<Option<Connection>>;

    /// Adds topics; returns the connection's topics after the change, sorted.
    async fn subscribe(&self, tenant: &TenantId, conn: &ConnectionId, topics: &[Topic]) -> StoreResult<Vec<Topic>>;

    /// Removes topics; returns what remains, sorted.
    async fn unsubscribe(&self, tenant: &TenantId, conn: &ConnectionId, topics: &[Topic]) -> StoreResult<Vec<Topic>>;

    /// Refreshes a user's heartbeat and marks `conn` (the connection the
    /// ping came on) active. Returns false (and changes nothing) when the
    /// user has no connection.
    async fn heartbeat(&self, tenant: &TenantId, user: &UserId, conn: &ConnectionId) -> StoreResult<bool>;

    /// Up to `max` of the tenant's connections that sent nothing (no
    /// `$connect`, subscribe, unsubscribe or ping) for `idle`, oldest
    /// first, with where to reach them: what a sweep probes. A connection
    /// whose `$disconnect` never came (API Gateway's is best-effort, an
    /// emulator killed) is among them sooner or later.
    async fn idle_connections(
        &self,
        tenant: &TenantId,
        idle: std::time::Duration,
        max: usize,
    ) -> StoreResult<Vec<Idle>>;

    /// Marks connections active now (a probe found them alive).
    async fn touch(&self, tenant: &TenantId, conns: &[ConnectionId]) -> StoreResult<()>;

    /// Tenants that ever had a connection.
    async fn tenants(&self) -> StoreResult<Vec<TenantId>>;

    /// Is the user online, and with how many connections?
    async fn presence(&self, tenant: &TenantId, user: &UserId) -> StoreResult<Presence>;

    /// Users of the tenant whose heartbeat is alive, sorted.
    async fn online_users(&self, tenant: &TenantId) -> StoreResult<Vec<UserId>>;

    /// Live connections of one tenant.
    async fn connection_count(&self, tenant: &TenantId) -> StoreResult<usize>;

    /// Live connections of all tenants.
    async fn total_connections(&self) -> StoreResult<usize>;

    /// The connections that should receive `event` sent to `target`:
    /// connections in the target whose subscriptions match the event.
    /// Records nothing: a publish uses [`Store::record_and_resolve`].
    async fn resolve(&self, tenant: &TenantId, event: EventType, target: &Target) -> StoreResult<Resolution>;

    /// Appends a message to a user's offline queue (dropping the oldest
    /// beyond the cap, renewing the TTL). Returns the queue length, or why
    /// it was refused: only a user registered within the offline TTL gets
    /// a queue, and the tenant's queues together stay within
    /// `offline_max_queues` and `offline_max_bytes` (the cap's drops and
    /// acknowledged or expired messages give their bytes back).
    async fn offline_push(
        &self,
        tenant: &TenantId,
        user: &UserId,
        message: &str,
    ) -> StoreResult<Result<usize, OfflineRefusal>>;

    /// Up to `max` queued messages, oldest first, without removing them.
    async fn offline_peek(&self, tenant: &TenantId, user: &UserId, max: usize) -> StoreResult<Vec<String>>;

    /// Removes messages that were delivered: those of `delivered` still at
    /// the head of the queue, in order. Messages queued since the peek stay.
    /// Returns how many were removed.
    async fn offline_ack(&self, tenant: &TenantId, user: &UserId, delivered: &[String]) -> StoreResult<usize>;

    /// Counts one request against the tenant's budget of `limit` per
    /// second; false when the budget is spent. Shared by every instance.
    async fn rate_limit(&self, tenant: &TenantId, limit: u32) -> StoreResult<bool>;

    /// What a publish does in the store, in one round trip on Redis: with
    /// `limit`, [`Store::rate_limit`] first (`None` when the tenant is over
    /// it this second: nothing resolved, nothing recorded); then records the
    /// event in the tenant's history (unless `HISTORY_SIZE` is 0) and
    /// [`Store::resolve`]s it. The resolution carries the event's position.
    async fn record_and_resolve(
        &self,
        tenant: &TenantId,
        record: &Record<'_>,
        target: &Target,
        limit: Option<u32>,
    ) -> StoreResult<Option<Resolution>>;

    /// The events after `query.since` of `query.audience` that match
    /// `topics`, within the query's caps, in one round trip on Redis; with
    /// `limit`, first counted against the tenant's requests per second
    /// (`None` when over it: nothing read), then charged by what it
    /// returned (one request more per 100 events and per 64 KiB). Redis
    /// reads only the events it returns (indexes by type and user), and
    /// judges the position before it reads any (see [`ReadStatus::Lost`]).
    async fn history(
        &self,
        tenant: &TenantId,
        query: &HistoryQuery<'_>,
        topics: &[Topic],
        limit: Option<u32>,
    ) -> StoreResult<Option<HistoryRead>>;

    /// [`Store::subscribe`], and [`Store::history`] for the connection's
    /// topics after the change, read in the same round trip; counted and
    /// charged against the tenant's `limit` requests per second (`None`
    /// when over it: nothing done).
    async fn subscribe_since(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        topics: &[Topic],
        query: &HistoryQuery<'_>,
        limit: u32,
    ) -> StoreResult<Option<Resubscribed>>;

    /// PUBLISHes an event on the legacy hub's channels (`{p}:events` and, for
    /// agent, call and queue events, `{p}:agents:<tenant>` and so on), for
    /// services that still listen to the legacy hub. A no-op without Redis.
    async fn publish_compat(&self, tenant: &TenantId, event: EventType, message: &str) -> StoreResult<()>;

    /// Stores a webhook's configuration (JSON) under its id in the tenant's registry.
    async fn put_webhook(&self, tenant: &TenantId, id: &str, config: &str) -> StoreResult<()>;

    /// One webhook's configuration, if the tenant has it.
    async fn get_webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<String>>;

    /// All of the tenant's webhook configurations, in no particular order.
    async fn list_webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<String>>;

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

    /// One webhook, parsed; `Corrupt` when what is stored does not parse.
    async fn webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<WebhookConfig>> {
        self.get_webhook(tenant, id).await?.map(|raw| parse_webhook(tenant, id, &raw)).transpose()
    }

    /// The tenant's webhooks that parse, in no particular order.
    async fn webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<WebhookConfig>> {
        Ok(parse_listed_webhooks(tenant, &self.list_webhooks(tenant).await?))
    }

    /// Stores `hook` under its id.
    async fn save_webhook(&self, tenant: &TenantId, hook: &WebhookConfig) -> StoreResult<()> {
        let text = serde_json::to_string(hook).expect("a webhook is plain JSON");
        self.put_webhook(tenant, hook.id.as_str(), &text).await
    }

    /// [`Store::webhook_and_health`], the configuration parsed.
    async fn webhook_with_health(&self, tenant: &TenantId, id: &str) -> StoreResult<(Option<WebhookConfig>, Health)> {
        let (raw, health) = self.webhook_and_health(tenant, id).await?;
        Ok((raw.map(|raw| parse_webhook(tenant, id, &raw)).transpose()?, health))
    }

    /// What a delivery attempt reads first: the webhook's configuration (if
    /// the tenant still has it) and its endpoint's health. One round trip
    /// on Redis.
    async fn webhook_and_health(&self, tenant: &TenantId, id: &str) -> StoreResult<(Option<String>, Health)> {
        let config = self.get_webhook(tenant, id).await?;
        Ok((config, self.webhook_health(tenant, id).await?))
    }

    /// Delivery-log entries of one webhook, newest first.
    async fn webhook_log(&self, tenant: &TenantId, query: &LogQuery<'_>) -> StoreResult<Vec<LogRecord>>;

    /// Claims `members` (connection ids, webhook ids) for one attempt of a
    /// queued fan-out job, each for `claims.lease`: [`Claim::Mine`] to
    /// send to, [`Claim::Sent`] for one sent already, [`Claim::Busy`] for
    /// one another attempt holds (it may yet fail: retry the job later).
    /// A finished job answers `Sent` for everyone. Claims live for
    /// `claims.ttl`; a tenant has at most `claims.max_live_jobs` jobs with
    /// claims at once (an error beyond: the job is retried later).
    async fn fanout_claim(
        &self,
        tenant: &TenantId,
        job: &str,
        members: &[String],
        claims: &ClaimSettings,
    ) -> StoreResult<Vec<Claim>>;

    /// After an attempt's posts: `sent` are marked sent, `released` freed
    /// for the next attempt; or, `finished`, the job's claims are deleted
    /// and a marker answers its late duplicates "sent" until `claims.ttl`.
    async fn fanout_settle(
        &self,
        tenant: &TenantId,
        job: &str,
        settled: Settled<'_>,
        claims: &ClaimSettings,
    ) -> StoreResult<()>;

    /// Is the backend reachable?
    async fn ping(&self) -> StoreResult<()>;
}
