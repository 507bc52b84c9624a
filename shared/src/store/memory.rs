//! The in-process store: the emulator's zero-configuration default.
//!
//! Same contract as Redis, including TTLs (checked lazily on read, as Redis
//! does for keys nobody touches). One mutex over the whole state: every
//! operation is short and never awaits while holding it.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{
    Breaker, Connection, Health, LogQuery, LogRecord, OfflineRefusal, Presence, Recipient, Registered, Resolution,
    Store, StoreError, StoreResult, Unregistered,
};
use crate::config::Limits;
use crate::event::{EventType, Topic};
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::protocol::Target;

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
    webhooks: HashMap<String, String>,
    /// Delivery attempts, oldest first: (entry id, webhook id, delivery id, entry JSON).
    log: VecDeque<(String, String, String, String)>,
    /// The last log id handed out: (ms, sequence).
    log_last: (i64, u64),
    health: HashMap<String, Health>,
    /// Stats counters per (webhook, 5-minute bucket).
    stats: HashMap<(String, i64), super::AttemptStats>,
    /// Chunked fan-out claims per event, with their expiry.
    sent: HashMap<String, (HashSet<String>, Instant)>,
}

/// One user's offline queue.
#[derive(Debug)]
struct Queue {
    messages: VecDeque<String>,
    /// Their bytes together (the tenant's budget counts these).
    bytes: usize,
    expiry: Instant,
}

/// The `<ms>-<seq>` entry id's parts, for comparisons.
fn log_id_key(id: &str) -> (i64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

impl Tenant {
    fn is_online(&self, user: &UserId, now: Instant) -> bool {
        self.presence.get(user).is_some_and(|exp| *exp > now)
    }

    fn live_queue(&mut self, user: &UserId, now: Instant) -> Option<&mut Queue> {
        if self.offline.get(user).is_some_and(|q| q.expiry <= now) {
            self.offline.remove(user);
        }
        self.offline.get_mut(user)
    }
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
    async fn register(&self, conn: &Connection) -> StoreResult<Registered> {
        let ttl = self.limits.presence_ttl;
        let mut registered = self.with(|state| {
            let t = state.entry(conn.tenant_id.clone()).or_default();
            let now = Instant::now();
            let came_online = !t.is_online(&conn.user_id, now);
            let subs = t.conns.remove(&conn.id).map(|(_, s)| s).unwrap_or_default();
            t.conns.insert(conn.id.clone(), (conn.clone(), subs));
            t.active.insert(conn.id.clone(), now);
            let set = t.users.entry(conn.user_id.clone()).or_default();
            set.insert(conn.id.clone());
            let user_connections = set.len();
            t.presence.insert(conn.user_id.clone(), Self::deadline(ttl));
            t.seen.insert(conn.user_id.clone(), now);
            let offline_ttl = self.limits.offline_ttl;
            if t.seen_swept.is_none_or(|at| now.duration_since(at) > offline_ttl.min(Duration::from_secs(60))) {
                t.seen.retain(|_, at| now.duration_since(*at) <= offline_ttl);
                t.seen_swept = Some(now);
            }
            Registered { came_online, user_connections, presence: None }
        });
        if registered.came_online {
            registered.presence =
                Some(self.resolve(&conn.tenant_id, EventType::PresenceOnline, &Target::Tenant).await?);
        }
        Ok(registered)
    }

    async fn unregister_many(&self, tenant: &TenantId, conns: &[ConnectionId]) -> StoreResult<Vec<Unregistered>> {
        let mut gone = self.with(|state| {
            let Some(t) = state.get_mut(tenant) else { return vec![] };
            conns
                .iter()
                .filter_map(|conn| {
                    let (c, topics) = t.conns.remove(conn)?;
                    t.active.remove(conn);
                    for topic in topics {
                        if let Some(set) = t.subs.get_mut(&topic) {
                            set.remove(conn);
                            if set.is_empty() {
                                t.subs.remove(&topic);
                            }
                        }
                    }
                    let left = t.users.get_mut(&c.user_id).map(|set| {
                        set.remove(conn);
                        set.len()
                    });
                    let went_offline = left.unwrap_or(0) == 0;
                    if went_offline {
                        t.users.remove(&c.user_id);
                        t.presence.remove(&c.user_id);
                    }
                    Some(Unregistered { user_id: c.user_id, went_offline, presence: None })
                })
                .collect::<Vec<_>>()
        });
        if gone.iter().any(|g| g.went_offline) {
            let presence = self.resolve(tenant, EventType::PresenceOffline, &Target::Tenant).await?;
            for g in gone.iter_mut().filter(|g| g.went_offline) {
                g.presence = Some(presence.clone());
            }
        }
        Ok(gone)
    }

    async fn connection(&self, tenant: &TenantId, conn: &ConnectionId) -> StoreResult<Option<Connection>> {
        Ok(self.with(|state| state.get(tenant)?.conns.get(conn).map(|(c, _)| c.clone())))
    }

    async fn subscribe(&self, tenant: &TenantId, conn: &ConnectionId, topics: &[Topic]) -> StoreResult<Vec<Topic>> {
        let limit = self.limits.max_subscriptions;
        self.with(|state| {
            let t = state.get_mut(tenant).ok_or(StoreError::UnknownConnection)?;
            let (_, mine) = t.conns.get_mut(conn).ok_or(StoreError::UnknownConnection)?;
            t.active.insert(conn.clone(), Instant::now());
            let new = topics.iter().filter(|tp| !mine.contains(*tp)).collect::<HashSet<_>>().len();
            if mine.len() + new > limit {
                return Err(StoreError::TooManySubscriptions { limit });
            }
            for topic in topics {
                mine.insert(topic.clone());
            }
            let after: Vec<Topic> = mine.iter().cloned().collect();
            for topic in topics {
                t.subs.entry(topic.clone()).or_default().insert(conn.clone());
            }
            Ok(after)
        })
    }

    async fn unsubscribe(&self, tenant: &TenantId, conn: &ConnectionId, topics: &[Topic]) -> StoreResult<Vec<Topic>> {
        self.with(|state| {
            let t = state.get_mut(tenant).ok_or(StoreError::UnknownConnection)?;
            let (_, mine) = t.conns.get_mut(conn).ok_or(StoreError::UnknownConnection)?;
            t.active.insert(conn.clone(), Instant::now());
            for topic in topics {
                mine.remove(topic);
            }
            let after: Vec<Topic> = mine.iter().cloned().collect();
            for topic in topics {
                if let Some(set) = t.subs.get_mut(topic) {
                    set.remove(conn);
                }
            }
            Ok(after)
        })
    }

    async fn heartbeat(&self, tenant: &TenantId, user: &UserId, conn: &ConnectionId) -> StoreResult<bool> {
        let ttl = self.limits.presence_ttl;
        Ok(self.with(|state| {
            let Some(t) = state.get_mut(tenant) else {
                return false;
            };
            let Some(mine) = t.users.get(user).filter(|set| !set.is_empty()) else {
                return false;
            };
            if mine.contains(conn) {
                t.active.insert(conn.clone(), Instant::now());
            }
            t.presence.insert(user.clone(), Self::deadline(ttl));
            true
        }))
    }

    async fn idle_connections(&self, tenant: &TenantId, idle: Duration, max: usize) -> StoreResult<Vec<Recipient>> {
        Ok(self.with(|state| {
            let Some(t) = state.get(tenant) else { return vec![] };
            let now = Instant::now();
            let mut idle: Vec<(Instant, &ConnectionId)> =
                t.active.iter().filter(|(_, at)| now.duration_since(**at) >= idle).map(|(c, at)| (*at, c)).collect();
            idle.sort();
            idle.into_iter()
                .take(max)
                .filter_map(|(_, id)| t.conns.get(id))
                .map(|(c, _)| Recipient {
                    connection_id: c.id.clone(),
                    user_id: c.user_id.clone(),
                    endpoint: c.endpoint.clone(),
                })
                .collect()
        }))
    }

    async fn touch(&self, tenant: &TenantId, conns: &[ConnectionId]) -> StoreResult<()> {
        self.with(|state| {
            let Some(t) = state.get_mut(tenant) else { return };
            let now = Instant::now();
            for c in conns {
                if let Some(at) = t.active.get_mut(c) {
                    *at = now;
                }
            }
        });
        Ok(())
    }

    async fn tenants(&self) -> StoreResult<Vec<TenantId>> {
        Ok(self.with(|state| state.keys().cloned().collect()))
    }

    async fn presence(&self, tenant: &TenantId, user: &UserId) -> StoreResult<Presence> {
        Ok(self.with(|state| match state.get(tenant) {
            None => Presence { online: false, connections: 0 },
            Some(t) => Presence {
                online: t.is_online(user, Instant::now()),
                connections: t.users.get(user).map_or(0, HashSet::len),
            },
        }))
    }

    async fn online_users(&self, tenant: &TenantId) -> StoreResult<Vec<UserId>> {
        Ok(self.with(|state| {
            let Some(t) = state.get(tenant) else {
                return vec![];
            };
            let now = Instant::now();
            let mut users: Vec<UserId> =
                t.presence.iter().filter(|(_, exp)| **exp > now).map(|(u, _)| u.clone()).collect();
            users.sort();
            users
        }))
    }

    async fn connection_count(&self, tenant: &TenantId) -> StoreResult<usize> {
        Ok(self.with(|state| state.get(tenant).map_or(0, |t| t.conns.len())))
    }

    async fn total_connections(&self) -> StoreResult<usize> {
        Ok(self.with(|state| state.values().map(|t| t.conns.len()).sum()))
    }

    async fn resolve(&self, tenant: &TenantId, event: EventType, target: &Target) -> StoreResult<Resolution> {
        let topics = event.topics();
        Ok(self.with(|state| {
            let Some(t) = state.get(tenant) else {
                return Resolution::default();
            };
            let subscribed = |(c, mine): &(Connection, BTreeSet<Topic>)| -> Option<Recipient> {
                topics.iter().any(|tp| mine.contains(tp)).then(|| Recipient {
                    connection_id: c.id.clone(),
                    user_id: c.user_id.clone(),
                    endpoint: c.endpoint.clone(),
                })
            };
            let webhooks: Vec<String> = t.webhooks.values().cloned().collect();
            let resolution = match target {
                Target::Tenant => {
                    let ids: HashSet<&ConnectionId> = topics.iter().filter_map(|tp| t.subs.get(tp)).flatten().collect();
                    let recipients = ids.into_iter().filter_map(|id| t.conns.get(id)).filter_map(subscribed).collect();
                    Resolution { recipients, target_connections: t.conns.len(), webhooks: vec![] }
                }
                Target::User(user) => {
                    let live: Vec<_> =
                        t.users.get(user).into_iter().flatten().filter_map(|id| t.conns.get(id)).collect();
                    Resolution {
                        target_connections: live.len(),
                        recipients: live.into_iter().filter_map(subscribed).collect(),
                        webhooks: vec![],
                    }
                }
                Target::Connection(id) => match t.conns.get(id) {
                    None => Resolution::default(),
                    Some(entry) => Resolution {
                        target_connections: 1,
                        recipients: subscribed(entry).into_iter().collect(),
                        webhooks: vec![],
                    },
                },
            };
            Resolution { webhooks, ..resolution }
        }))
    }

    async fn offline_push(
        &self,
        tenant: &TenantId,
        user: &UserId,
        message: &str,
    ) -> StoreResult<Result<usize, OfflineRefusal>> {
        let (cap, ttl, limits) = (self.limits.offline_max_messages, self.limits.offline_ttl, &self.limits);
        Ok(self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            let now = Instant::now();
            t.offline.retain(|_, q| q.expiry > now);
            if t.seen.get(user).is_none_or(|at| now.duration_since(*at) > ttl) {
                return Err(OfflineRefusal::UnknownUser);
            }
            if message.len() > limits.offline_max_bytes {
                return Err(OfflineRefusal::MessageTooLarge);
            }
            if !t.offline.contains_key(user) && t.offline.len() >= limits.offline_max_queues {
                return Err(OfflineRefusal::TenantQueuesFull);
            }
            let freed: usize = t.offline.get(user).map_or(0, |q| {
                q.messages.iter().take((q.messages.len() + 1).saturating_sub(cap)).map(String::len).sum()
            });
            let total: usize = t.offline.values().map(|q| q.bytes).sum();
            if total + message.len() - freed > limits.offline_max_bytes {
                return Err(OfflineRefusal::TenantBytesFull);
            }
            let queue = t.offline.entry(user.clone()).or_insert_with(|| Queue {
                messages: VecDeque::new(),
                bytes: 0,
                expiry: now,
            });
            queue.messages.push_back(message.to_owned());
            queue.bytes += message.len();
            while queue.messages.len() > cap {
                queue.bytes -= queue.messages.pop_front().map_or(0, |m| m.len());
            }
            queue.expiry = now + ttl;
            Ok(queue.messages.len())
        }))
    }

    async fn offline_peek(&self, tenant: &TenantId, user: &UserId, max: usize) -> StoreResult<Vec<String>> {
        Ok(self.with(|state| {
            let Some(t) = state.get_mut(tenant) else {
                return vec![];
            };
            t.live_queue(user, Instant::now())
                .map(|q| q.messages.iter().take(max).cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn offline_ack(&self, tenant: &TenantId, user: &UserId, delivered: &[String]) -> StoreResult<usize> {
        Ok(self.with(|state| {
            let Some(t) = state.get_mut(tenant) else {
                return 0;
            };
            let Some(queue) = t.live_queue(user, Instant::now()) else {
                return 0;
            };
            let mut removed = 0;
            for message in delivered {
                if queue.messages.front() == Some(message) {
                    queue.messages.pop_front();
                    queue.bytes -= message.len();
                    removed += 1;
                }
            }
            if queue.messages.is_empty() {
                t.offline.remove(user);
            }
            removed
        }))
    }

    async fn rate_limit(&self, tenant: &TenantId, limit: u32) -> StoreResult<bool> {
        let second = crate::time::now_millis() / 1000;
        Ok(self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            if t.rate_window.0 != second {
                t.rate_window = (second, 0);
            }
            t.rate_window.1 += 1;
            t.rate_window.1 <= limit
        }))
    }

    async fn publish_compat(&self, _tenant: &TenantId, _event: EventType, _message: &str) -> StoreResult<()> {
        // Nobody can SUBSCRIBE to an in-process store.
        Ok(())
    }

    async fn webhook_attempt(
        &self,
        tenant: &TenantId,
        a: &super::AttemptRecord<'_>,
        breaker: Breaker,
        log: super::LogBounds,
    ) -> StoreResult<Health> {
        let (webhook_id, success, now_ms) = (a.webhook_id, a.success, a.at_ms);
        Ok(self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            // Entry ids are the clock's, as Redis's XADD * makes them.
            let clock = crate::time::now_millis();
            let (last_ms, last_seq) = t.log_last;
            t.log_last = if clock > last_ms { (clock, 0) } else { (last_ms, last_seq + 1) };
            let id = format!("{}-{}", t.log_last.0, t.log_last.1);
            t.log.push_back((id, webhook_id.to_owned(), a.delivery_id.to_owned(), a.entry.to_owned()));
            while t.log.len() > log.max_entries.max(1) {
                t.log.pop_front();
            }
            let oldest = clock - log.max_age_ms;
            while t.log.front().is_some_and(|(id, ..)| log_id_key(id).0 < oldest) {
                t.log.pop_front();
            }
            let bucket = super::stats_bucket(now_ms);
            t.stats.retain(|(_, b), _| *b > bucket - 2 * super::STATS_BUCKETS);
            t.stats.entry((webhook_id.to_owned(), bucket)).or_default().add(super::AttemptStats::of(a));
            if success {
                t.health.remove(webhook_id);
                return Health::default();
            }
            let h = t.health.entry(webhook_id.to_owned()).or_default();
            h.consecutive_failures += 1;
            h.failing_since.get_or_insert(now_ms);
            if breaker.threshold > 0 && h.consecutive_failures >= breaker.threshold {
                h.paused_until = Some(now_ms + breaker.cooldown_ms);
            }
            *h
        }))
    }

    async fn webhook_stats(
        &self,
        tenant: &TenantId,
        webhook_id: &str,
        now_ms: i64,
    ) -> StoreResult<super::AttemptStats> {
        Ok(self.with(|state| {
            let mut total = super::AttemptStats::default();
            let Some(t) = state.get(tenant) else { return total };
            for bucket in super::stats_window(now_ms) {
                if let Some(b) = t.stats.get(&(webhook_id.to_owned(), bucket)) {
                    total.add(*b);
                }
            }
            total
        }))
    }

    async fn webhook_health(&self, tenant: &TenantId, webhook_id: &str) -> StoreResult<Health> {
        Ok(self.with(|state| state.get(tenant).and_then(|t| t.health.get(webhook_id).copied()).unwrap_or_default()))
    }

    async fn webhook_log(&self, tenant: &TenantId, q: &LogQuery<'_>) -> StoreResult<Vec<LogRecord>> {
        let before = q.before.map(log_id_key);
        Ok(self.with(|state| {
            let Some(t) = state.get(tenant) else { return vec![] };
            t.log
                .iter()
                .rev()
                .filter(|(id, ..)| before.is_none_or(|b| log_id_key(id) < b))
                .take_while(|(id, ..)| q.since_ms.is_none_or(|s| log_id_key(id).0 >= s))
                .filter(|(_, w, d, _)| w == q.webhook_id && q.delivery_id.is_none_or(|want| want == d))
                .take(q.limit)
                .map(|(id, _, _, entry)| LogRecord { id: id.clone(), entry: entry.clone() })
                .collect()
        }))
    }

    async fn fanout_claim(
        &self,
        tenant: &TenantId,
        event_id: &str,
        members: &[String],
        ttl: Duration,
    ) -> StoreResult<Vec<bool>> {
        Ok(self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            let now = Instant::now();
            t.sent.retain(|_, (_, exp)| *exp > now);
            let (set, exp) = t.sent.entry(event_id.to_owned()).or_insert_with(|| (HashSet::new(), now));
            *exp = now + ttl;
            members.iter().map(|m| set.insert(m.clone())).collect()
        }))
    }

    async fn fanout_release(&self, tenant: &TenantId, event_id: &str, members: &[String]) -> StoreResult<()> {
        self.with(|state| {
            if let Some((set, _)) = state.get_mut(tenant).and_then(|t| t.sent.get_mut(event_id)) {
                for m in members {
                    set.remove(m);
                }
            }
        });
        Ok(())
    }

    async fn put_webhook(&self, tenant: &TenantId, id: &str, config: &str) -> StoreResult<()> {
        self.with(|state| state.entry(tenant.clone()).or_default().webhooks.insert(id.to_owned(), config.to_owned()));
        Ok(())
    }

    async fn get_webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<Option<String>> {
        Ok(self.with(|state| state.get(tenant)?.webhooks.get(id).cloned()))
    }

    async fn list_webhooks(&self, tenant: &TenantId) -> StoreResult<Vec<String>> {
        Ok(self.with(|state| state.get(tenant).map(|t| t.webhooks.values().cloned().collect()).unwrap_or_default()))
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &str) -> StoreResult<bool> {
        Ok(self.with(|state| state.get_mut(tenant).is_some_and(|t| t.webhooks.remove(id).is_some())))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
