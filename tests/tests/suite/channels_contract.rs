//! The channel half of the `Store` contract, on the same three backends
//! as `store_contract`: memory, a real `redis-server`, a real 3-node
//! Cluster (where a channel key outside the tenant's hash tag would fail
//! the scripts with CROSSSLOT).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use switchboard::channel::Channel;
use switchboard::config::Limits;
use switchboard::event::{EventType, Since, Target, Topic};
use switchboard::ids::Role;
use switchboard::store::{
    Audience, Connection, HistoryQuery, HistoryRead, ReadStatus, Record, Resolution, Retention, Store, StoreError,
};
use switchboard_tests::Backend;
use switchboard_tests::id::{cid, tenant, user};

fn topics(names: &[&str]) -> Vec<Topic> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

fn ch(name: &str) -> Channel {
    Channel::parse(name).unwrap()
}

async fn connect(s: &Arc<dyn Store>, t: &str, u: &str, c: &str) {
    let conn = Connection {
        id: cid(c),
        tenant_id: tenant(t),
        user_id: user(u),
        role: Role::Agent,
        endpoint: format!("https://gw.example/{t}"),
        connected_at: 1_700_000_000_000,
    };
    s.register(&conn).await.unwrap();
}

async fn join(s: &Arc<dyn Store>, t: &str, c: &str, channel: &str, filter: &[&str]) {
    s.subscribe_channel(&tenant(t), &cid(c), &ch(channel), &topics(filter)).await.unwrap();
}

fn text(id: &str, pad: usize) -> String {
    format!(r#"{{"id":"{id}","type":"call.incoming","tenant_id":"t1","timestamp":1,"data":"{}"}}"#, "x".repeat(pad))
}

async fn publish_as(
    s: &Arc<dyn Store>,
    t: &str,
    event: EventType,
    target: Target,
    id: &str,
    retention: Retention,
) -> Resolution {
    let text = text(id, 0);
    let record = Record { event_type: event, text: &text, id, once: false, retention };
    s.record_and_resolve(&tenant(t), &record, &target, None).await.unwrap().expect("no limit")
}

async fn publish(s: &Arc<dyn Store>, t: &str, event: EventType, target: Target, id: &str) -> Resolution {
    publish_as(s, t, event, target, id, Retention::Lasting).await
}

fn to(channel: &str) -> Target {
    Target::Channel(ch(channel))
}

fn reached(r: &Resolution) -> BTreeSet<String> {
    r.recipients.iter().map(|r| r.connection_id.to_string()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn read(s: &Arc<dyn Store>, t: &str, channel: &str, from: Option<&Since>, names: &[&str]) -> HistoryRead {
    let c = ch(channel);
    let q = HistoryQuery { since: from, audience: Audience::Channel(&c), max_events: 1000, max_bytes: 1 << 20 };
    s.history(&tenant(t), &q, &topics(names), None).await.unwrap().expect("no limit")
}

fn since(epoch: &str, offset: u64, id: Option<&str>) -> Since {
    Since { epoch: epoch.into(), offset, id: id.map(str::to_owned) }
}

fn offsets(h: &HistoryRead) -> Vec<u64> {
    h.events.iter().map(|(o, _)| *o).collect()
}

async fn a_channel_reaches_its_subscribers_whose_filter_matches(b: Backend) {
    let s = b.store(Limits::default());
    for (u, c) in [("1", "c1"), ("2", "c2"), ("3", "c3"), ("4", "c4")] {
        connect(&s, "t1", u, c).await;
    }
    join(&s, "t1", "c1", "queue:support", &["*"]).await;
    join(&s, "t1", "c2", "queue:sales", &["call.*"]).await;
    join(&s, "t1", "c4", "queue:support", &["chat.*"]).await;
    s.subscribe(&tenant("t1"), &cid("c3"), &topics(&["*"])).await.unwrap();

    let r = publish(&s, "t1", EventType::CallIncoming, to("queue:support"), "e1").await;
    assert_eq!(reached(&r), set(&["c1"]), "c4's filter is chat.*; c3 follows the tenant, not the channel");
    assert_eq!(r.target_connections, 2, "the channel's subscribers");
    let r = publish(&s, "t1", EventType::ChatMessage, to("queue:support"), "e2").await;
    assert_eq!(reached(&r), set(&["c1", "c4"]));
    let r = publish(&s, "t1", EventType::CallIncoming, to("queue:sales"), "e3").await;
    assert_eq!(reached(&r), set(&["c2"]));
    let r = publish(&s, "t1", EventType::QueueStats, to("queue:sales"), "e4").await;
    assert!(reached(&r).is_empty(), "queue.stats is not call.*");
    let r = publish(&s, "t1", EventType::CallIncoming, Target::Tenant, "e5").await;
    assert_eq!(reached(&r), set(&["c3"]), "a tenant-wide event reaches no channel subscriber");
    let r = publish(&s, "t1", EventType::CallIncoming, to("queue:nobody"), "e6").await;
    assert_eq!((r.recipients.len(), r.target_connections), (0, 0));
}

async fn a_channel_is_its_tenants_own(b: Backend) {
    let s = b.store(Limits::default());
    connect(&s, "t1", "1", "c1").await;
    connect(&s, "t2", "1", "c2").await;
    join(&s, "t1", "c1", "queue:support", &["*"]).await;
    join(&s, "t2", "c2", "queue:support", &["*"]).await;
    let r = publish(&s, "t1", EventType::CallIncoming, to("queue:support"), "e1").await;
    assert_eq!(reached(&r), set(&["c1"]));
    let r = publish(&s, "t2", EventType::CallIncoming, to("queue:support"), "e2").await;
    assert_eq!(reached(&r), set(&["c2"]));
    assert_eq!(
        offsets(&read(&s, "t1", "queue:support", Some(&since(&r.position.unwrap().epoch, 0, None)), &["*"]).await),
        Vec::<u64>::new(),
        "another tenant's epoch is no position here"
    );
    let h1 = read(&s, "t1", "queue:support", None, &["*"]).await;
    let h2 = read(&s, "t2", "queue:support", None, &["*"]).await;
    assert_eq!((h1.top, h2.top), (1, 1), "each tenant's channel counts its own");
    // A subscribe to another tenant's connection fails: it is not there.
    let err = s.subscribe_channel(&tenant("t2"), &cid("c1"), &ch("queue:x"), &topics(&["*"])).await.unwrap_err();
    assert_eq!(err, StoreError::UnknownConnection);
}

async fn subscribing_again_replaces_the_filter_and_leaving_empties_the_channel(b: Backend) {
    let s = b.store(Limits::default());
    connect(&s, "t1", "1", "c1").await;
    join(&s, "t1", "c1", "call:123", &["call.*"]).await;
    join(&s, "t1", "c1", "call:123", &["chat.message", "chat.message"]).await;
    s.subscribe(&tenant("t1"), &cid("c1"), &topics(&["system.*"])).await.unwrap();
    let mine = s.subscriptions(&tenant("t1"), &cid("c1")).await.unwrap();
    assert_eq!(mine.topics, topics(&["system.*"]));
    assert_eq!(mine.channels.into_iter().collect::<Vec<_>>(), vec![(ch("call:123"), topics(&["chat.message"]))]);
    assert!(reached(&publish(&s, "t1", EventType::CallEnded, to("call:123"), "e1").await).is_empty());
    assert_eq!(s.channel_subscribers(&tenant("t1"), &ch("call:123")).await.unwrap(), 1);
    assert!(s.unsubscribe_channel(&tenant("t1"), &cid("c1"), &ch("call:123")).await.unwrap());
    assert!(!s.unsubscribe_channel(&tenant("t1"), &cid("c1"), &ch("call:123")).await.unwrap());
    assert_eq!(s.channel_subscribers(&tenant("t1"), &ch("call:123")).await.unwrap(), 0);
    assert!(s.subscriptions(&tenant("t1"), &cid("c1")).await.unwrap().channels.is_empty());
    let unknown = s.subscribe_channel(&tenant("t1"), &cid("nope"), &ch("call:1"), &topics(&["*"])).await;
    assert_eq!(unknown.unwrap_err(), StoreError::UnknownConnection);
    assert_eq!(s.subscriptions(&tenant("t1"), &cid("nope")).await.unwrap_err(), StoreError::UnknownConnection);
}

async fn channels_per_connection_and_subscribers_per_channel_are_bounded(b: Backend) {
    let s = b.store(Limits { channels_per_connection: 2, channel_max_subscribers: 2, ..Limits::default() });
    for c in ["c1", "c2", "c3"] {
        connect(&s, "t1", c, c).await;
    }
    join(&s, "t1", "c1", "team:a", &["*"]).await;
    join(&s, "t1", "c1", "team:b", &["*"]).await;
    let err = s.subscribe_channel(&tenant("t1"), &cid("c1"), &ch("team:c"), &topics(&["*"])).await.unwrap_err();
    assert_eq!(err, StoreError::TooManyChannels { limit: 2 });
    join(&s, "t1", "c1", "team:b", &["agent.*"]).await;
    join(&s, "t1", "c2", "team:a", &["*"]).await;
    let err = s.subscribe_channel(&tenant("t1"), &cid("c3"), &ch("team:a"), &topics(&["*"])).await.unwrap_err();
    assert_eq!(err, StoreError::ChannelFull { limit: 2 });
    assert_eq!(
        s.subscriptions(&tenant("t1"), &cid("c3")).await.unwrap().channels.len(),
        0,
        "a refusal changes nothing"
    );
}

async fn a_connection_that_goes_leaves_every_channel(b: Backend) {
    let s = b.store(Limits::default());
    connect(&s, "t1", "1", "c1").await;
    connect(&s, "t1", "2", "c2").await;
    join(&s, "t1", "c1", "call:1", &["*"]).await;
    join(&s, "t1", "c1", "queue:support", &["*"]).await;
    join(&s, "t1", "c2", "queue:support", &["*"]).await;
    s.unregister(&tenant("t1"), &cid("c1")).await.unwrap();
    assert_eq!(s.channel_subscribers(&tenant("t1"), &ch("call:1")).await.unwrap(), 0);
    assert_eq!(s.channel_subscribers(&tenant("t1"), &ch("queue:support")).await.unwrap(), 1);
    assert_eq!(reached(&publish(&s, "t1", EventType::CallIncoming, to("queue:support"), "e").await), set(&["c2"]));
}

async fn each_channel_is_a_history_of_its_own(b: Backend) {
    let s = b.store(Limits { history_size: 5, ..Limits::default() });
    let mut quiet = vec![];
    for i in 0..40 {
        publish(&s, "t1", EventType::CallIncoming, Target::Tenant, &format!("t{i}")).await;
        publish(&s, "t1", EventType::CallRinging, to("queue:busy"), &format!("b{i}")).await;
        if i % 10 == 0 {
            quiet.push(publish(&s, "t1", EventType::QueueStats, to("queue:quiet"), &format!("q{i}")).await);
        }
    }
    let p = quiet.iter().map(|r| r.position.clone().unwrap()).collect::<Vec<_>>();
    assert_eq!(p.iter().map(|p| p.offset).collect::<Vec<_>>(), [1, 2, 3, 4], "a channel counts its own events");
    let from = since(&p[0].epoch, 0, None);
    let all = read(&s, "t1", "queue:quiet", Some(&from), &["*"]).await;
    assert_eq!((all.status, offsets(&all)), (ReadStatus::Complete, vec![1, 2, 3, 4]));
    assert_eq!(all.top_id.as_deref(), Some("q30"));
    assert!(all.events[0].1.contains(r#""id":"q0""#), "{}", all.events[0].1);
    // The tenant's own history (5 events) is not the channels'.
    let busy = read(&s, "t1", "queue:busy", Some(&since(&p[0].epoch, 0, None)), &["call.*"]).await;
    assert_eq!(busy.status, ReadStatus::Lost, "another channel's epoch");
    let busy_now = read(&s, "t1", "queue:busy", None, &["*"]).await;
    assert_eq!(busy_now.top, 40);
    let from = since(&busy_now.epoch, 30, Some("b29"));
    let tail = read(&s, "t1", "queue:busy", Some(&from), &["call.*"]).await;
    assert_eq!((tail.status, offsets(&tail)), (ReadStatus::Complete, (31..=40).collect::<Vec<_>>()));
    let filtered = read(&s, "t1", "queue:busy", Some(&from), &["chat.*"]).await;
    assert_eq!((filtered.status, filtered.events.len()), (ReadStatus::Complete, 0));
    let wrong = read(&s, "t1", "queue:busy", Some(&since(&busy_now.epoch, 30, Some("b28"))), &["*"]).await;
    assert_eq!(wrong.status, ReadStatus::Lost, "the event at 30 is not b28");
    let capped = {
        let c = ch("queue:busy");
        let q = HistoryQuery { since: Some(&from), audience: Audience::Channel(&c), max_events: 4, max_bytes: 1 << 20 };
        s.history(&tenant("t1"), &q, &topics(&["*"]), None).await.unwrap().unwrap()
    };
    assert_eq!((capped.status, offsets(&capped)), (ReadStatus::Truncated, vec![31, 32, 33, 34]));
}

async fn a_channel_subscribe_with_recovery_reads_in_the_same_step(b: Backend) {
    let s = b.store(Limits::default());
    connect(&s, "t1", "1", "c1").await;
    let first = publish(&s, "t1", EventType::CallIncoming, to("call:9"), "e1").await.position.unwrap();
    publish(&s, "t1", EventType::ChatMessage, to("call:9"), "e2").await;
    publish(&s, "t1", EventType::CallEnded, to("call:9"), "e3").await;
    let from = since(&first.epoch, 1, Some("e1"));
    let q = HistoryQuery { since: Some(&from), audience: Audience::Everyone, max_events: 100, max_bytes: 1 << 20 };
    let r = s
        .subscribe_channel_since(&tenant("t1"), &cid("c1"), &ch("call:9"), &topics(&["call.*"]), &q, 100)
        .await
        .unwrap()
        .expect("within the limit");
    assert_eq!((r.history.status, offsets(&r.history)), (ReadStatus::Complete, vec![3]));
    assert_eq!(r.topics, topics(&["call.*"]));
    assert_eq!(r.endpoint, "https://gw.example/t1");
    assert_eq!(reached(&publish(&s, "t1", EventType::CallHold, to("call:9"), "e4").await), set(&["c1"]));
    let lost = since(&first.epoch, 1, Some("other"));
    let q = HistoryQuery { since: Some(&lost), ..q };
    let r = s.subscribe_channel_since(&tenant("t1"), &cid("c1"), &ch("call:9"), &topics(&["*"]), &q, 100).await;
    assert_eq!(r.unwrap().unwrap().history.status, ReadStatus::Lost);
    let over = s.subscribe_channel_since(&tenant("t1"), &cid("c1"), &ch("call:9"), &topics(&["*"]), &q, 1).await;
    assert!(over.unwrap().is_none(), "over the tenant's requests per second");
}

async fn channel_histories_are_bounded_per_tenant_by_bytes(b: Backend) {
    // Each event is about 180 bytes; the tenant's channels may keep 3,000.
    let s = b.store(Limits { channel_history_max_bytes: 3000, ..Limits::default() });
    let record = |id: &str| text(id, 100);
    let put = |channel: &'static str, id: String| {
        let s = s.clone();
        async move {
            let text = record(&id);
            let r = Record {
                event_type: EventType::CallIncoming,
                text: &text,
                id: &id,
                once: false,
                retention: Retention::Lasting,
            };
            s.record_and_resolve(&tenant("t1"), &r, &to(channel), None).await.unwrap().unwrap().position.unwrap()
        }
    };
    let first = put("queue:quiet", "q0".into()).await;
    for i in 1..5 {
        put("queue:quiet", format!("q{i}")).await;
    }
    for i in 0..50 {
        put("queue:busy", format!("b{i}")).await;
    }
    let quiet = read(&s, "t1", "queue:quiet", Some(&since(&first.epoch, 0, None)), &["*"]).await;
    assert_eq!((quiet.status, offsets(&quiet)), (ReadStatus::Complete, vec![1, 2, 3, 4, 5]), "the busy channel paid");
    let busy = read(&s, "t1", "queue:busy", None, &["*"]).await;
    let old = read(&s, "t1", "queue:busy", Some(&since(&busy.epoch, 0, None)), &["*"]).await;
    assert_eq!(old.status, ReadStatus::Lost, "the busy channel's oldest are gone");
    let recent = read(&s, "t1", "queue:busy", Some(&since(&busy.epoch, 45, Some("b44"))), &["*"]).await;
    assert_eq!((recent.status, offsets(&recent)), (ReadStatus::Complete, vec![46, 47, 48, 49, 50]));
    // What the busy channel still holds: from its oldest kept event on.
    let mut kept = None;
    for k in 0..50 {
        let from = since(&busy.epoch, k, None);
        let r = read(&s, "t1", "queue:busy", Some(&from), &["*"]).await;
        if r.status == ReadStatus::Complete {
            kept = Some(r);
            break;
        }
    }
    let kept = kept.expect("some of the busy channel is kept");
    let total = quiet.bytes() + kept.bytes();
    assert!((2600..=3000).contains(&total), "the budget is used, and not exceeded: {total} B");
}

async fn an_ephemeral_channels_position_expires_with_its_history(b: Backend) {
    let s = b.store(Limits { channel_history_ttl: Duration::from_millis(400), ..Limits::default() });
    let call = publish_as(&s, "t1", EventType::CallIncoming, to("call:1"), "e1", Retention::Ephemeral).await;
    let queue = publish_as(&s, "t1", EventType::QueueStats, to("queue:q"), "e2", Retention::Lasting).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let call_now = read(&s, "t1", "call:1", None, &["*"]).await;
    assert_ne!(call_now.epoch, call.position.unwrap().epoch, "an ephemeral channel starts anew");
    let queue_pos = queue.position.unwrap();
    let queue_now = read(&s, "t1", "queue:q", Some(&since(&queue_pos.epoch, 1, Some("e2"))), &["*"]).await;
    assert_eq!(
        (queue_now.epoch, queue_now.status),
        (queue_pos.epoch, ReadStatus::Complete),
        "a lasting channel keeps its position"
    );
    let off = publish_as(&s, "t1", EventType::QueueStats, to("queue:q"), "e3", Retention::Off).await;
    assert_eq!(off.position, None);
}

switchboard_tests::backend_tests!(memory => Memory, redis_single => Redis, redis_cluster => Cluster; [
    a_channel_reaches_its_subscribers_whose_filter_matches,
    a_channel_is_its_tenants_own,
    subscribing_again_replaces_the_filter_and_leaving_empties_the_channel,
    channels_per_connection_and_subscribers_per_channel_are_bounded,
    a_connection_that_goes_leaves_every_channel,
    each_channel_is_a_history_of_its_own,
    a_channel_subscribe_with_recovery_reads_in_the_same_step,
    channel_histories_are_bounded_per_tenant_by_bytes,
    an_ephemeral_channels_position_expires_with_its_history,
]);
