//! The test harness: the backends the store contract runs against (on the
//! real servers `switchboard-test-support` starts), the event fixtures,
//! WebSocket clients, tokens and waits.
//!
//! Servers are started once per test binary and shared by its tests; each
//! test gets its own key prefix, so tests never see each other's keys and
//! may run in parallel.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use switchboard::config::{Limits, RedisConfig};
use switchboard::store::{Keys, MemoryStore, RedisStore, Store};
use switchboard_test_support::{STARTUP_TIMEOUT, redis_cmd, shared_cluster, shared_redis};

/// moto's server: a local AWS from PyPI (`make test` installs it into
/// `.tools/requirements-test`), for the AWS APIs the emulator does not play
/// and as a second opinion on those it does.
pub mod moto {
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A `moto_server` child on a free port, killed on drop.
    pub struct Moto {
        child: Child,
        /// `http://127.0.0.1:<port>`.
        pub url: String,
    }

    impl Moto {
        /// Starts one and waits (30 s at most) until it listens.
        pub fn start() -> Moto {
            let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/requirements-test/bin/moto_server");
            assert!(
                bin.exists(),
                "moto is not installed: run `make test` (it installs it), or ./scripts/with-tools infra/requirements-test.txt true"
            );
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let child = Command::new(bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting moto_server");
            let deadline = Instant::now() + Duration::from_secs(30);
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "moto_server did not listen on {port} within 30 s");
                std::thread::sleep(Duration::from_millis(100));
            }
            Moto { child, url: format!("http://127.0.0.1:{port}") }
        }
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Tokens for the tests: one HS256 secret that every in-process emulator
/// and handler under test verifies with.
pub mod auth {
    use switchboard::auth::{AuthConfig, Verifier, mint_hs256};
    use switchboard::ids::Identity;
    use switchboard::ids::Role;

    /// The secret (32+ bytes, as `JWT_SECRET` requires).
    pub const SECRET: &[u8] = b"switchboard-tests-secret-switchboard-tests";

    /// The verifier of [`SECRET`].
    pub fn verifier() -> Verifier {
        Verifier::new(&AuthConfig::hs256(SECRET)).expect("an HS256 verifier")
    }

    /// A caller.
    pub fn identity(tenant: &str, user: &str, role: Role) -> Identity {
        Identity::new(tenant.parse().expect("a tenant id"), user.parse().expect("a user id"), role)
    }

    /// A token for `user` of `tenant`, valid ten minutes.
    pub fn token(tenant: &str, user: &str, role: Role) -> String {
        mint_hs256(SECRET, &identity(tenant, user, role), 600)
    }
}

/// An active webhook of `url` for `topic` (`call.*`, `*`), with a fresh id
/// and secret, 3 retries and a 5 s timeout: set the fields a test is about.
pub fn webhook_config(url: &str, topic: &str) -> switchboard::webhook::WebhookConfig {
    let events = vec![topic.parse().expect("a topic")];
    switchboard::webhook::WebhookConfig {
        timeout: 5,
        ..switchboard::webhook::WebhookConfig::new("crm", url, events, 0)
    }
}

/// Ids from literals, for tests (a bad literal is a bug in the test: it panics).
pub mod id {
    use switchboard::ids::{ConnectionId, TenantId, UserId};

    /// A tenant id.
    pub fn tenant(s: &str) -> TenantId {
        s.parse().unwrap_or_else(|e| panic!("tenant id {s:?}: {e}"))
    }

    /// A user id.
    pub fn user(s: &str) -> UserId {
        s.parse().unwrap_or_else(|e| panic!("user id {s:?}: {e}"))
    }

    /// A connection id.
    pub fn cid(s: &str) -> ConnectionId {
        s.parse().unwrap_or_else(|e| panic!("connection id {s:?}: {e}"))
    }
}

/// The three real backends the store contract runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `MemoryStore`.
    Memory,
    /// `RedisStore` on one `redis-server`.
    Redis,
    /// `RedisStore` on a 3-node Redis Cluster.
    Cluster,
}

impl Backend {
    /// A fresh, empty store: its own key prefix on the shared servers.
    pub fn store(self, limits: Limits) -> Arc<dyn Store> {
        self.store_with_prefix(&unique_prefix(), limits)
    }

    /// A store under a chosen prefix (to inspect its keys).
    pub fn store_with_prefix(self, prefix: &str, limits: Limits) -> Arc<dyn Store> {
        match self {
            Backend::Memory => Arc::new(MemoryStore::new(limits)),
            Backend::Redis => {
                Arc::new(RedisStore::new(RedisConfig::single(shared_redis().url()), Keys::new(prefix), limits))
            }
            Backend::Cluster => {
                Arc::new(RedisStore::new(RedisConfig::cluster(shared_cluster().urls()), Keys::new(prefix), limits))
            }
        }
    }
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// The path of a fixture under `tests/fixtures/`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// Parses a fixture under `tests/fixtures/events/` as an event type.
pub fn event_fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = fixture_path(&format!("events/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Expands `async fn case(backend: Backend)` functions into one
/// `#[tokio::test]` per backend, in a module per backend:
///
/// ```ignore
/// backend_tests!(memory => Memory, redis_single => Redis; [case_a, case_b]);
/// ```
#[macro_export]
macro_rules! backend_tests {
    ($($module:ident => $backend:ident),+ ; $cases:tt) => {
        $( $crate::backend_tests!(@module $module $backend $cases); )+
    };
    (@module $module:ident $backend:ident [$($case:ident),* $(,)?]) => {
        mod $module {
            $( #[tokio::test] async fn $case() { super::$case($crate::Backend::$backend).await } )*
        }
    };
}

/// `redis-cli MONITOR` on one server: records the commands clients send,
/// to count round trips. Commands run inside Lua scripts are reported by
/// MONITOR as `[0 lua]` and are not round trips; they are kept apart.
pub struct Monitor {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    port: u16,
}

/// What clients sent while a [`Monitor`] watched.
#[derive(Debug, Default)]
pub struct Observed {
    /// Commands sent by clients (each one a round trip, or part of a pipeline).
    pub client: Vec<String>,
    /// Commands executed inside scripts.
    pub scripted: Vec<String>,
}

impl Monitor {
    /// Attaches to the server on `port`; returns once MONITOR is active.
    pub fn attach(port: u16) -> anyhow::Result<Self> {
        use std::io::BufRead;
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "MONITOR"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(STARTUP_TIMEOUT).context("MONITOR did not start")?;
        if first.trim() != "OK" {
            bail!("MONITOR answered {first:?}");
        }
        Ok(Monitor { child, lines, port })
    }

    /// Everything observed since the last call, up to a marker this sends.
    pub fn take(&mut self) -> anyhow::Result<Observed> {
        let marker = format!("monitor-marker-{}", uuid::Uuid::new_v4().simple());
        redis_cmd(self.port, &["ECHO", &marker])?;
        let mut seen = Observed::default();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).context("MONITOR went quiet before the marker")?;
            if line.contains(&marker) {
                return Ok(seen);
            }
            // `1700000000.123456 [0 127.0.0.1:5555] "EVALSHA" "..."` or `[0 lua]`.
            let Some((source, command)) = line.split_once("] ") else {
                continue;
            };
            if source.ends_with("lua") {
                seen.scripted.push(command.to_owned());
            } else {
                seen.client.push(command.to_owned());
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// WebSocket clients for end-to-end tests: every wait is bounded.
pub mod ws {
    use std::time::Duration;

    use futures::{SinkExt, StreamExt};
    use serde_json::Value;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::{Error, Message};
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    /// A client connection.
    pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// The outcome of a handshake: the socket and the server's response, or
    /// the error (`Error::Http(response)` for a refusal).
    pub type Handshake = Result<(Ws, http::Response<Option<Vec<u8>>>), Error>;

    /// The longest any single wait in a test may take.
    pub const WAIT: Duration = Duration::from_secs(10);

    /// Connects with extra handshake headers; returns the socket and the
    /// server's handshake response (to check `Sec-WebSocket-Protocol`), or
    /// the error — `Error::Http(response)` carries a refusal's status.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<(Ws, http::Response<Option<Vec<u8>>>), Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| Error::ConnectionClosed)?
    }

    /// True when no text message arrives within `window` (pings and pongs
    /// are skipped); false, with the message printed, when one does.
    pub async fn silent(ws: &mut Ws, window: Duration) -> bool {
        loop {
            match tokio::time::timeout(window, ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Text(t)))) => {
                    eprintln!("unexpected message: {t}");
                    return false;
                }
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// The HTTP status of a refused handshake.
    pub fn refusal_status(result: Handshake) -> u16 {
        match result {
            Err(Error::Http(response)) => response.status().as_u16(),
            Err(other) => panic!("expected an HTTP refusal, got {other}"),
            Ok(_) => panic!("expected a refusal, the handshake succeeded"),
        }
    }

    /// Sends a text frame.
    pub async fn send_text(ws: &mut Ws, text: impl Into<String>) {
        let text: String = text.into();
        tokio::time::timeout(WAIT, ws.send(Message::Text(text.into())))
            .await
            .expect("send timed out")
            .expect("send failed");
    }

    /// Sends a JSON message.
    pub async fn send_json(ws: &mut Ws, value: Value) {
        send_text(ws, value.to_string()).await;
    }

    /// The next text frame, parsed as JSON (pings and pongs skipped).
    pub async fn next_json(ws: &mut Ws) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("no message within the wait");
            match frame {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str()).unwrap_or_else(|_| Value::String(t.to_string()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Sends `message` and returns the next JSON reply.
    pub async fn request(ws: &mut Ws, message: Value) -> Value {
        send_json(ws, message).await;
        next_json(ws).await
    }

    /// Waits for the server's close frame (skipping other frames).
    pub async fn next_close(ws: &mut Ws) -> Option<CloseFrame> {
        loop {
            match tokio::time::timeout(WAIT, ws.next()).await.expect("no close within the wait") {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection failed instead of closing: {e}"),
                None => return None,
            }
        }
    }
}

/// Polls `check` until it holds, for at most `ws::WAIT`.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_within(what, ws::WAIT, check).await
}

/// Polls `check` until it holds, for at most `wait` (what is paced by a
/// quota takes its time; the wait bounds it, it measures nothing).
pub async fn eventually_within<F, Fut>(what: &str, wait: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}
