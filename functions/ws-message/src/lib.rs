//! `ws-message`: `$default` and the named routes (`subscribe`,
//! `unsubscribe`, `ping`, `sync`, `publish`).
//!
//! Every frame gets exactly one reply, sent back as the route response
//! (API Gateway's two-way route). A client mistake — bad JSON, a missing or
//! unknown action, an unknown event name, an oversize frame — is answered
//! with `{"type":"error","code","message"}` and a 200: the connection stays
//! open and nothing changes. Only our own failures (the store unreachable)
//! answer 500, still with an error reply the client can read.
//!
//! A `subscribe` with `since` recovers: it subscribes and reads the
//! tenant's history in one round trip, posts `subscribed` and the missed
//! events, and answers `recovered` (all or nothing; see [`recover`]).
//!
//! `publish` is role-checked ([`switchboard::ids::Role::may_publish`]) and
//! fans out inside the caller's tenant; `sync` posts the queued messages to
//! this very connection before the `synced` reply.
//!
//! The action is read from the body, not from the route key, so the same
//! handler serves `$default` and every named route.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use switchboard::Context;
use switchboard::apigw_event::{self, response};
use switchboard::broadcast::{self, BroadcastError, PublishError};
use switchboard::channel::Channel;
use switchboard::connections_api::PostOutcome;
use switchboard::event::{Since, Topic};
use switchboard::ids::{ConnectionId, Identity};
use switchboard::namespaces::{Action, Refusal};
use switchboard::protocol::{ClientAction, ErrorCode, OfflineRefusal, ProtocolError, ServerReply};
use switchboard::store::{Audience, HistoryQuery, ReadStatus, StoreError};

/// Handles one client frame.
pub async fn handle(ctx: &Context, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    use tracing::Instrument as _;
    let span = switchboard::apigw_event::span("ws-message", &event);
    handled(ctx, event).instrument(span).await
}

/// [`handle`]'s work, inside the invocation's span.
async fn handled(ctx: &Context, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let rc = &event.request_context;
    let caller = apigw_event::connection_id(rc).and_then(|c| Ok((c, apigw_event::identity(rc)?)));
    let (connection_id, identity) = match caller {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(error = %e, "message without a valid connection context");
            return reply(
                500,
                &ProtocolError::new(None, ErrorCode::InternalError, "this connection has no identity; reconnect")
                    .into_reply(),
            );
        }
    };
    let body = apigw_event::body_bytes(&event).unwrap_or_default();
    let action = match ClientAction::parse(&body, ctx.config.limits.max_message_bytes) {
        Ok(action) => action,
        Err(e) => {
            switchboard::metrics::message_in("invalid");
            tracing::debug!(code = e.code.as_str(), error = %e.message, "bad client message");
            return reply(200, &e.into_reply());
        }
    };
    switchboard::metrics::message_in(action.name());
    let id = action.id().map(str::to_owned);
    match dispatch(ctx, &identity, &connection_id, action).await {
        Ok(answer) => reply(200, &answer),
        Err(Failure::Client(e)) => reply(200, &e.into_reply()),
        Err(Failure::Server(e)) => {
            tracing::error!(error = %e, "server failure");
            reply(
                500,
                &ProtocolError::new(id, ErrorCode::InternalError, "temporarily unable to serve this request; retry")
                    .into_reply(),
            )
        }
    }
}

enum Failure {
    Client(ProtocolError),
    Server(BroadcastError),
}

/// Store errors that are the client's doing become error replies; the rest
/// are ours.
fn classify(id: &Option<String>, e: StoreError) -> Failure {
    match e {
        StoreError::UnknownConnection => Failure::Client(ProtocolError::new(
            id.clone(),
            ErrorCode::UnknownConnection,
            "this connection is no longer registered; reconnect",
        )),
        StoreError::TooManySubscriptions { limit } => Failure::Client(ProtocolError::new(
            id.clone(),
            ErrorCode::TooManySubscriptions,
            format!("at most {limit} topics per connection; unsubscribe some or use a wildcard such as \"call.*\""),
        )),
        StoreError::TooManyChannels { limit } => Failure::Client(ProtocolError::new(
            id.clone(),
            ErrorCode::TooManySubscriptions,
            format!("at most {limit} channels per connection (CHANNELS_PER_CONNECTION); leave one first"),
        )),
        StoreError::ChannelFull { limit } => Failure::Client(ProtocolError::new(
            id.clone(),
            ErrorCode::ChannelFull,
            format!("this channel has {limit} subscribers, as many as it may (CHANNEL_MAX_SUBSCRIBERS)"),
        )),
        other => Failure::Server(other.into()),
    }
}

async fn dispatch(
    ctx: &Context,
    who: &Identity,
    conn: &ConnectionId,
    action: ClientAction,
) -> Result<ServerReply, Failure> {
    let tenant = &who.tenant_id;
    match action {
        ClientAction::Subscribe { id, topics, since, channel: Some(channel) } => {
            check_channel(ctx, who, Action::Subscribe, &channel, &id)?;
            match since {
                Some(since) => recover(ctx, who, conn, id, Scope::Channel(&channel), &topics, since).await,
                None => match ctx.store.subscribe_channel(tenant, conn, &channel, &topics).await {
                    Ok(()) => Ok(ServerReply::Subscribed { id, channel: Some(channel), events: filter(&topics) }),
                    Err(e) => Err(classify(&id, e)),
                },
            }
        }
        ClientAction::Subscribe { id, topics, since: Some(since), channel: None } => {
            recover(ctx, who, conn, id, Scope::Tenant, &topics, since).await
        }
        ClientAction::Subscribe { id, topics, since: None, channel: None } => {
            match ctx.store.subscribe(tenant, conn, &topics).await {
                Ok(events) => Ok(ServerReply::Subscribed { id, channel: None, events }),
                Err(e) => Err(classify(&id, e)),
            }
        }
        ClientAction::Unsubscribe { id, channel: Some(channel), .. } => {
            match ctx.store.unsubscribe_channel(tenant, conn, &channel).await {
                Ok(_) => Ok(ServerReply::Unsubscribed { id, channel: Some(channel), events: vec![] }),
                Err(e) => Err(classify(&id, e)),
            }
        }
        ClientAction::Unsubscribe { id, topics, channel: None } => {
            match ctx.store.unsubscribe(tenant, conn, &topics).await {
                Ok(events) => Ok(ServerReply::Unsubscribed { id, channel: None, events }),
                Err(e) => Err(classify(&id, e)),
            }
        }
        ClientAction::Subscriptions { id } => match ctx.store.subscriptions(tenant, conn).await {
            Ok(mine) => Ok(ServerReply::Subscriptions { id, events: mine.topics, channels: mine.channels }),
            Err(e) => Err(classify(&id, e)),
        },
        ClientAction::Ping { id } => match ctx.store.heartbeat(tenant, &who.user_id, conn).await {
            Ok(_) => Ok(ServerReply::Pong { id, timestamp: switchboard::time::now_millis() }),
            Err(e) => Err(classify(&id, e)),
        },
        ClientAction::Sync { id, ack } => sync(ctx, who, conn, id, ack).await,
        ClientAction::Publish { id, request } => {
            // The tenant's publishes per second, counted with the HTTP API's
            // requests in the same counter and in the resolve's round trip.
            let limit = ctx.config.limits.rate_limit_per_sec;
            match broadcast::publish_as(ctx, who, request, Some(limit)).await {
                Ok((event_id, report)) => {
                    Ok(ServerReply::Published { id, event_id: Some(event_id), event_ids: vec![], report })
                }
                Err(e) => Err(publish_failed(ctx, id, e)),
            }
        }
        ClientAction::PublishBatch { id, requests } => {
            let limit = ctx.config.limits.rate_limit_per_sec;
            match broadcast::publish_batch_as(ctx, who, requests, Some(limit)).await {
                Ok(done) => {
                    let mut report = switchboard::protocol::Report::default();
                    let mut event_ids = Vec::with_capacity(done.len());
                    for p in done {
                        report += p.report;
                        event_ids.push(p.event_id);
                    }
                    Ok(ServerReply::Published { id, event_id: None, event_ids, report })
                }
                Err(e) => Err(publish_failed(ctx, id, e)),
            }
        }
    }
}

/// A publish that did not go out, as the client is told.
fn publish_failed(ctx: &Context, id: Option<String>, e: PublishError) -> Failure {
    match e {
        PublishError::Forbidden(why) => Failure::Client(ProtocolError::new(id, ErrorCode::Forbidden, why)),
        PublishError::Channel(refusal) => channel_refused(id, &refusal),
        PublishError::Failed(BroadcastError::Store(e)) => classify(&id, e),
        PublishError::Failed(e) => Failure::Server(e),
        PublishError::OfflineRefused(refusal) => {
            let code = match refusal {
                OfflineRefusal::MessageTooLarge => ErrorCode::MessageTooLarge,
                _ => ErrorCode::OfflineBudgetExceeded,
            };
            let message = format!("{}; nothing was published", refusal.describe(&ctx.config.limits));
            Failure::Client(ProtocolError::new(id, code, message))
        }
        e @ PublishError::RateLimited(_) => rate_limited(id, format!("{e}; nothing was published"), "websocket"),
    }
}

/// A subscribe with `since`: subscribes and reads the history in one
/// round trip (so every event is either in that read or delivered live),
/// posts `subscribed`, then every missed event this connection would have
/// received, in offset order, and answers `recovered` (the route response,
/// so it comes after them). All or nothing: when the history cannot prove
/// it holds every event after `since` that this connection would have had
/// (see [`ReadStatus::Lost`]), or there are more than `RECOVERY_MAX_EVENTS`
/// or `RECOVERY_MAX_BYTES` of them, nothing is replayed and the answer is
/// `recovered:false` with the current epoch and top offset. Events
/// published meanwhile reach the client live and may also be in the
/// replay: clients drop duplicates by event id.
async fn recover(
    ctx: &Context,
    who: &Identity,
    conn: &ConnectionId,
    id: Option<String>,
    scope: Scope<'_>,
    topics: &[Topic],
    since: Since,
) -> Result<ServerReply, Failure> {
    let tenant = &who.tenant_id;
    let limits = &ctx.config.limits;
    let channel = scope.channel().cloned();
    let kept = match scope {
        Scope::Tenant => limits.history_size > 0,
        Scope::Channel(c) => {
            limits.channel_history_size > 0 && ctx.config.channels.get(c.namespace()).is_some_and(|ns| ns.history)
        }
    };
    if !kept {
        // No history to recover from: the client reloads its state.
        let events = match scope {
            Scope::Tenant => ctx.store.subscribe(tenant, conn, topics).await,
            Scope::Channel(c) => ctx.store.subscribe_channel(tenant, conn, c, topics).await.map(|()| filter(topics)),
        }
        .map_err(|e| classify(&id, e))?;
        let me = ctx.store.connection(tenant, conn).await.map_err(|e| classify(&id, e))?;
        let me = me.ok_or_else(|| classify(&id, StoreError::UnknownConnection))?;
        let subscribed = ServerReply::Subscribed { id: id.clone(), channel: channel.clone(), events };
        post_reply(ctx, conn, &me.endpoint, &subscribed).await?;
        switchboard::metrics::recovery(false);
        return Ok(ServerReply::Recovered {
            id,
            channel,
            recovered: false,
            count: 0,
            epoch: None,
            offset: None,
            event_id: None,
        });
    }
    let limit = limits.rate_limit_per_sec;
    let query = HistoryQuery {
        since: Some(&since),
        audience: match scope {
            Scope::Tenant => Audience::Connection(&who.user_id, conn),
            Scope::Channel(c) => Audience::Channel(c),
        },
        max_events: limits.recovery_max_events,
        max_bytes: limits.recovery_max_bytes,
    };
    let r = match scope {
        Scope::Tenant => ctx.store.subscribe_since(tenant, conn, topics, &query, limit).await,
        Scope::Channel(c) => ctx.store.subscribe_channel_since(tenant, conn, c, topics, &query, limit).await,
    };
    let r = r.map_err(|e| classify(&id, e))?.ok_or_else(|| {
        rate_limited(
            id.clone(),
            format!("over the tenant's limit of {limit} requests per second; nothing was done"),
            "recovery",
        )
    })?;
    let subscribed = ServerReply::Subscribed { id: id.clone(), channel: channel.clone(), events: r.topics.clone() };
    post_reply(ctx, conn, &r.endpoint, &subscribed).await?;
    let h = &r.history;
    let (epoch, offset, event_id) = (Some(h.epoch.clone()), Some(h.top), h.top_id.clone());
    if h.status != ReadStatus::Complete {
        tracing::info!(since = since.offset, epoch = %h.epoch, top = h.top,
            status = ?h.status, "recovery impossible: recovered:false");
        switchboard::metrics::recovery(false);
        return Ok(ServerReply::Recovered { id, channel, recovered: false, count: 0, epoch, offset, event_id });
    }
    for (done, (offset, text)) in h.envelopes().enumerate() {
        if let Some(why) = failure(broadcast::post_one(ctx, &r.endpoint, conn, text.as_bytes()).await) {
            tracing::warn!(offset, error = %why, "recovery stopped early");
            return Err(Failure::Client(ProtocolError::new(
                id,
                ErrorCode::InternalError,
                format!("replayed {done} missed events, then could not deliver more; subscribe with since again"),
            )));
        }
    }
    let count = h.events.len();
    tracing::debug!(count, "recovered");
    switchboard::metrics::recovery(true);
    Ok(ServerReply::Recovered { id, channel, recovered: true, count, epoch, offset, event_id })
}

/// What a recovery subscribes to and reads: the tenant's topics (the
/// tenant's history, what this connection could have received of it) or
/// one channel (its own history).
#[derive(Clone, Copy)]
enum Scope<'a> {
    Tenant,
    Channel(&'a Channel),
}

impl Scope<'_> {
    fn channel(&self) -> Option<&Channel> {
        match self {
            Scope::Tenant => None,
            Scope::Channel(c) => Some(c),
        }
    }
}

/// A channel's filter as the store keeps it and the reply echoes it: sorted, once each.
fn filter(topics: &[Topic]) -> Vec<Topic> {
    let mut f = topics.to_vec();
    f.sort();
    f.dedup();
    f
}

/// May the caller `action` the channel? The refusal names the channel and the rule.
fn check_channel(
    ctx: &Context,
    who: &Identity,
    action: Action,
    channel: &Channel,
    id: &Option<String>,
) -> Result<(), Failure> {
    match ctx.config.channels.check(who, action, channel) {
        Ok(_) => Ok(()),
        Err(refusal) => {
            tracing::info!(channel = %channel, rule = %refusal.rule(), action = action.as_str(), "channel refused");
            Err(channel_refused(id.clone(), &refusal))
        }
    }
}

fn channel_refused(id: Option<String>, refusal: &Refusal) -> Failure {
    let code = match refusal {
        Refusal::UnknownNamespace { .. } => ErrorCode::InvalidChannel,
        _ => ErrorCode::Forbidden,
    };
    Failure::Client(ProtocolError::new(id, code, refusal.to_string()))
}

/// `rate_limited`, with when to retry: the counter is per second, so the
/// next window opens at the next second. `path`: the metric's label.
fn rate_limited(id: Option<String>, why: String, path: &'static str) -> Failure {
    switchboard::metrics::rate_limited(path);
    let wait = 1000 - (switchboard::time::now_millis().rem_euclid(1000)) as u64;
    let message = format!("{why}, retry in {wait} ms");
    Failure::Client(ProtocolError::new(id, ErrorCode::RateLimited, message).retry_after(wait))
}

/// Posts a reply ahead of the route response (which comes last).
async fn post_reply(ctx: &Context, conn: &ConnectionId, endpoint: &str, reply: &ServerReply) -> Result<(), Failure> {
    let id = match reply {
        ServerReply::Subscribed { id, .. } => id.clone(),
        _ => None,
    };
    match failure(broadcast::post_one(ctx, endpoint, conn, reply.to_json().as_bytes()).await) {
        None => Ok(()),
        Some(why) => Err(Failure::Client(ProtocolError::new(
            id,
            ErrorCode::InternalError,
            format!("could not deliver the subscribed reply ({why}); subscribe with since again"),
        ))),
    }
}

fn failure(outcome: PostOutcome) -> Option<String> {
    match outcome {
        PostOutcome::Delivered => None,
        PostOutcome::Gone => Some("this connection is gone".to_owned()),
        PostOutcome::Throttled => Some("API Gateway throttled the posts (the account's @connections quota)".to_owned()),
        PostOutcome::Failed(e) => Some(e),
    }
}

/// Delivers the user's offline queue to this connection, oldest first,
/// and leaves it queued: a successful post only says the gateway took the
/// message, not that the client read it. The `synced` reply carries a
/// cursor (the last message's id); the next `sync` with `ack: cursor`
/// removes the messages up to it, then delivers what is left. A sync that
/// dies anywhere — the client drops mid-way, never sees `synced` — loses
/// nothing: the next one delivers the same messages again (clients drop
/// duplicates by `id`). One more round trip than a plain peek when acking.
async fn sync(
    ctx: &Context,
    who: &Identity,
    conn: &ConnectionId,
    id: Option<String>,
    ack: Option<String>,
) -> Result<ServerReply, Failure> {
    let (tenant, user) = (&who.tenant_id, &who.user_id);
    let me = match ctx.store.connection(tenant, conn).await {
        Ok(Some(me)) => me,
        Ok(None) => return Err(classify(&id, StoreError::UnknownConnection)),
        Err(e) => return Err(classify(&id, e)),
    };
    let cap = ctx.config.limits.offline_max_messages;
    let mut batch = ctx.store.offline_peek(tenant, user, cap).await.map_err(|e| classify(&id, e))?;
    let mut acked = 0;
    if let Some(cursor) = ack.as_deref()
        && let Some(pos) = batch.iter().position(|m| message_id(m).as_deref() == Some(cursor))
    {
        // A cursor no longer in the queue (acked already, or trimmed by
        // the cap) removes nothing: acking twice is harmless.
        let done: Vec<String> = batch.drain(..=pos).collect();
        acked = ctx.store.offline_ack(tenant, user, &done).await.map_err(|e| classify(&id, e))?;
    }
    let mut count = 0;
    for message in &batch {
        if let Some(why) = failure(broadcast::post_one(ctx, &me.endpoint, conn, message.as_bytes()).await) {
            tracing::warn!(error = %why, delivered = count, "sync stopped early");
            return Err(Failure::Client(ProtocolError::new(
                id,
                ErrorCode::InternalError,
                format!("delivered {count} queued messages, then could not deliver more; all stay queued, sync again"),
            )));
        }
        count += 1;
    }
    let cursor = batch.last().and_then(|m| message_id(m));
    Ok(ServerReply::Synced { id, count, cursor, acked })
}

/// The `id` of a queued envelope.
fn message_id(message: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(message).ok()?;
    value.get("id")?.as_str().map(str::to_owned)
}

fn reply(status: u16, answer: &ServerReply) -> ApiGatewayProxyResponse {
    response(status, Some(answer.to_json()))
}
