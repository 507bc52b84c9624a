//! Channels end to end: real WebSocket clients and the real HTTP API
//! against the emulator, on a real `redis-server` where the history
//! matters. Queues, a team and agents as channels; each client gets
//! exactly what its channels carry; every permission rule refused and
//! allowed as configured; a quiet channel recovers exactly its own events
//! while the tenant is busy elsewhere.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::Context;
use switchboard::auth::{AuthConfig, Verifier, mint_hs256};
use switchboard::channel::{Channel, Grants};
use switchboard::config::{Config, Limits};
use switchboard::event::{Envelope, EventType, Target};
use switchboard::ids::{Identity, Role};
use switchboard::namespaces::Namespaces;
use switchboard_local::{Emulator, Mode, Settings};

use switchboard_tests::Backend;
use switchboard_tests::auth::SECRET;
use switchboard_tests::ws::{self, connect, next_json, refusal_status, request, silent};

struct Lab {
    emu: Emulator,
    ctx: Context,
}

async fn lab_with(backend: Backend, channels: Namespaces) -> Lab {
    let limits = Limits::default();
    let config = Config { limits: limits.clone(), channels, ..Config::default() };
    let ctx = Context::new(config, backend.store(limits));
    let mode = Mode::InProcess { ctx: ctx.clone(), verifier: Verifier::new(&AuthConfig::hs256(SECRET)).unwrap() };
    let emu = Emulator::start(Settings::ephemeral(), mode).await.unwrap();
    Lab { emu, ctx }
}

async fn lab() -> Lab {
    lab_with(Backend::Memory, Namespaces::default()).await
}

fn token(tenant: &str, user: &str, role: Role, grants: &[&str]) -> String {
    let who = Identity {
        channels: Grants::parse(grants.iter().copied()).unwrap(),
        ..Identity::new(tenant.parse().unwrap(), user.parse().unwrap(), role)
    };
    mint_hs256(SECRET, &who, 600)
}

impl Lab {
    async fn client(&self, tenant: &str, user: &str, role: Role, grants: &[&str]) -> ws::Ws {
        let url = format!("{}?token={}", self.emu.ws_url(), token(tenant, user, role, grants));
        connect(&url, &[]).await.expect("handshake").0
    }
}

async fn join(ws: &mut ws::Ws, channel: &str, events: Option<&[&str]>) -> Value {
    let mut frame = json!({"action": "subscribe", "channel": channel});
    if let Some(events) = events {
        frame["events"] = json!(events);
    }
    request(ws, frame).await
}

/// Every event `ws` receives until it has been silent for a moment: (channel, type, id).
async fn drain(ws: &mut ws::Ws) -> BTreeSet<(String, String, String)> {
    let mut got = BTreeSet::new();
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(400), next_json(ws)).await {
        let channel = frame["channel"].as_str().unwrap_or("-").to_owned();
        got.insert((channel, frame["type"].as_str().unwrap().to_owned(), frame["id"].as_str().unwrap().to_owned()));
    }
    got
}

#[tokio::test]
async fn each_client_receives_exactly_its_channels_events() {
    let lab = lab().await;
    let mut a1 = lab.client("t1", "a1", Role::Agent, &["queue:support", "team:east"]).await;
    let mut a2 = lab.client("t1", "a2", Role::Agent, &["queue:sales"]).await;
    let mut sup = lab.client("t1", "s1", Role::Supervisor, &[]).await;
    let mut wallboard = lab.client("t1", "w1", Role::Supervisor, &[]).await;
    let mut admin = lab.client("t1", "root", Role::Admin, &[]).await;
    for channel in ["queue:support", "team:east", "agent:a1"] {
        let r = join(&mut a1, channel, None).await;
        assert_eq!((r["type"].as_str(), r["channel"].as_str()), (Some("subscribed"), Some(channel)), "{r}");
        assert_eq!(r["events"], json!(["*"]));
    }
    assert_eq!(join(&mut a2, "queue:sales", Some(&["call.*"])).await["events"], json!(["call.*"]));
    assert_eq!(join(&mut a2, "agent:a2", None).await["type"], "subscribed");
    assert_eq!(join(&mut sup, "team:east", Some(&["agent.*"])).await["type"], "subscribed");
    assert_eq!(join(&mut wallboard, "queue:support", Some(&["queue.stats"])).await["type"], "subscribed");
    assert_eq!(join(&mut wallboard, "queue:sales", Some(&["queue.stats"])).await["type"], "subscribed");

    let mine = request(&mut a1, json!({"action": "subscriptions"})).await;
    assert_eq!(mine["channels"], json!({"agent:a1": ["*"], "queue:support": ["*"], "team:east": ["*"]}));
    assert_eq!(mine["events"], json!([]));

    // The admin publishes over the WebSocket, a back end over the HTTP API.
    let http = reqwest::Client::new();
    let service = token("t1", "crm", Role::Service, &[]);
    let mut sent = vec![];
    for (channel, event_type, by_http) in [
        ("queue:support", "call.incoming", false),
        ("queue:sales", "call.incoming", true),
        ("queue:support", "queue.stats", true),
        ("queue:sales", "queue.stats", false),
        ("team:east", "agent.state.changed", false),
        ("team:east", "system.notification", true),
        ("agent:a1", "call.ringing", false),
        ("agent:a2", "call.ringing", true),
        ("team:west", "agent.state.changed", false),
    ] {
        let body = json!({"type": event_type, "target": {"channel": channel}, "data": {"n": sent.len()}});
        let id = if by_http {
            let r = http
                .post(format!("{}/v1/events", lab.emu.http_url()))
                .bearer_auth(&service)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()["event_id"].as_str().unwrap().to_owned()
        } else {
            let mut frame = body.clone();
            frame["action"] = json!("publish");
            let r = request(&mut admin, frame).await;
            assert_eq!(r["type"], "published", "{r}");
            r["event_id"].as_str().unwrap().to_owned()
        };
        sent.push((channel.to_owned(), event_type.to_owned(), id));
    }
    let expect =
        |which: &[usize]| -> BTreeSet<(String, String, String)> { which.iter().map(|i| sent[*i].clone()).collect() };
    assert_eq!(drain(&mut a1).await, expect(&[0, 2, 4, 5, 6]), "a1: its queue, its team, itself");
    assert_eq!(drain(&mut a2).await, expect(&[1, 7]), "a2: its queue's calls (call.* only), itself");
    assert_eq!(drain(&mut sup).await, expect(&[4]), "the supervisor: the team's agent.* only");
    assert_eq!(drain(&mut wallboard).await, expect(&[2, 3]), "the wallboard: both queues' stats");
    assert!(silent(&mut admin, Duration::from_millis(100)).await, "the publisher follows nothing");
}

/// A refusal's code and message; the connection stays up (a ping answers).
async fn refused(ws: &mut ws::Ws, frame: Value) -> (String, String) {
    let r = request(ws, frame).await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(request(ws, json!({"action": "ping"})).await["type"], "pong", "the connection stays");
    (r["code"].as_str().unwrap().to_owned(), r["message"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn every_rule_is_refused_and_allowed_as_configured() {
    let lab = lab().await;
    let mut agent = lab.client("t1", "a1", Role::Agent, &["queue:support", "chat:*"]).await;
    let (code, why) = refused(&mut agent, json!({"action": "subscribe", "channel": "queue:sales"})).await;
    assert_eq!(code, "forbidden");
    assert!(
        why.contains("queue:sales")
            && why.contains("rule queue.subscribe.agent = granted")
            && why.contains("the token grants queue:support, chat:*"),
        "{why}"
    );
    let (code, why) = refused(&mut agent, json!({"action": "subscribe", "channel": "agent:a2"})).await;
    assert_eq!(
        (code.as_str(), why.as_str()),
        ("forbidden", "channel agent:a2: rule agent.subscribe.agent = own: only agent:a1 (your own)")
    );
    let (code, why) = refused(&mut agent, json!({"action": "subscribe", "channel": "fleet:1"})).await;
    assert_eq!(code, "invalid_channel");
    assert!(why.contains("namespace 'fleet' is not declared (declared: agent, call, chat, queue, team)"), "{why}");
    let (code, why) = refused(&mut agent, json!({"action": "subscribe", "channel": "queue:a b"})).await;
    assert_eq!(code, "invalid_channel");
    assert!(why.contains("0x20"), "{why}");
    let (code, _) = refused(&mut agent, json!({"action": "subscribe", "channel": 7})).await;
    assert_eq!(code, "invalid_channel");
    let (code, why) = refused(
        &mut agent,
        json!({"action": "publish", "type": "queue.stats", "target": {"channel": "queue:support"}}),
    )
    .await;
    assert_eq!(code, "forbidden");
    assert!(why.contains("only chat.message"), "the role's event rule first: {why}");
    let (code, why) = refused(
        &mut agent,
        json!({"action": "publish", "type": "chat.message", "target": {"channel": "queue:support"}}),
    )
    .await;
    assert_eq!(
        (code.as_str(), why.as_str()),
        (
            "forbidden",
            "channel queue:support: the agent role may not publish in namespace 'queue' (no queue.publish.agent rule)"
        )
    );

    // Allowed: its own agent channel, a granted queue, chat by a pattern grant.
    assert_eq!(join(&mut agent, "agent:a1", None).await["type"], "subscribed");
    assert_eq!(join(&mut agent, "queue:support", None).await["type"], "subscribed");
    assert_eq!(join(&mut agent, "chat:abc", None).await["type"], "subscribed");
    // The echo (a1 follows chat:abc) and the reply, in either order.
    let mut frames = vec![
        request(
            &mut agent,
            json!({"action": "publish", "type": "chat.message", "target": {"channel": "chat:abc"}, "data": {"text": "hi"}}),
        )
        .await,
    ];
    frames.push(next_json(&mut agent).await);
    frames.sort_by_key(|f| f["type"].as_str().unwrap_or_default().to_owned());
    let [echo, published] = &frames[..] else { unreachable!() };
    assert_eq!(published["type"], "published", "{published}");
    assert_eq!((echo["channel"].as_str(), echo["sender"]["user_id"].as_str()), (Some("chat:abc"), Some("a1")));

    // A supervisor may follow any queue or agent.
    let mut sup = lab.client("t1", "s1", Role::Supervisor, &[]).await;
    assert_eq!(join(&mut sup, "queue:sales", None).await["type"], "subscribed");
    assert_eq!(join(&mut sup, "agent:a2", None).await["type"], "subscribed");
    assert_eq!(join(&mut sup, "chat:abc", None).await["type"], "subscribed", "and listen in on any chat");
    let (code, why) =
        refused(&mut sup, json!({"action": "publish", "type": "chat.message", "target": {"channel": "chat:abc"}}))
            .await;
    assert_eq!(code, "forbidden");
    assert!(
        why.contains("rule chat.publish.supervisor = granted") && why.contains("the token grants no channel"),
        "{why}"
    );

    // Over the HTTP API: an undeclared namespace is the request's mistake, a rule's refusal 403.
    let http = reqwest::Client::new();
    let post = |role: Role, channel: &str| {
        let (http, url) = (http.clone(), format!("{}/v1/events", lab.emu.http_url()));
        let body = json!({"type": "chat.message", "target": {"channel": channel}});
        let bearer = token("t1", "u9", role, &[]);
        async move { http.post(url).bearer_auth(bearer).json(&body).send().await.unwrap() }
    };
    assert_eq!(post(Role::Service, "fleet:1").await.status(), 400);
    let r = post(Role::Agent, "chat:abc").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("chat.publish.agent = granted"));
    assert_eq!(post(Role::Service, "chat:abc").await.status(), 200);
    let r = post(Role::Service, "queue:a:b").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("channel 'queue:a:b'"));
    let r = reqwest::get(format!("{}/v1/events?channel=queue:sales&token=x", lab.emu.http_url())).await.unwrap();
    assert_eq!(r.status(), 401);
    let agent_token = token("t1", "a1", Role::Agent, &["queue:support"]);
    let read = |channel: &str| {
        let (http, url) = (http.clone(), format!("{}/v1/events?channel={channel}", lab.emu.http_url()));
        let bearer = agent_token.clone();
        async move { http.get(url).bearer_auth(bearer).send().await.unwrap() }
    };
    assert_eq!(read("queue:sales").await.status(), 403, "a history is read as a subscription is made");
    assert_eq!(read("queue:support").await.status(), 200);
}

#[tokio::test]
async fn a_forged_or_malformed_channel_claim_never_connects() {
    let lab = lab().await;
    let forged = mint_hs256(
        b"not-the-emulator-secret-not-the-secret!!",
        &Identity {
            channels: Grants::parse(["queue:*"]).unwrap(),
            ..Identity::new("t1".parse().unwrap(), "a1".parse().unwrap(), Role::Agent)
        },
        600,
    );
    assert_eq!(refusal_status(connect(&format!("{}?token={forged}", lab.emu.ws_url()), &[]).await), 401);
    let claims = switchboard::auth::Claims {
        sub: Some("a1".into()),
        tenant_id: Some("t1".into()),
        role: Some("agent".into()),
        exp: Some(jsonwebtoken::get_current_timestamp() + 600),
        channels: Some(vec!["queue:support".into(), "queue:{t2}".into()]),
        ..Default::default()
    };
    let bad = switchboard::auth::sign(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    );
    assert_eq!(refusal_status(connect(&format!("{}?token={bad}", lab.emu.ws_url()), &[]).await), 401);
}

#[tokio::test]
async fn another_tenants_channel_of_the_same_name_is_another_channel() {
    let lab = lab().await;
    let mut mine = lab.client("t1", "a1", Role::Agent, &["queue:support"]).await;
    let mut theirs = lab.client("t2", "a1", Role::Agent, &["queue:support"]).await;
    assert_eq!(join(&mut mine, "queue:support", None).await["type"], "subscribed");
    assert_eq!(join(&mut theirs, "queue:support", None).await["type"], "subscribed");
    let mut admin = lab.client("t1", "root", Role::Admin, &[]).await;
    let r = request(
        &mut admin,
        json!({"action": "publish", "type": "call.incoming", "target": {"channel": "queue:support"}}),
    )
    .await;
    assert_eq!(r["report"]["matched"], 1, "{r}");
    assert_eq!(next_json(&mut mine).await["tenant_id"], "t1");
    assert!(silent(&mut theirs, Duration::from_millis(300)).await, "t2's queue:support heard nothing");
}

#[tokio::test]
async fn namespaces_come_from_configuration() {
    let fleet = Namespaces::parse(
        r#"{"fleet": {"subscribe": {"agent": "own_or_granted", "supervisor": "any"}, "publish": {"service": "any"}, "history": false}}"#,
    )
    .unwrap();
    let lab = lab_with(Backend::Memory, fleet).await;
    let mut truck = lab.client("t1", "t7", Role::Agent, &["fleet:depot"]).await;
    assert_eq!(join(&mut truck, "fleet:t7", None).await["type"], "subscribed");
    assert_eq!(join(&mut truck, "fleet:depot", None).await["type"], "subscribed");
    let (code, why) = refused(&mut truck, json!({"action": "subscribe", "channel": "fleet:t8"})).await;
    assert_eq!(code, "forbidden");
    assert!(why.contains("fleet.subscribe.agent = own_or_granted"), "{why}");
    let (code, why) = refused(&mut truck, json!({"action": "subscribe", "channel": "queue:support"})).await;
    assert_eq!(code, "invalid_channel");
    assert!(why.contains("(declared: fleet)"), "{why}");
    // History off: events carry no position, a recovery answers recovered:false.
    let ch = Channel::parse("fleet:t7").unwrap();
    switchboard::broadcast::publish_to_channel(
        &lab.ctx,
        &"t1".parse().unwrap(),
        &ch,
        EventType::SystemAlert,
        json!({}),
    )
    .await
    .unwrap();
    let event = next_json(&mut truck).await;
    assert_eq!((event["channel"].as_str(), event.get("offset")), (Some("fleet:t7"), None));
    let r = request(
        &mut truck,
        json!({"action": "subscribe", "channel": "fleet:t7", "since": {"epoch": "e1", "offset": 1}}),
    )
    .await;
    assert_eq!(r["type"], "subscribed");
    let r = next_json(&mut truck).await;
    assert_eq!(
        (r["type"].as_str(), r["recovered"].as_bool(), r["channel"].as_str()),
        (Some("recovered"), Some(false), Some("fleet:t7"))
    );
}

#[tokio::test]
async fn a_quiet_channel_recovers_exactly_its_events_while_the_tenant_is_busy() {
    let lab = lab_with(Backend::Redis, Namespaces::default()).await;
    let t1: switchboard::ids::TenantId = "t1".parse().unwrap();
    let quiet = Channel::parse("queue:quiet").unwrap();
    let busy = Channel::parse("queue:busy").unwrap();
    let mut wallboard = lab.client("t1", "s1", Role::Supervisor, &[]).await;
    assert_eq!(join(&mut wallboard, "queue:quiet", None).await["type"], "subscribed");
    switchboard::broadcast::publish_to_channel(&lab.ctx, &t1, &quiet, EventType::QueueStats, json!({"n": -1}))
        .await
        .unwrap();
    let seen = next_json(&mut wallboard).await;
    let since = json!({"epoch": seen["epoch"], "offset": seen["offset"], "id": seen["id"]});
    // The client drops; the tenant goes on: 200 events to the quiet
    // channel among 20,000 elsewhere (a busy channel and the tenant).
    drop(wallboard);
    let mut expected = vec![];
    for i in 0..20_200u32 {
        let (event, target) = if i % 101 == 50 {
            (Envelope::new(t1.clone(), EventType::QueueStats, json!({"n": i})), Target::Channel(quiet.clone()))
        } else if i % 2 == 0 {
            (Envelope::new(t1.clone(), EventType::CallIncoming, json!({"n": i})), Target::Channel(busy.clone()))
        } else {
            (Envelope::new(t1.clone(), EventType::CallIncoming, json!({"n": i})), Target::Tenant)
        };
        if target == Target::Channel(quiet.clone()) {
            expected.push(event.id.clone());
        }
        switchboard::broadcast::publish(&lab.ctx, &event, &target).await.unwrap();
    }
    assert_eq!(expected.len(), 200);
    let mut back = lab.client("t1", "s1", Role::Supervisor, &[]).await;
    let r = request(&mut back, json!({"action": "subscribe", "channel": "queue:quiet", "since": since})).await;
    assert_eq!(r["type"], "subscribed", "{r}");
    let mut replayed = vec![];
    loop {
        let frame = next_json(&mut back).await;
        if frame["type"] == "recovered" {
            assert_eq!((frame["recovered"].as_bool(), frame["count"].as_u64()), (Some(true), Some(200)), "{frame}");
            assert_eq!(frame["channel"], "queue:quiet");
            break;
        }
        assert_eq!(frame["channel"], "queue:quiet");
        replayed.push(frame["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(replayed, expected, "exactly its 200, in order");
}

/// The frames `ws` receives until it has been silent for a moment.
async fn frames(ws: &mut ws::Ws) -> Vec<Value> {
    let mut got = vec![];
    while let Ok(frame) = tokio::time::timeout(Duration::from_millis(400), next_json(ws)).await {
        got.push(frame);
    }
    got
}

#[tokio::test]
async fn a_batch_reaches_each_connection_as_one_frame_from_every_entry_point() {
    let lab = lab().await;
    let mut board = vec![];
    for i in 0..30 {
        let mut c = lab.client("t1", &format!("s{i}"), Role::Supervisor, &[]).await;
        assert_eq!(join(&mut c, "queue:support", None).await["type"], "subscribed");
        board.push(c);
    }
    let mut both = lab.client("t1", "s-both", Role::Supervisor, &[]).await;
    join(&mut both, "queue:support", None).await;
    join(&mut both, "queue:sales", None).await;
    let mut sales = lab.client("t1", "s-sales", Role::Supervisor, &[]).await;
    join(&mut sales, "queue:sales", None).await;
    let mut admin = lab.client("t1", "root", Role::Admin, &[]).await;

    // Over the WebSocket: 20 events to queue:support, 1 to queue:sales.
    let mut events: Vec<Value> = (0..20)
        .map(|n| json!({"type": "queue.stats", "target": {"channel": "queue:support"}, "data": {"n": n}}))
        .collect();
    events.push(json!({"type": "call.incoming", "target": {"channel": "queue:sales"}, "data": {"n": 20}}));
    let r = request(&mut admin, json!({"action": "publish", "events": events})).await;
    assert_eq!(r["type"], "published", "{r}");
    let ids: Vec<String> = r["event_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 21);
    assert_eq!(r["report"]["delivered"], 20 * 31 + 2, "per event, the connections it reached");
    for got in futures::future::join_all(board.iter_mut().map(frames)).await {
        assert_eq!(got.len(), 1, "one frame per connection: {got:?}");
        assert_eq!(got[0]["type"], "batch");
        let carried: Vec<&str> =
            got[0]["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(carried, ids[..20].iter().map(String::as_str).collect::<Vec<_>>(), "in publish order");
        let offsets: Vec<u64> =
            got[0]["events"].as_array().unwrap().iter().map(|e| e["offset"].as_u64().unwrap()).collect();
        assert_eq!(offsets, (1..=20).collect::<Vec<_>>(), "each with its position");
    }
    let got = frames(&mut both).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["events"].as_array().unwrap().len(), 21, "both channels' events in one frame");
    let got = frames(&mut sales).await;
    assert_eq!(
        (got.len(), got[0]["type"].as_str(), got[0]["channel"].as_str()),
        (1, Some("call.incoming"), Some("queue:sales")),
        "one event: a plain envelope"
    );

    // Over the HTTP API, and from a back end invoking `fanout` directly.
    let body = json!({"events": [
        {"type": "queue.stats", "target": {"channel": "queue:support"}, "data": {"n": 1}},
        {"type": "queue.stats", "target": {"channel": "queue:support"}, "data": {"n": 2}},
    ]});
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", lab.emu.http_url()))
        .bearer_auth(token("t1", "crm", Role::Service, &[]))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["event_ids"].as_array().unwrap().len(), 2, "{answer}");
    assert_eq!(answer["results"][1]["report"]["delivered"], 31);
    let payload = json!({"events": [
        {"tenant_id": "t1", "type": "queue.stats", "target": {"channel": "queue:support"}, "data": {"n": 3}},
        {"tenant_id": "t2", "type": "queue.stats", "target": {"channel": "queue:support"}, "data": {"n": 4}},
        {"tenant_id": "t1", "type": "queue.stats", "target": {"channel": "queue:support"}, "data": {"n": 5}},
    ]});
    let direct = fanout::handle(&lab.ctx, payload).await.unwrap();
    assert_eq!(direct.results.iter().map(|p| p.report.delivered).collect::<Vec<_>>(), [31, 0, 31], "in request order");
    for got in futures::future::join_all(board.iter_mut().chain([&mut both]).map(frames)).await {
        let ns: Vec<i64> = got
            .iter()
            .flat_map(|f| f["events"].as_array().cloned().unwrap_or_default())
            .map(|e| e["data"]["n"].as_i64().unwrap())
            .collect();
        assert_eq!((got.len(), ns), (2, vec![1, 2, 3, 5]), "one frame per batch");
    }

    // A batch is refused whole: one forbidden event, or over the tenant's budget.
    let mut agent = lab.client("t1", "a1", Role::Agent, &[]).await;
    let r = request(
        &mut agent,
        json!({"action": "publish", "events": [
            {"type": "chat.message", "target": {"user": "s0"}},
            {"type": "queue.stats", "target": {"channel": "queue:support"}},
        ]}),
    )
    .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    let r = request(&mut admin, json!({"action": "publish", "events": []})).await;
    assert_eq!(r["code"], "invalid_message");
    assert!(r["message"].as_str().unwrap().contains("a batch is 1 to 100"), "{r}");
    let r = request(&mut admin, json!({"action": "publish", "events": [{"type": "queue.stats", "x": 1}]})).await;
    assert!(r["message"].as_str().unwrap().contains("events[0]: unknown field `x`"), "{r}");
    assert!(silent(&mut board[0], Duration::from_millis(300)).await, "nothing of a refused batch went out");
}

#[tokio::test]
async fn a_queued_batch_reaches_each_connection_once_as_one_frame() {
    let lab = lab_with(Backend::Redis, Namespaces::default()).await;
    let mut board = vec![];
    for i in 0..5 {
        let mut c = lab.client("t1", &format!("s{i}"), Role::Supervisor, &[]).await;
        assert_eq!(join(&mut c, "queue:support", None).await["type"], "subscribed");
        board.push(c);
    }
    // Through the HTTP API, the events queue and the fanout function.
    let body = json!({"events": [
        {"type": "queue.stats", "target": {"channel": "queue:support"}, "data": {"n": 1}},
        {"type": "call.incoming", "target": {"channel": "queue:support"}, "data": {"n": 2}},
        {"type": "call.incoming", "target": {"channel": "queue:sales"}, "data": {"n": 3}},
    ]});
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events?async=true", lab.emu.http_url()))
        .bearer_auth(token("t1", "crm", Role::Service, &[]))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let answer: Value = r.json().await.unwrap();
    let ids: Vec<&str> = answer["event_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    for got in futures::future::join_all(board.iter_mut().map(frames)).await {
        assert_eq!(got.len(), 1, "one frame: {got:?}");
        let carried: Vec<&str> =
            got[0]["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(carried, ids[..2], "queue:support's two, in order");
    }
    // The same job run again (SQS delivers at least once) sends nothing more:
    // its events were recorded once and its connections claimed.
    let t1: switchboard::ids::TenantId = "t1".parse().unwrap();
    let item = |n: i64| switchboard::broadcast::FanoutJob {
        event: Envelope::new(t1.clone(), EventType::QueueStats, json!({"n": n})),
        target: Target::Channel(Channel::parse("queue:support").unwrap()),
        chunk: None,
    };
    let job = switchboard::broadcast::BatchJob { batch: vec![item(10), item(11)] };
    let first = switchboard::broadcast::run_batch_job(&lab.ctx, &job).await.unwrap();
    assert_eq!(first.delivered, 10, "two events, five connections each");
    let again = switchboard::broadcast::run_batch_job(&lab.ctx, &job).await.unwrap();
    assert_eq!(again.delivered, 0, "a retried job sends to no one twice");
    for got in futures::future::join_all(board.iter_mut().map(frames)).await {
        assert_eq!(got.len(), 1, "{got:?}");
        let offsets: Vec<u64> =
            got[0]["events"].as_array().unwrap().iter().map(|e| e["offset"].as_u64().unwrap()).collect();
        assert_eq!(offsets, [3, 4], "recorded once: the positions after the first job's");
    }
}
