//! The wire protocol between a client and the WebSocket gateway.
//!
//! API Gateway selects the route on `$request.body.action`; every frame a
//! client sends is one JSON object with an `action`. [`ClientAction::parse`]
//! turns raw bytes into an action or a [`ProtocolError`] that becomes the
//! `{"type":"error","code","message"}` reply — a client mistake never closes
//! the connection and never becomes a 5xx.
//!
//! | client sends | server answers |
//! | --- | --- |
//! | `{"action":"subscribe","events":["call.incoming"],"id":"r1"}` | `{"type":"subscribed","id":"r1","events":[...]}` |
//! | `{"action":"subscribe","events":[...],"since":{"epoch":"e","offset":41,"id":"<event id>"}}` | `subscribed`, the missed events in offset order, then `{"type":"recovered","recovered":true,"count":K,"epoch":"e","offset":<top>,"event_id":"<its id>"}` (or `recovered:false`, nothing replayed) |
//! | `{"action":"unsubscribe","events":[...]}` | `{"type":"unsubscribed","events":[...]}` |
//! | `{"action":"subscribe","channel":"queue:support","events":["call.*"]}` (events optional: `*`) | `{"type":"subscribed","channel":"queue:support","events":["call.*"]}` (a channel's own `since` recovers it) |
//! | `{"action":"unsubscribe","channel":"queue:support"}` | `{"type":"unsubscribed","channel":"queue:support","events":[]}` |
//! | `{"action":"subscriptions"}` | `{"type":"subscriptions","events":[...],"channels":{"queue:support":["*"]}}` |
//! | `{"action":"ping"}` | `{"type":"pong","timestamp":...}` |
//! | `{"action":"sync"}` | queued messages, then `{"type":"synced","count":N,"cursor":"<id>"}` (they stay queued) |
//! | `{"action":"sync","ack":"<cursor>"}` | removes what that sync delivered, then as above |
//! | `{"action":"publish","type":"chat.message","target":{"user":"42"},"data":{}}` | delivery, role-checked |
//! | `{"action":"publish","events":[{"type":...,"target":...,"data":...}, ...]}` | a batch: each connection gets one `{"type":"batch","events":[...]}` frame |

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::BTreeMap;

use crate::channel::Channel;
use crate::event::{EventType, Position, Since, Target, Topic};

/// A client request, parsed and validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAction {
    /// Start receiving events matching these topics: the tenant's, or with
    /// `channel`, that channel's (its filter; `*` when the client gave
    /// none); with `since` (the last position the client saw, the
    /// channel's own for a channel), first replay what it missed.
    Subscribe { id: Option<String>, topics: Vec<Topic>, since: Option<Since>, channel: Option<Channel> },
    /// Stop receiving events matching these topics, or leave `channel`.
    Unsubscribe { id: Option<String>, topics: Vec<Topic>, channel: Option<Channel> },
    /// List the connection's subscriptions.
    Subscriptions { id: Option<String> },
    /// Keep-alive; refreshes presence.
    Ping { id: Option<String> },
    /// Deliver the messages queued while the user was offline; `ack` (the
    /// `cursor` of an earlier `synced`) first removes what that sync delivered.
    Sync { id: Option<String>, ack: Option<String> },
    /// Send an event to other users of the tenant (role-checked).
    Publish { id: Option<String>, request: PublishRequest },
    /// Send several events at once (`"events":[...]`, at most
    /// [`MAX_BATCH`]): each connection gets one frame with all of its events.
    PublishBatch { id: Option<String>, requests: Vec<PublishRequest> },
}

/// Most events one batch publish carries.
pub const MAX_BATCH: usize = 100;

/// One publish as every edge reads it (WebSocket `publish`, `POST
/// /v1/events`, the `fanout` function's direct invocation): what happened,
/// for whom, with what. The tenant and the sender are never the client's
/// to say: they come from its token (or, for `fanout`, the invoker's IAM).
#[derive(Debug, Clone, PartialEq)]
pub struct PublishRequest {
    /// What happened.
    pub event_type: EventType,
    /// Recipients inside the tenant (absent or null: the whole tenant).
    pub target: Target,
    /// The payload (absent: null).
    pub data: Value,
}

/// A publish field that is missing or wrong: the one set of errors every
/// edge answers with (a WebSocket `error` frame, a 400, a refused invocation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct PublishFieldError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it, naming the field.
    pub problem: String,
    /// The event type is not in the catalogue (its own WebSocket error code).
    pub unknown_type: bool,
}

impl PublishFieldError {
    fn new(field: &'static str, problem: impl Into<String>) -> Self {
        PublishFieldError { field, problem: problem.into(), unknown_type: false }
    }

    /// The WebSocket error code.
    pub fn code(&self) -> ErrorCode {
        if self.unknown_type { ErrorCode::UnknownEventType } else { ErrorCode::InvalidMessage }
    }
}

impl PublishRequest {
    /// Takes `type` (required), `target` and `data` out of `obj`, and
    /// refuses a `sender` (the server sets it from the token). Other fields
    /// stay in `obj` for the edge to judge ([`PublishRequest::from_object`]
    /// refuses them).
    pub fn take(obj: &mut serde_json::Map<String, Value>) -> Result<PublishRequest, PublishFieldError> {
        let event_type = match obj.remove("type") {
            Some(Value::String(t)) => t.parse::<EventType>().map_err(|e| PublishFieldError {
                unknown_type: true,
                ..PublishFieldError::new("type", e.to_string())
            })?,
            Some(_) => return Err(PublishFieldError::new("type", "`type` must be an event type name (a string)")),
            None => return Err(PublishFieldError::new("type", "missing field `type` (an event type name)")),
        };
        let target = match obj.remove("target") {
            None | Some(Value::Null) => Target::Tenant,
            Some(t) => {
                serde_json::from_value(t).map_err(|e| PublishFieldError::new("target", format!("`target`: {e}")))?
            }
        };
        if obj.contains_key("sender") {
            return Err(PublishFieldError::new(
                "sender",
                "`sender` is set by the server from your token; leave it out",
            ));
        }
        let data = obj.remove("data").unwrap_or(Value::Null);
        Ok(PublishRequest { event_type, target, data })
    }

    /// A batch: `events`, a list of 1 to [`MAX_BATCH`] publishes, each
    /// read by [`PublishRequest::from_object`]; the error names the index.
    pub fn batch(events: Value) -> Result<Vec<PublishRequest>, PublishFieldError> {
        let Value::Array(items) = events else {
            return Err(PublishFieldError::new("events", "`events` must be a list of {type, target, data}"));
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(PublishFieldError::new(
                "events",
                format!("`events` holds {} events; a batch is 1 to {MAX_BATCH}", items.len()),
            ));
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(obj) => PublishRequest::from_object(obj)
                    .map_err(|e| PublishFieldError { problem: format!("events[{i}]: {}", e.problem), ..e }),
                _ => Err(PublishFieldError::new("events", format!("events[{i}] must be an object"))),
            })
            .collect()
    }

    /// [`PublishRequest::take`], refusing any field besides `type`, `target` and `data`.
    pub fn from_object(mut obj: serde_json::Map<String, Value>) -> Result<PublishRequest, PublishFieldError> {
        let request = PublishRequest::take(&mut obj)?;
        match obj.keys().next() {
            Some(extra) => {
                Err(PublishFieldError::new("body", format!("unknown field `{extra}`; expected type, data and target")))
            }
            None => Ok(request),
        }
    }
}

/// What one fan-out did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Connections in the target subscribed to the event.
    pub matched: usize,
    /// Posts API Gateway accepted.
    pub delivered: usize,
    /// Connections found gone (and forgotten).
    pub gone: usize,
    /// Posts that failed otherwise.
    pub failed: usize,
    /// 1 when the event went to an offline user's queue.
    pub queued_offline: usize,
    /// Why an event for an offline user was not queued (absent when it
    /// was, or when it did not need to be).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_refused: Option<OfflineRefusal>,
    /// Webhook deliveries queued for the `webhook` function.
    #[serde(default)]
    pub webhooks_enqueued: usize,
    /// Matching webhooks whose delivery could not be queued (logged).
    #[serde(default)]
    pub webhooks_failed: usize,
    /// Chunk jobs this fan-out was split into (queued fan-out only).
    #[serde(default)]
    pub chunks: usize,
    /// Posts API Gateway throttled (429 `LimitExceededException`); each was
    /// made again, paced, or handed on (`requeued`).
    #[serde(default)]
    pub throttled: usize,
    /// Recipients whose post did not go through in this fan-out's retry
    /// window (throttled, or failed), handed to a queued job that posts to
    /// each of them once.
    #[serde(default)]
    pub requeued: usize,
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, o: Report) {
        self.matched += o.matched;
        self.delivered += o.delivered;
        self.gone += o.gone;
        self.failed += o.failed;
        self.queued_offline += o.queued_offline;
        self.webhooks_enqueued += o.webhooks_enqueued;
        self.webhooks_failed += o.webhooks_failed;
        self.chunks += o.chunks;
        self.throttled += o.throttled;
        self.requeued += o.requeued;
        self.offline_refused = self.offline_refused.or(o.offline_refused);
    }
}

/// Why a message was not put in an offline queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineRefusal {
    /// The tenant has not seen the user connect within the offline TTL
    /// (perhaps no such user): nobody would ever sync the queue.
    UnknownUser,
    /// The tenant holds `OFFLINE_MAX_QUEUES_PER_TENANT` queues already.
    TenantQueuesFull,
    /// The tenant's queues hold `OFFLINE_MAX_BYTES_PER_TENANT` bytes already.
    TenantBytesFull,
    /// The message alone is bigger than the tenant's whole byte budget.
    MessageTooLarge,
}

/// Stable, machine-readable error codes of the `error` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON.
    InvalidJson,
    /// JSON, but not the shape the action needs.
    InvalidMessage,
    /// No `action` field.
    MissingAction,
    /// An `action` this server does not know.
    UnknownAction,
    /// One or more event names are not in the catalogue.
    UnknownEventType,
    /// A channel name that does not parse, or whose namespace is not declared.
    InvalidChannel,
    /// The channel has as many subscribers as it may have.
    ChannelFull,
    /// The frame is larger than the configured limit.
    MessageTooLarge,
    /// Too many subscriptions on one connection.
    TooManySubscriptions,
    /// The caller's role may not do this.
    Forbidden,
    /// The tenant is over its publishes per second; `retry_after_ms` says when to try again.
    RateLimited,
    /// The tenant's offline queues are full; nothing was published.
    OfflineBudgetExceeded,
    /// The connection is not (or no longer) registered.
    UnknownConnection,
    /// The action exists but this deployment does not provide it yet.
    NotImplemented,
    /// Something failed on our side; the message says what, without internals.
    InternalError,
}

impl ErrorCode {
    /// The wire form, e.g. `invalid_json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::MissingAction => "missing_action",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::UnknownEventType => "unknown_event_type",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::ChannelFull => "channel_full",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::OfflineBudgetExceeded => "offline_budget_exceeded",
            ErrorCode::UnknownConnection => "unknown_connection",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

/// A request that could not be served; becomes [`ServerReply::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ProtocolError {
    /// The request's `id`, when it had one, so the client can correlate.
    pub id: Option<String>,
    /// The stable code.
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
    /// When the request may succeed if sent again (`rate_limited`).
    pub retry_after_ms: Option<u64>,
}

impl ProtocolError {
    /// An error reply for the request `id`.
    pub fn new(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError { id, code, message: message.into(), retry_after_ms: None }
    }

    /// The same error, with a hint of when to retry.
    pub fn retry_after(self, ms: u64) -> Self {
        ProtocolError { retry_after_ms: Some(ms), ..self }
    }

    /// The reply that carries this error to the client.
    pub fn into_reply(self) -> ServerReply {
        ServerReply::Error { id: self.id, code: self.code, message: self.message, retry_after_ms: self.retry_after_ms }
    }
}

/// The actions a client may send, as named in the `action` field.
pub const ACTIONS: &[&str] = &["subscribe", "unsubscribe", "subscriptions", "ping", "sync", "publish"];

impl ClientAction {
    /// Parses one frame. `max_bytes` is the configured message limit.
    pub fn parse(body: &[u8], max_bytes: usize) -> Result<ClientAction, ProtocolError> {
        if body.len() > max_bytes {
            return Err(ProtocolError::new(
                None,
                ErrorCode::MessageTooLarge,
                format!("message is {} bytes, the limit is {max_bytes}", body.len()),
            ));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ProtocolError::new(None, ErrorCode::InvalidJson, format!("message is not valid JSON: {e}")))?;
        let Value::Object(mut obj) = value else {
            return Err(ProtocolError::new(
                None,
                ErrorCode::InvalidMessage,
                "message must be a JSON object with an \"action\"",
            ));
        };
        let id = match obj.remove("id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.len() <= 128 => Some(s),
            Some(Value::String(_)) => {
                return Err(ProtocolError::new(None, ErrorCode::InvalidMessage, "\"id\" must be at most 128 bytes"));
            }
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(ProtocolError::new(None, ErrorCode::InvalidMessage, "\"id\" must be a string or a number"));
            }
        };
        let fail = |code, msg: String| ProtocolError::new(id.clone(), code, msg);
        let action = match obj.remove("action") {
            Some(Value::String(a)) => a,
            Some(_) => {
                return Err(fail(ErrorCode::InvalidMessage, "\"action\" must be a string".into()));
            }
            None => {
                return Err(fail(
                    ErrorCode::MissingAction,
                    format!("message has no \"action\"; expected one of {}", ACTIONS.join(", ")),
                ));
            }
        };
        match action.as_str() {
            "subscribe" | "unsubscribe" => {
                let channel = match obj.remove("channel") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(c)) => {
                        Some(Channel::parse(&c).map_err(|e| fail(ErrorCode::InvalidChannel, e.to_string()))?)
                    }
                    Some(_) => {
                        return Err(fail(
                            ErrorCode::InvalidChannel,
                            "\"channel\" must be a string <namespace>:<name>, e.g. \"queue:support\"".into(),
                        ));
                    }
                };
                let events = obj.remove("events");
                let topics = match (&channel, events) {
                    // A channel's filter: everything unless the client narrows it.
                    (Some(_), None | Some(Value::Null)) if action == "subscribe" => vec![Topic::all()],
                    (Some(_), Some(_)) if action == "unsubscribe" => {
                        return Err(fail(
                            ErrorCode::InvalidMessage,
                            "unsubscribe from a channel leaves it whole; leave out \"events\"".into(),
                        ));
                    }
                    (Some(_), None | Some(Value::Null)) => vec![],
                    (_, events) => parse_topics(events).map_err(|(code, msg)| fail(code, msg))?,
                };
                let since = match obj.remove("since") {
                    None | Some(Value::Null) => None,
                    Some(_) if action == "unsubscribe" => {
                        return Err(fail(ErrorCode::InvalidMessage, "\"since\" belongs to subscribe".into()));
                    }
                    Some(v) => Some(parse_since(v).map_err(|msg| fail(ErrorCode::InvalidMessage, msg))?),
                };
                Ok(if action == "subscribe" {
                    ClientAction::Subscribe { id, topics, since, channel }
                } else {
                    ClientAction::Unsubscribe { id, topics, channel }
                })
            }
            "subscriptions" => Ok(ClientAction::Subscriptions { id }),
            "ping" => Ok(ClientAction::Ping { id }),
            "sync" => {
                let ack = match obj.remove("ack") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(c)) if !c.is_empty() && c.len() <= 128 => Some(c),
                    Some(_) => {
                        return Err(fail(
                            ErrorCode::InvalidMessage,
                            "\"ack\" must be the cursor of a synced reply (a string of at most 128 bytes)".into(),
                        ));
                    }
                };
                Ok(ClientAction::Sync { id, ack })
            }
            "publish" => {
                if let Some(events) = obj.remove("events") {
                    if let Some(extra) = obj.keys().next() {
                        let why = format!("a batch publish has \"events\" only, not \"{extra}\" beside it");
                        return Err(fail(ErrorCode::InvalidMessage, why));
                    }
                    let requests = PublishRequest::batch(events).map_err(|e| fail(e.code(), e.to_string()))?;
                    return Ok(ClientAction::PublishBatch { id, requests });
                }
                let request = PublishRequest::take(&mut obj).map_err(|e| fail(e.code(), e.to_string()))?;
                Ok(ClientAction::Publish { id, request })
            }
            other => Err(fail(
                ErrorCode::UnknownAction,
                format!("unknown action '{other}'; expected one of {}", ACTIONS.join(", ")),
            )),
        }
    }

    /// The action's name, one of [`ACTIONS`].
    pub fn name(&self) -> &'static str {
        match self {
            ClientAction::Subscribe { .. } => "subscribe",
            ClientAction::Unsubscribe { .. } => "unsubscribe",
            ClientAction::Subscriptions { .. } => "subscriptions",
            ClientAction::Ping { .. } => "ping",
            ClientAction::Sync { .. } => "sync",
            ClientAction::Publish { .. } | ClientAction::PublishBatch { .. } => "publish",
        }
    }

    /// The request id the client chose, echoed in the reply.
    pub fn id(&self) -> Option<&str> {
        match self {
            ClientAction::Subscribe { id, .. }
            | ClientAction::Unsubscribe { id, .. }
            | ClientAction::Subscriptions { id }
            | ClientAction::Ping { id }
            | ClientAction::Sync { id, .. }
            | ClientAction::Publish { id, .. }
            | ClientAction::PublishBatch { id, .. } => id.as_deref(),
        }
    }
}

/// `since` is `{"epoch":"<epoch>","offset":<n>,"id":"<event id>"}`, all
/// three from the last event the client received (`id` optional: without
/// it, a Redis that rolled back in place cannot be caught).
fn parse_since(v: Value) -> Result<Since, String> {
    const SHAPE: &str = "\"since\" must be {\"epoch\":\"<epoch>\",\"offset\":<n>,\"id\":\"<event id>\"}, \
        the epoch, offset and id of the last event you received";
    let Value::Object(mut o) = v else { return Err(SHAPE.into()) };
    let epoch = match o.remove("epoch") {
        Some(Value::String(e)) if Position::is_valid_epoch(&e) => e,
        Some(Value::String(_)) => return Err(format!("{SHAPE}: the epoch is letters and digits, at most 64")),
        _ => return Err(SHAPE.into()),
    };
    let offset = match o.remove("offset") {
        Some(Value::Number(n)) => {
            n.as_u64().ok_or_else(|| format!("{SHAPE}: the offset is a whole number, 0 or more"))?
        }
        _ => return Err(SHAPE.into()),
    };
    let id = match o.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if Since::is_valid_id(&id) => Some(id),
        Some(_) => return Err(format!("{SHAPE}: the id is the event's \"id\", 1 to 128 printable characters")),
    };
    if let Some(extra) = o.keys().next() {
        return Err(format!("{SHAPE}: unknown field \"{extra}\""));
    }
    Ok(Since { epoch, offset, id })
}

/// `events` must be a non-empty list of known topics; every unknown name is
/// reported at once so the client can fix them all in one go.
fn parse_topics(events: Option<Value>) -> Result<Vec<Topic>, (ErrorCode, String)> {
    let Some(Value::Array(items)) = events else {
        return Err((
            ErrorCode::InvalidMessage,
            "\"events\" must be a list of event types, e.g. [\"call.incoming\", \"agent.*\"]".into(),
        ));
    };
    if items.is_empty() {
        return Err((ErrorCode::InvalidMessage, "\"events\" must not be empty".into()));
    }
    let mut topics = Vec::with_capacity(items.len());
    let mut unknown = Vec::new();
    for item in items {
        let Value::String(name) = item else {
            return Err((ErrorCode::InvalidMessage, "\"events\" must contain only strings".into()));
        };
        match name.parse::<Topic>() {
            Ok(t) if !topics.contains(&t) => topics.push(t),
            Ok(_) => {}
            Err(_) => unknown.push(name),
        }
    }
    if !unknown.is_empty() {
        let quoted: Vec<String> = unknown.iter().map(|n| format!("'{n}'")).collect();
        return Err((ErrorCode::UnknownEventType, format!("unknown event type {}", quoted.join(", "))));
    }
    Ok(topics)
}

/// What the server sends back on the route response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerReply {
    /// Subscriptions added; `events` is the connection's full topic list
    /// after the change, or with `channel`, that channel's filter.
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        channel: Option<Channel>,
        events: Vec<Topic>,
    },
    /// Subscriptions removed; `events` is what remains (of the tenant's
    /// topics; empty for a channel left).
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        channel: Option<Channel>,
        events: Vec<Topic>,
    },
    /// The connection's subscriptions: the tenant's topics, and each
    /// channel with its filter.
    Subscriptions {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        events: Vec<Topic>,
        channels: BTreeMap<Channel, Vec<Topic>>,
    },
    /// Answer to `ping`; server time in Unix milliseconds.
    Pong {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        timestamp: i64,
    },
    /// End of a `sync`: how many queued messages were delivered, and the
    /// cursor to acknowledge them with (`{"action":"sync","ack":cursor}`);
    /// until then they stay queued and the next sync delivers them again.
    Synced {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        count: usize,
        /// The id of the last message delivered; absent when none was.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        cursor: Option<String>,
        /// Messages the `ack` removed.
        #[serde(skip_serializing_if = "is_zero", default)]
        acked: usize,
    },
    /// A `publish` went out: the new event's id (a batch's: `event_ids`,
    /// in order) and what the fan-out did (a batch's: added up).
    Published {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        event_id: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        event_ids: Vec<String>,
        report: Report,
    },
    /// The end of a recovery (a `subscribe` with `since`). `recovered:
    /// true`: `count` missed events were replayed, in offset order, and
    /// everything after `offset` arrives live. `recovered: false`: nothing
    /// was replayed (the position is older than the history, from another
    /// epoch, or more was missed than one recovery replays): reload your
    /// state from the application and go on from `epoch`/`offset`. Both
    /// are absent when this deployment keeps no history.
    Recovered {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        /// The channel recovered (its own positions); absent: the tenant's.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        channel: Option<Channel>,
        recovered: bool,
        count: usize,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        epoch: Option<String>,
        /// The history's top offset when the subscription took effect.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        offset: Option<u64>,
        /// The id of the event at `offset`, when known: with `epoch` and
        /// `offset`, a position the client can recover from later.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        event_id: Option<String>,
    },
    /// Sent by the gateway ahead of closing the connection (the emulator,
    /// `within_secs` before its maximum connection duration): open a new
    /// connection, subscribe with `since`, then close this one.
    Reconnect { reason: String, within_secs: u64 },
    /// The request failed; the connection stays open.
    Error {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
        code: ErrorCode,
        message: String,
        /// Retry no sooner than this many ms from now (`rate_limited`).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        retry_after_ms: Option<u64>,
    },
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ServerReply {
    /// The JSON text sent to the client.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("replies contain only strings, numbers and lists")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: &str) -> Result<ClientAction, ProtocolError> {
        ClientAction::parse(v.as_bytes(), 1024)
    }

    #[test]
    fn parses_every_action() {
        assert_eq!(
            parse(r#"{"action":"subscribe","events":["call.incoming","agent.*","call.incoming"],"id":"r1"}"#).unwrap(),
            ClientAction::Subscribe {
                id: Some("r1".into()),
                topics: vec!["call.incoming".parse().unwrap(), "agent.*".parse().unwrap()],
                since: None,
                channel: None,
            }
        );
        assert_eq!(
            parse(r#"{"action":"subscribe","events":["*"],"since":{"epoch":"ab12","offset":41,"id":"0199-x"}}"#)
                .unwrap(),
            ClientAction::Subscribe {
                id: None,
                topics: vec!["*".parse().unwrap()],
                since: Some(Since { epoch: "ab12".into(), offset: 41, id: Some("0199-x".into()) }),
                channel: None,
            }
        );
        assert!(matches!(
            parse(r#"{"action":"unsubscribe","events":["*"]}"#).unwrap(),
            ClientAction::Unsubscribe { .. }
        ));
        assert_eq!(parse(r#"{"action":"ping","id":7}"#).unwrap(), ClientAction::Ping { id: Some("7".into()) });
        assert_eq!(parse(r#"{"action":"sync"}"#).unwrap(), ClientAction::Sync { id: None, ack: None });
        assert_eq!(
            parse(r#"{"action":"sync","ack":"0199-abc"}"#).unwrap(),
            ClientAction::Sync { id: None, ack: Some("0199-abc".into()) }
        );
        assert_eq!(parse(r#"{"action":"sync","ack":5}"#).unwrap_err().code, ErrorCode::InvalidMessage);
        let publish =
            parse(r#"{"action":"publish","type":"chat.message","target":{"user":"42"},"data":{"text":"hi"}}"#).unwrap();
        assert_eq!(
            publish,
            ClientAction::Publish {
                id: None,
                request: PublishRequest {
                    event_type: EventType::ChatMessage,
                    target: Target::User("42".parse().unwrap()),
                    data: json!({"text":"hi"}),
                },
            }
        );
    }

    #[test]
    fn channel_subscriptions_parse_with_a_filter_or_everything() {
        let queue = || Some(Channel::parse("queue:support").unwrap());
        assert_eq!(
            parse(r#"{"action":"subscribe","channel":"queue:support"}"#).unwrap(),
            ClientAction::Subscribe { id: None, topics: vec![Topic::all()], since: None, channel: queue() }
        );
        assert_eq!(
            parse(r#"{"action":"subscribe","channel":"queue:support","events":["call.*"],"since":{"epoch":"e","offset":3}}"#)
                .unwrap(),
            ClientAction::Subscribe {
                id: None,
                topics: vec!["call.*".parse().unwrap()],
                since: Some(Since { epoch: "e".into(), offset: 3, id: None }),
                channel: queue(),
            }
        );
        assert_eq!(
            parse(r#"{"action":"unsubscribe","channel":"queue:support"}"#).unwrap(),
            ClientAction::Unsubscribe { id: None, topics: vec![], channel: queue() }
        );
        assert_eq!(
            parse(r#"{"action":"subscriptions","id":"r2"}"#).unwrap(),
            ClientAction::Subscriptions { id: Some("r2".into()) }
        );
        for (input, code) in [
            (r#"{"action":"subscribe","channel":"support"}"#, ErrorCode::InvalidChannel),
            (r#"{"action":"subscribe","channel":["queue:a"]}"#, ErrorCode::InvalidChannel),
            (r#"{"action":"subscribe","channel":"queue:a","events":["cal.*"]}"#, ErrorCode::UnknownEventType),
            (r#"{"action":"unsubscribe","channel":"queue:a","events":["*"]}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"subscribe"}"#, ErrorCode::InvalidMessage),
        ] {
            assert_eq!(parse(input).unwrap_err().code, code, "{input}");
        }
        let reply = ServerReply::Subscribed { id: None, channel: queue(), events: vec![Topic::all()] };
        assert_eq!(reply.to_json(), r#"{"type":"subscribed","channel":"queue:support","events":["*"]}"#);
        let target: Target = serde_json::from_value(json!({"channel": "call:1.2"})).unwrap();
        assert_eq!(serde_json::to_value(&target).unwrap(), json!({"channel": "call:1.2"}));
        assert!(serde_json::from_value::<Target>(json!({"channel": "call"})).is_err());
    }

    #[test]
    fn mistakes_get_their_own_codes() {
        let cases = [
            ("not json", ErrorCode::InvalidJson),
            ("[1,2]", ErrorCode::InvalidMessage),
            (r#"{"events":[]}"#, ErrorCode::MissingAction),
            (r#"{"action":"dance"}"#, ErrorCode::UnknownAction),
            (r#"{"action":"subscribe"}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"subscribe","events":[]}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"subscribe","events":["call.incoming", 3]}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"subscribe","events":["call.nope","x.*","call.incoming"]}"#, ErrorCode::UnknownEventType),
            (r#"{"action":"publish","type":"nope"}"#, ErrorCode::UnknownEventType),
            (r#"{"action":"subscribe","events":["*"],"since":41}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"subscribe","events":["*"],"since":{"epoch":"a b","offset":1}}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"subscribe","events":["*"],"since":{"epoch":"ab","offset":-1}}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"subscribe","events":["*"],"since":{"epoch":"ab","offset":"1"}}"#, ErrorCode::InvalidMessage),
            (
                r#"{"action":"subscribe","events":["*"],"since":{"epoch":"ab","offset":1,"id":""}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"action":"subscribe","events":["*"],"since":{"epoch":"ab","offset":1,"id":7}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"action":"subscribe","events":["*"],"since":{"epoch":"ab","offset":1,"id":"a\"b"}}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"action":"subscribe","events":["*"],"since":{"epoch":"ab","offset":1,"x":1}}"#,
                ErrorCode::InvalidMessage,
            ),
            (r#"{"action":"unsubscribe","events":["*"],"since":{"epoch":"ab","offset":1}}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"publish","type":"chat.message","target":{"tenant":false}}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"publish","type":"chat.message","target":{"user":"a:b"}}"#, ErrorCode::InvalidMessage),
            (r#"{"action":"publish","type":"chat.message","target":{"group":"x"}}"#, ErrorCode::InvalidMessage),
        ];
        for (input, code) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err.code, code, "{input}: {}", err.message);
        }
        let err = parse(r#"{"action":"subscribe","id":"r9","events":["call.nope","x.*"]}"#).unwrap_err();
        assert_eq!(err.message, "unknown event type 'call.nope', 'x.*'");
        assert_eq!(err.id.as_deref(), Some("r9"), "the request id is echoed in errors");
        let err = ClientAction::parse(&[b' '; 2000], 1024).unwrap_err();
        assert_eq!(err.code, ErrorCode::MessageTooLarge);
        assert!(err.message.contains("2000 bytes"), "{}", err.message);
    }

    #[test]
    fn replies_have_the_wire_shape() {
        let r = ProtocolError::new(Some("r1".into()), ErrorCode::UnknownAction, "unknown action 'x'").into_reply();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"type":"error","id":"r1","code":"unknown_action","message":"unknown action 'x'"})
        );
        let r = ServerReply::Subscribed { id: None, channel: None, events: vec!["call.incoming".parse().unwrap()] };
        assert_eq!(r.to_json(), r#"{"type":"subscribed","events":["call.incoming"]}"#);
        assert_eq!(ServerReply::Pong { id: None, timestamp: 5 }.to_json(), r#"{"type":"pong","timestamp":5}"#);
        for code in [ErrorCode::InvalidJson, ErrorCode::NotImplemented, ErrorCode::TooManySubscriptions] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }

    #[test]
    fn targets_round_trip() {
        for (t, j) in [
            (Target::Tenant, json!({"tenant":true})),
            (Target::User("42".parse().unwrap()), json!({"user":"42"})),
            (Target::Connection("abc=".parse().unwrap()), json!({"connection":"abc="})),
        ] {
            assert_eq!(serde_json::to_value(&t).unwrap(), j);
            assert_eq!(serde_json::from_value::<Target>(j).unwrap(), t);
        }
    }

    /// One reading of a publish at every edge: the same fields, the same errors.
    #[test]
    fn a_publish_request_is_read_one_way() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        let read = PublishRequest::from_object(obj(json!({"type": "queue.stats", "data": {"n": 1}}))).unwrap();
        assert_eq!(
            read,
            PublishRequest { event_type: EventType::QueueStats, target: Target::Tenant, data: json!({"n": 1}) }
        );
        let refused = |v: Value| PublishRequest::from_object(obj(v)).unwrap_err();
        let missing = refused(json!({}));
        assert_eq!((missing.field, missing.code()), ("type", ErrorCode::InvalidMessage));
        assert!(missing.to_string().contains("missing field `type`"), "{missing}");
        let unknown = refused(json!({"type": "queue.nope"}));
        assert_eq!((unknown.field, unknown.code()), ("type", ErrorCode::UnknownEventType));
        assert_eq!(refused(json!({"type": "queue.stats", "target": {"group": "x"}})).field, "target");
        assert_eq!(refused(json!({"type": "queue.stats", "sender": {}})).field, "sender");
        let extra = refused(json!({"type": "queue.stats", "extra": 1}));
        assert_eq!(extra.to_string(), "unknown field `extra`; expected type, data and target");
        // `take` leaves the edge's own fields to it.
        let mut frame = obj(json!({"action": "publish", "id": "r1", "type": "queue.stats"}));
        PublishRequest::take(&mut frame).unwrap();
        assert_eq!(frame, obj(json!({"action": "publish", "id": "r1"})));
    }
}
