//! Never miss an event: a client cut off (closed by the gateway, or its TCP
//! connection dropped) reconnects, subscribes with `since`, and receives
//! exactly what it missed, in order, then `recovered`; all or nothing when
//! it cannot; a rotation between two overlapping connections loses nothing.
//! Real WebSocket clients against the emulator, state in a real `redis-server`.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::Context;
use switchboard::broadcast;
use switchboard::config::{Config, RedisConfig};
use switchboard::event::{Envelope, EventType, Target, Topic};
use switchboard::ids::Role;
use switchboard::store::{Audience, HistoryQuery};
use switchboard_local::{Emulator, GatewayLimits, Mode, Settings};
use switchboard_test_support::{RedisCluster, RedisServer, shared_redis};
use switchboard_tests::auth::token;
use switchboard_tests::id::{tenant, user};
use switchboard_tests::ws::{Ws, connect, next_json, request, send_json, silent};
use switchboard_tests::{eventually, unique_prefix};

struct World {
    emu: Emulator,
    ctx: Context,
}

async fn world_on(redis_url: String, settings: Settings, tweak: impl FnOnce(&mut Config)) -> World {
    world_over(RedisConfig::single(redis_url), settings, tweak).await
}

async fn world_over(redis: RedisConfig, settings: Settings, tweak: impl FnOnce(&mut Config)) -> World {
    let mut config = Config { redis: Some(redis), key_prefix: unique_prefix(), ..Config::default() };
    tweak(&mut config);
    let ctx = Context::from_config(config);
    let mode = Mode::InProcess { ctx: ctx.clone(), verifier: switchboard_tests::auth::verifier() };
    World { emu: Emulator::start(settings, mode).await.unwrap(), ctx }
}

async fn world_with(tweak: impl FnOnce(&mut Config)) -> World {
    world_on(shared_redis().url(), Settings::ephemeral(), tweak).await
}

impl World {
    async fn connect(&self, tenant: &str, user: &str) -> Ws {
        let url = format!("{}?token={}", self.emu.ws_url(), token(tenant, user, Role::Agent));
        connect(&url, &[]).await.expect("handshake").0
    }

    async fn client(&self, tenant: &str, user: &str, topics: &[&str]) -> Ws {
        let mut ws = self.connect(tenant, user).await;
        if !topics.is_empty() {
            let reply = request(&mut ws, json!({"action": "subscribe", "events": topics})).await;
            assert_eq!(reply["type"], "subscribed", "{reply}");
        }
        ws
    }

    /// Publishes a new event; returns its id.
    async fn publish(&self, tenant_id: &str, event_type: EventType, target: Target) -> String {
        let event = Envelope::new(tenant(tenant_id), event_type, json!({"n": 1}));
        broadcast::publish(&self.ctx, &event, &target).await.unwrap();
        event.id
    }

    /// Where the tenant's history stands: its top offset and the id there.
    async fn head(&self, tenant_id: &str) -> (u64, Option<String>) {
        let q = HistoryQuery { since: None, audience: Audience::Everyone, max_events: 1, max_bytes: 1 };
        let all = [Topic::ALL.parse().unwrap()];
        let h = self.ctx.store.history(&tenant(tenant_id), &q, &all, None).await.unwrap().unwrap();
        (h.top, h.top_id)
    }

    async fn until_offline(&self, tenant_id: &str, user_id: &str) {
        let (t, u) = (tenant(tenant_id), user(user_id));
        eventually("$disconnect ran", || async { self.ctx.store.presence(&t, &u).await.unwrap().connections == 0 })
            .await;
    }
}

/// The position of an event a client received: epoch, offset and id.
fn position(event: &Value) -> Value {
    json!({"epoch": event["epoch"], "offset": event["offset"], "id": event["id"]})
}

/// Sends a subscribe with `since`; returns the events replayed before the
/// `recovered` reply, and that reply. `subscribed` must come first.
async fn resubscribe(ws: &mut Ws, topics: &[&str], since: Value) -> (Vec<Value>, Value) {
    send_json(ws, json!({"action": "subscribe", "events": topics, "since": since, "id": "r"})).await;
    let first = next_json(ws).await;
    assert_eq!((first["type"].as_str(), first["id"].as_str()), (Some("subscribed"), Some("r")), "{first}");
    let mut replayed = Vec::new();
    loop {
        let m = next_json(ws).await;
        if m["type"] == "recovered" {
            assert_eq!(m["id"], "r");
            return (replayed, m);
        }
        replayed.push(m);
    }
}

#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The gateway closes it (`DELETE @connections/{id}`).
    ByTheGateway,
    /// The TCP connection just goes away.
    TcpDrop,
}

async fn a_client_cut_off_recovers_exactly_what_it_missed(cut: Cut) {
    let w = world_with(|_| {}).await;
    let topics = ["call.*", "chat.*"];
    let mut me = w.client("acme", "42", &topics).await;
    let _colleague = w.client("acme", "7", &[]).await;
    let _namesake = w.client("globex", "42", &["*"]).await;
    w.publish("acme", EventType::CallIncoming, Target::Tenant).await;
    let seen = next_json(&mut me).await;
    assert!(seen["offset"].as_u64().unwrap() > 0 && seen["epoch"].is_string(), "{seen}");

    match cut {
        Cut::ByTheGateway => {
            let target = Target::User(user("42"));
            let mine = w.ctx.store.resolve(&tenant("acme"), EventType::ChatMessage, &target).await.unwrap();
            let id = mine.recipients[0].connection_id.clone();
            let url = format!("{}/@connections/{id}", w.emu.connections_endpoint());
            assert_eq!(reqwest::Client::new().delete(url).send().await.unwrap().status(), 204);
        }
        Cut::TcpDrop => drop(me),
    }
    w.until_offline("acme", "42").await;

    // 200 events while it is away: to the tenant, to its user, to another
    // user, of a type it did not subscribe to, and to another tenant.
    let mut expected = Vec::new();
    for i in 0..200 {
        match i % 5 {
            0 => expected.push(w.publish("acme", EventType::CallIncoming, Target::Tenant).await),
            1 => expected.push(w.publish("acme", EventType::ChatMessage, Target::User(user("42"))).await),
            2 => drop(w.publish("acme", EventType::ChatMessage, Target::User(user("7"))).await),
            3 => drop(w.publish("acme", EventType::AgentLogin, Target::Tenant).await),
            _ => drop(w.publish("globex", EventType::CallIncoming, Target::Tenant).await),
        }
    }

    let mut back = w.connect("acme", "42").await;
    let (replayed, recovered) = resubscribe(&mut back, &topics, position(&seen)).await;
    let ids: Vec<&str> = replayed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected, "exactly what it would have received, in order ({cut:?})");
    let offsets: Vec<u64> = replayed.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "in offset order: {offsets:?}");
    assert!(offsets[0] > seen["offset"].as_u64().unwrap());
    assert!(replayed.iter().all(|e| e["tenant_id"] == "acme" && e["epoch"] == seen["epoch"]));
    let top = recovered["offset"].as_u64().unwrap();
    assert_eq!(
        recovered,
        json!({"type": "recovered", "id": "r", "recovered": true, "count": 80, "epoch": seen["epoch"], "offset": top,
            "event_id": w.head("acme").await.1})
    );
    assert!(top >= *offsets.last().unwrap());

    // Live again, from the next offset on.
    let next = w.publish("acme", EventType::CallEnded, Target::Tenant).await;
    let live = next_json(&mut back).await;
    assert_eq!((live["id"].as_str(), live["offset"].as_u64()), (Some(next.as_str()), Some(top + 1)));

    // The offline queue kept the user's 40 chat messages too: the same
    // events, same ids and offsets, so a client merges both by id.
    let by_id: BTreeMap<&str, &Value> = replayed.iter().map(|e| (e["id"].as_str().unwrap(), e)).collect();
    send_json(&mut back, json!({"action": "sync"})).await;
    let mut queued = 0;
    loop {
        let m = next_json(&mut back).await;
        if m["type"] == "synced" {
            break;
        }
        let twin = by_id.get(m["id"].as_str().unwrap()).expect("a queued event was replayed too");
        assert_eq!(&&m, twin, "the same event on both paths");
        queued += 1;
    }
    assert_eq!(queued, 40);
}

#[tokio::test]
async fn a_client_closed_by_the_gateway_recovers_exactly_what_it_missed() {
    a_client_cut_off_recovers_exactly_what_it_missed(Cut::ByTheGateway).await;
}

#[tokio::test]
async fn a_client_whose_tcp_connection_dropped_recovers_exactly_what_it_missed() {
    a_client_cut_off_recovers_exactly_what_it_missed(Cut::TcpDrop).await;
}

/// A client that saw one event, left, missed 20 call events and came back
/// (not yet subscribed): its world, its new socket, the event it saw, and
/// the top offset (its own `presence.online`; the last call event is just
/// before it).
async fn came_back_after_20(tweak: impl FnOnce(&mut Config)) -> (World, Ws, Value, (u64, Option<String>)) {
    let w = world_with(tweak).await;
    let mut me = w.client("acme", "42", &["call.*"]).await;
    w.publish("acme", EventType::CallIncoming, Target::Tenant).await;
    let seen = next_json(&mut me).await;
    drop(me);
    w.until_offline("acme", "42").await;
    for _ in 0..20 {
        w.publish("acme", EventType::CallIncoming, Target::Tenant).await;
    }
    let back = w.connect("acme", "42").await;
    let top = w.head("acme").await;
    (w, back, seen, top)
}

fn gap(epoch: &Value, (top, event_id): &(u64, Option<String>)) -> Value {
    json!({"type": "recovered", "id": "r", "recovered": false, "count": 0, "epoch": epoch, "offset": top, "event_id": event_id})
}

#[tokio::test]
async fn a_position_the_history_no_longer_holds_recovers_nothing() {
    let (_w, mut back, seen, head) = came_back_after_20(|c| c.limits.history_size = 10).await;
    let top = head.0;
    // Older than the history (10 kept, 20 missed): nothing replayed, not the 9 it still has.
    let (replayed, answer) = resubscribe(&mut back, &["call.*"], position(&seen)).await;
    assert_eq!((replayed.len(), &answer), (0, &gap(&seen["epoch"], &head)));
    // Another epoch: its offsets mean nothing here.
    let (replayed, answer) = resubscribe(&mut back, &["call.*"], json!({"epoch": "0123abcd", "offset": top})).await;
    assert_eq!((replayed.len(), &answer), (0, &gap(&seen["epoch"], &head)));
    // An offset from the future is not a position this history gave.
    let (_, answer) = resubscribe(&mut back, &["call.*"], json!({"epoch": seen["epoch"], "offset": top + 5})).await;
    assert_eq!(answer, gap(&seen["epoch"], &head));
    // Nothing that was not asked for came meanwhile.
    assert!(silent(&mut back, Duration::from_millis(200)).await);
    // Within the history: exactly the missed ones (5 call events, and a presence.online it did not subscribe to).
    let (replayed, answer) =
        resubscribe(&mut back, &["call.*"], json!({"epoch": seen["epoch"], "offset": top - 6})).await;
    let offsets: Vec<u64> = replayed.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, ((top - 5)..top).collect::<Vec<_>>());
    assert_eq!((&answer["recovered"], &answer["count"]), (&json!(true), &json!(5)));
    // A malformed `since` is the client's mistake: an error, the connection stays.
    let reply = request(&mut back, json!({"action": "subscribe", "events": ["*"], "since": {"offset": 1}})).await;
    assert_eq!(reply["code"], "invalid_message", "{reply}");
    assert_eq!(request(&mut back, json!({"action": "ping"})).await["type"], "pong");
}

#[tokio::test]
async fn missing_more_than_one_recovery_replays_recovers_nothing() {
    let (_w, mut back, seen, head) = came_back_after_20(|c| c.limits.recovery_max_events = 5).await;
    let top = head.0;
    // 6 call events missed, RECOVERY_MAX_EVENTS is 5.
    let (replayed, answer) =
        resubscribe(&mut back, &["call.*"], json!({"epoch": seen["epoch"], "offset": top - 7})).await;
    assert_eq!((replayed.len(), &answer), (0, &gap(&seen["epoch"], &head)));
    let (replayed, answer) =
        resubscribe(&mut back, &["call.*"], json!({"epoch": seen["epoch"], "offset": top - 6})).await;
    assert_eq!((replayed.len(), &answer["recovered"]), (5, &json!(true)));
}

#[tokio::test]
async fn a_flushed_redis_starts_a_new_epoch_and_old_positions_recover_nothing() {
    let redis = RedisServer::start().unwrap();
    let w = world_on(redis.url(), Settings::ephemeral(), |_| {}).await;
    let mut me = w.client("acme", "42", &["call.*"]).await;
    w.publish("acme", EventType::CallIncoming, Target::Tenant).await;
    let before = next_json(&mut me).await;
    switchboard_test_support::redis_cmd(redis.port, &["FLUSHALL"]).unwrap();
    drop(me);
    let mut back = w.connect("acme", "42").await;
    let (replayed, answer) = resubscribe(&mut back, &["call.*"], position(&before)).await;
    assert_eq!((replayed.len(), &answer["recovered"]), (0, &json!(false)), "{answer}");
    assert_ne!(answer["epoch"], before["epoch"], "the history was lost: a new epoch");
    w.publish("acme", EventType::CallIncoming, Target::Tenant).await;
    let after = next_json(&mut back).await;
    assert_eq!(after["epoch"], answer["epoch"]);
}

#[tokio::test]
async fn rotating_to_a_new_connection_before_the_old_one_closes_loses_nothing() {
    let limits = GatewayLimits {
        max_duration: Duration::from_secs(4),
        reconnect_notice: Duration::from_secs(3),
        ..GatewayLimits::default()
    };
    let w = world_on(shared_redis().url(), Settings { limits, ..Settings::ephemeral() }, |_| {}).await;
    let mut old = w.client("acme", "42", &["call.*"]).await;
    let publisher = {
        let ctx = w.ctx.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..300 {
                let event = Envelope::new(tenant("acme"), EventType::CallIncoming, json!({}));
                broadcast::publish(&ctx, &event, &Target::Tenant).await.unwrap();
                ids.push(event.id);
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            ids
        })
    };
    // offset -> id, from whichever connection it came on.
    let mut received: BTreeMap<u64, String> = BTreeMap::new();
    // Read the old connection until the gateway says to rotate (2 s before its end: at most half of 4 s).
    let mut last = None;
    loop {
        let m = next_json(&mut old).await;
        if m["type"] == "reconnect" {
            assert_eq!(m, json!({"type": "reconnect", "reason": "max_duration", "within_secs": 2}));
            break;
        }
        note(&m, &mut received);
        last = Some(position(&m));
    }
    let since = last.expect("events arrived before the notice");
    let mut new = w.connect("acme", "42").await;
    let (replayed, answer) = resubscribe(&mut new, &["call.*"], since).await;
    assert_eq!(answer["recovered"], true, "{answer}");
    for e in &replayed {
        note(e, &mut received);
    }
    drop(old);
    let ids = publisher.await.unwrap();
    let all: HashSet<&String> = ids.iter().collect();
    while received.values().filter(|id| all.contains(id)).count() < ids.len() {
        let m = next_json(&mut new).await;
        // The new connection lives 4 s as well: on a loaded machine its own
        // notice may come before the last event.
        if m["type"] != "reconnect" {
            note(&m, &mut received);
        }
    }
    let got: Vec<&String> = received.values().collect();
    assert_eq!(got, ids.iter().collect::<Vec<_>>(), "every event once by offset, in publish order");
}

/// Keeps an event by its offset: a duplicate (the same event on both
/// connections, or live and replayed) must be the same event.
fn note(e: &Value, received: &mut BTreeMap<u64, String>) {
    let (offset, id) = (e["offset"].as_u64().unwrap(), e["id"].as_str().unwrap().to_owned());
    let twin = received.insert(offset, id.clone());
    assert!(twin.is_none_or(|t| t == id), "one offset, one event");
}

impl World {
    /// `GET /v1/events` as `role` of `tenant_id`, with this query.
    async fn events(&self, tenant_id: &str, user_id: &str, role: Role, query: &str) -> (u16, Value) {
        let url = format!("{}/v1/events{query}", self.emu.http_url());
        let r = reqwest::Client::new().get(url).bearer_auth(token(tenant_id, user_id, role)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

fn ids_of(page: &Value) -> Vec<String> {
    page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn back_end_services_catch_up_over_http_with_the_same_answer() {
    let w = world_with(|_| {}).await;
    let _agent = w.client("acme", "42", &[]).await;
    let (status, start) = w.events("acme", "svc", Role::Service, "").await;
    assert_eq!(status, 200, "{start}");
    assert_eq!((&start["recovered"], &start["events"], &start["next"]), (&json!(true), &json!([]), &Value::Null));
    let since = format!("?since={}:{}", start["epoch"].as_str().unwrap(), start["offset"]);

    let mut tenant_wide = Vec::new();
    let mut for_42 = Vec::new();
    let mut for_7 = Vec::new();
    for _ in 0..3 {
        tenant_wide.push(w.publish("acme", EventType::CallIncoming, Target::Tenant).await);
        for_42.push(w.publish("acme", EventType::ChatMessage, Target::User(user("42"))).await);
        for_7.push(w.publish("acme", EventType::ChatMessage, Target::User(user("7"))).await);
        w.publish("globex", EventType::CallIncoming, Target::Tenant).await;
    }
    let (_, all) = w.events("acme", "svc", Role::Service, &since).await;
    assert_eq!(all["recovered"], true);
    assert_eq!(ids_of(&all).len(), 9, "a service sees every event of its tenant, none of another's");
    assert!(all["events"].as_array().unwrap().iter().all(|e| e["tenant_id"] == "acme" && e["epoch"] == start["epoch"]));
    let (_, mine) = w.events("acme", "42", Role::Agent, &since).await;
    let mut expected: Vec<String> = Vec::new();
    for i in 0..3 {
        expected.push(tenant_wide[i].clone());
        expected.push(for_42[i].clone());
    }
    assert_eq!(ids_of(&mine), expected, "an agent: the tenant's and its own, in order; not user 7's");
    let (_, chats) = w.events("acme", "svc", Role::Service, &format!("{since}&events=chat.*")).await;
    assert_eq!(ids_of(&chats).len(), 6);

    // Paging: `next` until null gives the same events.
    let mut paged = Vec::new();
    let mut query = format!("{since}&limit=4");
    loop {
        let (status, page) = w.events("acme", "svc", Role::Service, &query).await;
        assert_eq!((status, &page["recovered"]), (200, &json!(true)), "{page}");
        assert!(page["events"].as_array().unwrap().len() <= 4);
        paged.extend(ids_of(&page));
        match page["next"].as_str() {
            Some(next) => query = format!("?since={next}&limit=4"),
            None => break,
        }
    }
    assert_eq!(paged, ids_of(&all));

    // All or nothing, and bad input is the caller's mistake.
    let (_, other) = w.events("acme", "svc", Role::Service, &format!("?since=0ther:{}", start["offset"])).await;
    assert_eq!((&other["recovered"], &other["events"], &other["epoch"]), (&json!(false), &json!([]), &start["epoch"]));
    for (query, field) in [
        ("?since=nocolon", "since"),
        ("?since=ab:-1", "since"),
        ("?since=a%22b:1", "since"),
        ("?events=call.nope", "events"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?sinse=ab:1", "query"),
    ] {
        let (status, body) = w.events("acme", "svc", Role::Service, query).await;
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (400, Some("invalid_field"), Some(field)),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn http_catch_up_is_all_or_nothing_when_the_history_moved_on() {
    let w = world_with(|c| c.limits.history_size = 5).await;
    let (_, start) = w.events("acme", "svc", Role::Service, "").await;
    for _ in 0..8 {
        w.publish("acme", EventType::CallIncoming, Target::Tenant).await;
    }
    let since = format!("?since={}:{}", start["epoch"].as_str().unwrap(), start["offset"]);
    let (status, page) = w.events("acme", "svc", Role::Service, &since).await;
    assert_eq!(status, 200);
    let event_id = w.head("acme").await.1;
    assert_eq!(
        page,
        json!({"recovered": false, "epoch": start["epoch"], "offset": 8, "event_id": event_id, "events": [], "next": null})
    );
}

/// How Redis loses the newest part of a tenant's history.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Restarted from an RDB snapshot taken a few events earlier (or a
    /// backup restored by restarting from it).
    Snapshot,
    /// Restarted from an append-only file that lost its tail (`appendfsync
    /// everysec` loses up to a second of writes in a crash).
    AofTail,
}

/// The `.incr.aof` files of a server's append-only directory.
fn incr_aof_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let aof = dir.join("appendonlydir");
    let mut files: Vec<_> =
        std::fs::read_dir(&aof).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.to_string_lossy().ends_with(".incr.aof"));
    files
}

/// Publishes `n` call events to the tenant; returns their ids in order.
async fn calls(w: &World, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(w.publish("acme", EventType::CallIncoming, Target::Tenant).await);
    }
    ids
}

/// Two clients see three call events; the early one leaves (its last
/// event returned), the late one (returned) keeps listening. Also returns
/// the ids published so far.
async fn early_gone_late_listening(w: &World) -> (Value, Ws, Vec<String>) {
    let mut early = w.client("acme", "42", &["call.*"]).await;
    let mut late = w.client("acme", "7", &["call.*"]).await;
    let published = calls(w, 3).await;
    let mut seen_early = Value::Null;
    for _ in 0..3 {
        seen_early = next_json(&mut early).await;
        next_json(&mut late).await;
    }
    drop(early);
    w.until_offline("acme", "42").await;
    (seen_early, late, published)
}

/// The promise whatever Redis lost: a recovery from the position of an
/// event the client saw answers every call event published after it, or
/// `recovered:false` with nothing replayed. Never `recovered:true` with a gap.
async fn recover_all_or_nothing(w: &World, since: Value, published: &[String]) -> Value {
    let at = published.iter().position(|id| *id == since["id"]).expect("the position of a published event");
    let expected = &published[at + 1..];
    let mut back = w.connect("acme", "9").await;
    let (replayed, answer) = resubscribe(&mut back, &["call.*"], since.clone()).await;
    let ids: Vec<&str> = replayed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    match answer["recovered"].as_bool() {
        Some(false) => assert!(replayed.is_empty(), "recovered:false replays nothing"),
        _ => assert_eq!(ids, expected, "recovered:true from {since} must replay every event after it: {answer}"),
    }
    answer
}

/// A client at `early` left before Redis's last checkpoint, one at `late`
/// after it; Redis loses what came after the checkpoint and the tenant
/// goes on publishing (the offsets after the checkpoint are handed out
/// again, to other events). Neither may recover with a gap, with or
/// without the id in its position.
async fn a_redis_that_lost_data_never_recovers_with_a_gap(loss: Loss) {
    let args: &[&str] = match loss {
        Loss::Snapshot => &[],
        Loss::AofTail => &["--appendonly", "yes", "--appendfsync", "always"],
    };
    let mut redis = RedisServer::start_with_args(args).unwrap();
    let w = world_on(redis.url(), Settings::ephemeral(), |_| {}).await;
    let (seen_early, mut late, mut published) = early_gone_late_listening(&w).await;
    // The checkpoint: what survives.
    let aof_sizes: Vec<(std::path::PathBuf, u64)> = match loss {
        Loss::Snapshot => {
            switchboard_test_support::redis_cmd(redis.port, &["SAVE"]).unwrap();
            vec![]
        }
        Loss::AofTail => {
            let files = incr_aof_files(redis.dir());
            assert!(!files.is_empty(), "an AOF in {:?}", redis.dir());
            files.into_iter().map(|f| (f.clone(), std::fs::metadata(&f).unwrap().len())).collect()
        }
    };
    published.extend(calls(&w, 4).await);
    let mut seen_late = Value::Null;
    for _ in 0..4 {
        seen_late = next_json(&mut late).await;
    }
    // The loss.
    match loss {
        Loss::Snapshot => redis.crash_and_restart().unwrap(),
        Loss::AofTail => {
            // Killed first, then every incremental file cut back to the checkpoint.
            redis.kill();
            for (file, len) in &aof_sizes {
                std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(*len).unwrap();
            }
            redis.start_again().unwrap();
        }
    }
    eventually("the store reconnects", || async { w.ctx.store.ping().await.is_ok() }).await;
    published.extend(calls(&w, 6).await);

    for (who, seen) in [("early", &seen_early), ("late", &seen_late)] {
        let answer = recover_all_or_nothing(&w, position(seen), &published).await;
        assert_eq!(answer["recovered"], false, "{who}: events were lost ({loss:?}): {answer}");
        let old_client = json!({"epoch": seen["epoch"], "offset": seen["offset"], "id": seen["id"]});
        let without_id = json!({"epoch": seen["epoch"], "offset": seen["offset"]});
        recover_all_or_nothing(&w, old_client, &published).await;
        let mut back = w.connect("acme", "9").await;
        let (replayed, answer) = resubscribe(&mut back, &["call.*"], without_id).await;
        assert_eq!((replayed.len(), &answer["recovered"]), (0, &json!(false)), "{who} without id: {answer}");
    }
    // From the new epoch on, recovery works again.
    let mut me = w.client("acme", "42", &["call.*"]).await;
    published.extend(calls(&w, 1).await);
    let now = next_json(&mut me).await;
    assert_ne!(now["epoch"], seen_late["epoch"], "a new epoch after the loss");
    published.extend(calls(&w, 2).await);
    let answer = recover_all_or_nothing(&w, position(&now), &published).await;
    assert_eq!((&answer["recovered"], &answer["count"]), (&json!(true), &json!(2)), "{answer}");
}

#[tokio::test]
async fn a_redis_restarted_from_an_older_snapshot_never_recovers_with_a_gap() {
    a_redis_that_lost_data_never_recovers_with_a_gap(Loss::Snapshot).await;
}

#[tokio::test]
async fn a_redis_restarted_from_an_aof_that_lost_its_tail_never_recovers_with_a_gap() {
    a_redis_that_lost_data_never_recovers_with_a_gap(Loss::AofTail).await;
}

/// Bytes Redis has sent to its clients so far.
fn redis_output_bytes(port: u16) -> u64 {
    switchboard_test_support::redis_output_bytes(port).unwrap()
}

/// An agent fills its tenant's history with 100 chat messages of 16 KB to
/// itself. A colleague's recovery (nothing there is for them) and one with
/// topics that match nothing take (near) nothing out of Redis; the agent's
/// own recovery takes at most `RECOVERY_MAX_BYTES`, and answers false.
#[tokio::test]
async fn a_recovery_takes_out_of_redis_what_it_returns() {
    let redis = RedisServer::start().unwrap();
    let w = world_on(redis.url(), Settings::ephemeral(), |c| c.limits.recovery_max_bytes = 256 * 1024).await;
    let mut colleague = w.client("acme", "7", &["*"]).await;
    w.publish("acme", EventType::CallIncoming, Target::Tenant).await;
    let seen = next_json(&mut colleague).await;
    drop(colleague);
    w.until_offline("acme", "7").await;
    let big = json!({"text": "x".repeat(16_000)});
    for _ in 0..100 {
        let event = Envelope::new(tenant("acme"), EventType::ChatMessage, big.clone());
        broadcast::publish(&w.ctx, &event, &Target::User(user("42"))).await.unwrap();
    }
    let last = w.publish("acme", EventType::CallIncoming, Target::Tenant).await;

    let cases: [(&str, &[&str], u64); 3] = [
        ("a colleague, calls and chats", &["call.*", "chat.*"], 1),
        ("a colleague, chat only", &["chat.*"], 0),
        ("a colleague, queue only", &["queue.*"], 0),
    ];
    for (who, topics, count) in cases {
        let mut back = w.connect("acme", "7").await;
        let before = redis_output_bytes(redis.port);
        let (replayed, answer) = resubscribe(&mut back, topics, position(&seen)).await;
        let read = redis_output_bytes(redis.port) - before;
        assert_eq!((&answer["recovered"], &answer["count"]), (&json!(true), &json!(count)), "{who}: {answer}");
        if count == 1 {
            assert_eq!(replayed[0]["id"], last.as_str());
        }
        assert!(read < 8 * 1024, "{who}: Redis sent {read} bytes for a recovery of {count} small events");
    }
    // The agent itself: 1.6 MB missed, 256 KiB at most per recovery.
    let mut me = w.connect("acme", "42").await;
    let before = redis_output_bytes(redis.port);
    let (replayed, answer) = resubscribe(&mut me, &["chat.*"], position(&seen)).await;
    let read = redis_output_bytes(redis.port) - before;
    assert_eq!((replayed.len(), &answer["recovered"]), (0, &json!(false)), "{answer}");
    assert!(read <= 256 * 1024 + 8 * 1024, "Redis sent {read} bytes, over RECOVERY_MAX_BYTES");
    assert!(read >= 200 * 1024, "it read up to the cap ({read} bytes)");
}

/// The tenant's keys in a Redis Cluster: the node holding its slot is
/// restarted from a snapshot taken a few events earlier (the same epoch
/// and offset trick as on one server, where the cluster client must find
/// the node again).
#[tokio::test]
async fn a_cluster_node_restarted_from_an_older_snapshot_never_recovers_with_a_gap() {
    let mut cluster = RedisCluster::start().unwrap();
    let w = world_over(RedisConfig::cluster(cluster.urls()), Settings::ephemeral(), |_| {}).await;
    let node = cluster.master_of("acme", 0).unwrap();
    let (seen_early, mut late, mut published) = early_gone_late_listening(&w).await;
    switchboard_test_support::redis_cmd(cluster.nodes[node].port, &["SAVE"]).unwrap();
    published.extend(calls(&w, 4).await);
    let mut seen_late = Value::Null;
    for _ in 0..4 {
        seen_late = next_json(&mut late).await;
    }
    cluster.nodes[node].crash_and_restart().unwrap();
    let port = cluster.nodes[node].port;
    eventually("the node rejoins", || async {
        switchboard_test_support::redis_cmd(port, &["CLUSTER", "INFO"]).is_ok_and(|o| o.contains("cluster_state:ok"))
    })
    .await;
    eventually("the store reconnects", || async { w.ctx.store.ping().await.is_ok() }).await;
    published.extend(publish_through(&w, 6).await);
    for (who, seen) in [("early", &seen_early), ("late", &seen_late)] {
        let answer = recover_all_or_nothing(&w, position(seen), &published).await;
        assert_eq!(answer["recovered"], false, "{who}: events were lost: {answer}");
    }
}

/// Publishes `n` call events, retrying each until the store takes it (a
/// cluster that is failing over refuses some); returns their ids.
async fn publish_through(w: &World, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ids.len() < n {
        assert!(std::time::Instant::now() < deadline, "the store took {} of {n} publishes in 60 s", ids.len());
        let event = Envelope::new(tenant("acme"), EventType::CallIncoming, json!({"n": 1}));
        match tokio::time::timeout(Duration::from_secs(5), broadcast::publish(&w.ctx, &event, &Target::Tenant)).await {
            Ok(Ok(_)) => ids.push(event.id),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    ids
}

/// Three masters with a replica each; the tenant's master is killed with
/// `kill -9` while events are published, and its replica (which may not
/// have had the last of them) is promoted. A client that saw events
/// before the kill, and one that saw some during it, recover all or nothing.
#[tokio::test]
async fn a_failover_to_a_replica_never_recovers_with_a_gap() {
    let mut cluster = RedisCluster::start_with(1, 1000).unwrap();
    let w = world_over(RedisConfig::cluster(cluster.urls()), Settings::ephemeral(), |_| {}).await;
    let master = cluster.master_of("acme", 0).unwrap();
    let (seen_early, mut late, mut published) = early_gone_late_listening(&w).await;
    // A burst, and the master dies in the middle of it.
    let publisher = {
        let ctx = w.ctx.clone();
        tokio::spawn(async move {
            let mut ok = Vec::new();
            for _ in 0..200 {
                let event = Envelope::new(tenant("acme"), EventType::CallIncoming, json!({}));
                let sent =
                    tokio::time::timeout(Duration::from_secs(2), broadcast::publish(&ctx, &event, &Target::Tenant));
                if let Ok(Ok(_)) = sent.await {
                    ok.push(event.id);
                }
            }
            ok
        })
    };
    let mut seen_late = next_json(&mut late).await;
    cluster.nodes[master].kill();
    let other = (master + 1) % cluster.nodes.len();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cluster.master_of("acme", other).is_ok_and(|m| m != master) {
        let nodes = switchboard_test_support::redis_cmd(cluster.nodes[other].port, &["CLUSTER", "NODES"]);
        assert!(std::time::Instant::now() < deadline, "no replica was promoted: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    published.extend(publisher.await.unwrap());
    published.extend(publish_through(&w, 3).await);
    // What the late client saw last (it keeps receiving while it can).
    while let Ok(Some(m)) =
        tokio::time::timeout(Duration::from_millis(300), async { Some(next_json(&mut late).await) }).await
    {
        if published.contains(&m["id"].as_str().unwrap_or_default().to_owned()) {
            seen_late = m;
        }
    }
    for (who, seen) in [("early", &seen_early), ("late", &seen_late)] {
        let answer = recover_all_or_nothing(&w, position(seen), &published).await;
        assert_eq!(answer["recovered"], false, "{who}: another process holds the history now: {answer}");
    }
}

/// A page of `GET /v1/events` stops at `RECOVERY_MAX_BYTES` of events (a
/// page of 1,000 events of 16 KB was a 16 MB response, past Lambda's 6 MB
/// limit); `next` goes on, and the pages together are every event.
#[tokio::test]
async fn http_pages_are_bounded_by_bytes() {
    let w = world_with(|c| {
        c.limits.history_max_event_bytes = 4096;
        c.limits.recovery_max_bytes = 8192;
    })
    .await;
    let (_, start) = w.events("acme", "svc", Role::Service, "").await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let event = Envelope::new(tenant("acme"), EventType::CallIncoming, json!({"notes": "x".repeat(2000)}));
        broadcast::publish(&w.ctx, &event, &Target::Tenant).await.unwrap();
        ids.push(event.id);
    }
    let mut query = format!("?since={}:{}&limit=1000", start["epoch"].as_str().unwrap(), start["offset"]);
    let mut paged = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page) = w.events("acme", "svc", Role::Service, &query).await;
        assert_eq!((status, &page["recovered"]), (200, &json!(true)), "{page}");
        let bytes: usize = page["events"].as_array().unwrap().iter().map(|e| e.to_string().len()).sum();
        assert!(bytes <= 8192 + 1024, "a page of {bytes} bytes");
        paged.extend(ids_of(&page));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(next.split(':').count(), 3, "next names its event: {next}");
                query = format!("?since={next}&limit=1000");
            }
            None => break,
        }
    }
    assert_eq!(paged, ids, "every event once, in order");
    assert!(pages >= 3, "{pages} pages of at most 8 KiB for 20 KB of events");
}
