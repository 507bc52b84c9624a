//! The in-process store: the emulator's zero-configuration default.
//!
//! Same contract as Redis, including TTLs (checked lazily on read, as Redis
//! does for keys nobody touches). One mutex over the whole state: every
//! operation is short and never awaits while holding it.

mod channels;
mod compat;
mod connections;
mod fanout;
mod history;
mod offline;
mod rate;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::history::Log;
use self::offline::Queue;
use crate::channel::Channel;
use crate::config::Limits;
use crate::event::Topic;
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::store::{AttemptStats, Connection, Health, Store, StoreResult};
use crate::webhook::WebhookConfig;

/// State kept in process memory.
#[derive(Debug)]
pub struct MemoryStore {
    limits: Limits,
    state: Mutex<HashMap<TenantId, Tenant>>,
}

#[derive(Debug, Default)]
struct Tenant {
    conns: HashMap<ConnectionId, (Connection, BTreeSet<Topic>)>,
    users: HashMap<UserId, HashSet<ConnectionId>>,
    /// When each connection's client last sent a frame.
    active: HashMap<ConnectionId, Instant>,
    /// Heartbeat expiry per user; present and in the future = online.
    presence: HashMap<UserId, Instant>,
    subs: HashMap<Topic, HashSet<ConnectionId>>,
    offline: HashMap<UserId, Queue>,
    /// When each user last connected: who may have an offline queue.
    seen: HashMap<UserId, Instant>,
    /// When `seen` was last swept of users past the offline TTL.
    seen_swept: Option<Instant>,
    /// (Unix second, requests in it).
    rate_window: (i64, u32),
    webhooks: HashMap<String, WebhookConfig>,
    /// Delivery attempts, oldest first: (entry id, webhook id, delivery id, entry JSON).
    log: VecDeque<(String, String, String, String)>,
    /// The last log id handed out: (ms, sequence).
    log_last: (i64, u64),
    health: HashMap<String, Health>,
    /// Stats counters per (webhook, 5-minute bucket).
    stats: HashMap<(String, i64), AttemptStats>,
    /// Queued fan-out claims per job (member -> lease expiry, `None` once
    /// sent), with their expiry.
    sent: HashMap<String, (HashMap<String, Option<Instant>>, Instant)>,
    /// Finished jobs, until their marker expires.
    sent_done: HashMap<String, Instant>,
    /// The tenant's recent events.
    history: Log,
    /// Each channel's subscribers, with their filters; a channel without
    /// one is removed.
    channels: HashMap<Channel, HashMap<ConnectionId, Vec<Topic>>>,
    /// Each connection's channels, with their filters.
    conn_channels: HashMap<ConnectionId, BTreeMap<Channel, Vec<Topic>>>,
    /// Each channel's recent events.
    channel_logs: HashMap<Channel, Log>,
    /// When `channel_logs` was last swept of histories gone.
    channel_logs_swept: Option<Instant>,
}

impl MemoryStore {
    /// An empty store with these limits.
    pub fn new(limits: Limits) -> Self {
        MemoryStore { limits, state: Mutex::new(HashMap::new()) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<TenantId, Tenant>) -> T) -> T {
        // A panic while holding the lock cannot leave the maps half-updated in
        // a way later calls would misread, so a poisoned lock is still usable.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn deadline(ttl: Duration) -> Instant {
        Instant::now() + ttl
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
