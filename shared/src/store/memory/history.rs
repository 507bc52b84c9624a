use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use async_trait::async_trait;

use super::MemoryStore;
use super::connections::resolution;
use crate::config::Limits;
use crate::event::Target;
use crate::event::{Position, Topic};
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::store::{
    HistoryEntry, HistoryQuery, HistoryRead, HistoryStore, ReadStatus, Record, Resolution, Resubscribed, StoreError,
    StoreResult,
};

/// A tenant's history, as the Redis stream and its meta hash keep it.
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
}

impl Log {
    pub(super) fn epoch(&mut self) -> String {
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

    pub(super) fn record(
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
    pub(super) fn read(&mut self, limits: &Limits, query: &HistoryQuery<'_>, topics: &[Topic]) -> HistoryRead {
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
}
