//! The Redis store: single node or Redis Cluster.
//!
//! Each operation is one Lua script over keys of one tenant (one hash-tag
//! slot), sent as `EVALSHA` — one round trip, atomic, and valid on a
//! cluster. Scripts read ids from Redis and build further keys from the
//! `stem`s they are given; those keys share the tenant's hash tag, so they
//! live in the same slot as the declared keys.
//!
//! The connection is made on first use, not at cold start, so a function
//! whose Redis is down still answers (with a 500 and a log line) instead of
//! failing to initialise. After that, `ConnectionManager` (single node) and
//! the cluster client reconnect on their own.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use tokio::sync::OnceCell;

use super::{
    Connection, HistoryQuery, HistoryRead, Keys, OfflineRefusal, Position, Presence, ReadStatus, Recipient, Record,
    Registered, Resolution, Resubscribed, Store, StoreError, StoreResult, Unregistered,
};
use crate::config::{Limits, RedisConfig};
use crate::event::{EventType, Topic};
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::protocol::Target;

/// How long an endpoint's health outlives its last failure (30 days).
const HEALTH_TTL_MS: i64 = 30 * 24 * 3600 * 1000;

/// A Lua function in `lua/fn_resolve.lua`, which opens with what it takes and returns.
const RESOLVE_FN: &str = include_str!("lua/fn_resolve.lua");

/// A Lua function in `lua/fn_within_limit.lua`, which opens with what it takes and returns.
const WITHIN_LIMIT_FN: &str = include_str!("lua/fn_within_limit.lua");

/// A Lua function in `lua/fn_history.lua`, which opens with what it takes and returns.
const HISTORY_FN: &str = include_str!("lua/fn_history.lua");

/// A Lua function in `lua/fn_subscribe.lua`, which opens with what it takes and returns.
const SUBSCRIBE_FN: &str = include_str!("lua/fn_subscribe.lua");

/// A script that calls `resolve` (and `within_limit`, records history,
/// queues offline).
fn with_resolve(body: &str) -> Script {
    Script::new(&format!(
        "{NOW_FN}\n{WITHIN_LIMIT_FN}\n{RESOLVE_FN}\n{HISTORY_FN}\n{RELEASE_FN}\n{OFFLINE_PUSH_FN}\n{body}"
    ))
}

/// A Lua function in `lua/fn_offline_push.lua`, which opens with what it takes and returns.
const OFFLINE_PUSH_FN: &str = include_str!("lua/fn_offline_push.lua");

/// A Lua function in `lua/fn_now.lua`, which opens with what it takes and returns.
const NOW_FN: &str = include_str!("lua/fn_now.lua");

/// A script in `lua/register.lua`, which opens with its KEYS/ARGV contract.
static REGISTER: LazyLock<Script> = LazyLock::new(|| with_resolve(include_str!("lua/register.lua")));

/// A script in `lua/unregister.lua`, which opens with its KEYS/ARGV contract.
static UNREGISTER: LazyLock<Script> = LazyLock::new(|| with_resolve(include_str!("lua/unregister.lua")));

/// KEYS: rate-limit counter. ARGV: limit. Returns 1 while within the limit.
static RATE_LIMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{WITHIN_LIMIT_FN}\nreturn within_limit(KEYS[1], ARGV[1]) and 1 or 0")));

/// A script in `lua/subscribe.lua`, which opens with its KEYS/ARGV contract.
static SUBSCRIBE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{SUBSCRIBE_FN}\n{}", include_str!("lua/subscribe.lua"))));

/// A script in `lua/subscribe_since.lua`, which opens with its KEYS/ARGV contract.
static SUBSCRIBE_SINCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_FN}\n{WITHIN_LIMIT_FN}\n{SUBSCRIBE_FN}\n{HISTORY_FN}\n{}",
        include_str!("lua/subscribe_since.lua")
    ))
});

/// A script in `lua/history_read.lua`, which opens with its KEYS/ARGV contract.
static HISTORY_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!("{NOW_FN}\n{WITHIN_LIMIT_FN}\n{HISTORY_FN}\n{}", include_str!("lua/history_read.lua")))
});

/// A script in `lua/unsubscribe.lua`, which opens with its KEYS/ARGV contract.
static UNSUBSCRIBE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("lua/unsubscribe.lua"))));

/// A script in `lua/heartbeat.lua`, which opens with its KEYS/ARGV contract.
static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("lua/heartbeat.lua"))));

/// A script in `lua/idle_connections.lua`, which opens with its KEYS/ARGV contract.
static IDLE_CONNECTIONS: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("lua/idle_connections.lua"))));

/// A script in `lua/touch.lua`, which opens with its KEYS/ARGV contract.
static TOUCH: LazyLock<Script> = LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("lua/touch.lua"))));

/// A script in `lua/online_users.lua`, which opens with its KEYS/ARGV contract.
static ONLINE_USERS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/online_users.lua")));

/// A script in `lua/resolve.lua`, which opens with its KEYS/ARGV contract.
static RESOLVE: LazyLock<Script> = LazyLock::new(|| with_resolve(include_str!("lua/resolve.lua")));

/// A script in `lua/webhook_attempt.lua`, which opens with its KEYS/ARGV contract.
static WEBHOOK_ATTEMPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/webhook_attempt.lua")));

/// A script in `lua/webhook_log.lua`, which opens with its KEYS/ARGV contract.
static WEBHOOK_LOG: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/webhook_log.lua")));

/// A script in `lua/fanout_claim.lua`, which opens with its KEYS/ARGV contract.
static FANOUT_CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/fanout_claim.lua")));

/// A script in `lua/fanout_settle.lua`, which opens with its KEYS/ARGV contract.
static FANOUT_SETTLE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/fanout_settle.lua")));

/// A Lua function in `lua/fn_release.lua`, which opens with what it takes and returns.
const RELEASE_FN: &str = include_str!("lua/fn_release.lua");

/// A script in `lua/offline_push.lua`, which opens with its KEYS/ARGV contract.
static OFFLINE_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!("{NOW_FN}\n{RELEASE_FN}\n{OFFLINE_PUSH_FN}\n{}", include_str!("lua/offline_push.lua")))
});

/// A script in `lua/offline_ack.lua`, which opens with its KEYS/ARGV contract.
static OFFLINE_ACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{RELEASE_FN}\n{}", include_str!("lua/offline_ack.lua"))));

/// A connection to either kind of deployment.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The production store.
pub struct RedisStore {
    config: RedisConfig,
    keys: Keys,
    limits: Limits,
    conn: OnceCell<Conn>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry a password: show only the shape.
        f.debug_struct("RedisStore")
            .field("nodes", &self.config.urls.len())
            .field("cluster", &self.config.cluster)
            .field("prefix", &self.keys.prefix())
            .finish()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

/// An endpoint's health hash: failures, since, paused_until.
type HealthFields = (Option<u32>, Option<i64>, Option<i64>);

fn health_from((n, since, paused): HealthFields) -> super::Health {
    super::Health { consecutive_failures: n.unwrap_or(0), failing_since: since, paused_until: paused }
}

/// `resolve`'s answer: {target_connections, #webhooks, webhook..., id, 'user endpoint', ...}.
fn parse_resolution(flat: Vec<Value>) -> StoreResult<Resolution> {
    let mut items = flat.into_iter();
    let target_connections: usize =
        items.next().and_then(|v| redis::from_redis_value(v).ok()).ok_or_else(|| corrupt("resolve reply"))?;
    let hooks: usize =
        items.next().and_then(|v| redis::from_redis_value(v).ok()).ok_or_else(|| corrupt("resolve reply"))?;
    let mut strings: Vec<String> =
        items.map(|v| redis::from_redis_value(v).map_err(|_| corrupt("resolve reply"))).collect::<StoreResult<_>>()?;
    let rest = strings.split_off(hooks.min(strings.len()));
    let webhooks = strings;
    let recipients = rest.chunks_exact(2).map(|r| recipient(&r[0], &r[1])).collect::<StoreResult<_>>()?;
    Ok(Resolution { recipients, target_connections, webhooks, position: None, offline: None })
}

/// `offline_push`'s answer: the queue's length, or why it refused.
fn offline_answer(answer: i64) -> StoreResult<Result<usize, OfflineRefusal>> {
    Ok(match answer {
        -1 => Err(OfflineRefusal::UnknownUser),
        -2 => Err(OfflineRefusal::TenantQueuesFull),
        -3 => Err(OfflineRefusal::TenantBytesFull),
        -4 => Err(OfflineRefusal::MessageTooLarge),
        n => Ok(usize::try_from(n).map_err(|_| corrupt("offline queue length"))?),
    })
}

/// Takes the `offset, epoch` a script appended to its answer when it
/// recorded an event (offset 0: history is off).
fn take_position(flat: &mut Vec<Value>) -> StoreResult<Option<Position>> {
    let (Some(epoch), Some(offset)) = (flat.pop(), flat.pop()) else {
        return Err(corrupt("recorded position"));
    };
    position(offset, epoch)
}

fn position(offset: Value, epoch: Value) -> StoreResult<Option<Position>> {
    let offset: u64 = redis::from_redis_value(offset).map_err(|_| corrupt("recorded offset"))?;
    let epoch: String = redis::from_redis_value(epoch).map_err(|_| corrupt("recorded epoch"))?;
    Ok((offset > 0).then_some(Position { epoch, offset }))
}

/// `history_read`'s answer: {status, epoch, top, top id, bytes, then
/// offset and text per event}.
fn parse_history(reply: Value) -> StoreResult<HistoryRead> {
    let bad = || corrupt("history reply");
    let flat: Vec<Value> = redis::from_redis_value(reply).map_err(|_| bad())?;
    let mut items = flat.into_iter();
    let mut next_string =
        || -> StoreResult<String> { items.next().and_then(|v| redis::from_redis_value(v).ok()).ok_or_else(bad) };
    let status = match next_string()?.as_str() {
        "complete" => ReadStatus::Complete,
        "truncated" => ReadStatus::Truncated,
        "lost" => ReadStatus::Lost,
        _ => return Err(bad()),
    };
    let epoch = next_string()?;
    let top = next_string()?.parse().map_err(|_| bad())?;
    let top_id = Some(next_string()?).filter(|id| !id.is_empty());
    let _bytes = next_string()?;
    let mut events = Vec::new();
    while let Ok(offset) = next_string() {
        events.push((offset.parse().map_err(|_| bad())?, next_string()?));
    }
    Ok(HistoryRead { epoch, top, top_id, status, events })
}

/// A connection id and its index entry (`<user_id> <endpoint>`).
fn recipient(id: &str, entry: &str) -> StoreResult<Recipient> {
    let (user, endpoint) = entry.split_once(' ').ok_or_else(|| corrupt("connection index entry"))?;
    Ok(Recipient {
        connection_id: ConnectionId::parse(id).map_err(|_| corrupt("connection id"))?,
        user_id: UserId::parse(user).map_err(|_| corrupt("user id"))?,
        endpoint: endpoint.to_owned(),
    })
}

impl RedisStore {
    /// A store that connects on first use.
    pub fn new(config: RedisConfig, keys: Keys, limits: Limits) -> Self {
        RedisStore { config, keys, limits, conn: OnceCell::new() }
    }

    async fn conn(&self) -> StoreResult<Conn> {
        self.conn
            .get_or_try_init(|| async {
                let c = &self.config;
                if c.cluster {
                    let client = ClusterClient::builder(c.urls.clone())
                        .connection_timeout(c.connect_timeout)
                        .response_timeout(c.response_timeout)
                        .build()
                        .map_err(unavailable)?;
                    Ok(Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?))
                } else {
                    let url =
                        c.urls.first().ok_or_else(|| StoreError::Unavailable("no Redis URL configured".into()))?;
                    let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
                    let manager_config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(c.connect_timeout))
                        .set_response_timeout(Some(c.response_timeout))
                        .set_number_of_retries(2);
                    Ok(Conn::Single(
                        ConnectionManager::new_with_config(client, manager_config).await.map_err(unavailable)?,
                    ))
                }
            })
            .await
            .cloned()
    }

    fn millis(d: std::time::Duration) -> u64 {
        d.as_millis().max(1) as u64
    }

    fn topics_from(values: Vec<String>) -> StoreResult<Vec<Topic>> {
        let mut topics = values
            .iter()
            .map(|t| t.parse::<Topic>().map_err(|_| corrupt("subscription topic")))
            .collect::<StoreResult<Vec<_>>>()?;
        topics.sort();
        Ok(topics)
    }

    /// HMGET of an endpoint's health fields (see [`health_from`]).
    fn health_fields(&self, tenant: &TenantId, webhook_id: &str) -> Cmd {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.webhook_health(tenant, webhook_id)).arg("failures").arg("since").arg("paused_until");
        cmd
    }

    /// The history arguments every recording script takes: size, ttl_ms,
    /// max event bytes, a fresh epoch (used when the history has none),
    /// the stem of the tenant's history indexes.
    fn history_args(&self, tenant: &TenantId) -> [String; 5] {
        let l = &self.limits;
        [
            l.history_size.to_string(),
            Self::millis(l.history_ttl).to_string(),
            l.history_max_event_bytes.to_string(),
            Position::fresh_epoch(),
            self.keys.history_index_stem(tenant),
        ]
    }

    /// What `offline_push` takes: the user's list, seen, offline index,
    /// offline bytes and offline total keys; cap, ttl_ms, max queues, max bytes.
    fn offline_args(&self, tenant: &TenantId, user: &UserId) -> ([String; 5], [u64; 4]) {
        let (k, l) = (&self.keys, &self.limits);
        let keys = [
            k.offline(tenant, user),
            k.seen(tenant),
            k.offline_index(tenant),
            k.offline_bytes(tenant),
            k.offline_total(tenant),
        ];
        let bounds = [
            l.offline_max_messages as u64,
            Self::millis(l.offline_ttl),
            l.offline_max_queues as u64,
            l.offline_max_bytes as u64,
        ];
        (keys, bounds)
    }

    /// `history_read`'s q: where the reader stands, whose events, the caps.
    fn history_query(&self, tenant: &TenantId, q: &HistoryQuery<'_>) -> [String; 11] {
        let (epoch, offset, id) = match q.since {
            Some(s) => (s.epoch.clone(), s.offset.to_string(), s.id.clone().unwrap_or_default()),
            None => (String::new(), "0".to_owned(), String::new()),
        };
        let (mode, user, conn) = q.audience.parts();
        [
            Position::fresh_epoch(),
            epoch,
            offset,
            id,
            mode.to_owned(),
            user.to_owned(),
            conn.to_owned(),
            q.max_events.to_string(),
            q.max_bytes.to_string(),
            Self::millis(self.limits.history_ttl).to_string(),
            self.keys.history_index_stem(tenant),
        ]
    }

    /// The RESOLVE script: rate-limited when `limit` is given, recording
    /// the event when `record` is.
    async fn resolve_script(
        &self,
        tenant: &TenantId,
        limit: Option<u32>,
        event: EventType,
        target: &Target,
        record: Option<&Record<'_>>,
    ) -> StoreResult<Option<Resolution>> {
        let k = &self.keys;
        let (target_key, mode, target_id) = match target {
            Target::Tenant => (k.conns(tenant), "tenant", ""),
            Target::User(u) => (k.user(tenant, u), "user", u.as_str()),
            Target::Connection(c) => (k.conn(tenant, c), "connection", c.as_str()),
        };
        let recording = record.is_some() && self.limits.history_size > 0;
        let mut inv = RESOLVE.key(target_key);
        inv.key(k.webhooks(tenant))
            .key(k.rate_limit(tenant, crate::time::now_millis() / 1000))
            .key(k.conn_index(tenant))
            .key(k.history(tenant))
            .key(k.history_meta(tenant))
            .key(k.recorded(tenant, record.filter(|r| r.once).map_or("", |r| r.id)));
        for topic in event.topics() {
            inv.key(k.subs(tenant, &topic));
        }
        inv.arg(mode).arg(k.stem("conn", tenant)).arg(target_id).arg(limit.map(|l| l.to_string()).unwrap_or_default());
        let mut offline_asked = false;
        match record {
            Some(r) if recording => {
                inv.arg(if r.once { "once" } else { "yes" });
                inv.arg(&self.history_args(tenant)).arg(r.text).arg(r.event_type.as_str()).arg(r.id);
                if let (Target::User(user), false) = (target, r.once) {
                    let (keys, bounds) = self.offline_args(tenant, user);
                    inv.arg(&keys).arg(&bounds);
                    offline_asked = true;
                }
            }
            _ => {
                inv.arg("");
            }
        }
        let mut flat: Vec<Value> = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        match flat.as_slice() {
            [Value::Int(-1)] => return Ok(None),
            [Value::Int(-2), Value::Int(code)] => {
                let refusal = offline_answer(*code)?.err().ok_or_else(|| corrupt("offline refusal"))?;
                return Ok(Some(Resolution { offline: Some(Err(refusal)), ..Resolution::default() }));
            }
            _ => {}
        }
        let offline = match (offline_asked, flat.pop_if(|_| offline_asked)) {
            (false, _) | (true, Some(Value::Int(0))) => None,
            (true, Some(Value::Int(code))) => Some(offline_answer(code)?),
            _ => return Err(corrupt("offline answer")),
        };
        let position = if recording { take_position(&mut flat)? } else { None };
        Ok(Some(Resolution { position, offline, ..parse_resolution(flat)? }))
    }

    async fn change_subscriptions(
        &self,
        script: &Script,
        tenant: &TenantId,
        conn: &ConnectionId,
        topics: &[Topic],
    ) -> StoreResult<Vec<Topic>> {
        let mut inv = script.key(self.keys.conn(tenant, conn));
        inv.key(self.keys.conn_subs(tenant, conn))
            .key(self.keys.active(tenant))
            .arg(conn.as_str())
            .arg(self.limits.max_subscriptions);
        for topic in topics {
            inv.key(self.keys.subs(tenant, topic)).arg(topic.as_str());
        }
        let reply: Value = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        match reply {
            Value::Int(-1) => Err(StoreError::UnknownConnection),
            Value::Int(-2) => Err(StoreError::TooManySubscriptions { limit: self.limits.max_subscriptions }),
            other => Self::topics_from(redis::from_redis_value(other).map_err(|_| corrupt("subscription list"))?),
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn register(&self, c: &Connection) -> StoreResult<Registered> {
        let (t, k) = (&c.tenant_id, &self.keys);
        let mut conn = self.conn().await?;
        let mut inv = REGISTER.key(k.conn(t, &c.id));
        inv.key(k.conns(t))
            .key(k.user(t, &c.user_id))
            .key(k.online(t))
            .key(k.presence(t, &c.user_id))
            .key(k.webhooks(t))
            .key(k.conn_index(t))
            .key(k.seen(t))
            .key(k.active(t))
            .key(k.history(t))
            .key(k.history_meta(t));
        for topic in EventType::PresenceOnline.topics() {
            inv.key(k.subs(t, &topic));
        }
        inv.arg(c.id.as_str())
            .arg(c.user_id.as_str())
            .arg(c.role.as_str())
            .arg(&c.endpoint)
            .arg(c.connected_at)
            .arg(Self::millis(self.limits.presence_ttl))
            .arg(k.stem("conn", t))
            .arg(Self::millis(self.limits.offline_ttl))
            .arg(&self.history_args(t));
        let mut event = super::presence_event(t, &c.user_id, true);
        inv.arg(serde_json::to_string(&event).expect("an envelope is plain JSON")).arg(&event.id);
        let (user_connections, came_online, tenant_was_empty, mut presence): (usize, u8, u8, Vec<Value>) =
            inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        if tenant_was_empty == 1 {
            // The tenant list lives outside the tenant's slot, so it cannot
            // join the script; a tenant's first connection pays one more
            // round trip, every other connection none.
            redis::cmd("SADD")
                .arg(k.tenants())
                .arg(t.as_str())
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        let came_online = came_online == 1;
        if !came_online {
            return Ok(Registered { came_online, user_connections, presence: None, presence_event: None });
        }
        event.set_position(take_position(&mut presence)?.as_ref());
        Ok(Registered {
            came_online,
            user_connections,
            presence: Some(parse_resolution(presence)?),
            presence_event: Some(event),
        })
    }

    async fn unregister_many(&self, tenant: &TenantId, conns: &[ConnectionId]) -> StoreResult<Vec<Unregistered>> {
        if conns.is_empty() {
            return Ok(vec![]);
        }
        let k = &self.keys;
        let mut inv = UNREGISTER.key(k.conns(tenant));
        inv.key(k.online(tenant))
            .key(k.webhooks(tenant))
            .key(k.conn_index(tenant))
            .key(k.active(tenant))
            .key(k.history(tenant))
            .key(k.history_meta(tenant));
        for topic in EventType::PresenceOffline.topics() {
            inv.key(k.subs(tenant, &topic));
        }
        inv.arg(k.stem("conn", tenant))
            .arg(k.stem("connsubs", tenant))
            .arg(k.stem("user", tenant))
            .arg(k.stem("presence", tenant))
            .arg(k.stem("subs", tenant))
            .arg(&self.history_args(tenant))
            .arg(&super::presence_parts(tenant, false));
        for c in conns {
            inv.arg(c.as_str()).arg(uuid::Uuid::now_v7().to_string());
        }
        let (flat, presence): (Vec<Value>, Vec<Value>) =
            inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        let presence = if presence.is_empty() { None } else { Some(parse_resolution(presence)?) };
        flat.chunks_exact(5)
            .map(|one| {
                let user: String = redis::from_redis_value(one[0].clone()).map_err(|_| corrupt("user id"))?;
                let left: usize = redis::from_redis_value(one[1].clone()).map_err(|_| corrupt("connection count"))?;
                let went_offline = left == 0;
                let presence_event = if went_offline {
                    let text: String =
                        redis::from_redis_value(one[4].clone()).map_err(|_| corrupt("presence event"))?;
                    let mut event: crate::event::Envelope =
                        serde_json::from_str(&text).map_err(|_| corrupt("presence event"))?;
                    event.set_position(position(one[2].clone(), one[3].clone())?.as_ref());
                    Some(event)
                } else {
                    None
                };
                Ok(Unregistered {
                    user_id: UserId::parse(user).map_err(|_| corrupt("user id"))?,
                    went_offline,
                    presence: if went_offline { presence.clone() } else { None },
                    presence_event,
                })
            })
            .collect()
    }

    async fn connection(&self, tenant: &TenantId, conn_id: &ConnectionId) -> StoreResult<Option<Connection>> {
        let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.conn(tenant, conn_id))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let field = |name: &str| fields.get(name).cloned().ok_or_else(|| corrupt("connection record"));
        Ok(Some(Connection {
            id: conn_id.clone(),
            tenant_id: tenant.clone(),
            user_id: UserId::parse(field("user_id")?).map_err(|_| corrupt("user id"))?,
            role: field("role")?.parse().map_err(|_| corrupt("role"))?,
            endpoint: field("endpoint")?,
            connected_at: field("connected_at")?.parse().map_err(|_| corrupt("connected_at"))?,
        }))
    }

    async fn subscribe(&self, tenant: &TenantId, conn: &ConnectionId, topics: &[Topic]) -> StoreResult<Vec<Topic>> {
        self.change_subscriptions(&SUBSCRIBE, tenant, conn, topics).await
    }

    async fn unsubscribe(&self, tenant: &TenantId, conn: &ConnectionId, topics: &[Topic]) -> StoreResult<Vec<Topic>> {
        self.change_subscriptions(&UNSUBSCRIBE, tenant, conn, topics).await
    }

    async fn heartbeat(&self, tenant: &TenantId, user: &UserId, conn: &ConnectionId) -> StoreResult<bool> {
        let k = &self.keys;
        let done: u8 = HEARTBEAT
            .key(k.presence(tenant, user))
            .key(k.online(tenant))
            .key(k.user(tenant, user))
            .key(k.active(tenant))
            .arg(user.as_str())
            .arg(crate::time::now_millis())
            .arg(Self::millis(self.limits.presence_ttl))
            .arg(conn.as_str())
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn presence(&self, tenant: &TenantId, user: &UserId) -> StoreResult<Presence> {
        // Both keys share the tenant's slot: one pipelined round trip.
        let (online, connections): (bool, usize) = redis::pipe()
            .exists(self.keys.presence(tenant, user))
            .scard(self.keys.user(tenant, user))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(Presence { online, connections })
    }

    async fn online_users(&self, tenant: &TenantId) -> StoreResult<Vec<UserId>> {
        let raw: Vec<String> = ONLINE_USERS
            .key(self.keys.online(tenant))
            .arg(self.keys.stem("presence", tenant))
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        let mut users = raw
            .into_iter()
            .map(|u| UserId::parse(u).map_err(|_| corrupt("user id")))
            .collect::<StoreResult<Vec<_>>>()?;
        users.sort();
        Ok(users)
    }

    async fn connection_count(&self, tenant: &TenantId) -> StoreResult<usize> {
        redis::cmd("SCARD").arg(self.keys.conns(tenant)).query_async(&mut self.conn().await?).await.map_err(unavailable)
    }

    async fn total_connections(&self) -> StoreResult<usize> {
        let tenants = self.tenants().await?;
        let conn = self.conn().await?;
        // Each tenant's set lives in its own slot; the counts are fetched
        // concurrently (pipelined on one node, spread over a cluster).
        let counts = futures::future::try_join_all(tenants.iter().map(|t| {
            let mut conn = conn.clone();
            let key = self.keys.conns(t);
            async move { redis::cmd("SCARD").arg(key).query_async::<usize>(&mut conn).await }
        }))
        .await
        .map_err(unavailable)?;
        Ok(counts.into_iter().sum())
    }

    async fn resolve(&self, tenant: &TenantId, event: EventType, target: &Target) -> StoreResult<Resolution> {
        let resolved = self.resolve_script(tenant, None, event, target, None).await?;
        resolved.ok_or_else(|| corrupt("resolve reply"))
    }

    async fn record_and_resolve(
        &self,
        tenant: &TenantId,
        record: &Record<'_>,
        target: &Target,
        limit: Option<u32>,
    ) -> StoreResult<Option<Resolution>> {
        self.resolve_script(tenant, limit, record.event_type, target, Some(record)).await
    }

    async fn history(
        &self,
        tenant: &TenantId,
        query: &HistoryQuery<'_>,
        topics: &[Topic],
        limit: Option<u32>,
    ) -> StoreResult<Option<HistoryRead>> {
        let k = &self.keys;
        let mut inv = HISTORY_READ.key(k.history(tenant));
        inv.key(k.history_meta(tenant))
            .key(k.rate_limit(tenant, crate::time::now_millis() / 1000))
            .arg(limit.map(|l| l.to_string()).unwrap_or_default())
            .arg(&self.history_query(tenant, query))
            .arg(topics.len());
        for topic in topics {
            inv.arg(topic.as_str());
        }
        for event_type in EventType::ALL {
            inv.arg(event_type.as_str());
        }
        let reply: Value = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        match reply {
            Value::Int(-3) => Ok(None),
            other => parse_history(other).map(Some),
        }
    }

    async fn subscribe_since(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        topics: &[Topic],
        query: &HistoryQuery<'_>,
        limit: u32,
    ) -> StoreResult<Option<Resubscribed>> {
        let k = &self.keys;
        let mut inv = SUBSCRIBE_SINCE.key(k.conn(tenant, conn));
        inv.key(k.conn_subs(tenant, conn))
            .key(k.active(tenant))
            .key(k.history(tenant))
            .key(k.history_meta(tenant))
            .key(k.rate_limit(tenant, crate::time::now_millis() / 1000))
            .arg(conn.as_str())
            .arg(self.limits.max_subscriptions)
            .arg(limit)
            .arg(&self.history_query(tenant, query))
            .arg(EventType::ALL.len());
        for event_type in EventType::ALL {
            inv.arg(event_type.as_str());
        }
        for topic in topics {
            inv.key(k.subs(tenant, topic)).arg(topic.as_str());
        }
        let reply: Value = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        match reply {
            Value::Int(-1) => Err(StoreError::UnknownConnection),
            Value::Int(-2) => Err(StoreError::TooManySubscriptions { limit: self.limits.max_subscriptions }),
            Value::Int(-3) => Ok(None),
            Value::Array(parts) if parts.len() == 3 => {
                let mut parts = parts.into_iter();
                let (topics, endpoint, history) = (parts.next(), parts.next(), parts.next());
                let topics = Self::topics_from(
                    topics.and_then(|v| redis::from_redis_value(v).ok()).ok_or_else(|| corrupt("subscription list"))?,
                )?;
                let endpoint: String = endpoint
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .ok_or_else(|| corrupt("connection record"))?;
                let history = parse_history(history.ok_or_else(|| corrupt("history reply"))?)?;
                Ok(Some(Resubscribed { topics, endpoint, history }))
            }
            _ => Err(corrupt("subscribe reply")),
        }
    }

    async fn idle_connections(
        &self,
        tenant: &TenantId,
        idle: std::time::Duration,
        max: usize,
    ) -> StoreResult<Vec<super::Idle>> {
        let k = &self.keys;
        let flat: Vec<String> = IDLE_CONNECTIONS
            .key(k.active(tenant))
            .key(k.conns(tenant))
            .key(k.conn_index(tenant))
            .arg(Self::millis(idle))
            .arg(max)
            .arg(k.stem("conn", tenant))
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        let now = crate::time::now_millis();
        flat.chunks_exact(3)
            .map(|r| {
                let since: i64 = r[2].parse().unwrap_or(now);
                let idle = std::time::Duration::from_millis(now.saturating_sub(since).max(0) as u64);
                Ok(super::Idle { recipient: recipient(&r[0], &r[1])?, idle })
            })
            .collect()
    }

    async fn touch(&self, tenant: &TenantId, conns: &[ConnectionId]) -> StoreResult<()> {
        if conns.is_empty() {
            return Ok(());
        }
        let mut inv = TOUCH.key(self.keys.active(tenant));
        for c in conns {
            inv.arg(c.as_str());
        }
        inv.invoke_async::<()>(&mut self.conn().await?).await.map_err(unavailable)
    }

    async fn tenants(&self) -> StoreResult<Vec<TenantId>> {
        let raw: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.tenants())
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        raw.into_iter().map(|t| TenantId::parse(t).map_err(|_| corrupt("tenant id"))).collect()
    }

    async fn offline_push(
        &self,
        tenant: &TenantId,
        user: &UserId,
        message: &str,
    ) -> StoreResult<Result<usize, OfflineRefusal>> {
        let (keys, bounds) = self.offline_args(tenant, user);
        let answer: i64 = OFFLINE_PUSH
            .key(&keys)
            .arg(user.as_str())
            .arg(message)
            .arg(&bounds)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        offline_answer(answer)
    }

    async fn offline_peek(&self, tenant: &TenantId, user: &UserId, max: usize) -> StoreResult<Vec<String>> {
        if max == 0 {
            return Ok(vec![]);
        }
        redis::cmd("LRANGE")
            .arg(self.keys.offline(tenant, user))
            .arg(0)
            .arg(max as i64 - 1)
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)
    }

    async fn offline_ack(&self, tenant: &TenantId, user: &UserId, delivered: &[String]) -> StoreResult<usize> {
        if delivered.is_empty() {
            return Ok(0);
        }
        let k = &self.keys;
        let mut inv = OFFLINE_ACK.key(k.offline(tenant, user));
        inv.key(k.offline_index(tenant)).key(k.offline_bytes(tenant)).key(k.offline_total(tenant)).arg(user.as_str());
        for m in delivered {
            inv.arg(m.as_str());
        }
        inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)
    }

    async fn rate_limit(&self, tenant: &TenantId, limit: u32) -> StoreResult<bool> {
        let key = self.keys.rate_limit(tenant, crate::time::now_millis() / 1000);
        let allowed: u8 =
            RATE_LIMIT.key(key).arg(limit).invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        Ok(allowed == 1)
    }

    async fn publish_compat(&self, tenant: &TenantId, event: EventType, message: &str) -> StoreResult<()> {
        // Channels are not keys: in a cluster, PUBLISH reaches subscribers on every node.
        let mut pipe = redis::pipe();
        for channel in self.keys.compat_channels(tenant, event) {
            pipe.publish(channel, message).ignore();
        }
        pipe.query_async::<()>(&mut self.conn().await?).await.map_err(unavailable)
    }

    async fn put_webhook(&self, tenant: &TenantId, id: &str, config: &str) -> StoreResult<()> {
        let key = self.keys.webhooks(tenant);
        redis::cmd("HSET")
            .arg(key)
            .arg(id)
            .arg(config)
            .query_async::<()>(&mut self.conn().await?)
            .await
            .map_err(unavailable)
    }

    async fn get_webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<String>> {
        let key = self.keys.webhooks(tenant);
        redis::cmd("HGET").arg(key).arg(id).query_async(&mut self.conn().await?).await.map_err(unavailable)
    }

    async fn list_webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<String>> {
        let key = self.keys.webhooks(tenant);
        redis::cmd("HVALS").arg(key).query_async(&mut self.conn().await?).await.map_err(unavailable)
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        let key = self.keys.webhooks(tenant);
        let removed: u32 =
            redis::cmd("HDEL").arg(key).arg(id).query_async(&mut self.conn().await?).await.map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn webhook_attempt(
        &self,
        tenant: &TenantId,
        a: &super::AttemptRecord<'_>,
        breaker: super::Breaker,
        log: super::LogBounds,
    ) -> StoreResult<super::Health> {
        let bucket = super::stats_bucket(a.at_ms);
        let (n, since, paused): (u32, String, String) = WEBHOOK_ATTEMPT
            .key(self.keys.webhook_log(tenant))
            .key(self.keys.webhook_health(tenant, a.webhook_id))
            .key(self.keys.webhook_stats(tenant, a.webhook_id, bucket))
            .arg(a.webhook_id)
            .arg(a.delivery_id)
            .arg(a.entry)
            .arg(u8::from(a.success))
            .arg(a.at_ms)
            .arg(breaker.threshold)
            .arg(breaker.cooldown_ms)
            .arg(log.max_entries)
            .arg(HEALTH_TTL_MS)
            .arg(crate::time::now_millis() - log.max_age_ms)
            .arg(u8::from(a.first))
            .arg(u8::from(a.dead))
            .arg(a.duration_ms)
            .arg(2 * super::STATS_BUCKETS * super::STATS_BUCKET_MS)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(super::Health {
            consecutive_failures: n,
            failing_since: since.parse().ok(),
            paused_until: paused.parse().ok(),
        })
    }

    async fn webhook_stats(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        now_ms: i64,
    ) -> StoreResult<super::AttemptStats> {
        // The buckets share the tenant's slot: one pipelined round trip.
        let mut pipe = redis::pipe();
        for bucket in super::stats_window(now_ms) {
            pipe.cmd("HMGET").arg(self.keys.webhook_stats(tenant, webhook_id, bucket)).arg(&["a", "s", "d", "n", "l"]);
        }
        let buckets: Vec<[Option<u64>; 5]> = pipe.query_async(&mut self.conn().await?).await.map_err(unavailable)?;
        let mut total = super::AttemptStats::default();
        for [a, s, d, n, l] in buckets {
            total.add(super::AttemptStats {
                attempts: a.unwrap_or(0),
                succeeded: s.unwrap_or(0),
                dead: d.unwrap_or(0),
                deliveries: n.unwrap_or(0),
                duration_ms: l.unwrap_or(0),
            });
        }
        Ok(total)
    }

    async fn webhook_health(&self, tenant: &TenantId, webhook_id: &str) -> StoreResult<super::Health> {
        let fields = self.health_fields(tenant, webhook_id).query_async(&mut self.conn().await?).await;
        Ok(health_from(fields.map_err(unavailable)?))
    }

    async fn webhook_and_health(&self, tenant: &TenantId, id: &str) -> StoreResult<(Option<String>, super::Health)> {
        // Both keys carry the tenant's hash tag: one slot, one pipelined round trip.
        let (config, fields): (Option<String>, HealthFields) = redis::pipe()
            .hget(self.keys.webhooks(tenant), id)
            .add_command(self.health_fields(tenant, id))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok((config, health_from(fields)))
    }

    async fn webhook_log(&self, tenant: &TenantId, q: &super::LogQuery<'_>) -> StoreResult<Vec<super::LogRecord>> {
        if q.limit == 0 {
            return Ok(vec![]);
        }
        let flat: Vec<String> = WEBHOOK_LOG
            .key(self.keys.webhook_log(tenant))
            .arg(q.webhook_id)
            .arg(q.delivery_id.unwrap_or_default())
            .arg(q.before.unwrap_or_default())
            .arg(q.since_ms.map(|m| m.to_string()).unwrap_or_default())
            .arg(q.limit)
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        Ok(flat.chunks_exact(2).map(|p| super::LogRecord { id: p[0].clone(), entry: p[1].clone() }).collect())
    }

    async fn fanout_claim(
        &self,
        tenant: &TenantId,
        job: &str,
        members: &[String],
        claims: &super::ClaimSettings,
    ) -> StoreResult<Vec<super::Claim>> {
        if members.is_empty() {
            return Ok(vec![]);
        }
        let mut inv = FANOUT_CLAIM.key(self.keys.sent(tenant, job));
        inv.key(self.keys.sent_done(tenant, job)).key(self.keys.fanouts(tenant));
        inv.arg(crate::time::now_millis()).arg(Self::millis(claims.lease)).arg(Self::millis(claims.ttl));
        inv.arg(claims.max_live_jobs);
        for m in members {
            inv.arg(m.as_str());
        }
        let claimed: Vec<u8> = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        Ok(claimed
            .into_iter()
            .map(|c| match c {
                1 => super::Claim::Mine,
                2 => super::Claim::Busy,
                _ => super::Claim::Sent,
            })
            .collect())
    }

    async fn fanout_settle(
        &self,
        tenant: &TenantId,
        job: &str,
        settled: super::Settled<'_>,
        claims: &super::ClaimSettings,
    ) -> StoreResult<()> {
        let mut inv = FANOUT_SETTLE.key(self.keys.sent(tenant, job));
        inv.key(self.keys.sent_done(tenant, job)).key(self.keys.fanouts(tenant));
        inv.arg(Self::millis(claims.ttl));
        match settled {
            super::Settled::Finished => {
                inv.arg(1).arg(0);
            }
            super::Settled::Partly { sent, released } => {
                if sent.is_empty() && released.is_empty() {
                    return Ok(());
                }
                inv.arg(0).arg(sent.len());
                for m in sent.iter().chain(released) {
                    inv.arg(m.as_str());
                }
            }
        }
        inv.invoke_async::<()>(&mut self.conn().await?).await.map_err(unavailable)
    }

    async fn ping(&self) -> StoreResult<()> {
        redis::cmd("PING").query_async::<String>(&mut self.conn().await?).await.map(drop).map_err(unavailable)
    }
}
