//! The legacy hub's EventWebhookBroadcaster: one call routes an event to every
//! WebSocket connection and every webhook that should have it.
//!
//! 1. Resolve the recipients — the target (tenant, user, connection)
//!    intersected with the subscriptions — and the tenant's webhooks, in one
//!    store round trip.
//! 2. Post the envelope to each connection through the endpoint stored with
//!    it, concurrently up to `FANOUT_CONCURRENCY`. A post API Gateway
//!    throttles (429) is made again at the pace the instance's
//!    [`crate::gateway::Pacer`] learns; what is still unsent after
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
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Context;
use crate::event::{Envelope, EventType};
use crate::gateway::PostOutcome;
use crate::ids::{ConnectionId, TenantId, UserId};
use crate::protocol::Target;
use crate::queue::QueueError;
use crate::store::{OfflineRefusal, Recipient, Record, Resolution, StoreError, StoreResult};
use crate::webhook::{Delivery, WebhookConfig};

pub use crate::protocol::Report;

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
    let text = serde_json::to_string(&*event).expect("an envelope is plain JSON");
    let record = Record { event_type: event.event_type, text: &text, id: &event.id, once };
    let resolved = ctx.store.record_and_resolve(&event.tenant_id, &record, target, limit).await?;
    if let Some(r) = &resolved {
        event.set_position(r.position.as_ref());
        if r.refused_whole().is_none() {
            crate::metrics::event_published(event.event_type.as_str());
        }
    }
    Ok(resolved)
}

/// Routes `event` to recipients already resolved — by [`Store::resolve`],
/// or in the same round trip as the change that caused the event.
///
/// [`Store::resolve`]: crate::store::Store::resolve
pub async fn deliver(
    ctx: &Context,
    event: &Envelope,
    target: &Target,
    resolved: Resolution,
) -> BroadcastResult<Report> {
    let text = serde_json::to_string(event).expect("an envelope is plain JSON");
    let Posts { mut report, unsent, stale } = post_all(ctx, &event.tenant_id, &text, resolved.recipients, None).await;
    hand_on(ctx, event, target, &text, unsent, "sync", &mut report).await;
    forget_stale(ctx, &event.tenant_id, stale).await?;
    let sent = Sent { queued: resolved.offline };
    finish(ctx, event, target, &text, sent, &resolved.webhooks, None, &mut report).await?;
    Ok(report)
}

/// What the posts of one fan-out came to.
struct Posts {
    /// `delivered`, `gone` and `throttled` counted (`failed` is the caller's to say).
    report: Report,
    /// Recipients not reached within the retry window: throttled to the
    /// end, or failed otherwise (a network error, a 5xx).
    unsent: Vec<Recipient>,
    /// Connections found gone, for [`forget_stale`].
    stale: Vec<ConnectionId>,
}

/// Posts `text` to each recipient, up to `FANOUT_CONCURRENCY` at once.
///
/// A post API Gateway throttles (429) is made again, at the pace
/// [`crate::gateway::Pacer`] learns from the 429s, until
/// `FANOUT_RETRY_MS` has passed; what is still unsent then is returned for
/// the caller to hand on (a queued job, or the job's own retry), never
/// dropped.
///
/// `reached`, when given, is told each connection as its post is done
/// (delivered, or found gone), as it happens.
async fn post_all(
    ctx: &Context,
    tenant: &TenantId,
    text: &str,
    recipients: Vec<Recipient>,
    reached: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
) -> Posts {
    use futures::stream::FuturesUnordered;
    let tell = |id: &ConnectionId| {
        if let Some(reached) = reached {
            let _ = reached.send(id.as_str().to_owned());
        }
    };
    let mut report = Report { matched: recipients.len(), ..Report::default() };
    let started = std::time::Instant::now();
    let deadline = started + ctx.config.limits.fanout_retry_window;
    let concurrency = ctx.config.limits.fanout_concurrency.max(1);
    let mut waiting: std::collections::VecDeque<Recipient> = recipients.into();
    let mut running = FuturesUnordered::new();
    let (mut stale, mut unsent, mut failed) = (Vec::new(), Vec::new(), 0);
    loop {
        while running.len() < concurrency {
            let Some(r) = waiting.pop_front() else { break };
            if std::time::Instant::now() >= deadline {
                unsent.push(r);
                continue;
            }
            running.push(async move {
                if !ctx.pacer.turn(deadline).await {
                    return (r, None);
                }
                let outcome = ctx.gateway.post(&r.endpoint, &r.connection_id, text.as_bytes()).await;
                (r, Some(outcome))
            });
        }
        let Some((recipient, outcome)) = running.next().await else { break };
        match outcome {
            // Its turn would have come after the deadline.
            None => unsent.push(recipient),
            Some(PostOutcome::Delivered) => {
                report.delivered += 1;
                ctx.pacer.accepted();
                tell(&recipient.connection_id);
            }
            Some(PostOutcome::Gone) => {
                report.gone += 1;
                tell(&recipient.connection_id);
                stale.push(recipient.connection_id);
            }
            Some(PostOutcome::Throttled) => {
                report.throttled += 1;
                ctx.pacer.throttled();
                waiting.push_back(recipient);
            }
            Some(PostOutcome::Failed(error)) => {
                failed += 1;
                tracing::warn!(tenant_id = %tenant, connection_id = %recipient.connection_id, %error, "post failed");
                unsent.push(recipient);
            }
        }
    }
    if report.throttled > 0 {
        tracing::info!(tenant_id = %tenant, throttled = report.throttled, unsent = unsent.len(), pace = ?ctx.pacer.rate(),
            "posts throttled by the @connections quota");
    }
    crate::metrics::posts(report.delivered, report.gone, failed, report.throttled, started.elapsed());
    Posts { report, unsent, stale }
}

/// One post, made again while API Gateway throttles it, at the pacer's
/// pace, for at most `FANOUT_RETRY_MS` (a recovery's replay, a sync): the
/// outcome of the last attempt.
pub async fn post_one(ctx: &Context, endpoint: &str, connection: &ConnectionId, data: &[u8]) -> PostOutcome {
    let deadline = std::time::Instant::now() + ctx.config.limits.fanout_retry_window;
    loop {
        if !ctx.pacer.turn(deadline).await {
            return PostOutcome::Throttled;
        }
        match ctx.gateway.post(endpoint, connection, data).await {
            PostOutcome::Throttled if std::time::Instant::now() < deadline => ctx.pacer.throttled(),
            PostOutcome::Delivered => {
                ctx.pacer.accepted();
                return PostOutcome::Delivered;
            }
            other => return other,
        }
    }
}

/// Hands the recipients a synchronous fan-out could not reach to a queued
/// job (chunk jobs on the events queue, each posting to claimed
/// recipients only, so nobody gets the event twice); without an events
/// queue, or when SQS refuses them, they are `failed` in the report.
async fn hand_on(
    ctx: &Context,
    event: &Envelope,
    target: &Target,
    text: &str,
    unsent: Vec<Recipient>,
    from: &str,
    report: &mut Report,
) {
    if unsent.is_empty() {
        return;
    }
    let Some((queues, url)) = ctx.events_queue() else {
        tracing::warn!(tenant_id = %event.tenant_id, event_id = %event.id, unsent = unsent.len(),
            "posts not made and no events queue to hand them to");
        report.failed += unsent.len();
        return;
    };
    let parts = chunk_parts(&unsent, ctx.config.fanout_chunk_size.max(1), text.len());
    let bodies = chunk_jobs(event, target, &parts, from);
    match queues.send_all(url, &bodies).await {
        Ok(_) => {
            tracing::info!(tenant_id = %event.tenant_id, event_id = %event.id, recipients = unsent.len(),
                jobs = bodies.len(), "unsent posts handed to the events queue");
            report.requeued += unsent.len();
            crate::metrics::requeued(unsent.len());
        }
        Err(e) => {
            tracing::error!(tenant_id = %event.tenant_id, event_id = %event.id, unsent = unsent.len(), error = %e,
                "unsent posts could not be queued");
            report.failed += unsent.len();
        }
    }
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
        tracing::info!(tenant_id = %tenant, user_id = %gone.user_id, "user went offline (stale connections)");
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
    webhooks: &[String],
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
                tracing::warn!(tenant_id = %tenant, user_id = %user, event_id = %event.id, ?refusal, "not queued offline");
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
    tracing::debug!(tenant_id = %tenant, event_id = %event.id, event_type = %event.event_type, ?report, "published");
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
    webhooks: &[String],
    claims: Option<&Claims<'_>>,
) -> BroadcastResult<(usize, usize)> {
    let mut wanted: Vec<WebhookConfig> = crate::store::parse_listed_webhooks(&event.tenant_id, webhooks)
        .into_iter()
        .filter(|h| h.wants(event.event_type))
        .collect();
    if wanted.is_empty() {
        return Ok((0, 0));
    }
    if let Some(claims) = claims {
        let members: Vec<String> = wanted.iter().map(|h| format!("webhook:{}", h.id)).collect();
        let fresh = claims.claim(ctx, &members).await?;
        let mut keep = fresh.into_iter();
        wanted.retain(|_| keep.next().unwrap_or(false));
    }
    let members = || wanted.iter().map(|h| format!("webhook:{}", h.id)).collect::<Vec<String>>();
    let n = wanted.len();
    let Some((queues, url)) = ctx.webhook_queue() else {
        tracing::error!(tenant_id = %event.tenant_id, event_id = %event.id, webhooks = n,
            "webhooks match but WEBHOOK_QUEUE_URL is not set: deliveries not queued");
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
            tracing::error!(tenant_id = %event.tenant_id, event_id = %event.id, error = %e, "webhook deliveries not queued");
            if let Some(claims) = claims {
                // Let a retry of the job queue them.
                claims.release(members());
                return Err(e.into());
            }
            // A synchronous publish has no job to retry: the deliveries go to
            // the dead-letter queue (replayable) rather than nowhere. Some of
            // them may have been queued after all; receivers de-duplicate by
            // `webhook-id`.
            dead_letter_unqueued(ctx, event, &bodies, &e.to_string()).await;
            Ok((0, n))
        }
    }
}

/// Puts webhook deliveries that could not be queued into the webhook
/// dead-letter queue, shaped like the `webhook` function's dead letters;
/// logs each one that cannot be put there either, so none vanishes unseen.
async fn dead_letter_unqueued(ctx: &Context, event: &Envelope, bodies: &[String], why: &str) {
    let now = crate::time::now_millis();
    let letters: Vec<String> = bodies
        .iter()
        .map(|b| {
            let delivery: Value = serde_json::from_str(b).unwrap_or(Value::Null);
            json!({"delivery": delivery, "attempts": 0, "error": format!("not queued: {why}"), "dead_at": now})
                .to_string()
        })
        .collect();
    let kept = match ctx.webhook_dlq() {
        Some((queues, dlq)) => queues.send_all(dlq, &letters).await.unwrap_or(0),
        None => 0,
    };
    crate::metrics::dead_lettered("webhooks", kept);
    if kept < bodies.len() {
        for body in bodies {
            tracing::error!(tenant_id = %event.tenant_id, event_id = %event.id, delivery = %body,
                "webhook delivery neither queued nor dead-lettered");
        }
    } else {
        tracing::warn!(tenant_id = %event.tenant_id, event_id = %event.id, deliveries = kept,
            "webhook deliveries dead-lettered: the webhook queue refused them");
    }
}

/// A queued fan-out: the body of an events-queue message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutJob {
    /// The event, id included (it keys the claims).
    pub event: Envelope,
    /// Recipients inside the event's tenant.
    #[serde(default)]
    pub target: Target,
    /// Set on the parts of a split broadcast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Chunk>,
}

/// One part of a split broadcast: recipients resolved by the job that split it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// 0-based.
    pub index: usize,
    /// How many parts.
    pub of: usize,
    /// `[connection id, user id, endpoint]` each.
    pub recipients: Vec<(ConnectionId, UserId, String)>,
    /// This chunk job's own name (it keys its claims beside the event's
    /// id); empty in jobs queued before it existed (the index then).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub job: String,
}

/// Why a queued job should be retried.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// SQS failed: the job's chunks or webhooks were not queued.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Some posts failed; those recipients were released for the retry.
    #[error("{0} post(s) failed; the job will be retried for them")]
    Posts(usize),
}

impl From<BroadcastError> for JobError {
    fn from(e: BroadcastError) -> Self {
        match e {
            BroadcastError::Store(e) => JobError::Store(e),
            BroadcastError::Queue(e) => JobError::Queue(e),
        }
    }
}

/// The claims of one queued fan-out job: what it claimed, sent and gave
/// back, settled in one store round trip when the job's attempt ends.
struct Claims<'a> {
    tenant: &'a TenantId,
    /// The event's id, with `:<chunk job id>` for a chunk job.
    job: String,
    settings: crate::store::ClaimSettings,
    /// Members this attempt sent to (or found gone), and gave back.
    sent: std::sync::Mutex<Vec<String>>,
    released: std::sync::Mutex<Vec<String>>,
    /// Members another attempt holds: this one cannot finish the job.
    busy: std::sync::atomic::AtomicUsize,
}

impl<'a> Claims<'a> {
    fn new(ctx: &Context, tenant: &'a TenantId, job: String) -> Self {
        let limits = &ctx.config.limits;
        let settings = crate::store::ClaimSettings {
            // Longer than an attempt posts; far shorter than the queue's
            // visibility timeout, after which a killed attempt's job comes back.
            lease: limits.fanout_retry_window.mul_f64(1.5) + std::time::Duration::from_secs(1),
            ttl: limits.fanout_claim_ttl,
            max_live_jobs: limits.fanout_max_jobs,
        };
        Claims {
            tenant,
            job,
            settings,
            sent: Default::default(),
            released: Default::default(),
            busy: Default::default(),
        }
    }

    /// Claims `members`: true for each this attempt may send to.
    async fn claim(&self, ctx: &Context, members: &[String]) -> StoreResult<Vec<bool>> {
        let claimed = ctx.store.fanout_claim(self.tenant, &self.job, members, &self.settings).await?;
        let busy = claimed.iter().filter(|c| **c == crate::store::Claim::Busy).count();
        self.busy.fetch_add(busy, std::sync::atomic::Ordering::Relaxed);
        Ok(claimed.into_iter().map(|c| c == crate::store::Claim::Mine).collect())
    }

    fn sent(&self, members: impl IntoIterator<Item = String>) {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).extend(members);
    }

    /// Marks `members` sent in the store now (one round trip); when that
    /// fails they are marked with the rest when the attempt ends.
    async fn mark_sent(&self, ctx: &Context, members: &[String]) {
        let settled = crate::store::Settled::Partly { sent: members, released: &[] };
        if let Err(e) = ctx.store.fanout_settle(self.tenant, &self.job, settled, &self.settings).await {
            tracing::warn!(tenant_id = %self.tenant, job = %self.job, error = %e, "claims not marked sent yet");
            self.sent(members.iter().cloned());
        }
    }

    fn release(&self, members: impl IntoIterator<Item = String>) {
        self.released.lock().unwrap_or_else(|p| p.into_inner()).extend(members);
    }

    fn busy(&self) -> usize {
        self.busy.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends the attempt: the job's claims deleted when it `finished`, else
    /// what it sent marked and what it did not reach given back.
    async fn settle(&self, ctx: &Context, finished: bool) -> StoreResult<()> {
        let sent = std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()));
        let released = std::mem::take(&mut *self.released.lock().unwrap_or_else(|p| p.into_inner()));
        let settled = if finished {
            crate::store::Settled::Finished
        } else {
            crate::store::Settled::Partly { sent: &sent, released: &released }
        };
        ctx.store.fanout_settle(self.tenant, &self.job, settled, &self.settings).await
    }
}

/// Runs one queued fan-out job: splits a large broadcast into chunk jobs,
/// or posts (to claimed recipients only). An error means "retry this job".
pub async fn run_job(ctx: &Context, job: &FanoutJob) -> Result<Report, JobError> {
    let mut event = job.event.clone();
    let job_name = match &job.chunk {
        Some(chunk) if chunk.job.is_empty() => format!("{}:{}", event.id, chunk.index),
        Some(chunk) => format!("{}:{}", event.id, chunk.job),
        None => event.id.clone(),
    };
    let tenant = event.tenant_id.clone();
    let claims = Claims::new(ctx, &tenant, job_name);
    let outcome = attempt(ctx, job, &mut event, &claims).await;
    // The claims settle in one round trip whatever happened: deleted when
    // the job is done, else what was sent marked and the rest given back.
    let done = matches!(&outcome, Ok(r) if r.failed == 0) && claims.busy() == 0;
    let settled = claims.settle(ctx, done).await;
    let mut report = outcome?;
    settled?;
    // Recipients another attempt holds: the job ends only when they are settled.
    report.failed += claims.busy();
    if report.failed > 0 {
        return Err(JobError::Posts(report.failed));
    }
    Ok(report)
}

/// One attempt of a queued job, its claims taken in `claims`.
async fn attempt(ctx: &Context, job: &FanoutJob, event: &mut Envelope, claims: &Claims<'_>) -> BroadcastResult<Report> {
    if let Some(chunk) = &job.chunk {
        // The job that split the broadcast (or handed its posts on)
        // recorded the event: its copy in the chunk carries the position.
        let text = serde_json::to_string(&*event).expect("an envelope is plain JSON");
        let recipients = chunk
            .recipients
            .iter()
            .map(|(c, u, e)| Recipient { connection_id: c.clone(), user_id: u.clone(), endpoint: e.clone() })
            .collect();
        let (mut report, unsent) = post_claimed(ctx, claims, &text, recipients).await?;
        carry_on(ctx, claims, event, &job.target, &text, unsent, &mut report).await;
        return Ok(report);
    }
    let resolved = record(ctx, event, &job.target, None, true)
        .await?
        .ok_or_else(|| StoreError::Corrupt("an unlimited resolve was refused".into()))?;
    let event = &*event;
    let text = serde_json::to_string(event).expect("an envelope is plain JSON");
    let chunk_size = ctx.config.fanout_chunk_size.max(1);
    let mut report = match ctx.events_queue() {
        Some((queues, url)) if resolved.recipients.len() > chunk_size => {
            let parts = chunk_parts(&resolved.recipients, chunk_size, text.len());
            let of = parts.len();
            let bodies = chunk_jobs(event, &job.target, &parts, "");
            queues.send_all(url, &bodies).await?;
            tracing::info!(tenant_id = %event.tenant_id, event_id = %event.id, recipients = resolved.recipients.len(), chunks = of, "broadcast split");
            Report { matched: resolved.recipients.len(), chunks: of, ..Report::default() }
        }
        _ => {
            let (mut report, unsent) = post_claimed(ctx, claims, &text, resolved.recipients).await?;
            carry_on(ctx, claims, event, &job.target, &text, unsent, &mut report).await;
            report
        }
    };
    // Webhooks and the offline queue do not wait for every post: a
    // recipient that keeps failing must not hold back the event's webhooks
    // (claimed, so the retry of the job queues them once).
    let sent = Sent { queued: resolved.offline };
    finish(ctx, event, &job.target, &text, sent, &resolved.webhooks, Some(claims), &mut report).await?;
    Ok(report)
}

/// Splits recipients into chunk jobs of at most `chunk_size` that each fit
/// in one SQS message beside the event (`event_bytes` of envelope): with
/// UUID user ids and `execute-api` endpoints a recipient is ~120 bytes, so
/// a thousand of them and a large event would not fit in one message, and
/// an oversize message can never be sent.
fn chunk_parts(recipients: &[Recipient], chunk_size: usize, event_bytes: usize) -> Vec<&[Recipient]> {
    // JSON overhead of the job and of each `["conn","user","endpoint"],`, with room to spare.
    const JOB_OVERHEAD: usize = 4096;
    const PER_RECIPIENT_OVERHEAD: usize = 16;
    let budget = crate::queue::MAX_MESSAGE_BYTES.saturating_sub(event_bytes + JOB_OVERHEAD);
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in recipients.iter().enumerate() {
        let size =
            r.connection_id.as_str().len() + r.user_id.as_str().len() + r.endpoint.len() + PER_RECIPIENT_OVERHEAD;
        if i > start && (i - start == chunk_size || bytes + size > budget) {
            parts.push(&recipients[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < recipients.len() {
        parts.push(&recipients[start..]);
    }
    parts
}

/// A handed-on part's job name: 16 hex digits of `from` and the index;
/// empty (the index names it) for a split's parts.
fn chunk_name(from: &str, index: usize) -> String {
    if from.is_empty() {
        return String::new();
    }
    let digest = Sha256::digest(format!("{from}/{index}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The events-queue message bodies of a split broadcast, one per part.
///
/// Each part's job is named (its claims are keyed by the name): the parts
/// of a split by their index, so a split made again (a retried job) claims
/// the same; parts handed on by a job (`from`: its name) or by a
/// synchronous publish (`from`: `sync`) by a digest of where they came
/// from and their index.
fn chunk_jobs(event: &Envelope, target: &Target, parts: &[&[Recipient]], from: &str) -> Vec<String> {
    let of = parts.len();
    parts
        .iter()
        .enumerate()
        .map(|(index, part)| {
            let recipients =
                part.iter().map(|r| (r.connection_id.clone(), r.user_id.clone(), r.endpoint.clone())).collect();
            let chunk = FanoutJob {
                event: event.clone(),
                target: target.clone(),
                chunk: Some(Chunk { index, of, recipients, job: chunk_name(from, index) }),
            };
            serde_json::to_string(&chunk).expect("plain JSON")
        })
        .collect()
}

/// Claims the recipients and posts to those claimed now. What was sent is
/// marked in the store as it goes, every [`SETTLE_EVERY`] (so an attempt
/// killed mid-way repeats at most that much when its job comes back); what
/// was not reached is given back when the attempt ends. Then the stale
/// ones are forgotten. Returns the report and the recipients not reached.
async fn post_claimed(
    ctx: &Context,
    claims: &Claims<'_>,
    text: &str,
    recipients: Vec<Recipient>,
) -> BroadcastResult<(Report, Vec<Recipient>)> {
    let members: Vec<String> = recipients.iter().map(|r| r.connection_id.as_str().to_owned()).collect();
    let fresh = claims.claim(ctx, &members).await?;
    let mut fresh = fresh.into_iter();
    let mine: Vec<Recipient> = recipients.into_iter().filter(|_| fresh.next().unwrap_or(false)).collect();
    let (reached, mut sent) = tokio::sync::mpsc::unbounded_channel::<String>();
    let done = tokio::sync::Notify::new();
    let settler = async {
        let mut ticks = tokio::time::interval(SETTLE_EVERY);
        ticks.tick().await;
        let mut posting = true;
        while posting {
            tokio::select! {
                _ = ticks.tick() => {}
                () = done.notified() => posting = false,
            }
            let mut batch = Vec::new();
            while let Ok(id) = sent.try_recv() {
                batch.push(id);
            }
            // The last of them settle with the attempt, in its one round trip.
            if !posting {
                claims.sent(batch);
            } else if !batch.is_empty() {
                claims.mark_sent(ctx, &batch).await;
            }
        }
    };
    let posting = async {
        let posts = post_all(ctx, claims.tenant, text, mine, Some(&reached)).await;
        done.notify_one();
        posts
    };
    let (Posts { report, unsent, stale }, ()) = tokio::join!(posting, settler);
    claims.release(unsent.iter().map(|r| r.connection_id.as_str().to_owned()));
    forget_stale(ctx, claims.tenant, stale).await?;
    Ok((report, unsent))
}

/// How often a queued job's attempt marks what it has sent.
const SETTLE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// What a queued job does with the recipients it did not reach (released
/// already): when it made progress, a new job takes them (a fresh start
/// of the queue's receive count: a broadcast paced by the quota must not
/// be dead-lettered for taking many windows); when it made none, they are
/// `failed` and the job itself is retried, so one that can never be sent
/// ends in the dead-letter queue.
async fn carry_on(
    ctx: &Context,
    claims: &Claims<'_>,
    event: &Envelope,
    target: &Target,
    text: &str,
    unsent: Vec<Recipient>,
    report: &mut Report,
) {
    if unsent.is_empty() {
        return;
    }
    if report.delivered + report.gone > 0 {
        hand_on(ctx, event, target, text, unsent, &claims.job, report).await;
    } else {
        report.failed += unsent.len();
    }
}

/// Why a caller's publish did not go out.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The caller's role may not publish this event to this target.
    #[error("{0}")]
    Forbidden(String),
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

/// A publish on behalf of a verified caller (the `publish` action and
/// `POST /v1/events`): the role check, then a new event in the caller's own
/// tenant. With `limit`, the publish first counts against the tenant's
/// requests per second, in the same store round trip as the resolve.
/// Returns the event's id and the report.
pub async fn publish_as(
    ctx: &Context,
    who: &crate::auth::Identity,
    event_type: EventType,
    target: &Target,
    data: Value,
    limit: Option<u32>,
) -> Result<(String, Report), PublishError> {
    who.role.may_publish(event_type, target).map_err(PublishError::Forbidden)?;
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

/// Most idle connections of one tenant one sweep probes; the rest wait for
/// the next (those found alive go to the back of the line).
pub const SWEEP_BATCH: usize = 1000;

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Idle connections probed.
    pub probed: usize,
    /// Found alive (a client that only listens): active again.
    pub alive: usize,
    /// Found gone and forgotten, with their `presence.offline`.
    pub gone: usize,
    /// The probe failed: kept, probed again next time.
    pub failed: usize,
    /// The probe failed and the connection had been silent past
    /// `CONNECTION_UNREACHABLE_SECS`: forgotten as gone.
    #[serde(default)]
    pub unreachable: usize,
}

impl std::ops::AddAssign for SweepReport {
    fn add_assign(&mut self, o: SweepReport) {
        self.probed += o.probed;
        self.alive += o.alive;
        self.gone += o.gone;
        self.failed += o.failed;
        self.unreachable += o.unreachable;
    }
}

/// Forgets the tenant's ghost connections: those whose client sent
/// nothing for `CONNECTION_IDLE_SECS` are probed (`GET @connections`, no
/// frame sent); the gone ones leave like a stale post's, announcing
/// `presence.offline` for users left without a connection, so such a user
/// is queued for offline again and no longer reported online. A probe
/// that fails is tried again next sweep, until the connection has been
/// silent for `CONNECTION_UNREACHABLE_SECS`: then it counts as gone too
/// (its endpoint died with the instance that held it, say), so no record
/// keeps a user "online" for good and their messages go to their queue.
pub async fn sweep(ctx: &Context, tenant: &TenantId) -> BroadcastResult<SweepReport> {
    let limits = &ctx.config.limits;
    let idle = ctx.store.idle_connections(tenant, limits.connection_idle, SWEEP_BATCH).await?;
    let mut report = SweepReport { probed: idle.len(), ..SweepReport::default() };
    let deadline = std::time::Instant::now() + limits.fanout_retry_window;
    let outcomes: Vec<_> = futures::stream::iter(idle)
        .map(|i| async move {
            // Probes spend the @connections quota as posts do.
            if !ctx.pacer.turn(deadline).await {
                return (i, PostOutcome::Throttled);
            }
            let outcome = ctx.gateway.probe(&i.recipient.endpoint, &i.recipient.connection_id).await;
            match outcome {
                PostOutcome::Throttled => ctx.pacer.throttled(),
                PostOutcome::Delivered | PostOutcome::Gone => ctx.pacer.accepted(),
                PostOutcome::Failed(_) => {}
            }
            (i, outcome)
        })
        .buffer_unordered(limits.fanout_concurrency)
        .collect()
        .await;
    let (mut alive, mut gone) = (Vec::new(), Vec::new());
    for (idle, outcome) in outcomes {
        let id = idle.recipient.connection_id;
        match outcome {
            PostOutcome::Delivered => alive.push(id),
            PostOutcome::Gone => gone.push(id),
            PostOutcome::Failed(error) if idle.idle >= limits.connection_unreachable => {
                report.unreachable += 1;
                tracing::warn!(tenant_id = %tenant, connection_id = %id, %error, idle_secs = idle.idle.as_secs(),
                    "sweep: probe failed past CONNECTION_UNREACHABLE_SECS, connection forgotten");
                gone.push(id);
            }
            PostOutcome::Failed(error) => {
                report.failed += 1;
                tracing::warn!(tenant_id = %tenant, connection_id = %id, %error, "sweep: probe failed, connection kept");
            }
            PostOutcome::Throttled => {
                report.failed += 1;
                tracing::debug!(tenant_id = %tenant, connection_id = %id, "sweep: probe throttled, connection kept");
            }
        }
    }
    (report.alive, report.gone) = (alive.len(), gone.len() - report.unreachable);
    ctx.store.touch(tenant, &alive).await?;
    if !gone.is_empty() {
        tracing::info!(tenant_id = %tenant, gone = gone.len(), "sweep: forgetting connections that left without $disconnect");
    }
    forget_stale(ctx, tenant, gone).await?;
    Ok(report)
}

/// [`sweep`] for every tenant; one tenant's failure is logged and does not
/// stop the others (the first error is returned after all were tried).
pub async fn sweep_all(ctx: &Context) -> BroadcastResult<SweepReport> {
    let mut total = SweepReport::default();
    let mut first_error = None;
    for tenant in ctx.store.tenants().await? {
        match sweep(ctx, &tenant).await {
            Ok(r) => total += r,
            Err(e) => {
                tracing::error!(tenant_id = %tenant, error = %e, "sweep failed");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// A user's `presence.online` / `presence.offline` to the tenant's
/// subscribers: `event` and `resolved` are what the register or unregister
/// that changed the user's presence recorded and returned with it.
pub async fn announce_presence(ctx: &Context, event: &Envelope, resolved: Resolution) -> BroadcastResult<Report> {
    deliver(ctx, event, &Target::Tenant, resolved).await
}

/// The legacy hub's `BroadcastAgentState`: `agent.state.changed` to the whole tenant.
pub async fn broadcast_agent_state(ctx: &Context, tenant: &TenantId, data: Value) -> BroadcastResult<Report> {
    publish(ctx, &Envelope::new(tenant.clone(), EventType::AgentStateChanged, data), &Target::Tenant).await
}

/// The legacy hub's `BroadcastCallEvent`: a `call.*` event to the whole tenant.
/// Any other family is refused, as the legacy hub's typed method would not compile it.
pub async fn broadcast_call_event(
    ctx: &Context,
    tenant: &TenantId,
    event_type: EventType,
    data: Value,
) -> BroadcastResult<Report> {
    assert!(event_type.category() == "call", "broadcast_call_event takes call.* events, not {event_type}");
    publish(ctx, &Envelope::new(tenant.clone(), event_type, data), &Target::Tenant).await
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
    use super::*;

    #[test]
    fn chunk_jobs_of_a_production_sized_broadcast_fit_in_sqs_messages_and_batches() {
        // 10,000 recipients shaped as in AWS: 16-byte connection ids, UUID
        // users, execute-api endpoints; a 100 KB event.
        let event =
            Envelope::new("acme".parse().unwrap(), EventType::SystemNotification, json!({"text": "x".repeat(100_000)}));
        let text = serde_json::to_string(&event).unwrap();
        let recipients: Vec<Recipient> = (0..10_000)
            .map(|i| Recipient {
                connection_id: format!("Ab{i:012}Cd=").parse().unwrap(),
                user_id: uuid::Uuid::new_v4().to_string().parse().unwrap(),
                endpoint: "https://abcd1234ef.execute-api.eu-west-1.amazonaws.com/production".into(),
            })
            .collect();
        let parts = chunk_parts(&recipients, 1000, text.len());
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 10_000, "every recipient in one part");
        assert!(parts.iter().all(|p| p.len() <= 1000));
        let bodies = chunk_jobs(&event, &Target::Tenant, &parts, "");
        let largest = bodies.iter().map(String::len).max().unwrap();
        assert!(largest <= crate::queue::MAX_MESSAGE_BYTES, "a chunk job of {largest} bytes");
        let (batches, oversize) = crate::queue::batches(&bodies);
        assert_eq!(oversize, 0);
        for b in &batches {
            assert!(b.iter().map(|s| s.len()).sum::<usize>() <= crate::queue::MAX_BATCH_BYTES);
        }
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), bodies.len());
        assert!(batches.len() > 1, "ten chunk jobs of this size need more than one batch");
    }

    #[test]
    fn delivery_ids_are_stable_per_event_and_webhook() {
        let a = super::delivery_id("0199-event", "wh_1");
        assert_eq!(a, super::delivery_id("0199-event", "wh_1"), "a retried fan-out makes the same id");
        assert_ne!(a, super::delivery_id("0199-event", "wh_2"));
        assert_ne!(a, super::delivery_id("0199-other", "wh_1"));
        assert!(a.starts_with("msg_") && a.len() == 36, "{a}");
    }
}
