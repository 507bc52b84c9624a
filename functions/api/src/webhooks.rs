//! `/v1/webhooks`: the tenant's webhook registry (admin tokens only).
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /v1/webhooks` `{name, url, events?, channels?, secret?, is_active?, retry_count?, timeout?}` | 201, the webhook **with its secret** (shown this once) |
//! | `GET /v1/webhooks` | `{"webhooks": [...]}` without secrets |
//! | `GET /v1/webhooks/{id}` | one, without secret |
//! | `PATCH /v1/webhooks/{id}` | the same fields, all optional; the updated webhook |
//! | `DELETE /v1/webhooks/{id}` | 204 |
//! | `POST /v1/webhooks/{id}/test` | a signed `system.notification` test delivery, now: `{success, status_code, duration_ms, error, response_body, delivery_id}` |
//! | `POST /v1/webhooks/{id}/rotate-secret` `{secret?, grace_period_secs?}` | the new secret (shown once); the old one signs too until `previous_secret_expires_at` (`grace_period_secs: 0` revokes every old secret now) |
//! | `GET /v1/webhooks/{id}/deliveries?limit=&before=&delivery_id=` | the attempt log, newest first: `{deliveries, next_cursor}` |
//! | `GET /v1/webhooks/{id}/stats` | the last hour (twelve 5-minute buckets of counters): attempts, deliveries, success rate, average latency |
//! | `POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry` | 202: the delivery is queued again (same `webhook-id`) |
//!
//! Every field is validated before anything is stored: the URL by the SSRF
//! guard (`https` to a public address in production), event names against
//! the catalogue, channel patterns (`queue:*`: only events published to a
//! matching channel; none: every event of its topics), `retry_count` 0–10, `timeout` 1–30 seconds. Secrets are
//! generated as `whsec_` + base64 of 32 random bytes when not given.

use axum::Json;
use axum::extract::Query;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use switchboard::channel::ChannelPattern;
use switchboard::event::{EventType, Topic};
use switchboard::ids::{Identity, Role};
use switchboard::ssrf::check_url_at_save;
use switchboard::store::{LogQuery, STATS_BUCKET_MS, STATS_BUCKETS};
use switchboard::webhook::{Delivery, LogEntry};
use switchboard::webhook::{Secret, WebhookConfig};

use crate::{ApiError, ApiState, Caller, JsonBody, store_error};

fn admin_only(who: &Identity) -> Result<(), ApiError> {
    match who.role {
        Role::Admin => Ok(()),
        other => Err(ApiError::Forbidden(format!("managing webhooks needs an admin token, not {}", other.as_str()))),
    }
}

fn field(field: &'static str, problem: impl Into<String>) -> ApiError {
    ApiError::InvalidField { field, problem: problem.into() }
}

/// A list of strings in `field`, each parsed; sorted, once each, and
/// `count` of them.
fn parsed_list<T>(name: &'static str, v: &Value, count: std::ops::RangeInclusive<usize>) -> Result<Vec<T>, ApiError>
where
    T: std::str::FromStr + Ord,
    T::Err: std::fmt::Display,
{
    let items = v.as_array().ok_or_else(|| field(name, "must be a list of strings"))?;
    if !count.contains(&items.len()) {
        return Err(field(
            name,
            format!("holds {} entries; {} to {} are accepted", items.len(), count.start(), count.end()),
        ));
    }
    let mut out = items
        .iter()
        .map(|item| {
            let text = item.as_str().ok_or_else(|| field(name, "must contain only strings"))?;
            text.parse::<T>().map_err(|e| field(name, e.to_string()))
        })
        .collect::<Result<Vec<T>, ApiError>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Applies the fields present in `body` to `hook`, validating each.
async fn apply(state: &ApiState, hook: &mut WebhookConfig, mut body: Map<String, Value>) -> Result<(), ApiError> {
    if let Some(v) = body.remove("name") {
        let name = v.as_str().map(str::trim).filter(|n| !n.is_empty() && n.len() <= 255);
        hook.name = name.ok_or_else(|| field("name", "must be a non-empty string of at most 255 bytes"))?.to_owned();
    }
    if let Some(v) = body.remove("url") {
        let raw = v.as_str().ok_or_else(|| field("url", "must be a string"))?;
        let max = state.ctx.config.webhooks.max_url_bytes;
        if raw.len() > max {
            return Err(field("url", format!("is {} bytes; at most {max} are accepted", raw.len())));
        }
        let url =
            check_url_at_save(raw, state.ctx.config.webhook_urls).await.map_err(|e| field("url", e.to_string()))?;
        hook.url = url.to_string();
    }
    if let Some(v) = body.remove("events") {
        hook.events = parsed_list::<Topic>("events", &v, 1..=200)?;
    }
    if let Some(v) = body.remove("channels") {
        // An empty list: every event of its topics, whatever its target.
        hook.channels = parsed_list::<ChannelPattern>("channels", &v, 0..=50)?;
    }
    if let Some(v) = body.remove("secret") {
        let raw = v.as_str().ok_or_else(|| field("secret", "must be a string"))?;
        hook.secret = Secret::parse(raw).map_err(|e| field("secret", e.to_string()))?.expose().to_owned();
    }
    if let Some(v) = body.remove("is_active") {
        hook.is_active = v.as_bool().ok_or_else(|| field("is_active", "must be true or false"))?;
    }
    if let Some(v) = body.remove("retry_count") {
        let max = switchboard::webhook::MAX_RETRY_COUNT;
        let n = v
            .as_u64()
            .filter(|n| *n <= u64::from(max))
            .ok_or_else(|| field("retry_count", format!("must be a whole number from 0 to {max}")))?;
        hook.retry_count = n as u32;
    }
    if let Some(v) = body.remove("timeout") {
        let n =
            v.as_u64().filter(|n| (1..=30).contains(n)).ok_or_else(|| field("timeout", "must be 1 to 30 seconds"))?;
        hook.timeout = n as u32;
    }
    if let Some(extra) = body.keys().next() {
        return Err(field("body", format!("unknown field '{extra}'")));
    }
    Ok(())
}

fn checked_id(id: &str) -> Result<(), ApiError> {
    if WebhookConfig::valid_id(id) {
        Ok(())
    } else {
        Err(field("id", "is not a webhook id (wh_ followed by 32 hex digits)"))
    }
}

/// The tenant's webhook `id`, for an admin: 403, 400 for a malformed id, 404.
async fn fetch(state: &ApiState, who: &Identity, id: &str) -> Result<WebhookConfig, ApiError> {
    admin_only(who)?;
    checked_id(id)?;
    state
        .ctx
        .store
        .webhook(&who.tenant_id, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::NotFound(format!("no webhook {id}")))
}

async fn save(state: &ApiState, who: &Identity, hook: &WebhookConfig) -> Result<(), ApiError> {
    state.ctx.store.save_webhook(&who.tenant_id, hook).await.map_err(store_error)
}

/// `POST /v1/webhooks`.
pub async fn create(State(state): State<ApiState>, Caller(who): Caller, body: JsonBody) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let body = body.object(state.ctx.config.limits.max_body_bytes)?;
    for required in ["name", "url"] {
        if !body.contains_key(required) {
            return Err(field(required, "is required"));
        }
    }
    let now = switchboard::time::now_millis();
    let mut hook = WebhookConfig::new("", "", vec![Topic::ALL.parse().expect("* is a topic")], now);
    apply(&state, &mut hook, body).await?;
    // Checked before the write, not in one atomic step: two admins creating
    // at the same instant may pass one over. The limit bounds a tenant's
    // registry (read by every publish); it is not a billing count.
    let max = state.ctx.config.webhooks.max_per_tenant;
    let existing = state.ctx.store.webhook_count(&who.tenant_id).await.map_err(store_error)?;
    if existing >= max {
        return Err(ApiError::LimitExceeded(format!(
            "this tenant has {existing} webhooks, the limit is {max}; delete one first (WEBHOOK_MAX_PER_TENANT)"
        )));
    }
    save(&state, &who, &hook).await?;
    tracing::info!(webhook_id = %hook.id, url = %switchboard::ssrf::redacted(&hook.url), "webhook created");
    // The secret is shown this once.
    Ok((StatusCode::CREATED, Json(serde_json::to_value(&hook).expect("plain data"))).into_response())
}

/// `GET /v1/webhooks`.
pub async fn list(State(state): State<ApiState>, Caller(who): Caller) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let mut hooks = state.ctx.store.webhooks(&who.tenant_id).await.map_err(store_error)?;
    hooks.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(json!({"webhooks": hooks.iter().map(WebhookConfig::public_view).collect::<Vec<_>>()})).into_response())
}

/// `GET /v1/webhooks/{id}`.
pub async fn get(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(fetch(&state, &who, &id).await?.public_view()).into_response())
}

/// `PATCH /v1/webhooks/{id}`.
pub async fn update(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let mut hook = fetch(&state, &who, &id).await?;
    apply(&state, &mut hook, body.object(state.ctx.config.limits.max_body_bytes)?).await?;
    if hook.is_active {
        hook.disabled_reason = None;
    }
    hook.updated_at = switchboard::time::now_millis();
    save(&state, &who, &hook).await?;
    Ok(Json(hook.public_view()).into_response())
}

/// `DELETE /v1/webhooks/{id}`.
pub async fn delete(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    checked_id(&id)?;
    if state.ctx.store.delete_webhook(&who.tenant_id, &id).await.map_err(store_error)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("no webhook {id}")))
    }
}

/// `POST /v1/webhooks/{id}/test`: the legacy hub's TestWebhook — one signed
/// `system.notification` delivery, now, logged like any other.
pub async fn test(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let hook = fetch(&state, &who, &id).await?;
    let delivery = Delivery {
        delivery_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        tenant_id: who.tenant_id.clone(),
        webhook_id: hook.id.clone(),
        event: EventType::SystemNotification,
        timestamp: switchboard::time::now_millis() / 1000,
        data: json!({"test": true, "message": "Test delivery from Switchboard"}),
        channel: None,
        attempt_base: 0,
    };
    let a = state.deliverer.attempt(&hook, &delivery, 1).await;
    Ok(Json(json!({
        "success": a.outcome == switchboard::webhook::Outcome::Delivered,
        "status_code": a.status,
        "duration_ms": a.duration_ms,
        "error": a.error,
        "response_body": a.body_excerpt.chars().take(1024).collect::<String>(),
        "delivery_id": delivery.delivery_id,
    }))
    .into_response())
}

/// `POST /v1/webhooks/{id}/rotate-secret`: a new secret (given or
/// generated); the old one keeps signing for the grace period.
pub async fn rotate_secret(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let mut hook = fetch(&state, &who, &id).await?;
    // An empty body is fine: generate a secret, default grace period.
    let mut body = body.object_or_empty(state.ctx.config.limits.max_body_bytes)?;
    let new = match body.remove("secret") {
        None | Some(Value::Null) => Secret::generate(),
        Some(Value::String(raw)) => Secret::parse(raw).map_err(|e| field("secret", e.to_string()))?,
        Some(_) => return Err(field("secret", "must be a string")),
    };
    let grace = match body.remove("grace_period_secs") {
        None | Some(Value::Null) => state.ctx.config.webhooks.rotation_grace,
        Some(v) => std::time::Duration::from_secs(
            v.as_u64()
                .filter(|s| *s <= 30 * 24 * 3600)
                .ok_or_else(|| field("grace_period_secs", "must be 0 to 2592000 seconds (30 days)"))?,
        ),
    };
    if let Some(extra) = body.keys().next() {
        return Err(field("body", format!("unknown field '{extra}'; expected secret and grace_period_secs")));
    }
    let now = switchboard::time::now_millis();
    let max = state.ctx.config.webhooks.max_previous_secrets;
    let still_signing = hook.previous_secrets.iter().filter(|r| r.expires_at > now).count();
    if !grace.is_zero() && still_signing >= max {
        return Err(ApiError::LimitExceeded(format!(
            "{still_signing} rotated-out secrets still sign every delivery (the limit is {max}); wait until one \
             expires, or rotate with grace_period_secs 0 to revoke them all"
        )));
    }
    hook.rotate(new, grace, now);
    save(&state, &who, &hook).await?;
    tracing::info!(webhook_id = %hook.id, grace_secs = grace.as_secs(), "webhook secret rotated");
    let expires = hook.previous_secrets.iter().map(|r| r.expires_at).max();
    Ok(Json(json!({"id": hook.id, "secret": hook.secret, "previous_secret_expires_at": expires})).into_response())
}

fn entry_json(record: &switchboard::store::LogRecord) -> Option<Value> {
    let mut v: Value = serde_json::from_str(&record.entry).ok()?;
    v["id"] = json!(record.id);
    Some(v)
}

/// `GET /v1/webhooks/{id}/deliveries`: the attempt log, newest first.
pub async fn deliveries(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let hook = fetch(&state, &who, &id).await?;
    let limit = match query.get("limit") {
        None => 50,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| field("limit", "must be 1 to 100"))?,
    };
    let before = query.get("before").map(String::as_str);
    // A stream entry id is two 64-bit numbers: anything else (a number past
    // 2^64 too) would make Redis answer an error, mistaken for an outage.
    if let Some(cursor) = before
        && !cursor.split_once('-').is_some_and(|(a, b)| {
            a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
                && a.parse::<u64>().is_ok()
                && b.parse::<u64>().is_ok()
        })
    {
        return Err(field("before", "is not a cursor from next_cursor (<ms>-<seq>, two 64-bit numbers)"));
    }
    let q = LogQuery {
        webhook_id: hook.id.as_str(),
        delivery_id: query.get("delivery_id").map(String::as_str),
        before,
        since_ms: None,
        limit,
    };
    let records = state.ctx.store.webhook_log(&who.tenant_id, &q).await.map_err(store_error)?;
    let next_cursor = (records.len() == limit).then(|| records.last().map(|r| r.id.clone())).flatten();
    let entries: Vec<Value> = records.iter().filter_map(entry_json).collect();
    Ok(Json(json!({"deliveries": entries, "next_cursor": next_cursor})).into_response())
}

/// `GET /v1/webhooks/{id}/stats`: the last hour (the legacy hub's monitoring
/// query), summed from the counters each attempt adds to its 5-minute
/// bucket: a dozen small reads, never a scan of the delivery log.
pub async fn stats(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let hook = fetch(&state, &who, &id).await?;
    let now = switchboard::time::now_millis();
    let s = state.ctx.store.webhook_stats(&who.tenant_id, hook.id.as_str(), now).await.map_err(store_error)?;
    let avg = if s.attempts == 0 { 0.0 } else { s.duration_ms as f64 / s.attempts as f64 };
    Ok(Json(json!({
        "webhook_id": hook.id,
        "window_secs": STATS_BUCKETS * STATS_BUCKET_MS / 1000,
        "deliveries": s.deliveries,
        "attempts": s.attempts,
        "succeeded": s.succeeded,
        "failed": s.attempts - s.succeeded,
        "dead_lettered": s.dead,
        "success_rate": if s.attempts == 0 { Value::Null } else { json!(s.succeeded as f64 / s.attempts as f64) },
        "avg_latency_ms": (avg * 10.0).round() / 10.0,
        "is_active": hook.is_active,
    }))
    .into_response())
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry`: queue a logged
/// delivery again (same `webhook-id`, attempts counted afresh).
pub async fn retry(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let hook = fetch(&state, &who, &id).await?;
    if !delivery_id.starts_with("msg_") || delivery_id.len() > 64 {
        return Err(field("delivery_id", "is not a delivery id (msg_...)"));
    }
    let q = LogQuery {
        webhook_id: hook.id.as_str(),
        delivery_id: Some(&delivery_id),
        before: None,
        since_ms: None,
        limit: 1,
    };
    let records = state.ctx.store.webhook_log(&who.tenant_id, &q).await.map_err(store_error)?;
    let entry: LogEntry = records
        .first()
        .and_then(|r| serde_json::from_str(&r.entry).ok())
        .ok_or_else(|| ApiError::NotFound(format!("no delivery {delivery_id} in the log of {}", hook.id)))?;
    if let Some(omitted) = &entry.data_omitted {
        return Err(ApiError::LimitExceeded(format!(
            "the event's data ({} bytes) was too large to keep in the delivery log (WEBHOOK_LOG_ENTRY_BYTES); \
             replay this delivery from the webhook dead-letter queue, which holds it whole",
            omitted.bytes
        )));
    }
    let delivery = Delivery { attempt_base: 0, ..entry.delivery };
    crate::enqueue(state.ctx.webhook_queue(), "WEBHOOK_QUEUE_URL", &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"delivery_id": delivery.delivery_id, "queued": true}))).into_response())
}
