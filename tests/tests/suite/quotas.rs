//! API Gateway's quotas, as the emulator plays them, and what Switchboard
//! does at them: nothing lost, nothing sent twice.
//!
//! The account's `@connections` quota (10,000 requests per second, burst
//! 5,000, by default) answers a post over it 429 `LimitExceededException`
//! and sends nothing. A fan-out retries such posts at the pace it learns;
//! what is still unsent when its retry window ends goes to a queued job
//! that claims each recipient before posting. Real WebSocket clients,
//! real `redis-server`, the emulator's own SQS and `fanout` mapping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::config::{Config, Limits, RedisConfig};
use switchboard::ids::Role;
use switchboard_local::{Emulator, GatewayLimits, Mode, Quota, Quotas, Settings};
use switchboard_test_support::shared_redis;
use switchboard_tests::auth::token;
use switchboard_tests::ws::{connect, request};
use switchboard_tests::{eventually_within, unique_prefix};
use tokio_tungstenite::tungstenite::Message;

/// Every event id a client received, by client.
type Received = Arc<Mutex<Vec<HashMap<String, usize>>>>;

/// `n` clients of tenant `acme`, each subscribed to `call.*`, each counting
/// the events it receives (by id) in the background.
async fn clients(emu: &Emulator, n: usize) -> Received {
    let received: Received = Arc::new(Mutex::new(vec![HashMap::new(); n]));
    let sockets: Vec<_> = futures::stream::iter(0..n)
        .map(|i| async move {
            let url = format!("{}?token={}", emu.ws_url(), token("acme", &format!("agent-{i}"), Role::Agent));
            let (mut ws, _) = connect(&url, &[]).await.expect("handshake");
            let reply = request(&mut ws, json!({"action": "subscribe", "events": ["call.*"]})).await;
            assert_eq!(reply["type"], "subscribed", "{reply}");
            ws
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = ws.next().await {
                let Message::Text(text) = frame else { continue };
                let Ok(event) = serde_json::from_str::<Value>(&text) else { continue };
                if let Some(id) = event["id"].as_str().filter(|_| event["type"] == "call.incoming") {
                    *received.lock().unwrap()[i].entry(id.to_owned()).or_default() += 1;
                }
            }
        });
    }
    received
}

/// How many clients got `id` once, and how many more than once.
fn tally(received: &Received, id: &str) -> (usize, usize) {
    let got = received.lock().unwrap();
    let once = got.iter().filter(|m| m.get(id) == Some(&1)).count();
    let twice = got.iter().filter(|m| m.get(id).is_some_and(|n| *n > 1)).count();
    (once, twice)
}

async fn publish(emu: &Emulator, query: &str) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/events{query}", emu.http_url()))
        .bearer_auth(token("acme", "svc", Role::Service))
        .json(&json!({"type": "call.incoming", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// Issue 29, point 3: a broadcast to 5,000 connections under a quota of
/// 1,000 posts per second (burst 500) reaches every client exactly once,
/// published synchronously (what its retry window could not post is
/// handed to queued jobs) and queued. Before, every throttled post was
/// dropped: 4,000 clients missed the event and nobody knew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_under_the_connections_quota_reaches_everyone_exactly_once() {
    const N: usize = 5000;
    let config = Config {
        redis: Some(RedisConfig::single(shared_redis().url())),
        key_prefix: unique_prefix(),
        // A short window: most posts of the synchronous publish are handed on.
        limits: Limits { fanout_retry_window: Duration::from_secs(1), ..Limits::default() },
        ..Config::default()
    };
    let ctx = Context::from_config(config);
    let mode = Mode::InProcess { ctx, verifier: switchboard_tests::auth::verifier() };
    let limits = GatewayLimits {
        quotas: Quotas { connections_api: Some(Quota { per_second: 1000.0, burst: 500.0 }), ..Quotas::default() },
        ..GatewayLimits::default()
    };
    let emu = Emulator::start(Settings { limits, ..Settings::ephemeral() }, mode).await.unwrap();
    let received = clients(&emu, N).await;

    // Synchronous: the posts the window allowed, the rest requeued.
    let answer = publish(&emu, "").await;
    let report = &answer["report"];
    let id = answer["event_id"].as_str().unwrap().to_owned();
    assert_eq!(report["matched"], N, "{report}");
    let (delivered, requeued) = (report["delivered"].as_u64().unwrap(), report["requeued"].as_u64().unwrap());
    assert_eq!(delivered + requeued, N as u64, "every recipient delivered or handed on: {report}");
    assert!(report["throttled"].as_u64().unwrap() > 0, "the quota was met: {report}");
    assert!(requeued > 0, "a 1 s window cannot post 5,000 at 1,000/s: {report}");
    assert_eq!(report["failed"], 0, "{report}");
    eventually_within("every client got the synchronous event", Duration::from_secs(60), || {
        let received = received.clone();
        let id = id.clone();
        async move { tally(&received, &id).0 == N }
    })
    .await;

    // Queued: split into chunk jobs, each retried until its posts are made.
    let answer = publish(&emu, "?async=true").await;
    let queued = answer["event_id"].as_str().unwrap().to_owned();
    eventually_within("every client got the queued event", Duration::from_secs(60), || {
        let received = received.clone();
        let id = queued.clone();
        async move { tally(&received, &id).0 == N }
    })
    .await;

    // Nothing arrives twice, given time to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(tally(&received, &id), (N, 0), "the synchronous event: once each");
    assert_eq!(tally(&received, &queued), (N, 0), "the queued event: once each");
    emu.shutdown().await;
}

/// Issue 29, point 2: the quotas answer as API Gateway does — a handshake
/// over the connect quota 429, an `@connections` call over its quota 429
/// `LimitExceededException`, on the HTTP route as on the in-process path.
#[tokio::test]
async fn the_emulator_answers_429_beyond_its_quotas() {
    let limits = GatewayLimits {
        quotas: Quotas {
            connects: Some(Quota { per_second: 2.0, burst: 2.0 }),
            connections_api: Some(Quota { per_second: 1.0, burst: 1.0 }),
        },
        ..GatewayLimits::default()
    };
    let ctx = Context::new(Config::default(), switchboard_tests::Backend::Memory.store(Default::default()));
    let mode = Mode::InProcess { ctx, verifier: switchboard_tests::auth::verifier() };
    let emu = Emulator::start(Settings { limits, ..Settings::ephemeral() }, mode).await.unwrap();
    let url = format!("{}?token={}", emu.ws_url(), token("acme", "a", Role::Agent));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(match connect(&url, &[]).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(e) => panic!("{e}"),
        });
    }
    assert_eq!(statuses.iter().filter(|s| **s == 101).count(), 2, "the burst: {statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");

    let http = reqwest::Client::new();
    let get = || http.get(format!("{}/@connections/AAAAAAAAAAAAAAA=", emu.connections_endpoint())).send();
    let first = get().await.unwrap();
    assert_eq!(first.status(), 410, "within the quota: the connection is looked up");
    let second = get().await.unwrap();
    assert_eq!(second.status(), 429);
    assert_eq!(second.headers()["x-amzn-errortype"], "LimitExceededException");
    // The SDK names it, as a function would see it.
    let sdk = switchboard::connections_api::ManagementApi::local();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    use switchboard::connections_api::ConnectionsApi as _;
    let conn: switchboard::ids::ConnectionId = "AAAAAAAAAAAAAAA=".parse().unwrap();
    let outcomes = [
        sdk.post(&emu.connections_endpoint(), &conn, b"x").await,
        sdk.post(&emu.connections_endpoint(), &conn, b"x").await,
    ];
    assert_eq!(outcomes[0], switchboard::connections_api::PostOutcome::Gone);
    assert_eq!(outcomes[1], switchboard::connections_api::PostOutcome::Throttled);
}
