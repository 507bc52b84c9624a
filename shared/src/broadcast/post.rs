//! Posting one fan-out: every recipient through `@connections`, paced to
//! the account's quota when API Gateway throttles, and what could not be
//! posted in the retry window handed on to queued chunk jobs.

use super::*;

/// What the posts of one fan-out came to.
pub(super) struct Posts {
    /// `delivered`, `gone` and `throttled` counted (`failed` is the caller's to say).
    pub(super) report: Report,
    /// Recipients not reached within the retry window: throttled to the
    /// end, or failed otherwise (a network error, a 5xx).
    pub(super) unsent: Vec<Recipient>,
    /// Connections found gone, for [`forget_stale`].
    pub(super) stale: Vec<ConnectionId>,
}

/// Posts `text` to each recipient, up to `FANOUT_CONCURRENCY` at once.
///
/// A post API Gateway throttles (429) is made again, at the pace
/// [`crate::connections_api::Pacer`] learns from the 429s, until
/// `FANOUT_RETRY_MS` has passed; what is still unsent then is returned for
/// the caller to hand on (a queued job, or the job's own retry), never
/// dropped.
///
/// `reached`, when given, is told each connection as its post is done
/// (delivered, or found gone), as it happens.
pub(super) async fn post_all(
    ctx: &Context,
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
                let outcome = ctx.connections_api.post(&r.endpoint, &r.connection_id, text.as_bytes()).await;
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
                tracing::warn!(connection_id = %recipient.connection_id, %error, "post failed");
                unsent.push(recipient);
            }
        }
    }
    if report.throttled > 0 {
        tracing::info!(throttled = report.throttled, unsent = unsent.len(), pace = ?ctx.pacer.rate(),
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
        match ctx.connections_api.post(endpoint, connection, data).await {
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
pub(super) async fn hand_on(
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
        tracing::warn!(unsent = unsent.len(), "posts not made and no events queue to hand them to");
        report.failed += unsent.len();
        return;
    };
    let parts = chunk_parts(&unsent, ctx.config.fanout_chunk_size.max(1), text.len());
    let bodies = chunk_jobs(event, target, &parts, from);
    match queues.send_all(url, &bodies).await {
        Ok(_) => {
            tracing::info!(recipients = unsent.len(), jobs = bodies.len(), "unsent posts handed to the events queue");
            report.requeued += unsent.len();
            crate::metrics::requeued(unsent.len());
        }
        Err(e) => {
            tracing::error!(unsent = unsent.len(), error = %e,
                "unsent posts could not be queued");
            report.failed += unsent.len();
        }
    }
}

/// Splits recipients into chunk jobs of at most `chunk_size` that each fit
/// in one SQS message beside the event (`event_bytes` of envelope): with
/// UUID user ids and `execute-api` endpoints a recipient is ~120 bytes, so
/// a thousand of them and a large event would not fit in one message, and
/// an oversize message can never be sent.
pub(super) fn chunk_parts(recipients: &[Recipient], chunk_size: usize, event_bytes: usize) -> Vec<&[Recipient]> {
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
pub(super) fn chunk_jobs(event: &Envelope, target: &Target, parts: &[&[Recipient]], from: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

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
}
