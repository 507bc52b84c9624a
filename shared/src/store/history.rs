//! Each tenant's history: what a publish records, and what a recovery or
//! `GET /v1/events` reads back.

use async_trait::async_trait;

use super::{Resolution, Retention, StoreResult};
use crate::channel::Channel;
use crate::event::Target;
use crate::event::{EventType, Position, Since, Topic};
use crate::ids::{ConnectionId, TenantId, UserId};

/// A new event for [`HistoryStore::record_and_resolve`] to record in its tenant's
/// history, in the round trip that resolves its recipients.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// What it is.
    pub event_type: EventType,
    /// The envelope, serialised without a position.
    pub text: &'a str,
    /// The event's id (what proves a position at it).
    pub id: &'a str,
    /// A queued job's event: recorded the first time only, and a retried
    /// job gets the same position back. False for a synchronous publish
    /// (it is never retried).
    pub once: bool,
    /// For a channel target: how its channel keeps events (its namespace's).
    pub retention: Retention,
}

/// One event of a tenant's history (the memory store's copy; Redis keeps
/// the same fields in its stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Its offset.
    pub offset: u64,
    /// Its id.
    pub id: String,
    /// Its type.
    pub event_type: EventType,
    /// Whom it was published to.
    pub target: Target,
    /// The target's user: the user of a user target, the owner of a
    /// connection target (when it was live); `None` for the tenant.
    pub user: Option<UserId>,
    /// The envelope without its position; `None` when it was larger than
    /// `HISTORY_MAX_EVENT_BYTES` (its place is kept, its text is not).
    pub text: Option<String>,
}

/// Whose events a history read returns: what they could have received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Every event of the tenant (admins and services over the HTTP API).
    Everyone,
    /// The tenant-wide events and those addressed to this user or to one
    /// of their connections (agents and supervisors over the HTTP API).
    User(&'a UserId),
    /// What one connection of a user would have received: the tenant-wide
    /// events, its user's and its own (a `subscribe` with `since`).
    Connection(&'a UserId, &'a ConnectionId),
    /// The events of one channel: its own history, with its own positions.
    Channel(&'a Channel),
}

impl Audience<'_> {
    /// Is `entry` addressed to this audience? Exactly the resolve's rule
    /// for a connection.
    pub fn admits(&self, entry: &HistoryEntry) -> bool {
        match (self, &entry.target) {
            (Audience::Channel(mine), Target::Channel(c)) => c == *mine,
            (Audience::Channel(_), _) | (_, Target::Channel(_)) => false,
            (Audience::Everyone, _) | (_, Target::Tenant) => true,
            (Audience::User(user), _) => entry.user.as_ref() == Some(*user),
            (Audience::Connection(user, _), Target::User(u)) => u == *user,
            (Audience::Connection(_, conn), Target::Connection(c)) => c == *conn,
        }
    }

    /// Its mode and ids as the history script takes them.
    pub(crate) fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            Audience::Everyone => ("everyone", "", ""),
            Audience::User(u) => ("user", u.as_str(), ""),
            Audience::Connection(u, c) => ("connection", u.as_str(), c.as_str()),
            Audience::Channel(_) => ("channel", "", ""),
        }
    }
}

/// A read of a tenant's history after a reader's position.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery<'a> {
    /// Where the reader stands; `None`: only where the history stands now.
    pub since: Option<&'a Since>,
    /// Whose events.
    pub audience: Audience<'a>,
    /// Most events one read returns (more: [`ReadStatus::Truncated`]).
    pub max_events: usize,
    /// Most bytes of events one read returns (more: [`ReadStatus::Truncated`]).
    pub max_bytes: usize,
}

/// What a history read could give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadStatus {
    /// Every event after the position that the reader would have had.
    #[default]
    Complete,
    /// The first of them, up to the read's caps: there are more.
    Truncated,
    /// The history cannot prove it holds them all: another epoch (Redis
    /// restarted, failed over, lost the history), a position it never gave
    /// or no longer holds, an event at the position that is not the one
    /// the reader saw, or one too large to have been kept. Nothing is given.
    Lost,
}

/// A history read's answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryRead {
    /// The history's epoch (made on first use).
    pub epoch: String,
    /// The latest offset handed out (0: none yet).
    pub top: u64,
    /// The id of the event at `top`, when known: with it, `top` is a
    /// position a reader can prove.
    pub top_id: Option<String>,
    /// Whether `events` is all of it.
    pub status: ReadStatus,
    /// The events, oldest first: offset and envelope without its position.
    pub events: Vec<(u64, String)>,
}

impl HistoryRead {
    /// The events as first sent (with their position), oldest first.
    pub fn envelopes(&self) -> impl Iterator<Item = (u64, String)> + '_ {
        self.events.iter().map(|(offset, text)| {
            let p = Position { epoch: self.epoch.clone(), offset: *offset };
            (*offset, crate::event::with_position(text, &p))
        })
    }

    /// The bytes of the events returned.
    pub fn bytes(&self) -> usize {
        self.events.iter().map(|(_, t)| t.len()).sum()
    }
}

/// What a history read costs against the tenant's requests per second,
/// beyond the one request it was let in as: one more per 100 events and
/// per 64 KiB it returned (the history script's `charge`, the same rule).
pub fn read_cost(read: &HistoryRead) -> u32 {
    (read.events.len() / 100 + read.bytes() / 65536) as u32
}

/// What a subscribe with recovery returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resubscribed {
    /// The connection's topics after the change, sorted.
    pub topics: Vec<Topic>,
    /// Where the connection is reached (to post the replay).
    pub endpoint: String,
    /// The history after the position, read at the moment the
    /// subscription took effect: later events reach the connection live.
    pub history: HistoryRead,
}

/// The tenant's history, and the operations that record or read it in
/// the same round trip as another.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// What a publish does in the store, in one round trip on Redis: with
    /// `limit`, [`RateLimitStore::rate_limit`] first (`None` when the tenant is over
    /// it this second: nothing resolved, nothing recorded); then records the
    /// event in the tenant's history (unless `HISTORY_SIZE` is 0) and
    /// [`ConnectionStore::resolve`]s it. The resolution carries the event's position.
    async fn record_and_resolve(
        &self,
        tenant: &TenantId,
        record: &Record<'_>,
        target: &Target,
        limit: Option<u32>,
    ) -> StoreResult<Option<Resolution>>;

    /// The events after `query.since` of `query.audience` that match
    /// `topics`, within the query's caps, in one round trip on Redis; with
    /// `limit`, first counted against the tenant's requests per second
    /// (`None` when over it: nothing read), then charged by what it
    /// returned (one request more per 100 events and per 64 KiB). Redis
    /// reads only the events it returns (indexes by type and user), and
    /// judges the position before it reads any (see [`ReadStatus::Lost`]).
    async fn history(
        &self,
        tenant: &TenantId,
        query: &HistoryQuery<'_>,
        topics: &[Topic],
        limit: Option<u32>,
    ) -> StoreResult<Option<HistoryRead>>;

    /// [`ConnectionStore::subscribe`], and [`HistoryStore::history`] for the connection's
    /// topics after the change, read in the same round trip; counted and
    /// charged against the tenant's `limit` requests per second (`None`
    /// when over it: nothing done).
    async fn subscribe_since(
        &self,
        tenant: &TenantId,
        conn: &ConnectionId,
        topics: &[Topic],
        query: &HistoryQuery<'_>,
        limit: u32,
    ) -> StoreResult<Option<Resubscribed>>;
}
