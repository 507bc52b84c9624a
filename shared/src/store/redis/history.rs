use std::sync::LazyLock;

use ::redis::{Script, Value};
use async_trait::async_trait;

use super::{HISTORY_FN, NOW_FN, RedisStore, SUBSCRIBE_FN, WITHIN_LIMIT_FN, corrupt, unavailable};
use crate::event::Target;
use crate::event::{EventType, Position, Topic};
use crate::ids::{ConnectionId, TenantId};
use crate::store::{
    HistoryQuery, HistoryRead, HistoryStore, ReadStatus, Record, Resolution, Resubscribed, StoreError, StoreResult,
};

/// A script in `lua/subscribe_since.lua`, which opens with its KEYS/ARGV contract.
static SUBSCRIBE_SINCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW_FN}\n{WITHIN_LIMIT_FN}\n{SUBSCRIBE_FN}\n{HISTORY_FN}\n{}",
        include_str!("../lua/subscribe_since.lua")
    ))
});

/// A script in `lua/history_read.lua`, which opens with its KEYS/ARGV contract.
static HISTORY_READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!("{NOW_FN}\n{WITHIN_LIMIT_FN}\n{HISTORY_FN}\n{}", include_str!("../lua/history_read.lua")))
});

/// `history_read`'s answer: {status, epoch, top, top id, bytes, then
/// offset and text per event}.
pub(super) fn parse_history(reply: Value) -> StoreResult<HistoryRead> {
    let bad = || corrupt("history reply");
    let flat: Vec<Value> = ::redis::from_redis_value(reply).map_err(|_| bad())?;
    let mut items = flat.into_iter();
    let mut next_string =
        || -> StoreResult<String> { items.next().and_then(|v| ::redis::from_redis_value(v).ok()).ok_or_else(bad) };
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

impl RedisStore {
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
}

#[async_trait]
impl HistoryStore for RedisStore {
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
        if let crate::store::Audience::Channel(channel) = query.audience {
            return self.channel_history(tenant, channel, query, topics, limit).await;
        }
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
                    topics
                        .and_then(|v| ::redis::from_redis_value(v).ok())
                        .ok_or_else(|| corrupt("subscription list"))?,
                )?;
                let endpoint: String = endpoint
                    .and_then(|v| ::redis::from_redis_value(v).ok())
                    .ok_or_else(|| corrupt("connection record"))?;
                let history = parse_history(history.ok_or_else(|| corrupt("history reply"))?)?;
                Ok(Some(Resubscribed { topics, endpoint, history }))
            }
            _ => Err(corrupt("subscribe reply")),
        }
    }
}
