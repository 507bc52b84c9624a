use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::history::{Log, Window};
use super::{MemoryStore, Tenant};
use crate::channel::Channel;
use crate::config::Limits;
use crate::event::{Position, Topic};
use crate::ids::{ConnectionId, TenantId};
use crate::store::{
    ChannelStore, HistoryQuery, Record, Resubscribed, Retention, StoreError, StoreResult, Subscriptions,
};

impl Tenant {
    /// Removes `conn` from every channel it follows (a channel left
    /// without subscribers goes).
    pub(super) fn leave_channels(&mut self, conn: &ConnectionId) {
        for channel in self.conn_channels.remove(conn).unwrap_or_default().into_keys() {
            self.drop_subscriber(&channel, conn);
        }
    }

    fn drop_subscriber(&mut self, channel: &Channel, conn: &ConnectionId) -> bool {
        let Some(subscribers) = self.channels.get_mut(channel) else { return false };
        let was = subscribers.remove(conn).is_some();
        if subscribers.is_empty() {
            self.channels.remove(channel);
        }
        was
    }

    /// The channel's history (made on first use, as a read makes its meta).
    pub(super) fn channel_log(&mut self, channel: &Channel) -> &mut Log {
        self.channel_logs.entry(channel.clone()).or_default()
    }

    /// Records a channel's event within the tenant's channel byte budget.
    pub(super) fn record_channel(
        &mut self,
        limits: &Limits,
        channel: &Channel,
        record: &Record<'_>,
    ) -> Option<Position> {
        let now = Instant::now();
        if self.channel_logs_swept.is_none_or(|at| now.duration_since(at) > Duration::from_secs(60)) {
            self.channel_logs.retain(|_, log| log.is_live(now));
            self.channel_logs_swept = Some(now);
        }
        self.channel_log(channel).expire(now);
        let used: usize = self.channel_logs.values().map(|l| l.bytes).sum();
        let mut room = limits.channel_history_max_bytes.saturating_sub(used);
        let window = Window::channel(limits, record.retention);
        self.channel_log(channel).record(
            window,
            record,
            &crate::event::Target::Channel(channel.clone()),
            None,
            Some(&mut room),
        )
    }

    fn subscribe_channel_in(
        &mut self,
        limits: &Limits,
        conn: &ConnectionId,
        channel: &Channel,
        filter: &[Topic],
    ) -> StoreResult<()> {
        if !self.conns.contains_key(conn) {
            return Err(StoreError::UnknownConnection);
        }
        self.active.insert(conn.clone(), Instant::now());
        let mine = self.conn_channels.entry(conn.clone()).or_default();
        if !mine.contains_key(channel) {
            if mine.len() >= limits.channels_per_connection {
                return Err(StoreError::TooManyChannels { limit: limits.channels_per_connection });
            }
            if self.channels.get(channel).map_or(0, |s| s.len()) >= limits.channel_max_subscribers {
                return Err(StoreError::ChannelFull { limit: limits.channel_max_subscribers });
            }
        }
        let mut filter = filter.to_vec();
        filter.sort();
        filter.dedup();
        mine.insert(channel.clone(), filter.clone());
        self.channels.entry(channel.clone()).or_default().insert(conn.clone(), filter);
        Ok(())
    }
}

#[async_trait]
impl ChannelStore for MemoryStore {
    async fn subscribe_channel(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        channel: &Channel,
        filter: &[Topic],
    ) -> StoreResult<()> {
        self.with(|state| {
            let t = state.get_mut(tenant).ok_or(StoreError::UnknownConnection)?;
            t.subscribe_channel_in(&self.limits, conn, channel, filter)
        })
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
        self.with(|state| {
            let t = state.get_mut(tenant).ok_or(StoreError::UnknownConnection)?;
            if !t.within_limit(limit) {
                return Ok(None);
            }
            t.subscribe_channel_in(&self.limits, conn, channel, filter)?;
            let endpoint = t.conns.get(conn).map(|(c, _)| c.endpoint.clone()).unwrap_or_default();
            let mut topics = filter.to_vec();
            topics.sort();
            topics.dedup();
            let window = Window::channel(&self.limits, Retention::Lasting);
            let query = HistoryQuery { audience: crate::store::Audience::Channel(channel), ..*query };
            let history = t.channel_log(channel).read(window, &query, &topics);
            t.charge(&history);
            Ok(Some(Resubscribed { topics, endpoint, history }))
        })
    }

    async fn unsubscribe_channel(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        channel: &Channel,
    ) -> StoreResult<bool> {
        self.with(|state| {
            let t = state.get_mut(tenant).ok_or(StoreError::UnknownConnection)?;
            if !t.conns.contains_key(conn) {
                return Err(StoreError::UnknownConnection);
            }
            t.active.insert(conn.clone(), Instant::now());
            if let Some(mine) = t.conn_channels.get_mut(conn) {
                mine.remove(channel);
            }
            Ok(t.drop_subscriber(channel, conn))
        })
    }

    async fn subscriptions(&self, tenant: &TenantId, conn: &ConnectionId) -> StoreResult<Subscriptions> {
        self.with(|state| {
            let t = state.get(tenant).ok_or(StoreError::UnknownConnection)?;
            let (_, topics) = t.conns.get(conn).ok_or(StoreError::UnknownConnection)?;
            Ok(Subscriptions {
                topics: topics.iter().cloned().collect(),
                channels: t.conn_channels.get(conn).cloned().unwrap_or_default(),
            })
        })
    }

    async fn channel_subscribers(&self, tenant: &TenantId, channel: &Channel) -> StoreResult<usize> {
        Ok(self.with(|state| state.get(tenant).and_then(|t| t.channels.get(channel)).map_or(0, |s| s.len())))
    }
}
