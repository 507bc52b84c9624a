//! Webhooks end to end through the emulator: an event published on the
//! HTTP API is queued on the emulator's SQS, the event source mapping
//! invokes the `webhook` function, and a real receiver (an axum server on a
//! free port) records what arrives. Retries go through visibility timeouts
//! (with a 1-second schedule), final failures through the dead-letter queue;
//! state is in a real `redis-server`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::config::{Config, RedisConfig, WebhookSettings};
use switchboard::ids::Role;
use switchboard::ssrf::UrlPolicy;
use switchboard::webhook::{RetrySchedule, Secret, legacy_signature as seed_signature};
use switchboard_local::{Emulator, Mode, Settings, queues};
use switchboard_test_support::shared_redis;
use switchboard_tests::ws::{self, next_json, request};
use switchboard_tests::{eventually, unique_prefix};

/// How the receiver answers.
#[derive(Clone)]
enum Policy {
    /// These statuses in order, then 200.
    Script(Arc<Mutex<Vec<u16>>>),
    /// Always this status (changeable while running).
    Always(Arc<AtomicU16>),
    /// 500 for about `percent`% of requests, chosen by a hash of the count.
    Random(u64),
}

#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    policy: Policy,
    count: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(policy: Policy) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        let r = Receiver { url, hits: Arc::default(), policy, count: Arc::default() };
        let app = Router::new().fallback(hit).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn header(hit: &Hit, name: &str) -> String {
        hit.headers.get(name).unwrap_or_else(|| panic!("{name} missing")).to_str().unwrap().to_owned()
    }
}

async fn hit(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> (StatusCode, &'static str) {
    let n = r.count.fetch_add(1, Ordering::SeqCst) as u64;
    let status = match &r.policy {
        Policy::Script(s) => {
            let mut s = s.lock().unwrap();
            if s.is_empty() { 200 } else { s.remove(0) }
        }
        Policy::Always(s) => s.load(Ordering::SeqCst),
        Policy::Random(percent) => {
            let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % 100;
            if h < *percent { 500 } else { 200 }
        }
    };
    r.hits.lock().unwrap().push(Hit { at: Instant::now(), status, headers, body });
    (StatusCode::from_u16(status).unwrap(), "ok from the receiver")
}

struct World {
    emu: Emulator,
    http: reqwest::Client,
}

fn fast() -> WebhookSettings {
    WebhookSettings {
        schedule: RetrySchedule { delays: vec![Duration::from_secs(1)], jitter: 0.0 },
        breaker_threshold: 0,
        ..WebhookSettings::default()
    }
}

async fn world(webhooks: WebhookSettings) -> World {
    let config = Config {
        redis: Some(RedisConfig::single(shared_redis().url())),
        key_prefix: unique_prefix(),
        webhook_urls: UrlPolicy::LOCAL,
        webhooks,
        ..Config::default()
    };
    let ctx = Context::from_config(config);
    let mode = Mode::InProcess { ctx, verifier: switchboard_tests::auth::verifier() };
    World { emu: Emulator::start(Settings::ephemeral(), mode).await.unwrap(), http: reqwest::Client::new() }
}

fn token(tenant: &str, role: Role) -> String {
    switchboard_tests::auth::token(tenant, "u1", role)
}

impl World {
    async fn call(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.emu.http_url())).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers a webhook for `acme`; returns (id, secret).
    async fn webhook(&self, url: &str, extra: Value) -> (String, String) {
        let mut body = json!({"name": "receiver", "url": url});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, created) = self.call(Method::POST, "/v1/webhooks", &token("acme", Role::Admin), Some(body)).await;
        assert_eq!(status, 201, "{created}");
        (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
    }

    async fn publish(&self, event_type: &str, data: Value) -> Value {
        let body = json!({"type": event_type, "data": data});
        let (status, out) = self.call(Method::POST, "/v1/events", &token("acme", Role::Service), Some(body)).await;
        assert_eq!(status, 200, "{out}");
        out
    }

    async fn log(&self, id: &str) -> Vec<Value> {
        let (status, out) =
            self.call(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), &token("acme", Role::Admin), None).await;
        assert_eq!(status, 200, "{out}");
        out["deliveries"].as_array().unwrap().clone()
    }

    /// The bodies in the webhook dead-letter queue (received, not deleted).
    async fn dead_letters(&self) -> Vec<Value> {
        let url = self.emu.queue_url(queues::WEBHOOKS_DLQ);
        let got = self.emu.sqs.receive(&url, 10, Some(60), Duration::ZERO).await.unwrap();
        got.iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect()
    }
}

fn standard_headers(hit: &Hit) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        h.insert(name, Receiver::header(hit, name).parse().unwrap());
    }
    h
}

#[tokio::test]
async fn an_event_reaches_its_webhook_signed_both_ways() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Script(Arc::default())).await;
    let (id, secret) = w.webhook(&r.url, json!({"events": ["call.*"]})).await;
    let out = w.publish("call.incoming", json!({"caller_id": "+1555"})).await;
    assert_eq!(out["report"]["webhooks_enqueued"], 1, "{out}");

    eventually("the receiver has the delivery", || async { r.hits().len() == 1 }).await;
    let hit = &r.hits()[0];
    let payload: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(payload["event"], "call.incoming");
    assert_eq!(payload["data"], json!({"caller_id": "+1555"}));
    assert!(payload["timestamp"].as_i64().unwrap() > 1_700_000_000, "Unix seconds");
    assert_eq!(Receiver::header(hit, "x-webhook-id"), id);
    assert_eq!(Receiver::header(hit, "x-webhook-event"), "call.incoming");
    assert_eq!(Receiver::header(hit, "x-webhook-attempt"), "1");
    assert_eq!(Receiver::header(hit, "user-agent"), "Switchboard-Webhook/1.0");
    let secret = Secret::parse(secret).unwrap();
    assert_eq!(Receiver::header(hit, "x-webhook-signature"), seed_signature(&secret, &hit.body));
    standardwebhooks::Webhook::new(secret.expose())
        .unwrap()
        .verify(&hit.body, &standard_headers(hit))
        .expect("the published Standard Webhooks verifier accepts it");

    eventually("the attempt is logged", || async { w.log(&id).await.len() == 1 }).await;
    let entry = &w.log(&id).await[0];
    assert_eq!((entry["status"].as_str(), entry["response_code"].as_u64()), (Some("delivered"), Some(200)));
    assert_eq!(entry["response_body"], "ok from the receiver");
    assert_eq!(entry["delivery_id"].as_str().unwrap(), Receiver::header(hit, "webhook-id"));
    w.emu.shutdown().await;
}

#[tokio::test]
async fn two_matching_webhooks_of_three_get_exactly_one_delivery_each() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Script(Arc::default())).await;
    let (calls, _) = w.webhook(&r.url, json!({"events": ["call.*"]})).await;
    let (all, _) = w.webhook(&r.url, json!({"events": ["*"]})).await;
    w.webhook(&r.url, json!({"events": ["chat.*"]})).await;
    let out = w.publish("call.answered", json!({})).await;
    assert_eq!(out["report"]["webhooks_enqueued"], 2, "{out}");
    eventually("two deliveries", || async { r.hits().len() >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = r.hits();
    assert_eq!(hits.len(), 2, "no third and no duplicate");
    let ids: HashSet<String> = hits.iter().map(|h| Receiver::header(h, "x-webhook-id")).collect();
    assert_eq!(ids, HashSet::from([calls, all]));
    w.emu.shutdown().await;
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_delivery_on_attempt_three_after_the_backoff() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Script(Arc::new(Mutex::new(vec![500, 503])))).await;
    let (id, _) = w.webhook(&r.url, json!({})).await;
    w.publish("queue.joined", json!({"queue": "support"})).await;
    eventually("three attempts", || async { r.hits().len() == 3 }).await;
    let hits = r.hits();
    let attempts: Vec<String> = hits.iter().map(|h| Receiver::header(h, "x-webhook-attempt")).collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let ids: HashSet<String> = hits.iter().map(|h| Receiver::header(h, "webhook-id")).collect();
    assert_eq!(ids.len(), 1, "one delivery id on every attempt (the idempotency key)");
    for pair in hits.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(900), "the 1 s backoff was waited: {gap:?}");
    }
    eventually("three log entries", || async { w.log(&id).await.len() == 3 }).await;
    let log = w.log(&id).await;
    let statuses: Vec<(&str, u64)> =
        log.iter().map(|e| (e["status"].as_str().unwrap(), e["response_code"].as_u64().unwrap())).collect();
    assert_eq!(statuses, [("delivered", 200), ("failed", 503), ("failed", 500)], "newest first");
    assert!(log[1]["next_attempt_at"].as_i64().is_some());

    let (_, stats) = w.call(Method::GET, &format!("/v1/webhooks/{id}/stats"), &token("acme", Role::Admin), None).await;
    assert_eq!((stats["attempts"].as_u64(), stats["succeeded"].as_u64()), (Some(3), Some(1)), "{stats}");
    assert_eq!(stats["deliveries"], 1);
    assert!((stats["success_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    w.emu.shutdown().await;
}

#[tokio::test]
async fn a_receiver_always_failing_puts_the_delivery_in_the_dead_letter_queue_and_a_replay_sends_it_again() {
    let w = world(fast()).await;
    let status = Arc::new(AtomicU16::new(500));
    let r = Receiver::start(Policy::Always(status.clone())).await;
    let (id, _) = w.webhook(&r.url, json!({"retry_count": 2})).await;
    w.publish("ticket.created", json!({"ticket": 7})).await;
    eventually("three attempts", || async { r.hits().len() == 3 }).await;
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.is_empty() && Instant::now() < deadline {
        dead.extend(w.dead_letters().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["delivery"]["webhook_id"], id);
    assert_eq!(dead[0]["last_attempt"]["response_code"], 500);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.hits().len(), 3, "retry_count 2 = three attempts, no more");
    let log = w.log(&id).await;
    let statuses: Vec<&str> = log.iter().map(|e| e["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["dead", "failed", "failed"]);

    // The receiver is fixed; replay the dead delivery.
    status.store(200, Ordering::SeqCst);
    let delivery_id = log[0]["delivery_id"].as_str().unwrap().to_owned();
    let (code, out) = w
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/{delivery_id}/retry"),
            &token("acme", Role::Admin),
            None,
        )
        .await;
    assert_eq!(code, 202, "{out}");
    eventually("the replay arrives", || async { r.hits().len() == 4 }).await;
    assert_eq!(Receiver::header(&r.hits()[3], "webhook-id"), delivery_id, "same idempotency key");
    eventually("logged as delivered", || async { w.log(&id).await[0]["status"] == "delivered" }).await;

    let (code, _) = w
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/deliveries/msg_unknown/retry"),
            &token("acme", Role::Admin),
            None,
        )
        .await;
    assert_eq!(code, 404);
    let (code, _) =
        w.call(Method::GET, &format!("/v1/webhooks/{id}/deliveries"), &token("globex", Role::Admin), None).await;
    assert_eq!(code, 404, "another tenant sees nothing");
    w.emu.shutdown().await;
}

#[tokio::test]
async fn a_410_disables_the_webhook() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Always(Arc::new(AtomicU16::new(410)))).await;
    let (id, _) = w.webhook(&r.url, json!({})).await;
    w.publish("agent.login", json!({})).await;
    let admin = token("acme", Role::Admin);
    eventually("the webhook is disabled", || async {
        w.call(Method::GET, &format!("/v1/webhooks/{id}"), &admin, None).await.1["is_active"] == false
    })
    .await;
    let (_, hook) = w.call(Method::GET, &format!("/v1/webhooks/{id}"), &admin, None).await;
    assert!(hook["disabled_reason"].as_str().unwrap().contains("410"), "{hook}");
    assert_eq!(w.log(&id).await[0]["status"], "gone");
    let out = w.publish("agent.login", json!({})).await;
    assert_eq!(out["report"]["webhooks_enqueued"], 0, "nothing more for a disabled webhook");
    assert_eq!(r.hits().len(), 1);
    w.emu.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_during_its_grace_period() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Script(Arc::default())).await;
    let (id, first) = w.webhook(&r.url, json!({})).await;
    let admin = token("acme", Role::Admin);
    let (code, rotated) = w
        .call(
            Method::POST,
            &format!("/v1/webhooks/{id}/rotate-secret"),
            &admin,
            Some(json!({"grace_period_secs": 3600})),
        )
        .await;
    assert_eq!(code, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert!(rotated["previous_secret_expires_at"].as_i64().is_some());

    w.publish("call.ended", json!({})).await;
    eventually("a delivery", || async { r.hits().len() == 1 }).await;
    let hit = &r.hits()[0];
    let sigs = Receiver::header(hit, "webhook-signature");
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    for s in [&first, &second] {
        standardwebhooks::Webhook::new(s).unwrap().verify(&hit.body, &standard_headers(hit)).expect("both verify");
    }
    let current = Secret::parse(second.clone()).unwrap();
    assert_eq!(
        Receiver::header(hit, "x-webhook-signature"),
        seed_signature(&current, &hit.body),
        "the seed's: current"
    );

    // A truncated body is an error, not an empty one (which would rotate).
    let url = format!("{}/v1/webhooks/{id}/rotate-secret", w.emu.http_url());
    let truncated = w.http.post(&url).bearer_auth(&admin).body("{\"secret\":").send().await.unwrap();
    assert_eq!(truncated.status(), 400);

    // Rotate again with no grace (a leaked secret): only the newest signs.
    let (_, third) = w
        .call(Method::POST, &format!("/v1/webhooks/{id}/rotate-secret"), &admin, Some(json!({"grace_period_secs": 0})))
        .await;
    let third = third["secret"].as_str().unwrap().to_owned();
    w.publish("call.ended", json!({})).await;
    eventually("a second delivery", || async { r.hits().len() == 2 }).await;
    let hit = &r.hits()[1];
    let headers = standard_headers(hit);
    assert_eq!(Receiver::header(hit, "webhook-signature").split(' ').count(), 1, "every old secret revoked");
    standardwebhooks::Webhook::new(&third).unwrap().verify(&hit.body, &headers).unwrap();
    for revoked in [&first, &second] {
        assert!(standardwebhooks::Webhook::new(revoked).unwrap().verify(&hit.body, &headers).is_err());
    }
    w.emu.shutdown().await;
}

#[tokio::test]
async fn the_test_endpoint_sends_a_signed_delivery_now() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Script(Arc::new(Mutex::new(vec![503])))).await;
    let (id, secret) = w.webhook(&r.url, json!({})).await;
    let admin = token("acme", Role::Admin);
    let (code, out) = w.call(Method::POST, &format!("/v1/webhooks/{id}/test"), &admin, None).await;
    assert_eq!(code, 200);
    assert_eq!((out["success"].as_bool(), out["status_code"].as_u64()), (Some(false), Some(503)), "{out}");
    let (_, out) = w.call(Method::POST, &format!("/v1/webhooks/{id}/test"), &admin, None).await;
    assert_eq!((out["success"].as_bool(), out["status_code"].as_u64()), (Some(true), Some(200)), "{out}");
    assert!(out["duration_ms"].as_u64().is_some());
    let hit = &r.hits()[1];
    let payload: Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(
        (payload["event"].as_str(), payload["data"]["test"].as_bool()),
        (Some("system.notification"), Some(true))
    );
    standardwebhooks::Webhook::new(&secret).unwrap().verify(&hit.body, &standard_headers(hit)).unwrap();
    let log = w.log(&id).await;
    assert_eq!(log.len(), 2, "test deliveries are logged too");

    // Pagination: one per page, the cursor leads to the older one.
    let (_, page) = w.call(Method::GET, &format!("/v1/webhooks/{id}/deliveries?limit=1"), &admin, None).await;
    assert_eq!(page["deliveries"][0]["response_code"], 200);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, page) =
        w.call(Method::GET, &format!("/v1/webhooks/{id}/deliveries?limit=1&before={cursor}"), &admin, None).await;
    assert_eq!(page["deliveries"][0]["response_code"], 503);
    let (code, bad) = w.call(Method::GET, &format!("/v1/webhooks/{id}/deliveries?limit=0"), &admin, None).await;
    assert_eq!((code, bad["field"].as_str()), (400, Some("limit")));
    // Issue 13, point 8: a cursor past 64 bits was a 503 "store unavailable".
    for cursor in ["18446744073709551616-0", "1-18446744073709551616", "-1", "1-", "a-b"] {
        let (code, bad) =
            w.call(Method::GET, &format!("/v1/webhooks/{id}/deliveries?before={cursor}"), &admin, None).await;
        assert_eq!((code, bad["field"].as_str()), (400, Some("before")), "{cursor}: {bad}");
    }
    w.emu.shutdown().await;
}

#[tokio::test]
async fn an_open_circuit_breaker_makes_deliveries_wait_without_spending_attempts() {
    let settings = WebhookSettings { breaker_threshold: 2, breaker_cooldown: Duration::from_secs(3), ..fast() };
    let w = world(settings).await;
    let r = Receiver::start(Policy::Script(Arc::new(Mutex::new(vec![500, 500])))).await;
    w.webhook(&r.url, json!({"retry_count": 5})).await;
    w.publish("call.hold", json!({})).await;
    eventually("the third attempt", || async { r.hits().len() == 3 }).await;
    let hits = r.hits();
    let gap = hits[2].at - hits[1].at;
    assert!(gap >= Duration::from_millis(2500), "paused for the 3 s cool-down, not the 1 s backoff: {gap:?}");
    assert_eq!(Receiver::header(&hits[2], "x-webhook-attempt"), "3", "the pause spent no attempt");
    w.emu.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_failing_too_long_is_disabled_and_the_tenant_alerted() {
    let settings = WebhookSettings { disable_after: Duration::from_secs(1), ..fast() };
    let w = world(settings).await;
    let r = Receiver::start(Policy::Always(Arc::new(AtomicU16::new(502)))).await;
    // A Slack-style URL: its path is the credential.
    let secret_url = format!("{}/services/T0/B0/s3cr3t", r.url);
    let (id, _) = w.webhook(&secret_url, json!({"events": ["call.*"], "retry_count": 10})).await;
    let url = format!("{}?token={}", w.emu.ws_url(), token("acme", Role::Supervisor));
    let (mut watcher, _) = ws::connect(&url, &[]).await.unwrap();
    request(&mut watcher, json!({"action": "subscribe", "events": ["system.alert"]})).await;

    w.publish("call.incoming", json!({})).await;
    let alert = next_json(&mut watcher).await;
    assert_eq!(alert["type"], "system.alert");
    assert_eq!(
        (alert["data"]["kind"].as_str(), alert["data"]["webhook_id"].as_str()),
        (Some("webhook.disabled"), Some(id.as_str()))
    );
    // Issue 13, point 4: every subscriber hears the alert, so the URL is
    // redacted there; the admins' registry shows it whole.
    let port = r.url.split(':').nth(2).unwrap().trim_end_matches("/hook");
    assert_eq!(alert["data"]["url"], format!("http://127.0.0.1:{port}/…"), "{alert}");
    assert!(!alert.to_string().contains("s3cr3t"), "{alert}");
    let (_, hook) = w.call(Method::GET, &format!("/v1/webhooks/{id}"), &token("acme", Role::Admin), None).await;
    assert_eq!(hook["is_active"], false);
    assert_eq!(hook["url"], secret_url.as_str());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(r.hits().len(), 2, "no attempts after it was disabled");
    w.emu.shutdown().await;
}

#[tokio::test]
async fn under_random_failures_every_delivery_is_delivered_or_dead_lettered() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Random(40)).await;
    w.webhook(&r.url, json!({"retry_count": 2})).await;
    let mut enqueued = 0;
    for i in 0..40 {
        let out = w.publish("chat.message", json!({"n": i})).await;
        enqueued += out["report"]["webhooks_enqueued"].as_u64().unwrap();
    }
    assert_eq!(enqueued, 40);
    let mut dead = 0;
    let mut done = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        dead += w.dead_letters().await.len();
        let (_, page) = w.call(Method::GET, "/v1/webhooks", &token("acme", Role::Admin), None).await;
        let id = page["webhooks"][0]["id"].as_str().unwrap().to_owned();
        let (_, log) = w
            .call(Method::GET, &format!("/v1/webhooks/{id}/deliveries?limit=100"), &token("acme", Role::Admin), None)
            .await;
        let ok: HashSet<&str> = log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["status"] == "delivered")
            .map(|e| e["delivery_id"].as_str().unwrap())
            .collect();
        done = ok.len();
        if done + dead == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(done + dead, 40, "sent = delivered + dead-lettered ({done} + {dead})");
    assert!(dead > 0 && done > 0, "the random receiver exercised both ends: {done} delivered, {dead} dead");
    let hits = r.hits();
    let attempted: HashSet<String> = hits.iter().map(|h| Receiver::header(h, "webhook-id")).collect();
    assert_eq!(attempted.len(), 40, "every delivery was attempted");
    let accepted: Vec<String> =
        hits.iter().filter(|h| h.status == 200).map(|h| Receiver::header(h, "webhook-id")).collect();
    assert_eq!(accepted.len(), done, "each delivery was accepted at most once (no retry after a 2xx)");
    assert_eq!(accepted.iter().collect::<HashSet<_>>().len(), done);
    w.emu.shutdown().await;
}

#[tokio::test]
async fn a_retry_that_would_outlive_the_queue_is_dead_lettered_now() {
    // The queue keeps messages 605 s, the retry would wait 30 s: with the ten
    // minutes' margin, only 5 s of the retention are left for retries.
    let settings = WebhookSettings {
        schedule: RetrySchedule { delays: vec![Duration::from_secs(30)], jitter: 0.0 },
        queue_retention: Duration::from_secs(605),
        ..fast()
    };
    let w = world(settings).await;
    let r = Receiver::start(Policy::Always(Arc::new(AtomicU16::new(503)))).await;
    let (id, _) = w.webhook(&r.url, json!({"retry_count": 10})).await;
    w.publish("queue.left", json!({"queue": "support"})).await;
    eventually("the delivery is dead-lettered", || async { !w.dead_letters().await.is_empty() }).await;
    assert_eq!(r.hits().len(), 1, "one attempt, no retry scheduled past the retention");
    let log = w.log(&id).await;
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!((log[0]["status"].as_str(), log[0]["response_code"].as_u64()), (Some("dead"), Some(503)));
    assert!(log[0]["error"].as_str().unwrap().contains("605 s retention"), "{}", log[0]);
    w.emu.shutdown().await;
}

#[tokio::test]
async fn deliveries_for_a_disabled_or_deleted_webhook_are_logged_as_dropped() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Always(Arc::new(AtomicU16::new(503)))).await;
    let (id, _) = w.webhook(&r.url, json!({"retry_count": 5})).await;
    w.publish("queue.left", json!({"queue": "support"})).await;
    eventually("the first attempt failed", || async { !r.hits().is_empty() }).await;
    // Disabled while its retry waits: the retry is dropped, and says so.
    let path = format!("/v1/webhooks/{id}");
    let (status, _) =
        w.call(Method::PATCH, &path, &token("acme", Role::Admin), Some(json!({"is_active": false}))).await;
    assert_eq!(status, 200);
    eventually("the retry is logged as dropped", || async {
        w.log(&id).await.first().is_some_and(|e| e["status"] == "dropped")
    })
    .await;
    let entry = &w.log(&id).await[0];
    assert_eq!(entry["error"], "not sent: the webhook is disabled", "{entry}");
    assert_eq!(entry["response_code"], Value::Null);
    assert_eq!(r.hits().len(), 1, "nothing more was sent");
    w.emu.shutdown().await;
}

#[tokio::test]
async fn a_large_event_leaves_a_bounded_log_entry() {
    let w = world(fast()).await;
    let r = Receiver::start(Policy::Script(Arc::default())).await;
    let (id, _) = w.webhook(&r.url, json!({})).await;
    w.publish("chat.message", json!({"text": "q".repeat(50_000)})).await;
    eventually("the attempt is logged", || async { w.log(&id).await.len() == 1 }).await;
    let entry = &w.log(&id).await[0];
    assert_eq!(entry["status"], "delivered");
    let stored = serde_json::to_string(entry).unwrap().len();
    assert!(stored <= 16 * 1024, "a log entry of {stored} bytes for a 50 KB event");
    assert_eq!(entry["delivery"]["data"], Value::Null, "the data is not kept");
    assert!(entry["data_omitted"]["bytes"].as_u64().unwrap() > 50_000, "{entry}");
    assert_eq!(r.hits().len(), 1);
    assert!(r.hits()[0].body.len() > 50_000, "the receiver got it whole");
    // Its replay is refused with the reason (the dead-letter queue holds such deliveries whole).
    let path = format!("/v1/webhooks/{id}/deliveries/{}/retry", entry["delivery_id"].as_str().unwrap());
    let (status, reply) = w.call(Method::POST, &path, &token("acme", Role::Admin), None).await;
    assert_eq!((status, reply["code"].as_str()), (409, Some("limit_exceeded")), "{reply}");
    w.emu.shutdown().await;
}

/// A webhook filtered on channel patterns gets the events of its topics
/// published to a matching channel, and nothing published elsewhere; the
/// payload names the channel. One without patterns gets all of its topics.
#[tokio::test]
async fn a_webhook_filters_on_channel_patterns() {
    let w = world(fast()).await;
    let queues = Receiver::start(Policy::Script(Arc::default())).await;
    let everything = Receiver::start(Policy::Script(Arc::default())).await;
    w.webhook(&queues.url, json!({"events": ["call.*"], "channels": ["queue:*", "team:east"]})).await;
    w.webhook(&everything.url, json!({"events": ["call.*"]})).await;
    let (status, refused) = w
        .call(
            Method::POST,
            "/v1/webhooks",
            &token("acme", Role::Admin),
            Some(json!({"name": "x", "url": queues.url, "channels": ["queue"]})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("channels"), "{refused}");
    for (event_type, channel) in [
        ("call.incoming", Some("queue:support")),
        ("call.ringing", Some("call:1729866000.123")),
        ("call.answered", None),
        ("queue.stats", Some("queue:support")),
        ("call.ended", Some("team:east")),
    ] {
        let mut body = json!({"type": event_type, "data": {}});
        if let Some(c) = channel {
            body["target"] = json!({"channel": c});
        }
        let (status, out) = w.call(Method::POST, "/v1/events", &token("acme", Role::Service), Some(body)).await;
        assert_eq!(status, 200, "{out}");
    }
    eventually("the unfiltered webhook has its four", || async { everything.hits().len() == 4 }).await;
    eventually("the channel webhook has its two", || async { queues.hits().len() == 2 }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got: Vec<(String, String)> = queues
        .hits()
        .iter()
        .map(|h| {
            let p: Value = serde_json::from_slice(&h.body).unwrap();
            (p["event"].as_str().unwrap().to_owned(), p["channel"].as_str().unwrap().to_owned())
        })
        .collect();
    got.sort();
    assert_eq!(got, [("call.ended".into(), "team:east".into()), ("call.incoming".into(), "queue:support".into())]);
    assert_eq!(everything.hits().len(), 4, "call.* wherever published; queue.stats is not call.*");
}
