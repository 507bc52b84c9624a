//! `switchboard-local`: API Gateway's WebSocket API, its `@connections`
//! management API and the HTTP API, on one machine.
//!
//! The emulator is a router over the handler libraries, not a second
//! implementation: it turns WebSocket traffic into the `aws_lambda_events`
//! values API Gateway would send and calls `ws-authorizer`, `ws-connect`,
//! `ws-message` and `ws-disconnect` — in this process (the default), or
//! through the Lambda Invoke API of `cargo lambda watch`
//! (`--functions-url`) for hot reload. The HTTP API is the `api` crate's
//! axum Router, the same one `lambda_http` runs in AWS.
//!
//! [`Emulator::start`] binds its listeners (port 0 is fine) and returns at
//! once with their addresses, so tests own the sockets; [`Emulator::shutdown`]
//! closes every connection with 1001, runs `$disconnect` for each and stops.

pub mod console;
pub mod events;
pub mod functions;
pub mod limits;
pub mod sqs;
pub mod websocket_api;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::console::{ConsoleSettings, Minter};
use crate::functions::{Functions, InProcess, Remote};
pub use crate::limits::{IdentitySources, Quota, Quotas};
pub use crate::websocket_api::{GatewayLimits, RouteSelection};

/// The named routes besides `$connect`, `$disconnect` and `$default` (as in
/// the SAM template); all of them are served by `ws-message`.
pub const WEBSOCKET_ROUTES: &[&str] = switchboard::protocol::ACTIONS;

/// Where and how the emulator listens.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to bind both listeners to.
    pub host: IpAddr,
    /// WebSocket gateway and `@connections` port (0: any free port).
    pub ws_port: u16,
    /// HTTP API port (0: any free port).
    pub http_port: u16,
    /// Stage name: the gateway answers on `/` and `/{stage}`.
    pub stage: String,
    /// `domainName` in events (and so in callback endpoints); default: the bound `host:port`.
    pub domain_name: Option<String>,
    /// Route selection expression, `$request.body.action` by default.
    pub route_selection: String,
    /// API Gateway's limits.
    pub limits: GatewayLimits,
    /// SQS port (0: any free port).
    pub sqs_port: u16,
    /// The event source mappings' batching.
    pub mapping: MappingSettings,
    /// In-process functions post to this emulator's own connections
    /// directly (see [`websocket_api::InProcessConnections`]); false sends every
    /// post over HTTP through the SDK, as a Lambda does.
    pub in_process_posts: bool,
    /// How often the `fanout` function is invoked with `{"action":"sweep"}`,
    /// as the template's schedule does every 5 minutes (zero: never).
    pub sweep_interval: Duration,
    /// The development console at `/console` (see [`console`]); `None`
    /// (production mode, and the default) routes none of it.
    pub console: Option<ConsoleSettings>,
    /// `GET /metrics` on the HTTP port renders this Prometheus recorder
    /// (installed by the binary: a process has one); `None`: no route.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// When set, `GET /metrics` answers only `Authorization: Bearer <this>`
    /// (401 otherwise): what production mode asks for to serve it at all.
    pub metrics_token: Option<String>,
}

/// How the emulator's event source mappings poll and batch (Lambda's
/// `BatchSize`, `MaximumBatchingWindowInSeconds`, pollers).
#[derive(Debug, Clone)]
pub struct MappingSettings {
    /// Records per invocation.
    pub batch_size: usize,
    /// Gathering window.
    pub batch_window: Duration,
    /// Concurrent pollers per queue.
    pub pollers: usize,
}

impl Default for MappingSettings {
    fn default() -> Self {
        MappingSettings { batch_size: 10, batch_window: Duration::ZERO, pollers: 4 }
    }
}

/// The queues the emulator creates at start-up, as in the SAM template.
pub mod queues {
    /// Webhook deliveries (the `webhook` function's trigger).
    pub const WEBHOOKS: &str = "switchboard-webhooks";
    /// Final webhook failures.
    pub const WEBHOOKS_DLQ: &str = "switchboard-webhooks-dlq";
    /// Queued fan-out (the `fanout` function's trigger).
    pub const EVENTS: &str = "switchboard-events";
    /// Fan-out jobs that failed every retry.
    pub const EVENTS_DLQ: &str = "switchboard-events-dlq";
    /// Receives before a delivery is redriven: the most attempts a webhook
    /// may have, plus one spare (as in `infra/template.yaml`).
    pub const WEBHOOK_MAX_RECEIVES: u32 = switchboard::webhook::MAX_RETRY_COUNT + 2;
    /// The webhook queue's visibility timeout, seconds: 6x the function's 40 s timeout.
    pub const WEBHOOK_VISIBILITY_SECS: u64 = 240;
    /// Receives before a fan-out job is redriven.
    pub const EVENTS_MAX_RECEIVES: u32 = 5;
    /// The events queue's visibility timeout, seconds: 6x the function's 30 s timeout.
    pub const EVENTS_VISIBILITY_SECS: u64 = 180;
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ws_port: 3001,
            http_port: 3000,
            stage: "local".into(),
            domain_name: None,
            route_selection: "$request.body.action".into(),
            limits: GatewayLimits::default(),
            sqs_port: 9324,
            mapping: MappingSettings::default(),
            in_process_posts: true,
            sweep_interval: Duration::from_secs(60),
            console: None,
            metrics: None,
            metrics_token: None,
        }
    }
}

impl Settings {
    /// Any free ports: what tests use.
    pub fn ephemeral() -> Self {
        Settings { ws_port: 0, http_port: 0, sqs_port: 0, ..Settings::default() }
    }
}

/// Who runs the functions.
#[expect(clippy::large_enum_variant, reason = "built once at start-up")]
pub enum Mode {
    /// The handler libraries, in this process, over this context.
    InProcess {
        /// Store and configuration.
        ctx: switchboard::Context,
        /// Token verification for the authorizer and the HTTP API.
        verifier: switchboard::auth::Verifier,
    },
    /// A Lambda Invoke API (`cargo lambda watch`) at this URL.
    Remote {
        /// e.g. `http://127.0.0.1:9000`.
        functions_url: url::Url,
    },
}

/// A running emulator.
pub struct Emulator {
    /// The WebSocket gateway and `@connections`.
    pub ws_addr: SocketAddr,
    /// The HTTP API.
    pub http_addr: SocketAddr,
    /// SQS.
    pub sqs_addr: SocketAddr,
    /// The emulated SQS, for tests that look inside.
    pub sqs: Arc<sqs::Sqs>,
    /// The stage.
    pub stage: String,
    gateway: Arc<websocket_api::WebSocketApi>,
    shutdown: CancellationToken,
    servers: TaskTracker,
}

/// Installs the process's metrics recorder for `GET /metrics` (see
/// [`Settings::metrics`]): Prometheus text with the names and units the
/// functions write as EMF in Lambda, durations as histograms. A process
/// has one recorder: call this once.
pub fn install_prometheus() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const BUCKETS_SECS: &[f64] =
        &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS_SECS)?
        .install_recorder()
        .context("installing the metrics recorder")?;
    switchboard::metrics::describe();
    Ok(handle)
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Sets `TCP_NODELAY` on an accepted connection.
fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// Binds a listener with a 4096-connection accept queue (tokio's `bind`
/// asks for 1024: a storm of handshakes overflowed it, and a dropped SYN
/// costs its client a second).
fn listen(host: std::net::IpAddr, port: u16) -> std::io::Result<TcpListener> {
    let addr = std::net::SocketAddr::new(host, port);
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The settings the emulator cannot start with: the route selection
/// expression (parsed) and the stage's name.
fn check(settings: &Settings) -> anyhow::Result<RouteSelection> {
    let route_selection =
        RouteSelection::new(&settings.route_selection, WEBSOCKET_ROUTES.iter().map(|r| r.to_string()).collect())
            .map_err(anyhow::Error::msg)?;
    if settings.stage.is_empty() || !settings.stage.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        anyhow::bail!("stage '{}' must be letters, digits, '-' or '_'", settings.stage);
    }
    Ok(route_selection)
}

/// The three listening sockets, bound before anything starts.
struct Listeners {
    ws: TcpListener,
    http: TcpListener,
    sqs: TcpListener,
}

/// Where the listeners are.
#[derive(Clone, Copy)]
struct Addrs {
    ws: SocketAddr,
    http: SocketAddr,
    sqs: SocketAddr,
}

impl Listeners {
    fn bind(settings: &Settings) -> anyhow::Result<Listeners> {
        let (host, ws_port, http_port, sqs_port) =
            (settings.host, settings.ws_port, settings.http_port, settings.sqs_port);
        let ws = listen(host, ws_port).with_context(|| {
            format!("cannot listen on {host}:{ws_port} for WebSockets (is another emulator running? try --ws-port)")
        })?;
        let http = listen(host, http_port)
            .with_context(|| format!("cannot listen on {host}:{http_port} for the HTTP API (try --http-port)"))?;
        let sqs = listen(host, sqs_port)
            .with_context(|| format!("cannot listen on {host}:{sqs_port} for SQS (try --sqs-port)"))?;
        Ok(Listeners { ws, http, sqs })
    }

    fn addrs(&self) -> anyhow::Result<Addrs> {
        Ok(Addrs { ws: self.ws.local_addr()?, http: self.http.local_addr()?, sqs: self.sqs.local_addr()? })
    }

    /// Serves SQS, the WebSocket API and the HTTP API until `shutdown`.
    fn serve(
        self,
        sqs_app: Router,
        ws_app: Router,
        http_api: Router,
        shutdown: &CancellationToken,
        servers: &TaskTracker,
    ) {
        let stop = shutdown.clone();
        let sqs_listener = self.sqs;
        servers.spawn(async move {
            if let Err(e) = axum::serve(sqs_listener, sqs_app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "SQS server stopped");
            }
        });
        let ws_app = ws_app.into_make_service_with_connect_info::<SocketAddr>();
        let (stop, ws_listener) = (shutdown.clone(), self.ws);
        servers.spawn(async move {
            // As API Gateway does: a frame goes out when it is written, not
            // after the client's delayed ACK of the one before (Nagle's
            // algorithm cost a replay of 1,000 events a 40 ms stall).
            let ws_listener = ws_listener.tap_io(no_delay);
            if let Err(e) = axum::serve(ws_listener, ws_app).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "gateway server stopped");
            }
        });
        let (stop, http_listener) = (shutdown.clone(), self.http);
        servers.spawn(async move {
            let http_listener = http_listener.tap_io(no_delay);
            if let Err(e) = axum::serve(http_listener, http_api).with_graceful_shutdown(stop.cancelled_owned()).await {
                tracing::error!(error = %e, "HTTP API server stopped");
            }
        });
    }
}

/// The functions behind the routes, the HTTP API (with the console), and
/// the in-process `@connections` client when posts stay in the process.
struct Wired {
    functions: Arc<dyn Functions>,
    http_api: Router,
    own_posts: Option<Arc<websocket_api::InProcessConnections>>,
}

fn wire(
    settings: &Settings,
    mode: Mode,
    ws_addr: SocketAddr,
    sqs_url: &str,
    urls: switchboard::config::QueueUrls,
) -> anyhow::Result<Wired> {
    let mut own_posts: Option<Arc<websocket_api::InProcessConnections>> = None;
    let (functions, http_api): (Arc<dyn Functions>, Router) = match mode {
        Mode::InProcess { ctx, verifier } => {
            let mut ctx = ctx.with_queues(switchboard::queue::Queues::local(sqs_url, urls));
            if settings.in_process_posts {
                let domain = settings.domain_name.clone().unwrap_or_else(|| ws_addr.to_string());
                let posts = Arc::new(websocket_api::InProcessConnections::new(
                    format!("{domain}/{}", settings.stage),
                    ctx.connections_api.clone(),
                ));
                ctx = ctx.with_connections_api(posts.clone());
                own_posts = Some(posts);
            }
            let api = api::router(ctx.clone(), verifier.clone());
            (Arc::new(InProcess::new(ctx, verifier)), api)
        }
        Mode::Remote { functions_url } => {
            let proxy = Router::new().fallback(proxy_to_function_url).with_state(ProxyTarget {
                client: reqwest::Client::new(),
                base: functions_url.join("lambda-url/api/").context("functions URL")?,
            });
            (Arc::new(Remote::new(functions_url)), proxy)
        }
    };
    let http_api = match settings.console.clone() {
        Some(console) => console::router(console, ws_addr.port(), settings.stage.clone()).merge(http_api),
        None => http_api,
    };
    Ok(Wired { functions, http_api, own_posts })
}

/// `GET /metrics` beside the HTTP API, when Prometheus is installed (behind
/// `METRICS_TOKEN` when one is set).
fn with_metrics(settings: &Settings, gateway: &Arc<websocket_api::WebSocketApi>, http_api: Router) -> Router {
    let Some(handle) = settings.metrics.clone() else { return http_api };
    let gateway = gateway.clone();
    let token = settings.metrics_token.clone().map(|t| format!("Bearer {t}"));
    let scrape = move |headers: axum::http::HeaderMap| async move {
        let given = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes());
        if let Some(expected) = &token
            && given.is_none_or(|g| !same_secret(g, expected.as_bytes()))
        {
            let refusal = serde_json::json!({"code": "unauthorized", "message": "GET /metrics needs Authorization: Bearer <METRICS_TOKEN>"});
            return (StatusCode::UNAUTHORIZED, axum::Json(refusal)).into_response();
        }
        switchboard::metrics::connections_current(gateway.connection_count());
        ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render())
            .into_response()
    };
    axum::Router::new().route("/metrics", axum::routing::get(scrape)).merge(http_api)
}

/// The event source mappings of the two queues, and the sweep's schedule.
fn spawn_background(
    settings: &Settings,
    sqs: &Arc<sqs::Sqs>,
    functions: &Arc<dyn Functions>,
    shutdown: &CancellationToken,
    servers: &TaskTracker,
) {
    for (queue, function) in [(queues::WEBHOOKS, "webhook"), (queues::EVENTS, "fanout")] {
        let mapping = sqs::EventSourceMapping {
            queue: queue.to_owned(),
            function,
            batch_size: settings.mapping.batch_size,
            batch_window: settings.mapping.batch_window,
            pollers: settings.mapping.pollers,
        };
        sqs::spawn_mapping(sqs.clone(), mapping, functions.clone(), shutdown.clone(), servers);
    }
    if settings.sweep_interval.is_zero() {
        return;
    }
    let (functions, stop, every) = (functions.clone(), shutdown.clone(), settings.sweep_interval);
    servers.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await; // the first tick is now: start after one interval
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {
                    if let Err(e) = functions.schedule("fanout", serde_json::json!({"action": "sweep"})).await {
                        tracing::warn!(error = %e, "sweep failed; trying again next interval");
                    }
                }
            }
        }
    });
}

impl Emulator {
    /// Binds the listeners, wires the functions and the WebSocket API,
    /// and starts serving: three named steps.
    pub async fn start(settings: Settings, mode: Mode) -> anyhow::Result<Emulator> {
        let route_selection = check(&settings)?;
        let listeners = Listeners::bind(&settings)?;
        let addrs = listeners.addrs()?;
        let sqs_url = format!("http://{}", addrs.sqs);
        let sqs = Arc::new(sqs::Sqs::new(&sqs_url));
        let urls = create_queues(&sqs)?;
        let shutdown = CancellationToken::new();
        let wired = wire(&settings, mode, addrs.ws, &sqs_url, urls)?;
        let info = events::ApiInfo {
            domain_name: settings.domain_name.clone().unwrap_or_else(|| addrs.ws.to_string()),
            stage: settings.stage.clone(),
            api_id: events::new_api_id(),
        };
        let gateway = Arc::new(websocket_api::WebSocketApi::new(
            info,
            settings.limits.clone(),
            route_selection,
            wired.functions.clone(),
            shutdown.clone(),
            TaskTracker::new(),
        ));
        if let Some(posts) = &wired.own_posts {
            posts.attach(&gateway);
        }
        let http_api = with_metrics(&settings, &gateway, wired.http_api);
        let servers = TaskTracker::new();
        spawn_background(&settings, &sqs, &wired.functions, &shutdown, &servers);
        listeners.serve(
            sqs::router(sqs.clone()),
            websocket_api::router(gateway.clone()),
            http_api,
            &shutdown,
            &servers,
        );
        servers.close();
        Ok(Emulator {
            ws_addr: addrs.ws,
            http_addr: addrs.http,
            sqs_addr: addrs.sqs,
            sqs,
            stage: settings.stage,
            gateway,
            shutdown,
            servers,
        })
    }

    /// `ws://host:port/{stage}`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/{}", self.ws_addr, self.stage)
    }

    /// `http://host:port`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The `@connections` endpoint to give an SDK client: `http://host:port/{stage}`.
    pub fn connections_endpoint(&self) -> String {
        format!("http://{}/{}", self.ws_addr, self.stage)
    }

    /// `http://host:port`: the SQS endpoint URL for SDK clients and the AWS CLI.
    pub fn sqs_url(&self) -> String {
        format!("http://{}", self.sqs_addr)
    }

    /// A queue's URL.
    pub fn queue_url(&self, name: &str) -> String {
        self.sqs.url_of(name)
    }

    /// Open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.gateway.connection_count()
    }

    /// Cancelled when the emulator shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Closes every connection with 1001, runs `$disconnect` for each, stops
    /// the listeners. Bounded: gives up waiting after 10 seconds.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let tasks = self.gateway.tasks.clone();
        tasks.close();
        let wait = async {
            tasks.wait().await;
            self.servers.wait().await;
        };
        if tokio::time::timeout(Duration::from_secs(10), wait).await.is_err() {
            tracing::warn!("shutdown: some connections did not finish within 10 s");
        }
    }
}

/// Creates the webhook and events queues with their dead-letter queues.
fn create_queues(sqs: &sqs::Sqs) -> anyhow::Result<switchboard::config::QueueUrls> {
    use serde_json::{Map, Value, json};
    let attrs = |visibility: u64, dlq: Option<(&str, u32)>| -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("VisibilityTimeout".into(), json!(visibility.to_string()));
        m.insert("MessageRetentionPeriod".into(), json!("1209600"));
        if let Some((dlq, max)) = dlq {
            let policy = json!({"deadLetterTargetArn": sqs::Sqs::arn_of(dlq), "maxReceiveCount": max});
            m.insert("RedrivePolicy".into(), json!(policy.to_string()));
        }
        m
    };
    let create = |name: &str, a: Map<String, Value>| sqs.create_queue(name, &a).map_err(anyhow::Error::msg);
    let webhooks_dlq = create(queues::WEBHOOKS_DLQ, attrs(30, None))?;
    let webhooks = create(
        queues::WEBHOOKS,
        attrs(queues::WEBHOOK_VISIBILITY_SECS, Some((queues::WEBHOOKS_DLQ, queues::WEBHOOK_MAX_RECEIVES))),
    )?;
    create(queues::EVENTS_DLQ, attrs(30, None))?;
    let events = create(
        queues::EVENTS,
        attrs(queues::EVENTS_VISIBILITY_SECS, Some((queues::EVENTS_DLQ, queues::EVENTS_MAX_RECEIVES))),
    )?;
    Ok(switchboard::config::QueueUrls {
        webhooks: Some(webhooks),
        webhooks_dlq: Some(webhooks_dlq),
        events: Some(events),
    })
}

#[derive(Clone)]
struct ProxyTarget {
    client: reqwest::Client,
    base: url::Url,
}

/// In `--functions-url` mode the HTTP API is forwarded to the `api`
/// function's URL that `cargo lambda watch` serves (`/lambda-url/api/...`).
async fn proxy_to_function_url(State(target): State<ProxyTarget>, req: Request) -> Response {
    let path_and_query =
        req.uri().path_and_query().map(|p| p.as_str().trim_start_matches('/').to_owned()).unwrap_or_default();
    // Only paths under the api function's URL: a request line such as
    // `GET /http://127.0.0.1:8765/x` (or `..` segments) would otherwise make
    // `join` leave it and carry the caller's Authorization header elsewhere.
    let url = match target.base.join(&path_and_query) {
        Ok(url) if url.origin() == target.base.origin() && url.path().starts_with(target.base.path()) => url,
        _ => {
            let message = serde_json::json!({"code": "not_found", "message": "no such route"});
            return (StatusCode::NOT_FOUND, axum::Json(message)).into_response();
        }
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 6 * 1024 * 1024).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "body over 6 MB (Lambda's limit)").into_response();
    };
    let mut forward = target.client.request(parts.method, url).body(body);
    for (name, value) in parts.headers.iter().filter(|(n, _)| *n != axum::http::header::HOST) {
        forward = forward.header(name, value);
    }
    match forward.send().await {
        Ok(r) => {
            let mut builder = Response::builder().status(r.status());
            for (name, value) in r.headers() {
                builder = builder.header(name, value);
            }
            let bytes = r.bytes().await.unwrap_or_default();
            builder.body(Body::from(bytes)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("the api function is not reachable: {e}")).into_response(),
    }
}
