//! `GET /v1/events`: the tenant's retained events after a position, so
//! back-end services catch up as WebSocket clients do (`subscribe` with
//! `since`), with the same all-or-nothing answer.
//!
//! `?since=<epoch>:<offset>` (from any event's `epoch` and `offset`, or a
//! previous page's `next`), `&events=call.*,chat.message` (topics, default
//! every event), `&limit=N` (1–1000, default 100). Without `since`: no
//! events, and the position to start from.
//!
//! The caller sees what it could have subscribed to: admins and services
//! every event of the tenant; agents and supervisors the tenant-wide ones
//! and those addressed to them. `recovered: false` (200, no events) when
//! the history no longer holds every event after `since` (older than it,
//! another epoch, or one too large to keep that the caller would see):
//! the caller reloads its state and goes on from `epoch`/`offset`.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard::event::{Position, Topic};

use crate::{ApiError, ApiState, Caller, store_error};

/// Most events one page holds.
pub const MAX_PAGE: usize = 1000;

fn invalid(field: &'static str, problem: impl Into<String>) -> ApiError {
    ApiError::InvalidField { field, problem: problem.into() }
}

fn parse_since(raw: &str) -> Result<Position, ApiError> {
    let shape = "must be <epoch>:<offset>, the epoch and offset of the last event you received";
    let (epoch, offset) = raw.split_once(':').ok_or_else(|| invalid("since", shape))?;
    if !Position::is_valid_epoch(epoch) {
        return Err(invalid("since", format!("{shape}; the epoch is letters and digits, at most 64")));
    }
    let offset = offset.parse().map_err(|_| invalid("since", format!("{shape}; the offset is a whole number")))?;
    Ok(Position { epoch: epoch.to_owned(), offset })
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
    Caller(who): Caller,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(extra) = query.keys().find(|k| !matches!(k.as_str(), "since" | "events" | "limit")) {
        return Err(invalid("query", format!("unknown parameter '{extra}'; expected since, events and limit")));
    }
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
    if limits.history_size == 0 {
        return Ok(Json(json!({"recovered": false, "events": [], "next": null})).into_response());
    }
    let tenant = &who.tenant_id;
    let after = since.as_ref().map_or(u64::MAX, |s| s.offset);
    let history = state.ctx.store.history(tenant, after, limits.history_size).await.map_err(store_error)?;
    let (epoch, top) = (history.epoch.clone(), history.top);
    let Some(since) = since else {
        return Ok(
            Json(json!({"recovered": true, "epoch": epoch, "offset": top, "events": [], "next": null})).into_response()
        );
    };
    let missed = history
        .missed(&since, |e| e.visible_to(who.role, &who.user_id) && topics.iter().any(|t| t.matches(e.event_type)));
    let Some(missed) = missed else {
        return Ok(Json(json!({"recovered": false, "epoch": epoch, "offset": top, "events": [], "next": null}))
            .into_response());
    };
    let more = missed.len() > limit;
    let page = &missed[..missed.len().min(limit)];
    let events: Vec<Value> = page
        .iter()
        .map(|(_, text)| serde_json::from_str(text).expect("the history holds the JSON it was given"))
        .collect();
    let next = match (more, page.last()) {
        (true, Some((offset, _))) => Value::String(format!("{epoch}:{offset}")),
        _ => Value::Null,
    };
    Ok(Json(json!({"recovered": true, "epoch": epoch, "offset": top, "events": events, "next": next})).into_response())
}
