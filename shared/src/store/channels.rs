//! Channel subscriptions: which connections follow which channel of their
//! tenant, with which event-type filter; and each channel's own history.
//!
//! A publish to a channel goes through [`HistoryStore::record_and_resolve`]
//! with [`Target::Channel`] like any other (one round trip: rate limit,
//! the channel's subscribers whose filter matches, webhooks, the channel's
//! history), and a channel's history is read with [`Audience::Channel`].
//! What lives here is what only channels have: subscribing to one (with
//! recovery from the channel's own position), leaving it, and listing a
//! connection's subscriptions.
//!
//! Bounds: channels per connection (`CHANNELS_PER_CONNECTION`) and
//! subscribers per channel (`CHANNEL_MAX_SUBSCRIBERS`); a channel's
//! subscriber set is removed when its last subscriber leaves (or
//! disconnects), so a channel per call costs nothing once the call is over.
//!
//! [`HistoryStore::record_and_resolve`]: crate::store::HistoryStore::record_and_resolve
//! [`Target::Channel`]: crate::event::Target::Channel
//! [`Audience::Channel`]: crate::store::Audience::Channel

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{HistoryQuery, Resubscribed, StoreResult};
use crate::channel::Channel;
use crate::event::Topic;
use crate::ids::{ConnectionId, TenantId};

/// A connection's subscriptions: tenant-wide topics and channels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscriptions {
    /// Tenant-wide topics, sorted.
    pub topics: Vec<Topic>,
    /// Channels, each with its event-type filter (sorted).
    pub channels: BTreeMap<Channel, Vec<Topic>>,
}

/// How a channel keeps its events: its namespace's `history` and `ephemeral`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Kept for `CHANNEL_HISTORY_TTL_SECS`; the channel's position (its
    /// epoch and top offset) a day after its last event, so a quiet channel
    /// recovers with nothing to replay.
    #[default]
    Lasting,
    /// One channel per call or chat: its position expires with its history.
    Ephemeral,
    /// Not kept: events carry no position, a recovery answers `recovered:false`.
    Off,
}

/// How long a lasting channel's position outlives its last event.
pub const CHANNEL_POSITION_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The filter as stored: topics separated by spaces, sorted, no duplicate.
pub(crate) fn filter_text(filter: &[Topic]) -> String {
    let mut topics: Vec<&str> = filter.iter().map(Topic::as_str).collect();
    topics.sort_unstable();
    topics.dedup();
    topics.join(" ")
}

/// [`filter_text`] read back.
pub(crate) fn parse_filter(text: &str) -> Option<Vec<Topic>> {
    text.split(' ').filter(|t| !t.is_empty()).map(|t| t.parse().ok()).collect()
}

/// Channel subscriptions.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Subscribes `conn` to the events of `channel` that match `filter`
    /// (one round trip). Subscribing again to the same channel replaces the
    /// filter. Errors: [`StoreError::UnknownConnection`],
    /// [`StoreError::TooManyChannels`] (a new channel beyond
    /// `CHANNELS_PER_CONNECTION`), [`StoreError::ChannelFull`].
    ///
    /// [`StoreError::UnknownConnection`]: crate::store::StoreError::UnknownConnection
    /// [`StoreError::TooManyChannels`]: crate::store::StoreError::TooManyChannels
    /// [`StoreError::ChannelFull`]: crate::store::StoreError::ChannelFull
    async fn subscribe_channel(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        channel: &Channel,
        filter: &[Topic],
    ) -> StoreResult<()>;

    /// [`ChannelStore::subscribe_channel`], and the channel's history after
    /// `query.since` that matches `filter`, read in the same round trip (a
    /// recovery: what it returns was published before the subscription
    /// took effect, everything after arrives live); counted and charged
    /// against the tenant's `limit` requests per second (`None` when over
    /// it: nothing done). `query.audience` is ignored: the channel's
    /// subscribers all read the same history.
    async fn subscribe_channel_since(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        channel: &Channel,
        filter: &[Topic],
        query: &HistoryQuery<'_>,
        limit: u32,
    ) -> StoreResult<Option<Resubscribed>>;

    /// Leaves `channel`; false when `conn` did not follow it.
    async fn unsubscribe_channel(&self, tenant: &TenantId, conn: &ConnectionId, channel: &Channel)
    -> StoreResult<bool>;

    /// What `conn` is subscribed to (one round trip).
    async fn subscriptions(&self, tenant: &TenantId, conn: &ConnectionId) -> StoreResult<Subscriptions>;

    /// How many connections follow `channel`.
    async fn channel_subscribers(&self, tenant: &TenantId, channel: &Channel) -> StoreResult<usize>;
}
