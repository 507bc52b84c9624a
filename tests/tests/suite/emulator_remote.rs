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
use switchboard::auth::{Identity, Role, Verifier, mint_hs256};
use switchboard::config::Config;
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
            match ws_authorizer::handle(&l.verifier, &event).await {
                Ok(policy) => Json(serde_json::to_value(policy).unwrap()).into_response(),
                // How the Invoke API reports a function error.
                Err(e) => (
                    [("x-amz-function-error", "Unhandled")],
                    Json(json!({"errorType": "Unauthorized", "errorMessage": e.to_string()})),
                )
                    .into_response(),
            }
        }
        "ws-connect" => Json(ws_connect::handle(&l.ctx, ws_event()).await).into_response(),
        "ws-message" => Json(ws_message::handle(&l.ctx, ws_event()).await).into_response(),
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
    let token = mint_hs256(
        SECRET,
        &Identity { tenant_id: "t1".parse().unwrap(), user_id: "42".parse().unwrap(), role: Role::Agent },
        600,
    );

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
