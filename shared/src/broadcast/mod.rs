//! The legacy hub's EventWebhookBroadcaster: one call routes an event to every
//! WebSocket connection and every webhook that should have it.
//!
//! 1. Resolve the recipients — the target (tenant, user, connection)
//!    intersected with the subscriptions — and the tenant's webhooks, in one
//!    store round trip.
//! 2. Post the envelope to each connection through the endpoint stored with
//!    it, concurrently up to `FANOUT_CONCURRENCY`. A post API Gateway
//!    throttles (429) is made again at the pace the instance's
//!    [`crate::connections_api::Pacer`] learns; what is still unsent after
//!    `FANOUT_RETRY_MS` goes to queued chunk jobs: never dropped.
//! 3. `410 Gone` means stale: all stale connections are forgotten in one
//!    more round trip, and users left without a connection are announced
//!    `presence.offline`. Other failures are counted and logged; they never
//!    stop the rest of the fan-out.
//! 4. A user target with no live connection: the event waits in the user's
//!    offline queue until they `sync`.
//! 5. One SQS message per matching active webhook (SendMessageBatch, ten a
//!    call) for the `webhook` function.
//! 6. With `SEED_CHANNELS=true`, the event is also PUBLISHed on the legacy hub's
//!    Redis channels for services that still listen there.
//!
//! The result is a [`Report`]. The `fanout` function, the HTTP API and the
//! `publish` action all come through here.
//!
//! This file holds the steps every fan-out shares (record, deliver,
//! finish: offline queue and webhooks); `post.rs` the posts themselves and
//! their pacing and hand-on; `queued.rs` the events queue's jobs and their
//! claims; `sweep.rs` the sweep of ghost connections.
//!
//! Queued fan-out ([`FanoutJob`], the `fanout` function's SQS trigger) is
//! the same with two additions: a broadcast to more recipients than
//! `FANOUT_CHUNK_SIZE` is split into chunk jobs re-enqueued to the events
//! queue, so many function instances share it; and every recipient (and
//! webhook) is claimed in the store before it is sent to, so a retried or
//! duplicated job never sends twice to the same one. A claim is a lease,
//! marked sent as the posts go: an attempt killed mid-way leaves leases
//! that expire, and the job, delivered again, reaches those it had not.
//! A job's claims are deleted when it ends.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Context;
use crate::connections_api::PostOutcome;
use crate::event::{Envelope, EventType, Target};
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::protocol::{OfflineRefusal, PublishRequest, Report};
use crate::queue::QueueError;
use crate::store::{Recipient, Record, Resolution, Retention, StoreError, StoreResult};
use crate::webhook::{DeadLetter, Delivery, WebhookConfig};

mod batch;
mod post;
mod queued;
mod sweep;

use post::*;
use queued::*;

pub use batch::{BatchJob, MAX_BATCH, Published, frames, publish_batch, publish_batch_as, run_batch_job};
pub use post::post_one;
pub use queued::{Chunk, FanoutJob, JobError, run_job};
pub use sweep::{SWEEP_BATCH, SweepReport, sweep, sweep_all};

/// Why a fan-out step failed.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// SQS failed where there is nothing to fall back on: a queued job's
    /// chunks or webhooks could not be queued (the job is retried). A
    /// synchronous publish dead-letters its webhooks instead.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Result alias for fan-out steps.
pub type BroadcastResult<T> = Result<T, BroadcastError>;

/// Routes `event` to `target` inside the event's tenant, recording it in
/// the tenant's history first.
pub async fn publish(ctx: &Context, event: &Envelope, target: &Target) -> BroadcastResult<Report> {
    let mut event = event.clone();
    let resolved = record(ctx, &mut event, target, None, false)
        .await?
        .ok_or_else(|| StoreError::Corrupt("an unlimited resolve was refused".into()))?;
    deliver(ctx, &event, target, resolved).await
}

/// Records `event` in its tenant's history and resolves its recipients,
/// in one store round trip, and sets the event's position. `None` when
/// the tenant is over `limit` (nothing recorded). `once`: a queued job's
/// event, recorded the first time only (a retry gets the same position).
async fn record(
    ctx: &Context,
    event: &mut Envelope,
    target: &Target,
    limit: Option<u32>,
    once: bool,
) -> StoreResult<Option<Resolution>> {
    event.set_position(None);
    event.channel = target.channel().cloned();
    let text = serde_json::to_string(&*event).expect("an envelope is plain JSON");
    let retention = retention(ctx, target);
    let record = Record { event_type: event.event_type, text: &text, id: &event.id, once, retention };
    let resolved = ctx.store.record_and_resolve(&event.tenant_id, &record, target, limit).await?;
    if let Some(r) = &resolved {
        event.set_position(r.position.as_ref());
        if r.refused_whole().is_none() {
            crate::metrics::event_published(event.event_type.as_str());
        }
    }
    Ok(resolved)
}

/// How the target's channel keeps its events: its namespace's `history`
/// and `ephemeral` (a namespace not declared keeps them as a lasting one;
/// the edges refuse such channels before they come here).
fn retention(ctx: &Context, target: &Target) -> Retention {
    let Some(namespace) = target.channel().and_then(|c| ctx.config.channels.get(c.namespace())) else {
        return Retention::Lasting;
    };
    match (namespace.history, namespace.ephemeral) {
        (false, _) => Retention::Off,
        (true, true) => Retention::Ephemeral,
        (true, false) => Retention::Lasting,
    }
}

/// Routes `event` to recipients already resolved — by [`ConnectionStore::resolve`],
/// or in the same round trip as the change that caused the event.
///
/// [`ConnectionStore::resolve`]: crate::store::ConnectionStore::resolve
#[tracing::instrument(name = "event", skip_all, fields(tenant_id = %event.tenant_id, event_id = %event.id))]
pub async fn deliver(
    ctx: &Context,
    event: &Envelope,
    target: &Target,
    resolved: Resolution,
) -> BroadcastResult<Report> {
    let text = serde_json::to_string(event).expect("an envelope is plain JSON");
    let Posts { mut report, unsent, stale } = post_all(ctx, &text, resolved.recipients, None).await;
    hand_on(ctx, event, target, &text, unsent, "sync", &mut report).await;
    forget_stale(ctx, &event.tenant_id, stale).await?;
    let sent = Sent { queued: resolved.offline };
    finish(ctx, event, target, &text, sent, &resolved.webhooks, None, &mut report).await?;
    Ok(report)
}

/// Forgets connections found gone (one round trip) and announces
/// `presence.offline` for users left without one.
async fn forget_stale(ctx: &Context, tenant: &TenantId, stale: Vec<ConnectionId>) -> BroadcastResult<()> {
    if stale.is_empty() {
        return Ok(());
    }
    let forgotten = ctx.store.unregister_many(tenant, &stale).await?;
    for gone in forgotten {
        let (Some(presence), Some(event)) = (gone.presence, gone.presence_event) else { continue };
        tracing::info!(user_id = %gone.user_id, "user went offline (stale connections)");
        // Boxed: announcing may itself find stale connections.
        Box::pin(announce_presence(ctx, &event, presence)).await?;
    }
    Ok(())
}

/// What the resolve found of the target, for [`finish`].
struct Sent {
    /// The store queued the event offline already ([`Resolution::offline`]).
    queued: Option<Result<usize, OfflineRefusal>>,
}

/// After the posts: the offline queue, the webhooks, the legacy hub's channels.
#[expect(clippy::too_many_arguments, reason = "the parts of one fan-out")]
async fn finish(
    ctx: &Context,
    event: &Envelope,
    target: &Target,
    text: &str,
    sent: Sent,
    webhooks: &[WebhookConfig],
    claims: Option<&Claims<'_>>,
    report: &mut Report,
) -> BroadcastResult<()> {
    let tenant = &event.tenant_id;
    // Nobody of the user's connections took it — none was there, all were
    // gone, none subscribed to it, or none could be reached (a synchronous
    // publish with nowhere to hand its posts) — and no queued job will
    // post it: keep it for their next sync (unless the resolve did, in the
    // same step). A queued job whose posts failed is retried instead.
    if let Target::User(user) = target
        && report.delivered == 0
        && report.requeued == 0
        && (report.failed == 0 || claims.is_none())
    {
        let queued = match sent.queued {
            Some(done) => done,
            None => ctx.store.offline_push(tenant, user, text).await?,
        };
        match queued {
            Ok(_) => {
                report.queued_offline = 1;
                crate::metrics::queued_offline();
            }
            Err(refusal) => {
                tracing::warn!(user_id = %user, ?refusal, "not queued offline");
                report.offline_refused = Some(refusal);
                // A synchronous publish nobody took, refused for the caller's
                // own doing (its budget, its size): refused whole, so the
                // caller's retry does not send the webhooks twice. A queued
                // job was accepted already: its webhooks still go.
                if claims.is_none() && refusal.is_callers_fault() {
                    return Ok(());
                }
            }
        }
    }
    let (enqueued, failed) = enqueue_webhooks(ctx, event, webhooks, claims).await?;
    report.webhooks_enqueued = enqueued;
    report.webhooks_failed = failed;
    if ctx.config.compat_channels {
        ctx.store.publish_compat(tenant, event.event_type, text).await?;
    }
    tracing::debug!(event_type = %event.event_type, ?report, "published");
    Ok(())
}

/// The delivery id of `event` to `webhook_id`: derived from both, so a
/// retried fan-out produces the same id and receivers can de-duplicate.
pub fn delivery_id(event_id: &str, webhook_id: &str) -> String {
    let digest = Sha256::new().chain_update(event_id).chain_update(b":").chain_update(webhook_id).finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// One SQS message per matching active webhook. Returns (enqueued, failed).
async fn enqueue_webhooks(
    ctx: &Context,
    event: &Envelope,
    webhooks: &[WebhookConfig],
    claims: Option<&Claims<'_>>,
) -> BroadcastResult<(usize, usize)> {
    let mut wanted: Vec<&WebhookConfig> =
        webhooks.iter().filter(|h| h.wants(event.event_type, event.channel.as_ref())).collect();
    if wanted.is_empty() {
        return Ok((0, 0));
    }
    if let Some(claims) = claims {
        let members: Vec<String> = wanted.iter().map(|h| format!("webhook:{}:{}", event.id, h.id)).collect();
        let fresh = claims.claim(ctx, &members).await?;
        let mut keep = fresh.into_iter();
        wanted.retain(|_| keep.next().unwrap_or(false));
    }
    // Named by the event too: a batch job's claims hold several events' webhooks.
    let members = || wanted.iter().map(|h| format!("webhook:{}:{}", event.id, h.id)).collect::<Vec<String>>();
    let n = wanted.len();
    let Some((queues, url)) = ctx.webhook_queue() else {
        tracing::error!(webhooks = n, "webhooks match but WEBHOOK_QUEUE_URL is not set: deliveries not queued");
        return Ok((0, n));
    };
    let timestamp = event.timestamp / 1000;
    let bodies: Vec<String> = wanted
        .iter()
        .map(|h| {
            let delivery = Delivery {
                delivery_id: delivery_id(&event.id, h.id.as_str()),
                tenant_id: event.tenant_id.clone(),
                webhook_id: h.id.clone(),
                event: event.event_type,
                timestamp,
                data: event.data.clone(),
                channel: event.channel.clone(),
                attempt_base: 0,
            };
            serde_json::to_string(&delivery).expect("plain JSON")
        })
        .collect();
    match queues.send_all(url, &bodies).await {
        Ok(sent) => {
            if let Some(claims) = claims {
                claims.sent(members());
            }
            Ok((sent, n - sent))
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries not queued");
            if let Some(claims) = claims {
                // Let a retry of the job queue them.
                claims.release(members());
                return Err(e.into());
            }
            // A synchronous publish has no job to retry: the deliveries go to
            // the dead-letter queue (replayable) rather than nowhere. Some of
            // them may have been queued after all; receivers de-duplicate by
            // `webhook-id`.
            dead_letter_unqueued(ctx, &bodies, &e.to_string()).await;
            Ok((0, n))
        }
    }
}

/// Puts webhook deliveries that could not be queued into the webhook
/// dead-letter queue (a [`DeadLetter`], as every producer writes them);
/// logs each one that cannot be put there either, so none vanishes unseen.
async fn dead_letter_unqueued(ctx: &Context, bodies: &[String], why: &str) {
    let now = crate::time::now_millis();
    let letters: Vec<String> = bodies
        .iter()
        .map(|b| {
            let delivery = serde_json::from_str(b).ok();
            let body = delivery.is_none().then(|| b.clone());
            let error = Some(format!("not queued: {why}"));
            DeadLetter { delivery, body, attempts: Some(0), error, dead_at: now, ..DeadLetter::default() }.to_json()
        })
        .collect();
    let kept = match ctx.webhook_dlq() {
        Some((queues, dlq)) => queues.send_all(dlq, &letters).await.unwrap_or(0),
        None => 0,
    };
    crate::metrics::dead_lettered("webhooks", kept);
    if kept < bodies.len() {
        for body in bodies {
            tracing::error!(delivery = %body,
                "webhook delivery neither queued nor dead-lettered");
        }
    } else {
        tracing::warn!(deliveries = kept, "webhook deliveries dead-lettered: the webhook queue refused them");
    }
}

/// Why a caller's publish did not go out.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The caller's role may not publish this event to this target.
    #[error("{0}")]
    Forbidden(String),
    /// The channel's namespace is not declared, or its rules refuse the caller.
    #[error(transparent)]
    Channel(#[from] crate::namespaces::Refusal),
    /// The caller's tenant is over its publishes per second (the limit).
    #[error("over the tenant's limit of {0} requests per second")]
    RateLimited(u32),
    /// Nobody could take the event now and the offline queue refused it
    /// for the caller's doing (the tenant's budget, the event's size):
    /// nothing was published.
    #[error("the event was not queued for the offline user: {0:?}")]
    OfflineRefused(OfflineRefusal),
    /// The store or SQS failed.
    #[error(transparent)]
    Failed(#[from] BroadcastError),
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        PublishError::Failed(e.into())
    }
}

/// May `who` publish `event_type` to `target`? The role's rule (clients
/// publish chat events only, never to the whole tenant), then for a
/// channel its namespace's: declared, and its publish rule for the role.
pub fn may_publish(
    ctx: &Context,
    who: &crate::ids::Identity,
    event_type: EventType,
    target: &Target,
) -> Result<(), PublishError> {
    who.role.may_publish(event_type, target).map_err(PublishError::Forbidden)?;
    if let Target::Channel(channel) = target {
        ctx.config.channels.check(who, crate::namespaces::Action::Publish, channel)?;
    }
    Ok(())
}

/// A publish on behalf of a verified caller (the `publish` action and
/// `POST /v1/events`): the role check, then a new event in the caller's own
/// tenant. With `limit`, the publish first counts against the tenant's
/// requests per second, in the same store round trip as the resolve.
/// Returns the event's id and the report.
pub async fn publish_as(
    ctx: &Context,
    who: &crate::ids::Identity,
    request: PublishRequest,
    limit: Option<u32>,
) -> Result<(String, Report), PublishError> {
    let PublishRequest { event_type, target, data } = request;
    let target = &target;
    may_publish(ctx, who, event_type, target)?;
    let mut event = Envelope::from_caller(who, event_type, data);
    let resolved = match record(ctx, &mut event, target, limit, false).await? {
        Some(resolved) => resolved,
        None => return Err(PublishError::RateLimited(limit.unwrap_or(0))),
    };
    // Refused whole by the offline queue, in the resolve's own step:
    // nothing was recorded, queued or sent.
    if let Some(refusal) = resolved.refused_whole() {
        tracing::warn!(tenant_id = %event.tenant_id, event_id = %event.id, ?refusal, "publish refused: not queued offline");
        return Err(PublishError::OfflineRefused(refusal));
    }
    let report = deliver(ctx, &event, target, resolved).await?;
    match report.offline_refused {
        Some(refusal) if refusal.is_callers_fault() => Err(PublishError::OfflineRefused(refusal)),
        _ => Ok((event.id, report)),
    }
}

/// A user's `presence.online` / `presence.offline` to the tenant's
/// subscribers: `event` and `resolved` are what the register or unregister
/// that changed the user's presence recorded and returned with it.
pub async fn announce_presence(ctx: &Context, event: &Envelope, resolved: Resolution) -> BroadcastResult<Report> {
    deliver(ctx, event, &Target::Tenant, resolved).await
}

/// `event_type` with `data` to the subscribers of `channel` in `tenant`
/// (a back-end publish: no role check; the channel's namespace should be
/// declared, or its events are kept as a lasting namespace's).
pub async fn publish_to_channel(
    ctx: &Context,
    tenant: &TenantId,
    channel: &crate::channel::Channel,
    event_type: EventType,
    data: Value,
) -> BroadcastResult<Report> {
    publish(ctx, &Envelope::new(tenant.clone(), event_type, data), &Target::Channel(channel.clone())).await
}

/// The legacy hub's `BroadcastAgentState`: `agent.state.changed` to the whole tenant.
pub async fn broadcast_agent_state(ctx: &Context, tenant: &TenantId, data: Value) -> BroadcastResult<Report> {
    publish(ctx, &Envelope::new(tenant.clone(), EventType::AgentStateChanged, data), &Target::Tenant).await
}

/// A `call.*` event type: what the legacy hub's `BroadcastCallEvent`
/// takes. Made with `try_from`, which names any other type it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEvent(EventType);

impl TryFrom<EventType> for CallEvent {
    type Error = String;

    fn try_from(event_type: EventType) -> Result<Self, String> {
        if event_type.category() == "call" {
            Ok(CallEvent(event_type))
        } else {
            Err(format!("{event_type} is not a call.* event"))
        }
    }
}

/// The legacy hub's `BroadcastCallEvent`: a `call.*` event to the whole tenant.
pub async fn broadcast_call_event(
    ctx: &Context,
    tenant: &TenantId,
    event: CallEvent,
    data: Value,
) -> BroadcastResult<Report> {
    publish(ctx, &Envelope::new(tenant.clone(), event.0, data), &Target::Tenant).await
}

/// The legacy hub's `BroadcastChatMessage`: `chat.message` to a target (usually a user).
pub async fn broadcast_chat_message(
    ctx: &Context,
    tenant: &TenantId,
    target: &Target,
    data: Value,
) -> BroadcastResult<Report> {
    publish(ctx, &Envelope::new(tenant.clone(), EventType::ChatMessage, data), target).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivery_ids_are_stable_per_event_and_webhook() {
        let a = super::delivery_id("0199-event", "wh_1");
        assert_eq!(a, super::delivery_id("0199-event", "wh_1"), "a retried fan-out makes the same id");
        assert_ne!(a, super::delivery_id("0199-event", "wh_2"));
        assert_ne!(a, super::delivery_id("0199-other", "wh_1"));
        assert!(a.starts_with("msg_") && a.len() == 36, "{a}");
    }
}
