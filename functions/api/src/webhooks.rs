//! `/v1/webhooks`: the tenant's webhook registry (admin tokens only).
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /v1/webhooks` `{name, url, events?, secret?, is_active?, retry_count?, timeout?}` | 201, the webhook **with its secret** (shown this once) |
//! | `GET /v1/webhooks` | `{"webhooks": [...]}` without secrets |
//! | `GET /v1/webhooks/{id}` | one, without secret |
//! | `PATCH /v1/webhooks/{id}` | the same fields, all optional; the updated webhook |
//! | `DELETE /v1/webhooks/{id}` | 204 |
//!
//! Every field is validated before anything is stored: the URL by the SSRF
//! guard (`https` to a public address in production), event names against
//! the catalogue, `retry_count` 0–10, `timeout` 1–30 seconds. Secrets are
//! generated as `whsec_` + base64 of 32 random bytes when not given.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use switchboard::auth::{Identity, Role};
use switchboard::event::Topic;
use switchboard::ssrf::check_url;
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

/// Applies the fields present in `body` to `hook`, validating each.
fn apply(state: &ApiState, hook: &mut WebhookConfig, mut body: Map<String, Value>) -> Result<(), ApiError> {
    if let Some(v) = body.remove("name") {
        let name = v.as_str().map(str::trim).filter(|n| !n.is_empty() && n.len() <= 255);
        hook.name = name.ok_or_else(|| field("name", "must be a non-empty string of at most 255 bytes"))?.to_owned();
    }
    if let Some(v) = body.remove("url") {
        let raw = v.as_str().ok_or_else(|| field("url", "must be a string"))?;
        let url = check_url(raw, state.ctx.config.webhook_urls).map_err(|e| field("url", e.to_string()))?;
        hook.url = url.to_string();
    }
    if let Some(v) = body.remove("events") {
        let names =
            v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| field("events", "must be a non-empty list"))?;
        let mut topics = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_str().ok_or_else(|| field("events", "must contain only strings"))?;
            topics.push(name.parse::<Topic>().map_err(|e| field("events", e.to_string()))?);
        }
        topics.sort();
        topics.dedup();
        hook.events = topics;
    }
    if let Some(v) = body.remove("secret") {
        let raw = v.as_str().ok_or_else(|| field("secret", "must be a string"))?;
        hook.secret = Secret::parse(raw).map_err(|e| field("secret", e.to_string()))?.expose().to_owned();
    }
    if let Some(v) = body.remove("is_active") {
        hook.is_active = v.as_bool().ok_or_else(|| field("is_active", "must be true or false"))?;
    }
    if let Some(v) = body.remove("retry_count") {
        let n = v
            .as_u64()
            .filter(|n| *n <= 10)
            .ok_or_else(|| field("retry_count", "must be a whole number from 0 to 10"))?;
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

fn load(raw: Option<String>, id: &str) -> Result<WebhookConfig, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::NotFound(format!("no webhook {id}")))?;
    serde_json::from_str(&raw).map_err(|e| {
        tracing::error!(webhook_id = id, error = %e, "stored webhook does not parse");
        ApiError::Unavailable
    })
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
    load(state.ctx.store.get_webhook(&who.tenant_id, id).await.map_err(store_error)?, id)
}

async fn save(state: &ApiState, who: &Identity, hook: &WebhookConfig) -> Result<(), ApiError> {
    let text = serde_json::to_string(hook).expect("plain data");
    state.ctx.store.put_webhook(&who.tenant_id, &hook.id, &text).await.map_err(store_error)
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
    let mut hook = WebhookConfig {
        id: WebhookConfig::new_id(),
        name: String::new(),
        url: String::new(),
        events: vec![Topic::ALL.parse().expect("* is a topic")],
        secret: Secret::generate().expose().to_owned(),
        is_active: true,
        retry_count: 3,
        timeout: 30,
        created_at: now,
        updated_at: now,
    };
    apply(&state, &mut hook, body)?;
    save(&state, &who, &hook).await?;
    tracing::info!(tenant_id = %who.tenant_id, webhook_id = %hook.id, url = %hook.url, "webhook created");
    // The secret is shown this once.
    Ok((StatusCode::CREATED, Json(serde_json::to_value(&hook).expect("plain data"))).into_response())
}

/// `GET /v1/webhooks`.
pub async fn list(State(state): State<ApiState>, Caller(who): Caller) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let raw = state.ctx.store.list_webhooks(&who.tenant_id).await.map_err(store_error)?;
    let mut hooks: Vec<WebhookConfig> = raw.into_iter().filter_map(|r| serde_json::from_str(&r).ok()).collect();
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
    apply(&state, &mut hook, body.object(state.ctx.config.limits.max_body_bytes)?)?;
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
