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
//!
//! This file holds the connection and what every capability's file
//! (`connections.rs`, `history.rs`, ...) shares: the Lua functions their
//! scripts are built from and the reply parsers.

mod channels;
mod compat;
mod connections;
mod fanout;
mod history;
mod offline;
mod rate;
mod webhooks;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use tokio::sync::OnceCell;

use crate::config::{Limits, RedisConfig};
use crate::event::{Position, Topic};
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::store::{Keys, Recipient, Store, StoreError, StoreResult};

/// A Lua function in `lua/fn_now.lua`, which opens with what it takes and returns.
const NOW_FN: &str = include_str!("../lua/fn_now.lua");

/// A Lua function in `lua/fn_within_limit.lua`, which opens with what it takes and returns.
const WITHIN_LIMIT_FN: &str = include_str!("../lua/fn_within_limit.lua");

/// A Lua function in `lua/fn_resolve.lua`, which opens with what it takes and returns.
const RESOLVE_FN: &str = include_str!("../lua/fn_resolve.lua");

/// A Lua function in `lua/fn_history.lua`, which opens with what it takes and returns.
const HISTORY_FN: &str = include_str!("../lua/fn_history.lua");

/// A Lua function in `lua/fn_subscribe.lua`, which opens with what it takes and returns.
const SUBSCRIBE_FN: &str = include_str!("../lua/fn_subscribe.lua");

/// A Lua function in `lua/fn_release.lua`, which opens with what it takes and returns.
const RELEASE_FN: &str = include_str!("../lua/fn_release.lua");

/// A Lua function in `lua/fn_offline_push.lua`, which opens with what it takes and returns.
const OFFLINE_PUSH_FN: &str = include_str!("../lua/fn_offline_push.lua");

/// A script that calls `resolve` (and `within_limit`, records history,
/// queues offline).
fn with_resolve(body: &str) -> Script {
    Script::new(&format!(
        "{NOW_FN}\n{WITHIN_LIMIT_FN}\n{RESOLVE_FN}\n{HISTORY_FN}\n{RELEASE_FN}\n{OFFLINE_PUSH_FN}\n{body}"
    ))
}

/// A connection to either kind of deployment.
#[derive(Clone)]
pub(super) enum Conn {
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
}

#[async_trait]
impl Store for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        redis::cmd("PING").query_async::<String>(&mut self.conn().await?).await.map(drop).map_err(unavailable)
    }
}
