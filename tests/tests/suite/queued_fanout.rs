//! Queued fan-out: `POST /v1/events?async=true` through the events queue to
//! the `fanout` function, and a broadcast split into chunks that the
//! emulator's event source mapping runs like Lambda would. Each recipient
//! gets an event exactly once even when a chunk fails and is retried, or a
//! chunk is delivered twice. Real WebSocket clients, real `redis-server`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::broadcast::{FanoutJob, run_job};
use switchboard::config::{Config, QueueUrls, RedisConfig};
use switchboard::connections_api::{ConnectionsApi, ManagementApi, PostOutcome};
use switchboard::event::{Envelope, EventType, Target};
use switchboard::ids::{ConnectionId, Role};
use switchboard::queue::Queues;
use switchboard_local::{Emulator, Mode, Settings, queues};
use switchboard_test_support::shared_redis;
use switchboard_tests::unique_prefix;
use switchboard_tests::ws::{Ws, connect, next_json, request, silent};

/// The emulator's `@connections`, except that the first post to each
/// `marked` connection fails (a throttled post, say).
struct Flaky {
    inner: ManagementApi,
    marked: Mutex<HashSet<ConnectionId>>,
    failed: Mutex<HashSet<ConnectionId>>,
    /// Every post to these fails (a recipient stuck for good).
    stuck: Mutex<HashSet<ConnectionId>>,
    posts: std::sync::atomic::AtomicUsize,
    /// Posts after this many never finish (the instance froze, then was killed).
    hang_after: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl ConnectionsApi for Flaky {
    async fn post(&self, endpoint: &str, connection: &ConnectionId, data: &[u8]) -> PostOutcome {
        let n = self.posts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n >= self.hang_after.load(std::sync::atomic::Ordering::SeqCst) {
            return std::future::pending().await;
        }
        if self.stuck.lock().unwrap().contains(connection) {
            return PostOutcome::Failed("500 InternalServerError (injected, every time)".into());
        }
        let marked = self.marked.lock().unwrap().contains(connection);
        if marked && self.failed.lock().unwrap().insert(connection.clone()) {
            return PostOutcome::Failed("429 TooManyRequestsException (injected)".into());
        }
        self.inner.post(endpoint, connection, data).await
    }
}

use switchboard_tests::auth::token;

struct World {
    emu: Emulator,
    /// The test's own handle on the same store, sending to the emulator's queues.
    ctx: Context,
    gateway: Arc<Flaky>,
}

async fn world(chunk: usize) -> World {
    world_with(chunk, switchboard::config::Limits::default()).await
}

async fn world_with(chunk: usize, limits: switchboard::config::Limits) -> World {
    let config = Config {
        redis: Some(RedisConfig::single(shared_redis().url())),
        key_prefix: unique_prefix(),
        fanout_chunk_size: chunk,
        limits,
        ..Config::default()
    };
    let gateway = Arc::new(Flaky {
        inner: ManagementApi::local(),
        marked: Mutex::default(),
        failed: Mutex::default(),
        stuck: Mutex::default(),
        posts: std::sync::atomic::AtomicUsize::new(0),
        hang_after: std::sync::atomic::AtomicUsize::new(usize::MAX),
    });
    let ctx = Context::from_config(config).with_connections_api(gateway.clone());
    let mode = Mode::InProcess { ctx: ctx.clone(), verifier: switchboard_tests::auth::verifier() };
    // Every post through the flaky gateway, none in-process.
    let settings = Settings { in_process_posts: false, ..Settings::ephemeral() };
    let emu = Emulator::start(settings, mode).await.unwrap();
    let urls = QueueUrls {
        webhooks: Some(emu.queue_url(queues::WEBHOOKS)),
        webhooks_dlq: Some(emu.queue_url(queues::WEBHOOKS_DLQ)),
        events: Some(emu.queue_url(queues::EVENTS)),
    };
    let ctx = ctx.with_queues(Queues::local(&emu.sqs_url(), urls));
    World { emu, ctx, gateway }
}

impl World {
    /// Registers a webhook of `acme` for `topic` in the store.
    async fn webhook(&self, topic: &str) -> switchboard::webhook::WebhookConfig {
        let hook = switchboard_tests::webhook_config("http://127.0.0.1:9/hook", topic);
        let tenant = "acme".parse().unwrap();
        self.ctx.store.save_webhook(&tenant, &hook).await.unwrap();
        hook
    }

    /// A queue of the test's own on the emulator's SQS, which no mapping consumes.
    async fn own_queue(&self) -> String {
        let sqs = Queues::local(&self.emu.sqs_url(), QueueUrls::default());
        let created = sqs.client().create_queue().queue_name(unique_prefix()).send().await.unwrap();
        created.queue_url().unwrap().to_owned()
    }

    /// Up to ten messages of `url`, waiting at most a second for the first.
    async fn receive(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let sqs = Queues::local(&self.emu.sqs_url(), QueueUrls::default());
        let got = sqs.client().receive_message().queue_url(url).max_number_of_messages(10).wait_time_seconds(1);
        got.send().await.unwrap().messages.unwrap_or_default()
    }

    async fn client(&self, user: &str) -> (Ws, ConnectionId) {
        let url = format!("{}?token={}", self.emu.ws_url(), token("acme", user, Role::Agent));
        let (mut ws, _) = connect(&url, &[]).await.expect("handshake");
        let reply = request(&mut ws, json!({"action": "subscribe", "events": ["call.*"]})).await;
        assert_eq!(reply["type"], "subscribed");
        // The store knows the user's only connection.
        let tenant = "acme".parse().unwrap();
        let conn = self
            .ctx
            .store
            .resolve(&tenant, EventType::CallIncoming, &Target::User(user.parse().unwrap()))
            .await
            .unwrap()
            .recipients
            .pop()
            .unwrap()
            .connection_id;
        (ws, conn)
    }
}

#[tokio::test]
async fn a_large_broadcast_is_split_into_chunks_and_reaches_everyone_exactly_once_despite_retries() {
    const N: usize = 1000;
    let w = world(100).await;
    let clients: Vec<(Ws, ConnectionId)> = futures::stream::iter(0..N)
        .map(|i| {
            let w = &w;
            async move { w.client(&format!("u{i}")).await }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    // One connection in ten fails its first post: ten chunks, each retried.
    w.gateway.marked.lock().unwrap().extend(clients.iter().step_by(10).map(|(_, c)| c.clone()));

    let event = Envelope::new("acme".parse().unwrap(), EventType::CallIncoming, json!({"n": 1}));
    let job = FanoutJob { event: event.clone(), target: Target::Tenant, chunk: None };
    let report = run_job(&w.ctx, &job).await.unwrap();
    assert_eq!((report.matched, report.chunks, report.delivered), (N, 10, 0), "split, not posted: {report:?}");

    let received: Vec<(Ws, Value)> = futures::stream::iter(clients)
        .map(|(mut ws, _)| async move {
            let e = next_json(&mut ws).await;
            (ws, e)
        })
        .buffer_unordered(N)
        .collect()
        .await;
    assert!(received.iter().all(|(_, e)| e["id"] == event.id.as_str()));
    assert_eq!(w.gateway.failed.lock().unwrap().len(), N / 10, "the injected failures happened");

    // A chunk delivered a second time (SQS is at-least-once) posts to nobody.
    let mut first_chunk_members = Vec::new();
    let tenant = "acme".parse().unwrap();
    let everyone = w.ctx.store.resolve(&tenant, EventType::CallIncoming, &Target::Tenant).await.unwrap().recipients;
    for r in everyone.iter().take(100) {
        first_chunk_members.push((r.connection_id.clone(), r.user_id.clone(), r.endpoint.clone()));
    }
    let again = FanoutJob {
        event: event.clone(),
        target: Target::Tenant,
        chunk: Some(switchboard::broadcast::Chunk {
            index: 0,
            of: 10,
            recipients: first_chunk_members,
            job: String::new(),
        }),
    };
    let posts_before = w.gateway.posts.load(std::sync::atomic::Ordering::SeqCst);
    let report = run_job(&w.ctx, &again).await.unwrap();
    assert_eq!(report.delivered, 0);
    assert_eq!(w.gateway.posts.load(std::sync::atomic::Ordering::SeqCst), posts_before, "no post at all");

    let extra: Vec<bool> = futures::stream::iter(received)
        .map(|(mut ws, _)| async move { !silent(&mut ws, Duration::from_millis(300)).await })
        .buffer_unordered(N)
        .collect()
        .await;
    assert_eq!(extra.iter().filter(|e| **e).count(), 0, "nobody got a second copy");
    assert_eq!(
        w.gateway.posts.load(std::sync::atomic::Ordering::SeqCst),
        N + N / 10,
        "N posts + one retry per failure"
    );
    w.emu.shutdown().await;
}

#[tokio::test]
async fn publishing_with_async_true_answers_202_and_the_event_arrives() {
    let w = world(1000).await;
    let (mut ws, _) = w.client("7").await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/events?async=true", w.emu.http_url());
    let r = http
        .post(&url)
        .bearer_auth(token("acme", "svc", Role::Service))
        .json(&json!({"type": "call.answered", "data": {"agent": "7"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["queued"], true);
    let event = next_json(&mut ws).await;
    assert_eq!((&event["id"], &event["type"]), (&body["event_id"], &json!("call.answered")));
    assert_eq!(event["data"], json!({"agent": "7"}));

    // The role check happens before queueing; a bad flag is named.
    let r = http
        .post(&url)
        .bearer_auth(token("acme", "7", Role::Agent))
        .json(&json!({"type": "call.answered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{}/v1/events?async=yes", w.emu.http_url()))
        .bearer_auth(token("acme", "svc", Role::Service))
        .json(&json!({"type": "call.answered"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "async");
    assert!(silent(&mut ws, Duration::from_millis(300)).await);
    w.emu.shutdown().await;
}

#[tokio::test]
async fn a_stuck_recipient_does_not_hold_back_the_events_webhooks() {
    let w = world(1000).await;
    let (_stuck_ws, stuck) = w.client("1").await;
    let (mut ws, _) = w.client("2").await;
    w.gateway.stuck.lock().unwrap().insert(stuck);
    let tenant: switchboard::ids::TenantId = "acme".parse().unwrap();
    let hook = w.webhook("call.*").await;
    // The deliveries go to a queue of the test's own, which no mapping consumes.
    let probe = w.own_queue().await;
    let urls = QueueUrls { webhooks: Some(probe.clone()), ..QueueUrls::default() };
    let ctx = w.ctx.clone().with_queues(Queues::local(&w.emu.sqs_url(), urls));

    let event = Envelope::new(tenant.clone(), EventType::CallIncoming, json!({"n": 1}));
    let job = FanoutJob { event: event.clone(), target: Target::Tenant, chunk: None };
    for run in 0..2 {
        // The job fails for the stuck recipient (SQS retries it) ...
        let err = run_job(&ctx, &job).await.unwrap_err();
        assert!(matches!(err, switchboard::broadcast::JobError::Posts(1)), "run {run}: {err}");
    }
    // ... but the others have it, and the webhook's delivery was queued once.
    assert_eq!(next_json(&mut ws).await["id"], event.id.as_str());
    let got = w.receive(&probe).await;
    assert_eq!(got.len(), 1, "one delivery, not none and not one per retry");
    let delivery: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(delivery["webhook_id"], hook.id.as_str());
    w.emu.shutdown().await;
}

#[tokio::test]
async fn a_synchronous_publish_whose_webhooks_cannot_be_queued_dead_letters_them() {
    let w = world(1000).await;
    let tenant: switchboard::ids::TenantId = "acme".parse().unwrap();
    let hook = w.webhook("*").await;
    let dlq = w.own_queue().await;
    // The webhook queue refuses everything (it does not exist).
    let urls = QueueUrls {
        webhooks: Some(format!("{}/000000000000/no-such-queue", w.emu.sqs_url())),
        webhooks_dlq: Some(dlq.clone()),
        events: None,
    };
    let ctx = w.ctx.clone().with_queues(Queues::local(&w.emu.sqs_url(), urls));
    let event = Envelope::new(tenant, EventType::CallIncoming, json!({"n": 1}));
    let report = switchboard::broadcast::publish(&ctx, &event, &Target::Tenant).await.unwrap();
    assert_eq!((report.webhooks_enqueued, report.webhooks_failed), (0, 1), "{report:?}");
    let got = w.receive(&dlq).await;
    assert_eq!(got.len(), 1, "the delivery was kept in the dead-letter queue, not lost");
    let letter: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(letter["delivery"]["webhook_id"], hook.id.as_str());
    assert!(letter["error"].as_str().unwrap().starts_with("not queued"), "{letter}");
    w.emu.shutdown().await;
}

/// Issue 29, point 3: an attempt of a queued job killed mid-way (the
/// instance froze with posts in flight, then Lambda stopped it). Its
/// claims are leases: when the job comes back, the recipients it had not
/// reached are claimed again and get the event; the ones it had reached
/// were marked as it went and get nothing twice.
#[tokio::test]
async fn a_job_killed_mid_way_reaches_everyone_once_when_it_comes_back() {
    const N: usize = 300;
    let limits = switchboard::config::Limits {
        fanout_retry_window: Duration::from_millis(200),
        ..switchboard::config::Limits::default()
    };
    let w = world_with(1000, limits).await;
    let clients: Vec<(Ws, ConnectionId)> = {
        let w = &w;
        futures::stream::iter(0..N)
            .map(|i| async move { w.client(&format!("u{i}")).await })
            .buffer_unordered(32)
            .collect()
            .await
    };
    let tenant: switchboard::ids::TenantId = "acme".parse().unwrap();
    let event = Envelope::new(tenant, EventType::CallIncoming, json!({"n": 1}));
    let job = FanoutJob { event: event.clone(), target: Target::Tenant, chunk: None };

    w.gateway.hang_after.store(N / 2, std::sync::atomic::Ordering::SeqCst);
    let (ctx, first) = (w.ctx.clone(), job.clone());
    let attempt = tokio::spawn(async move { run_job(&ctx, &first).await });
    switchboard_tests::eventually("half the posts made, the rest hanging", || {
        let posts = w.gateway.posts.load(std::sync::atomic::Ordering::SeqCst);
        async move { posts > N / 2 }
    })
    .await;
    // Long enough for what was sent to be marked (every 100 ms); then the instance dies.
    tokio::time::sleep(Duration::from_millis(700)).await;
    attempt.abort();
    assert!(attempt.await.unwrap_err().is_cancelled());

    // SQS gives the job back (after its visibility timeout; here, after the lease).
    w.gateway.hang_after.store(usize::MAX, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let report = run_job(&w.ctx, &job).await.expect("the retry finishes the job");
    assert_eq!(
        report.delivered,
        N - N / 2,
        "the retry posts only to those the killed attempt had not reached: {report:?}"
    );

    let counts: Vec<usize> = futures::stream::iter(clients)
        .map(|(mut ws, _)| {
            let id = event.id.clone();
            async move {
                let mut n = 0;
                while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
                    if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                        n += usize::from(serde_json::from_str::<Value>(&text).unwrap()["id"] == id.as_str());
                    }
                }
                n
            }
        })
        .buffer_unordered(N)
        .collect()
        .await;
    assert!(counts.iter().all(|n| *n == 1), "every client once: {:?}", counts.iter().filter(|n| **n != 1).count());
    w.emu.shutdown().await;
}
