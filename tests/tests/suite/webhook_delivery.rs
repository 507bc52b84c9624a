//! One webhook attempt against a real HTTP receiver (an axum server on a
//! free port that records what it gets and answers from a script): the
//! seed's payload and headers, both signatures verifiable, timeouts,
//! `Retry-After`, 410, and the SSRF guard on the stored URL.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard::event::EventType;
use switchboard::ssrf::{UrlPolicy, delivery_client};
use switchboard::webhook::{
    Delivery, Outcome, Secret, WebhookConfig, legacy_signature as seed_signature, send, verify_signature,
};

/// What the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

/// One scripted answer: status, `Retry-After`, delay before answering.
type Answer = (u16, Option<&'static str>, Duration);

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    /// Answers to give, in order: (status, Retry-After, delay). Empty: 200.
    script: Arc<Mutex<VecDeque<Answer>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    r.got.lock().unwrap().push(Received { headers, body });
    let next = r.script.lock().unwrap().pop_front();
    let (status, retry_after, delay) = next.unwrap_or((200, None, Duration::ZERO));
    tokio::time::sleep(delay).await;
    let mut response = (StatusCode::from_u16(status).unwrap(), "receiver says hello").into_response();
    if let Some(r) = retry_after {
        response.headers_mut().insert("retry-after", r.parse().unwrap());
    }
    response
}

async fn receiver(script: Vec<Answer>) -> (String, Receiver) {
    let r = Receiver { script: Arc::new(Mutex::new(script.into())), ..Receiver::default() };
    let app = Router::new().fallback(receive).with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/hooks/switchboard", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, r)
}

fn hook(url: &str, secret: &Secret) -> WebhookConfig {
    WebhookConfig { secret: secret.expose().into(), timeout: 1, ..switchboard_tests::webhook_config(url, "*") }
}

fn delivery(webhook_id: &str) -> Delivery {
    Delivery {
        delivery_id: "dlv_0001".into(),
        tenant_id: "acme".parse().unwrap(),
        webhook_id: webhook_id.parse().unwrap(),
        event: EventType::CallIncoming,
        timestamp: 1_729_866_000,
        data: json!({"unique_id": "1729866000.123", "caller_id": "+1234567890", "queue_name": "support"}),
        channel: None,
        attempt_base: 0,
    }
}

#[tokio::test]
async fn a_delivery_carries_the_seed_payload_and_both_signatures() {
    let (url, r) = receiver(vec![]).await;
    let secret = Secret::generate();
    let old = Secret::generate();
    let h = hook(&url, &secret);
    let d = delivery(&h.id);
    let client = delivery_client(UrlPolicy::LOCAL, Duration::from_secs(5));
    let attempt = send(&client, &h, &[secret.clone(), old.clone()], &d, 2, UrlPolicy::LOCAL).await;
    assert_eq!(attempt.outcome, Outcome::Delivered);
    assert_eq!((attempt.status, attempt.attempt), (Some(200), 2));
    assert_eq!(attempt.body_excerpt, "receiver says hello");

    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let Received { headers, body } = &got[0];
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload, json!({"event": "call.incoming", "timestamp": 1_729_866_000, "data": d.data}));
    let h_ = |name: &str| headers.get(name).unwrap_or_else(|| panic!("{name} missing")).to_str().unwrap().to_owned();
    assert_eq!(h_("content-type"), "application/json");
    assert_eq!(h_("user-agent"), "Switchboard-Webhook/1.0");
    assert_eq!(h_("x-webhook-event"), "call.incoming");
    assert_eq!(h_("x-webhook-id"), h.id);
    assert_eq!(h_("x-webhook-attempt"), "2");
    assert_eq!(h_("x-webhook-signature"), seed_signature(&secret, body), "the seed's hex HMAC of the body");
    assert_eq!(h_("webhook-id"), "dlv_0001");
    let ts = h_("webhook-timestamp");
    let sigs = h_("webhook-signature");
    assert_eq!(sigs.split(' ').count(), 2, "current and rotated-out secret: {sigs}");
    let now = switchboard::time::now_millis() / 1000;
    for s in [&secret, &old] {
        verify_signature(s, "dlv_0001", &ts, body, &sigs, now, Duration::from_secs(300)).unwrap();
    }
}

#[tokio::test]
async fn failures_say_what_to_do_next() {
    let (url, _r) = receiver(vec![
        (500, None, Duration::ZERO),
        (503, Some("120"), Duration::ZERO),
        (410, None, Duration::ZERO),
        (429, None, Duration::ZERO),
        (400, None, Duration::ZERO),
        (200, None, Duration::from_secs(3)), // slower than the 1 s timeout
    ])
    .await;
    let secret = Secret::generate();
    let h = hook(&url, &secret);
    let d = delivery(&h.id);
    let client = delivery_client(UrlPolicy::LOCAL, Duration::from_secs(30));
    let a = send(&client, &h, std::slice::from_ref(&secret), &d, 1, UrlPolicy::LOCAL).await;
    assert_eq!((a.status, a.outcome), (Some(500), Outcome::Retry { retry_after: None }));
    let a = send(&client, &h, std::slice::from_ref(&secret), &d, 2, UrlPolicy::LOCAL).await;
    assert_eq!(a.outcome, Outcome::Retry { retry_after: Some(Duration::from_secs(120)) });
    let a = send(&client, &h, std::slice::from_ref(&secret), &d, 3, UrlPolicy::LOCAL).await;
    assert_eq!(a.outcome, Outcome::Gone, "410: disable the webhook");
    let a = send(&client, &h, std::slice::from_ref(&secret), &d, 4, UrlPolicy::LOCAL).await;
    assert_eq!(a.outcome, Outcome::Retry { retry_after: None }, "429 is worth retrying");
    let a = send(&client, &h, std::slice::from_ref(&secret), &d, 5, UrlPolicy::LOCAL).await;
    assert_eq!((a.status, a.outcome), (Some(400), Outcome::Rejected), "another 4xx will not get better");
    let a = send(&client, &h, std::slice::from_ref(&secret), &d, 6, UrlPolicy::LOCAL).await;
    assert_eq!((a.status, a.outcome.clone()), (None, Outcome::Retry { retry_after: None }), "timed out");
    assert!(
        a.error.as_deref().unwrap().contains("timed out") || a.error.as_deref().unwrap().contains("timeout"),
        "{a:?}"
    );
    assert!(a.duration_ms < 2500, "the webhook's 1 s timeout applied: {} ms", a.duration_ms);
}

#[tokio::test]
async fn a_stored_url_is_checked_again_before_sending() {
    let (url, r) = receiver(vec![]).await;
    let secret = Secret::generate();
    let h = hook(&url, &secret);
    let client = delivery_client(UrlPolicy::PRODUCTION, Duration::from_secs(5));
    let a = send(&client, &h, std::slice::from_ref(&secret), &delivery(&h.id), 1, UrlPolicy::PRODUCTION).await;
    assert_eq!((a.status, a.outcome), (None, Outcome::Rejected));
    assert!(a.error.unwrap().contains("scheme 'http' is not allowed"));
    assert!(r.got.lock().unwrap().is_empty(), "nothing reached the receiver");
}

/// A receiver whose 200 answer never ends (1 MB chunks, forever) and one
/// that answers a multi-byte character across the excerpt's limit.
async fn endless_receiver() -> String {
    async fn endless() -> Response {
        let chunk = Bytes::from(vec![b'x'; 1 << 20]);
        let stream = futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
        (StatusCode::OK, axum::body::Body::from_stream(stream)).into_response()
    }
    async fn split_char() -> Response {
        let mut body = "a".repeat(switchboard::webhook::RESPONSE_EXCERPT_BYTES - 1);
        body.push('é'); // two bytes: the second falls past the limit
        body.push_str(&"b".repeat(1000));
        (StatusCode::OK, body).into_response()
    }
    let app =
        Router::new().route("/endless", axum::routing::post(endless)).route("/split", axum::routing::post(split_char));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn only_the_excerpt_of_a_response_is_read() {
    // Reading the whole body (the old way) never ends here: the attempt ran
    // into its timeout and kept nothing. Now the sender stops at the excerpt.
    let base = endless_receiver().await;
    let secret = Secret::generate();
    let mut h = hook(&format!("{base}/endless"), &secret);
    h.timeout = 10;
    let client = delivery_client(UrlPolicy::LOCAL, Duration::from_secs(30));
    let a = send(&client, &h, std::slice::from_ref(&secret), &delivery(&h.id), 1, UrlPolicy::LOCAL).await;
    assert_eq!((a.status, a.outcome.clone(), a.error.clone()), (Some(200), Outcome::Delivered, None), "{a:?}");
    assert_eq!(a.body_excerpt.len(), switchboard::webhook::RESPONSE_EXCERPT_BYTES, "exactly the excerpt was kept");

    let h = hook(&format!("{base}/split"), &secret);
    let a = send(&client, &h, std::slice::from_ref(&secret), &delivery(&h.id), 1, UrlPolicy::LOCAL).await;
    assert_eq!(
        a.body_excerpt.len(),
        switchboard::webhook::RESPONSE_EXCERPT_BYTES - 1,
        "cut before the split character"
    );
    assert!(a.body_excerpt.bytes().all(|b| b == b'a'));
}
