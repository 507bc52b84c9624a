//! The seed's EventWebhookBroadcaster: one call routes an event to every
//! WebSocket connection that should have it.
//!
//! 1. Resolve the recipients — the target (tenant, user, connection)
//!    intersected with the subscriptions — in one store round trip.
//! 2. Post the envelope to each through the endpoint stored with it,
//!    concurrently up to `FANOUT_CONCURRENCY`.
//! 3. `410 Gone` means stale: all stale connections are forgotten in one
//!    more round trip, and users left without a connection are announced
//!    `presence.offline`. Other failures are counted and logged; they never
//!    stop the rest of the fan-out.
//! 4. A user target with no live connection: the event waits in the user's
//!    offline queue until they `sync`.
//! 5. With `SEED_CHANNELS=true`, the event is also PUBLISHed on the seed's
//!    Redis channels for services that still listen there.
//!
//! The result is a [`Report`]. The `fanout` function, the HTTP API and the
//! `publish` action all come through here.

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Context;
use crate::event::{Envelope, EventType};
use crate::gateway::PostOutcome;
use crate::ids::{TenantId, UserId};
use crate::protocol::Target;
use crate::store::StoreResult;

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
}

impl std::ops::AddAssign for Report {
    fn add_assign(&mut self, o: Report) {
        self.matched += o.matched;
        self.delivered += o.delivered;
        self.gone += o.gone;
        self.failed += o.failed;
        self.queued_offline += o.queued_offline;
    }
}

/// Routes `event` to `target` inside the event's tenant.
pub async fn publish(ctx: &Context, event: &Envelope, target: &Target) -> StoreResult<Report> {
    let tenant = &event.tenant_id;
    let text = serde_json::to_string(event).expect("an envelope is plain JSON");
    let resolved = ctx.store.resolve(tenant, event.event_type, target).await?;
    let mut report = Report { matched: resolved.recipients.len(), ..Report::default() };

    let concurrency = ctx.config.limits.fanout_concurrency;
    let outcomes: Vec<_> = futures::stream::iter(resolved.recipients)
        .map(|r| {
            let text = &text;
            async move {
                let outcome = ctx.gateway.post(&r.endpoint, &r.connection_id, text.as_bytes()).await;
                (r, outcome)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut stale = Vec::new();
    for (recipient, outcome) in outcomes {
        match outcome {
            PostOutcome::Delivered => report.delivered += 1,
            PostOutcome::Gone => {
                report.gone += 1;
                stale.push(recipient.connection_id);
            }
            PostOutcome::Failed(error) => {
                report.failed += 1;
                tracing::warn!(tenant_id = %tenant, connection_id = %recipient.connection_id, %error, "post failed");
            }
        }
    }

    // Nobody of the user's connections took it: keep it for their next sync.
    if let Target::User(user) = target
        && report.delivered == 0
        && resolved.target_connections == report.gone
    {
        ctx.store.offline_push(tenant, user, &text).await?;
        report.queued_offline = 1;
    }

    if !stale.is_empty() {
        let forgotten = ctx.store.unregister_many(tenant, &stale).await?;
        for gone in forgotten.into_iter().filter(|g| g.went_offline) {
            tracing::info!(tenant_id = %tenant, user_id = %gone.user_id, "user went offline (stale connections)");
            // Boxed: announcing may itself find stale connections.
            Box::pin(announce_presence(ctx, tenant, &gone.user_id, false)).await?;
        }
    }

    if ctx.config.seed_channels {
        ctx.store.publish_seed(tenant, event.event_type, &text).await?;
    }
    tracing::debug!(tenant_id = %tenant, event_id = %event.id, event_type = %event.event_type, ?report, "published");
    Ok(report)
}

/// Why a caller's publish did not go out.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The caller's role may not publish this event to this target.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A publish on behalf of a verified caller (the `publish` action and
/// `POST /v1/events`): the role check, then a new event in the caller's own
/// tenant. Returns the event's id and the report.
pub async fn publish_as(
    ctx: &Context,
    who: &crate::auth::Identity,
    event_type: EventType,
    target: &Target,
    data: Value,
) -> Result<(String, Report), PublishError> {
    who.role.may_publish(event_type, target).map_err(PublishError::Forbidden)?;
    let event = Envelope::new(who.tenant_id.clone(), event_type, data);
    let report = publish(ctx, &event, target).await?;
    Ok((event.id, report))
}

/// `presence.online` / `presence.offline` for `user`, to the tenant's subscribers.
pub async fn announce_presence(ctx: &Context, tenant: &TenantId, user: &UserId, online: bool) -> StoreResult<Report> {
    let event_type = if online { EventType::PresenceOnline } else { EventType::PresenceOffline };
    let event = Envelope::new(tenant.clone(), event_type, json!({ "user_id": user }));
    publish(ctx, &event, &Target::Tenant).await
}

/// The seed's `BroadcastAgentState`: `agent.state.changed` to the whole tenant.
pub async fn broadcast_agent_state(ctx: &Context, tenant: &TenantId, data: Value) -> StoreResult<Report> {
    publish(ctx, &Envelope::new(tenant.clone(), EventType::AgentStateChanged, data), &Target::Tenant).await
}

/// The seed's `BroadcastCallEvent`: a `call.*` event to the whole tenant.
/// Any other family is refused, as the seed's typed method would not compile it.
pub async fn broadcast_call_event(
    ctx: &Context,
    tenant: &TenantId,
    event_type: EventType,
    data: Value,
) -> StoreResult<Report> {
    assert!(event_type.category() == "call", "broadcast_call_event takes call.* events, not {event_type}");
    publish(ctx, &Envelope::new(tenant.clone(), event_type, data), &Target::Tenant).await
}

/// The seed's `BroadcastChatMessage`: `chat.message` to a target (usually a user).
pub async fn broadcast_chat_message(
    ctx: &Context,
    tenant: &TenantId,
    target: &Target,
    data: Value,
) -> StoreResult<Report> {
    publish(ctx, &Envelope::new(tenant.clone(), EventType::ChatMessage, data), target).await
}
