//! Connections, their subscriptions and presence: what `$connect`,
//! `$disconnect`, `subscribe` and `ping` change, and whom an event reaches.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreResult;
use crate::event::Target;
use crate::event::{Envelope, EventType, Position, Topic};
use crate::ids::{ConnectionId, Role, TenantId, UserId};
use crate::protocol::OfflineRefusal;
use crate::webhook::WebhookConfig;

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
    /// The tenant's webhooks (those that parse), read in the same round
    /// trip so a publish costs one whatever it fans out to.
    pub webhooks: Vec<WebhookConfig>,
    /// Where the event was recorded in the tenant's history, when the
    /// resolve recorded it ([`HistoryStore::record_and_resolve`] with history on).
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

/// A user's `presence.online` or `presence.offline` event (new id, now).
pub fn presence_event(tenant: &TenantId, user: &UserId, online: bool) -> Envelope {
    let event_type = if online { EventType::PresenceOnline } else { EventType::PresenceOffline };
    Envelope::new(tenant.clone(), event_type, serde_json::json!({ "user_id": user }))
}

/// [`presence_event`] serialised in the three parts a script joins around
/// an event id and a user id it reads from Redis: `head .. id .. mid ..
/// user .. tail`. Ids and user ids need no JSON escaping (their alphabets
/// are letters, digits, `-`, `_`, `.`).
pub(super) fn presence_parts(tenant: &TenantId, online: bool) -> [String; 3] {
    let mut event = presence_event(tenant, &UserId::parse("u").expect("a valid user id"), online);
    event.id = "\u{1}".into();
    event.data = serde_json::json!({ "user_id": "\u{2}" });
    let text = serde_json::to_string(&event).expect("an envelope is plain JSON");
    let (head, rest) = text.split_once("\\u0001").expect("the id placeholder");
    let (mid, tail) = rest.split_once("\\u0002").expect("the user placeholder");
    [head.to_owned(), mid.to_owned(), tail.to_owned()]
}

/// A connection the sweep probes ([`ConnectionStore::idle_connections`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idle {
    /// Where to reach it.
    pub recipient: Recipient,
    /// How long its client has sent nothing.
    pub idle: std::time::Duration,
}

/// Connections, subscriptions and presence.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
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
    /// Records nothing: a publish uses [`HistoryStore::record_and_resolve`].
    async fn resolve(&self, tenant: &TenantId, event: EventType, target: &Target) -> StoreResult<Resolution>;
}
