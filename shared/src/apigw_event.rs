//! Reading API Gateway WebSocket events and writing their responses.
//!
//! API Gateway hands every route of a connection the authorizer's context
//! (`requestContext.authorizer`), so `$disconnect` and message routes learn
//! the tenant without a lookup. These helpers validate what the event
//! carries at the edge: a malformed id or a missing context is a refusal,
//! never a panic.

use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use aws_lambda_events::encodings::Body;
use http::HeaderMap;
use serde_json::Value;

use crate::config::Config;
use crate::ids::{ConnectionId, Identity, Role, TenantId, UserId};

/// Context keys the authorizer sets and later routes read.
pub mod context_keys {
    /// The caller's tenant.
    pub const TENANT_ID: &str = "tenant_id";
    /// The caller's user id.
    pub const USER_ID: &str = "user_id";
    /// The caller's role.
    pub const ROLE: &str = "role";
    /// The channels the caller's token grants, space-separated (absent: none).
    pub const CHANNELS: &str = "channels";
}

/// What was wrong with an incoming event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// `requestContext.connectionId` is absent or invalid.
    #[error("event has no valid requestContext.connectionId: {0}")]
    ConnectionId(String),
    /// The authorizer context lacks a field or holds an invalid one.
    #[error("authorizer context: {0}")]
    Authorizer(String),
}

/// The connection id of the event.
pub fn connection_id(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Result<ConnectionId, EventError> {
    let raw = ctx.connection_id.as_deref().ok_or_else(|| EventError::ConnectionId("missing".into()))?;
    ConnectionId::parse(raw).map_err(|e| EventError::ConnectionId(e.to_string()))
}

fn context_str<'a>(ctx: &'a ApiGatewayWebsocketProxyRequestContext, key: &str) -> Result<&'a str, EventError> {
    match ctx.authorizer.fields.get(key) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(EventError::Authorizer(format!("'{key}' is not a string"))),
        None => Err(EventError::Authorizer(format!("'{key}' is missing"))),
    }
}

/// The span of one WebSocket invocation, so that every log line inside
/// it says where it came from without naming it: the function, the route,
/// the connection, the caller's tenant and user (from the authorizer's
/// context, when the event has one) and API Gateway's request id.
pub fn span(function: &'static str, event: &ApiGatewayWebsocketProxyRequest) -> tracing::Span {
    let rc = &event.request_context;
    let field = |key: &str| rc.authorizer.fields.get(key).and_then(Value::as_str).unwrap_or("-").to_owned();
    tracing::info_span!(
        "invocation",
        function,
        route = rc.route_key.as_deref().unwrap_or("-"),
        connection_id = rc.connection_id.as_deref().unwrap_or("-"),
        tenant_id = field(context_keys::TENANT_ID),
        user_id = field(context_keys::USER_ID),
        request_id = rc.request_id.as_deref().unwrap_or("-"),
    )
}

/// The tenant, from the authorizer context alone (what `$disconnect` needs).
pub fn tenant_id(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Result<TenantId, EventError> {
    TenantId::parse(context_str(ctx, context_keys::TENANT_ID)?).map_err(|e| EventError::Authorizer(e.to_string()))
}

/// The caller, from the authorizer context.
pub fn identity(ctx: &ApiGatewayWebsocketProxyRequestContext) -> Result<Identity, EventError> {
    let tenant_id = tenant_id(ctx)?;
    let user_id =
        UserId::parse(context_str(ctx, context_keys::USER_ID)?).map_err(|e| EventError::Authorizer(e.to_string()))?;
    let role: Role = context_str(ctx, context_keys::ROLE)?
        .parse()
        .map_err(|e: crate::auth::AuthError| EventError::Authorizer(e.to_string()))?;
    let channels = match ctx.authorizer.fields.get(context_keys::CHANNELS) {
        None | Some(Value::Null) => crate::channel::Grants::default(),
        Some(_) => crate::channel::Grants::from_context(context_str(ctx, context_keys::CHANNELS)?)
            .map_err(|e| EventError::Authorizer(e.to_string()))?,
    };
    Ok(Identity { channels, ..Identity::new(tenant_id, user_id, role) })
}

/// The `@connections` endpoint for this connection: the configured
/// override, else `{proto}://{domainName}/{stage}` as API Gateway documents,
/// where `proto` is the `X-Forwarded-Proto` the gateway set (`https` on AWS,
/// `http` from the local emulator; anything else counts as `https`).
pub fn callback_endpoint(event: &ApiGatewayWebsocketProxyRequest, config: &Config) -> Option<String> {
    if let Some(url) = &config.callback_endpoint {
        return Some(url.as_str().trim_end_matches('/').to_owned());
    }
    let ctx = &event.request_context;
    let domain = ctx.domain_name.as_deref().filter(|d| !d.is_empty())?;
    let scheme = match event.headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some("http") => "http",
        _ => "https",
    };
    match ctx.stage.as_deref().filter(|s| !s.is_empty()) {
        Some(stage) => Some(format!("{scheme}://{domain}/{stage}")),
        None => Some(format!("{scheme}://{domain}")),
    }
}

/// A route response with an optional text body.
pub fn response(status: u16, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = i64::from(status);
    r.body = body.map(Body::Text);
    r
}

/// A route response carrying headers (the `$connect` subprotocol answer).
pub fn response_with_headers(status: u16, headers: HeaderMap) -> ApiGatewayProxyResponse {
    let mut r = response(status, None);
    r.headers = headers;
    r
}

/// The event's body as bytes (API Gateway base64-encodes binary frames).
pub fn body_bytes(event: &ApiGatewayWebsocketProxyRequest) -> Option<Vec<u8>> {
    use base64::Engine;
    let body = event.body.as_deref()?;
    if event.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    } else {
        Some(body.as_bytes().to_vec())
    }
}
