//! Queued fan-out: the events queue's jobs (a broadcast, or a chunk of
//! one), each recipient claimed before its post (a lease, marked sent as
//! the posts go, deleted when the job ends), so a retried, duplicated or
//! killed job reaches everyone once.

use super::*;

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
pub(super) struct Claims<'a> {
    pub(super) tenant: &'a TenantId,
    /// The event's id, with `:<chunk job id>` for a chunk job.
    pub(super) job: String,
    settings: crate::store::ClaimSettings,
    /// Members this attempt sent to (or found gone), and gave back.
    sent: std::sync::Mutex<Vec<String>>,
    released: std::sync::Mutex<Vec<String>>,
    /// Members another attempt holds: this one cannot finish the job.
    busy: std::sync::atomic::AtomicUsize,
}

impl<'a> Claims<'a> {
    pub(super) fn new(ctx: &Context, tenant: &'a TenantId, job: String) -> Self {
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
    pub(super) async fn claim(&self, ctx: &Context, members: &[String]) -> StoreResult<Vec<bool>> {
        let claimed = ctx.store.fanout_claim(self.tenant, &self.job, members, &self.settings).await?;
        let busy = claimed.iter().filter(|c| **c == crate::store::Claim::Busy).count();
        self.busy.fetch_add(busy, std::sync::atomic::Ordering::Relaxed);
        Ok(claimed.into_iter().map(|c| c == crate::store::Claim::Mine).collect())
    }

    pub(super) fn sent(&self, members: impl IntoIterator<Item = String>) {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).extend(members);
    }

    /// Marks `members` sent in the store now (one round trip); when that
    /// fails they are marked with the rest when the attempt ends.
    async fn mark_sent(&self, ctx: &Context, members: &[String]) {
        let settled = crate::store::Settled::Partly { sent: members, released: &[] };
        if let Err(e) = ctx.store.fanout_settle(self.tenant, &self.job, settled, &self.settings).await {
            tracing::warn!(job = %self.job, error = %e, "claims not marked sent yet");
            self.sent(members.iter().cloned());
        }
    }

    pub(super) fn release(&self, members: impl IntoIterator<Item = String>) {
        self.released.lock().unwrap_or_else(|p| p.into_inner()).extend(members);
    }

    pub(super) fn busy(&self) -> usize {
        self.busy.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends the attempt: the job's claims deleted when it `finished`, else
    /// what it sent marked and what it did not reach given back.
    pub(super) async fn settle(&self, ctx: &Context, finished: bool) -> StoreResult<()> {
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
    conclude(ctx, &claims, outcome).await
}

/// Ends a job's attempt. The claims settle in one round trip whatever
/// happened: deleted when the job is done, else what was sent marked and
/// the rest given back. An error means "retry this job": the attempt
/// failed, or posts failed, or another attempt holds some recipients (the
/// job ends only when they are settled).
pub(super) async fn conclude<E: Into<JobError>>(
    ctx: &Context,
    claims: &Claims<'_>,
    outcome: Result<Report, E>,
) -> Result<Report, JobError> {
    let done = matches!(&outcome, Ok(r) if r.failed == 0) && claims.busy() == 0;
    let settled = claims.settle(ctx, done).await;
    let mut report = outcome.map_err(Into::into)?;
    settled?;
    report.failed += claims.busy();
    if report.failed > 0 {
        return Err(JobError::Posts(report.failed));
    }
    Ok(report)
}

/// One attempt of a queued job, its claims taken in `claims`.
#[tracing::instrument(name = "event", skip_all, fields(tenant_id = %event.tenant_id, event_id = %event.id))]
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
            tracing::info!(recipients = resolved.recipients.len(), chunks = of, "broadcast split");
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
    post_claimed_as(ctx, claims, text, recipients, "").await
}

/// [`post_claimed`], each recipient's claim named its connection id and
/// `suffix` (a batch job's later frames to the same connection are claims of their own).
pub(super) async fn post_claimed_as(
    ctx: &Context,
    claims: &Claims<'_>,
    text: &str,
    recipients: Vec<Recipient>,
    suffix: &str,
) -> BroadcastResult<(Report, Vec<Recipient>)> {
    let members: Vec<String> = recipients.iter().map(|r| format!("{}{suffix}", r.connection_id)).collect();
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
                batch.push(id + suffix);
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
        let posts = post_all(ctx, text, mine, Some(&reached)).await;
        done.notify_one();
        posts
    };
    let (Posts { report, unsent, stale }, ()) = tokio::join!(posting, settler);
    claims.release(unsent.iter().map(|r| format!("{}{suffix}", r.connection_id)));
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
pub(super) async fn carry_on(
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
