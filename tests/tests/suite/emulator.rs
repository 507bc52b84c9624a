//! End to end through `switchboard-local`: real WebSocket clients
//! (tokio-tungstenite) against the emulator on free ports, the real
//! `aws-sdk-apigatewaymanagement` client against its `@connections`, and a
//! real `redis-server` where state is shared.

use std::time::Duration;

use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::auth::AuthConfig;
use switchboard::auth::{Verifier, mint_hs256};
use switchboard::config::{Config, Limits as StoreLimits};
use switchboard::event::{EventType, Target};
use switchboard::ids::{ConnectionId, Identity, Role, TenantId, UserId};
use switchboard::store::Recipient;
use switchboard_local::{Emulator, GatewayLimits as Limits, Mode, Settings};
use switchboard_tests::ws::{self, connect, next_close, next_json, refusal_status, request, send_text};
use switchboard_tests::{Backend, eventually};

use switchboard_tests::auth::SECRET;

struct Lab {
    emu: Emulator,
    ctx: Context,
}

async fn lab_with(backend: Backend, limits: Limits, origins: &[&str]) -> Lab {
    let store_limits = StoreLimits::default();
    let ctx = Context::new(Config { limits: store_limits.clone(), ..Config::default() }, backend.store(store_limits));
    let mut auth = AuthConfig::hs256(SECRET);
    auth.allowed_origins = origins.iter().map(|o| o.to_string()).collect();
    let mode = Mode::InProcess { ctx: ctx.clone(), verifier: Verifier::new(&auth).unwrap() };
    let emu = Emulator::start(Settings { limits, ..Settings::ephemeral() }, mode).await.unwrap();
    Lab { emu, ctx }
}

async fn lab() -> Lab {
    lab_with(Backend::Memory, Limits::default(), &[]).await
}

fn tenant() -> TenantId {
    "t1".parse().unwrap()
}

fn token_for(user: &str, role: Role) -> String {
    mint_hs256(SECRET, &Identity::new(tenant(), user.parse().unwrap(), role), 600)
}

impl Lab {
    fn url_with_token(&self, user: &str) -> String {
        format!("{}?token={}", self.emu.ws_url(), token_for(user, Role::Agent))
    }

    async fn client(&self, user: &str) -> ws::Ws {
        connect(&self.url_with_token(user), &[]).await.expect("handshake").0
    }

    /// The connections of `user`, found the way the fan-out finds them.
    async fn connections_of(&self, user: &str) -> Vec<Recipient> {
        let target = Target::User(user.parse::<UserId>().unwrap());
        self.ctx.store.resolve(&tenant(), EventType::SystemNotification, &target).await.unwrap().recipients
    }

    /// Subscribes `ws` to everything and returns its connection id.
    async fn subscribed(&self, ws: &mut ws::Ws, user: &str) -> Recipient {
        let reply = request(ws, json!({"action": "subscribe", "events": ["*"]})).await;
        assert_eq!(reply["type"], "subscribed");
        let mine = self.connections_of(user).await;
        assert_eq!(mine.len(), 1, "one connection for {user}");
        mine.into_iter().next().unwrap()
    }

    async fn connection_count(&self) -> usize {
        self.ctx.store.connection_count(&tenant()).await.unwrap()
    }

    /// Waits until `$disconnect` has forgotten every connection of the tenant.
    async fn until_no_connections(&self, what: &str) {
        eventually(what, || async { self.connection_count().await == 0 }).await;
    }
}

fn sdk(endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDLOCAL", "local-secret", None, None, "test"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

// ------------------------------------------------------------------ handshake

#[tokio::test]
async fn connects_with_a_token_in_query_header_or_subprotocol() {
    let lab = lab().await;
    let token = token_for("42", Role::Agent);

    let (mut by_query, response) = connect(&format!("{}?token={token}", lab.emu.ws_url()), &[]).await.unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none(), "no subprotocol offered, none answered");
    assert_eq!(request(&mut by_query, json!({"action": "ping"})).await["type"], "pong");

    let bearer = format!("Bearer {token}");
    let (mut by_header, _) = connect(&lab.emu.ws_url(), &[("authorization", &bearer)]).await.unwrap();
    assert_eq!(request(&mut by_header, json!({"action": "ping"})).await["type"], "pong");

    let offered = format!("switchboard, {token}");
    let (mut by_protocol, response) =
        connect(&lab.emu.ws_url(), &[("sec-websocket-protocol", &offered)]).await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "switchboard",
        "$connect chose it; the gateway echoed it"
    );
    assert_eq!(request(&mut by_protocol, json!({"action": "ping"})).await["type"], "pong");

    // The stage-less URL works too, as on API Gateway's default route.
    let root = format!("ws://{}/?token={token}", lab.emu.ws_addr);
    let (mut at_root, _) = connect(&root, &[]).await.unwrap();
    assert_eq!(request(&mut at_root, json!({"action": "ping"})).await["type"], "pong");

    assert_eq!(lab.connection_count().await, 4);
    assert_eq!(lab.emu.connection_count(), 4);
}

#[tokio::test]
async fn refuses_missing_bad_and_foreign_origin_handshakes_with_their_status() {
    let lab = lab_with(Backend::Memory, Limits::default(), &["https://app.example.com"]).await;
    assert_eq!(refusal_status(connect(&lab.emu.ws_url(), &[]).await), 401, "no token");
    assert_eq!(
        refusal_status(connect(&format!("{}?token=nope.nope.nope", lab.emu.ws_url()), &[]).await),
        401,
        "malformed"
    );
    let forged = mint_hs256(
        b"not-the-emulator-secret-not-the-secret!!",
        &Identity::new(tenant(), "1".parse().unwrap(), Role::Admin),
        60,
    );
    assert_eq!(
        refusal_status(connect(&format!("{}?token={forged}", lab.emu.ws_url()), &[]).await),
        401,
        "bad signature"
    );
    let good = lab.url_with_token("42");
    assert_eq!(refusal_status(connect(&good, &[("origin", "https://evil.example")]).await), 403, "origin not allowed");
    assert_eq!(
        refusal_status(connect(&format!("ws://{}/prod?token=x", lab.emu.ws_addr), &[]).await),
        403,
        "unknown stage"
    );
    assert_eq!(lab.connection_count().await, 0, "nothing was recorded");
    // The allowed origin gets in.
    assert!(connect(&good, &[("origin", "https://app.example.com")]).await.is_ok());
}

#[tokio::test]
async fn a_failing_connect_route_refuses_the_handshake_with_its_status() {
    // A Redis nobody listens on: ws-connect answers 500, so must the handshake.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = Config::default();
    let mut redis = switchboard::config::RedisConfig::single(format!("redis://127.0.0.1:{port}"));
    redis.connect_timeout = Duration::from_millis(300);
    config.redis = Some(redis);
    let ctx = Context::from_config(config);
    let mode = Mode::InProcess { ctx, verifier: switchboard_tests::auth::verifier() };
    let emu = Emulator::start(Settings::ephemeral(), mode).await.unwrap();
    let url = format!("{}?token={}", emu.ws_url(), token_for("42", Role::Agent));
    assert_eq!(refusal_status(connect(&url, &[]).await), 500);
    // The HTTP API says the same about its health.
    let health = reqwest::get(format!("{}/v1/health", emu.http_url())).await.unwrap();
    assert_eq!(health.status(), 503);
}

// ------------------------------------------------------------------- messages

#[tokio::test]
async fn routes_messages_and_sends_replies_back_on_the_connection() {
    let lab = lab().await;
    let mut c = lab.client("42").await;
    let reply = request(&mut c, json!({"action": "subscribe", "events": ["call.incoming"], "id": "r1"})).await;
    assert_eq!(reply, json!({"type": "subscribed", "id": "r1", "events": ["call.incoming"]}));
    let pong = request(&mut c, json!({"action": "ping", "id": "p"})).await;
    assert_eq!((pong["type"].as_str(), pong["id"].as_str()), (Some("pong"), Some("p")));

    // Mistakes get error replies and the connection stays usable.
    send_text(&mut c, "this is not json").await;
    assert_eq!(next_json(&mut c).await["code"], "invalid_json");
    assert_eq!(request(&mut c, json!({"action": "fly"})).await["code"], "unknown_action");
    assert_eq!(request(&mut c, json!({"nothing": true})).await["code"], "missing_action");
    assert_eq!(
        request(&mut c, json!({"action": "subscribe", "events": ["call.nope"]})).await["code"],
        "unknown_event_type"
    );
    let reply = request(&mut c, json!({"action": "unsubscribe", "events": ["call.incoming"]})).await;
    assert_eq!(reply, json!({"type": "unsubscribed", "events": []}));
}

#[tokio::test]
async fn an_oversize_frame_closes_with_1009_and_runs_disconnect() {
    let lab =
        lab_with(Backend::Memory, Limits { max_frame_bytes: 1024, max_message_bytes: 4096, ..Limits::default() }, &[])
            .await;
    let mut c = lab.client("42").await;
    assert_eq!(request(&mut c, json!({"action": "ping"})).await["type"], "pong");
    assert_eq!(lab.connection_count().await, 1);
    send_text(&mut c, format!("{{\"action\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(2000))).await;
    let close = next_close(&mut c).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009);
    lab.until_no_connections("$disconnect forgot the connection").await;
    assert!(!lab.ctx.store.presence(&tenant(), &"42".parse().unwrap()).await.unwrap().online);
}

#[tokio::test]
async fn an_oversize_message_in_small_frames_closes_with_1009() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let lab =
        lab_with(Backend::Memory, Limits { max_frame_bytes: 1024, max_message_bytes: 2048, ..Limits::default() }, &[])
            .await;
    let mut c = lab.client("42").await;
    // Three 1000-byte fragments: each frame is within the limit, the message is not.
    let chunk = vec![b'x'; 1000];
    c.send(tokio_tungstenite::tungstenite::Message::Frame(Frame::message(
        chunk.clone(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .unwrap();
    c.send(tokio_tungstenite::tungstenite::Message::Frame(Frame::message(
        chunk.clone(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .await
    .unwrap();
    c.send(tokio_tungstenite::tungstenite::Message::Frame(Frame::message(chunk, OpCode::Data(Data::Continue), true)))
        .await
        .unwrap();
    assert_eq!(u16::from(next_close(&mut c).await.unwrap().code), 1009);
    lab.until_no_connections("$disconnect ran").await;
}

/// Issue 13, point 9: a text frame that is not UTF-8 and a continuation
/// with nothing to continue were dropped without a close status (the
/// client saw 1005). RFC 6455 fails such a connection with 1007 and 1002:
/// they are broken WebSocket framing, not bad messages, which are answered
/// and keep the connection (the first half of this test).
#[tokio::test]
async fn broken_framing_closes_with_the_rfc_codes() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let lab = lab().await;
    let mut c = lab.client("42").await;
    assert_eq!(request(&mut c, json!({"action": "dance"})).await["code"], "unknown_action", "a bad message: answered");
    send_text(&mut c, "not json").await;
    assert_eq!(next_json(&mut c).await["code"], "invalid_json", "and the connection stays");
    let not_utf8 = vec![b'{', 0xff, 0xfe, b'}'];
    c.send(Message::Frame(Frame::message(not_utf8, OpCode::Data(Data::Text), true))).await.unwrap();
    let close = next_close(&mut c).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1007, "{close:?}");
    let mut c = lab.client("43").await;
    c.send(Message::Frame(Frame::message(b"orphan".to_vec(), OpCode::Data(Data::Continue), true))).await.unwrap();
    let close = next_close(&mut c).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1002, "{close:?}");
    lab.until_no_connections("$disconnect ran for both").await;
}

#[tokio::test]
async fn idle_connections_close_with_1001_and_run_disconnect() {
    let lab =
        lab_with(Backend::Memory, Limits { idle_timeout: Duration::from_millis(400), ..Limits::default() }, &[]).await;
    let mut c = lab.client("42").await;
    // Traffic keeps it open past the timeout...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(request(&mut c, json!({"action": "ping"})).await["type"], "pong");
    }
    // ...silence closes it.
    let close = next_close(&mut c).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    lab.until_no_connections("$disconnect forgot the connection").await;
}

#[tokio::test]
async fn connections_end_at_the_maximum_duration() {
    let lab =
        lab_with(Backend::Memory, Limits { max_duration: Duration::from_millis(500), ..Limits::default() }, &[]).await;
    let mut c = lab.client("42").await;
    let close = next_close(&mut c).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert!(close.reason.contains("maximum"), "{}", close.reason);
    lab.until_no_connections("$disconnect ran").await;
}

#[tokio::test]
async fn client_close_runs_disconnect() {
    let lab = lab().await;
    let mut c = lab.client("42").await;
    assert_eq!(request(&mut c, json!({"action": "ping"})).await["type"], "pong");
    c.close(None).await.unwrap();
    lab.until_no_connections("$disconnect ran").await;
    // A dropped TCP connection without a close frame too.
    let c2 = lab.client("43").await;
    eventually("connected", || async { lab.connection_count().await == 1 }).await;
    drop(c2);
    lab.until_no_connections("$disconnect ran after an abrupt drop").await;
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001_and_runs_disconnect() {
    let lab = lab().await;
    let mut a = lab.client("1").await;
    let mut b = lab.client("2").await;
    assert_eq!(request(&mut a, json!({"action": "ping"})).await["type"], "pong");
    assert_eq!(request(&mut b, json!({"action": "ping"})).await["type"], "pong");
    let Lab { emu, ctx } = lab;
    tokio::time::timeout(ws::WAIT, emu.shutdown()).await.expect("shutdown finishes");
    assert_eq!(u16::from(next_close(&mut a).await.unwrap().code), 1001);
    assert_eq!(u16::from(next_close(&mut b).await.unwrap().code), 1001);
    assert_eq!(
        ctx.store.connection_count(&tenant()).await.unwrap(),
        0,
        "$disconnect ran for both before shutdown returned"
    );
}

// --------------------------------------------------------------- @connections

#[tokio::test]
async fn connections_api_works_with_the_aws_sdk() {
    let lab = lab().await;
    let mut c = lab.client("42").await;
    let me = lab.subscribed(&mut c, "42").await;
    assert_eq!(me.endpoint, lab.emu.connections_endpoint(), "ws-connect recorded the emulator's own endpoint");
    let id = me.connection_id.to_string();
    let client = sdk(&me.endpoint);

    // POST: the raw body arrives as a text frame.
    client.post_to_connection().connection_id(&id).data(Blob::new(r#"{"hello":"agent"}"#)).send().await.unwrap();
    assert_eq!(next_json(&mut c).await, json!({"hello": "agent"}));

    // GET: when it connected, when it was last active, who it is.
    let info = client.get_connection().connection_id(&id).send().await.unwrap();
    let connected_at = info.connected_at().expect("connectedAt").secs();
    assert!((connected_at - switchboard::time::now_millis() / 1000).abs() < 60);
    assert!(info.last_active_at().is_some());
    let identity = info.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));

    // The stage-less endpoint reaches it too.
    sdk(&format!("http://{}", lab.emu.ws_addr))
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("plain text"))
        .send()
        .await
        .unwrap();
    assert_eq!(next_json(&mut c).await, json!("plain text"));

    // DELETE closes it and runs $disconnect; afterwards it is Gone, by name.
    client.delete_connection().connection_id(&id).send().await.unwrap();
    next_close(&mut c).await;
    lab.until_no_connections("$disconnect ran").await;
    let err = client.post_to_connection().connection_id(&id).data(Blob::new("late")).send().await.unwrap_err();
    assert!(err.into_service_error().is_gone_exception(), "GoneException by name");
    let err = client.get_connection().connection_id("NeverExisted0=").send().await.unwrap_err();
    assert!(err.into_service_error().is_gone_exception());
    let err = client.delete_connection().connection_id("NeverExisted0=").send().await.unwrap_err();
    assert!(err.into_service_error().is_gone_exception());
}

/// A client that stops reading fills its socket and then its queue. A post
/// then waits at most `slow_client_wait` for room; after that the client is
/// closed as a slow consumer (1013), the post answers 410, `$disconnect`
/// runs, and later posts get 410. Before, the post waited for as long as
/// the client did not read.
#[tokio::test]
async fn a_client_that_stopped_reading_is_closed_as_a_slow_consumer() {
    let limits = Limits { slow_client_wait: Duration::from_millis(300), ..Limits::default() };
    let lab = lab_with(Backend::Memory, limits, &[]).await;
    let mut c = lab.client("42").await;
    let me = lab.subscribed(&mut c, "42").await;
    let id = me.connection_id.to_string();
    let client = sdk(&me.endpoint);
    // From here on `c` is not read. 100 KB posts until one is refused.
    let big = "x".repeat(100 * 1024);
    let mut sent = 0;
    let refused = loop {
        // 256 queued frames and the sockets' buffers are well under 200 MB.
        assert!(sent < 2_000, "posts to a client that reads nothing were never refused");
        sent += 1;
        let post = client.post_to_connection().connection_id(&id).data(Blob::new(big.clone())).send();
        let answer =
            tokio::time::timeout(Duration::from_secs(10), post).await.expect("a post never waits on one client");
        if let Err(err) = answer {
            break err;
        }
    };
    assert!(refused.as_service_error().is_some_and(|e| e.is_gone_exception()), "{refused:?}");
    // The client, reading again, finds what was queued and then the close.
    let close = next_close(&mut c).await.expect("a close frame");
    assert_eq!(u16::from(close.code), switchboard_local::websocket_api::SLOW_CLIENT_CLOSE, "{close:?}");
    lab.until_no_connections("$disconnect ran").await;
    let late = client.post_to_connection().connection_id(&id).data(Blob::new("late")).send().await.unwrap_err();
    assert!(late.as_service_error().is_some_and(|e| e.is_gone_exception()), "{late:?}");
}

/// One subscriber that never reads must not slow a publisher: 2,000
/// events of 16 KB to the tenant each finish, the reading subscriber gets
/// them all, and the one that does not read is dropped as gone.
#[tokio::test]
async fn a_publisher_never_waits_on_a_subscriber_that_does_not_read() {
    let limits = Limits { slow_client_wait: Duration::from_millis(500), ..Limits::default() };
    let lab = lab_with(Backend::Memory, limits, &[]).await;
    let mut stuck = lab.client("1").await;
    request(&mut stuck, json!({"action": "subscribe", "events": ["call.*"]})).await;
    let mut reader = lab.client("2").await;
    request(&mut reader, json!({"action": "subscribe", "events": ["call.*"]})).await;
    const N: usize = 2_000;
    let counting = tokio::spawn(async move {
        let mut got = 0;
        while got < N {
            let e = next_json(&mut reader).await;
            if e["type"] == "call.incoming" {
                got += 1;
            }
        }
        got
    });
    let data = json!({"blob": "y".repeat(16 * 1024)});
    let mut gone = 0;
    for n in 0..N {
        let event = switchboard::event::Envelope::new(tenant(), EventType::CallIncoming, data.clone());
        let publish = switchboard::broadcast::publish(&lab.ctx, &event, &Target::Tenant);
        let report = tokio::time::timeout(Duration::from_secs(10), publish)
            .await
            .unwrap_or_else(|_| panic!("publish {n} waited on the client that does not read"))
            .unwrap();
        gone += report.gone;
    }
    assert_eq!(gone, 1, "the client that does not read was found gone once, then forgotten");
    assert_eq!(counting.await.unwrap(), N, "the reading subscriber got every event");
    eventually("only the reader is left", || async { lab.connection_count().await == 1 }).await;
    drop(stuck);
}

#[tokio::test]
async fn connections_api_refuses_oversize_and_malformed_requests() {
    let lab = lab_with(Backend::Memory, Limits { max_message_bytes: 1024, ..Limits::default() }, &[]).await;
    let mut c = lab.client("42").await;
    let me = lab.subscribed(&mut c, "42").await;
    let client = sdk(&me.endpoint);
    let err = client
        .post_to_connection()
        .connection_id(me.connection_id.as_str())
        .data(Blob::new(vec![b'x'; 2000]))
        .send()
        .await
        .unwrap_err();
    let service = err.into_service_error();
    assert!(service.is_payload_too_large_exception(), "{service:?}");
    // A malformed id (the SDK would encode it, so send it raw): 400.
    let raw = reqwest::Client::new()
        .post(format!("{}/@connections/bad%20id%7B%7D", me.endpoint))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(raw.headers().get("x-amzn-errortype").unwrap(), "BadRequestException");
    // Signed or not, requests are accepted: this one carries no signature at all.
    let unsigned = reqwest::Client::new()
        .post(format!("{}/@connections/{}", me.endpoint, me.connection_id))
        .body("unsigned")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 200);
    assert_eq!(next_json(&mut c).await, json!("unsigned"));
}

// ------------------------------------------------------------------- HTTP API

#[tokio::test]
async fn the_http_api_serves_health_and_stats() {
    let lab = lab().await;
    let _a = lab.client("1").await;
    let _b = lab.client("2").await;
    eventually("both recorded", || async { lab.connection_count().await == 2 }).await;
    let http = reqwest::Client::new();
    let health: Value =
        http.get(format!("{}/v1/health", lab.emu.http_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let stats = http
        .get(format!("{}/v1/stats", lab.emu.http_url()))
        .bearer_auth(token_for("9", Role::Admin))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), 200);
    let stats: Value = stats.json().await.unwrap();
    assert_eq!((stats["tenant_connections"].as_u64(), stats.get("total_connections")), (Some(2), None));
    // Another tenant sees its own (empty) count.
    let other = mint_hs256(SECRET, &Identity::new("t2".parse().unwrap(), "1".parse().unwrap(), Role::Admin), 60);
    let stats: Value = http
        .get(format!("{}/v1/stats", lab.emu.http_url()))
        .bearer_auth(other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["tenant_connections"], 0);
    let denied = http.get(format!("{}/v1/stats", lab.emu.http_url())).send().await.unwrap();
    assert_eq!(denied.status(), 401);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    let missing = http.get(format!("{}/v2/nothing", lab.emu.http_url())).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

// ---------------------------------------------------------- several instances

#[tokio::test]
async fn two_instances_on_one_redis_reach_each_others_connections() {
    let prefix = switchboard_tests::unique_prefix();
    let redis_url = switchboard_test_support::shared_redis().url();
    let start = || {
        let prefix = prefix.clone();
        let redis_url = redis_url.clone();
        async move {
            let config = Config {
                redis: Some(switchboard::config::RedisConfig::single(redis_url)),
                key_prefix: prefix,
                ..Config::default()
            };
            let ctx = Context::from_config(config);
            let mode = Mode::InProcess { ctx: ctx.clone(), verifier: switchboard_tests::auth::verifier() };
            Lab { emu: Emulator::start(Settings::ephemeral(), mode).await.unwrap(), ctx }
        }
    };
    let (a, b) = (start().await, start().await);
    let mut on_a = a.client("alice").await;
    let mut on_b = b.client("bob").await;
    request(&mut on_a, json!({"action": "subscribe", "events": ["call.*"]})).await;
    request(&mut on_b, json!({"action": "subscribe", "events": ["call.*"]})).await;

    // Either instance's store sees both connections, each with its own endpoint.
    let resolved = a.ctx.store.resolve(&tenant(), EventType::CallIncoming, &Target::Tenant).await.unwrap();
    assert_eq!(resolved.recipients.len(), 2);
    for r in &resolved.recipients {
        let expected =
            if r.user_id.as_str() == "alice" { a.emu.connections_endpoint() } else { b.emu.connections_endpoint() };
        assert_eq!(r.endpoint, expected);
        // A post through the endpoint stored with the connection reaches it.
        sdk(&r.endpoint)
            .post_to_connection()
            .connection_id(r.connection_id.as_str())
            .data(Blob::new(format!("\"for {}\"", r.user_id)))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(next_json(&mut on_a).await, json!("for alice"));
    assert_eq!(next_json(&mut on_b).await, json!("for bob"));

    // Instance B does not hold alice's connection: Gone there.
    let alice: ConnectionId =
        resolved.recipients.iter().find(|r| r.user_id.as_str() == "alice").unwrap().connection_id.clone();
    let err = sdk(&b.emu.connections_endpoint())
        .post_to_connection()
        .connection_id(alice.as_str())
        .data(Blob::new("x"))
        .send()
        .await
        .unwrap_err();
    assert!(err.into_service_error().is_gone_exception());
}
