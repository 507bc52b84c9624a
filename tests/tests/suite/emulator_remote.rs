//! `--functions-url` mode: the emulator sends every invocation to a Lambda
//! Invoke API (`POST /2015-03-31/functions/{name}/invocations`, what
//! `cargo lambda watch` serves) and proxies the HTTP API to the `api`
//! function's URL (`/lambda-url/api/...`). Here a small server in the test
//! speaks that API, runs the real handlers, and records every event — which
//! also lets this test check each field API Gateway would send.

use std::sync::{Arc, Mutex};

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::auth::AuthConfig;
use switchboard::auth::{Verifier, mint_hs256};
use switchboard::config::Config;
use switchboard::ids::{Identity, Role};
use switchboard_local::{Emulator, Mode, Settings};
use switchboard_tests::eventually;
use switchboard_tests::ws::{connect, refusal_status, request};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use switchboard_tests::auth::SECRET;

#[derive(Clone)]
struct FakeLambda {
    ctx: Context,
    verifier: Arc<Verifier>,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

/// The Lambda Invoke API, over the real handler libraries.
async fn invoke(State(l): State<FakeLambda>, Path(name): Path<String>, Json(payload): Json<Value>) -> Response {
    l.seen.lock().unwrap().push((name.clone(), payload.clone()));
    let ws_event = || serde_json::from_value::<ApiGatewayWebsocketProxyRequest>(payload.clone()).unwrap();
    match name.as_str() {
        "ws-authorizer" => {
            let event: ApiGatewayCustomAuthorizerRequestTypeRequest = serde_json::from_value(payload.clone()).unwrap();
            // `?context_bytes=N`: an authorizer whose result carries N more bytes of context.
            let padding = event.query_string_parameters.first("context_bytes").and_then(|n| n.parse().ok());
            match ws_authorizer::handle(&l.verifier, &event).await {
                Ok(mut policy) => {
                    if let Some(n) = padding {
                        policy.context["padding"] = json!("x".repeat(n));
                    }
                    Json(serde_json::to_value(policy).unwrap()).into_response()
                }
                // How the Invoke API reports a function error.
                Err(e) => (
                    [("x-amz-function-error", "Unhandled")],
                    Json(json!({"errorType": "Unauthorized", "errorMessage": e.to_string()})),
                )
                    .into_response(),
            }
        }
        "ws-connect" => Json(ws_connect::handle(&l.ctx, ws_event()).await).into_response(),
        "ws-message" => {
            // `{"action":"ping","sleep_ms":N}`: a function that takes N ms.
            let body: Value = ws_event().body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
            if let Some(ms) = body["sleep_ms"].as_u64() {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            Json(ws_message::handle(&l.ctx, ws_event()).await).into_response()
        }
        "ws-disconnect" => Json(ws_disconnect::handle(&l.ctx, ws_event()).await).into_response(),
        _ => (axum::http::StatusCode::NOT_FOUND, Json(json!({"Type": "User", "message": "Function not found"})))
            .into_response(),
    }
}

async fn fake_lambda() -> (String, FakeLambda) {
    let auth = AuthConfig::hs256(SECRET);
    let ctx = Context::new(Config::default(), switchboard_tests::Backend::Memory.store(Default::default()));
    let state =
        FakeLambda { ctx: ctx.clone(), verifier: Arc::new(Verifier::new(&auth).unwrap()), seen: Arc::default() };
    let app = Router::new()
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .nest_service("/lambda-url/api", api::router(ctx, Verifier::new(&auth).unwrap()))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

fn events_of<'a>(seen: &'a [(String, Value)], function: &str) -> Vec<&'a Value> {
    seen.iter().filter(|(n, _)| n == function).map(|(_, v)| v).collect()
}

#[tokio::test]
async fn invocations_go_to_the_invoke_api_with_api_gateway_events() {
    let (functions_url, lambda) = fake_lambda().await;
    let emu = Emulator::start(Settings::ephemeral(), Mode::Remote { functions_url: functions_url.parse().unwrap() })
        .await
        .unwrap();
    let token = mint_hs256(SECRET, &Identity::new("t1".parse().unwrap(), "42".parse().unwrap(), Role::Agent), 600);

    // Refusals travel back from the remote authorizer as 401.
    assert_eq!(refusal_status(connect(&emu.ws_url(), &[]).await), 401);

    let url = format!("{}?token={token}", emu.ws_url());
    let (mut ws, _) = connect(&url, &[("user-agent", "switchboard-test/1.0")]).await.unwrap();
    let reply = request(&mut ws, json!({"action": "subscribe", "events": ["call.incoming"], "id": "r1"})).await;
    assert_eq!(reply, json!({"type": "subscribed", "id": "r1", "events": ["call.incoming"]}));
    assert_eq!(request(&mut ws, json!({"action": "dance"})).await["code"], "unknown_action");
    ws.close(Some(CloseFrame { code: CloseCode::from(4000), reason: "bye".into() })).await.unwrap();
    eventually("$disconnect reached the remote function", || {
        let seen = lambda.seen.clone();
        async move { seen.lock().unwrap().iter().any(|(n, _)| n == "ws-disconnect") }
    })
    .await;

    // The HTTP API is proxied to the api function's URL.
    let health: Value = reqwest::get(format!("{}/v1/health", emu.http_url())).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");

    let seen = lambda.seen.lock().unwrap().clone();
    let order: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["ws-authorizer", "ws-authorizer", "ws-connect", "ws-message", "ws-message", "ws-disconnect"]);

    // The authorizer: a REQUEST event for $connect with headers and query.
    let auth = events_of(&seen, "ws-authorizer")[1];
    assert_eq!(auth["type"], "REQUEST");
    let arn = auth["methodArn"].as_str().unwrap();
    assert!(arn.starts_with("arn:aws:execute-api:") && arn.ends_with("/local/$connect"), "{arn}");
    assert_eq!(auth["queryStringParameters"]["token"], token);
    assert_eq!(auth["headers"]["user-agent"], "switchboard-test/1.0");

    // $connect: the connection's identity, headers and query string.
    let connect = events_of(&seen, "ws-connect")[0];
    let rc = &connect["requestContext"];
    let id = rc["connectionId"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)), "URL-safe: {id}");
    assert_eq!(auth["requestContext"]["connectionId"], id, "the authorizer saw the same connection");
    assert_eq!((rc["routeKey"].as_str(), rc["eventType"].as_str()), (Some("$connect"), Some("CONNECT")));
    assert_eq!(rc["domainName"], emu.ws_addr.to_string());
    assert_eq!(rc["stage"], "local");
    assert_eq!(rc["apiId"].as_str().unwrap().len(), 10);
    let connected_at = rc["connectedAt"].as_i64().unwrap();
    assert!(connected_at > 1_700_000_000_000);
    assert!(rc["requestTimeEpoch"].as_i64().unwrap() >= connected_at);
    assert!(rc["requestTime"].as_str().unwrap().ends_with(" +0000"));
    assert_eq!(rc["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(rc["identity"]["userAgent"], "switchboard-test/1.0");
    assert_eq!(rc["authorizer"]["tenant_id"], "t1");
    assert_eq!(rc["authorizer"]["user_id"], "42");
    assert_eq!(rc["authorizer"]["role"], "agent");
    assert_eq!(connect["queryStringParameters"]["token"], token);
    assert!(connect["headers"]["sec-websocket-key"].is_string());
    // The handshake's headers as the authorizer saw them, in both maps, plus
    // what API Gateway's front end adds; the authorizer's event has no such.
    assert_eq!(connect["headers"]["user-agent"], "switchboard-test/1.0");
    assert_eq!(connect["multiValueHeaders"]["user-agent"], json!(["switchboard-test/1.0"]));
    assert_eq!(connect["multiValueQueryStringParameters"]["token"], json!([token]));
    for map in ["headers", "multiValueHeaders"] {
        let forwarded = &connect[map];
        assert!(forwarded["x-forwarded-for"] == "127.0.0.1" || forwarded["x-forwarded-for"] == json!(["127.0.0.1"]));
        assert!(forwarded["x-forwarded-proto"] == "http" || forwarded["x-forwarded-proto"] == json!(["http"]));
        assert!(auth[map].get("x-forwarded-for").is_none(), "{map} of the authorizer's event");
    }

    // Messages: route selection on $request.body.action, the context again.
    let messages = events_of(&seen, "ws-message");
    assert_eq!(messages[0]["requestContext"]["routeKey"], "subscribe");
    assert_eq!(messages[1]["requestContext"]["routeKey"], "$default", "an action that is no route");
    for m in &messages {
        let rc = &m["requestContext"];
        assert_eq!(rc["eventType"], "MESSAGE");
        assert_eq!(rc["connectionId"], id);
        assert_eq!(rc["connectedAt"].as_i64(), Some(connected_at));
        assert!(rc["messageId"].is_string());
        assert_eq!(rc["authorizer"]["tenant_id"], "t1");
    }
    assert_eq!(
        messages[0]["body"],
        json!({"action": "subscribe", "events": ["call.incoming"], "id": "r1"}).to_string()
    );

    // $disconnect: the client's close code and reason.
    let rc = &events_of(&seen, "ws-disconnect")[0]["requestContext"];
    assert_eq!((rc["routeKey"].as_str(), rc["eventType"].as_str()), (Some("$disconnect"), Some("DISCONNECT")));
    assert_eq!(rc["disconnectStatusCode"], 4000);
    assert_eq!(rc["disconnectReason"], "bye");
    assert_eq!(rc["connectionId"], id);
    assert_eq!(rc["authorizer"]["user_id"], "42");
}

#[tokio::test]
async fn an_unreachable_function_url_fails_the_handshake_with_500() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let emu = Emulator::start(
        Settings::ephemeral(),
        Mode::Remote { functions_url: format!("http://127.0.0.1:{port}").parse().unwrap() },
    )
    .await
    .unwrap();
    assert_eq!(refusal_status(connect(&format!("{}?token=a.b.c", emu.ws_url()), &[]).await), 500);
}

/// Issue 13, point 5: the HTTP port proxied any absolute URL in the request
/// line (`GET /http://127.0.0.1:8765/x`) with the caller's Authorization
/// header. Now only paths under the api function's URL are forwarded.
#[tokio::test]
async fn the_http_proxy_forwards_only_to_the_api_function() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (functions_url, _lambda) = fake_lambda().await;
    let emu = Emulator::start(Settings::ephemeral(), Mode::Remote { functions_url: functions_url.parse().unwrap() })
        .await
        .unwrap();
    // Something on this machine the proxy must never reach.
    let victim = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let victim_port = victim.local_addr().unwrap().port();
    let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = reached.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = victim.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret").await;
        }
    });
    let lambda_port = functions_url.rsplit(':').next().unwrap().to_owned();
    for path in [
        format!("/http://127.0.0.1:{victim_port}/x"),
        format!("//127.0.0.1:{victim_port}/x"),
        "/../../2015-03-31/functions/ws-connect/invocations".to_owned(),
        format!("/http://127.0.0.1:{lambda_port}/2015-03-31/functions/ws-connect/invocations"),
    ] {
        let mut s = tokio::net::TcpStream::connect(emu.http_addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer hunter2\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_string(&mut answer));
        read.await.expect("the emulator answered within 10 s").unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("secret"), "{path}: {answer}");
    }
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the other server");
    // The api function is still reached.
    let health: Value = reqwest::get(format!("{}/v1/health", emu.http_url())).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
}

fn agent_token() -> String {
    mint_hs256(SECRET, &Identity::new("t1".parse().unwrap(), "42".parse().unwrap(), Role::Agent), 600)
}

async fn remote_emulator(limits: switchboard_local::GatewayLimits) -> (Emulator, FakeLambda) {
    let (functions_url, lambda) = fake_lambda().await;
    let settings = Settings { limits, ..Settings::ephemeral() };
    let emu = Emulator::start(settings, Mode::Remote { functions_url: functions_url.parse().unwrap() }).await.unwrap();
    (emu, lambda)
}

fn authorizer_calls(lambda: &FakeLambda) -> usize {
    lambda.seen.lock().unwrap().iter().filter(|(n, _)| n == "ws-authorizer").count()
}

/// Issue 29, point 1: API Gateway refuses a handshake without the
/// configured identity sources (401) and never invokes the authorizer.
/// The template's default is the subprotocol list, where the client sends
/// its token.
#[tokio::test]
async fn a_handshake_without_the_identity_source_is_refused_401_before_the_authorizer() {
    use switchboard_local::{GatewayLimits, IdentitySources};
    let token = agent_token();
    let subprotocols = format!("switchboard, {token}");

    let limits = GatewayLimits {
        identity_sources: IdentitySources::parse(IdentitySources::TEMPLATE_DEFAULT).unwrap(),
        ..GatewayLimits::default()
    };
    let (emu, lambda) = remote_emulator(limits).await;
    let by_query = format!("{}?token={token}", emu.ws_url());
    assert_eq!(refusal_status(connect(&by_query, &[]).await), 401, "the token in the URL only");
    assert_eq!(authorizer_calls(&lambda), 0, "API Gateway refused it: the authorizer never ran");
    let (mut ws, response) = connect(&emu.ws_url(), &[("sec-websocket-protocol", &subprotocols)]).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "switchboard");
    assert_eq!(authorizer_calls(&lambda), 1);
    assert_eq!(request(&mut ws, json!({"action": "ping", "id": "p"})).await["type"], "pong");

    // A stack deployed with ?token= refuses the subprotocol instead.
    let limits = GatewayLimits {
        identity_sources: IdentitySources::parse("route.request.querystring.token").unwrap(),
        ..GatewayLimits::default()
    };
    let (emu, lambda) = remote_emulator(limits).await;
    let refused = connect(&emu.ws_url(), &[("sec-websocket-protocol", &subprotocols)]).await;
    assert_eq!(refusal_status(refused), 401);
    assert_eq!(refusal_status(connect(&format!("{}?token=", emu.ws_url()), &[]).await), 401, "empty is missing");
    assert_eq!(authorizer_calls(&lambda), 0);
    connect(&format!("{}?token={token}", emu.ws_url()), &[]).await.unwrap();
    assert_eq!(authorizer_calls(&lambda), 1);
}

/// Issue 29, point 1: the shipped template's default identity source is the
/// one the emulator's binary enforces by default, and the one the
/// JavaScript client satisfies (`clients/js/test/gatekeeping.test.js`
/// connects Chromium through it).
#[test]
fn the_template_default_identity_source_is_the_emulators() {
    let template = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    let parameter = template.split("AuthorizerIdentitySource:").nth(1).expect("the parameter");
    let default = parameter.lines().find_map(|l| l.trim().strip_prefix("Default: ")).expect("its default");
    assert_eq!(default, switchboard_local::IdentitySources::TEMPLATE_DEFAULT);
}

/// Issue 29, point 1: API Gateway waits 29 s for an integration, then
/// answers the client itself; the connection goes on. (A hung invocation
/// used to hold the connection's every later frame: `make watch-smoke`
/// failed so when `cargo lambda watch` lost one across a rebuild.)
#[tokio::test]
async fn a_function_over_the_integration_timeout_is_answered_by_the_gateway_and_the_connection_goes_on() {
    let limits = switchboard_local::GatewayLimits {
        integration_timeout: std::time::Duration::from_millis(300),
        ..switchboard_local::GatewayLimits::default()
    };
    let (emu, _lambda) = remote_emulator(limits).await;
    let (mut ws, _) = connect(&format!("{}?token={}", emu.ws_url(), agent_token()), &[]).await.unwrap();
    let slow = request(&mut ws, json!({"action": "ping", "id": "slow", "sleep_ms": 2000})).await;
    assert_eq!(slow["message"], "Endpoint request timed out", "{slow}");
    assert!(slow["connectionId"].is_string() && slow["requestId"].is_string(), "{slow}");
    let fast = request(&mut ws, json!({"action": "ping", "id": "fast"})).await;
    assert_eq!((fast["type"].as_str(), fast["id"].as_str()), (Some("pong"), Some("fast")), "{fast}");
}

/// Issue 29, point 1: an authorizer result over 8 KB fails the handshake (500).
#[tokio::test]
async fn an_authorizer_result_over_8_kb_fails_the_handshake() {
    let (emu, _lambda) = remote_emulator(switchboard_local::GatewayLimits::default()).await;
    let url = |n: usize| format!("{}?token={}&context_bytes={n}", emu.ws_url(), agent_token());
    connect(&url(6_000), &[]).await.expect("6 KB of context fits");
    assert_eq!(refusal_status(connect(&url(9_000), &[]).await), 500);
}
