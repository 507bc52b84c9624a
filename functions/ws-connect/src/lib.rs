//! `ws-connect`: the `$connect` route.
//!
//! Runs after the authorizer allowed the handshake. Records the connection
//! with the `@connections` endpoint that reaches it, adds it to its tenant
//! and user, marks the user online. The answer decides the handshake: 200
//! accepts, anything else refuses it.
//!
//! API Gateway does not echo `Sec-WebSocket-Protocol`: when the client
//! offered subprotocols (browsers carrying the token there), this handler
//! names one in its response, or the browser would drop the connection.
//!
//! A user's first connection announces `presence.online` to the tenant's
//! subscribers (the new connection has no subscriptions yet, so it is never
//! among the recipients while its `$connect` runs).
//!
//! Offline messages are not delivered here: API Gateway refuses posts to a
//! connection whose `$connect` has not returned. Clients send `sync`.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use http::{HeaderMap, HeaderValue};
use switchboard::apigw_event::{self, response, response_with_headers};
use switchboard::auth::selected_subprotocol;
use switchboard::store::Connection;
use switchboard::{Context, broadcast};

/// Handles one `$connect`.
pub async fn handle(ctx: &Context, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    use tracing::Instrument as _;
    let span = switchboard::apigw_event::span("ws-connect", &event);
    handled(ctx, event).instrument(span).await
}

/// [`handle`]'s work, inside the invocation's span.
async fn handled(ctx: &Context, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let rc = &event.request_context;
    let connection_id = match apigw_event::connection_id(rc) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "refusing $connect");
            return response(400, None);
        }
    };
    let identity = match apigw_event::identity(rc) {
        Ok(id) => id,
        Err(e) => {
            // Only reachable when the route has no authorizer: never accept
            // a connection we cannot attribute to a tenant.
            tracing::error!(error = %e, "refusing $connect: is the authorizer attached to the route?");
            return response(403, None);
        }
    };
    let Some(endpoint) = apigw_event::callback_endpoint(&event, &ctx.config) else {
        tracing::error!("refusing $connect: no domainName in the event and no CALLBACK_ENDPOINT configured");
        return response(500, None);
    };
    let connected_at = if rc.connected_at > 0 { rc.connected_at } else { switchboard::time::now_millis() };
    let conn = Connection {
        id: connection_id,
        tenant_id: identity.tenant_id,
        user_id: identity.user_id,
        role: identity.role,
        endpoint,
        connected_at,
    };
    match ctx.store.register(&conn).await {
        Ok(registered) => {
            switchboard::metrics::connection_opened();
            tracing::info!(
                user_id = %conn.user_id,
                came_online = registered.came_online,
                user_connections = registered.user_connections,
                "connected"
            );
            if let (Some(presence), Some(online)) = (registered.presence, registered.presence_event) {
                // A presence failure must not cost the user their connection.
                if let Err(e) = broadcast::announce_presence(ctx, &online, presence).await {
                    tracing::warn!(error = %e, "could not announce presence.online");
                }
            }
            let mut headers = HeaderMap::new();
            if let Some(protocol) = selected_subprotocol(&event.headers).and_then(|p| HeaderValue::from_str(p).ok()) {
                headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, protocol);
            }
            response_with_headers(200, headers)
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record the connection; refusing it");
            response(500, None)
        }
    }
}
