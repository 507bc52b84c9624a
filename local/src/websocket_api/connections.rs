//! `@connections`, API Gateway's management API for the connections it
//! holds, on the gateway's listener: `POST` (a frame to the connection),
//! `GET` (is it there), `DELETE` (close it), each answered as the AWS SDKs
//! read API Gateway's answers; and [`InProcessConnections`], the same for
//! the functions this emulator runs in its own process.

use super::*;

/// An error shaped as the AWS SDKs read it: the type in `x-amzn-ErrorType`
/// (so `aws-sdk-apigatewaymanagement` surfaces e.g. `GoneException`), the
/// text in `message`.
fn aws_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({ "message": message }))).into_response();
    r.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    r
}

/// Why a management call cannot reach a connection.
enum Unreachable {
    /// The id is not a connection id at all: 400.
    Malformed,
    /// No open connection has it: 410, as for a closed one.
    Gone,
}

impl IntoResponse for Unreachable {
    fn into_response(self) -> Response {
        match self {
            Unreachable::Malformed => aws_error(StatusCode::BAD_REQUEST, "BadRequestException", "Invalid connectionId"),
            Unreachable::Gone => aws_error(StatusCode::GONE, "GoneException", ""),
        }
    }
}

fn lookup(gw: &WebSocketApi, id: &str) -> Result<Arc<Live>, Unreachable> {
    if switchboard::ids::ConnectionId::parse(id).is_err() {
        return Err(Unreachable::Malformed);
    }
    gw.get(id).ok_or(Unreachable::Gone)
}

pub(super) async fn staged<F, Fut>(State(gw): State<Arc<WebSocketApi>>, stage: String, id: String, inner: F) -> Response
where
    F: FnOnce(State<Arc<WebSocketApi>>, Path<String>) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    if stage != gw.info.stage {
        return aws_error(StatusCode::FORBIDDEN, "ForbiddenException", "Forbidden");
    }
    inner(State(gw), Path(id)).await
}

/// What a post to a connection came to (the HTTP route and the in-process path alike).
enum Posted {
    Sent,
    Unreachable(Unreachable),
    TooLarge(usize),
    /// Over the account's `@connections` quota: 429.
    Throttled,
}

/// API Gateway's answer to a management call over the account's quota.
fn throttled() -> Response {
    aws_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", "Rate exceeded")
}

impl WebSocketApi {
    /// `POST @connections/{id}`: queue `data` for the connection's writer.
    async fn post(&self, id: &str, data: &[u8]) -> Posted {
        if !self.connections_api_allows() {
            return Posted::Throttled;
        }
        let live = match lookup(self, id) {
            Ok(l) => l,
            Err(e) => return Posted::Unreachable(e),
        };
        if data.len() > self.limits.max_message_bytes {
            return Posted::TooLarge(data.len());
        }
        let message = match std::str::from_utf8(data) {
            Ok(text) => Message::Text(text.into()),
            Err(_) => Message::Binary(Bytes::copy_from_slice(data)),
        };
        if live.send(message, self.limits.slow_client_wait).await.is_err() {
            return Posted::Unreachable(Unreachable::Gone);
        }
        live.touch();
        Posted::Sent
    }
}

pub(super) async fn post_connection(
    State(gw): State<Arc<WebSocketApi>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match gw.post(&id, &body).await {
        Posted::Sent => StatusCode::OK.into_response(),
        Posted::Unreachable(e) => e.into_response(),
        Posted::TooLarge(len) => aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            &format!("Data is {len} bytes; the limit is {}", gw.limits.max_message_bytes),
        ),
        Posted::Throttled => throttled(),
    }
}

/// `@connections` for the functions this emulator runs in-process. A post
/// to one of this emulator's own connections goes straight to it — the
/// same lookup, size limit, queue and 410 as the HTTP route, without the
/// HTTP round trip (API Gateway's side of that call is not what a fan-out
/// is made of). A post to any other endpoint (another emulator sharing
/// Redis, a real API) goes through `fallback`, the SDK client.
pub struct InProcessConnections {
    gateway: std::sync::OnceLock<std::sync::Weak<WebSocketApi>>,
    /// `host:port/stage`: the callback endpoint recorded with this emulator's connections, without its scheme.
    own: String,
    fallback: Arc<dyn switchboard::connections_api::ConnectionsApi>,
}

impl InProcessConnections {
    /// Posts to `own` (`host:port/stage`) in-process once [`Self::attach`]ed; others through `fallback`.
    pub fn new(own: String, fallback: Arc<dyn switchboard::connections_api::ConnectionsApi>) -> Self {
        InProcessConnections { gateway: std::sync::OnceLock::new(), own, fallback }
    }

    /// The gateway whose connections are "own".
    pub fn attach(&self, gateway: &Arc<WebSocketApi>) {
        let _ = self.gateway.set(Arc::downgrade(gateway));
    }

    fn is_own(&self, endpoint: &str) -> bool {
        endpoint.split_once("://").is_some_and(|(_, rest)| rest.trim_end_matches('/') == self.own)
    }
}

#[async_trait::async_trait]
impl switchboard::connections_api::ConnectionsApi for InProcessConnections {
    async fn post(
        &self,
        endpoint: &str,
        connection: &switchboard::ids::ConnectionId,
        data: &[u8],
    ) -> switchboard::connections_api::PostOutcome {
        use switchboard::connections_api::PostOutcome;
        let gateway = self.gateway.get().and_then(std::sync::Weak::upgrade);
        match gateway {
            Some(gw) if self.is_own(endpoint) => match gw.post(connection.as_str(), data).await {
                Posted::Sent => PostOutcome::Delivered,
                Posted::Unreachable(Unreachable::Gone) => PostOutcome::Gone,
                Posted::Unreachable(Unreachable::Malformed) => {
                    PostOutcome::Failed("BadRequestException: Invalid connectionId".into())
                }
                Posted::TooLarge(len) => PostOutcome::Failed(format!("PayloadTooLargeException: {len} bytes")),
                Posted::Throttled => PostOutcome::Throttled,
            },
            _ => self.fallback.post(endpoint, connection, data).await,
        }
    }

    async fn probe(
        &self,
        endpoint: &str,
        connection: &switchboard::ids::ConnectionId,
    ) -> switchboard::connections_api::PostOutcome {
        use switchboard::connections_api::PostOutcome;
        match self.gateway.get().and_then(std::sync::Weak::upgrade) {
            Some(gw) if self.is_own(endpoint) && !gw.connections_api_allows() => PostOutcome::Throttled,
            Some(gw) if self.is_own(endpoint) => match lookup(&gw, connection.as_str()) {
                Ok(_) => PostOutcome::Delivered,
                Err(Unreachable::Gone) => PostOutcome::Gone,
                Err(Unreachable::Malformed) => PostOutcome::Failed("BadRequestException: Invalid connectionId".into()),
            },
            _ => self.fallback.probe(endpoint, connection).await,
        }
    }
}

pub(super) async fn get_connection(State(gw): State<Arc<WebSocketApi>>, Path(id): Path<String>) -> Response {
    if !gw.connections_api_allows() {
        return throttled();
    }
    match lookup(&gw, &id) {
        Ok(live) => axum::Json(json!({
            "connectedAt": events::iso8601(live.info.connected_at),
            "lastActiveAt": events::iso8601(live.last_active_ms.load(Ordering::Relaxed)),
            "identity": { "sourceIp": live.info.source_ip, "userAgent": live.info.user_agent },
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn delete_connection(State(gw): State<Arc<WebSocketApi>>, Path(id): Path<String>) -> Response {
    if !gw.connections_api_allows() {
        return throttled();
    }
    match lookup(&gw, &id) {
        Ok(live) => {
            live.close(1000, "Connection deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.into_response(),
    }
}
