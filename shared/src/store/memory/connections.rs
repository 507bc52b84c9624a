use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{MemoryStore, Tenant};
use crate::config::Limits;
use crate::event::Target;
use crate::event::{Envelope, EventType, Topic};
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::store::{
    Connection, ConnectionStore, Idle, Presence, Recipient, Record, Registered, Resolution, StoreError, StoreResult,
    Unregistered, presence_event,
};
use crate::webhook::WebhookConfig;

/// The recipients of `event` sent to `target` in tenant `t`.
pub(super) fn resolution(t: &Tenant, event: EventType, target: &Target) -> Resolution {
    let topics = event.topics();
    let subscribed = |(c, mine): &(Connection, BTreeSet<Topic>)| -> Option<Recipient> {
        topics.iter().any(|tp| mine.contains(tp)).then(|| Recipient {
            connection_id: c.id.clone(),
            user_id: c.user_id.clone(),
            endpoint: c.endpoint.clone(),
        })
    };
    let webhooks: Vec<WebhookConfig> = t.webhooks.values().cloned().collect();
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
        Target::Channel(channel) => {
            let subscribers = t.channels.get(channel);
            let live: Vec<(&Connection, &Vec<Topic>)> = subscribers
                .into_iter()
                .flatten()
                .filter_map(|(id, filter)| Some((&t.conns.get(id)?.0, filter)))
                .collect();
            let recipients = live
                .iter()
                .filter(|(_, filter)| filter.iter().any(|f| topics.contains(f)))
                .map(|(c, _)| Recipient {
                    connection_id: c.id.clone(),
                    user_id: c.user_id.clone(),
                    endpoint: c.endpoint.clone(),
                })
                .collect();
            Resolution { recipients, target_connections: live.len(), ..Resolution::default() }
        }
    };
    Resolution { webhooks, ..resolution }
}

/// Records a user's presence event in the tenant's history.
fn record_presence(t: &mut Tenant, limits: &Limits, tenant: &TenantId, user: &UserId, online: bool) -> Envelope {
    let mut event = presence_event(tenant, user, online);
    let text = serde_json::to_string(&event).expect("an envelope is plain JSON");
    let record =
        Record { event_type: event.event_type, text: &text, id: &event.id, once: false, retention: Default::default() };
    let position = t.history.record(super::history::Window::tenant(limits), &record, &Target::Tenant, None, None);
    event.set_position(position.as_ref());
    event
}

impl Tenant {
    fn is_online(&self, user: &UserId, now: Instant) -> bool {
        self.presence.get(user).is_some_and(|exp| *exp > now)
    }
}

impl MemoryStore {
    pub(super) fn subscribe_in(
        &self,
        t: &mut Tenant,
        conn: &ConnectionId,
        topics: &[Topic],
    ) -> StoreResult<Vec<Topic>> {
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
}

#[async_trait]
impl ConnectionStore for MemoryStore {
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
                    t.leave_channels(conn);
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

    async fn idle_connections(&self, tenant: &TenantId, idle: Duration, max: usize) -> StoreResult<Vec<Idle>> {
        Ok(self.with(|state| {
            let Some(t) = state.get(tenant) else { return vec![] };
            let now = Instant::now();
            let mut idle: Vec<(Instant, &ConnectionId)> =
                t.active.iter().filter(|(_, at)| now.duration_since(**at) >= idle).map(|(c, at)| (*at, c)).collect();
            idle.sort();
            idle.into_iter()
                .take(max)
                .filter_map(|(at, id)| Some((at, t.conns.get(id)?)))
                .map(|(at, (c, _))| Idle {
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
}
