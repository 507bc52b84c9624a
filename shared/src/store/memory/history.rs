use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryStore;
use super::connections::resolution;
use crate::config::Limits;
use crate::event::Target;
use crate::event::{Position, Topic};
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::store::{
    Audience, CHANNEL_POSITION_TTL, HistoryEntry, HistoryQuery, HistoryRead, HistoryStore, ReadStatus, Record,
    Resolution, Resubscribed, Retention, StoreError, StoreResult,
};

/// What one history keeps: the tenant's (`HISTORY_*`) or a channel's
/// (`CHANNEL_HISTORY_*` and its namespace's retention).
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    /// Events kept (0: none).
    size: usize,
    /// How long an event stays.
    ttl: Duration,
    /// Largest text kept.
    max_event_bytes: usize,
    /// How long the position (epoch, top) outlives the last write; `None`: the process's life.
    position_ttl: Option<Duration>,
}

impl Window {
    pub(super) fn tenant(l: &Limits) -> Window {
        Window {
            size: l.history_size,
            ttl: l.history_ttl,
            max_event_bytes: l.history_max_event_bytes,
            position_ttl: None,
        }
    }

    pub(super) fn channel(l: &Limits, retention: Retention) -> Window {
        let size = if retention == Retention::Off { 0 } else { l.channel_history_size };
        let position_ttl = match retention {
            Retention::Ephemeral => l.channel_history_ttl,
            _ => CHANNEL_POSITION_TTL.max(l.channel_history_ttl),
        };
        Window {
            size,
            ttl: l.channel_history_ttl,
            max_event_bytes: l.history_max_event_bytes,
            position_ttl: Some(position_ttl),
        }
    }
}

/// A tenant's or a channel's history, as the Redis stream and its meta hash keep it.
#[derive(Debug, Default)]
pub(super) struct Log {
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
    /// The meta's expiry (channels): past it, the history starts anew.
    position_expiry: Option<Instant>,
    /// Bytes of the texts kept.
    pub(super) bytes: usize,
}

impl Log {
    pub(super) fn epoch(&mut self) -> String {
        self.epoch.get_or_insert_with(Position::fresh_epoch).clone()
    }

    /// Drops what expired (the whole stream, as a Redis key expires; the
    /// whole history when its meta does).
    pub(super) fn expire(&mut self, now: Instant) {
        if self.position_expiry.is_some_and(|e| e <= now) {
            *self = Log::default();
        }
        if self.expiry.is_some_and(|e| e <= now) {
            self.entries.clear();
            self.bytes = 0;
            self.expiry = None;
        }
        self.once.retain(|_, (_, exp)| *exp > now);
    }

    /// Is anything of it left (its position included)?
    pub(super) fn is_live(&mut self, now: Instant) -> bool {
        self.expire(now);
        self.epoch.is_some()
    }

    /// Drops the oldest event; false when there was none.
    pub(super) fn pop_oldest(&mut self) -> bool {
        match self.entries.pop_front() {
            Some((_, e)) => {
                self.bytes -= e.text.map_or(0, |t| t.len());
                true
            }
            None => false,
        }
    }

    /// Records an event; `room` is how many bytes of text the history
    /// may still take (the tenant's channel budget), evicting this
    /// history's oldest first: what does not fit keeps its place only.
    pub(super) fn record(
        &mut self,
        window: Window,
        record: &Record<'_>,
        target: &Target,
        user: Option<UserId>,
        mut room: Option<&mut usize>,
    ) -> Option<Position> {
        if window.size == 0 {
            return None;
        }
        let now = Instant::now();
        self.expire(now);
        let epoch = self.epoch();
        if let Some(ttl) = window.position_ttl {
            self.position_expiry = Some(now + ttl);
        }
        if let Some((offset, _)) = self.once.get(record.id).filter(|_| record.once) {
            return Some(Position { epoch, offset: *offset });
        }
        self.top += 1;
        self.top_id = Some(record.id.to_owned());
        let mut text = (record.text.len() <= window.max_event_bytes).then(|| record.text.to_owned());
        if let (Some(room), Some(t)) = (room.as_deref_mut(), &text) {
            while t.len() > *room {
                let before = self.bytes;
                if !self.pop_oldest() {
                    break;
                }
                *room += before - self.bytes;
            }
            if t.len() > *room {
                text = None;
            }
        }
        let n = text.as_ref().map_or(0, String::len);
        self.bytes += n;
        if let Some(room) = room {
            *room -= n;
        }
        let entry = HistoryEntry {
            offset: self.top,
            id: record.id.to_owned(),
            event_type: record.event_type,
            target: target.clone(),
            user,
            text,
        };
        self.entries.push_back((now, entry));
        while self.entries.len() > window.size {
            self.pop_oldest();
        }
        self.expiry = Some(now + window.ttl);
        if record.once {
            self.once.insert(record.id.to_owned(), (self.top, now + window.ttl));
        }
        Some(Position { epoch, offset: self.top })
    }

    /// The Redis script's `history_read`, step for step.
    pub(super) fn read(&mut self, window: Window, query: &HistoryQuery<'_>, topics: &[Topic]) -> HistoryRead {
        let now = Instant::now();
        self.expire(now);
        if self.epoch.is_none()
            && let Some(ttl) = window.position_ttl
        {
            // As the script does: a read makes the epoch, for a channel's history TTL.
            self.position_expiry = Some(now + ttl.min(window.ttl));
        }
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
            Some((recorded, _)) if now.duration_since(*recorded) <= window.ttl => {}
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

#[async_trait]
impl HistoryStore for MemoryStore {
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
                Target::Tenant | Target::Channel(_) => None,
                Target::User(u) => Some(u.clone()),
                Target::Connection(c) => t.conns.get(c).map(|(c, _)| c.user_id.clone()),
            };
            let position = match target {
                Target::Channel(channel) => t.record_channel(&self.limits, channel, record),
                _ => t.history.record(Window::tenant(&self.limits), record, target, user, None),
            };
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
            let read = match query.audience {
                Audience::Channel(channel) => {
                    t.channel_log(channel).read(Window::channel(&self.limits, Retention::Lasting), query, topics)
                }
                _ => t.history.read(Window::tenant(&self.limits), query, topics),
            };
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
            let history = t.history.read(Window::tenant(&self.limits), query, &topics);
            t.charge(&history);
            Ok(Some(Resubscribed { topics, endpoint, history }))
        })
    }
}
