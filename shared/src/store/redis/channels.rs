use std::collections::BTreeMap;
use std::sync::LazyLock;

use ::redis::{Script, Value};
use async_trait::async_trait;

use super::connections::parse_resolution;
use super::history::parse_history;
use super::{HISTORY_FN, NOW_FN, RESOLVE_FN, RedisStore, WITHIN_LIMIT_FN, corrupt, take_position, unavailable};
use crate::channel::Channel;
use crate::event::{EventType, Position, Topic};
use crate::ids::{ConnectionId, TenantId};
use crate::store::channels::{filter_text, parse_filter};
use crate::store::{
    CHANNEL_POSITION_TTL, ChannelStore, HistoryQuery, HistoryRead, Record, Resolution, Resubscribed, Retention,
    StoreError, StoreResult, Subscriptions,
};

/// A Lua function in `lua/fn_channel.lua`, which opens with what it takes and returns.
const CHANNEL_FN: &str = include_str!("../lua/fn_channel.lua");

fn with_channels(body: &str) -> Script {
    Script::new(&format!("{NOW_FN}\n{WITHIN_LIMIT_FN}\n{RESOLVE_FN}\n{HISTORY_FN}\n{CHANNEL_FN}\n{body}"))
}

/// A script in `lua/publish_channel.lua`, which opens with its KEYS/ARGV contract.
static PUBLISH_CHANNEL: LazyLock<Script> = LazyLock::new(|| with_channels(include_str!("../lua/publish_channel.lua")));

/// A script in `lua/channel_subscribe.lua`, which opens with its KEYS/ARGV contract.
static CHANNEL_SUBSCRIBE: LazyLock<Script> =
    LazyLock::new(|| with_channels(include_str!("../lua/channel_subscribe.lua")));

/// A script in `lua/channel_subscribe_since.lua`, which opens with its KEYS/ARGV contract.
static CHANNEL_SUBSCRIBE_SINCE: LazyLock<Script> =
    LazyLock::new(|| with_channels(include_str!("../lua/channel_subscribe_since.lua")));

/// A script in `lua/channel_unsubscribe.lua`, which opens with its KEYS/ARGV contract.
static CHANNEL_UNSUBSCRIBE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{NOW_FN}\n{}", include_str!("../lua/channel_unsubscribe.lua"))));

/// A script in `lua/channel_read.lua`, which opens with its KEYS/ARGV contract.
static CHANNEL_READ: LazyLock<Script> = LazyLock::new(|| with_channels(include_str!("../lua/channel_read.lua")));

impl RedisStore {
    /// `channel_append`'s c: size, ttl_ms, meta ttl_ms, max event bytes,
    /// the tenant's channel history bytes, a fresh epoch.
    fn channel_args(&self, retention: Retention) -> [String; 6] {
        let l = &self.limits;
        let size = if retention == Retention::Off { 0 } else { l.channel_history_size };
        let meta_ttl = match retention {
            Retention::Ephemeral => l.channel_history_ttl,
            _ => CHANNEL_POSITION_TTL.max(l.channel_history_ttl),
        };
        [
            size.to_string(),
            Self::millis(l.channel_history_ttl).to_string(),
            Self::millis(meta_ttl).to_string(),
            l.history_max_event_bytes.to_string(),
            l.channel_history_max_bytes.to_string(),
            Position::fresh_epoch(),
        ]
    }

    /// `history_read`'s q for a channel: its TTL, and the meta TTL of an
    /// epoch the read starts (the history's: the next write sets its own).
    fn channel_query(&self, q: &HistoryQuery<'_>) -> [String; 12] {
        let (epoch, offset, id) = match q.since {
            Some(s) => (s.epoch.clone(), s.offset.to_string(), s.id.clone().unwrap_or_default()),
            None => (String::new(), "0".to_owned(), String::new()),
        };
        let ttl = Self::millis(self.limits.channel_history_ttl).to_string();
        [
            Position::fresh_epoch(),
            epoch,
            offset,
            id,
            "channel".to_owned(),
            String::new(),
            String::new(),
            q.max_events.to_string(),
            q.max_bytes.to_string(),
            ttl.clone(),
            String::new(),
            ttl,
        ]
    }

    /// The PUBLISH_CHANNEL script: the channel's subscribers whose filter
    /// matches `event`, rate-limited when `limit` is given, recording the
    /// event in the channel's history when `record` is.
    pub(super) async fn publish_channel(
        &self,
        tenant: &TenantId,
        limit: Option<u32>,
        event: EventType,
        channel: &Channel,
        record: Option<&Record<'_>>,
    ) -> StoreResult<Option<Resolution>> {
        let k = &self.keys;
        let recording = record.is_some_and(|r| r.retention != Retention::Off) && self.limits.channel_history_size > 0;
        let mut inv = PUBLISH_CHANNEL.key(k.channel_subs(tenant, channel));
        inv.key(k.webhooks(tenant))
            .key(k.rate_limit(tenant, crate::time::now_millis() / 1000))
            .key(k.conn_index(tenant))
            .key(k.channel_history(tenant, channel))
            .key(k.channel_meta(tenant, channel))
            .key(k.recorded(tenant, record.filter(|r| r.once).map_or("", |r| r.id)))
            .key(k.channel_bytes(tenant))
            .key(k.channel_expiry(tenant))
            .arg(k.stem("conn", tenant))
            .arg(limit.map(|l| l.to_string()).unwrap_or_default());
        match record.filter(|_| recording) {
            Some(r) => {
                inv.arg(if r.once { "once" } else { "yes" })
                    .arg(&self.channel_args(r.retention))
                    .arg(r.text)
                    .arg(r.event_type.as_str())
                    .arg(r.id);
            }
            None => {
                inv.arg("").arg(&self.channel_args(Retention::Off)).arg("").arg("").arg("");
            }
        }
        inv.arg(channel.as_str());
        for topic in event.topics() {
            inv.arg(topic.as_str());
        }
        let mut flat: Vec<Value> = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        if let [Value::Int(-1)] = flat.as_slice() {
            return Ok(None);
        }
        let position = if recording { take_position(&mut flat)? } else { None };
        Ok(Some(Resolution { position, ..parse_resolution(tenant, flat)? }))
    }

    /// A channel's history after `query.since` matching `topics`.
    pub(super) async fn channel_history(
        &self,
        tenant: &TenantId,
        channel: &Channel,
        query: &HistoryQuery<'_>,
        topics: &[Topic],
        limit: Option<u32>,
    ) -> StoreResult<Option<HistoryRead>> {
        let k = &self.keys;
        let mut inv = CHANNEL_READ.key(k.channel_history(tenant, channel));
        inv.key(k.channel_meta(tenant, channel))
            .key(k.rate_limit(tenant, crate::time::now_millis() / 1000))
            .arg(limit.map(|l| l.to_string()).unwrap_or_default())
            .arg(&self.channel_query(query));
        for topic in topics {
            inv.arg(topic.as_str());
        }
        let reply: Value = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        match reply {
            Value::Int(-3) => Ok(None),
            other => parse_history(other).map(Some),
        }
    }

    fn channel_refusal(&self, code: i64) -> StoreError {
        match code {
            -1 => StoreError::UnknownConnection,
            -2 => StoreError::TooManyChannels { limit: self.limits.channels_per_connection },
            -3 => StoreError::ChannelFull { limit: self.limits.channel_max_subscribers },
            _ => corrupt("channel subscribe reply"),
        }
    }
}

#[async_trait]
impl ChannelStore for RedisStore {
    async fn subscribe_channel(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        channel: &Channel,
        filter: &[Topic],
    ) -> StoreResult<()> {
        let k = &self.keys;
        let done: i64 = CHANNEL_SUBSCRIBE
            .key(k.conn(tenant, conn))
            .key(k.conn_channels(tenant, conn))
            .key(k.active(tenant))
            .key(k.channel_subs(tenant, channel))
            .arg(conn.as_str())
            .arg(self.limits.channels_per_connection)
            .arg(self.limits.channel_max_subscribers)
            .arg(channel.as_str())
            .arg(filter_text(filter))
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        if done == 0 { Ok(()) } else { Err(self.channel_refusal(done)) }
    }

    async fn subscribe_channel_since(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        channel: &Channel,
        filter: &[Topic],
        query: &HistoryQuery<'_>,
        limit: u32,
    ) -> StoreResult<Option<Resubscribed>> {
        let k = &self.keys;
        let text = filter_text(filter);
        let mut inv = CHANNEL_SUBSCRIBE_SINCE.key(k.conn(tenant, conn));
        inv.key(k.conn_channels(tenant, conn))
            .key(k.active(tenant))
            .key(k.channel_subs(tenant, channel))
            .key(k.channel_history(tenant, channel))
            .key(k.channel_meta(tenant, channel))
            .key(k.rate_limit(tenant, crate::time::now_millis() / 1000))
            .arg(conn.as_str())
            .arg(self.limits.channels_per_connection)
            .arg(self.limits.channel_max_subscribers)
            .arg(channel.as_str())
            .arg(&text)
            .arg(limit)
            .arg(&self.channel_query(query));
        let topics = parse_filter(&text).ok_or_else(|| corrupt("channel filter"))?;
        for topic in &topics {
            inv.arg(topic.as_str());
        }
        let reply: Value = inv.invoke_async(&mut self.conn().await?).await.map_err(unavailable)?;
        match reply {
            Value::Int(-4) => Ok(None),
            Value::Int(code) => Err(self.channel_refusal(code)),
            other => {
                let (endpoint, read): (String, Value) =
                    ::redis::from_redis_value(other).map_err(|_| corrupt("channel recovery reply"))?;
                Ok(Some(Resubscribed { topics, endpoint, history: parse_history(read)? }))
            }
        }
    }

    async fn unsubscribe_channel(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        channel: &Channel,
    ) -> StoreResult<bool> {
        let k = &self.keys;
        let done: i64 = CHANNEL_UNSUBSCRIBE
            .key(k.conn(tenant, conn))
            .key(k.conn_channels(tenant, conn))
            .key(k.active(tenant))
            .key(k.channel_subs(tenant, channel))
            .arg(conn.as_str())
            .arg(channel.as_str())
            .invoke_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        match done {
            -1 => Err(StoreError::UnknownConnection),
            n => Ok(n == 1),
        }
    }

    async fn subscriptions(&self, tenant: &TenantId, conn: &ConnectionId) -> StoreResult<Subscriptions> {
        let k = &self.keys;
        // Three keys of the tenant's slot: one pipelined round trip.
        let (exists, topics, channels): (bool, Vec<String>, BTreeMap<String, String>) = ::redis::pipe()
            .exists(k.conn(tenant, conn))
            .smembers(k.conn_subs(tenant, conn))
            .hgetall(k.conn_channels(tenant, conn))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)?;
        if !exists {
            return Err(StoreError::UnknownConnection);
        }
        let channels = channels
            .into_iter()
            .map(|(c, f)| {
                let channel = Channel::parse(&c).map_err(|_| corrupt("channel name"))?;
                Ok((channel, parse_filter(&f).ok_or_else(|| corrupt("channel filter"))?))
            })
            .collect::<StoreResult<_>>()?;
        Ok(Subscriptions { topics: Self::topics_from(topics)?, channels })
    }

    async fn channel_subscribers(&self, tenant: &TenantId, channel: &Channel) -> StoreResult<usize> {
        ::redis::cmd("HLEN")
            .arg(self.keys.channel_subs(tenant, channel))
            .query_async(&mut self.conn().await?)
            .await
            .map_err(unavailable)
    }
}
