//! A batch publish: several events of one tenant at once, and each
//! connection reached by any of them gets **one** frame carrying all of
//! its events, `{"type":"batch","events":[...]}`, in publish order (a
//! connection that gets one event of the batch gets it as a plain
//! envelope). API Gateway bills each post as a message and counts it
//! against the account's `@connections` quota, so a batch of 20 events to
//! 1,000 connections is 1,000 posts, not 20,000.
//!
//! Each event is recorded and resolved as a single publish is (its
//! position, its offline queue, its webhooks); only the posts are shared.
//! A frame stays under API Gateway's 128 KB message: a connection whose
//! events are larger gets them in as few frames as fit. Connections with
//! the same events share one frame's text. Posts not made in the retry
//! window are handed on event by event, as a single publish's are.

use std::collections::BTreeMap;

use super::*;

pub use crate::protocol::MAX_BATCH;

/// Largest frame a batch posts: API Gateway's 128 KB message, less room
/// for the frame's own JSON.
const MAX_FRAME_BYTES: usize = 128 * 1024 - 64;

/// What one event of a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The event's id.
    pub event_id: String,
    /// Its fan-out (`delivered`: the connections its frame reached).
    pub report: Report,
}

/// The frames that carry `texts` (envelopes) to one connection, each with
/// how many of the texts it carries, in order: one plain envelope for one
/// event, else batch frames of at most [`MAX_FRAME_BYTES`] (an envelope
/// alone in its frame is sent plain).
pub fn frames(texts: &[&str]) -> Vec<(String, usize)> {
    let mut frames = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for text in texts {
        if !current.is_empty() && bytes + text.len() + 1 > MAX_FRAME_BYTES {
            frames.push((batch_frame(&current), current.len()));
            (current, bytes) = (Vec::new(), 0);
        }
        bytes += text.len() + 1;
        current.push(text);
    }
    if !current.is_empty() {
        frames.push((batch_frame(&current), current.len()));
    }
    frames
}

fn batch_frame(texts: &[&str]) -> String {
    if let [one] = texts {
        return (*one).to_owned();
    }
    format!("{{\"type\":\"batch\",\"events\":[{}]}}", texts.join(","))
}

/// Each connection's events (their indexes, in order), then the
/// connections with the same events together: one frame's text each.
fn groups<'a>(resolutions: impl Iterator<Item = &'a Resolution>) -> BTreeMap<Vec<usize>, Vec<Recipient>> {
    let mut per_connection: BTreeMap<ConnectionId, (Recipient, Vec<usize>)> = BTreeMap::new();
    for (i, resolved) in resolutions.enumerate() {
        if resolved.refused_whole().is_some() {
            continue;
        }
        for r in &resolved.recipients {
            per_connection.entry(r.connection_id.clone()).or_insert_with(|| (r.clone(), vec![])).1.push(i);
        }
    }
    let mut groups: BTreeMap<Vec<usize>, Vec<Recipient>> = BTreeMap::new();
    for (recipient, which) in per_connection.into_values() {
        groups.entry(which).or_default().push(recipient);
    }
    groups
}

/// Publishes `items` (events of one tenant, each with its target) as one
/// batch. With `limit`, the batch first counts `items.len()` requests
/// against the tenant's budget, all or none (`RateLimited`: nothing
/// published). Returns what each event did, in order.
pub async fn publish_batch(
    ctx: &Context,
    items: Vec<(Envelope, Target)>,
    limit: Option<u32>,
) -> Result<Vec<Published>, PublishError> {
    let Some(tenant) = items.first().map(|(e, _)| e.tenant_id.clone()) else { return Ok(vec![]) };
    debug_assert!(items.iter().all(|(e, _)| e.tenant_id == tenant), "one tenant per batch");
    if let Some(limit) = limit
        && !ctx.store.rate_limit_n(&tenant, limit, items.len() as u32).await?
    {
        return Err(PublishError::RateLimited(limit));
    }
    // Record and resolve each, in order (their positions follow it).
    let mut events = Vec::with_capacity(items.len());
    for (mut event, target) in items {
        let resolved = record(ctx, &mut event, &target, None, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an unlimited resolve was refused".into()))?;
        let text = serde_json::to_string(&event).expect("an envelope is plain JSON");
        events.push((event, target, resolved, text));
    }
    let groups = groups(events.iter().map(|(_, _, resolved, _)| resolved));
    let mut reports: Vec<Report> =
        events.iter().map(|(_, _, r, _)| Report { matched: r.recipients.len(), ..Report::default() }).collect();
    let mut stale = Vec::new();
    for (which, recipients) in groups {
        let texts: Vec<&str> = which.iter().map(|i| events[*i].3.as_str()).collect();
        let mut start = 0;
        for (frame, carried) in frames(&texts) {
            let in_frame = &which[start..start + carried];
            start += carried;
            let posts = post_all(ctx, &frame, recipients.clone(), None).await;
            for i in in_frame {
                let r = &mut reports[*i];
                r.delivered += posts.report.delivered;
                r.gone += posts.report.gone;
                r.throttled += posts.report.throttled;
                let (event, target, _, text) = &events[*i];
                hand_on(ctx, event, target, text, posts.unsent.clone(), "sync", r).await;
            }
            stale.extend(posts.stale);
        }
    }
    stale.sort();
    stale.dedup();
    forget_stale(ctx, &tenant, stale).await?;
    let mut out = Vec::with_capacity(events.len());
    for ((event, target, resolved, text), mut report) in events.into_iter().zip(reports) {
        if let Some(refusal) = resolved.refused_whole() {
            report.offline_refused = Some(refusal);
        } else {
            let sent = Sent { queued: resolved.offline };
            finish(ctx, &event, &target, &text, sent, &resolved.webhooks, None, &mut report).await?;
        }
        out.push(Published { event_id: event.id, report });
    }
    Ok(out)
}

/// [`publish_batch`] on behalf of a verified caller: every event checked
/// as [`publish_as`] checks one (its role, its channel's namespace) before
/// any is published; new events in the caller's own tenant.
pub async fn publish_batch_as(
    ctx: &Context,
    who: &crate::ids::Identity,
    requests: Vec<PublishRequest>,
    limit: Option<u32>,
) -> Result<Vec<Published>, PublishError> {
    for r in &requests {
        may_publish(ctx, who, r.event_type, &r.target)?;
    }
    let items = requests
        .into_iter()
        .map(|PublishRequest { event_type, target, data }| (Envelope::from_caller(who, event_type, data), target))
        .collect();
    publish_batch(ctx, items, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_is_a_plain_envelope_and_many_share_frames_under_the_limit() {
        assert_eq!(frames(&[r#"{"id":"a"}"#]), [(r#"{"id":"a"}"#.to_owned(), 1)]);
        assert_eq!(
            frames(&[r#"{"id":"a"}"#, r#"{"id":"b"}"#]),
            [(r#"{"type":"batch","events":[{"id":"a"},{"id":"b"}]}"#.to_owned(), 2)]
        );
        let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(50_000));
        let texts: Vec<&str> = vec![&big; 5];
        let out = frames(&texts);
        assert_eq!(out.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [2, 2, 1], "two per frame, then one");
        assert!(out.iter().all(|(f, _)| f.len() <= 128 * 1024));
        assert!(out[2].0.starts_with(r#"{"data""#), "a frame of one is the envelope itself");
        let parsed: serde_json::Value = serde_json::from_str(&out[0].0).unwrap();
        assert_eq!(parsed["events"].as_array().unwrap().len(), 2);
    }
}

/// A queued batch (`POST /v1/events?async=true` with `events`): the body of
/// an events-queue message that the `fanout` function runs as one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchJob {
    /// The events, each with its target, all of one tenant, in order.
    pub batch: Vec<FanoutJob>,
}

/// Runs a queued batch as [`publish_batch`] does (each connection one
/// frame), with a queued job's guarantees: each event recorded once
/// (a retry gets the same positions), each connection's frame and each
/// webhook delivery claimed before it is sent, so a retried, duplicated or
/// killed job reaches everyone once. An error means "retry this job".
pub async fn run_batch_job(ctx: &Context, job: &BatchJob) -> Result<Report, JobError> {
    let Some(first) = job.batch.first() else { return Ok(Report::default()) };
    let tenant = first.event.tenant_id.clone();
    if job.batch.iter().any(|j| j.event.tenant_id != tenant || j.chunk.is_some()) {
        return Err(JobError::Store(StoreError::Corrupt("a batch job holds one tenant's whole events".into())));
    }
    let claims = Claims::new(ctx, &tenant, format!("batch:{}", first.event.id));
    let outcome = batch_attempt(ctx, job, &claims).await;
    conclude(ctx, &claims, outcome).await
}

async fn batch_attempt(ctx: &Context, job: &BatchJob, claims: &Claims<'_>) -> Result<Report, JobError> {
    let mut events = Vec::with_capacity(job.batch.len());
    for item in &job.batch {
        let mut event = item.event.clone();
        let resolved = record(ctx, &mut event, &item.target, None, true)
            .await?
            .ok_or_else(|| StoreError::Corrupt("an unlimited resolve was refused".into()))?;
        let text = serde_json::to_string(&event).expect("an envelope is plain JSON");
        events.push((event, &item.target, resolved, text));
    }
    let mut reports: Vec<Report> =
        events.iter().map(|(_, _, r, _)| Report { matched: r.recipients.len(), ..Report::default() }).collect();
    for (which, recipients) in groups(events.iter().map(|(_, _, resolved, _)| resolved)) {
        let texts: Vec<&str> = which.iter().map(|i| events[*i].3.as_str()).collect();
        let mut start = 0;
        for (k, (frame, carried)) in frames(&texts).into_iter().enumerate() {
            let in_frame = &which[start..start + carried];
            start += carried;
            let suffix = if k == 0 { String::new() } else { format!("#{k}") };
            let (posted, unsent) = post_claimed_as(ctx, claims, &frame, recipients.clone(), &suffix).await?;
            for i in in_frame {
                let r = &mut reports[*i];
                r.delivered += posted.delivered;
                r.gone += posted.gone;
                r.throttled += posted.throttled;
                let (event, target, _, text) = &events[*i];
                carry_on(ctx, claims, event, target, text, unsent.clone(), r).await;
            }
        }
    }
    let mut total = Report::default();
    for ((event, target, resolved, text), mut report) in events.into_iter().zip(reports) {
        let sent = Sent { queued: resolved.offline };
        finish(ctx, &event, target, &text, sent, &resolved.webhooks, Some(claims), &mut report).await?;
        total += report;
    }
    Ok(total)
}
