//! `api`: the HTTP API, one axum [`Router`].
//!
//! In AWS, `lambda_http` runs this Router behind an API Gateway HTTP API;
//! locally, `switchboard-local` serves the very same Router on :3000. All
//! routes live under `/v1` and answer JSON. Every route but `/v1/health` and
//! `/v1/openapi.json` needs `Authorization: Bearer <jwt>`, and the tenant
//! always comes from the token — never from the URL or the body.
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /v1/events` `{type, data, target}` | fan-out inside the caller's tenant: `{event_id, report}` |
//! | `POST /v1/events?async=true` | the same, queued on the events queue: 202 `{event_id, queued}` |
//! | `POST /v1/events` `{events: [...]}` (1 to 100; with `?async=true` queued as one job) | a batch: each connection one frame with all of its events; `{event_ids, results, report}` (queued: 202 `{event_ids, queued}`) |
//! | `GET /v1/events?since=<epoch>:<offset>&events=call.*&limit=100` | the tenant's retained events after a position the caller could have received: `{recovered, epoch, offset, events, next}` (see [`history`]) |
//! | `GET /v1/stats` | `{tenant_id, tenant_connections}` (the legacy hub's `/ws/stats`); `total_connections` and `tenants` too for a platform operator (an admin of `PLATFORM_TENANT`) |
//! | `GET /v1/users/{id}/online` | `{user_id, is_online, connection_count}` (the legacy hub's) |
//! | `GET /v1/presence` | `{online_users, count}` |
//! | `GET /v1/health` | `{status, store, version}`; 503 when the store is down |
//! | `GET /v1/openapi.json` | the OpenAPI 3 description of all of this |
//! | `/v1/webhooks` | the tenant's webhook registry (admin): see [`webhooks`] |
//!
//! Errors are `{"code","message"}` with a stable `code` and the right
//! status: 400 naming the bad field, 401, 403, 404, 405, 413, 429 (a
//! per-tenant budget kept in the store, so it holds across instances), 503
//! when the store is down. Never a 500 for bad input, never internals.

// The OpenAPI document is one `json!` literal, deeper than the default limit.
#![recursion_limit = "256"]

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use switchboard::auth::{AuthError, Verifier, extract_token};
use switchboard::ids::{Identity, UserId};
use switchboard::protocol::{OfflineRefusal, PublishRequest};
use switchboard::{Context, broadcast};

mod history;
pub mod openapi;
mod webhooks;

pub use openapi::document as openapi_document;

/// What every route can reach.
#[derive(Clone)]
pub struct ApiState {
    /// Store and configuration.
    pub ctx: Context,
    /// Token verification.
    pub verifier: Arc<Verifier>,
    /// Synchronous webhook attempts (`/test`).
    pub deliverer: switchboard::webhook_delivery::WebhookSender,
}

/// Every route with its method, as served (the OpenAPI test walks this).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/events"),
    ("get", "/v1/events"),
    ("get", "/v1/stats"),
    ("get", "/v1/users/{id}/online"),
    ("get", "/v1/presence"),
    ("get", "/v1/health"),
    ("get", "/v1/openapi.json"),
    ("post", "/v1/webhooks"),
    ("get", "/v1/webhooks"),
    ("get", "/v1/webhooks/{id}"),
    ("patch", "/v1/webhooks/{id}"),
    ("delete", "/v1/webhooks/{id}"),
    ("post", "/v1/webhooks/{id}/test"),
    ("post", "/v1/webhooks/{id}/rotate-secret"),
    ("get", "/v1/webhooks/{id}/deliveries"),
    ("get", "/v1/webhooks/{id}/stats"),
    ("post", "/v1/webhooks/{id}/deliveries/{delivery_id}/retry"),
];

/// The whole HTTP API.
pub fn router(ctx: Context, verifier: Verifier) -> Router {
    let body_limit = ctx.config.limits.max_body_bytes;
    let state = ApiState {
        deliverer: switchboard::webhook_delivery::WebhookSender::new(ctx.clone()),
        ctx,
        verifier: Arc::new(verifier),
    };
    Router::new()
        .route("/v1/events", post(publish).get(history::read))
        .route("/v1/stats", get(stats))
        .route("/v1/users/{id}/online", get(user_online))
        .route("/v1/presence", get(presence))
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhooks/{id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhooks/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/stats", get(webhooks::stats))
        .route("/v1/webhooks/{id}/deliveries/{delivery_id}/retry", post(webhooks::retry))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(traced))
        .with_state(state)
}

/// Runs a request inside its invocation's span: the function, the method
/// and path, API Gateway's request id (under Lambda), and the caller's
/// tenant and user once the token is verified ([`Verified`] records them),
/// so no log line below names them.
async fn traced(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use lambda_http::RequestExt as _;
    use tracing::Instrument as _;
    let request_id = match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(rc)) => rc.request_id.clone(),
        Some(lambda_http::request::RequestContext::ApiGatewayV1(rc)) => rc.request_id.clone(),
        _ => None,
    };
    let span = tracing::info_span!(
        "invocation",
        function = "api",
        method = %request.method(),
        path = request.uri().path(),
        request_id = request_id.as_deref().unwrap_or("-"),
        tenant_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    next.run(request).instrument(span).await
}

/// An API failure, answered as `{"code","message"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request body is not JSON.
    #[error("{0}")]
    InvalidJson(String),
    /// A field is missing or wrong; the message names it.
    #[error("{field}: {problem}")]
    InvalidField {
        /// The field, e.g. `type` or `target`.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// No or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such route.
    #[error("{0}")]
    NotFound(String),
    /// The route exists, not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is over the limit.
    #[error("request body over {0} bytes")]
    PayloadTooLarge(usize),
    /// The tenant's request budget for this second is spent.
    #[error("more than {0} requests per second for this tenant; retry after a second")]
    RateLimited(u32),
    /// The tenant's offline queues are full: nothing was published.
    #[error("{0}")]
    OfflineBudgetExceeded(String),
    /// The event is larger than the tenant's whole offline budget.
    #[error("{0}")]
    EventTooLarge(String),
    /// A per-tenant limit would be exceeded (webhooks, retained secrets).
    #[error("{0}")]
    LimitExceeded(String),
    /// The store could not be reached.
    #[error("the state store is unavailable; retry shortly")]
    Unavailable,
    /// A part this route needs is not configured (a queue URL).
    #[error("{0}")]
    NotConfigured(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_field"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::LimitExceeded(_) => (StatusCode::CONFLICT, "limit_exceeded"),
            ApiError::OfflineBudgetExceeded(_) => (StatusCode::TOO_MANY_REQUESTS, "offline_budget_exceeded"),
            ApiError::EventTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::NotConfigured(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_configured"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::RateLimited(_) = self {
            switchboard::metrics::rate_limited("http");
        }
        let mut body = json!({"code": code, "message": self.to_string()});
        if let ApiError::InvalidField { field, .. } = &self {
            body["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        match status {
            StatusCode::UNAUTHORIZED => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// A request body that must be a JSON object: not JSON, not an object and
/// over the size limit each get their own error.
pub struct JsonBody(Result<Bytes, BytesRejection>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBody(Bytes::from_request(req, state).await))
    }
}

impl JsonBody {
    /// The body as a JSON object.
    pub fn object(self, limit: usize) -> Result<serde_json::Map<String, Value>, ApiError> {
        let bytes = self.bytes(limit)?;
        Self::parse(&bytes)
    }

    /// The body as a JSON object, where an empty body means `{}` (routes
    /// whose every field is optional). A truncated body is still an error.
    pub fn object_or_empty(self, limit: usize) -> Result<serde_json::Map<String, Value>, ApiError> {
        let bytes = self.bytes(limit)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        Self::parse(&bytes)
    }

    fn bytes(self, limit: usize) -> Result<Bytes, ApiError> {
        self.0.map_err(|rejection| match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(limit),
            _ => ApiError::InvalidJson(rejection.body_text()),
        })
    }

    fn parse(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(obj)) => Ok(obj),
            Ok(_) => Err(ApiError::InvalidJson("body must be a JSON object".into())),
            Err(e) => Err(ApiError::InvalidJson(format!("body is not valid JSON: {e}"))),
        }
    }
}

fn store_error(e: switchboard::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store failure");
    ApiError::Unavailable
}

/// A fan-out that failed on the store or on SQS: ours, and worth a retry.
fn server_error(e: broadcast::BroadcastError) -> ApiError {
    tracing::error!(error = %e, "fan-out failure");
    ApiError::Unavailable
}

/// The verified caller of a request, counted against its tenant's budget.
pub struct Caller(pub Identity);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let Verified(who) = Verified::from_request_parts(parts, state).await?;
        let limit = state.ctx.config.limits.rate_limit_per_sec;
        if !state.ctx.store.rate_limit(&who.tenant_id, limit).await.map_err(store_error)? {
            return Err(ApiError::RateLimited(limit));
        }
        Ok(Caller(who))
    }
}

/// The verified caller of a request that counts against its tenant's
/// budget itself (a publish does so in the round trip that resolves it).
pub struct Verified(pub Identity);

impl FromRequestParts<ApiState> for Verified {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let (token, _) = extract_token(&parts.headers, None)
            .ok_or_else(|| ApiError::Unauthorized("send Authorization: Bearer <jwt>".into()))?;
        let who = state.verifier.verify(token).map_err(|e: AuthError| {
            tracing::info!(reason = %e, "API request refused");
            ApiError::Unauthorized(e.to_string())
        })?;
        tracing::Span::current().record("tenant_id", who.tenant_id.as_str()).record("user_id", who.user_id.as_str());
        Ok(Verified(who))
    }
}

/// `POST /v1/events`: validates `{type, data, target}` field by field, checks
/// the role, then fans out inside the caller's tenant. The tenant's rate
/// limit is counted in the same store round trip as the recipients are read.
async fn publish(
    State(state): State<ApiState>,
    Verified(who): Verified,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let queued = match query.get("async").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::InvalidField {
                field: "async",
                problem: format!("must be true or false, not '{other}'"),
            });
        }
    };
    let mut obj = body.object(state.ctx.config.limits.max_body_bytes)?;
    let limit = state.ctx.config.limits.rate_limit_per_sec;
    if let Some(events) = obj.remove("events") {
        if let Some(extra) = obj.keys().next() {
            let problem = format!("a batch has \"events\" only, not \"{extra}\" beside it");
            return Err(ApiError::InvalidField { field: "body", problem });
        }
        let requests =
            PublishRequest::batch(events).map_err(|e| ApiError::InvalidField { field: e.field, problem: e.problem })?;
        if queued {
            return publish_batch_queued(&state, &who, requests, limit).await;
        }
        let done = broadcast::publish_batch_as(&state.ctx, &who, requests, Some(limit))
            .await
            .map_err(|e| publish_refused(&state, e))?;
        let mut total = switchboard::protocol::Report::default();
        let results: Vec<Value> = done
            .into_iter()
            .map(|p| {
                total += p.report;
                json!({"event_id": p.event_id, "report": p.report})
            })
            .collect();
        let ids: Vec<&Value> = results.iter().map(|r| &r["event_id"]).collect();
        return Ok(Json(json!({"event_ids": ids, "results": results, "report": total})).into_response());
    }
    let request =
        PublishRequest::from_object(obj).map_err(|e| ApiError::InvalidField { field: e.field, problem: e.problem })?;
    if queued {
        if !state.ctx.store.rate_limit(&who.tenant_id, limit).await.map_err(store_error)? {
            return Err(ApiError::RateLimited(limit));
        }
        return publish_queued(&state, &who, request).await;
    }
    let (event_id, report) =
        broadcast::publish_as(&state.ctx, &who, request, Some(limit)).await.map_err(|e| publish_refused(&state, e))?;
    Ok(Json(json!({"event_id": event_id, "report": report})).into_response())
}

/// A publish that did not go out, as the API answers it.
fn publish_refused(state: &ApiState, e: broadcast::PublishError) -> ApiError {
    match e {
        broadcast::PublishError::Forbidden(why) => ApiError::Forbidden(why),
        broadcast::PublishError::Channel(refusal) => channel_refused(&refusal),
        broadcast::PublishError::RateLimited(limit) => ApiError::RateLimited(limit),
        broadcast::PublishError::OfflineRefused(refusal) => {
            let why = format!("{}; nothing was published", refusal.describe(&state.ctx.config.limits));
            match refusal {
                OfflineRefusal::MessageTooLarge => ApiError::EventTooLarge(why),
                _ => ApiError::OfflineBudgetExceeded(why),
            }
        }
        broadcast::PublishError::Failed(e) => server_error(e),
    }
}

/// `POST /v1/events?async=true`: the role check, then the event is queued
/// for the `fanout` function; 202 with its id.
async fn publish_queued(state: &ApiState, who: &Identity, request: PublishRequest) -> Result<Response, ApiError> {
    let PublishRequest { event_type, target, data } = request;
    broadcast::may_publish(&state.ctx, who, event_type, &target).map_err(|e| match e {
        broadcast::PublishError::Channel(refusal) => channel_refused(&refusal),
        other => ApiError::Forbidden(other.to_string()),
    })?;
    let event = switchboard::event::Envelope::from_caller(who, event_type, data);
    let job = broadcast::FanoutJob { event, target, chunk: None };
    enqueue(state.ctx.events_queue(), "EVENTS_QUEUE_URL", &job).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"event_id": job.event.id, "queued": true}))).into_response())
}

/// A channel the namespaces refuse: an undeclared namespace is the
/// request's mistake (400, naming the channel), a rule's refusal is 403.
pub(crate) fn channel_refused(refusal: &switchboard::namespaces::Refusal) -> ApiError {
    match refusal {
        switchboard::namespaces::Refusal::UnknownNamespace { .. } => {
            ApiError::InvalidField { field: "target", problem: refusal.to_string() }
        }
        _ => ApiError::Forbidden(refusal.to_string()),
    }
}

/// `POST /v1/events?async=true` with `events`: every event checked, the
/// batch counted against the rate limit whole, then queued as one job the
/// `fanout` function runs (each connection one frame); 202 with the ids.
async fn publish_batch_queued(
    state: &ApiState,
    who: &Identity,
    requests: Vec<PublishRequest>,
    limit: u32,
) -> Result<Response, ApiError> {
    for r in &requests {
        broadcast::may_publish(&state.ctx, who, r.event_type, &r.target).map_err(|e| publish_refused(state, e))?;
    }
    if !state.ctx.store.rate_limit_n(&who.tenant_id, limit, requests.len() as u32).await.map_err(store_error)? {
        return Err(ApiError::RateLimited(limit));
    }
    let batch: Vec<broadcast::FanoutJob> = requests
        .into_iter()
        .map(|PublishRequest { event_type, target, data }| broadcast::FanoutJob {
            event: switchboard::event::Envelope::from_caller(who, event_type, data),
            target,
            chunk: None,
        })
        .collect();
    let ids: Vec<String> = batch.iter().map(|j| j.event.id.clone()).collect();
    enqueue(state.ctx.events_queue(), "EVENTS_QUEUE_URL", &broadcast::BatchJob { batch }).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"event_ids": ids, "queued": true}))).into_response())
}

/// Sends `message` to a queue; 503 `not_configured` naming `var` when there is none.
pub(crate) async fn enqueue(
    queue: Option<(&switchboard::queue::Queues, &str)>,
    var: &str,
    message: &impl serde::Serialize,
) -> Result<(), ApiError> {
    let Some((queues, url)) = queue else {
        return Err(ApiError::NotConfigured(format!("this needs {var} (an SQS queue URL)")));
    };
    let body = serde_json::to_string(message).expect("plain JSON");
    queues.send(url, body, std::time::Duration::ZERO).await.map(drop).map_err(|e| {
        tracing::error!(error = %e, queue = url, "SQS unavailable");
        ApiError::Unavailable
    })
}

/// `GET /v1/stats`: the legacy hub's `/ws/stats`, for the caller's tenant.
async fn stats(State(state): State<ApiState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let store = &state.ctx.store;
    let tenant_connections = store.connection_count(&who.tenant_id).await.map_err(store_error)?;
    let mut body = json!({"tenant_id": who.tenant_id, "tenant_connections": tenant_connections});
    // Platform-wide figures (one read per tenant) only for the operator.
    let operator =
        who.role == switchboard::ids::Role::Admin && state.ctx.config.platform_tenant.as_ref() == Some(&who.tenant_id);
    if operator {
        body["total_connections"] = json!(store.total_connections().await.map_err(store_error)?);
        body["tenants"] = json!(store.tenants().await.map_err(store_error)?.len());
    }
    Ok(Json(body).into_response())
}

/// `GET /v1/users/{id}/online`: the legacy hub's user check, inside the caller's tenant.
async fn user_online(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = UserId::parse(id).map_err(|e| ApiError::InvalidField { field: "id", problem: e.to_string() })?;
    let presence = state.ctx.store.presence(&who.tenant_id, &user).await.map_err(store_error)?;
    Ok(Json(json!({"user_id": user, "is_online": presence.online, "connection_count": presence.connections}))
        .into_response())
}

/// `GET /v1/presence`: who is online in the caller's tenant.
async fn presence(State(state): State<ApiState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let users = state.ctx.store.online_users(&who.tenant_id).await.map_err(store_error)?;
    Ok(Json(json!({"count": users.len(), "online_users": users})).into_response())
}

/// `GET /v1/health`: is the store reachable? No token needed (load balancers, `make dev` checks).
async fn health(State(state): State<ApiState>) -> Response {
    let version = env!("CARGO_PKG_VERSION");
    match state.ctx.store.ping().await {
        Ok(()) => Json(json!({"status": "ok", "store": "ok", "version": version})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unavailable");
            let body = json!({"status": "degraded", "store": "unavailable", "version": version});
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
