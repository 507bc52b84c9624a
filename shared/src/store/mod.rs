//! Everything the handlers keep: connections, presence, history, offline
//! queues, rate limits, the webhook registry and fan-out claims.
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
//!
//! One trait per capability, each in its own file beside its types
//! (`connections.rs`: connections, subscriptions and presence;
//! `channels.rs`: channel subscriptions;
//! `history.rs`; `offline.rs`; `rate.rs`; `webhooks.rs`: registry,
//! delivery log and health; `fanout.rs`: queued fan-out claims;
//! `compat.rs`: the legacy hub's pub/sub), and [`Store`] over them all.
//! Each backend is split the same way (`memory/<area>.rs`,
//! `redis/<area>.rs`): a new capability is a trait here, a pair of backend
//! files, and its cases in the contract suite.

mod channels;
mod compat;
mod connections;
mod fanout;
mod history;
mod keys;
mod memory;
mod offline;
mod rate;
mod redis;
mod webhooks;

use async_trait::async_trait;

pub use self::channels::{CHANNEL_POSITION_TTL, ChannelStore, Retention, Subscriptions};
pub use self::compat::CompatStore;
pub use self::connections::{
    Connection, ConnectionStore, Idle, Presence, Recipient, Registered, Resolution, Unregistered, presence_event,
};
pub use self::fanout::{Claim, ClaimSettings, FanoutStore, Settled};
pub use self::history::{
    Audience, HistoryEntry, HistoryQuery, HistoryRead, HistoryStore, ReadStatus, Record, Resubscribed, read_cost,
};
pub use self::keys::Keys;
pub use self::memory::MemoryStore;
pub use self::offline::OfflineStore;
pub use self::rate::RateLimitStore;
pub use self::redis::RedisStore;
pub use self::webhooks::{
    AttemptRecord, AttemptStats, Breaker, Health, LogBounds, LogQuery, LogRecord, STATS_BUCKET_MS, STATS_BUCKETS,
    WebhookStore, stats_bucket, stats_window,
};

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
    /// A subscribe to one more channel would exceed the per-connection limit.
    #[error("too many channels: at most {limit} per connection")]
    TooManyChannels {
        /// The configured limit (`CHANNELS_PER_CONNECTION`).
        limit: usize,
    },
    /// The channel has as many subscribers as it may.
    #[error("channel full: at most {limit} subscribers per channel")]
    ChannelFull {
        /// The configured limit (`CHANNEL_MAX_SUBSCRIBERS`).
        limit: usize,
    },
    /// The backend returned data that does not parse (a bug or tampering).
    #[error("store returned unexpected data: {0}")]
    Corrupt(String),
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Every capability the handlers need, each one round trip per operation
/// on Redis. Handlers hold an `Arc<dyn Store>`; a module that calls a
/// capability's methods imports its trait.
#[async_trait]
pub trait Store:
    ConnectionStore
    + ChannelStore
    + HistoryStore
    + OfflineStore
    + RateLimitStore
    + WebhookStore
    + FanoutStore
    + CompatStore
    + 'static
{
    /// Is the backend reachable?
    async fn ping(&self) -> StoreResult<()>;
}
