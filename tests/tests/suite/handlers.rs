//! The four WebSocket handlers, fed real API Gateway event fixtures, with
//! their effect checked in a real store (memory and a real `redis-server`).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::encodings::Body;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::auth::AuthConfig;
use switchboard::auth::{Claims, Verifier, mint_hs256, sign};
use switchboard::config::{Config, Limits, RedisConfig};
use switchboard::connections_api::{ConnectionsApi, PostOutcome};
use switchboard::event::{EventType, Target};
use switchboard::ids::{ConnectionId, Identity, Role, TenantId, UserId};
use switchboard::store::{Keys, Presence, RedisStore};
use switchboard_tests::{Backend, event_fixture};

use switchboard_tests::auth::SECRET;
const FIXTURE_CONN: &str = "PJUgRcLgDoECFjQ=";

fn tenant() -> TenantId {
    "acme".parse().unwrap()
}
fn user() -> UserId {
    "42".parse().unwrap()
}
fn fixture_conn() -> ConnectionId {
    FIXTURE_CONN.parse().unwrap()
}

/// The fixtures' endpoints are AWS hosts: handler tests must never post.
/// (Posting is tested end to end through the emulator.)
struct NoPosts;

#[async_trait::async_trait]
impl ConnectionsApi for NoPosts {
    async fn post(&self, endpoint: &str, connection: &ConnectionId, _: &[u8]) -> PostOutcome {
        panic!("a handler test tried to post to {connection} at {endpoint}");
    }
}

fn no_posts(ctx: Context) -> Context {
    ctx.with_connections_api(Arc::new(NoPosts))
}

fn ctx_on(backend: Backend, limits: Limits) -> Context {
    no_posts(Context::new(Config { limits: limits.clone(), ..Config::default() }, backend.store(limits)))
}

fn body_json(r: &ApiGatewayProxyResponse) -> Value {
    match &r.body {
        Some(Body::Text(t)) => serde_json::from_str(t).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {t}")),
        other => panic!("expected a text body, got {other:?}"),
    }
}

// ---------------------------------------------------------------- authorizer

fn verifier() -> Verifier {
    let mut cfg = AuthConfig::hs256(SECRET);
    cfg.allowed_origins = vec!["https://app.example.com".into()];
    Verifier::new(&cfg).unwrap()
}

fn authorizer_event() -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    event_fixture("ws-authorizer-request.json")
}

fn token(role: Role) -> String {
    mint_hs256(SECRET, &Identity::new(tenant(), user(), role), 300)
}

fn with_query_token(
    mut e: ApiGatewayCustomAuthorizerRequestTypeRequest,
    token: &str,
) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    e.query_string_parameters = std::collections::HashMap::from([("token".to_string(), token.to_string())]).into();
    e
}

#[tokio::test]
async fn authorizer_allows_a_valid_token_with_the_identity_as_context() {
    let event = with_query_token(authorizer_event(), &token(Role::Supervisor));
    let arn = event.method_arn.clone().unwrap();
    let response = ws_authorizer::handle(&verifier(), &event).await.unwrap();
    // Check the JSON API Gateway reads, not just our struct.
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(wire["principalId"], "42");
    assert_eq!(wire["policyDocument"]["Version"], "2012-10-17");
    let statement = &wire["policyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"], "Allow");
    assert_eq!(statement["Action"], json!(["execute-api:Invoke"]));
    assert_eq!(statement["Resource"], json!([arn]));
    assert_eq!(wire["context"], json!({"tenant_id": "acme", "user_id": "42", "role": "supervisor"}));
}

#[tokio::test]
async fn authorizer_finds_tokens_in_header_and_subprotocol() {
    let mut by_header = authorizer_event();
    by_header
        .headers
        .insert("authorization", HeaderValue::from_str(&format!("Bearer {}", token(Role::Agent))).unwrap());
    assert_eq!(ws_authorizer::handle(&verifier(), &by_header).await.unwrap().context["role"], "agent");

    let mut by_protocol = authorizer_event();
    by_protocol.headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&format!("switchboard, {}", token(Role::Admin))).unwrap(),
    );
    assert_eq!(ws_authorizer::handle(&verifier(), &by_protocol).await.unwrap().context["role"], "admin");
}

#[tokio::test]
async fn authorizer_refuses_missing_and_bad_tokens_with_unauthorized() {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: Some("42".into()),
        tenant_id: Some("acme".into()),
        role: Some("agent".into()),
        exp: Some(now + 60),
        ..Claims::default()
    };
    let hs = |c: &Claims, key: &[u8]| sign(&Header::new(Algorithm::HS256), c, &EncodingKey::from_secret(key));
    let bad = [
        ("expired", hs(&Claims { exp: Some(now - 600), ..claims.clone() }, SECRET)),
        ("bad signature", hs(&claims, b"some-other-secret-some-other-secret")),
        ("missing tenant", hs(&Claims { tenant_id: None, ..claims.clone() }, SECRET)),
        ("unknown role", hs(&Claims { role: Some("root".into()), ..claims.clone() }, SECRET)),
        ("malformed", "definitely.not.a-jwt".into()),
    ];
    for (why, token) in bad {
        let err = ws_authorizer::handle(&verifier(), &with_query_token(authorizer_event(), &token)).await.unwrap_err();
        assert_eq!(err.to_string(), "Unauthorized", "{why}");
    }
    let err = ws_authorizer::handle(&verifier(), &authorizer_event()).await.unwrap_err();
    assert_eq!(err.to_string(), "Unauthorized", "no token at all");
}

#[tokio::test]
async fn authorizer_denies_an_origin_outside_the_allowlist() {
    let mut event = with_query_token(authorizer_event(), &token(Role::Agent));
    event.headers.insert("origin", HeaderValue::from_static("https://evil.example"));
    let response = ws_authorizer::handle(&verifier(), &event).await.unwrap();
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(wire["policyDocument"]["Statement"][0]["Effect"], "Deny");
    assert!(wire["context"].get("tenant_id").is_none(), "a denied caller gets no identity");
}

#[tokio::test]
async fn authorizer_never_panics_on_odd_events() {
    // The upstream fixtures (no methodArn, no token, foreign shapes), and a bare event.
    let upstream: ApiGatewayCustomAuthorizerRequestTypeRequest =
        event_fixture("example-apigw-v2-custom-authorizer-websocket-request.json");
    assert!(ws_authorizer::handle(&verifier(), &upstream).await.is_err());
    let bare: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_value(json!({"requestContext": {}})).unwrap();
    assert!(
        ws_authorizer::handle(&verifier(), &with_query_token(bare, &token(Role::Agent))).await.is_err(),
        "no methodArn: nothing to allow"
    );
}

// ------------------------------------------------------------------ $connect

fn connect_event() -> ApiGatewayWebsocketProxyRequest {
    event_fixture("ws-connect.json")
}

async fn connect(ctx: &Context) -> ApiGatewayProxyResponse {
    ws_connect::handle(ctx, connect_event()).await
}

async fn connect_records_the_connection(b: Backend) {
    let ctx = ctx_on(b, Limits::default());
    let r = connect(&ctx).await;
    assert_eq!(r.status_code, 200);
    let conn = ctx.store.connection(&tenant(), &fixture_conn()).await.unwrap().expect("recorded");
    assert_eq!(conn.user_id, user());
    assert_eq!(conn.role, Role::Agent);
    assert_eq!(conn.endpoint, "https://abcd1234.execute-api.eu-west-1.amazonaws.com/prod");
    assert_eq!(conn.connected_at, 1795684542112);
    assert_eq!(ctx.store.presence(&tenant(), &user()).await.unwrap(), Presence { online: true, connections: 1 });
    // The browser offered "switchboard": API Gateway will not echo it, we must.
    assert_eq!(r.headers.get("sec-websocket-protocol").unwrap(), "switchboard");
}

async fn connect_honours_the_endpoint_override_and_omits_unoffered_protocols(b: Backend) {
    let store = b.store(Limits::default());
    let config =
        Config { callback_endpoint: Some("http://127.0.0.1:3001/local/".parse().unwrap()), ..Config::default() };
    let ctx = no_posts(Context::new(config, store));
    let mut event = connect_event();
    event.headers.remove("sec-websocket-protocol");
    let r = ws_connect::handle(&ctx, event).await;
    assert_eq!(r.status_code, 200);
    assert!(r.headers.get("sec-websocket-protocol").is_none());
    let conn = ctx.store.connection(&tenant(), &fixture_conn()).await.unwrap().unwrap();
    assert_eq!(conn.endpoint, "http://127.0.0.1:3001/local");
}

async fn connect_without_authorizer_context_is_refused(b: Backend) {
    let ctx = ctx_on(b, Limits::default());
    // The upstream fixture: its authorizer context has no tenant.
    let upstream: ApiGatewayWebsocketProxyRequest = event_fixture("example-apigw-websocket-request.json");
    assert_eq!(ws_connect::handle(&ctx, upstream).await.status_code, 403);
    let mut bad_tenant = connect_event();
    bad_tenant.request_context.authorizer.fields.insert("tenant_id".into(), json!("acme:{other}"));
    assert_eq!(ws_connect::handle(&ctx, bad_tenant).await.status_code, 403);
    let mut no_id = connect_event();
    no_id.request_context.connection_id = None;
    assert_eq!(ws_connect::handle(&ctx, no_id).await.status_code, 400);
    assert_eq!(ctx.store.total_connections().await.unwrap(), 0, "nothing recorded");
}

#[tokio::test]
async fn connect_answers_500_when_redis_is_unreachable() {
    // A port nobody listens on: connection refused, at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut redis = RedisConfig::single(format!("redis://127.0.0.1:{port}"));
    redis.connect_timeout = Duration::from_millis(500);
    let store = Arc::new(RedisStore::new(redis, Keys::new("x"), Limits::default()));
    let ctx = no_posts(Context::new(Config::default(), store));
    let r = tokio::time::timeout(Duration::from_secs(10), connect(&ctx)).await.expect("answers promptly");
    assert_eq!(r.status_code, 500);
    // And the message route says so in a reply the client can read.
    let m = tokio::time::timeout(Duration::from_secs(10), ws_message::handle(&ctx, message(r#"{"action":"ping"}"#)))
        .await
        .unwrap();
    assert_eq!(m.status_code, 500);
    assert_eq!(body_json(&m)["code"], "internal_error");
}

// --------------------------------------------------------------- $disconnect

fn disconnect_event() -> ApiGatewayWebsocketProxyRequest {
    event_fixture("ws-disconnect.json")
}

async fn disconnect_forgets_and_is_idempotent(b: Backend) {
    let ctx = ctx_on(b, Limits::default());
    connect(&ctx).await;
    assert_eq!(
        body_json(&ws_message::handle(&ctx, message(r#"{"action":"subscribe","events":["*"]}"#)).await)["type"],
        "subscribed"
    );

    assert_eq!(ws_disconnect::handle(&ctx, disconnect_event()).await.status_code, 200);
    assert_eq!(ctx.store.connection(&tenant(), &fixture_conn()).await.unwrap(), None);
    assert_eq!(ctx.store.presence(&tenant(), &user()).await.unwrap(), Presence { online: false, connections: 0 });
    let r = ctx.store.resolve(&tenant(), EventType::CallIncoming, &Target::Tenant).await.unwrap();
    assert!(r.recipients.is_empty(), "subscriptions went with the connection");

    // Twice, unknown, and the upstream fixture without authorizer context: all fine.
    assert_eq!(ws_disconnect::handle(&ctx, disconnect_event()).await.status_code, 200);
    let mut unknown = disconnect_event();
    unknown.request_context.connection_id = Some("NeverSeen=".into());
    assert_eq!(ws_disconnect::handle(&ctx, unknown).await.status_code, 200);
    let upstream: ApiGatewayWebsocketProxyRequest =
        event_fixture("example-apigw-websocket-request-disconnect-route.json");
    assert_eq!(ws_disconnect::handle(&ctx, upstream).await.status_code, 200);
}

async fn disconnect_keeps_the_user_online_while_another_connection_lives(b: Backend) {
    let ctx = ctx_on(b, Limits::default());
    connect(&ctx).await;
    let mut second = connect_event();
    second.request_context.connection_id = Some("SecondConn=".into());
    assert_eq!(ws_connect::handle(&ctx, second).await.status_code, 200);
    ws_disconnect::handle(&ctx, disconnect_event()).await;
    assert_eq!(ctx.store.presence(&tenant(), &user()).await.unwrap(), Presence { online: true, connections: 1 });
}

// ------------------------------------------------------------------ messages

fn message(body: &str) -> ApiGatewayWebsocketProxyRequest {
    let mut e: ApiGatewayWebsocketProxyRequest = event_fixture("ws-message.json");
    e.body = Some(body.to_owned());
    e
}

async fn send(ctx: &Context, body: &str) -> (i64, Value) {
    let r = ws_message::handle(ctx, message(body)).await;
    (r.status_code, body_json(&r))
}

async fn subscribe_and_unsubscribe(b: Backend) {
    let ctx = ctx_on(b, Limits::default());
    connect(&ctx).await;
    // The fixture's own body: subscribe to call.incoming and agent.*.
    let r = ws_message::handle(&ctx, event_fixture("ws-message.json")).await;
    assert_eq!(r.status_code, 200);
    assert_eq!(body_json(&r), json!({"type": "subscribed", "id": "r1", "events": ["agent.*", "call.incoming"]}));
    let who = |e| {
        let ctx = ctx.clone();
        async move { ctx.store.resolve(&tenant(), e, &Target::Tenant).await.unwrap().recipients.len() }
    };
    assert_eq!(who(EventType::AgentStateChanged).await, 1);
    assert_eq!(who(EventType::CallIncoming).await, 1);
    assert_eq!(who(EventType::CallEnded).await, 0);

    let (status, reply) = send(&ctx, r#"{"action":"unsubscribe","events":["agent.*"],"id":"r2"}"#).await;
    assert_eq!((status, reply), (200, json!({"type": "unsubscribed", "id": "r2", "events": ["call.incoming"]})));
    assert_eq!(who(EventType::AgentStateChanged).await, 0);
}

async fn client_mistakes_get_error_replies_and_change_nothing(b: Backend) {
    let ctx = ctx_on(b, Limits { max_message_bytes: 512, ..Limits::default() });
    connect(&ctx).await;
    send(&ctx, r#"{"action":"subscribe","events":["chat.message"]}"#).await;
    let oversize = format!(r#"{{"action":"subscribe","events":["call.incoming"],"pad":"{}"}}"#, "x".repeat(600));
    let cases = [
        ("{not json", "invalid_json"),
        ("42", "invalid_message"),
        (r#"{"events":["call.incoming"]}"#, "missing_action"),
        (r#"{"action":"teleport","id":"r7"}"#, "unknown_action"),
        (r#"{"action":"subscribe","events":["call.incomming","call.incoming"]}"#, "unknown_event_type"),
        (r#"{"action":"subscribe","events":"call.incoming"}"#, "invalid_message"),
        (oversize.as_str(), "message_too_large"),
        ("", "invalid_json"),
    ];
    for (body, code) in cases {
        let (status, reply) = send(&ctx, body).await;
        assert_eq!(status, 200, "client mistakes are not server errors: {body}");
        assert_eq!(reply["type"], "error", "{body}");
        assert_eq!(reply["code"], code, "{body}: {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, reply) = send(&ctx, r#"{"action":"teleport","id":"r7"}"#).await;
    assert_eq!(reply["id"], "r7", "errors echo the request id");
    let (_, reply) = send(&ctx, r#"{"action":"subscribe","events":["call.incomming","queue.nope"]}"#).await;
    assert_eq!(reply["message"], "unknown event type 'call.incomming', 'queue.nope'");

    // None of that touched the subscriptions.
    let r = ctx.store.resolve(&tenant(), EventType::CallIncoming, &Target::Tenant).await.unwrap();
    assert!(r.recipients.is_empty());
    let r = ctx.store.resolve(&tenant(), EventType::ChatMessage, &Target::Tenant).await.unwrap();
    assert_eq!(r.recipients.len(), 1);
}

async fn ping_answers_pong_and_refreshes_presence(b: Backend) {
    let ctx = ctx_on(b, Limits { presence_ttl: Duration::from_millis(300), ..Limits::default() });
    connect(&ctx).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!ctx.store.presence(&tenant(), &user()).await.unwrap().online, "heartbeat lapsed");
    let before = switchboard::time::now_millis();
    let (status, reply) = send(&ctx, r#"{"action":"ping","id":"p1"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(reply["type"], "pong");
    assert_eq!(reply["id"], "p1");
    assert!(reply["timestamp"].as_i64().unwrap() >= before);
    assert!(ctx.store.presence(&tenant(), &user()).await.unwrap().online, "ping brought the user back");
}

/// User 7 of the fixture's tenant connected once and left: the tenant has
/// seen them, so events for them wait in their offline queue.
async fn user_7_was_here(ctx: &Context) {
    let conn = switchboard::store::Connection {
        id: "seven=".parse().unwrap(),
        tenant_id: tenant(),
        user_id: "7".parse().unwrap(),
        role: Role::Agent,
        endpoint: "https://gw.example/prod".into(),
        connected_at: switchboard::time::now_millis(),
    };
    ctx.store.register(&conn).await.unwrap();
    ctx.store.unregister(&tenant(), &conn.id).await.unwrap();
}

async fn publish_is_role_checked_and_an_empty_sync_answers_zero(b: Backend) {
    let ctx = ctx_on(b, Limits::default());
    connect(&ctx).await;
    user_7_was_here(&ctx).await;
    // The fixture's caller is an agent.
    let (status, reply) =
        send(&ctx, r#"{"action":"publish","type":"call.incoming","target":{"user":"7"},"id":"x"}"#).await;
    assert_eq!((status, reply["code"].as_str(), reply["id"].as_str()), (200, Some("forbidden"), Some("x")));
    assert!(reply["message"].as_str().unwrap().contains("not call.incoming"), "{reply}");
    let (_, reply) = send(&ctx, r#"{"action":"publish","type":"chat.message","data":{"text":"hi all"}}"#).await;
    assert_eq!(reply["code"], "forbidden", "agents may not broadcast to the whole tenant");
    // Allowed: a chat message to a user who is offline goes to their queue, no post.
    let (_, reply) =
        send(&ctx, r#"{"action":"publish","type":"chat.message","target":{"user":"7"},"data":{"text":"hi"}}"#).await;
    assert_eq!(reply["type"], "published", "{reply}");
    assert_eq!(reply["report"]["queued_offline"], 1);
    let queued = ctx.store.offline_peek(&tenant(), &"7".parse().unwrap(), 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    let event: Value = serde_json::from_str(&queued[0]).unwrap();
    assert_eq!((event["type"].as_str(), event["tenant_id"].as_str()), (Some("chat.message"), Some("acme")));
    assert_eq!(event["id"], reply["event_id"]);
    // The caller's own queue is empty: sync delivers nothing.
    let (status, reply) = send(&ctx, r#"{"action":"sync","id":"s"}"#).await;
    assert_eq!((status, reply), (200, json!({"type": "synced", "id": "s", "count": 0})));
}

async fn websocket_publishes_count_against_the_tenant_rate_limit(b: Backend) {
    let limits = Limits { rate_limit_per_sec: 3, ..Limits::default() };
    let ctx = ctx_on(b, limits);
    connect(&ctx).await;
    user_7_was_here(&ctx).await;
    let publish = r#"{"action":"publish","type":"chat.message","target":{"user":"7"},"data":{"text":"hi"},"id":"p"}"#;
    // Find a fresh one-second window, so the budget is not split between two.
    while switchboard::time::now_millis() % 1000 > 500 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(send(&ctx, publish).await);
    }
    let published = replies.iter().filter(|(_, r)| r["type"] == "published").count();
    assert_eq!(published, 3, "the budget is 3 a second: {replies:?}");
    let (status, refused) = replies.last().unwrap().clone();
    assert_eq!((status, refused["code"].as_str(), refused["id"].as_str()), (200, Some("rate_limited"), Some("p")));
    let wait = refused["retry_after_ms"].as_u64().expect("a retry hint");
    assert!((1..=1000).contains(&wait), "{refused}");
    let queued = ctx.store.offline_peek(&tenant(), &"7".parse().unwrap(), 10).await.unwrap();
    assert_eq!(queued.len(), 3, "a refused publish queued nothing");
    // The HTTP API shares the budget: the tenant's counter is spent for this second.
    assert!(!ctx.store.rate_limit(&tenant(), 3).await.unwrap());
}

async fn messages_from_unregistered_connections_are_refused(b: Backend) {
    let ctx = ctx_on(b, Limits::default());
    let (status, reply) = send(&ctx, r#"{"action":"subscribe","events":["*"]}"#).await;
    assert_eq!((status, reply["code"].as_str()), (200, Some("unknown_connection")));
}

async fn binary_frames_are_decoded(b: Backend) {
    use base64::Engine;
    let ctx = ctx_on(b, Limits::default());
    connect(&ctx).await;
    let mut e = message("");
    e.body = Some(base64::engine::general_purpose::STANDARD.encode(r#"{"action":"subscribe","events":["ticket.*"]}"#));
    e.is_base64_encoded = true;
    assert_eq!(body_json(&ws_message::handle(&ctx, e).await)["events"], json!(["ticket.*"]));
}

#[test]
fn fixtures_round_trip_through_the_event_types() {
    for name in [
        "ws-connect.json",
        "ws-message.json",
        "ws-disconnect.json",
        "example-apigw-websocket-request.json",
        "example-apigw-websocket-request-disconnect-route.json",
    ] {
        let event: ApiGatewayWebsocketProxyRequest = event_fixture(name);
        let again: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        assert_eq!(event, again, "{name}");
    }
    let auth: ApiGatewayCustomAuthorizerRequestTypeRequest = event_fixture("ws-authorizer-request.json");
    let again: ApiGatewayCustomAuthorizerRequestTypeRequest =
        serde_json::from_value(serde_json::to_value(&auth).unwrap()).unwrap();
    assert_eq!(auth, again);
}

switchboard_tests::backend_tests!(memory => Memory, redis_single => Redis; [
    connect_records_the_connection,
    connect_honours_the_endpoint_override_and_omits_unoffered_protocols,
    connect_without_authorizer_context_is_refused,
    disconnect_forgets_and_is_idempotent,
    disconnect_keeps_the_user_online_while_another_connection_lives,
    subscribe_and_unsubscribe,
    client_mistakes_get_error_replies_and_change_nothing,
    ping_answers_pong_and_refreshes_presence,
    publish_is_role_checked_and_an_empty_sync_answers_zero,
    messages_from_unregistered_connections_are_refused,
    binary_frames_are_decoded,
    websocket_publishes_count_against_the_tenant_rate_limit,
]);

/// The JSON log lines `f` writes at DEBUG and above.
async fn log_lines<F: std::future::Future>(f: F) -> Vec<Value> {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    f.await;
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
}

fn line_saying<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["fields"]["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line in {lines:?}"))
}

/// Issue 30, point 6: each WebSocket handler runs in a span carrying the
/// invocation's function, route, connection, tenant, user and request id,
/// so a log line inside says where it came from without naming it.
#[tokio::test]
async fn a_handlers_log_lines_carry_the_invocation_in_their_span() {
    let ctx = Context::new(Config::default(), Backend::Memory.store(Default::default()));
    let mut event: ApiGatewayWebsocketProxyRequest = event_fixture("ws-message.json");
    event.body = Some("{not json".into());
    let lines = log_lines(ws_message::handle(&ctx, event)).await;
    let line = line_saying(&lines, "bad client message");
    let span = &line["span"];
    assert_eq!(span["name"], "invocation", "{line}");
    assert_eq!(span["function"], "ws-message");
    assert_eq!(span["tenant_id"], "acme");
    assert_eq!(span["connection_id"], "PJUgRcLgDoECFjQ=");
    assert_eq!(span["request_id"], "PJUhJHxUjoEFxnw=");
}

/// The authorizer's span gains the caller once the token is verified.
#[tokio::test]
async fn the_authorizers_log_lines_carry_the_request_and_the_caller() {
    let event = with_query_token(authorizer_event(), &token(Role::Agent));
    let lines = log_lines(async { ws_authorizer::handle(&verifier(), &event).await.unwrap() }).await;
    let line = line_saying(&lines, "connection authorized");
    let span = &line["span"];
    assert_eq!(span["function"], "ws-authorizer", "{line}");
    assert_eq!(span["request_id"], event.request_context.request_id.as_deref().unwrap());
    assert_eq!(span["tenant_id"], "acme");
    assert!(line["fields"].get("tenant_id").is_none(), "the line does not repeat its span: {line}");
}
