//! Benchmark 11: what a Lambda function pays when it starts cold.
//!
//! A minimal Lambda Runtime API (the three routes a custom runtime uses) in
//! this process; each function's release binary started the way Lambda starts
//! `bootstrap`: the Lambda environment variables, a real redis-server, dummy
//! credentials. Per start: **init** (process start until its first
//! `GET /runtime/invocation/next`, what Lambda reports as Init Duration), the
//! **first invocation** (event handed out until its response arrives: the
//! first Redis connection and anything else built on first use), the median
//! **warm** invocation, and the process's **RSS** after them. Beside them the
//! same for `hello-lambda`, a hello-world `lambda_runtime` function from this
//! workspace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchboard::auth::mint_hs256;
use switchboard::ids::{Identity, Role};
use tokio::sync::{mpsc, oneshot};

const SECRET: &str = "coldstart-secret-coldstart-secret-000001";

/// How one invocation ended.
struct Outcome {
    at: Instant,
    ok: bool,
    body: Bytes,
}

/// The Runtime API's side of one function process.
struct Api {
    /// When the process first asked for an event (the end of its init).
    ready: Mutex<Option<oneshot::Sender<Instant>>>,
    init_error: Mutex<Option<String>>,
    events: tokio::sync::Mutex<mpsc::Receiver<(String, Bytes)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    /// How an invocation is handed to the function.
    sender: mpsc::Sender<(String, Bytes)>,
    invoked: std::sync::atomic::AtomicUsize,
}

async fn next(State(api): State<Arc<Api>>) -> impl IntoResponse {
    if let Some(tx) = api.ready.lock().unwrap().take() {
        let _ = tx.send(Instant::now());
    }
    let Some((id, body)) = api.events.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), Bytes::new());
    };
    let mut headers = HeaderMap::new();
    let deadline =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + Duration::from_secs(30);
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_str(&id).unwrap());
    headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline.as_millis() as u64));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:123456789012:function:coldstart"),
    );
    headers.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-00000000-000000000000000000000000"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, body)
}

fn finish(api: &Api, id: &str, ok: bool, body: Bytes) -> StatusCode {
    match api.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(Outcome { at: Instant::now(), ok, body });
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(State(api): State<Arc<Api>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    finish(&api, &id, true, body)
}

async fn error(State(api): State<Arc<Api>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    finish(&api, &id, false, body)
}

async fn init_error(State(api): State<Arc<Api>>, body: Bytes) -> StatusCode {
    *api.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// The `@connections` endpoint the functions post replies to (`CALLBACK_ENDPOINT`):
/// every post delivered.
async fn connections() -> StatusCode {
    StatusCode::OK
}

/// One function under test: its binary and the event it gets.
pub struct Function {
    pub name: &'static str,
    pub binary: PathBuf,
    pub event: Value,
    /// What a successful answer contains (a status code, an Allow).
    pub expect: &'static str,
}

/// One cold start and the invocations after it.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub init_ms: f64,
    pub first_ms: f64,
    pub warm_ms: f64,
    pub rss_kib: f64,
    /// The anonymous part of the RSS (heap, stacks): the rest is the
    /// binary's and libc's pages, shared and clean.
    pub anon_kib: f64,
}

/// A Runtime API in this process and one function process under it.
pub struct Lambda {
    api: Arc<Api>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    child: tokio::process::Child,
    pub name: String,
    pub pid: u32,
    /// Process start until its first `GET /next`.
    pub init: Duration,
    /// The Runtime API's address (`host:port`).
    pub addr: std::net::SocketAddr,
}

/// `POST /invoke` (the fan-out benchmark's trigger): the body is handed
/// to the function as one invocation; answers 200 with its response, 502
/// with its error.
async fn invoke_route(State(api): State<Arc<Api>>, body: Bytes) -> (StatusCode, Bytes) {
    let id = format!("invoke-{}", api.invoked.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    match dispatch(&api, id, body, Duration::from_secs(60)).await {
        Ok((o, _)) if o.ok => (StatusCode::OK, o.body),
        Ok((o, _)) => (StatusCode::BAD_GATEWAY, o.body),
        Err(e) => (StatusCode::GATEWAY_TIMEOUT, Bytes::from(e.to_string())),
    }
}

async fn dispatch(api: &Api, id: String, body: Bytes, limit: Duration) -> anyhow::Result<(Outcome, Instant)> {
    let (tx, rx) = oneshot::channel();
    api.waiting.lock().unwrap().insert(id.clone(), tx);
    let sent = Instant::now();
    api.sender.send((id.clone(), body)).await?;
    let outcome =
        tokio::time::timeout(limit, rx).await.with_context(|| format!("no answer to {id} within {limit:?}"))??;
    Ok((outcome, sent))
}

impl Lambda {
    /// Starts the Runtime API and `binary` under it the way Lambda starts
    /// `bootstrap`, with `env` added to Lambda's variables; returns once the
    /// function asks for its first event.
    pub async fn start(name: &str, binary: &Path, env: &[(&str, String)], log: &Path) -> anyhow::Result<Lambda> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (events_tx, events_rx) = mpsc::channel(1);
        let api = Arc::new(Api {
            ready: Mutex::new(Some(ready_tx)),
            init_error: Mutex::new(None),
            events: tokio::sync::Mutex::new(events_rx),
            waiting: Mutex::new(HashMap::new()),
            sender: events_tx,
            invoked: std::sync::atomic::AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/prod/@connections/{id}", post(connections))
            .route("/invoke", post(invoke_route))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let mut cmd = tokio::process::Command::new(binary);
        // What Lambda's environment has, and nothing of this shell's (no HOME,
        // so no ~/.aws files, as in Lambda).
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/06/[$LATEST]coldstart")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDCOLDSTART")
            .env("AWS_SECRET_ACCESS_KEY", "coldstart")
            .env("AWS_SESSION_TOKEN", "coldstart")
            .env("_HANDLER", "bootstrap")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env("TZ", ":UTC")
            .env("CALLBACK_ENDPOINT", format!("http://{addr}/prod"))
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log)?)
            .stderr(std::fs::OpenOptions::new().append(true).open(log)?)
            .kill_on_drop(true);
        let began = Instant::now();
        let mut child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("no pid")?;
        let ready = tokio::select! {
            at = ready_rx => at?,
            status = child.wait() => bail!(
                "{name} exited ({}) before asking for an event{}; its output: {}",
                status?,
                api.init_error.lock().unwrap().as_deref().map(|e| format!(" (init error: {e})")).unwrap_or_default(),
                log.display()
            ),
            _ = tokio::time::sleep(Duration::from_secs(10)) => bail!("{name} asked for no event within 10 s"),
        };
        if let Some(e) = api.init_error.lock().unwrap().take() {
            bail!("{name} reported an init error: {e}");
        }
        Ok(Lambda { api, server, child, name: name.to_owned(), pid, init: ready - began, addr })
    }

    /// One invocation with `body`: its duration, and its answer when it
    /// succeeded and contains `expect`.
    pub async fn invoke(&self, body: Bytes, expect: &str) -> anyhow::Result<(Duration, String)> {
        let i = self.api.invoked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:08x}-coldstart-{i}", self.pid);
        let (outcome, sent) = dispatch(&self.api, id, body, Duration::from_secs(10))
            .await
            .with_context(|| format!("{} invocation {i}", self.name))?;
        let text = String::from_utf8_lossy(&outcome.body).into_owned();
        if !outcome.ok || !text.contains(expect) {
            bail!(
                "{} answered invocation {i} with {}: {text}",
                self.name,
                if outcome.ok { "a response" } else { "an error" }
            );
        }
        Ok((outcome.at - sent, text))
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        self.server.abort();
    }
}

/// Starts `f` cold once and invokes it `1 + warm` times.
pub async fn start_once(f: &Function, redis_url: &str, warm: usize, log: &Path) -> anyhow::Result<Start> {
    let env = [("REDIS_URL", redis_url.to_owned()), ("JWT_SECRET", SECRET.to_owned())];
    let lambda = Lambda::start(f.name, &f.binary, &env, log).await?;
    let body = Bytes::from(serde_json::to_vec(&f.event)?);
    let mut times = Vec::with_capacity(warm + 1);
    for _ in 0..=warm {
        times.push(lambda.invoke(body.clone(), f.expect).await?.0.as_secs_f64() * 1000.0);
    }
    let kib = |field| crate::procfs::status_kib(lambda.pid, field).map_or(f64::NAN, |v| v as f64);
    let (rss, anon) = (kib("VmRSS:"), kib("RssAnon:"));
    let init_ms = lambda.init.as_secs_f64() * 1000.0;
    lambda.stop().await;
    let mut warm_times = times[1..].to_vec();
    warm_times.sort_by(f64::total_cmp);
    Ok(Start {
        init_ms,
        first_ms: times[0],
        warm_ms: warm_times.get(warm_times.len() / 2).copied().unwrap_or(f64::NAN),
        rss_kib: rss,
        anon_kib: anon,
    })
}

fn fixture(name: &str) -> anyhow::Result<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/events").join(name);
    Ok(serde_json::from_slice(&std::fs::read(&path).with_context(|| path.display().to_string())?)?)
}

/// The functions of the table, in `dir` (a `target/<profile>` folder), each
/// with the fixture it is fed.
pub fn functions(dir: &Path) -> anyhow::Result<Vec<Function>> {
    let who = Identity::new("acme".parse().unwrap(), "42".parse().unwrap(), Role::Agent);
    let token = mint_hs256(SECRET.as_bytes(), &who, 3600);
    let mut authorizer = fixture("ws-authorizer-request.json")?;
    authorizer["queryStringParameters"] = json!({ "token": token });
    let mut message = fixture("ws-message.json")?;
    // A ping: one frame's whole path (parse, validate, answer) without a post.
    message["body"] = json!(r#"{"action":"ping","id":"p1"}"#);
    let api = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/v1/health",
        "rawQueryString": "",
        "headers": { "host": "api.example.com" },
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
            "domainPrefix": "api", "requestId": "r1", "routeKey": "$default", "stage": "$default",
            "time": "06/Dec/2026:20:00:00 +0000", "timeEpoch": 1796500000000u64,
            "http": { "method": "GET", "path": "/v1/health", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "bench" }
        },
        "isBase64Encoded": false
    });
    let f = |name: &'static str, event: Value, expect: &'static str| Function {
        name,
        binary: dir.join(name),
        event,
        expect,
    };
    let ok = "\"statusCode\":200";
    Ok(vec![
        f("hello-lambda", json!({"hello": "world"}), "world"),
        f("ws-authorizer", authorizer, "Allow"),
        f("ws-connect", fixture("ws-connect.json")?, ok),
        f("ws-message", message, "pong"),
        f("ws-disconnect", fixture("ws-disconnect.json")?, ok),
        f("api", api, ok),
        // A direct publish to a tenant nobody is connected to: the event
        // recorded in its history, its recipients resolved, nothing posted.
        f(
            "fanout",
            json!({"tenant_id": "coldstart", "type": "call.incoming", "data": {"queue": "support"}}),
            "\"results\"",
        ),
    ])
}

/// init, first, warm, RSS over `starts` cold starts of each function.
pub struct Row {
    pub name: &'static str,
    pub starts: Vec<Start>,
    pub binary_bytes: u64,
    /// The binary deflated into a zip as `bootstrap` (what Lambda is given).
    pub zip_bytes: u64,
}

/// The size of `binary` zipped as `bootstrap` with deflate, as `cargo lambda build --output-format zip` does.
fn zip_size(binary: &Path) -> anyhow::Result<u64> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(binary, dir.path().join("bootstrap"))?;
    let status = std::process::Command::new("zip")
        .args(["-q", "-9", "bootstrap.zip", "bootstrap"])
        .current_dir(dir.path())
        .status()
        .context("running zip (apt-get install zip)")?;
    if !status.success() {
        bail!("zip failed: {status}");
    }
    Ok(std::fs::metadata(dir.path().join("bootstrap.zip"))?.len())
}

pub fn measure(dir: &Path, redis_url: &str, starts: usize, warm: usize, only: &[String]) -> anyhow::Result<Vec<Row>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut rows = Vec::new();
    for f in functions(dir)?.into_iter().filter(|f| only.is_empty() || only.iter().any(|o| o == f.name)) {
        let log = std::env::temp_dir().join(format!("switchboard-bench-coldstart-{}.log", f.name));
        let binary_bytes = std::fs::metadata(&f.binary).with_context(|| format!("{}", f.binary.display()))?.len();
        let mut row = Row { name: f.name, starts: Vec::new(), binary_bytes, zip_bytes: zip_size(&f.binary)? };
        for _ in 0..starts {
            row.starts.push(rt.block_on(start_once(&f, redis_url, warm, &log))?);
        }
        rows.push(row);
    }
    Ok(rows)
}
