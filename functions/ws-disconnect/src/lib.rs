//! `ws-disconnect`: the `$disconnect` route.
//!
//! Forgets the connection and its subscriptions; the user goes offline when
//! it was their last connection, and the tenant's subscribers then get
//! `presence.offline`. API Gateway sends `$disconnect` at most
//! once and only on a best-effort basis, and the fan-out also removes
//! connections it finds gone, so this handler is idempotent: a second call,
//! or one for an unknown id, succeeds and changes nothing.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use switchboard::apigw_event::{self, response};
use switchboard::{Context, broadcast};

/// Handles one `$disconnect`.
pub async fn handle(ctx: &Context, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    use tracing::Instrument as _;
    let span = switchboard::apigw_event::span("ws-disconnect", &event);
    handled(ctx, event).instrument(span).await
}

/// [`handle`]'s work, inside the invocation's span.
async fn handled(ctx: &Context, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
    let rc = &event.request_context;
    let (connection_id, tenant_id) = match (apigw_event::connection_id(rc), apigw_event::tenant_id(rc)) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(e), _) | (_, Err(e)) => {
            // Nothing was recorded for a connection without both: nothing to undo.
            tracing::warn!(error = %e, "ignoring $disconnect");
            return response(200, None);
        }
    };
    match ctx.store.unregister(&tenant_id, &connection_id).await {
        Ok(Some(gone)) => {
            switchboard::metrics::connection_closed();
            tracing::info!(
                user_id = %gone.user_id,
                went_offline = gone.went_offline,
                status = rc.disconnect_status_code,
                reason = rc.disconnect_reason.as_deref().unwrap_or(""),
                "disconnected"
            );
            if let (Some(presence), Some(offline)) = (gone.presence, gone.presence_event)
                && let Err(e) = broadcast::announce_presence(ctx, &offline, presence).await
            {
                tracing::warn!(error = %e, "could not announce presence.offline");
            }
            response(200, None)
        }
        Ok(None) => {
            tracing::debug!("already gone");
            response(200, None)
        }
        Err(e) => {
            tracing::error!(error = %e, "could not forget the connection");
            response(500, None)
        }
    }
}
