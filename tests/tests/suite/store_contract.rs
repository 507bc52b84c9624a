//! The `Store` contract: one suite, three real backends.
//!
//! Every case below runs against `MemoryStore`, `RedisStore` on a real
//! `redis-server`, and `RedisStore` on a real 3-node Redis Cluster (both
//! started by the harness on free ports). A behaviour that differs between
//! backends is a bug in one of them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use switchboard::config::Limits;
use switchboard::event::{EventType, Position, Since, Target, Topic};
use switchboard::ids::Role;
use switchboard::protocol::OfflineRefusal;
use switchboard::store::{
    Audience, Connection, HistoryQuery, HistoryRead, Presence, ReadStatus, Record, Resolution, Store, StoreError,
};
use switchboard::webhook::WebhookConfig;
use switchboard_tests::Backend;
use switchboard_tests::id::{cid, tenant, user};

fn topics(names: &[&str]) -> Vec<Topic> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

fn conn(t: &str, u: &str, c: &str) -> Connection {
    Connection {
        id: cid(c),
        tenant_id: tenant(t),
        user_id: user(u),
        role: Role::Agent,
        endpoint: format!("https://gw.example/{t}"),
        connected_at: 1_700_000_000_000,
    }
}

async fn recipients(store: &Arc<dyn Store>, t: &str, event: EventType, target: Target) -> BTreeSet<String> {
    store
        .resolve(&tenant(t), event, &target)
        .await
        .unwrap()
        .recipients
        .into_iter()
        .map(|r| r.connection_id.to_string())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Short TTLs so expiry is observable within a test.
fn short_ttls() -> Limits {
    Limits { presence_ttl: Duration::from_millis(300), offline_ttl: Duration::from_millis(300), ..Limits::default() }
}

async fn register_and_look_up(b: Backend) {
    let s = b.store(Limits::default());
    let c = conn("t1", "42", "c1=");
    let r = s.register(&c).await.unwrap();
    assert!(r.came_online);
    assert_eq!(r.user_connections, 1);
    assert_eq!(s.connection(&tenant("t1"), &cid("c1=")).await.unwrap(), Some(c.clone()));
    assert_eq!(s.connection_count(&tenant("t1")).await.unwrap(), 1);
    assert_eq!(s.total_connections().await.unwrap(), 1);
    assert_eq!(s.presence(&tenant("t1"), &user("42")).await.unwrap(), Presence { online: true, connections: 1 });
    assert_eq!(s.online_users(&tenant("t1")).await.unwrap(), vec![user("42")]);
    s.ping().await.unwrap();

    // Registering the same connection again is harmless.
    let again = s.register(&c).await.unwrap();
    assert!(!again.came_online);
    assert_eq!(again.user_connections, 1);
    assert_eq!(s.connection_count(&tenant("t1")).await.unwrap(), 1);
}

async fn tenants_never_see_each_other(b: Backend) {
    let s = b.store(Limits::default());
    // Same user id in both tenants: still two different people.
    s.register(&conn("acme", "42", "a1")).await.unwrap();
    s.register(&conn("globex", "42", "g1")).await.unwrap();
    s.register(&conn("globex", "7", "g2")).await.unwrap();
    s.subscribe(&tenant("acme"), &cid("a1"), &topics(&["*"])).await.unwrap();
    s.subscribe(&tenant("globex"), &cid("g1"), &topics(&["*"])).await.unwrap();

    assert_eq!(s.connection_count(&tenant("acme")).await.unwrap(), 1);
    assert_eq!(s.connection_count(&tenant("globex")).await.unwrap(), 2);
    assert_eq!(s.total_connections().await.unwrap(), 3);

    // Nothing of acme is visible or changeable through globex.
    assert_eq!(s.connection(&tenant("globex"), &cid("a1")).await.unwrap(), None);
    assert_eq!(recipients(&s, "globex", EventType::CallIncoming, Target::Tenant).await, set(&["g1"]));
    assert_eq!(recipients(&s, "acme", EventType::CallIncoming, Target::Tenant).await, set(&["a1"]));
    assert_eq!(recipients(&s, "globex", EventType::CallIncoming, Target::Connection(cid("a1"))).await, set(&[]));
    assert_eq!(recipients(&s, "acme", EventType::CallIncoming, Target::User(user("7"))).await, set(&[]));
    assert_eq!(
        s.subscribe(&tenant("globex"), &cid("a1"), &topics(&["call.*"])).await,
        Err(StoreError::UnknownConnection)
    );
    assert_eq!(s.unsubscribe(&tenant("globex"), &cid("a1"), &topics(&["*"])).await, Err(StoreError::UnknownConnection));
    assert_eq!(s.unregister(&tenant("globex"), &cid("a1")).await.unwrap(), None);
    assert_eq!(s.connection_count(&tenant("acme")).await.unwrap(), 1, "acme's connection survived");
    assert!(!s.heartbeat(&tenant("nobody"), &user("42"), &cid("a1")).await.unwrap());
    assert_eq!(s.online_users(&tenant("acme")).await.unwrap(), vec![user("42")]);
    assert_eq!(s.online_users(&tenant("globex")).await.unwrap(), vec![user("42"), user("7")]);

    // Unregistering globex's user 42 leaves acme's user 42 online.
    assert!(s.unregister(&tenant("globex"), &cid("g1")).await.unwrap().unwrap().went_offline);
    assert!(s.presence(&tenant("acme"), &user("42")).await.unwrap().online);

    // Offline queues are per tenant too, and so is having been seen.
    s.register(&conn("acme", "9", "a9")).await.unwrap();
    assert_eq!(s.offline_push(&tenant("acme"), &user("9"), "for acme").await.unwrap(), Ok(1));
    assert_eq!(
        s.offline_push(&tenant("globex"), &user("9"), "for globex").await.unwrap(),
        Err(OfflineRefusal::UnknownUser),
        "globex never saw a user 9"
    );
    assert!(s.offline_peek(&tenant("globex"), &user("9"), 10).await.unwrap().is_empty());
    assert_eq!(s.offline_ack(&tenant("globex"), &user("9"), &["for acme".into()]).await.unwrap(), 0);
    assert_eq!(s.offline_peek(&tenant("acme"), &user("9"), 10).await.unwrap(), vec!["for acme"]);
}

async fn presence_with_several_connections(b: Backend) {
    let s = b.store(Limits::default());
    let (t, u) = (tenant("t1"), user("42"));
    assert!(s.register(&conn("t1", "42", "phone")).await.unwrap().came_online);
    let second = s.register(&conn("t1", "42", "laptop")).await.unwrap();
    assert!(!second.came_online, "already online");
    assert_eq!(second.user_connections, 2);
    assert_eq!(s.presence(&t, &u).await.unwrap(), Presence { online: true, connections: 2 });

    let gone = s.unregister(&t, &cid("phone")).await.unwrap().unwrap();
    assert_eq!(gone.user_id, u);
    assert!(!gone.went_offline, "the laptop is still connected");
    assert_eq!(s.presence(&t, &u).await.unwrap(), Presence { online: true, connections: 1 });

    let last = s.unregister(&t, &cid("laptop")).await.unwrap().unwrap();
    assert!(last.went_offline);
    assert_eq!(s.presence(&t, &u).await.unwrap(), Presence { online: false, connections: 0 });
    assert!(s.online_users(&t).await.unwrap().is_empty());
    assert_eq!(s.connection_count(&t).await.unwrap(), 0);
}

async fn heartbeat_expiry(b: Backend) {
    let s = b.store(short_ttls());
    let (t, u) = (tenant("t1"), user("42"));
    s.register(&conn("t1", "42", "c1")).await.unwrap();
    assert!(s.presence(&t, &u).await.unwrap().online);

    // No ping and no $disconnect: the heartbeat lapses, the user is offline,
    // though the connection record is still there.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(s.presence(&t, &u).await.unwrap(), Presence { online: false, connections: 1 });
    assert!(s.online_users(&t).await.unwrap().is_empty());

    // A ping brings them back; a new connection after expiry announces them.
    assert!(s.heartbeat(&t, &u, &cid("c1")).await.unwrap());
    assert!(s.presence(&t, &u).await.unwrap().online);
    assert_eq!(s.online_users(&t).await.unwrap(), vec![u.clone()]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(s.register(&conn("t1", "42", "c2")).await.unwrap().came_online);

    // A heartbeat for a user without connections changes nothing.
    assert!(!s.heartbeat(&t, &user("ghost"), &cid("c1")).await.unwrap());
    assert!(!s.presence(&t, &user("ghost")).await.unwrap().online);
}

async fn subscription_filtering(b: Backend) {
    let s = b.store(Limits { max_subscriptions: 3, ..Limits::default() });
    let t = tenant("t1");
    for (u, c) in [("1", "exact"), ("2", "family"), ("3", "all"), ("4", "chat"), ("5", "none"), ("1", "exact2")] {
        s.register(&conn("t1", u, c)).await.unwrap();
    }
    assert_eq!(s.subscribe(&t, &cid("exact"), &topics(&["call.incoming"])).await.unwrap(), topics(&["call.incoming"]));
    s.subscribe(&t, &cid("family"), &topics(&["call.*"])).await.unwrap();
    s.subscribe(&t, &cid("all"), &topics(&["*"])).await.unwrap();
    let chat = s.subscribe(&t, &cid("chat"), &topics(&["chat.typing", "chat.message"])).await.unwrap();
    assert_eq!(chat, topics(&["chat.message", "chat.typing"]), "sorted, full list");

    let all = s.resolve(&t, EventType::CallIncoming, &Target::Tenant).await.unwrap();
    assert_eq!(all.target_connections, 6);
    let ids: BTreeSet<String> = all.recipients.iter().map(|r| r.connection_id.to_string()).collect();
    assert_eq!(ids, set(&["exact", "family", "all"]));
    let exact = all.recipients.iter().find(|r| r.connection_id.as_str() == "exact").unwrap();
    assert_eq!(exact.user_id, user("1"));
    assert_eq!(exact.endpoint, "https://gw.example/t1");

    assert_eq!(recipients(&s, "t1", EventType::CallEnded, Target::Tenant).await, set(&["family", "all"]));
    assert_eq!(recipients(&s, "t1", EventType::ChatMessage, Target::Tenant).await, set(&["all", "chat"]));
    assert_eq!(recipients(&s, "t1", EventType::TicketCreated, Target::Tenant).await, set(&["all"]));

    // User targets: only that user's subscribed connections.
    let u1 = s.resolve(&t, EventType::CallIncoming, &Target::User(user("1"))).await.unwrap();
    assert_eq!(u1.target_connections, 2, "user 1 has two connections");
    assert_eq!(u1.recipients.len(), 1, "only one of them subscribed");
    let u5 = s.resolve(&t, EventType::CallIncoming, &Target::User(user("5"))).await.unwrap();
    assert_eq!((u5.target_connections, u5.recipients.len()), (1, 0), "online but not subscribed");
    let nobody = s.resolve(&t, EventType::CallIncoming, &Target::User(user("99"))).await.unwrap();
    assert_eq!((nobody.target_connections, nobody.recipients.len()), (0, 0), "offline user");

    // Connection targets.
    assert_eq!(
        recipients(&s, "t1", EventType::CallIncoming, Target::Connection(cid("family"))).await,
        set(&["family"])
    );
    assert_eq!(recipients(&s, "t1", EventType::CallIncoming, Target::Connection(cid("chat"))).await, set(&[]));

    // Unsubscribe stops delivery; the remaining list comes back.
    assert_eq!(s.unsubscribe(&t, &cid("chat"), &topics(&["chat.message"])).await.unwrap(), topics(&["chat.typing"]));
    assert_eq!(recipients(&s, "t1", EventType::ChatMessage, Target::Tenant).await, set(&["all"]));

    // The limit: 3 topics; a subscribe that would exceed it changes nothing.
    s.subscribe(&t, &cid("none"), &topics(&["agent.login", "agent.logout"])).await.unwrap();
    assert_eq!(
        s.subscribe(&t, &cid("none"), &topics(&["queue.*", "ticket.*"])).await,
        Err(StoreError::TooManySubscriptions { limit: 3 })
    );
    assert_eq!(recipients(&s, "t1", EventType::QueueJoined, Target::Tenant).await, set(&["all"]));
    // Re-subscribing to topics already held does not count against it.
    assert_eq!(s.subscribe(&t, &cid("none"), &topics(&["agent.login", "queue.*"])).await.unwrap().len(), 3);
}

async fn unregister_forgets_subscriptions(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    s.register(&conn("t1", "1", "c1")).await.unwrap();
    s.subscribe(&t, &cid("c1"), &topics(&["call.*", "chat.message"])).await.unwrap();
    s.unregister(&t, &cid("c1")).await.unwrap();
    assert_eq!(recipients(&s, "t1", EventType::CallIncoming, Target::Tenant).await, set(&[]));
    // The same id registered again starts with no subscriptions.
    s.register(&conn("t1", "1", "c1")).await.unwrap();
    assert_eq!(recipients(&s, "t1", EventType::CallIncoming, Target::Tenant).await, set(&[]));
    assert_eq!(s.subscribe(&t, &cid("c1"), &topics(&["ticket.*"])).await.unwrap(), topics(&["ticket.*"]));
}

async fn unregister_is_idempotent(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    s.register(&conn("t1", "1", "c1")).await.unwrap();
    s.register(&conn("t1", "2", "c2")).await.unwrap();
    assert!(s.unregister(&t, &cid("c1")).await.unwrap().is_some());
    assert_eq!(s.unregister(&t, &cid("c1")).await.unwrap(), None, "second time: nothing to do");
    assert_eq!(s.unregister(&t, &cid("never")).await.unwrap(), None);
    assert_eq!(s.connection_count(&t).await.unwrap(), 1);
    assert!(s.presence(&t, &user("2")).await.unwrap().online, "others untouched");
}

async fn unknown_ids(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("empty");
    assert_eq!(s.connection(&t, &cid("x")).await.unwrap(), None);
    assert_eq!(s.subscribe(&t, &cid("x"), &topics(&["*"])).await, Err(StoreError::UnknownConnection));
    assert_eq!(s.unsubscribe(&t, &cid("x"), &topics(&["*"])).await, Err(StoreError::UnknownConnection));
    assert!(!s.heartbeat(&t, &user("x"), &cid("x")).await.unwrap());
    assert_eq!(s.presence(&t, &user("x")).await.unwrap(), Presence { online: false, connections: 0 });
    assert!(s.online_users(&t).await.unwrap().is_empty());
    assert_eq!(s.connection_count(&t).await.unwrap(), 0);
    assert_eq!(s.total_connections().await.unwrap(), 0);
    let r = s.resolve(&t, EventType::CallIncoming, &Target::Connection(cid("x"))).await.unwrap();
    assert_eq!((r.target_connections, r.recipients.len()), (0, 0));
    assert!(s.offline_peek(&t, &user("x"), 10).await.unwrap().is_empty());
    assert_eq!(s.offline_ack(&t, &user("x"), &["m".into()]).await.unwrap(), 0);
}

async fn offline_queue_order_and_cap(b: Backend) {
    let s = b.store(Limits { offline_max_messages: 3, ..Limits::default() });
    let (t, u) = (tenant("t1"), user("42"));
    s.register(&conn("t1", "42", "c1")).await.unwrap();
    for (i, m) in ["m1", "m2", "m3", "m4", "m5"].iter().enumerate() {
        assert_eq!(s.offline_push(&t, &u, m).await.unwrap(), Ok((i + 1).min(3)));
    }
    // The cap dropped the oldest; order is oldest first.
    assert_eq!(s.offline_peek(&t, &u, 10).await.unwrap(), vec!["m3", "m4", "m5"]);
    assert_eq!(s.offline_peek(&t, &u, 2).await.unwrap(), vec!["m3", "m4"]);

    // Peek does not remove; a message arriving mid-sync is kept.
    let batch = s.offline_peek(&t, &u, 2).await.unwrap();
    assert_eq!(s.offline_push(&t, &u, "m6").await.unwrap(), Ok(3));
    assert_eq!(
        s.offline_ack(&t, &u, &batch).await.unwrap(),
        1,
        "m3 was trimmed by the cap meanwhile; only m4 remained to ack"
    );
    assert_eq!(s.offline_peek(&t, &u, 10).await.unwrap(), vec!["m5", "m6"]);

    // Acking something that is not at the head removes nothing.
    assert_eq!(s.offline_ack(&t, &u, &["m6".into()]).await.unwrap(), 0);
    assert_eq!(s.offline_ack(&t, &u, &["m5".into(), "m6".into()]).await.unwrap(), 2);
    assert!(s.offline_peek(&t, &u, 10).await.unwrap().is_empty());
}

async fn offline_queue_expires(b: Backend) {
    let s = b.store(short_ttls());
    let (t, u) = (tenant("t1"), user("42"));
    s.register(&conn("t1", "42", "c1")).await.unwrap();
    assert_eq!(s.offline_push(&t, &u, "old").await.unwrap(), Ok(1));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(s.offline_peek(&t, &u, 10).await.unwrap().is_empty(), "expired with its TTL");
    assert_eq!(
        s.offline_push(&t, &u, "new").await.unwrap(),
        Err(OfflineRefusal::UnknownUser),
        "not seen connecting within the offline TTL"
    );
    s.register(&conn("t1", "42", "c2")).await.unwrap();
    assert_eq!(s.offline_push(&t, &u, "new").await.unwrap(), Ok(1));
    assert_eq!(s.offline_peek(&t, &u, 10).await.unwrap(), vec!["new"]);
}

/// Issue 12, point 7: what a sweep probes — connections whose client sent
/// nothing (`$connect`, subscribe, unsubscribe, ping on that connection)
/// for a while, oldest first, with where to reach them.
async fn idle_connections_are_those_whose_client_fell_silent(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    for (u, c) in [("a", "c1"), ("b", "c2"), ("a", "c3")] {
        s.register(&conn("t1", u, c)).await.unwrap();
    }
    s.register(&conn("t2", "a", "c9")).await.unwrap();
    let ids = |r: Vec<switchboard::store::Idle>| {
        r.into_iter().map(|r| r.recipient.connection_id.to_string()).collect::<Vec<_>>()
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.subscribe(&t, &cid("c2"), &topics(&["call.*"])).await.unwrap();
    assert!(s.heartbeat(&t, &user("a"), &cid("c3")).await.unwrap());
    let idle = s.idle_connections(&t, Duration::from_millis(300), 10).await.unwrap();
    let found: Vec<_> = idle.iter().map(|i| &i.recipient).collect();
    assert_eq!(
        found.iter().map(|r| (r.connection_id.as_str(), r.user_id.as_str(), r.endpoint.as_str())).collect::<Vec<_>>(),
        [("c1", "a", "https://gw.example/t1")]
    );
    assert!(idle[0].idle >= Duration::from_millis(380) && idle[0].idle < Duration::from_secs(60), "{:?}", idle[0].idle);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let oldest_two = ids(s.idle_connections(&t, Duration::from_millis(20), 2).await.unwrap());
    assert_eq!((oldest_two.len(), oldest_two[0].as_str()), (2, "c1"), "oldest first, at most 2: {oldest_two:?}");
    // A probe that found it alive: active again.
    s.touch(&t, &[cid("c1")]).await.unwrap();
    assert!(s.idle_connections(&t, Duration::from_millis(300), 10).await.unwrap().is_empty());
    // Unregistered: gone from the list; another tenant's never in it.
    s.unregister(&t, &cid("c1")).await.unwrap();
    let mut all = ids(s.idle_connections(&t, Duration::from_millis(20), 10).await.unwrap());
    all.sort();
    assert_eq!(all, ["c2", "c3"]);
    let mut tenants: Vec<String> = s.tenants().await.unwrap().into_iter().map(|t| t.to_string()).collect();
    tenants.sort();
    assert_eq!(tenants, ["t1", "t2"]);
}

/// Issue 12, point 1: a queue only for a user the tenant has seen, and a
/// budget of queues and bytes per tenant that the cap, acknowledgements
/// and expiry give back to.
async fn offline_storage_is_bounded_per_tenant(b: Backend) {
    let s =
        b.store(Limits { offline_max_messages: 3, offline_max_queues: 2, offline_max_bytes: 100, ..Limits::default() });
    let t = tenant("t1");
    let push = |u: &'static str, byte: char, n: usize| {
        let s = s.clone();
        async move { s.offline_push(&tenant("t1"), &user(u), &byte.to_string().repeat(n)).await.unwrap() }
    };
    assert_eq!(push("ghost-1", 'g', 10).await, Err(OfflineRefusal::UnknownUser));
    assert!(s.offline_peek(&t, &user("ghost-1"), 10).await.unwrap().is_empty(), "no queue was made");
    for (u, c) in [("a", "ca"), ("b", "cb"), ("c", "cc")] {
        s.register(&conn("t1", u, c)).await.unwrap();
    }
    s.register(&conn("t2", "c", "other")).await.unwrap();

    // Queues: two per tenant.
    assert_eq!(push("a", 'a', 10).await, Ok(1));
    assert_eq!(push("b", 'b', 10).await, Ok(1));
    assert_eq!(push("c", 'c', 10).await, Err(OfflineRefusal::TenantQueuesFull));
    assert_eq!(
        s.offline_push(&tenant("t2"), &user("c"), "other tenant").await.unwrap(),
        Ok(1),
        "another tenant's budget is its own"
    );
    // Bytes: 100 for the tenant's queues together (20 used).
    assert_eq!(push("a", 'A', 70).await, Ok(2), "90 bytes");
    assert_eq!(push("b", 'B', 20).await, Err(OfflineRefusal::TenantBytesFull));
    assert_eq!(push("a", 'x', 101).await, Err(OfflineRefusal::MessageTooLarge));
    assert_eq!(s.offline_peek(&t, &user("b"), 10).await.unwrap(), vec!["b".repeat(10)], "refused: nothing written");

    // An acknowledgement gives its bytes back...
    let a = s.offline_peek(&t, &user("a"), 1).await.unwrap();
    assert_eq!(s.offline_ack(&t, &user("a"), &a).await.unwrap(), 1);
    assert_eq!(push("b", 'B', 20).await, Ok(2), "10 + 70 + 20 = 100 bytes");
    // ...and what the cap drops: b holds 10 + 20; two more of 5 drop the 10.
    assert_eq!(push("b", 'y', 1).await, Err(OfflineRefusal::TenantBytesFull));
    assert_eq!(s.offline_ack(&t, &user("a"), &["A".repeat(70)]).await.unwrap(), 1, "a's queue is empty now");
    assert_eq!(push("b", 'y', 5).await, Ok(3));
    assert_eq!(push("b", 'z', 5).await, Ok(3), "the cap dropped b's first 10 bytes");
    assert_eq!(s.offline_peek(&t, &user("b"), 10).await.unwrap(), vec!["B".repeat(20), "y".repeat(5), "z".repeat(5)]);
    // An emptied queue no longer counts: c gets one now, with 70 bytes free.
    assert_eq!(push("c", 'c', 70).await, Ok(1), "30 + 70 = 100 bytes in two queues");
    assert_eq!(push("a", 'a', 1).await, Err(OfflineRefusal::TenantQueuesFull));
}

async fn expired_offline_queues_leave_the_budget(b: Backend) {
    let s = b.store(Limits { offline_max_queues: 1, offline_max_bytes: 10, ..short_ttls() });
    let t = tenant("t1");
    s.register(&conn("t1", "a", "ca")).await.unwrap();
    assert_eq!(s.offline_push(&t, &user("a"), "0123456789").await.unwrap(), Ok(1));
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.register(&conn("t1", "b", "cb")).await.unwrap();
    assert_eq!(s.offline_push(&t, &user("b"), "0123456789").await.unwrap(), Ok(1), "a's queue expired, and its bytes");
}

async fn stale_connections_are_forgotten_together(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    for (u, c) in [("1", "a"), ("1", "b"), ("2", "c"), ("3", "d")] {
        s.register(&conn("t1", u, c)).await.unwrap();
        s.subscribe(&t, &cid(c), &topics(&["*"])).await.unwrap();
    }
    // "a" and "c" went stale, "zz" never existed, "b" keeps user 1 online.
    let gone = s.unregister_many(&t, &[cid("a"), cid("zz"), cid("c")]).await.unwrap();
    let summary: Vec<(String, bool)> = gone.iter().map(|g| (g.user_id.to_string(), g.went_offline)).collect();
    assert_eq!(summary, [("1".to_string(), false), ("2".to_string(), true)]);
    assert_eq!(recipients(&s, "t1", EventType::CallIncoming, Target::Tenant).await, set(&["b", "d"]));
    assert!(s.presence(&t, &user("1")).await.unwrap().online);
    assert!(!s.presence(&t, &user("2")).await.unwrap().online);
    assert_eq!(s.connection_count(&t).await.unwrap(), 2);
    assert!(s.unregister_many(&t, &[]).await.unwrap().is_empty());
    // Another tenant's ids are not touched from here.
    s.register(&conn("t2", "9", "x")).await.unwrap();
    assert!(s.unregister_many(&t, &[cid("x")]).await.unwrap().is_empty());
    assert_eq!(s.connection_count(&tenant("t2")).await.unwrap(), 1);
}

async fn presence_changes_come_with_their_recipients(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    s.register(&conn("t1", "sup", "watch")).await.unwrap();
    s.subscribe(&t, &cid("watch"), &topics(&["presence.*"])).await.unwrap();
    s.register(&conn("t1", "other", "deaf")).await.unwrap();
    s.subscribe(&t, &cid("deaf"), &topics(&["call.*"])).await.unwrap();
    s.register(&conn("t2", "sup", "elsewhere")).await.unwrap();
    s.subscribe(&tenant("t2"), &cid("elsewhere"), &topics(&["*"])).await.unwrap();
    let hook = switchboard_tests::webhook_config("https://crm.example/hook", "*");
    s.save_webhook(&t, &hook).await.unwrap();
    let ids = |r: &Resolution| r.recipients.iter().map(|r| r.connection_id.to_string()).collect::<BTreeSet<_>>();

    let first = s.register(&conn("t1", "42", "phone")).await.unwrap();
    let online = first.presence.expect("came online: the recipients of presence.online");
    assert_eq!(ids(&online), set(&["watch"]), "the presence subscriber of this tenant only, not the new connection");
    assert_eq!(online.webhooks, vec![hook]);
    assert_eq!(s.register(&conn("t1", "42", "laptop")).await.unwrap().presence, None, "already online");

    assert_eq!(s.unregister(&t, &cid("phone")).await.unwrap().unwrap().presence, None, "still on the laptop");
    let last = s.unregister(&t, &cid("laptop")).await.unwrap().unwrap();
    let offline = last.presence.expect("went offline: the recipients of presence.offline");
    assert_eq!(ids(&offline), set(&["watch"]));
    assert_eq!(offline.webhooks.len(), 1);
}

async fn a_rate_limited_resolve_counts_against_the_budget(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    s.register(&conn("t1", "1", "a")).await.unwrap();
    s.subscribe(&t, &cid("a"), &topics(&["*"])).await.unwrap();
    let ms = switchboard::time::now_millis() % 1000;
    if ms > 700 {
        tokio::time::sleep(Duration::from_millis((1000 - ms) as u64)).await;
    }
    let within = |t: switchboard::ids::TenantId| {
        let s = s.clone();
        async move {
            let record = Record {
                event_type: EventType::CallIncoming,
                text: r#"{"id":"e"}"#,
                id: "e",
                once: false,
                retention: Default::default(),
            };
            s.record_and_resolve(&t, &record, &Target::Tenant, Some(3)).await.unwrap()
        }
    };
    let first = within(t.clone()).await;
    assert_eq!(first.expect("within the limit").recipients.len(), 1);
    assert!(s.rate_limit(&t, 3).await.unwrap(), "the same budget as the other requests: 2 of 3");
    assert!(within(t.clone()).await.is_some());
    assert_eq!(within(t.clone()).await, None, "over");
    assert!(!s.rate_limit(&t, 3).await.unwrap());
    assert_eq!(now(&s, &t).await.top, 3, "presence.online and two publishes: a refused one records nothing");
    assert!(within(tenant("t2")).await.is_some());
}

async fn rate_limits_are_per_tenant(b: Backend) {
    let s = b.store(Limits::default());
    // Align to the start of a second so the burst stays in one window.
    let ms = switchboard::time::now_millis() % 1000;
    if ms > 700 {
        tokio::time::sleep(Duration::from_millis((1000 - ms) as u64)).await;
    }
    let mut allowed = 0;
    for _ in 0..5 {
        allowed += usize::from(s.rate_limit(&tenant("t1"), 3).await.unwrap());
    }
    assert_eq!(allowed, 3, "three in a second, then refused");
    assert!(s.rate_limit(&tenant("t2"), 3).await.unwrap(), "another tenant has its own budget");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(s.rate_limit(&tenant("t1"), 3).await.unwrap(), "a new second, a new budget");
}

/// Webhooks cross the store typed: what was saved comes back whole, and
/// the tenant's publishes carry them.
async fn webhook_configurations_are_typed_at_the_boundary(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("acme");
    let mut hook = switchboard_tests::webhook_config("https://crm.example/hook", "call.*");
    s.save_webhook(&t, &hook).await.unwrap();
    assert_eq!(s.webhook(&t, &hook.id).await.unwrap().as_ref(), Some(&hook));
    assert_eq!(s.webhook(&tenant("globex"), &hook.id).await.unwrap(), None, "another tenant's registry");
    let (config, _) = s.webhook_and_health(&t, &hook.id).await.unwrap();
    assert_eq!(config.as_ref(), Some(&hook));
    hook.is_active = false;
    s.save_webhook(&t, &hook).await.unwrap();
    assert!(!s.webhook(&t, &hook.id).await.unwrap().unwrap().is_active, "saved over");
    let resolved = s.resolve(&t, EventType::CallIncoming, &Target::Tenant).await.unwrap();
    assert_eq!(resolved.webhooks, [hook]);
}

/// Redis keeps webhooks as JSON, which a bug, an older version or a hand
/// in `redis-cli` may leave unparseable: `Corrupt` when asked for by id,
/// skipped (and still counted) in lists and in a publish's resolve.
#[tokio::test]
async fn a_stored_webhook_that_does_not_parse_is_corrupt_alone() {
    let redis = switchboard_test_support::shared_redis();
    let prefix = switchboard_tests::unique_prefix();
    let s = Backend::Redis.store_with_prefix(&prefix, Limits::default());
    let t = tenant("acme");
    let hook = switchboard_tests::webhook_config("https://crm.example/hook", "call.*");
    s.save_webhook(&t, &hook).await.unwrap();
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let key = switchboard::store::Keys::new(&prefix).webhooks(&t);
    redis::cmd("HSET")
        .arg(&key)
        .arg("wh_bad")
        .arg(r#"{"id":"wh_bad","url":7}"#)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let err = s.webhook(&t, "wh_bad").await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("wh_bad") && m.contains("acme")), "{err:?}");
    assert_eq!(s.webhooks(&t).await.unwrap(), std::slice::from_ref(&hook), "the bad one is skipped, the good one kept");
    assert_eq!(s.webhook_count(&t).await.unwrap(), 2, "the cap counts what is stored");
    assert!(matches!(s.webhook_and_health(&t, "wh_bad").await, Err(StoreError::Corrupt(_))));
    let resolved = s.resolve(&t, EventType::CallIncoming, &Target::Tenant).await.unwrap();
    assert_eq!(resolved.webhooks, [hook]);
}

async fn webhook_registries_are_per_tenant(b: Backend) {
    let s = b.store(Limits::default());
    let (a, g) = (tenant("acme"), tenant("globex"));
    let hook = |id: &str, name: &str| WebhookConfig {
        id: id.parse().unwrap(),
        name: name.into(),
        ..switchboard_tests::webhook_config("https://crm.example/hook", "*")
    };
    let (one, two, three) = (hook(WH_1, "v1"), hook(WH_2, "v2"), hook(WH_1, "v3"));
    s.save_webhook(&a, &one).await.unwrap();
    s.save_webhook(&a, &two).await.unwrap();
    s.save_webhook(&a, &three).await.unwrap();
    let mut all = s.webhooks(&a).await.unwrap();
    all.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(all, [two.clone(), three.clone()]);
    assert_eq!(s.webhook_count(&a).await.unwrap(), 2);
    assert_eq!(s.webhook(&a, WH_1).await.unwrap(), Some(three));
    assert_eq!(s.webhook(&g, WH_1).await.unwrap(), None, "another tenant's registry");
    assert!(s.webhooks(&g).await.unwrap().is_empty());
    assert_eq!(s.webhook_count(&g).await.unwrap(), 0);
    assert!(!s.delete_webhook(&g, WH_1).await.unwrap());
    assert!(s.delete_webhook(&a, WH_1).await.unwrap());
    assert!(!s.delete_webhook(&a, WH_1).await.unwrap());
    assert_eq!(s.webhooks(&a).await.unwrap(), [two]);
}

const WH_1: &str = "wh_00000000000000000000000000000001";
const WH_2: &str = "wh_00000000000000000000000000000002";

async fn resolve_carries_the_tenants_webhooks(b: Backend) {
    let s = b.store(Limits::default());
    s.register(&conn("acme", "1", "c1")).await.unwrap();
    let mine = switchboard_tests::webhook_config("https://crm.example/acme", "*");
    s.save_webhook(&tenant("acme"), &mine).await.unwrap();
    s.save_webhook(&tenant("globex"), &switchboard_tests::webhook_config("https://crm.example/globex", "*"))
        .await
        .unwrap();
    for target in [Target::Tenant, Target::User(user("1")), Target::Connection(cid("c1"))] {
        let r = s.resolve(&tenant("acme"), EventType::CallIncoming, &target).await.unwrap();
        assert_eq!(r.webhooks, std::slice::from_ref(&mine), "{target:?}: this tenant's only");
    }
}

async fn the_delivery_log_pages_filters_and_counts_failures(b: Backend) {
    use switchboard::store::{Breaker, LogQuery};
    let s = b.store(Limits::default());
    let (a, g) = (tenant("acme"), tenant("globex"));
    let breaker = Breaker { threshold: 3, cooldown_ms: 60_000 };
    let t0 = 1_800_000_000_000;
    // wh_1: two failures, then a success; wh_2: failures up to the threshold.
    let h =
        s.webhook_attempt(&a, &attempt("wh_1", "msg_a", r#"{"n":1}"#, false, t0), breaker, bounds(100)).await.unwrap();
    assert_eq!((h.consecutive_failures, h.failing_since, h.paused_until), (1, Some(t0), None));
    let h = s
        .webhook_attempt(&a, &attempt("wh_1", "msg_a", r#"{"n":2}"#, false, t0 + 1), breaker, bounds(100))
        .await
        .unwrap();
    assert_eq!((h.consecutive_failures, h.failing_since), (2, Some(t0)), "failing since the first");
    let h = s
        .webhook_attempt(&a, &attempt("wh_1", "msg_a", r#"{"n":3}"#, true, t0 + 2), breaker, bounds(100))
        .await
        .unwrap();
    assert_eq!(h, Default::default(), "a success clears it");
    assert_eq!(s.webhook_health(&a, "wh_1").await.unwrap(), Default::default());
    for i in 0..3 {
        s.webhook_attempt(&a, &attempt("wh_2", "msg_b", r#"{"n":0}"#, false, t0 + 10 + i), breaker, bounds(100))
            .await
            .unwrap();
    }
    let h = s.webhook_health(&a, "wh_2").await.unwrap();
    assert_eq!((h.consecutive_failures, h.paused_until), (3, Some(t0 + 12 + 60_000)), "paused at the threshold");
    assert_eq!(s.webhook_health(&g, "wh_2").await.unwrap(), Default::default(), "per tenant");
    // What a delivery reads first: configuration and health together.
    let two =
        WebhookConfig { id: "wh_2".parse().unwrap(), ..switchboard_tests::webhook_config("https://crm.example", "*") };
    s.save_webhook(&a, &two).await.unwrap();
    let (config, health) = s.webhook_and_health(&a, "wh_2").await.unwrap();
    assert_eq!((config, health.consecutive_failures), (Some(two), 3));
    assert_eq!(s.webhook_and_health(&g, "wh_2").await.unwrap(), (None, Default::default()), "per tenant");
    assert_eq!(s.webhook_and_health(&a, "wh_9").await.unwrap(), (None, Default::default()));

    let q = |limit| LogQuery { webhook_id: "wh_1", limit, ..LogQuery::default() };
    let page = s.webhook_log(&a, &q(2)).await.unwrap();
    let entries: Vec<&str> = page.iter().map(|r| r.entry.as_str()).collect();
    assert_eq!(entries, [r#"{"n":3}"#, r#"{"n":2}"#], "newest first, this webhook only");
    let rest = s.webhook_log(&a, &LogQuery { before: Some(&page[1].id), ..q(10) }).await.unwrap();
    assert_eq!(rest.iter().map(|r| r.entry.as_str()).collect::<Vec<_>>(), [r#"{"n":1}"#]);
    let one = LogQuery { webhook_id: "wh_2", delivery_id: Some("msg_b"), limit: 1, ..LogQuery::default() };
    assert_eq!(s.webhook_log(&a, &one).await.unwrap().len(), 1);
    let none = s.webhook_log(&a, &LogQuery { delivery_id: Some("msg_b"), ..q(10) }).await.unwrap();
    assert!(none.is_empty(), "msg_b belongs to wh_2");
    assert!(s.webhook_log(&g, &q(10)).await.unwrap().is_empty(), "another tenant's log");
    // The stream's ids are Unix ms: `since` is a time filter.
    let recent = LogQuery { since_ms: Some(switchboard::time::now_millis() - 60_000), ..q(10) };
    assert_eq!(s.webhook_log(&a, &recent).await.unwrap().len(), 3);
    let future = LogQuery { since_ms: Some(switchboard::time::now_millis() + 60_000), ..q(10) };
    assert!(s.webhook_log(&a, &future).await.unwrap().is_empty());
}

async fn the_delivery_log_is_capped(b: Backend) {
    use switchboard::store::{Breaker, LogQuery};
    let s = b.store(Limits::default());
    let breaker = Breaker { threshold: 0, cooldown_ms: 0 };
    for i in 0..500 {
        s.webhook_attempt(&tenant("acme"), &attempt("wh_1", "msg_a", &i.to_string(), true, 1), breaker, bounds(50))
            .await
            .unwrap();
    }
    let all = LogQuery { webhook_id: "wh_1", limit: 1000, ..LogQuery::default() };
    let n = s.webhook_log(&tenant("acme"), &all).await.unwrap().len();
    // Redis trims with MAXLEN ~ (whole macro nodes), so "about" the cap.
    assert!((50..=200).contains(&n), "capped near 50, kept {n}");
}

/// An attempt to log: not a first, not dead, 0 ms.
fn attempt<'a>(
    webhook_id: &'a str,
    delivery_id: &'a str,
    entry: &'a str,
    success: bool,
    at_ms: i64,
) -> switchboard::store::AttemptRecord<'a> {
    switchboard::store::AttemptRecord {
        webhook_id,
        delivery_id,
        entry,
        success,
        at_ms,
        first: false,
        dead: false,
        duration_ms: 0,
    }
}

/// Issue 12, point 3: the stats are counters per 5-minute bucket, added to
/// by each attempt: they do not depend on what the log still holds (here
/// capped at 5 entries, 40 attempts counted) and read a dozen buckets.
async fn webhook_stats_are_counted_per_bucket(b: Backend) {
    use switchboard::store::{AttemptRecord, AttemptStats, Breaker, STATS_BUCKET_MS};
    let s = b.store(Limits::default());
    let (a, g) = (tenant("acme"), tenant("globex"));
    let breaker = Breaker { threshold: 0, cooldown_ms: 0 };
    let now = switchboard::time::now_millis();
    let record = |i: u64, at_ms: i64| AttemptRecord {
        first: i.is_multiple_of(4),
        dead: i % 4 == 3,
        success: i.is_multiple_of(2),
        duration_ms: 10,
        ..attempt("wh_1", "msg_a", "{}", false, at_ms)
    };
    for i in 0..40 {
        s.webhook_attempt(&a, &record(i, now - (i as i64 % 3) * 1000), breaker, bounds(5)).await.unwrap();
    }
    // Older than the window: not counted.
    s.webhook_attempt(&a, &record(0, now - 13 * STATS_BUCKET_MS), breaker, bounds(5)).await.unwrap();
    let expected = AttemptStats { attempts: 40, succeeded: 20, dead: 10, deliveries: 10, duration_ms: 400 };
    assert_eq!(s.webhook_stats(&a, "wh_1", now).await.unwrap(), expected);
    assert_eq!(s.webhook_stats(&a, "wh_2", now).await.unwrap(), AttemptStats::default(), "per webhook");
    assert_eq!(s.webhook_stats(&g, "wh_1", now).await.unwrap(), AttemptStats::default(), "per tenant");
    // An hour later the window has moved past them.
    let later = now + 12 * STATS_BUCKET_MS;
    assert_eq!(s.webhook_stats(&a, "wh_1", later).await.unwrap(), AttemptStats::default());
}

fn bounds(max_entries: usize) -> switchboard::store::LogBounds {
    switchboard::store::LogBounds { max_entries, max_age_ms: 3_600_000 }
}

async fn the_delivery_log_is_trimmed_by_age(b: Backend) {
    use switchboard::store::{Breaker, LogBounds, LogQuery};
    let s = b.store(Limits::default());
    let breaker = Breaker { threshold: 0, cooldown_ms: 0 };
    let short = LogBounds { max_entries: 1000, max_age_ms: 200 };
    for i in 0..3 {
        s.webhook_attempt(&tenant("acme"), &attempt("wh_1", "msg_a", &i.to_string(), true, 1), breaker, short)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.webhook_attempt(&tenant("acme"), &attempt("wh_1", "msg_a", "late", true, 1), breaker, short).await.unwrap();
    let all = LogQuery { webhook_id: "wh_1", limit: 1000, ..LogQuery::default() };
    let kept: Vec<String> = s.webhook_log(&tenant("acme"), &all).await.unwrap().into_iter().map(|r| r.entry).collect();
    assert_eq!(kept, ["late"], "entries older than the log's age bound are gone");
}

async fn fanout_claims_are_taken_once(b: Backend) {
    use Claim::{Busy, Mine, Sent};
    use switchboard::store::{Claim, ClaimSettings, Settled};
    let s = b.store(Limits::default());
    let a = tenant("acme");
    let lease = Duration::from_millis(300);
    let claims = ClaimSettings { lease, ttl: Duration::from_secs(60), max_live_jobs: 3 };
    let m = |ids: &[&str]| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    assert_eq!(s.fanout_claim(&a, "ev1", &m(&["c1", "c2"]), &claims).await.unwrap(), [Mine, Mine]);
    assert_eq!(s.fanout_claim(&a, "ev1", &m(&["c2", "c3"]), &claims).await.unwrap(), [Busy, Mine], "c2 is leased");
    assert_eq!(s.fanout_claim(&a, "ev2", &m(&["c1"]), &claims).await.unwrap(), [Mine], "per job");
    assert_eq!(s.fanout_claim(&tenant("globex"), "ev1", &m(&["c1"]), &claims).await.unwrap(), [Mine], "per tenant");
    // The attempt sent to c1 and gave c2 back.
    let partly = Settled::Partly { sent: &m(&["c1"]), released: &m(&["c2"]) };
    s.fanout_settle(&a, "ev1", partly, &claims).await.unwrap();
    assert_eq!(s.fanout_claim(&a, "ev1", &m(&["c1", "c2"]), &claims).await.unwrap(), [Sent, Mine], "released");
    // An attempt killed mid-way: its lease ends, and its recipients are claimable again.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert_eq!(s.fanout_claim(&a, "ev1", &m(&["c1", "c2", "c3"]), &claims).await.unwrap(), [Sent, Mine, Mine]);
    // A tenant holds claims for at most max_live_jobs jobs (ev1, ev2, ev3).
    assert_eq!(s.fanout_claim(&a, "ev3", &m(&["c1"]), &claims).await.unwrap(), [Mine]);
    assert!(s.fanout_claim(&a, "ev4", &m(&["c1"]), &claims).await.is_err(), "a fourth job waits");
    // A finished job's claims go; a late duplicate of it sends nothing, and another job may start.
    s.fanout_settle(&a, "ev1", Settled::Finished, &claims).await.unwrap();
    assert_eq!(s.fanout_claim(&a, "ev1", &m(&["c1", "c9"]), &claims).await.unwrap(), [Sent, Sent]);
    assert_eq!(s.fanout_claim(&a, "ev4", &m(&["c1"]), &claims).await.unwrap(), [Mine]);
}

/// Issue 29, point 3: a finished job leaves no claim hash (only its small
/// marker, expiring with the queue's retries); an abandoned one's claims
/// expire with that same window, and no key is left without an expiry.
#[tokio::test]
async fn redis_claims_are_deleted_when_a_job_ends_and_expire_with_the_retry_window() {
    use switchboard::store::{ClaimSettings, Settled};
    let redis = switchboard_test_support::shared_redis();
    let prefix = switchboard_tests::unique_prefix();
    let s = Backend::Redis.store_with_prefix(&prefix, Limits::default());
    let a = tenant("acme");
    let claims = ClaimSettings { lease: Duration::from_secs(5), ttl: Duration::from_secs(900), max_live_jobs: 10 };
    let members: Vec<String> = (0..300).map(|i| format!("conn{i:012}=")).collect();
    s.fanout_claim(&a, "done", &members, &claims).await.unwrap();
    s.fanout_claim(&a, "abandoned", &members, &claims).await.unwrap();
    s.fanout_settle(&a, "done", Settled::Finished, &claims).await.unwrap();
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    let sent = |job: &str| format!("{prefix}:sent:{{acme}}:{job}");
    assert!(!keys.contains(&sent("done")), "a finished job leaves no claims: {keys:?}");
    assert!(keys.contains(&format!("{prefix}:sentdone:{{acme}}:done")), "{keys:?}");
    assert!(keys.contains(&sent("abandoned")), "{keys:?}");
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query_async(&mut conn).await.unwrap();
        assert!(ttl > 0 && ttl <= 900_000, "{key} expires within the retry window: {ttl} ms");
    }
    let bytes: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(format!("{prefix}:sentdone:{{acme}}:done"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(bytes < 200, "a finished job's marker is small: {bytes} B");
}

/// `text` as a recorded envelope would be: `{"id":...}`.
fn envelope_text(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"call.incoming","tenant_id":"t1","timestamp":1,"data":{{}}}}"#)
}

async fn publish(s: &Arc<dyn Store>, t: &str, event: EventType, target: Target, id: &str) -> Resolution {
    let text = envelope_text(id);
    let record = Record { event_type: event, text: &text, id, once: false, retention: Default::default() };
    s.record_and_resolve(&tenant(t), &record, &target, None).await.unwrap().expect("no limit")
}

/// A reader's position: without an id (`None`) or with one.
fn since(epoch: &str, offset: u64, id: Option<&str>) -> Since {
    Since { epoch: epoch.into(), offset, id: id.map(str::to_owned) }
}

/// Everything `audience` could have received of `topics` after `from`, up to 1,000 events.
async fn read_as(
    s: &Arc<dyn Store>,
    t: &switchboard::ids::TenantId,
    from: &Since,
    audience: Audience<'_>,
    names: &[&str],
) -> HistoryRead {
    let q = HistoryQuery { since: Some(from), audience, max_events: 1000, max_bytes: 1 << 20 };
    s.history(t, &q, &topics(names), None).await.unwrap().expect("no limit")
}

/// Every event after `from`.
async fn read(s: &Arc<dyn Store>, t: &switchboard::ids::TenantId, from: &Since) -> HistoryRead {
    read_as(s, t, from, Audience::Everyone, &["*"]).await
}

/// Where the history stands.
async fn now(s: &Arc<dyn Store>, t: &switchboard::ids::TenantId) -> HistoryRead {
    let q = HistoryQuery { since: None, audience: Audience::Everyone, max_events: 1, max_bytes: 1 };
    s.history(t, &q, &topics(&["*"]), None).await.unwrap().unwrap()
}

fn offsets(h: &HistoryRead) -> Vec<u64> {
    h.events.iter().map(|(o, _)| *o).collect()
}

async fn every_published_event_gets_the_next_offset_in_its_tenants_history(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    let fresh = now(&s, &t).await;
    assert_eq!((fresh.top, fresh.top_id.as_deref(), fresh.status), (0, None, ReadStatus::Complete));
    assert!(Position::is_valid_epoch(&fresh.epoch), "{}", fresh.epoch);
    let epoch = fresh.epoch.as_str();
    s.register(&conn("t1", "42", "c1")).await.unwrap();
    s.subscribe(&t, &cid("c1"), &topics(&["call.*"])).await.unwrap();
    let before = read(&s, &t, &since(epoch, 1, None)).await;
    assert_eq!((before.top, before.events.len()), (1, 0), "presence.online only: a subscribe records nothing");

    let a = publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "a").await;
    assert_eq!(a.recipients.len(), 1, "recording does not change who gets it");
    let b2 = publish(&s, "t1", EventType::ChatMessage, Target::User(user("42")), "b").await;
    let c = publish(&s, "t1", EventType::ChatMessage, Target::Connection(cid("c1")), "c").await;
    let d = publish(&s, "t1", EventType::ChatMessage, Target::Connection(cid("gone")), "d").await;
    let e = publish(&s, "t1", EventType::ChatMessage, Target::User(user("7")), "e").await;
    let positions: Vec<Position> = [a, b2, c, d, e].into_iter().map(|r| r.position.expect("recorded")).collect();
    assert_eq!(positions.iter().map(|p| p.offset).collect::<Vec<_>>(), [2, 3, 4, 5, 6]);
    assert!(positions.iter().all(|p| p.epoch == epoch), "one epoch: {positions:?}");
    s.resolve(&t, EventType::CallIncoming, &Target::Tenant).await.unwrap();

    let h = read(&s, &t, &since(epoch, 1, None)).await;
    assert_eq!(
        (h.top, offsets(&h), h.status),
        (6, vec![2, 3, 4, 5, 6], ReadStatus::Complete),
        "a resolve records nothing"
    );
    assert_eq!(h.top_id.as_deref(), Some("e"));
    let b_text = envelope_text("b");
    assert_eq!(h.events[1].1, b_text);
    let (_, replayed) = h.envelopes().nth(1).unwrap();
    assert_eq!(
        replayed,
        format!(r#"{},"offset":3,"epoch":"{epoch}"}}"#, &b_text[..b_text.len() - 1]),
        "replayed as first sent: with its position"
    );
    // Each reader gets what it could have received.
    let from = since(epoch, 1, None);
    let (u42, u7) = (user("42"), user("7"));
    let conn_c1 = read_as(&s, &t, &from, Audience::Connection(&u42, &cid("c1")), &["*"]).await;
    assert_eq!(offsets(&conn_c1), [2, 3, 4], "the tenant's, its user's, its own");
    let conn_c2 = read_as(&s, &t, &from, Audience::Connection(&u42, &cid("c2")), &["*"]).await;
    assert_eq!(offsets(&conn_c2), [2, 3], "not another connection's");
    assert_eq!(offsets(&read_as(&s, &t, &from, Audience::User(&u42), &["*"]).await), [2, 3, 4]);
    assert_eq!(offsets(&read_as(&s, &t, &from, Audience::User(&u7), &["*"]).await), [2, 6]);
    let chats = read_as(&s, &t, &from, Audience::Everyone, &["chat.message"]).await;
    assert_eq!(offsets(&chats), [3, 4, 5, 6], "by topic");
    let calls = read_as(&s, &t, &from, Audience::Connection(&u42, &cid("c1")), &["call.*", "agent.login"]).await;
    assert_eq!(offsets(&calls), [2]);

    assert_eq!(offsets(&read(&s, &t, &since(epoch, 3, None)).await), [4, 5, 6]);
    let q = HistoryQuery { since: Some(&from), audience: Audience::Everyone, max_events: 2, max_bytes: 1 << 20 };
    let two = s.history(&t, &q, &topics(&["*"]), None).await.unwrap().unwrap();
    assert_eq!((offsets(&two), two.status), (vec![2, 3], ReadStatus::Truncated), "at most max_events");
    let q = HistoryQuery { max_events: 5, ..q };
    let five = s.history(&t, &q, &topics(&["*"]), None).await.unwrap().unwrap();
    assert_eq!((five.events.len(), five.status), (5, ReadStatus::Complete), "exactly max_events is all of it");
    let bytes = b_text.len() * 2 + 1;
    let q = HistoryQuery { max_bytes: bytes, ..q };
    let capped = s.history(&t, &q, &topics(&["*"]), None).await.unwrap().unwrap();
    assert_eq!((offsets(&capped), capped.status), (vec![2, 3], ReadStatus::Truncated), "at most max_bytes");
    let nothing = read(&s, &t, &since(epoch, 6, None)).await;
    assert_eq!((nothing.events.len(), nothing.status), (0, ReadStatus::Complete), "nothing missed");
    assert_eq!(read(&s, &t, &since("other", 1, None)).await.status, ReadStatus::Lost, "another epoch");
    assert_eq!(read(&s, &t, &since(epoch, 9, None)).await.status, ReadStatus::Lost, "an offset from the future");
}

async fn a_position_names_its_event(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    for id in ["a", "b", "c"] {
        publish(&s, "t1", EventType::CallIncoming, Target::Tenant, id).await;
    }
    let epoch = now(&s, &t).await.epoch;
    let at = |offset, id| since(&epoch, offset, Some(id));
    let fine = read(&s, &t, &at(1, "a")).await;
    assert_eq!((offsets(&fine), fine.status), (vec![2, 3], ReadStatus::Complete));
    assert_eq!(read(&s, &t, &at(1, "b")).await.status, ReadStatus::Lost, "offset 1 holds another event");
    assert_eq!(read(&s, &t, &at(3, "c")).await.status, ReadStatus::Complete, "the top, proven by the meta");
    assert_eq!(read(&s, &t, &at(3, "z")).await.status, ReadStatus::Lost, "the top is another event");
    assert_eq!(read(&s, &t, &since(&epoch, 1, None)).await.status, ReadStatus::Complete, "no id: not proven by id");
    assert_eq!(read(&s, &t, &at(0, "whatever")).await.status, ReadStatus::Complete, "offset 0 names no event");
}

async fn histories_are_per_tenant(b: Backend) {
    let s = b.store(Limits::default());
    publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "a").await;
    publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "b").await;
    let other = publish(&s, "t2", EventType::CallIncoming, Target::Tenant, "x").await.position.unwrap();
    assert_eq!(other.offset, 1, "each tenant counts its own");
    let h2 = read(&s, &tenant("t2"), &since(&other.epoch, 0, None)).await;
    assert_eq!(h2.events.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(), [envelope_text("x")]);
    assert_ne!(h2.epoch, now(&s, &tenant("t1")).await.epoch);
}

async fn the_history_keeps_its_newest_events_for_its_ttl(b: Backend) {
    let limits = Limits { history_size: 5, history_ttl: Duration::from_millis(400), ..Limits::default() };
    let s = b.store(limits);
    let t = tenant("t1");
    for i in 0..8 {
        publish(&s, "t1", EventType::CallIncoming, Target::Tenant, &format!("e{i}")).await;
    }
    let epoch = now(&s, &t).await.epoch;
    let h = read(&s, &t, &since(&epoch, 3, None)).await;
    assert_eq!(
        (offsets(&h), h.status),
        (vec![4, 5, 6, 7, 8], ReadStatus::Complete),
        "exactly HISTORY_SIZE, the newest"
    );
    assert_eq!(read(&s, &t, &since(&epoch, 2, None)).await.status, ReadStatus::Lost, "event 3 is gone: no partial");
    assert_eq!(read(&s, &t, &since(&epoch, 3, Some("e2"))).await.status, ReadStatus::Lost, "event 3 proves nothing");
    assert_eq!(read(&s, &t, &since(&epoch, 4, Some("e3"))).await.status, ReadStatus::Complete);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let expired = read(&s, &t, &since(&epoch, 8, Some("e7"))).await;
    assert_eq!((expired.top, expired.status), (8, ReadStatus::Complete), "a client that saw everything missed nothing");
    assert_eq!(expired.epoch, epoch, "expired, but the count and epoch stay");
    assert_eq!(read(&s, &t, &since(&epoch, 7, None)).await.status, ReadStatus::Lost);
    let next = publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "e8").await.position.unwrap();
    assert_eq!(next, Position { epoch, offset: 9 }, "offsets go on in the same epoch");
}

async fn a_queued_event_is_recorded_once(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    let text = envelope_text("job");
    let record = Record {
        event_type: EventType::CallIncoming,
        text: &text,
        id: "job",
        once: true,
        retention: Default::default(),
    };
    let first = s.record_and_resolve(&t, &record, &Target::Tenant, None).await.unwrap().unwrap().position;
    publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "other").await;
    let retry = s.record_and_resolve(&t, &record, &Target::Tenant, None).await.unwrap().unwrap().position;
    assert_eq!(first, retry, "a retried job's event keeps its place");
    let epoch = first.unwrap().epoch;
    assert_eq!(offsets(&read(&s, &t, &since(&epoch, 0, None)).await), [1, 2]);
}

async fn an_oversize_event_keeps_its_place_but_not_its_text(b: Backend) {
    let s = b.store(Limits { history_max_event_bytes: 80, ..Limits::default() });
    let t = tenant("t1");
    publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "small").await;
    let big = "x".repeat(100);
    publish(&s, "t1", EventType::ChatMessage, Target::Tenant, &big).await;
    publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "after").await;
    let epoch = now(&s, &t).await.epoch;
    assert_eq!(read(&s, &t, &since(&epoch, 0, None)).await.status, ReadStatus::Lost, "it cannot be given");
    let calls = read_as(&s, &t, &since(&epoch, 0, None), Audience::Everyone, &["call.*"]).await;
    assert_eq!((offsets(&calls), calls.status), (vec![1, 3], ReadStatus::Complete), "a reader that never wanted it");
    assert_eq!(read(&s, &t, &since(&epoch, 2, Some(&big))).await.status, ReadStatus::Complete, "its place proves");
}

async fn presence_changes_are_recorded_with_their_place(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    let online = s.register(&conn("t1", "42", "c1")).await.unwrap().presence_event.expect("came online");
    assert_eq!(online.event_type, EventType::PresenceOnline);
    assert_eq!(online.offset, Some(1));
    assert_eq!(s.register(&conn("t1", "42", "c2")).await.unwrap().presence_event, None);
    s.unregister(&t, &cid("c1")).await.unwrap();
    let offline = s.unregister(&t, &cid("c2")).await.unwrap().unwrap().presence_event.expect("went offline");
    assert_eq!((offline.event_type, offline.offset), (EventType::PresenceOffline, Some(2)));
    assert_eq!(offline.data, serde_json::json!({"user_id": "42"}));
    let epoch = offline.epoch.clone().unwrap();
    let h = read(&s, &t, &since(&epoch, 0, None)).await;
    assert_eq!(h.top_id.as_deref(), Some(offline.id.as_str()), "the top names the presence event");
    for ((_, text), event) in h.envelopes().zip([&online, &offline]) {
        let recorded: switchboard::event::Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(&recorded, event, "the history holds the event that was announced");
    }
    assert_eq!(read(&s, &t, &since(&epoch, 1, Some(&online.id))).await.status, ReadStatus::Complete);
    // Several users going stale at once: one event each, each with its own place.
    s.register(&conn("t1", "1", "a")).await.unwrap();
    s.register(&conn("t1", "2", "b")).await.unwrap();
    let gone = s.unregister_many(&t, &[cid("a"), cid("b")]).await.unwrap();
    let events: Vec<_> = gone.iter().map(|g| g.presence_event.clone().unwrap()).collect();
    assert_eq!(events.iter().map(|e| e.offset.unwrap()).collect::<Vec<_>>(), [5, 6], "after two presence.online");
    assert_ne!(events[0].id, events[1].id);
    assert_eq!(events[1].data, serde_json::json!({"user_id": "2"}));
    assert_eq!(read(&s, &t, &since(&epoch, 5, Some(&events[0].id))).await.status, ReadStatus::Complete);
}

/// Waits for the start of a second when less than 300 ms of this one are left.
async fn early_in_a_second() {
    let ms = switchboard::time::now_millis() % 1000;
    if ms > 700 {
        tokio::time::sleep(Duration::from_millis((1000 - ms) as u64)).await;
    }
}

async fn a_subscribe_with_recovery_reads_the_history_in_the_same_step(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    s.register(&conn("t1", "42", "c1")).await.unwrap();
    for id in ["a", "b", "c"] {
        publish(&s, "t1", EventType::CallIncoming, Target::Tenant, id).await;
    }
    publish(&s, "t1", EventType::ChatMessage, Target::User(user("7")), "d").await;
    let epoch = now(&s, &t).await.epoch;
    let from = since(&epoch, 2, Some("a"));
    let (u42, c1) = (user("42"), cid("c1"));
    let q = HistoryQuery {
        since: Some(&from),
        audience: Audience::Connection(&u42, &c1),
        max_events: 100,
        max_bytes: 1 << 20,
    };
    let r = s.subscribe_since(&t, &c1, &topics(&["call.*", "chat.*"]), &q, 1000).await.unwrap().unwrap();
    assert_eq!(r.topics, topics(&["call.*", "chat.*"]));
    assert_eq!(r.endpoint, "https://gw.example/t1");
    assert_eq!((r.history.top, offsets(&r.history)), (5, vec![3, 4]), "presence.online is 1; user 7's is not for it");
    // The connection's topics after the change are what it reads for.
    let r = s.subscribe_since(&t, &c1, &topics(&["agent.*"]), &q, 1000).await.unwrap().unwrap();
    assert_eq!(offsets(&r.history), [3, 4], "call.* still held");
    assert_eq!(recipients(&s, "t1", EventType::CallIncoming, Target::Tenant).await, set(&["c1"]), "subscribed");
    assert!(matches!(
        s.subscribe_since(&t, &cid("nope"), &topics(&["*"]), &q, 1000).await,
        Err(StoreError::UnknownConnection)
    ));
    // A recovery counts against the tenant's requests per second.
    let t9 = tenant("t9");
    s.register(&conn("t9", "1", "r1")).await.unwrap();
    early_in_a_second().await;
    assert!(s.rate_limit(&t9, 2).await.unwrap());
    let fresh = since(&now(&s, &t9).await.epoch, 0, None);
    let q9 = HistoryQuery { since: Some(&fresh), ..q };
    assert!(s.subscribe_since(&t9, &cid("r1"), &topics(&["*"]), &q9, 2).await.unwrap().is_some(), "2 of 2");
    assert_eq!(s.subscribe_since(&t9, &cid("r1"), &topics(&["agent.*"]), &q9, 2).await.unwrap(), None, "over");
    let now = s.subscribe(&t9, &cid("r1"), &topics(&["queue.*"])).await.unwrap();
    assert!(!now.contains(&"agent.*".parse().unwrap()), "the refused one subscribed nothing: {now:?}");
}

async fn a_read_costs_what_it_returns(b: Backend) {
    let s = b.store(Limits::default());
    let t = tenant("t1");
    for i in 0..250 {
        publish(&s, "t1", EventType::CallIncoming, Target::Tenant, &format!("e{i}")).await;
    }
    let epoch = now(&s, &t).await.epoch;
    let from = since(&epoch, 0, None);
    let q = HistoryQuery { since: Some(&from), audience: Audience::Everyone, max_events: 1000, max_bytes: 1 << 20 };
    early_in_a_second().await;
    let all = s.history(&t, &q, &topics(&["*"]), Some(10)).await.unwrap().expect("1 of 10");
    assert_eq!(all.events.len(), 250);
    // 250 events: 2 more requests. 3 of 10 spent, 7 left.
    for n in 4..=10 {
        assert!(s.rate_limit(&t, 10).await.unwrap(), "{n} of 10");
    }
    assert!(!s.rate_limit(&t, 10).await.unwrap(), "11 of 10");
    assert_eq!(s.history(&t, &q, &topics(&["*"]), Some(10)).await.unwrap(), None, "over: nothing read");
}

async fn history_off_records_nothing(b: Backend) {
    let s = b.store(Limits { history_size: 0, ..Limits::default() });
    let r = publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "a").await;
    assert_eq!(r.position, None);
    assert_eq!(s.register(&conn("t1", "42", "c1")).await.unwrap().presence_event.unwrap().offset, None);
    assert_eq!(now(&s, &tenant("t1")).await.top, 0);
}

switchboard_tests::backend_tests!(memory => Memory, redis_single => Redis, redis_cluster => Cluster; [
    every_published_event_gets_the_next_offset_in_its_tenants_history,
    a_position_names_its_event,
    a_read_costs_what_it_returns,
    histories_are_per_tenant,
    the_history_keeps_its_newest_events_for_its_ttl,
    a_queued_event_is_recorded_once,
    an_oversize_event_keeps_its_place_but_not_its_text,
    presence_changes_are_recorded_with_their_place,
    a_subscribe_with_recovery_reads_the_history_in_the_same_step,
    history_off_records_nothing,
    resolve_carries_the_tenants_webhooks,
    the_delivery_log_pages_filters_and_counts_failures,
    the_delivery_log_is_trimmed_by_age,
    the_delivery_log_is_capped,
    webhook_stats_are_counted_per_bucket,
    fanout_claims_are_taken_once,
    webhook_registries_are_per_tenant,
    webhook_configurations_are_typed_at_the_boundary,
    stale_connections_are_forgotten_together,
    rate_limits_are_per_tenant,
    presence_changes_come_with_their_recipients,
    a_rate_limited_resolve_counts_against_the_budget,
    register_and_look_up,
    tenants_never_see_each_other,
    presence_with_several_connections,
    heartbeat_expiry,
    subscription_filtering,
    unregister_forgets_subscriptions,
    unregister_is_idempotent,
    unknown_ids,
    offline_queue_order_and_cap,
    offline_queue_expires,
    offline_storage_is_bounded_per_tenant,
    expired_offline_queues_leave_the_budget,
    idle_connections_are_those_whose_client_fell_silent,
]);
