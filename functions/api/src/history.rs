//! `GET /v1/events`: the tenant's retained events after a position, so
//! back-end services catch up as WebSocket clients do (`subscribe` with
//! `since`), with the same all-or-nothing answer.
//!
//! `?since=<epoch>:<offset>:<id>` (from any event's `epoch`, `offset` and
//! `id`, or a previous page's `next`; `:<id>` may be left out, and then a
//! Redis rolled back in place cannot be caught), `&events=call.*,chat.message`
//! (topics, default every event), `&limit=N` (1–1000, default 100). A page
//! also stops at `RECOVERY_MAX_BYTES` of events (1 MiB), well under
//! Lambda's 6 MB response limit; `next` continues it. Without `since`: no
//! events, and the position to start from.
//!
//! The caller sees what it could have subscribed to: admins and services
//! every event of the tenant; agents and supervisors the tenant-wide ones
//! and those addressed to them. `recovered: false` (200, no events) when
//! the history cannot prove it holds every event after `since` (older
//! than it, another epoch, a Redis that restarted or failed over, an event
//! at the position that is not the one named, or one too large to keep
//! that the caller would see): the caller reloads its state and goes on
//! from `epoch`/`offset`/`event_id`. The read counts against the tenant's
//! requests per second by what it returns, in the same Redis round trip.
//!
//! `&channel=queue:support` reads that channel's own history instead (its
//! own positions; `since` from its events), for a caller its namespace
//! lets subscribe: the same page, the same all-or-nothing answer.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard::channel::Channel;
use switchboard::event::{Position, Since, Topic};
use switchboard::ids::Role;
use switchboard::namespaces::{Action, Refusal};
use switchboard::store::{Audience, HistoryQuery, HistoryRead, ReadStatus};

use crate::{ApiError, ApiState, Verified, store_error};

/// Most events one page holds.
pub const MAX_PAGE: usize = 1000;

fn invalid(field: &'static str, problem: impl Into<String>) -> ApiError {
    ApiError::InvalidField { field, problem: problem.into() }
}

fn parse_since(raw: &str) -> Result<Since, ApiError> {
    let shape = "must be <epoch>:<offset>:<id>, the epoch, offset and id of the last event you received";
    let mut parts = raw.splitn(3, ':');
    let (Some(epoch), Some(offset)) = (parts.next(), parts.next()) else { return Err(invalid("since", shape)) };
    if !Position::is_valid_epoch(epoch) {
        return Err(invalid("since", format!("{shape}; the epoch is letters and digits, at most 64")));
    }
    let offset = offset.parse().map_err(|_| invalid("since", format!("{shape}; the offset is a whole number")))?;
    let id = match parts.next() {
        None => None,
        Some(id) if Since::is_valid_id(id) => Some(id.to_owned()),
        Some(_) => return Err(invalid("since", format!("{shape}; the id is 1 to 128 printable characters, no ':'"))),
    };
    Ok(Since { epoch: epoch.to_owned(), offset, id })
}

fn parse_topics(raw: Option<&String>) -> Result<Vec<Topic>, ApiError> {
    let Some(raw) = raw else { return Ok(vec![Topic::ALL.parse().expect("* is a topic")]) };
    let (topics, unknown): (Vec<_>, Vec<_>) =
        raw.split(',').map(|t| (t, t.parse::<Topic>())).partition(|(_, r)| r.is_ok());
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|(t, _)| format!("'{t}'")).collect();
        return Err(invalid("events", format!("unknown event type {}", names.join(", "))));
    }
    Ok(topics.into_iter().filter_map(|(_, r)| r.ok()).collect())
}

/// `GET /v1/events`.
pub async fn read(
    State(state): State<ApiState>,
    Verified(who): Verified,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(extra) = query.keys().find(|k| !matches!(k.as_str(), "since" | "events" | "limit" | "channel")) {
        return Err(invalid(
            "query",
            format!("unknown parameter '{extra}'; expected since, events, limit and channel"),
        ));
    }
    let channel = match query.get("channel") {
        None => None,
        Some(raw) => {
            let channel = Channel::parse(raw).map_err(|e| invalid("channel", e.to_string()))?;
            state.ctx.config.channels.check(&who, Action::Subscribe, &channel).map_err(|refusal| match refusal {
                Refusal::UnknownNamespace { .. } => invalid("channel", refusal.to_string()),
                _ => ApiError::Forbidden(refusal.to_string()),
            })?;
            Some(channel)
        }
    };
    let topics = parse_topics(query.get("events"))?;
    let limit = match query.get("limit") {
        None => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(invalid("limit", format!("must be a number from 1 to {MAX_PAGE}, not '{l}'"))),
        },
    };
    let since = query.get("since").map(|s| parse_since(s)).transpose()?;
    let limits = &state.ctx.config.limits;
    let kept = match &channel {
        None => limits.history_size > 0,
        Some(c) => {
            limits.channel_history_size > 0 && state.ctx.config.channels.get(c.namespace()).is_some_and(|ns| ns.history)
        }
    };
    if !kept {
        return Ok(Json(json!({"recovered": false, "events": [], "next": null})).into_response());
    }
    let audience = match (&channel, who.role) {
        (Some(c), _) => Audience::Channel(c),
        (None, Role::Admin | Role::Service) => Audience::Everyone,
        (None, _) => Audience::User(&who.user_id),
    };
    let q = HistoryQuery { since: since.as_ref(), audience, max_events: limit, max_bytes: limits.recovery_max_bytes };
    let rate = limits.rate_limit_per_sec;
    let read = state
        .ctx
        .store
        .history(&who.tenant_id, &q, &topics, Some(rate))
        .await
        .map_err(store_error)?
        .ok_or(ApiError::RateLimited(rate))?;
    Ok(Json(page(&read)).into_response())
}

/// The answer: where the history stands, the events, and `next` when the
/// page stopped at its count or bytes.
fn page(read: &HistoryRead) -> Value {
    let (epoch, top, top_id) = (&read.epoch, read.top, &read.top_id);
    if read.status == ReadStatus::Lost {
        return json!({"recovered": false, "epoch": epoch, "offset": top, "event_id": top_id, "events": [], "next": null});
    }
    let events: Vec<Value> = read
        .envelopes()
        .map(|(_, text)| serde_json::from_str(&text).expect("the history holds the JSON it was given"))
        .collect();
    let next = match (read.status, events.last()) {
        (ReadStatus::Truncated, Some(last)) => {
            Value::String(format!("{epoch}:{}:{}", last["offset"], last["id"].as_str().unwrap_or_default()))
        }
        _ => Value::Null,
    };
    json!({"recovered": true, "epoch": epoch, "offset": top, "event_id": top_id, "events": events, "next": next})
}
