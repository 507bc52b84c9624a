//! Events flowing end to end: publishers (HTTP API, client `publish`, the
//! `fanout` function) → broadcaster → `@connections` of the emulator → real
//! WebSocket clients, with state in a real `redis-server`.

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::config::{Config, RedisConfig};
use switchboard::ids::{Role, TenantId};
use switchboard::store::{Audience, Connection, HistoryQuery};
use switchboard_local::{Emulator, Mode, Settings};
use switchboard_test_support::shared_redis;
use switchboard_tests::id::tenant;
use switchboard_tests::ws::{self, Ws, connect, next_json, request, silent};
use switchboard_tests::{eventually, unique_prefix};

struct World {
    emu: Emulator,
    ctx: Context,
    http: reqwest::Client,
}

async fn world_with(tweak: impl FnOnce(&mut Config)) -> World {
    world_on(Settings::ephemeral(), tweak).await
}

async fn world_on(settings: Settings, tweak: impl FnOnce(&mut Config)) -> World {
    let mut config = Config {
        redis: Some(RedisConfig::single(shared_redis().url())),
        key_prefix: unique_prefix(),
        ..Config::default()
    };
    tweak(&mut config);
    let ctx = Context::from_config(config);
    let mode = Mode::InProcess { ctx: ctx.clone(), verifier: switchboard_tests::auth::verifier() };
    let emu = Emulator::start(settings, mode).await.unwrap();
    World { emu, ctx, http: reqwest::Client::new() }
}

async fn world() -> World {
    world_with(|_| {}).await
}

use switchboard_tests::auth::token;

impl World {
    /// A connected client of `tenant`/`user`, subscribed to `topics` (none: not subscribed).
    async fn client(&self, tenant: &str, user: &str, topics: &[&str]) -> Ws {
        let url = format!("{}?token={}", self.emu.ws_url(), token(tenant, user, Role::Agent));
        let (mut ws, _) = connect(&url, &[]).await.expect("handshake");
        if !topics.is_empty() {
            let reply = request(&mut ws, json!({"action": "subscribe", "events": topics})).await;
            assert_eq!(reply["type"], "subscribed", "{reply}");
        }
        ws
    }

    /// `tenant`/`user` connected once and left: the tenant has seen them,
    /// so events for them wait in their offline queue.
    async fn was_here(&self, tenant: &str, user: &str) {
        drop(self.client(tenant, user, &[]).await);
        let (t, u): (TenantId, switchboard::ids::UserId) = (tenant.parse().unwrap(), user.parse().unwrap());
        eventually("$disconnect ran", || async { self.ctx.store.presence(&t, &u).await.unwrap().connections == 0 })
            .await;
    }

    /// `POST /v1/events` as `token`.
    async fn publish(&self, token: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/v1/events", self.emu.http_url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(format!("{}{path}", self.emu.http_url())).bearer_auth(token).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// How long `silent` listens: the negative half of "only the subscribers got it".
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn events_reach_the_subscribers_of_their_tenant_and_nobody_else() {
    let w = world().await;
    let mut calls = w.client("acme", "1", &["call.*"]).await;
    let mut chats = w.client("acme", "2", &["chat.*"]).await;
    let mut nothing = w.client("acme", "3", &[]).await;
    let mut other_tenant = w.client("globex", "1", &["*"]).await;

    let (status, body) = w
        .publish(&token("acme", "svc", Role::Service), json!({"type": "call.incoming", "data": {"caller_id": "+1555"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["report"],
        json!({"matched": 1, "delivered": 1, "gone": 0, "failed": 0, "queued_offline": 0, "webhooks_enqueued": 0, "webhooks_failed": 0, "chunks": 0, "throttled": 0, "requeued": 0})
    );
    let event = next_json(&mut calls).await;
    assert_eq!(event["type"], "call.incoming");
    assert_eq!(event["tenant_id"], "acme");
    assert_eq!(event["data"], json!({"caller_id": "+1555"}));
    assert_eq!(event["id"], body["event_id"]);
    assert!(event["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(silent(&mut chats, QUIET).await, "chat subscriber got a call event");
    assert!(silent(&mut nothing, QUIET).await, "an unsubscribed client got an event");
    assert!(silent(&mut other_tenant, QUIET).await, "another tenant got acme's event");

    // globex's event reaches globex only, even though user ids coincide.
    let (_, body) =
        w.publish(&token("globex", "svc", Role::Service), json!({"type": "call.ended", "target": {"user": "1"}})).await;
    assert_eq!(body["report"]["delivered"], 1);
    assert_eq!(next_json(&mut other_tenant).await["tenant_id"], "globex");
    assert!(silent(&mut calls, QUIET).await, "acme's user 1 got globex's user-1 event");

    // A token of acme cannot see globex: its reads are scoped to acme.
    let acme = token("acme", "admin", Role::Admin);
    let (_, online) = w.get(&acme, "/v1/users/1/online").await;
    assert_eq!(online, json!({"user_id": "1", "is_online": true, "connection_count": 1}), "acme's own user 1");
    let (_, stats) = w.get(&acme, "/v1/stats").await;
    assert_eq!(stats, json!({"tenant_id": "acme", "tenant_connections": 3}), "no platform-wide figure for a tenant");
    let (_, presence) = w.get(&acme, "/v1/presence").await;
    assert_eq!(presence, json!({"count": 3, "online_users": ["1", "2", "3"]}));
    let (_, presence) = w.get(&token("globex", "admin", Role::Admin), "/v1/presence").await;
    assert_eq!(presence, json!({"count": 1, "online_users": ["1"]}));
    let (_, nobody) = w.get(&acme, "/v1/users/someone-else/online").await;
    assert_eq!(nobody, json!({"user_id": "someone-else", "is_online": false, "connection_count": 0}));
}

#[tokio::test]
async fn a_user_with_two_connections_gets_a_user_event_on_both() {
    let w = world().await;
    let mut phone = w.client("acme", "42", &["chat.*"]).await;
    let mut laptop = w.client("acme", "42", &["chat.message"]).await;
    let mut colleague = w.client("acme", "43", &["chat.*"]).await;
    // An agent sends a chat message through its own WebSocket.
    let mut sender = w.client("acme", "7", &[]).await;
    let reply = request(
        &mut sender,
        json!({"action": "publish", "type": "chat.message", "target": {"user": "42"}, "data": {"text": "hi"}, "id": "m1"}),
    )
    .await;
    assert_eq!(reply["type"], "published", "{reply}");
    assert_eq!(reply["id"], "m1");
    assert_eq!(reply["report"]["delivered"], 2);
    for ws in [&mut phone, &mut laptop] {
        let event = next_json(ws).await;
        assert_eq!((event["type"].as_str(), event["data"]["text"].as_str()), (Some("chat.message"), Some("hi")));
    }
    assert!(silent(&mut colleague, QUIET).await);
    // Agents may not emit call events or broadcast to the whole tenant.
    let refused =
        request(&mut sender, json!({"action": "publish", "type": "call.incoming", "target": {"user": "42"}})).await;
    assert_eq!(refused["code"], "forbidden");
    assert!(silent(&mut phone, QUIET).await);
}

#[tokio::test]
async fn offline_messages_wait_in_order_for_sync() {
    let w = world().await;
    let svc = token("acme", "svc", Role::Service);
    w.was_here("acme", "99").await;
    for n in 1..=3 {
        let (status, body) =
            w.publish(&svc, json!({"type": "ticket.assigned", "target": {"user": "99"}, "data": {"n": n}})).await;
        assert_eq!(status, 200);
        assert_eq!(body["report"]["queued_offline"], 1, "user 99 is offline");
    }
    let mut late = w.client("acme", "99", &[]).await;
    assert!(silent(&mut late, QUIET).await, "nothing is pushed before sync");
    ws::send_json(&mut late, json!({"action": "sync", "id": "s1"})).await;
    for n in 1..=3 {
        let event = next_json(&mut late).await;
        assert_eq!(
            (event["type"].as_str(), event["data"]["n"].as_i64()),
            (Some("ticket.assigned"), Some(n)),
            "oldest first"
        );
    }
    let synced = next_json(&mut late).await;
    assert_eq!(
        (synced["type"].as_str(), synced["id"].as_str(), synced["count"].as_u64()),
        (Some("synced"), Some("s1"), Some(3))
    );
    let cursor = synced["cursor"].as_str().expect("a cursor to acknowledge with").to_owned();
    assert_eq!(
        request(&mut late, json!({"action": "sync", "ack": cursor})).await,
        json!({"type": "synced", "count": 0, "acked": 3}),
        "acknowledged: the queue is empty now"
    );
    // Online now: a user event is delivered live, not queued.
    request(&mut late, json!({"action": "subscribe", "events": ["ticket.*"]})).await;
    let (_, body) =
        w.publish(&svc, json!({"type": "ticket.assigned", "target": {"user": "99"}, "data": {"n": 4}})).await;
    assert_eq!((body["report"]["delivered"].as_u64(), body["report"]["queued_offline"].as_u64()), (Some(1), Some(0)));
    assert_eq!(next_json(&mut late).await["data"]["n"], 4);
}

/// The case: 50 queued, the client syncs, reads 10, drops; 5 more
/// arrive. Before, the 40 it never read were gone (removed as soon as the
/// gateway took them). Now nothing leaves the queue until acknowledged.
#[tokio::test]
async fn a_sync_that_dies_midway_loses_nothing() {
    let w = world().await;
    let svc = token("acme", "svc", Role::Service);
    let publish = |n: u64| {
        let (w, svc) = (&w, &svc);
        async move {
            let (_, body) =
                w.publish(svc, json!({"type": "ticket.assigned", "target": {"user": "77"}, "data": {"n": n}})).await;
            assert_eq!(body["report"]["queued_offline"], 1, "user 77 is offline: {body}");
        }
    };
    w.was_here("acme", "77").await;
    for n in 1..=50 {
        publish(n).await;
    }
    let mut first = w.client("acme", "77", &[]).await;
    ws::send_json(&mut first, json!({"action": "sync"})).await;
    for n in 1..=10 {
        assert_eq!(next_json(&mut first).await["data"]["n"], n);
    }
    drop(first); // the TCP connection drops with 40 messages unread
    let tenant: switchboard::ids::TenantId = "acme".parse().unwrap();
    let user: switchboard::ids::UserId = "77".parse().unwrap();
    switchboard_tests::eventually("$disconnect ran", || async {
        w.ctx.store.presence(&tenant, &user).await.unwrap().connections == 0
    })
    .await;
    for n in 51..=55 {
        publish(n).await;
    }
    let mut again = w.client("acme", "77", &[]).await;
    ws::send_json(&mut again, json!({"action": "sync"})).await;
    for n in 1..=55 {
        assert_eq!(next_json(&mut again).await["data"]["n"], n, "every message, in order, the 10 read ones again");
    }
    let synced = next_json(&mut again).await;
    assert_eq!((synced["type"].as_str(), synced["count"].as_u64()), (Some("synced"), Some(55)), "{synced}");
    let acked = request(&mut again, json!({"action": "sync", "ack": synced["cursor"]})).await;
    assert_eq!(acked, json!({"type": "synced", "count": 0, "acked": 55}));
}

/// Issue 13, point 2: a client could send `chat.message` with `data.from`
/// naming someone else and nothing told the recipient. Now every event a
/// token holder publishes carries a server-set `sender` from the token.
#[tokio::test]
async fn client_published_events_carry_their_verified_sender() {
    let w = world().await;
    let mut bob = w.client("acme", "bob", &["chat.*"]).await;
    let mut mallory = w.client("acme", "mallory", &[]).await;
    let forged = json!({"action": "publish", "type": "chat.message", "target": {"user": "bob"},
        "data": {"from": "alice", "text": "send me the code"}, "sender": {"user_id": "alice", "role": "admin"}});
    let refused = request(&mut mallory, forged.clone()).await;
    assert_eq!(refused["code"], "invalid_message", "{refused}");
    assert!(silent(&mut bob, QUIET).await);
    let mut honest = forged;
    honest.as_object_mut().unwrap().remove("sender");
    assert_eq!(request(&mut mallory, honest).await["type"], "published");
    let event = next_json(&mut bob).await;
    assert_eq!(event["sender"], json!({"user_id": "mallory", "role": "agent"}), "{event}");
    assert_eq!(event["data"]["from"], "alice", "data is the publisher's; sender is the server's");
    // The HTTP API too; and a forged sender there is an unknown field.
    let svc = token("acme", "crm", Role::Service);
    let (status, _) = w
        .publish(&svc, json!({"type": "chat.message", "target": {"user": "bob"}, "sender": {"user_id": "alice"}}))
        .await;
    assert_eq!(status, 400);
    w.publish(&svc, json!({"type": "chat.message", "target": {"user": "bob"}, "data": {}})).await;
    assert_eq!(next_json(&mut bob).await["sender"], json!({"user_id": "crm", "role": "service"}));
    // The server's own events have none.
    let _carol = w.client("acme", "carol", &[]).await;
    let mut watcher = w.client("acme", "sup", &["presence.*"]).await;
    drop(_carol);
    let offline = next_json(&mut watcher).await;
    assert_eq!(offline["type"], "presence.offline");
    assert!(offline.get("sender").is_none(), "{offline}");
}

/// Issue 13, point 1: `/v1/stats` showed every role of every tenant the
/// platform's `total_connections`. Now only a platform operator (an admin
/// of `PLATFORM_TENANT`) sees platform-wide figures.
#[tokio::test]
async fn platform_wide_stats_are_for_the_operator_only() {
    let w = world_with(|c| c.platform_tenant = Some(tenant("ops"))).await;
    let _a = w.client("acme", "1", &[]).await;
    let _b = w.client("acme", "2", &[]).await;
    let _c = w.client("globex", "1", &[]).await;
    for (t, role) in [("globex", Role::Agent), ("acme", Role::Admin), ("ops", Role::Service), ("ops", Role::Agent)] {
        let (status, stats) = w.get(&token(t, "x", role), "/v1/stats").await;
        assert_eq!(status, 200);
        assert!(stats.get("total_connections").is_none() && stats.get("tenants").is_none(), "{t} {role:?}: {stats}");
    }
    let (_, stats) = w.get(&token("globex", "x", Role::Agent), "/v1/stats").await;
    assert_eq!(stats["tenant_connections"], 1);
    let (_, stats) = w.get(&token("ops", "x", Role::Admin), "/v1/stats").await;
    assert_eq!(
        stats,
        json!({"tenant_id": "ops", "tenant_connections": 0, "total_connections": 3, "tenants": 2}),
        "the operator"
    );
}

/// Issue 12, point 1: before, any agent could make a 7-day queue for any
/// user id it made up (`ghost-<n>`), as many as it liked. Now only users
/// the tenant has seen connect get a queue, and a tenant's queues are
/// bounded (here: one), refused whole with 429 / `offline_budget_exceeded`.
#[tokio::test]
async fn offline_queues_are_only_for_users_seen_and_within_the_tenants_budget() {
    let w = world_with(|c| c.limits.offline_max_queues = 1).await;
    let agent = token("acme", "1", Role::Agent);
    let acme = tenant("acme");
    for n in 0..20 {
        let ghost = format!("ghost-{n}");
        let (status, body) =
            w.publish(&agent, json!({"type": "chat.message", "target": {"user": ghost}, "data": {"text": "x"}})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["report"]["queued_offline"].as_u64(), body["report"]["offline_refused"].as_str()),
            (Some(0), Some("unknown_user")),
            "{body}"
        );
        let user = ghost.parse().unwrap();
        assert!(w.ctx.store.offline_peek(&acme, &user, 10).await.unwrap().is_empty(), "no queue for {ghost}");
    }
    for user in ["a", "b"] {
        w.was_here("acme", user).await;
    }
    w.was_here("globex", "b").await;
    let to = |user: &str| json!({"type": "chat.message", "target": {"user": user}, "data": {"text": "hi"}});
    let (status, body) = w.publish(&agent, to("a")).await;
    assert_eq!((status, body["report"]["queued_offline"].as_u64()), (StatusCode::OK, Some(1)), "{body}");
    let mut socket = w.client("acme", "1", &[]).await;
    let head = || async {
        let q = HistoryQuery { since: None, audience: Audience::Everyone, max_events: 1, max_bytes: 1 };
        let h = w.ctx.store.history(&acme, &q, &["*".parse().unwrap()], None).await.unwrap().unwrap();
        (h.top, h.top_id)
    };
    let before = head().await;
    let (status, body) = w.publish(&agent, to("b")).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (429, Some("offline_budget_exceeded")), "{body}");
    let refused =
        request(&mut socket, json!({"action": "publish", "type": "chat.message", "target": {"user": "b"}})).await;
    assert_eq!(refused["code"], "offline_budget_exceeded", "{refused}");
    assert!(w.ctx.store.offline_peek(&acme, &"b".parse().unwrap(), 10).await.unwrap().is_empty());
    // "Nothing was published": not in the history either (no recovery or GET /v1/events serves it).
    assert_eq!(head().await, before, "a publish refused whole left a trace in the history");
    // Another tenant's budget is its own.
    let (status, body) = w.publish(&token("globex", "1", Role::Agent), to("b")).await;
    assert_eq!((status, body["report"]["queued_offline"].as_u64()), (StatusCode::OK, Some(1)), "{body}");
}

/// Issue 12, point 7: an emulator killed with `kill -9` (or an API Gateway
/// `$disconnect` that never came) leaves connection records no gateway
/// has. One without subscriptions is never posted to, so it never earned
/// its 410: its user stayed online and nothing was queued for them,
/// forever. Now the sweep probes connections idle past
/// `CONNECTION_IDLE_SECS` and forgets the gone ones, with `presence.offline`.
#[tokio::test]
async fn ghost_connections_are_swept_and_their_user_is_queued_offline_again() {
    let settings = Settings { sweep_interval: Duration::from_millis(100), ..Settings::ephemeral() };
    let w = world_on(settings, |c| c.limits.connection_idle = Duration::from_millis(300)).await;
    let svc = token("acme", "svc", Role::Service);
    // What the killed emulator left in Redis: a connection of user 77 that
    // this gateway (on the same endpoint, restarted) does not have.
    let ghost = Connection {
        id: "ghost77=".parse().unwrap(),
        tenant_id: tenant("acme"),
        user_id: "77".parse().unwrap(),
        role: Role::Agent,
        endpoint: w.emu.connections_endpoint(),
        connected_at: switchboard::time::now_millis(),
    };
    w.ctx.store.register(&ghost).await.unwrap();
    let (_, online) = w.get(&svc, "/v1/users/77/online").await;
    assert_eq!(online["is_online"], true, "the ghost makes 77 look online: {online}");
    // A live client that only listens (never pings): probed, found alive, kept.
    let mut watcher = w.client("acme", "sup", &["presence.*"]).await;
    let offline = next_json(&mut watcher).await;
    assert_eq!(
        (offline["type"].as_str(), offline["data"]["user_id"].as_str()),
        (Some("presence.offline"), Some("77")),
        "{offline}"
    );
    let (_, online) = w.get(&svc, "/v1/users/77/online").await;
    assert_eq!((online["is_online"].as_bool(), online["connection_count"].as_u64()), (Some(false), Some(0)));
    let (_, body) =
        w.publish(&svc, json!({"type": "ticket.assigned", "target": {"user": "77"}, "data": {"n": 1}})).await;
    assert_eq!(body["report"]["queued_offline"], 1, "77 is offline again: the event waits for their sync: {body}");
    // The listener outlived several sweeps past its idle bound and still hears events.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, body) = w.publish(&svc, json!({"type": "presence.online", "data": {"user_id": "x"}})).await;
    assert_eq!(body["report"]["delivered"], 1, "{body}");
    assert_eq!(next_json(&mut watcher).await["type"], "presence.online");
}

#[tokio::test]
async fn a_connection_gone_without_disconnect_is_removed_on_its_410() {
    let w = world().await;
    let mut watcher = w.client("acme", "boss", &["presence.*", "system.*"]).await;
    // API Gateway's $disconnect is best effort: here is a connection the
    // store still lists but no gateway holds any more.
    let ghost = Connection {
        id: "GhostConnection0=".parse().unwrap(),
        tenant_id: tenant("acme"),
        user_id: "ghost".parse().unwrap(),
        role: Role::Agent,
        endpoint: w.emu.connections_endpoint(),
        connected_at: 1,
    };
    w.ctx.store.register(&ghost).await.unwrap();
    w.ctx.store.subscribe(&ghost.tenant_id, &ghost.id, &["*".parse().unwrap()]).await.unwrap();
    assert!(w.ctx.store.presence(&ghost.tenant_id, &ghost.user_id).await.unwrap().online);

    let (_, body) = w
        .publish(&token("acme", "svc", Role::Service), json!({"type": "system.alert", "data": {"level": "high"}}))
        .await;
    assert_eq!(
        body["report"],
        json!({"matched": 2, "delivered": 1, "gone": 1, "failed": 0, "queued_offline": 0, "webhooks_enqueued": 0, "webhooks_failed": 0, "chunks": 0, "throttled": 0, "requeued": 0})
    );
    assert_eq!(next_json(&mut watcher).await["type"], "system.alert");
    let offline = next_json(&mut watcher).await;
    assert_eq!(
        (offline["type"].as_str(), offline["data"]["user_id"].as_str()),
        (Some("presence.offline"), Some("ghost"))
    );
    assert_eq!(w.ctx.store.connection(&ghost.tenant_id, &ghost.id).await.unwrap(), None, "forgotten");
    assert!(!w.ctx.store.presence(&ghost.tenant_id, &ghost.user_id).await.unwrap().online);
    let (_, body) = w.publish(&token("acme", "svc", Role::Service), json!({"type": "system.alert"})).await;
    assert_eq!(body["report"]["matched"], 1, "the ghost is not tried again");
}

#[tokio::test]
async fn presence_events_announce_first_and_last_connections() {
    let w = world().await;
    let mut watcher = w.client("acme", "boss", &["presence.*"]).await;
    let mut first = w.client("acme", "5", &[]).await;
    let online = next_json(&mut watcher).await;
    assert_eq!((online["type"].as_str(), online["data"]["user_id"].as_str()), (Some("presence.online"), Some("5")));
    let second = w.client("acme", "5", &[]).await;
    assert!(silent(&mut watcher, QUIET).await, "a second connection is not news");
    drop(second);
    assert!(silent(&mut watcher, QUIET).await, "user 5 is still online");
    first.close(None).await.unwrap();
    let offline = next_json(&mut watcher).await;
    assert_eq!((offline["type"].as_str(), offline["data"]["user_id"].as_str()), (Some("presence.offline"), Some("5")));
}

#[tokio::test]
async fn the_seed_channels_carry_events_for_existing_listeners() {
    let w = world_with(|c| c.compat_channels = true).await;
    let prefix = w.ctx.config.key_prefix.clone();
    let client = redis::Client::open(shared_redis().url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(format!("{prefix}:events")).await.unwrap();
    pubsub.subscribe(format!("{prefix}:calls:acme")).await.unwrap();
    pubsub.subscribe(format!("{prefix}:agents:acme")).await.unwrap();
    let (status, body) =
        w.publish(&token("acme", "svc", Role::Service), json!({"type": "call.answered", "data": {"agent": "7"}})).await;
    assert_eq!(status, 200);
    let mut messages = pubsub.on_message();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(ws::WAIT, messages.next()).await.expect("a PUBLISH").unwrap();
        let payload: Value = serde_json::from_str(&m.get_payload::<String>().unwrap()).unwrap();
        assert_eq!(payload["id"], body["event_id"]);
        seen.push(m.get_channel_name().to_owned());
    }
    seen.sort();
    assert_eq!(
        seen,
        [format!("{prefix}:calls:acme"), format!("{prefix}:events")],
        "main channel + the calls channel, not agents"
    );
}

#[tokio::test]
async fn the_fanout_function_publishes_a_batch() {
    let w = world().await;
    let mut agent = w.client("acme", "42", &["queue.*", "agent.*", "call.*", "chat.*"]).await;
    let response = fanout::handle(
        &w.ctx,
        json!({"events": [
            {"tenant_id": "acme", "type": "queue.stats", "data": {"waiting": 3}},
            {"tenant_id": "acme", "type": "agent.state.changed", "target": {"user": "42"}, "data": {"state": "busy"}},
            {"tenant_id": "globex", "type": "queue.stats"}
        ]}),
    )
    .await
    .unwrap();
    assert_eq!(response.results.len(), 3);
    assert_eq!(response.total.delivered, 2);
    // One frame carries both of the connection's events.
    let batch = next_json(&mut agent).await;
    assert_eq!(batch["type"], "batch", "{batch}");
    assert_eq!(batch["events"][0]["type"], "queue.stats");
    assert_eq!(batch["events"][1]["data"]["state"], "busy");
    // Typed helpers, as the seed's broadcaster offered them.
    switchboard::broadcast::broadcast_agent_state(&w.ctx, &tenant("acme"), json!({"state": "available"}))
        .await
        .unwrap();
    assert_eq!(next_json(&mut agent).await["data"]["state"], "available");
    // The other two, and the call helper's type at the edge rather than an assert inside.
    let call = switchboard::broadcast::CallEvent::try_from(switchboard::event::EventType::CallAnswered).unwrap();
    switchboard::broadcast::broadcast_call_event(&w.ctx, &tenant("acme"), call, json!({"call": "c1"})).await.unwrap();
    assert_eq!(next_json(&mut agent).await["type"], "call.answered");
    let refused = switchboard::broadcast::CallEvent::try_from(switchboard::event::EventType::ChatMessage).unwrap_err();
    assert_eq!(refused, "chat.message is not a call.* event");
    let to = switchboard::event::Target::User("42".parse().unwrap());
    switchboard::broadcast::broadcast_chat_message(&w.ctx, &tenant("acme"), &to, json!({"text": "hi"})).await.unwrap();
    assert_eq!(next_json(&mut agent).await["data"]["text"], "hi");
    // Malformed requests are refused whole, naming what is wrong; nothing is sent.
    for (payload, expected) in [
        (json!({"events": []}), "empty"),
        (json!({"tenant_id": "a:b", "type": "queue.stats"}), "invalid tenant id"),
        (json!({"tenant_id": "acme", "type": "queue.nope"}), "unknown event type 'queue.nope'"),
        (
            json!({"events": [{"tenant_id": "acme", "type": "queue.stats"}, {"tenant_id": "acme"}]}),
            "event 1: missing field `type`",
        ),
        (json!({"tenant_id": "acme", "type": "queue.stats", "extra": 1}), "unknown field `extra`"),
        // Issue 29, point 5: a bounded list.
        (
            json!({"events": vec![json!({"tenant_id": "acme", "type": "queue.stats"}); fanout::MAX_EVENTS + 1]}),
            "holds 101 events; one invocation takes at most 100",
        ),
    ] {
        let err = fanout::handle(&w.ctx, payload).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{err:?} should mention {expected:?}");
    }
    assert!(silent(&mut agent, QUIET).await);
}

#[tokio::test]
async fn the_api_answers_each_bad_input_with_its_status_and_code() {
    let w = world().await;
    let url = format!("{}/v1/events", w.emu.http_url());
    let svc = token("acme", "svc", Role::Service);
    let cases: Vec<(Value, StatusCode, &str, Option<&str>)> = vec![
        (json!({}), StatusCode::BAD_REQUEST, "invalid_field", Some("type")),
        (json!({"type": 7}), StatusCode::BAD_REQUEST, "invalid_field", Some("type")),
        (json!({"type": "call.nope"}), StatusCode::BAD_REQUEST, "invalid_field", Some("type")),
        (
            json!({"type": "call.incoming", "target": {"group": "x"}}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("target"),
        ),
        (
            json!({"type": "call.incoming", "target": {"user": "a b"}}),
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("target"),
        ),
        (json!({"type": "call.incoming", "colour": "red"}), StatusCode::BAD_REQUEST, "invalid_field", Some("body")),
        (json!([1, 2]), StatusCode::BAD_REQUEST, "invalid_json", None),
    ];
    for (body, status, code, field) in cases {
        let (got, reply) = w.publish(&svc, body.clone()).await;
        assert_eq!((got, reply["code"].as_str()), (status, Some(code)), "{body}: {reply}");
        assert_eq!(reply["field"].as_str(), field, "{body}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let unknown = w.publish(&svc, json!({"type": "call.nope"})).await.1;
    assert!(unknown["message"].as_str().unwrap().contains("call.nope"), "{unknown}");

    let raw = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (s, b) = raw(w.http.post(&url).bearer_auth(&svc).body("{not json")).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_json")));
    let (s, b) = raw(w.http.post(&url).json(&json!({"type": "call.incoming"}))).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (s, b) = raw(w.http.post(&url).bearer_auth("a.b.c").json(&json!({"type": "call.incoming"}))).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (s, b) =
        w.publish(&token("acme", "7", Role::Agent), json!({"type": "call.incoming", "target": {"user": "1"}})).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
    let big = json!({"type": "chat.message", "target": {"user": "1"}, "data": "x".repeat(70 * 1024)});
    let (s, b) = w.publish(&svc, big).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    let (s, b) = raw(w.http.get(format!("{}/v1/nowhere", w.emu.http_url())).bearer_auth(&svc)).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (s, b) = raw(w.http.delete(&url).bearer_auth(&svc)).await;
    assert_eq!((s, b["code"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));
    let (s, b) = w.get(&svc, "/v1/users/not%20valid/online").await;
    assert_eq!((s, b["field"].as_str()), (StatusCode::BAD_REQUEST, Some("id")));
}

#[tokio::test]
async fn the_rate_limit_is_per_tenant_and_answers_429() {
    let w = world_with(|c| c.limits.rate_limit_per_sec = 3).await;
    let acme = token("acme", "svc", Role::Service);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(w.get(&acme, "/v1/stats").await.0);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let r = w.http.get(format!("{}/v1/stats", w.emu.http_url())).bearer_auth(&acme).send().await.unwrap();
    if r.status() == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(r.headers().get("retry-after").unwrap(), "1");
        assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
    }
    // Another tenant has its own budget.
    assert_eq!(w.get(&token("globex", "svc", Role::Service), "/v1/stats").await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let w = world().await;
    let doc: Value =
        w.http.get(format!("{}/v1/openapi.json", w.emu.http_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in api::ROUTES {
        assert!(paths.get(*path).and_then(|p| p.get(*method)).is_some(), "{method} {path} is not in the document");
    }
    let described: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(described, api::ROUTES.len(), "the document describes routes that do not exist");
    let types = doc["components"]["schemas"]["PublishRequest"]["properties"]["type"]["enum"].as_array().unwrap();
    assert_eq!(types.len(), switchboard::event::EventType::ALL.len());
    // Every documented route is served: whatever it answers (a 404 for an
    // unknown webhook, a 400 for an empty body), it is not the router's
    // "no route" nor a 405.
    let admin = token("acme", "boss", Role::Admin);
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let url = format!("{}{}", w.emu.http_url(), path.replace("{id}", "wh_x").replace("{delivery_id}", "d_x"));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = w.http.request(method.clone(), &url).bearer_auth(&admin).send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {body}");
            let unrouted = body["message"].as_str().is_some_and(|m| m.starts_with("no route for"));
            assert!(!unrouted, "{method} {path} is documented but not served: {body}");
        }
    }
}

#[tokio::test]
async fn a_broadcast_reaches_1000_connections_exactly_once() {
    const N: usize = 1000;
    let w = world().await;
    let clients: Vec<Ws> = futures::stream::iter(0..N)
        .map(|i| {
            let w = &w;
            async move { w.client("acme", &format!("u{i}"), &["call.*"]).await }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    eventually("all connections recorded", || async {
        w.ctx.store.connection_count(&tenant("acme")).await.unwrap() == N
    })
    .await;

    let started = Instant::now();
    let (status, body) =
        w.publish(&token("acme", "svc", Role::Service), json!({"type": "call.incoming", "data": {"n": 1}})).await;
    let answered = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body["report"]["delivered"], N);
    let received: Vec<(Ws, Value)> = futures::stream::iter(clients)
        .map(|mut ws| async move {
            let event = next_json(&mut ws).await;
            (ws, event)
        })
        .buffer_unordered(N)
        .collect()
        .await;
    let all_received = started.elapsed();
    for (_, event) in &received {
        assert_eq!(event["id"], body["event_id"]);
    }
    // Exactly once: nobody gets a second copy.
    let extra: Vec<bool> = futures::stream::iter(received)
        .map(|(mut ws, _)| async move { !silent(&mut ws, QUIET).await })
        .buffer_unordered(N)
        .collect()
        .await;
    assert_eq!(extra.iter().filter(|e| **e).count(), 0);
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    eprintln!(
        "broadcast to {N} connections ({build} build, Redis store): API answered after {answered:?}, last client had it after {all_received:?}"
    );
}
