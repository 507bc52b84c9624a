//! The event catalogue and the envelope every event travels in.
//!
//! The catalogue is the legacy hub's `message.go` (agents, calls, queues, chats,
//! tickets, system) with dotted wire names, plus `presence.online` /
//! `presence.offline`. It is closed: an unknown name is refused at the edge
//! with an error that names it, so a typo in a subscription fails loudly
//! instead of silently never matching.
//!
//! Clients subscribe to [`Topic`]s: an exact type (`call.incoming`), a
//! dotted prefix ending in `.*` (`call.*`, `queue.member.*`), or `*` for
//! everything. [`EventType::topics`] lists, for one event, every topic that
//! matches it — the store unions those subscription sets to find recipients.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::channel::Channel;
use crate::ids::{ConnectionId, TenantId, UserId};

/// An event name that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type '{0}'")]
pub struct UnknownEventType(pub String);

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $variant:ident => $wire:literal, )*) => {
        /// Every event Switchboard carries. Serialised as its dotted wire name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $( $(#[$doc])* $variant, )*
        }

        impl EventType {
            /// The whole catalogue, in declaration order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The dotted wire name, e.g. `agent.state.changed`.
            pub const fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $wire,)* }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownEventType;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok(EventType::$variant),)*
                    other => Err(UnknownEventType(other.to_owned())),
                }
            }
        }
    };
}

catalogue! {
    // Agents.
    /// An agent logged in to the platform.
    AgentLogin => "agent.login",
    /// An agent logged out.
    AgentLogout => "agent.logout",
    /// An agent's state changed (available, busy, wrap-up, ...).
    AgentStateChanged => "agent.state.changed",
    /// An agent started a pause / break.
    AgentPaused => "agent.paused",
    /// An agent ended a pause / break.
    AgentUnpaused => "agent.unpaused",
    // Calls.
    /// A call arrived.
    CallIncoming => "call.incoming",
    /// A call is ringing at an agent.
    CallRinging => "call.ringing",
    /// A call was answered.
    CallAnswered => "call.answered",
    /// A call ended.
    CallEnded => "call.ended",
    /// A call was transferred.
    CallTransferred => "call.transferred",
    /// A call was put on hold.
    CallHold => "call.hold",
    /// A call was taken off hold.
    CallUnhold => "call.unhold",
    /// A call was abandoned or not answered.
    CallMissed => "call.missed",
    /// Call recording started.
    CallRecordingStarted => "call.recording.started",
    /// Call recording stopped.
    CallRecordingStopped => "call.recording.stopped",
    // Queues.
    /// A caller joined a queue.
    QueueJoined => "queue.joined",
    /// A caller left a queue.
    QueueLeft => "queue.left",
    /// Periodic queue statistics.
    QueueStats => "queue.stats",
    /// An agent was added to a queue.
    QueueMemberAdded => "queue.member.added",
    /// An agent was removed from a queue.
    QueueMemberRemoved => "queue.member.removed",
    /// A queue member paused.
    QueueMemberPaused => "queue.member.paused",
    /// A queue member unpaused.
    QueueMemberUnpaused => "queue.member.unpaused",
    // Chats.
    /// A chat session started.
    ChatSessionStarted => "chat.session.started",
    /// A chat session was assigned to an agent.
    ChatSessionAssigned => "chat.session.assigned",
    /// A chat session ended.
    ChatSessionEnded => "chat.session.ended",
    /// A chat message.
    ChatMessage => "chat.message",
    /// Someone is typing.
    ChatTyping => "chat.typing",
    /// A chat was transferred to another agent.
    ChatTransferred => "chat.transferred",
    /// Messages were read.
    ChatRead => "chat.read",
    // Tickets.
    /// A ticket was created.
    TicketCreated => "ticket.created",
    /// A ticket was updated.
    TicketUpdated => "ticket.updated",
    /// A ticket was assigned.
    TicketAssigned => "ticket.assigned",
    /// A comment was added to a ticket.
    TicketCommented => "ticket.commented",
    /// A ticket was closed.
    TicketClosed => "ticket.closed",
    // System.
    /// An informational notification.
    SystemNotification => "system.notification",
    /// An alert that needs attention.
    SystemAlert => "system.alert",
    // Presence.
    /// A user's first connection opened.
    PresenceOnline => "presence.online",
    /// A user's last connection closed or went stale.
    PresenceOffline => "presence.offline",
}

impl EventType {
    /// The family before the first dot: `agent`, `call`, `queue`, `chat`,
    /// `ticket`, `system` or `presence`.
    pub fn category(self) -> &'static str {
        let name = self.as_str();
        &name[..name.find('.').unwrap_or(name.len())]
    }

    /// Every topic a subscriber may have used to ask for this event, most
    /// specific first: `queue.member.added`, `queue.member.*`, `queue.*`, `*`.
    pub fn topics(self) -> Vec<Topic> {
        let name = self.as_str();
        let mut topics = vec![Topic(name.to_owned())];
        let mut end = name.len();
        while let Some(dot) = name[..end].rfind('.') {
            topics.push(Topic(format!("{}.*", &name[..dot])));
            end = dot;
        }
        topics.push(Topic(Topic::ALL.to_owned()));
        topics
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// What a connection subscribes to: `*`, a prefix such as `call.*`, or one
/// event type. Only topics that match at least one catalogued event exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    /// The topic that matches every event.
    pub const ALL: &'static str = "*";

    /// `*`: every event.
    pub fn all() -> Topic {
        Topic(Topic::ALL.to_owned())
    }

    /// The topic as stored in Redis keys and echoed to clients.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does this topic match `event`?
    pub fn matches(&self, event: EventType) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => event.as_str().starts_with(prefix),
            None => self.0 == event.as_str(),
        }
    }
}

impl From<EventType> for Topic {
    fn from(e: EventType) -> Self {
        Topic(e.as_str().to_owned())
    }
}

impl FromStr for Topic {
    type Err = UnknownEventType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Topic::ALL {
            return Ok(Topic(s.to_owned()));
        }
        if let Some(prefix) = s.strip_suffix(".*") {
            // `call.*` is valid because `call.incoming` exists; `cal.*` is not.
            let dotted = format!("{prefix}.");
            if !prefix.is_empty() && EventType::ALL.iter().any(|e| e.as_str().starts_with(&dotted)) {
                return Ok(Topic(s.to_owned()));
            }
            return Err(UnknownEventType(s.to_owned()));
        }
        s.parse::<EventType>().map(Topic::from)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// The envelope of every server event, on WebSockets and in offline queues:
/// `{"id","type","tenant_id","timestamp","data"}`, then `"sender"` when a
/// verified caller published it, and `"offset"` and `"epoch"`: its place in
/// the tenant's history (absent with `HISTORY_SIZE=0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique, time-ordered (UUIDv7): clients de-duplicate and sort by it.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The tenant the event belongs to; never delivered outside it.
    pub tenant_id: TenantId,
    /// The channel it was published to (absent for tenant, user and
    /// connection targets). Its `offset` and `epoch` are then the
    /// channel's own: each channel is a history of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// When the event was created, in Unix milliseconds.
    pub timestamp: i64,
    /// The event's payload, free-form JSON.
    #[serde(default)]
    pub data: Value,
    /// Who published it, from their verified token, when a client or a
    /// token holder did (the `publish` action, `POST /v1/events`): set by
    /// the server, never taken from the request, so a `data.from` that
    /// claims someone else can be checked against it. Absent for events
    /// from back-end invocations and for the server's own (presence, alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
    /// Its place in the tenant's history: one more than the tenant's event
    /// before it. Set by the store when the event is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The history the offset counts in: a different epoch (the history
    /// was lost: a flushed Redis, an emulator restarted) means an offset
    /// from before no longer says anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// Where an event sits in its tenant's history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The history's epoch.
    pub epoch: String,
    /// The event's offset in it (the first event is 1).
    pub offset: u64,
}

impl Position {
    /// An epoch is made of letters and digits only, so it needs no escaping in JSON.
    pub fn is_valid_epoch(epoch: &str) -> bool {
        !epoch.is_empty() && epoch.len() <= 64 && epoch.bytes().all(|b| b.is_ascii_alphanumeric())
    }

    /// A fresh epoch: 16 random hex digits.
    pub fn fresh_epoch() -> String {
        Uuid::new_v4().simple().to_string()[..16].to_owned()
    }
}

/// A reader's place in a tenant's history: the position of the last event
/// it received and, from clients that send it, that event's id. The id is
/// what proves the history did not hand the offset out again to another
/// event (Redis rolled back in place); without it, only what changes the
/// epoch (a restart, a failover, a lost history) can be caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The history's epoch.
    pub epoch: String,
    /// The offset of the last event received (0: none of this epoch).
    pub offset: u64,
    /// The id of the event at `offset`.
    pub id: Option<String>,
}

impl Since {
    /// An event id as a position may carry it: 1 to 128 printable ASCII
    /// characters, no quote, backslash or colon (event ids are UUIDs).
    pub fn is_valid_id(id: &str) -> bool {
        !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic() && !b"\"\\:".contains(&b))
    }
}

/// `text`, an envelope serialised without a position, with `position`
/// added as its last two fields: what serialising the envelope with
/// `offset` and `epoch` set gives, without parsing it again (a replay
/// splices each stored event this way).
pub fn with_position(text: &str, position: &Position) -> String {
    debug_assert!(text.ends_with('}') && Position::is_valid_epoch(&position.epoch));
    let body = &text[..text.len() - 1];
    format!("{body},\"offset\":{},\"epoch\":\"{}\"}}", position.offset, position.epoch)
}

/// The verified publisher of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The token's user.
    pub user_id: UserId,
    /// The token's role.
    pub role: crate::ids::Role,
}

impl Envelope {
    /// A new event with a fresh id and the current time.
    pub fn new(tenant_id: TenantId, event_type: EventType, data: Value) -> Self {
        Envelope {
            id: Uuid::now_v7().to_string(),
            event_type,
            tenant_id,
            channel: None,
            timestamp: crate::time::now_millis(),
            data,
            sender: None,
            offset: None,
            epoch: None,
        }
    }

    /// The event's place in its tenant's history, when it was recorded.
    pub fn position(&self) -> Option<Position> {
        Some(Position { epoch: self.epoch.clone()?, offset: self.offset? })
    }

    /// Sets (or clears) the event's place in its tenant's history.
    pub fn set_position(&mut self, position: Option<&Position>) {
        self.offset = position.map(|p| p.offset);
        self.epoch = position.map(|p| p.epoch.clone());
    }

    /// A new event published by the verified caller `who`, in their tenant.
    pub fn from_caller(who: &crate::ids::Identity, event_type: EventType, data: Value) -> Self {
        let sender = Sender { user_id: who.user_id.clone(), role: who.role };
        Envelope { sender: Some(sender), ..Envelope::new(who.tenant_id.clone(), event_type, data) }
    }
}

/// Who an event is for. Always inside the sender's tenant; the tenant comes
/// from the token, never from the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Every subscribed connection of the tenant (the default).
    #[default]
    #[serde(serialize_with = "serialize_true")]
    Tenant,
    /// Every connection of one user.
    User(UserId),
    /// One connection.
    Connection(ConnectionId),
    /// The subscribers of one channel of the tenant (whose event-type
    /// filter matches the event).
    Channel(Channel),
}

impl Target {
    /// The channel, for a channel target.
    pub fn channel(&self) -> Option<&Channel> {
        match self {
            Target::Channel(c) => Some(c),
            _ => None,
        }
    }
}

fn serialize_true<S: serde::Serializer>(s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(true)
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "lowercase", deny_unknown_fields)]
        enum Wire {
            Tenant(bool),
            User(UserId),
            Connection(ConnectionId),
            Channel(Channel),
        }
        match Wire::deserialize(d).map_err(|e| {
            serde::de::Error::custom(format!(
                "target must be {{\"tenant\":true}}, {{\"user\":\"<id>\"}}, {{\"connection\":\"<id>\"}} or {{\"channel\":\"<namespace>:<name>\"}} ({e})"
            ))
        })? {
            Wire::Tenant(true) => Ok(Target::Tenant),
            Wire::Tenant(false) => Err(serde::de::Error::custom(
                "target {\"tenant\":false} means nobody; omit the target or name a user or connection",
            )),
            Wire::User(u) => Ok(Target::User(u)),
            Wire::Connection(c) => Ok(Target::Connection(c)),
            Wire::Channel(c) => Ok(Target::Channel(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_spliced_position_is_what_serialising_the_envelope_with_it_gives() {
        let who = crate::ids::Identity::new("acme".parse().unwrap(), "42".parse().unwrap(), crate::ids::Role::Agent);
        for mut event in [
            Envelope::new("acme".parse().unwrap(), EventType::CallIncoming, serde_json::json!({"a": [1, "}"]})),
            Envelope::from_caller(&who, EventType::ChatMessage, serde_json::json!("hi")),
        ] {
            let bare = serde_json::to_string(&event).unwrap();
            assert!(!bare.contains("offset"), "{bare}");
            let p = Position { epoch: Position::fresh_epoch(), offset: 4_000_000_001 };
            event.set_position(Some(&p));
            assert_eq!(with_position(&bare, &p), serde_json::to_string(&event).unwrap());
            assert_eq!(event.position(), Some(p));
        }
        assert!(Position::is_valid_epoch(&Position::fresh_epoch()));
        assert!(!Position::is_valid_epoch("a\"b"));
    }

    #[test]
    fn catalogue_is_complete_and_round_trips() {
        assert!(EventType::ALL.len() >= 30, "{} types", EventType::ALL.len());
        let names: HashSet<_> = EventType::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names.len(), EventType::ALL.len(), "wire names are unique");
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>().unwrap(), *e);
            let json = serde_json::to_string(e).unwrap();
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), *e);
        }
        for seed in [
            "agent.login",
            "agent.state.changed",
            "call.incoming",
            "call.answered",
            "call.ended",
            "call.transferred",
            "call.hold",
            "call.unhold",
            "queue.joined",
            "queue.left",
            "queue.stats",
            "chat.message",
            "chat.typing",
            "chat.transferred",
            "system.notification",
            "system.alert",
            "presence.online",
            "presence.offline",
        ] {
            assert!(names.contains(seed), "{seed} missing");
        }
        for family in ["agent", "call", "queue", "chat", "ticket", "system", "presence"] {
            assert!(EventType::ALL.iter().any(|e| e.category() == family), "{family}");
        }
    }

    #[test]
    fn unknown_names_are_named_in_the_error() {
        let err = "call.incomming".parse::<EventType>().unwrap_err();
        assert_eq!(err.to_string(), "unknown event type 'call.incomming'");
        let err = serde_json::from_str::<EventType>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("'nope'"), "{err}");
    }

    #[test]
    fn topics_cover_exact_prefix_and_all() {
        let topics: Vec<String> = EventType::QueueMemberAdded.topics().iter().map(|t| t.to_string()).collect();
        assert_eq!(topics, ["queue.member.added", "queue.member.*", "queue.*", "*"]);
        for e in EventType::ALL {
            for t in e.topics() {
                assert!(t.matches(*e), "{t} should match {e}");
                assert_eq!(t.as_str().parse::<Topic>().unwrap(), t);
            }
        }
        assert!(!"call.*".parse::<Topic>().unwrap().matches(EventType::ChatMessage));
        assert!("cal.*".parse::<Topic>().is_err());
        assert!(".*".parse::<Topic>().is_err());
        assert!("call.incoming.*".parse::<Topic>().is_err());
    }

    #[test]
    fn envelope_has_the_documented_shape() {
        let tenant = TenantId::parse("t1").unwrap();
        let env = Envelope::new(tenant, EventType::CallIncoming, serde_json::json!({"caller_id": "+1234"}));
        let v = serde_json::to_value(&env).unwrap();
        let keys: HashSet<_> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, HashSet::from(["id", "type", "tenant_id", "timestamp", "data"]));
        assert_eq!(v["type"], "call.incoming");
        let back: Envelope = serde_json::from_value(v).unwrap();
        assert_eq!(back, env);
    }
}
