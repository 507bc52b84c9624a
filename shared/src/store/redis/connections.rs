use std::sync::LazyLock;

use ::redis::{Script, Value};
use async_trait::async_trait;

use super::offline::offline_answer;
use super::{NOW_FN, RedisStore, SUBSCRIBE_FN, corrupt, position, recipient, take_position, unavailable, with_resolve};
use crate::event::Target;
use crate::event::{EventType, Topic};
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::store::{
    Connection, ConnectionStore, Idle, Presence, Record, Registered, Resolution, StoreError, StoreResult, Unregistered,
    presence_event,
};

/// A script in `lua/register.lua`, which opens with its KEYS/ARGV contract.
static REGISTER: LazyLock<Script> = LazyLock::new(|| with_resolve(include_str!("../lua/register.lua")));

/// A script in `lua/unregister.lua`, which opens with its KEYS/ARGV contract.
static UNREGISTER: LazyLock<Script> = LazyLock::new(|| with_resolve(include_str!("../lua/unregister.lua")));

/// A script in `lua/subscribe.lua`, which opens with its KEYS/ARGV contract.
static SUBSCRIBE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{SUBSCRIBE_FN}\n{}", include_str!("../lua/subscribe.lua"))));

/// A script in `lua/unsubscribe.lua`, which opens with its KEYS/ARGV contract.
static UNSUBSCRIBE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("../lua/unsubscribe.lua"))));

/// A script in `lua/heartbeat.lua`, which opens with its KEYS/ARGV contract.
static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("../lua/heartbeat.lua"))));

/// A script in `lua/idle_connections.lua`, which opens with its KEYS/ARGV contract.
static IDLE_CONNECTIONS: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("../lua/idle_connections.lua"))));

/// A script in `lua/touch.lua`, which opens with its KEYS/ARGV contract.
static TOUCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("../lua/touch.lua"))));

/// A script in `lua/online_users.lua`, which opens with its KEYS/ARGV contract.
static ONLINE_USERS: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/online_users.lua")));

/// A script in `lua/resolve.lua`, which opens with its KEYS/ARGV contract.
static RESOLVE: LazyLock<Script> = LazyLock::new(|| with_resolve(include_str!("../lua/resolve.lua")));

/// `resolve`'s answer: {target_connections, #webhooks, webhook..., id, 'user endpoint', ...}.
pub(super) fn parse_resolution(tenant: &TenantId, flat: Vec<Value>) -> StoreResult<Resolution> {
    let mut items = flat.into_iter();
    let target_connections: usize =
        items.next().and_then(|v| ::redis::from_redis_value(v).ok()).ok_or_else(|| corrupt("resolve reply"))?;
    let hooks: usize =
        items.next().and_then(|v| ::redis::from_redis_value(v).ok()).ok_or_else(|| corrupt("resolve reply"))?;
    let mut strings: Vec<String> = items
        .map(|v| ::redis::from_redis_value(v).map_err(|_| corrupt("resolve reply")))
        .collect::<StoreResult<_>>()?;
    let rest = strings.split_off(hooks.min(strings.len()));
    let webhooks = crate::store::webhooks::parse_listed_webhooks(tenant, &strings);
    let recipients = rest.chunks_exact(2).map(|r| recipient(&r[0], &r[1])).collect::<StoreResult<_>>()?;
    Ok(Resolution { recipients, target_connections, webhooks, position: None, offline: None })
}

impl RedisStore {
    /// The RESOLVE script: rate-limited when `limit` is given, recording
    /// the event when `record` is.
    pub(super) async fn resolve_script(
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
            Target::Channel(c) => return self.publish_channel(tenant, limit, event, c, record).await,
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
        Ok(Some(Resolution { position, offline, ..parse_resolution(tenant, flat)? }))
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
            other => Self::topics_from(::redis::from_redis_value(other).map_err(|_| corrupt("subscription list"))?),
        }
    }
}

#[async_trait]
impl ConnectionStore for RedisStore {
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
        let mut event = presence_event(t, &c.user_id, true);
        inv.arg(serde_json::to_string(&event).expect("an envelope is plain JSON")).arg(&event.id);
        let (user_connections, came_online, tenant_was_empty, mut presence): (usize, u8, u8, Vec<Value>) =
            inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        if tenant_was_empty == 1 {
            // The tenant list lives outside the tenant's slot, so it cannot
            // join the script; a tenant's first connection pays one more
            // round trip, every other connection none.
            ::redis::cmd("SADD")
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
            presence: Some(parse_resolution(t, presence)?),
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
            .arg(k.stem("connch", tenant))
            .arg(k.stem("ch", tenant))
            .arg(&self.history_args(tenant))
            .arg(&crate::store::connections::presence_parts(tenant, false));
        for c in conns {
            inv.arg(c.as_str()).arg(uuid::Uuid::now_v7().to_string());
        }
        let (flat, presence): (Vec<Value>, Vec<Value>) =
            inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        let presence = if presence.is_empty() { None } else { Some(parse_resolution(tenant, presence)?) };
        flat.chunks_exact(5)
            .map(|one| {
                let user: String = ::redis::from_redis_value(one[0].clone()).map_err(|_| corrupt("user id"))?;
                let left: usize = ::redis::from_redis_value(one[1].clone()).map_err(|_| corrupt("connection count"))?;
                let went_offline = left == 0;
                let presence_event = if went_offline {
                    let text: String =
                        ::redis::from_redis_value(one[4].clone()).map_err(|_| corrupt("presence event"))?;
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
        let fields: std::collections::HashMap<String, String> = ::redis::cmd("HGETALL")
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

    async fn idle_connections(
        &self,
        tenant: &TenantId,
        idle: std::time::Duration,
        max: usize,
    ) -> StoreResult<Vec<Idle>> {
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
                Ok(Idle { recipient: recipient(&r[0], &r[1])?, idle })
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
        let raw: Vec<String> = ::redis::cmd("SMEMBERS")
            .arg(self.keys.tenants())
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        raw.into_iter().map(|t| TenantId::parse(t).map_err(|_| corrupt("tenant id"))).collect()
    }

    async fn presence(&self, tenant: &TenantId, user: &UserId) -> StoreResult<Presence> {
        // Both keys share the tenant's slot: one pipelined round trip.
        let (online, connections): (bool, usize) = ::redis::pipe()
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
        ::redis::cmd("SCARD")
            .arg(self.keys.conns(tenant))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)
    }

    async fn total_connections(&self) -> StoreResult<usize> {
        let tenants = self.tenants().await?;
        let conn = self.conn().await?;
        // Each tenant's set lives in its own slot; the counts are fetched
        // concurrently (pipelined on one node, spread over a cluster).
        let counts = futures::future::try_join_all(tenants.iter().map(|t| {
            let mut conn = conn.clone();
            let key = self.keys.conns(t);
            async move { ::redis::cmd("SCARD").arg(key).query_async::<usize>(&mut conn).await }
        }))
        .await
        .map_err(unavailable)?;
        Ok(counts.into_iter().sum())
    }

    async fn resolve(&self, tenant: &TenantId, event: EventType, target: &Target) -> StoreResult<Resolution> {
        let resolved = self.resolve_script(tenant, None, event, target, None).await?;
        resolved.ok_or_else(|| corrupt("resolve reply"))
    }
}
