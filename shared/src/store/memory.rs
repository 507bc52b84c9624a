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
    Breaker, Connection, Health, HistoryEntry, HistoryQuery, HistoryRead, LogQuery, LogRecord, OfflineRefusal,
    Position, Presence, ReadStatus, Recipient, Record, Registered, Resolution, Resubscribed, Store, StoreError,
    StoreResult, Unregistered,
};
use crate::config::Limits;
use crate::event::{Envelope, EventType, Topic};
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
    /// Queued fan-out claims per job (member -> lease expiry, `None` once
    /// sent), with their expiry.
    sent: HashMap<String, (HashMap<String, Option<Instant>>, Instant)>,
    /// Finished jobs, until their marker expires.
    sent_done: HashMap<String, Instant>,
    /// The tenant's recent events.
    history: Log,
}

/// A tenant's history, as the Redis stream and its meta hash keep it.
#[derive(Debug, Default)]
struct Log {
    /// Made on first use; the process's lifetime is the history's.
    epoch: Option<String>,
    top: u64,
    /// The id of the event at `top`.
    top_id: Option<String>,
    /// Oldest first, with when each was recorded.
    entries: VecDeque<(Instant, HistoryEntry)>,
    /// The stream's expiry: its last write plus the TTL.
    expiry: Option<Instant>,
    /// Queued events recorded once: event id -> (offset, expiry).
    once: HashMap<String, (u64, Instant)>,
}

impl Log {
    fn epoch(&mut self) -> String {
        self.epoch.get_or_insert_with(Position::fresh_epoch).clone()
    }

    /// Drops what expired (the whole stream, as a Redis key expires).
    fn expire(&mut self, now: Instant) {
        if self.expiry.is_some_and(|e| e <= now) {
            self.entries.clear();
            self.expiry = None;
        }
        self.once.retain(|_, (_, exp)| *exp > now);
    }

    fn record(
        &mut self,
        limits: &Limits,
        record: &Record<'_>,
        target: &Target,
        user: Option<UserId>,
    ) -> Option<Position> {
        if limits.history_size == 0 {
            return None;
        }
        let now = Instant::now();
        self.expire(now);
        let epoch = self.epoch();
        if let Some((offset, _)) = self.once.get(record.id).filter(|_| record.once) {
            return Some(Position { epoch, offset: *offset });
        }
        self.top += 1;
        self.top_id = Some(record.id.to_owned());
        let text = (record.text.len() <= limits.history_max_event_bytes).then(|| record.text.to_owned());
        let entry = HistoryEntry {
            offset: self.top,
            id: record.id.to_owned(),
            event_type: record.event_type,
            target: target.clone(),
            user,
            text,
        };
        self.entries.push_back((now, entry));
        while self.entries.len() > limits.history_size {
            self.entries.pop_front();
        }
        self.expiry = Some(now + limits.history_ttl);
        if record.once {
            self.once.insert(record.id.to_owned(), (self.top, now + limits.history_ttl));
        }
        Some(Position { epoch, offset: self.top })
    }

    /// The Redis script's `history_read`, step for step.
    fn read(&mut self, limits: &Limits, query: &HistoryQuery<'_>, topics: &[Topic]) -> HistoryRead {
        let now = Instant::now();
        self.expire(now);
        let epoch = self.epoch();
        let mut read = HistoryRead { epoch, top: self.top, top_id: self.top_id.clone(), ..HistoryRead::default() };
        let Some(since) = query.since else { return read };
        let lost = HistoryRead { status: ReadStatus::Lost, ..read.clone() };
        if since.epoch != read.epoch || since.offset > self.top {
            return lost;
        }
        let at = |offset: u64| self.entries.iter().find(|(_, e)| e.offset == offset);
        if let Some(id) = since.id.as_deref().filter(|_| since.offset > 0) {
            let theirs = if since.offset == self.top {
                self.top_id.as_deref()
            } else {
                at(since.offset).map(|(_, e)| e.id.as_str())
            };
            if theirs != Some(id) {
                return lost;
            }
        }
        if since.offset == self.top {
            return read;
        }
        match at(since.offset + 1) {
            Some((recorded, _)) if now.duration_since(*recorded) <= limits.history_ttl => {}
            _ => return lost,
        }
        let mut bytes = 0;
        let wanted = self.entries.iter().map(|(_, e)| e).filter(|e| {
            e.offset > since.offset && query.audience.admits(e) && topics.iter().any(|t| t.matches(e.event_type))
        });
        for entry in wanted {
            if read.events.len() == query.max_events {
                read.status = ReadStatus::Truncated;
                break;
            }
            let Some(text) = &entry.text else { return lost };
            if bytes + text.len() > query.max_bytes {
                read.status = ReadStatus::Truncated;
                break;
            }
            bytes += text.len();
            read.events.push((entry.offset, text.clone()));
        }
        read
    }
}

/// The recipients of `event` sent to `target` in tenant `t`.
fn resolution(t: &Tenant, event: EventType, target: &Target) -> Resolution {
    let topics = event.topics();
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
            Resolution { recipients, target_connections: t.conns.len(), ..Resolution::default() }
        }
        Target::User(user) => {
            let live: Vec<_> = t.users.get(user).into_iter().flatten().filter_map(|id| t.conns.get(id)).collect();
            Resolution {
                target_connections: live.len(),
                recipients: live.into_iter().filter_map(subscribed).collect(),
                ..Resolution::default()
            }
        }
        Target::Connection(id) => match t.conns.get(id) {
            None => Resolution::default(),
            Some(entry) => Resolution {
                target_connections: 1,
                recipients: subscribed(entry).into_iter().collect(),
                ..Resolution::default()
            },
        },
    };
    Resolution { webhooks, ..resolution }
}

/// Records a user's presence event in the tenant's history.
fn record_presence(t: &mut Tenant, limits: &Limits, tenant: &TenantId, user: &UserId, online: bool) -> Envelope {
    let mut event = super::presence_event(tenant, user, online);
    let text = serde_json::to_string(&event).expect("an envelope is plain JSON");
    let record = Record { event_type: event.event_type, text: &text, id: &event.id, once: false };
    let position = t.history.record(limits, &record, &Target::Tenant, None);
    event.set_position(position.as_ref());
    event
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
    /// Counts one request against `limit` per second.
    fn within_limit(&mut self, limit: u32) -> bool {
        let second = crate::time::now_millis() / 1000;
        if self.rate_window.0 != second {
            self.rate_window = (second, 0);
        }
        self.rate_window.1 += 1;
        self.rate_window.1 <= limit
    }

    /// [`Store::offline_push`] in this tenant.
    fn offline_push(&mut self, limits: &Limits, user: &UserId, message: &str) -> Result<usize, OfflineRefusal> {
        let (cap, ttl) = (limits.offline_max_messages, limits.offline_ttl);
        let now = Instant::now();
        self.offline.retain(|_, q| q.expiry > now);
        if self.seen.get(user).is_none_or(|at| now.duration_since(*at) > ttl) {
            return Err(OfflineRefusal::UnknownUser);
        }
        if message.len() > limits.offline_max_bytes {
            return Err(OfflineRefusal::MessageTooLarge);
        }
        if !self.offline.contains_key(user) && self.offline.len() >= limits.offline_max_queues {
            return Err(OfflineRefusal::TenantQueuesFull);
        }
        let freed: usize = self
            .offline
            .get(user)
            .map_or(0, |q| q.messages.iter().take((q.messages.len() + 1).saturating_sub(cap)).map(String::len).sum());
        let total: usize = self.offline.values().map(|q| q.bytes).sum();
        if total + message.len() - freed > limits.offline_max_bytes {
            return Err(OfflineRefusal::TenantBytesFull);
        }
        let queue = self.offline.entry(user.clone()).or_insert_with(|| Queue {
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
    }

    /// What a history read costs beyond the request `within_limit` counted.
    fn charge(&mut self, read: &HistoryRead) {
        self.rate_window.1 = self.rate_window.1.saturating_add(super::read_cost(read));
    }

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

    fn subscribe_in(&self, t: &mut Tenant, conn: &ConnectionId, topics: &[Topic]) -> StoreResult<Vec<Topic>> {
        let limit = self.limits.max_subscriptions;
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
    }

    fn deadline(ttl: Duration) -> Instant {
        Instant::now() + ttl
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn register(&self, conn: &Connection) -> StoreResult<Registered> {
        let ttl = self.limits.presence_ttl;
        let registered = self.with(|state| {
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
            let mut registered = Registered { came_online, user_connections, presence: None, presence_event: None };
            if came_online {
                registered.presence_event =
                    Some(record_presence(t, &self.limits, &conn.tenant_id, &conn.user_id, true));
                registered.presence = Some(resolution(t, EventType::PresenceOnline, &Target::Tenant));
            }
            registered
        });
        Ok(registered)
    }

    async fn unregister_many(&self, tenant: &TenantId, conns: &[ConnectionId]) -> StoreResult<Vec<Unregistered>> {
        Ok(self.with(|state| {
            let Some(t) = state.get_mut(tenant) else { return vec![] };
            let mut gone: Vec<Unregistered> = conns
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
                    let mut presence_event = None;
                    if went_offline {
                        t.users.remove(&c.user_id);
                        t.presence.remove(&c.user_id);
                        presence_event = Some(record_presence(t, &self.limits, tenant, &c.user_id, false));
                    }
                    Some(Unregistered { user_id: c.user_id, went_offline, presence: None, presence_event })
                })
                .collect();
            if gone.iter().any(|g| g.went_offline) {
                let presence = resolution(t, EventType::PresenceOffline, &Target::Tenant);
                for g in gone.iter_mut().filter(|g| g.went_offline) {
                    g.presence = Some(presence.clone());
                }
            }
            gone
        }))
    }

    async fn connection(&self, tenant: &TenantId, conn: &ConnectionId) -> StoreResult<Option<Connection>> {
        Ok(self.with(|state| state.get(tenant)?.conns.get(conn).map(|(c, _)| c.clone())))
    }

    async fn subscribe(&self, tenant: &TenantId, conn: &ConnectionId, topics: &[Topic]) -> StoreResult<Vec<Topic>> {
        self.with(|state| {
            let t = state.get_mut(tenant).ok_or(StoreError::UnknownConnection)?;
            self.subscribe_in(t, conn, topics)
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

    async fn idle_connections(&self, tenant: &TenantId, idle: Duration, max: usize) -> StoreResult<Vec<super::Idle>> {
        Ok(self.with(|state| {
            let Some(t) = state.get(tenant) else { return vec![] };
            let now = Instant::now();
            let mut idle: Vec<(Instant, &ConnectionId)> =
                t.active.iter().filter(|(_, at)| now.duration_since(**at) >= idle).map(|(c, at)| (*at, c)).collect();
            idle.sort();
            idle.into_iter()
                .take(max)
                .filter_map(|(at, id)| Some((at, t.conns.get(id)?)))
                .map(|(at, (c, _))| super::Idle {
                    recipient: Recipient {
                        connection_id: c.id.clone(),
                        user_id: c.user_id.clone(),
                        endpoint: c.endpoint.clone(),
                    },
                    idle: now.duration_since(at),
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
        Ok(self.with(|state| state.get(tenant).map(|t| resolution(t, event, target)).unwrap_or_default()))
    }

    async fn record_and_resolve(
        &self,
        tenant: &TenantId,
        record: &Record<'_>,
        target: &Target,
        limit: Option<u32>,
    ) -> StoreResult<Option<Resolution>> {
        Ok(self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            if let Some(limit) = limit
                && !t.within_limit(limit)
            {
                return None;
            }
            let resolved = resolution(t, record.event_type, target);
            // As the Redis script does: a synchronous publish to a user with
            // no connection is queued first, and a refusal of the caller's
            // doing records nothing.
            let mut offline = None;
            if let Target::User(u) = target
                && resolved.target_connections == 0
                && !record.once
                && self.limits.history_size > 0
            {
                let next = Position { epoch: t.history.epoch(), offset: t.history.top + 1 };
                let pushed = t.offline_push(&self.limits, u, &crate::event::with_position(record.text, &next));
                let refused = Resolution { offline: Some(pushed), ..Resolution::default() };
                if refused.refused_whole().is_some() {
                    return Some(refused);
                }
                offline = Some(pushed);
            }
            let user = match target {
                Target::Tenant => None,
                Target::User(u) => Some(u.clone()),
                Target::Connection(c) => t.conns.get(c).map(|(c, _)| c.user_id.clone()),
            };
            let position = t.history.record(&self.limits, record, target, user);
            Some(Resolution { position, offline, ..resolved })
        }))
    }

    async fn history(
        &self,
        tenant: &TenantId,
        query: &HistoryQuery<'_>,
        topics: &[Topic],
        limit: Option<u32>,
    ) -> StoreResult<Option<HistoryRead>> {
        Ok(self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            if let Some(limit) = limit
                && !t.within_limit(limit)
            {
                return None;
            }
            let read = t.history.read(&self.limits, query, topics);
            if limit.is_some() {
                t.charge(&read);
            }
            Some(read)
        }))
    }

    async fn subscribe_since(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        topics: &[Topic],
        query: &HistoryQuery<'_>,
        limit: u32,
    ) -> StoreResult<Option<Resubscribed>> {
        self.with(|state| {
            let t = state.get_mut(tenant).ok_or(StoreError::UnknownConnection)?;
            if !t.within_limit(limit) {
                return Ok(None);
            }
            let topics = self.subscribe_in(t, conn, topics)?;
            let endpoint = t.conns.get(conn).map(|(c, _)| c.endpoint.clone()).unwrap_or_default();
            let history = t.history.read(&self.limits, query, &topics);
            t.charge(&history);
            Ok(Some(Resubscribed { topics, endpoint, history }))
        })
    }

    async fn offline_push(
        &self,
        tenant: &TenantId,
        user: &UserId,
        message: &str,
    ) -> StoreResult<Result<usize, OfflineRefusal>> {
        Ok(self.with(|state| state.entry(tenant.clone()).or_default().offline_push(&self.limits, user, message)))
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
        Ok(self.with(|state| state.entry(tenant.clone()).or_default().within_limit(limit)))
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
        job: &str,
        members: &[String],
        claims: &super::ClaimSettings,
    ) -> StoreResult<Vec<super::Claim>> {
        use super::Claim;
        self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            let now = Instant::now();
            t.sent.retain(|_, (_, exp)| *exp > now);
            t.sent_done.retain(|_, exp| *exp > now);
            if t.sent_done.contains_key(job) {
                return Ok(vec![Claim::Sent; members.len()]);
            }
            if !t.sent.contains_key(job) && t.sent.len() >= claims.max_live_jobs {
                return Err(StoreError::Unavailable(format!(
                    "TOO_MANY_FANOUTS the tenant has {} queued fan-outs in flight",
                    claims.max_live_jobs
                )));
            }
            let (held, exp) = t.sent.entry(job.to_owned()).or_insert_with(|| (HashMap::new(), now));
            *exp = now + claims.ttl;
            Ok(members
                .iter()
                .map(|m| match held.get(m) {
                    Some(None) => Claim::Sent,
                    Some(Some(lease)) if *lease > now => Claim::Busy,
                    _ => {
                        held.insert(m.clone(), Some(now + claims.lease));
                        Claim::Mine
                    }
                })
                .collect())
        })
    }

    async fn fanout_settle(
        &self,
        tenant: &TenantId,
        job: &str,
        settled: super::Settled<'_>,
        claims: &super::ClaimSettings,
    ) -> StoreResult<()> {
        self.with(|state| {
            let t = state.entry(tenant.clone()).or_default();
            match settled {
                super::Settled::Finished => {
                    t.sent.remove(job);
                    t.sent_done.insert(job.to_owned(), Instant::now() + claims.ttl);
                }
                super::Settled::Partly { sent, released } => {
                    if let Some((held, _)) = t.sent.get_mut(job) {
                        for m in sent {
                            held.insert(m.clone(), None);
                        }
                        for m in released {
                            held.remove(m);
                        }
                    }
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
