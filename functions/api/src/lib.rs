//! `api`: the HTTP API, one axum [`Router`].
//!
//! In AWS, `lambda_http` runs this Router behind an API Gateway HTTP API;
//! locally, `switchboard-local` serves the very same Router on :3000. All
//! routes live under `/v1` and answer JSON. Every route but `/v1/health`
//! needs `Authorization: Bearer <jwt>`, and the tenant always comes from
//! the token — never from the URL or the body.
//!
//! Errors are `{"code","message"}` with a stable `code`; a failure on our
//! side is a 503/500 whose message says what to do, never internals.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use switchboard::Context;
use switchboard::auth::{AuthError, Identity, Verifier, extract_token};

/// What every route can reach.
#[derive(Clone)]
pub struct ApiState {
    /// Store and configuration.
    pub ctx: Context,
    /// Token verification.
    pub verifier: Arc<Verifier>,
}

/// The whole HTTP API.
pub fn router(ctx: Context, verifier: Verifier) -> Router {
    let state = ApiState { ctx, verifier: Arc::new(verifier) };
    Router::new().route("/v1/health", get(health)).route("/v1/stats", get(stats)).fallback(not_found).with_state(state)
}

/// An API failure, answered as `{"code","message"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// No such route.
    #[error("{0}")]
    NotFound(String),
    /// The store could not be reached.
    #[error("the state store is unavailable; retry shortly")]
    Unavailable,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut response = (status, Json(json!({"code": code, "message": self.to_string()}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn store_error(e: switchboard::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "store failure");
    ApiError::Unavailable
}

/// The verified caller of a request.
pub struct Caller(pub Identity);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let (token, _) = extract_token(&parts.headers, None)
            .ok_or_else(|| ApiError::Unauthorized("send Authorization: Bearer <jwt>".into()))?;
        state.verifier.verify(token).map(Caller).map_err(|e: AuthError| {
            tracing::info!(reason = %e, "API request refused");
            ApiError::Unauthorized(e.to_string())
        })
    }
}

/// `GET /v1/health`: is the store reachable? No token needed (load balancers, `make dev` checks).
async fn health(State(state): State<ApiState>) -> Response {
    match state.ctx.store.ping().await {
        Ok(()) => Json(json!({"status": "ok", "store": "ok"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "degraded", "store": "unavailable"})))
                .into_response()
        }
    }
}

/// `GET /v1/stats`: the seed's `/ws/stats`, for the caller's tenant.
async fn stats(State(state): State<ApiState>, Caller(who): Caller) -> Result<Response, ApiError> {
    let store = &state.ctx.store;
    let tenant_connections = store.connection_count(&who.tenant_id).await.map_err(store_error)?;
    let total_connections = store.total_connections().await.map_err(store_error)?;
    Ok(Json(json!({
        "tenant_id": who.tenant_id,
        "tenant_connections": tenant_connections,
        "total_connections": total_connections,
    }))
    .into_response())
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}
