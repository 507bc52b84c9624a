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
//! `publish` is role-checked ([`switchboard::auth::Role::may_publish`]) and
//! fans out inside the caller's tenant; `sync` posts the queued messages to
//! this very connection before the `synced` reply.
//!
//! The action is read from the body, not from the route key, so the same
//! handler serves `$default` and every named route.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use switchboard::Context;
use switchboard::apigw::{self, response};
use switchboard::auth::Identity;
use switchboard::broadcast::{self, PublishError};
use switchboard::gateway::PostOutcome;
use switchboard::ids::ConnectionId;
use switchboard::protocol::{ClientAction, ErrorCode, ProtocolError, ServerReply};
use switchboard::store::StoreError;

/// Handles one client frame.
pub async fn handle(ctx: &Context, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let rc = &event.request_context;
    let request_id = rc.request_id.as_deref().unwrap_or("-");
    let caller = apigw::connection_id(rc).and_then(|c| Ok((c, apigw::identity(rc)?)));
    let (connection_id, identity) = match caller {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(request_id, error = %e, "message without a valid connection context");
            return reply(
                500,
                &ProtocolError::new(None, ErrorCode::InternalError, "this connection has no identity; reconnect")
                    .into_reply(),
            );
        }
    };
    let body = apigw::body_bytes(&event).unwrap_or_default();
    let action = match ClientAction::parse(&body, ctx.config.limits.max_message_bytes) {
        Ok(action) => action,
        Err(e) => {
            tracing::debug!(request_id, connection_id = %connection_id, code = e.code.as_str(), message = %e.message, "bad client message");
            return reply(200, &e.into_reply());
        }
    };
    let id = action.id().map(str::to_owned);
    match dispatch(ctx, &identity, &connection_id, action).await {
        Ok(answer) => reply(200, &answer),
        Err(Failure::Client(e)) => reply(200, &e.into_reply()),
        Err(Failure::Store(e)) => {
            tracing::error!(request_id, tenant_id = %identity.tenant_id, connection_id = %connection_id, error = %e, "store failure");
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
    Store(StoreError),
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
        other => Failure::Store(other),
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
        ClientAction::Subscribe { id, topics } => match ctx.store.subscribe(tenant, conn, &topics).await {
            Ok(events) => Ok(ServerReply::Subscribed { id, events }),
            Err(e) => Err(classify(&id, e)),
        },
        ClientAction::Unsubscribe { id, topics } => match ctx.store.unsubscribe(tenant, conn, &topics).await {
            Ok(events) => Ok(ServerReply::Unsubscribed { id, events }),
            Err(e) => Err(classify(&id, e)),
        },
        ClientAction::Ping { id } => match ctx.store.heartbeat(tenant, &who.user_id).await {
            Ok(_) => Ok(ServerReply::Pong { id, timestamp: switchboard::time::now_millis() }),
            Err(e) => Err(classify(&id, e)),
        },
        ClientAction::Sync { id } => sync(ctx, who, conn, id).await,
        ClientAction::Publish { id, event_type, target, data } => {
            // The tenant's publishes per second, counted with the HTTP API's
            // requests in the same counter and in the resolve's round trip.
            let limit = ctx.config.limits.rate_limit_per_sec;
            match broadcast::publish_as(ctx, who, event_type, &target, data, Some(limit)).await {
                Ok((event_id, report)) => Ok(ServerReply::Published { id, event_id, report }),
                Err(PublishError::Forbidden(why)) => {
                    Err(Failure::Client(ProtocolError::new(id, ErrorCode::Forbidden, why)))
                }
                Err(PublishError::Store(e)) => Err(classify(&id, e)),
                Err(e @ PublishError::RateLimited(_)) => {
                    // The counter is per second: the next window opens at the next second.
                    let wait = 1000 - (switchboard::time::now_millis().rem_euclid(1000)) as u64;
                    let message = format!("{e}; nothing was published, retry in {wait} ms");
                    Err(Failure::Client(ProtocolError::new(id, ErrorCode::RateLimited, message).retry_after(wait)))
                }
            }
        }
    }
}

/// Delivers the user's offline queue to this connection, oldest first. A
/// message leaves the queue only after its post succeeded, so a crash
/// mid-sync loses nothing; messages queued during the sync are delivered
/// too (up to twice the queue cap, so a busy sender cannot pin the handler).
async fn sync(ctx: &Context, who: &Identity, conn: &ConnectionId, id: Option<String>) -> Result<ServerReply, Failure> {
    let (tenant, user) = (&who.tenant_id, &who.user_id);
    let me = match ctx.store.connection(tenant, conn).await {
        Ok(Some(me)) => me,
        Ok(None) => return Err(classify(&id, StoreError::UnknownConnection)),
        Err(e) => return Err(classify(&id, e)),
    };
    let batch_size = ctx.config.limits.offline_max_messages;
    let mut count = 0;
    while count < 2 * batch_size {
        let batch = ctx.store.offline_peek(tenant, user, batch_size).await.map_err(|e| classify(&id, e))?;
        if batch.is_empty() {
            break;
        }
        let mut delivered = Vec::with_capacity(batch.len());
        let mut failure = None;
        for message in batch.iter() {
            match ctx.gateway.post(&me.endpoint, conn, message.as_bytes()).await {
                PostOutcome::Delivered => delivered.push(message.clone()),
                PostOutcome::Gone => {
                    failure = Some("this connection is gone".to_owned());
                    break;
                }
                PostOutcome::Failed(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        ctx.store.offline_ack(tenant, user, &delivered).await.map_err(|e| classify(&id, e))?;
        count += delivered.len();
        if let Some(why) = failure {
            tracing::warn!(tenant_id = %tenant, connection_id = %conn, error = %why, delivered = count, "sync stopped early");
            return Err(Failure::Client(ProtocolError::new(
                id,
                ErrorCode::InternalError,
                format!(
                    "delivered {count} queued messages, then could not deliver more; the rest stay queued, sync again"
                ),
            )));
        }
    }
    Ok(ServerReply::Synced { id, count })
}

fn reply(status: u16, answer: &ServerReply) -> ApiGatewayProxyResponse {
    response(status, Some(answer.to_json()))
}
