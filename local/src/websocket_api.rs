//! The WebSocket gateway and the `@connections` management API, on one
//! listener, as API Gateway serves them on one domain.
//!
//! A handshake runs the authorizer, then `$connect`; only a 2xx from
//! `$connect` upgrades the connection (101), and `Sec-WebSocket-Protocol` is
//! answered only when `$connect` returned one. Each live connection then has
//! a reader (this module's `run_connection`, which routes frames to
//! `ws-message` and enforces API Gateway's limits and timeouts) and a writer
//! task fed by a queue, so a handler that posts to its own connection while
//! its frame is being handled never waits on itself. Every end of a
//! connection — client close, idle timeout, maximum duration, oversize
//! frame, `DELETE @connections`, shutdown — runs `$disconnect` once.
//! The `@connections` routes, and the in-process path the emulator's own
//! functions post through, are in `gateway/connections.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lambda_events::encodings::Body as LambdaBody;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use switchboard::protocol::ServerReply;

use crate::events::{self, ConnectionInfo};
use crate::functions::{Functions, InvokeError, Route, Verdict};
use crate::limits::{INTEGRATION_TIMEOUT, IdentitySources, Quotas, TokenBucket};

mod connections;

pub use connections::InProcessConnections;
use connections::{delete_connection, get_connection, post_connection, staged};

/// API Gateway's WebSocket limits (its documented quotas by default).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayLimits {
    /// Largest frame: 32 KB.
    pub max_frame_bytes: usize,
    /// Largest message (after reassembling frames), and largest
    /// `@connections` POST: 128 KB.
    pub max_message_bytes: usize,
    /// A connection with no traffic from the client for this long is closed: 10 minutes.
    pub idle_timeout: Duration,
    /// No connection lives longer: 2 hours.
    pub max_duration: Duration,
    /// This long before `max_duration` (at most half of it) the client is
    /// sent `{"type":"reconnect","reason":"max_duration","within_secs":N}`,
    /// so it can rotate to a new connection without a gap. API Gateway
    /// sends nothing of the kind; zero: none. 5 minutes.
    pub reconnect_notice: Duration,
    /// A post to a connection whose outbound queue is full waits this long
    /// for room, then the connection is closed with [`SLOW_CLIENT_CLOSE`]
    /// and the post answered 410: a client that stops reading never holds
    /// up a publisher for longer. 1 second.
    pub slow_client_wait: Duration,
    /// How long an integration (the authorizer, a route's function) may
    /// take before API Gateway stops waiting: 29 seconds. A route's client
    /// is answered `{"message":"Endpoint request timed out",...}`, a
    /// handshake 504; the function itself runs on, as a Lambda does.
    pub integration_timeout: Duration,
    /// Where the authorizer requires the caller's identity; a handshake
    /// without it is refused 401 before the authorizer runs. None by
    /// default here (the library's tests connect every way); the binary
    /// enforces the template's default.
    pub identity_sources: IdentitySources,
    /// The account's quotas (new connections, `@connections` requests); off by default.
    pub quotas: Quotas,
}

/// The close code of a connection closed for not reading what it was sent
/// (1013 "Try Again Later": the client may reconnect and `sync`).
pub const SLOW_CLIENT_CLOSE: u16 = 1013;

impl Default for GatewayLimits {
    fn default() -> Self {
        GatewayLimits {
            max_frame_bytes: 32 * 1024,
            max_message_bytes: 128 * 1024,
            idle_timeout: Duration::from_secs(600),
            max_duration: Duration::from_secs(7200),
            reconnect_notice: Duration::from_secs(300),
            slow_client_wait: Duration::from_secs(1),
            integration_timeout: INTEGRATION_TIMEOUT,
            identity_sources: IdentitySources::none(),
            quotas: Quotas::default(),
        }
    }
}

/// `$request.body.<path>`: which field of a JSON message names the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSelection {
    path: Vec<String>,
    routes: Vec<String>,
}

impl RouteSelection {
    /// Parses an expression such as `$request.body.action`; `routes` are the
    /// route keys that exist besides `$connect`, `$disconnect`, `$default`.
    pub fn new(expression: &str, routes: Vec<String>) -> Result<Self, String> {
        let rest = expression
            .strip_prefix("$request.body.")
            .ok_or_else(|| format!("route selection expression '{expression}' must look like $request.body.action"))?;
        let path: Vec<String> = rest.split('.').map(str::to_owned).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(format!("route selection expression '{expression}' has an empty field name"));
        }
        Ok(RouteSelection { path, routes })
    }

    /// The route key for a text message: the selected value when it names a
    /// route, else `$default` (also for non-JSON bodies).
    ///
    /// The body is walked, not built: only the selected string is kept
    /// (`ws-message` parses the message itself; a tree of every value,
    /// built here first, was a second full parse of each message).
    pub fn select(&self, body: &str) -> String {
        let mut de = serde_json::Deserializer::from_str(body);
        let selected = serde::de::DeserializeSeed::deserialize(Selected(&self.path), &mut de).ok().flatten();
        match selected {
            Some(key) if de.end().is_ok() && self.routes.iter().any(|r| r == key.as_ref()) => key.into_owned(),
            _ => "$default".into(),
        }
    }
}

/// The string at `path` inside a JSON value, everything else skipped
/// unbuilt; `None` when it is missing or not a string. A repeated key
/// counts by its last value, as in a parsed object.
struct Selected<'p>(&'p [String]);

impl<'de> serde::de::DeserializeSeed<'de> for Selected<'_> {
    type Value = Option<std::borrow::Cow<'de, str>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Selected<'_> {
    type Value = Option<std::borrow::Cow<'de, str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then_some(std::borrow::Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.is_empty().then(|| std::borrow::Cow::Owned(v.to_owned())))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0.split_first() {
                Some((first, rest)) if *first == key => found = map.next_value_seed(Selected(rest))?,
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A connection the gateway holds.
///
/// Idle connections are the common case, so what each one keeps is small:
/// the outbound queue allocates per queued frame (tokio's channels
/// allocate 32 slots up front, about 2 KiB per connection for the two we
/// had), the close request is a oneshot, the info is shared with the
/// connection's task.
struct Live {
    info: Arc<ConnectionInfo>,
    last_active_ms: AtomicI64,
    /// One sender behind a lock, so a full queue makes posters wait (a
    /// cloned futures sender would each get a slot of its own).
    outbound: tokio::sync::Mutex<mpsc::Sender<Message>>,
    close: std::sync::Mutex<Option<oneshot::Sender<(u16, String)>>>,
}

impl Live {
    fn touch(&self) {
        self.last_active_ms.store(switchboard::time::now_millis(), Ordering::Relaxed);
    }

    /// Queues a frame for the writer, waiting at most `wait` while the
    /// queue is full; then the connection is closed as a slow consumer.
    /// Err: the connection is closing (or was just closed for being slow).
    async fn send(&self, message: Message, wait: Duration) -> Result<(), ()> {
        match tokio::time::timeout(wait, async { self.outbound.lock().await.send(message).await }).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(()),
            Err(_) => {
                tracing::warn!(connection_id = %self.info.id, queued = OUTBOUND_QUEUE, wait_ms = wait.as_millis() as u64,
                    "client is not reading: closing it as a slow consumer");
                self.close(SLOW_CLIENT_CLOSE, "Slow consumer: the client is not reading its messages");
                Err(())
            }
        }
    }

    /// Asks the connection's task to close with this status (once).
    fn close(&self, code: u16, reason: &str) {
        if let Some(tx) = self.close.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send((code, reason.to_owned()));
        }
    }
}

/// Frames waiting for a slow client before posts to it wait in turn.
const OUTBOUND_QUEUE: usize = 256;

/// Everything the gateway's handlers share.
pub struct WebSocketApi {
    pub(crate) info: events::ApiInfo,
    pub(crate) limits: GatewayLimits,
    pub(crate) route_selection: RouteSelection,
    pub(crate) functions: Arc<dyn Functions>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    live: RwLock<HashMap<String, Arc<Live>>>,
    /// New connections per second, when that quota is played.
    connects: Option<TokenBucket>,
    /// `@connections` requests per second, when that quota is played.
    connections_api: Option<TokenBucket>,
}

impl WebSocketApi {
    /// A gateway with no connections yet.
    pub fn new(
        info: events::ApiInfo,
        limits: GatewayLimits,
        route_selection: RouteSelection,
        functions: Arc<dyn Functions>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        let connects = limits.quotas.connects.map(TokenBucket::new);
        let connections_api = limits.quotas.connections_api.map(TokenBucket::new);
        WebSocketApi {
            info,
            limits,
            route_selection,
            functions,
            shutdown,
            tasks,
            live: RwLock::new(HashMap::new()),
            connects,
            connections_api,
        }
    }

    /// Runs a route's function as API Gateway does: it waits at most the
    /// integration timeout, and a function still running then runs on
    /// without anyone waiting for it (a Lambda is not stopped either).
    async fn invoke(
        &self,
        route: Route,
        event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest,
    ) -> Result<aws_lambda_events::apigw::ApiGatewayProxyResponse, Invoked> {
        let functions = self.functions.clone();
        let run = tokio::spawn(async move { functions.route(route, event).await });
        match tokio::time::timeout(self.limits.integration_timeout, run).await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(e))) => Err(Invoked::Failed(e.to_string())),
            Ok(Err(panicked)) => Err(Invoked::Failed(format!("{} panicked: {panicked}", route.function_name()))),
            Err(_) => Err(Invoked::TimedOut),
        }
    }

    /// The authorizer, within the integration timeout; the event comes
    /// back with the verdict (it becomes `$connect`'s), unless it failed.
    async fn authorize(
        &self,
        event: aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> Result<(Verdict, aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest), String> {
        let functions = self.functions.clone();
        let run = tokio::spawn(async move { (functions.authorize(&event).await, event) });
        match tokio::time::timeout(self.limits.integration_timeout, run).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(panicked)) => Err(format!("the authorizer panicked: {panicked}")),
            Err(_) => Err(format!(
                "the authorizer did not answer within the integration timeout ({:?})",
                self.limits.integration_timeout
            )),
        }
    }

    /// Takes a token of the `@connections` quota; false: throttled (429).
    fn connections_api_allows(&self) -> bool {
        self.connections_api.as_ref().is_none_or(TokenBucket::take)
    }

    fn get(&self, id: &str) -> Option<Arc<Live>> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.live.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The gateway's routes: the upgrade on `/` and `/{stage}`, and
/// `@connections` with and without the stage prefix.
pub fn router(gw: Arc<WebSocketApi>) -> Router {
    Router::new()
        .route("/", get(upgrade_root))
        .route("/{stage}", get(upgrade_stage))
        .route("/@connections/{id}", get(get_connection).post(post_connection).delete(delete_connection))
        .route(
            "/{stage}/@connections/{id}",
            get(|s, Path((stage, id)): Path<(String, String)>| staged(s, stage, id, get_connection))
                .post(|s, Path((stage, id)): Path<(String, String)>, body: Bytes| {
                    staged(s, stage, id, |s, id| post_connection(s, id, body))
                })
                .delete(|s, Path((stage, id)): Path<(String, String)>| staged(s, stage, id, delete_connection)),
        )
        .with_state(gw)
}

/// Why API Gateway got no answer from a route's function.
enum Invoked {
    /// It failed (or could not be invoked): API Gateway's 500.
    Failed(String),
    /// It took longer than the integration timeout.
    TimedOut,
}

impl From<InvokeError> for Invoked {
    fn from(e: InvokeError) -> Self {
        Invoked::Failed(e.to_string())
    }
}

// ----------------------------------------------------------------- handshake

fn plain(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

async fn upgrade_root(
    State(gw): State<Arc<WebSocketApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    upgrade(gw, peer, req).await
}

async fn upgrade_stage(
    State(gw): State<Arc<WebSocketApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stage): Path<String>,
    req: Request,
) -> Response {
    if stage != gw.info.stage {
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    }
    upgrade(gw, peer, req).await
}

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

async fn upgrade(gw: Arc<WebSocketApi>, peer: SocketAddr, mut req: Request) -> Response {
    let headers = req.headers();
    if !header_has(headers, header::UPGRADE, "websocket") || !header_has(headers, header::CONNECTION, "upgrade") {
        return plain(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket; connect with a WebSocket client (e.g. wscat -c ws://...)",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())) else {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
    };
    // The account's new connections per second: beyond it, 429 before anything runs.
    if gw.connects.as_ref().is_some_and(|bucket| !bucket.take()) {
        tracing::debug!(peer = %peer, "new connection throttled (the connect quota)");
        return plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let mut info = ConnectionInfo {
        id: events::new_connection_id(),
        connected_at: switchboard::time::now_millis(),
        source_ip: peer.ip().to_string(),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        authorizer: HashMap::new(),
    };

    // The handshake's headers and query string move into the authorizer's
    // event and from it into $connect's: one copy per handshake.
    let query = events::query_maps(req.uri().query().unwrap_or(""));
    // API Gateway checks the identity sources itself: a handshake missing
    // one is refused 401 and the authorizer never runs.
    if !gw.limits.identity_sources.present(req.headers(), &query.0) {
        tracing::info!(peer = %peer, sources = %gw.limits.identity_sources, "handshake without the identity sources: 401");
        return plain(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let authorizer_event = events::authorizer_request(&gw.info, &info, std::mem::take(req.headers_mut()), query);
    let (verdict, authorizer_event) = match gw.authorize(authorizer_event).await {
        Ok(answer) => answer,
        Err(e) => (Verdict::Failed(e), Default::default()),
    };
    match verdict {
        Verdict::Allow(context) => info.authorizer = context,
        Verdict::Unauthorized => return plain(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Verdict::Deny => return plain(StatusCode::FORBIDDEN, "Forbidden"),
        Verdict::Failed(e) => {
            tracing::error!(error = %e, "authorizer failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
    }

    let protocol = match gw.invoke(Route::Connect, events::connect(&gw.info, &info, authorizer_event)).await {
        Ok(r) if (200..300).contains(&r.status_code) => r.headers.get(header::SEC_WEBSOCKET_PROTOCOL).cloned(),
        Ok(r) => {
            let status = u16::try_from(r.status_code)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(|s| s.as_u16() >= 400);
            let status = status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            tracing::info!(connection_id = %info.id, status = status.as_u16(), "$connect refused the connection");
            return plain(status, status.canonical_reason().unwrap_or("Refused"));
        }
        Err(Invoked::Failed(e)) => {
            tracing::error!(connection_id = %info.id, error = %e, "$connect failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
        Err(Invoked::TimedOut) => {
            tracing::error!(connection_id = %info.id, "$connect did not answer within the integration timeout");
            return plain(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out");
        }
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let gw2 = gw.clone();
    gw.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => run_connection(gw2, info, upgraded).await,
            Err(e) => {
                // $connect recorded it; the client vanished before the upgrade.
                tracing::warn!(connection_id = %info.id, error = %e, "upgrade failed after $connect");
                disconnect(&gw2, &info, 1006, "Connection closed abnormally").await;
            }
        }
    });

    let mut response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, key);
    if let Some(p) = protocol {
        response = response.header(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    response.body(Body::empty()).unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"))
}

// ----------------------------------------------------------- live connection

async fn run_connection(gw: Arc<WebSocketApi>, info: ConnectionInfo, upgraded: hyper::upgrade::Upgraded) {
    let info = Arc::new(info);
    let (open, stream) = open(&gw, &info, upgraded).await;
    let ending = serve_frames(&gw, &info, &open.live, stream, open.close_rx).await;
    close(&gw, &info, open.live, open.writer, &ending).await;
    disconnect(&gw, &info, ending.status, &ending.reason).await;
}

/// A connection being served: its entry in the live table, its writer task,
/// and where a close asked by `@connections` DELETE or a slow client arrives.
struct Open {
    live: Arc<Live>,
    writer: tokio::task::JoinHandle<()>,
    close_rx: oneshot::Receiver<(u16, String)>,
}

/// How a connection ended.
struct Ending {
    status: u16,
    reason: String,
    /// The server sends the close frame (else the client did, or the socket broke).
    server_closes: bool,
}

impl Ending {
    fn new(status: u16, reason: impl Into<String>, server_closes: bool) -> Self {
        Ending { status, reason: reason.into(), server_closes }
    }
}

type FrameStream = futures::stream::SplitStream<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>>;

/// Upgrades to a WebSocket with the gateway's limits, records the
/// connection as live and starts its writer.
async fn open(
    gw: &Arc<WebSocketApi>,
    info: &Arc<ConnectionInfo>,
    upgraded: hyper::upgrade::Upgraded,
) -> (Open, FrameStream) {
    let mut config = WebSocketConfig::default();
    config.max_frame_size = Some(gw.limits.max_frame_bytes);
    config.max_message_size = Some(gw.limits.max_message_bytes);
    // The default eagerly allocates 128 KiB per connection; idle
    // connections are the common case, so start small and let it grow.
    config.read_buffer_size = 4 * 1024;
    config.write_buffer_size = 0;
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (sink, stream) = ws.split();
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (close_tx, close_rx) = oneshot::channel();
    let live = Arc::new(Live {
        info: info.clone(),
        last_active_ms: AtomicI64::new(info.connected_at),
        outbound: tokio::sync::Mutex::new(out_tx),
        close: std::sync::Mutex::new(Some(close_tx)),
    });
    gw.live.write().unwrap_or_else(|p| p.into_inner()).insert(info.id.clone(), live.clone());
    let writer = tokio::spawn(write_loop(sink, out_rx));
    tracing::debug!(connection_id = %info.id, "connection open");
    (Open { live, writer, close_rx }, stream)
}

/// Routes the client's frames until the connection ends: shutdown, the
/// idle timeout, the maximum duration (with a `reconnect` notice first), a
/// close asked for, the client's close, or a broken WebSocket.
async fn serve_frames(
    gw: &Arc<WebSocketApi>,
    info: &Arc<ConnectionInfo>,
    live: &Arc<Live>,
    mut stream: FrameStream,
    mut close_rx: oneshot::Receiver<(u16, String)>,
) -> Ending {
    let idle = sleep(gw.limits.idle_timeout);
    let max = sleep(gw.limits.max_duration);
    let lead = gw.limits.reconnect_notice.min(gw.limits.max_duration / 2);
    let notice = sleep(gw.limits.max_duration - lead);
    let mut noticed = lead.is_zero();
    tokio::pin!(idle, max, notice);
    loop {
        tokio::select! {
            _ = gw.shutdown.cancelled() => return Ending::new(1001, "Going away", true),
            _ = &mut idle => return Ending::new(1001, "Going away: idle timeout", true),
            _ = &mut max => return Ending::new(1001, "Going away: maximum connection duration", true),
            _ = &mut notice, if !noticed => {
                noticed = true;
                let within_secs = lead.as_secs_f64().ceil() as u64;
                let reply = ServerReply::Reconnect { reason: "max_duration".into(), within_secs };
                // A client too slow to take it is closed as any slow consumer.
                let _ = live.send(Message::Text(reply.to_json().into()), gw.limits.slow_client_wait).await;
            }
            Ok((code, why)) = &mut close_rx => return Ending::new(code, why, true),
            frame = stream.next() => {
                let message = match frame {
                    Some(Ok(message)) => message,
                    Some(Err(e)) => return broken(info, e),
                    None => return Ending::new(1006, "Connection closed abnormally", false),
                };
                if let Message::Close(frame) = message {
                    let (code, why) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, "Client-side close frame status not set".into()));
                    return Ending::new(code, why, false);
                }
                live.touch();
                idle.as_mut().reset(Instant::now() + gw.limits.idle_timeout);
                match message {
                    Message::Text(text) => {
                        let body = text.as_str().to_owned();
                        let route_key = gw.route_selection.select(&body);
                        handle_message(gw, info, &route_key, body, false, live).await;
                    }
                    Message::Binary(bytes) => {
                        let body = base64::engine::general_purpose::STANDARD.encode(&bytes);
                        handle_message(gw, info, "$default", body, true, live).await;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// How a connection whose WebSocket broke ends. Not a bad message: RFC
/// 6455 fails the connection (7.1.7) with 1009 for a frame or message over
/// the limit, 1007 for a text frame that is not UTF-8 and 1002 for a
/// framing violation (a continuation with nothing to continue, a reserved
/// opcode...), as API Gateway, which speaks the RFC, closes it. Bad
/// *messages* (not JSON, unknown actions) are answered and keep the connection.
fn broken(info: &ConnectionInfo, error: WsError) -> Ending {
    match error {
        WsError::Capacity(e) => {
            tracing::info!(connection_id = %info.id, error = %e, "frame or message over the limit");
            Ending::new(1009, "Message too big", true)
        }
        WsError::Utf8(e) => {
            tracing::info!(connection_id = %info.id, error = %e, "text frame is not UTF-8: closing with 1007");
            Ending::new(1007, "Invalid frame payload data: text must be UTF-8", true)
        }
        WsError::Protocol(e) => {
            tracing::info!(connection_id = %info.id, error = %e, "WebSocket protocol violation: closing with 1002");
            Ending::new(1002, format!("Protocol error: {e}"), true)
        }
        e => {
            tracing::debug!(connection_id = %info.id, error = %e, "connection broke");
            Ending::new(1006, "Connection closed abnormally", false)
        }
    }
}

/// Forgets the live connection and closes it. A client that stopped reading
/// fills its queue and blocks its writer; neither may hold the connection
/// open: 5 s for the close frame and the queue's end, 5 s for the writer to
/// drain, then it is stopped.
async fn close(
    gw: &WebSocketApi,
    info: &ConnectionInfo,
    live: Arc<Live>,
    writer: tokio::task::JoinHandle<()>,
    ending: &Ending,
) {
    gw.live.write().unwrap_or_else(|p| p.into_inner()).remove(&info.id);
    let closing = async {
        if ending.server_closes {
            let frame = CloseFrame { code: CloseCode::from(ending.status), reason: ending.reason.clone().into() };
            let _ = live.send(Message::Close(Some(frame)), Duration::from_secs(5)).await;
        }
        // Posts that still hold the Live find the queue closed.
        live.outbound.lock().await.close_channel();
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), closing).await;
    drop(live);
    let stop_writer = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), writer).await.is_err() {
        tracing::debug!(connection_id = %info.id, "writer did not finish in time; stopped");
        stop_writer.abort();
    }
}

async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, Message>,
    mut queue: mpsc::Receiver<Message>,
) {
    while let Some(message) = queue.next().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    // Flushes a pending close reply when the client closed first.
    let _ = sink.close().await;
}

async fn handle_message(
    gw: &WebSocketApi,
    info: &ConnectionInfo,
    route_key: &str,
    body: String,
    is_base64: bool,
    live: &Live,
) {
    let event = events::message(&gw.info, info, route_key, body, is_base64);
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let reply = match gw.invoke(Route::Message, event).await {
        // A two-way route: whatever body the integration returns goes back to the client.
        Ok(response) => match response.body {
            Some(LambdaBody::Text(text)) => Some(Message::Text(text.into())),
            Some(LambdaBody::Binary(bytes)) => Some(Message::Binary(bytes.into())),
            _ => None,
        },
        Err(failure) => {
            let message = match failure {
                Invoked::Failed(e) => {
                    tracing::error!(connection_id = %info.id, error = %e, "message route failed");
                    "Internal server error"
                }
                Invoked::TimedOut => {
                    tracing::error!(connection_id = %info.id, "message route did not answer within the integration timeout");
                    "Endpoint request timed out"
                }
            };
            let body = json!({"message": message, "connectionId": info.id, "requestId": request_id});
            Some(Message::Text(body.to_string().into()))
        }
    };
    if let Some(message) = reply {
        let _ = live.send(message, gw.limits.slow_client_wait).await;
    }
}

async fn disconnect(gw: &WebSocketApi, info: &ConnectionInfo, status: u16, reason: &str) {
    tracing::debug!(connection_id = %info.id, status, reason, "connection closed");
    match gw.invoke(Route::Disconnect, events::disconnect(&gw.info, info, status, reason)).await {
        Ok(_) => {}
        Err(Invoked::Failed(e)) => tracing::error!(connection_id = %info.id, error = %e, "$disconnect failed"),
        Err(Invoked::TimedOut) => {
            tracing::error!(connection_id = %info.id, "$disconnect did not answer within the integration timeout");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_selection() {
        let routes = vec!["subscribe".to_string(), "ping".to_string()];
        let sel = RouteSelection::new("$request.body.action", routes.clone()).unwrap();
        assert_eq!(sel.select(r#"{"action":"subscribe"}"#), "subscribe");
        assert_eq!(sel.select(r#"{"action":"dance"}"#), "$default");
        assert_eq!(sel.select(r#"{"action":7}"#), "$default");
        assert_eq!(sel.select("not json"), "$default");
        let nested = RouteSelection::new("$request.body.meta.kind", routes).unwrap();
        assert_eq!(nested.select(r#"{"meta":{"kind":"ping"}}"#), "ping");
        // What a parsed value would say: escapes decoded, the last of a
        // repeated key, nothing for a truncated or trailing-garbage body.
        assert_eq!(sel.select(r#"{"x":[1,{"action":"dance"}],"action":"p\u0069ng"}"#), "ping");
        assert_eq!(sel.select(r#"{"action":"ping","action":"dance"}"#), "$default");
        assert_eq!(sel.select(r#"{"action":"dance","action":"ping"}"#), "ping");
        assert_eq!(sel.select(r#"{"action":"ping""#), "$default");
        assert_eq!(sel.select(r#"{"action":"ping"} x"#), "$default");
        assert_eq!(sel.select(r#"["action","ping"]"#), "$default");
        assert_eq!(nested.select(r#"{"meta":"ping","kind":"ping"}"#), "$default");
        assert!(RouteSelection::new("$request.header.x", vec![]).is_err());
        assert!(RouteSelection::new("$request.body.", vec![]).is_err());
    }
}
