//! The Redis round-trip budget the README states (connect, disconnect,
//! subscribe and publish are one each), observed with `MONITOR` on a
//! real `redis-server`: connect, disconnect and subscribe are one round
//! trip each, and resolving the recipients of an event is one round trip
//! however many there are. Run with `--nocapture` to see the commands.

use switchboard::config::{Limits, RedisConfig};
use switchboard::event::{EventType, Target, Topic};
use switchboard::ids::{Role, TenantId};
use switchboard::store::{Connection, ConnectionStore, Keys, RedisStore};
use switchboard_test_support::RedisServer;
use switchboard_tests::{Monitor, Observed};

fn conn(id: &str, user: &str) -> Connection {
    Connection {
        id: id.parse().unwrap(),
        tenant_id: "acme".parse().unwrap(),
        user_id: user.parse().unwrap(),
        role: Role::Agent,
        endpoint: "https://gw.example/prod".into(),
        connected_at: 1,
    }
}

use switchboard_tests::auth::SECRET;

/// An in-process emulator on `server`, tokens signed with [`SECRET`].
async fn emulator_on(server: &RedisServer) -> (switchboard::Context, switchboard_local::Emulator) {
    use switchboard::config::Config;
    use switchboard_local::{Emulator, Mode, Settings};
    let config = Config { redis: Some(RedisConfig::single(server.url())), ..Config::default() };
    let ctx = switchboard::Context::from_config(config);
    let mode = Mode::InProcess { ctx: ctx.clone(), verifier: switchboard_tests::auth::verifier() };
    (ctx.clone(), Emulator::start(Settings::ephemeral(), mode).await.unwrap())
}

fn print_commands(what: &str, seen: &Observed) {
    eprintln!("{what}: {} client command(s), {} inside the script", seen.client.len(), seen.scripted.len());
    for c in &seen.client {
        eprintln!("    client  {}", c.chars().take(100).collect::<String>());
    }
    for c in seen.scripted.iter().take(12) {
        eprintln!("    script  {c}");
    }
    if seen.scripted.len() > 12 {
        eprintln!("    script  ... {} more", seen.scripted.len() - 12);
    }
}

#[tokio::test]
async fn connect_disconnect_subscribe_and_resolve_are_one_round_trip_each() {
    // A server of its own: other tests' traffic would blur the count.
    let server = RedisServer::start().unwrap();
    let store = RedisStore::new(RedisConfig::single(server.url()), Keys::new("callcenter"), Limits::default());
    let tenant: TenantId = "acme".parse().unwrap();
    let all: Vec<Topic> = vec!["*".parse().unwrap()];

    // Warm up: the connection handshake, script loading (EVALSHA falls back
    // to EVAL once per script and server) and the tenant's first connection.
    store.register(&conn("warm", "0")).await.unwrap();
    store.subscribe(&tenant, &"warm".parse().unwrap(), &all).await.unwrap();
    store.resolve(&tenant, EventType::CallIncoming, &Target::Tenant).await.unwrap();
    store.unregister(&tenant, &"warm".parse().unwrap()).await.unwrap();
    store.register(&conn("keep", "0")).await.unwrap();

    let mut monitor = Monitor::attach(server.port).unwrap();

    store.register(&conn("c1", "42")).await.unwrap();
    let seen = monitor.take().unwrap();
    print_commands("connect", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");
    assert!(seen.client[0].starts_with("\"EVALSHA\""));

    store
        .subscribe(
            &tenant,
            &"c1".parse().unwrap(),
            &["call.*".parse().unwrap(), "agent.state.changed".parse().unwrap()],
        )
        .await
        .unwrap();
    let seen = monitor.take().unwrap();
    print_commands("subscribe", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");

    for (what, n) in [("resolve, 1 recipient", 1), ("resolve, 200 recipients", 200)] {
        for i in 1..n {
            let c = conn(&format!("r{n}-{i}"), &format!("u{i}"));
            store.register(&c).await.unwrap();
            store.subscribe(&tenant, &c.id, &all).await.unwrap();
        }
        monitor.take().unwrap();
        let r = store.resolve(&tenant, EventType::CallIncoming, &Target::Tenant).await.unwrap();
        assert_eq!(r.recipients.len(), n);
        let seen = monitor.take().unwrap();
        print_commands(what, &seen);
        assert_eq!(seen.client.len(), 1, "one round trip whatever the number of recipients");
    }

    store.unregister(&tenant, &"c1".parse().unwrap()).await.unwrap();
    let seen = monitor.take().unwrap();
    print_commands("disconnect", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");
}

#[tokio::test]
async fn a_publish_is_one_round_trip_whatever_the_number_of_recipients_and_webhooks() {
    use serde_json::json;
    use switchboard::auth::mint_hs256;
    use switchboard::event::Envelope;
    use switchboard::ids::Identity;
    use switchboard_tests::ws;

    let server = RedisServer::start().unwrap();
    let (ctx, emu) = emulator_on(&server).await;
    // A queue no function polls, so the MONITOR sees the publish alone.
    let parked = emu.sqs.create_queue("parked", &Default::default()).unwrap();
    let urls = switchboard::config::QueueUrls { webhooks: Some(parked.clone()), ..Default::default() };
    let ctx = ctx.with_queues(switchboard::queue::Queues::local(&emu.sqs_url(), urls));
    let tenant: TenantId = "acme".parse().unwrap();
    // Two webhooks that want call events: read in the same round trip as the recipients.
    for id in ["wh_00000000000000000000000000000001", "wh_00000000000000000000000000000002"] {
        let hook = json!({"id": id, "name": "n", "url": "https://hooks.example.com/x", "events": ["call.*"],
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "is_active": true, "retry_count": 0, "timeout": 5,
            "created_at": 0, "updated_at": 0});
        ctx.store.save_webhook(&tenant, &serde_json::from_value(hook).unwrap()).await.unwrap();
    }
    let mut clients = Vec::new();
    for i in 0..100 {
        let identity = Identity::new(tenant.clone(), format!("u{i}").parse().unwrap(), Role::Agent);
        let url = format!("{}?token={}", emu.ws_url(), mint_hs256(SECRET, &identity, 60));
        let (mut c, _) = ws::connect(&url, &[]).await.unwrap();
        ws::request(&mut c, json!({"action": "subscribe", "events": ["call.*"]})).await;
        clients.push(c);
    }
    // Warm the script cache.
    switchboard::broadcast::publish(
        &ctx,
        &Envelope::new(tenant.clone(), EventType::CallEnded, json!({})),
        &Target::Tenant,
    )
    .await
    .unwrap();
    for c in &mut clients {
        ws::next_json(c).await;
    }

    let mut monitor = Monitor::attach(server.port).unwrap();
    let event = Envelope::new(tenant.clone(), EventType::CallIncoming, json!({"n": 1}));
    let report = switchboard::broadcast::publish(&ctx, &event, &Target::Tenant).await.unwrap();
    assert_eq!((report.delivered, report.webhooks_enqueued), (100, 2));
    let seen = monitor.take().unwrap();
    print_commands("publish to 100 recipients and 2 webhooks", &seen);
    assert_eq!(seen.client.len(), 1, "resolve only: posts go to @connections and deliveries to SQS, not Redis");
    assert_eq!(emu.sqs.counts(&parked).unwrap().0, 4, "two deliveries per publish, queued");
}

/// What the connection storm and the HTTP API cost, end to end through the
/// emulator: a `$connect` that brings a user online, a `POST /v1/events`
/// (its rate limit included) and a `$disconnect` that takes the user
/// offline are one round trip each — the presence announcements read their
/// recipients in the same script as the change.
#[tokio::test]
async fn a_connect_a_disconnect_and_an_http_publish_are_one_round_trip_each() {
    use serde_json::json;
    use switchboard::auth::mint_hs256;
    use switchboard::ids::Identity;
    use switchboard_tests::ws;

    let server = RedisServer::start().unwrap();
    let (_ctx, emu) = emulator_on(&server).await;
    let tenant: TenantId = "acme".parse().unwrap();
    let token =
        |user: &str, role: Role| mint_hs256(SECRET, &Identity::new(tenant.clone(), user.parse().unwrap(), role), 60);
    let (mut watcher, _) =
        ws::connect(&format!("{}?token={}", emu.ws_url(), token("watcher", Role::Supervisor)), &[]).await.unwrap();
    ws::request(&mut watcher, json!({"action": "subscribe", "events": ["presence.*", "call.*"]})).await;
    let http = reqwest::Client::new();
    let publish = || {
        http.post(format!("{}/v1/events", emu.http_url()))
            .bearer_auth(token("admin", Role::Admin))
            .json(&json!({"type": "call.incoming", "data": {"n": 1}}))
            .send()
    };
    // Warm up every script once (EVALSHA falls back to EVAL once per script).
    let (mut warm, _) =
        ws::connect(&format!("{}?token={}", emu.ws_url(), token("warm", Role::Agent)), &[]).await.unwrap();
    assert_eq!(ws::next_json(&mut watcher).await["type"], "presence.online");
    assert_eq!(publish().await.unwrap().status(), 200);
    assert_eq!(ws::next_json(&mut watcher).await["type"], "call.incoming");
    warm.close(None).await.unwrap();
    assert_eq!(ws::next_json(&mut watcher).await["type"], "presence.offline");

    let mut monitor = Monitor::attach(server.port).unwrap();
    let (mut agent, _) =
        ws::connect(&format!("{}?token={}", emu.ws_url(), token("agent-7", Role::Agent)), &[]).await.unwrap();
    let online = ws::next_json(&mut watcher).await;
    assert_eq!(
        (online["type"].as_str(), online["data"]["user_id"].as_str()),
        (Some("presence.online"), Some("agent-7"))
    );
    let seen = monitor.take().unwrap();
    print_commands("$connect, presence.online announced", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");

    let answer = publish().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(ws::next_json(&mut watcher).await["type"], "call.incoming");
    let seen = monitor.take().unwrap();
    print_commands("POST /v1/events (rate limit + recipients)", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");

    agent.close(None).await.unwrap();
    let offline = ws::next_json(&mut watcher).await;
    assert_eq!(
        (offline["type"].as_str(), offline["data"]["user_id"].as_str()),
        (Some("presence.offline"), Some("agent-7"))
    );
    let seen = monitor.take().unwrap();
    print_commands("$disconnect, presence.offline announced", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");
}

/// A connection recorded before the connection index existed (its hash and
/// sets only) is still a recipient: the resolve falls back to its hash.
#[tokio::test]
async fn connections_missing_from_the_index_are_still_resolved() {
    let server = RedisServer::start().unwrap();
    let store = RedisStore::new(RedisConfig::single(server.url()), Keys::new("callcenter"), Limits::default());
    let tenant: TenantId = "acme".parse().unwrap();
    store.register(&conn("new", "1")).await.unwrap();
    store.subscribe(&tenant, &"new".parse().unwrap(), &["call.*".parse().unwrap()]).await.unwrap();
    assert_eq!(
        switchboard_test_support::redis_cmd(server.port, &["HGET", "callcenter:connidx:{acme}", "new"]).unwrap().trim(),
        "1 https://gw.example/prod",
        "register writes the index entry"
    );
    // The old layout, written by hand: no connidx entry.
    let redis = |args: &[&str]| switchboard_test_support::redis_cmd(server.port, args).unwrap();
    redis(&[
        "HSET",
        "callcenter:conn:{acme}:old",
        "user_id",
        "2",
        "role",
        "agent",
        "endpoint",
        "https://gw.example/prod",
    ]);
    redis(&["SADD", "callcenter:conns:{acme}", "old"]);
    redis(&["SADD", "callcenter:subs:{acme}:call.*", "old"]);
    let r = store.resolve(&tenant, EventType::CallIncoming, &Target::Tenant).await.unwrap();
    let mut got: Vec<(String, String, String)> =
        r.recipients.iter().map(|r| (r.connection_id.to_string(), r.user_id.to_string(), r.endpoint.clone())).collect();
    got.sort();
    let endpoint = "https://gw.example/prod".to_string();
    assert_eq!(got, [("new".into(), "1".into(), endpoint.clone()), ("old".into(), "2".into(), endpoint)]);
    // Unregistering removes the index entry with the rest.
    store.unregister(&tenant, &"new".parse().unwrap()).await.unwrap();
    assert_eq!(redis(&["HLEN", "callcenter:connidx:{acme}"]).trim(), "0");
}

/// Channels keep the budget: a channel subscribe (with or without
/// recovery) and a publish to a channel of 50 in a tenant of 500
/// connections (its rate limit, its subscribers, its history) are one
/// round trip each, over the WebSocket and the HTTP API.
#[tokio::test]
async fn a_channel_subscribe_and_a_channel_publish_are_one_round_trip_each() {
    use serde_json::json;
    use switchboard::auth::mint_hs256;
    use switchboard::ids::Identity;
    use switchboard_tests::ws;

    let server = RedisServer::start().unwrap();
    let (_ctx, emu) = emulator_on(&server).await;
    let tenant: TenantId = "acme".parse().unwrap();
    let token =
        |user: &str, role: Role| mint_hs256(SECRET, &Identity::new(tenant.clone(), user.parse().unwrap(), role), 60);
    let mut clients = Vec::new();
    for i in 0..500 {
        let (mut c, _) =
            ws::connect(&format!("{}?token={}", emu.ws_url(), token(&format!("s{i}"), Role::Supervisor)), &[])
                .await
                .unwrap();
        let channel = if i < 50 { "queue:support" } else { "queue:other" };
        let r = ws::request(&mut c, json!({"action": "subscribe", "channel": channel})).await;
        assert_eq!(r["type"], "subscribed");
        clients.push(c);
    }
    let http = reqwest::Client::new();
    let publish = || {
        http.post(format!("{}/v1/events", emu.http_url()))
            .bearer_auth(token("crm", Role::Service))
            .json(&json!({"type": "call.incoming", "target": {"channel": "queue:support"}}))
            .send()
    };
    // Warm the scripts.
    let answer: serde_json::Value = publish().await.unwrap().json().await.unwrap();
    assert_eq!(answer["report"]["delivered"], 50, "{answer}");
    let mut last = serde_json::Value::Null;
    for c in clients.iter_mut().take(50) {
        last = ws::next_json(c).await;
    }
    let (mut late, _) =
        ws::connect(&format!("{}?token={}", emu.ws_url(), token("late", Role::Supervisor)), &[]).await.unwrap();
    let since = json!({"epoch": last["epoch"], "offset": last["offset"], "id": last["id"]});
    ws::request(&mut late, json!({"action": "subscribe", "channel": "queue:warm", "since": since.clone()})).await;
    ws::next_json(&mut late).await;

    let mut monitor = Monitor::attach(server.port).unwrap();
    let answer: serde_json::Value = publish().await.unwrap().json().await.unwrap();
    assert_eq!((answer["report"]["matched"].as_u64(), answer["report"]["delivered"].as_u64()), (Some(50), Some(50)));
    let seen = monitor.take().unwrap();
    print_commands("POST /v1/events to a channel of 50 in a tenant of 500", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");

    let r =
        ws::request(&mut late, json!({"action": "subscribe", "channel": "queue:support", "events": ["call.*"]})).await;
    assert_eq!(r["type"], "subscribed");
    let seen = monitor.take().unwrap();
    print_commands("channel subscribe", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");

    let r = ws::request(&mut late, json!({"action": "subscribe", "channel": "queue:support", "since": since})).await;
    assert_eq!(r["type"], "subscribed");
    let mut frame = ws::next_json(&mut late).await;
    while frame["type"] != "recovered" {
        frame = ws::next_json(&mut late).await;
    }
    assert_eq!((frame["recovered"].as_bool(), frame["count"].as_u64()), (Some(true), Some(1)), "{frame}");
    let seen = monitor.take().unwrap();
    print_commands("channel subscribe with recovery", &seen);
    assert_eq!(seen.client.len(), 1, "{seen:?}");
}
