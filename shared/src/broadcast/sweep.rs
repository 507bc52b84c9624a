//! The sweep of ghost connections: idle ones are probed, gone ones (and
//! those unreachable for too long) forgotten with their `presence.offline`.

use super::*;

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
#[tracing::instrument(name = "sweep", skip_all, fields(tenant_id = %tenant))]
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
            let outcome = ctx.connections_api.probe(&i.recipient.endpoint, &i.recipient.connection_id).await;
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
                tracing::warn!(connection_id = %id, %error, idle_secs = idle.idle.as_secs(),
                    "sweep: probe failed past CONNECTION_UNREACHABLE_SECS, connection forgotten");
                gone.push(id);
            }
            PostOutcome::Failed(error) => {
                report.failed += 1;
                tracing::warn!(connection_id = %id, %error, "sweep: probe failed, connection kept");
            }
            PostOutcome::Throttled => {
                report.failed += 1;
                tracing::debug!(connection_id = %id, "sweep: probe throttled, connection kept");
            }
        }
    }
    (report.alive, report.gone) = (alive.len(), gone.len() - report.unreachable);
    ctx.store.touch(tenant, &alive).await?;
    if !gone.is_empty() {
        tracing::info!(gone = gone.len(), "sweep: forgetting connections that left without $disconnect");
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
