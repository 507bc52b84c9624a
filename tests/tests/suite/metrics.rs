//! Metrics (issue 17, point 1): the emulator's `GET /metrics`, scraped and
//! parsed as Prometheus text, moves as things happen — a publish, a
//! delivery, a post answered 410, a webhook delivered and one dead-lettered —
//! and a Lambda function's EMF lines are valid Embedded Metric Format.
//!
//! The Prometheus recorder is the process's (one per process, as in the
//! binary), so other tests running beside this one count too: every
//! assertion is on how much a counter moved at least.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::config::{Config, RedisConfig, WebhookSettings};
use switchboard::ids::{ConnectionId, Role};
use switchboard::ssrf::UrlPolicy;
use switchboard::store::Connection;
use switchboard::webhook::RetrySchedule;
use switchboard_local::{Emulator, Mode, Settings};
use switchboard_test_support::shared_redis;
use switchboard_tests::ws::{connect, request};
use switchboard_tests::{eventually, unique_prefix};

fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| switchboard_local::install_prometheus().expect("the process's recorder")).clone()
}

/// One sample: metric name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// The samples of one scrape; a histogram's count under its name.
async fn scrape(http: &reqwest::Client, emu: &Emulator) -> Vec<Sample> {
    let text = http.get(format!("{}/metrics", emu.http_url())).send().await.unwrap().text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    parsed
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
                prometheus_parse::Value::Summary(_) => 0.0,
            };
            let mut labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            labels.sort();
            (s.metric, labels, value)
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test]
async fn the_emulators_metrics_move_with_publishes_deliveries_410s_and_dead_letters() {
    // A receiver: /ok answers 200, /fail 500.
    let receiver = Router::new()
        .route("/ok", post(|| async { StatusCode::OK }))
        .route("/fail", post(|| async { StatusCode::INTERNAL_SERVER_ERROR }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hooks = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let config = Config {
        redis: Some(RedisConfig::single(shared_redis().url())),
        key_prefix: unique_prefix(),
        webhook_urls: UrlPolicy::LOCAL,
        webhooks: WebhookSettings {
            schedule: RetrySchedule { delays: vec![Duration::from_secs(1)], jitter: 0.0 },
            breaker_threshold: 0,
            ..WebhookSettings::default()
        },
        ..Config::default()
    };
    let ctx = Context::from_config(config);
    let mode = Mode::InProcess { ctx: ctx.clone(), verifier: switchboard_tests::auth::verifier() };
    let emu = Emulator::start(Settings { metrics: Some(prometheus()), ..Settings::ephemeral() }, mode).await.unwrap();
    let http = reqwest::Client::new();
    let admin = switchboard_tests::auth::token("mtr", "boss", Role::Admin);
    for (name, url, retries) in [("ok", "/ok", 2), ("fail", "/fail", 0)] {
        let body = json!({"name": name, "url": format!("{hooks}{url}"), "events": ["call.*"], "retry_count": retries});
        let r = http.post(format!("{}/v1/webhooks", emu.http_url())).bearer_auth(&admin).json(&body).send().await;
        assert_eq!(r.unwrap().status(), 201);
    }
    let before = scrape(&http, &emu).await;

    // A live subscriber, and a recorded connection the gateway no longer has (410).
    let token = switchboard_tests::auth::token("mtr", "u1", Role::Agent);
    let (mut ws, _) = connect(&format!("{}?token={token}", emu.ws_url()), &[]).await.unwrap();
    assert_eq!(request(&mut ws, json!({"action": "subscribe", "events": ["call.*"]})).await["type"], "subscribed");
    let ghost = Connection {
        id: "ghostmtr=".parse::<ConnectionId>().unwrap(),
        tenant_id: "mtr".parse().unwrap(),
        user_id: "u2".parse().unwrap(),
        role: Role::Agent,
        endpoint: emu.connections_endpoint(),
        connected_at: switchboard::time::now_millis(),
    };
    ctx.store.register(&ghost).await.unwrap();
    ctx.store.subscribe(&ghost.tenant_id, &ghost.id, &["call.*".parse().unwrap()]).await.unwrap();

    let service = switchboard_tests::auth::token("mtr", "svc", Role::Service);
    let r = http
        .post(format!("{}/v1/events", emu.http_url()))
        .bearer_auth(&service)
        .json(&json!({"type": "call.incoming", "data": {}}))
        .send()
        .await
        .unwrap();
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        (report["report"]["delivered"].as_u64(), report["report"]["gone"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );

    let moved = |after: &[Sample], name: &str, label: Option<(&str, &str)>| {
        value(after, name, label) - value(&before, name, label)
    };
    eventually("both webhook attempts and the dead letter counted", || async {
        let after = scrape(&http, &emu).await;
        moved(&after, switchboard::metrics::WEBHOOK_ATTEMPTS, Some(("outcome", "delivered"))) >= 1.0
            && moved(&after, switchboard::metrics::DEAD_LETTERS, Some(("queue", "webhooks"))) >= 1.0
    })
    .await;
    let after = scrape(&http, &emu).await;
    use switchboard::metrics as m;
    for (name, label) in [
        (m::CONNECTIONS_OPENED, None),
        (m::MESSAGES_IN, Some(("action", "subscribe"))),
        (m::EVENTS_PUBLISHED, Some(("family", "call"))),
        (m::DELIVERIES, Some(("outcome", "delivered"))),
        (m::DELIVERIES, Some(("outcome", "gone"))),
        (m::FANOUT_DURATION, None),
        (m::WEBHOOK_ATTEMPTS, Some(("outcome", "dead"))),
        (m::WEBHOOK_LATENCY, None),
    ] {
        assert!(moved(&after, name, label) >= 1.0, "{name} {label:?} did not move");
    }
    assert!(value(&after, m::CONNECTIONS_CURRENT, None) >= 1.0, "the subscriber is open");
    emu.shutdown().await;
}

/// The Embedded Metric Format's rules (AWS's specification and its JSON
/// schema, which CloudWatch applies to every log line that carries `_aws`):
/// `_aws.Timestamp` in epoch milliseconds; `CloudWatchMetrics`, directives
/// of a `Namespace` (1-255 characters), `Dimensions` (sets of at most 30
/// names) and `Metrics` (at most 100, each a `Name` of 1-255 characters
/// and a `Unit` CloudWatch knows); every dimension a string member of the
/// root, every metric a number or an array of at most 100 numbers there.
fn check_emf(line: &str) -> Result<(), String> {
    const UNITS: &[&str] = &[
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    ];
    let doc: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let aws = doc.get("_aws").and_then(Value::as_object).ok_or("no _aws object")?;
    aws.get("Timestamp")
        .and_then(Value::as_i64)
        .filter(|t| *t > 0)
        .ok_or("_aws.Timestamp is not epoch milliseconds")?;
    let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array).ok_or("no CloudWatchMetrics array")?;
    if directives.is_empty() {
        return Err("CloudWatchMetrics is empty".into());
    }
    for d in directives {
        let ns = d.get("Namespace").and_then(Value::as_str).ok_or("a directive without a Namespace")?;
        if ns.is_empty() || ns.len() > 255 {
            return Err(format!("Namespace '{ns}' is not 1-255 characters"));
        }
        for set in d.get("Dimensions").and_then(Value::as_array).ok_or("no Dimensions")? {
            let names = set.as_array().ok_or("a dimension set is not an array")?;
            if names.len() > 30 {
                return Err("more than 30 dimensions in a set".into());
            }
            for name in names {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                doc.get(name).and_then(Value::as_str).ok_or(format!("dimension {name} is not a string at the root"))?;
            }
        }
        let metrics = d.get("Metrics").and_then(Value::as_array).ok_or("no Metrics")?;
        if metrics.is_empty() || metrics.len() > 100 {
            return Err("Metrics must hold 1 to 100 definitions".into());
        }
        for m in metrics {
            let name = m.get("Name").and_then(Value::as_str).ok_or("a metric without a Name")?;
            if name.is_empty() || name.len() > 255 {
                return Err(format!("metric name '{name}' is not 1-255 characters"));
            }
            if let Some(unit) = m.get("Unit") {
                let unit = unit.as_str().ok_or("a Unit is not a string")?;
                if !UNITS.contains(&unit) {
                    return Err(format!("unit '{unit}' is not one CloudWatch knows"));
                }
            }
            match doc.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values)) if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                other => return Err(format!("metric {name} is {other:?}, not a number or up to 100 numbers")),
            }
        }
    }
    Ok(())
}

#[test]
fn a_functions_emf_lines_are_embedded_metric_format() {
    use switchboard_tests::{Backend, event_fixture};
    let emf = switchboard::metrics::Emf::new("ws-message");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The handlers run on this thread, so this thread's recorder sees what they record.
    metrics::with_local_recorder(&emf, || {
        runtime.block_on(async {
            let ctx = Context::new(Config::default(), Backend::Memory.store(Default::default()));
            ws_connect::handle(&ctx, event_fixture("ws-connect.json")).await;
            ws_message::handle(&ctx, event_fixture("ws-message.json")).await;
            ws_message::handle(&ctx, event_fixture("ws-message.json")).await;
            switchboard::metrics::posts(3, 1, 0, 0, Duration::from_millis(4));
            switchboard::metrics::posts(1, 0, 0, 0, Duration::from_millis(2));
        })
    });
    let lines = emf.drain(1_796_000_000_000);
    for line in &lines {
        check_emf(line).unwrap_or_else(|e| panic!("not EMF ({e}): {line}"));
    }
    let docs: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |metric: &str| {
        docs.iter().find(|d| d.get(metric).is_some()).unwrap_or_else(|| panic!("no {metric}: {lines:?}"))
    };
    let subscribes = find(switchboard::metrics::MESSAGES_IN);
    assert_eq!(
        (subscribes["function"].as_str(), subscribes["action"].as_str()),
        (Some("ws-message"), Some("subscribe"))
    );
    assert_eq!(subscribes[switchboard::metrics::MESSAGES_IN], 2.0, "two frames between flushes: one value");
    assert_eq!(find(switchboard::metrics::CONNECTIONS_OPENED)[switchboard::metrics::CONNECTIONS_OPENED], 1.0);
    let durations = find(switchboard::metrics::FANOUT_DURATION);
    // A distribution keeps every value: presence.online's fan-out on connect, then the two above.
    let values = durations[switchboard::metrics::FANOUT_DURATION].as_array().unwrap();
    assert_eq!((values.len(), &values[1..]), (3, &[json!(0.004), json!(0.002)][..]), "{values:?}");
    let definitions = durations["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
    assert!(
        definitions.contains(&json!({"Name": switchboard::metrics::FANOUT_DURATION, "Unit": "Seconds"})),
        "{definitions:?}"
    );
    let delivered = docs.iter().find(|d| d["outcome"] == "delivered").expect("deliveries by outcome");
    assert_eq!(delivered[switchboard::metrics::DELIVERIES], 4.0);
    assert_eq!(delivered["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["function", "outcome"]]));
    assert!(emf.drain(1_796_000_000_001).is_empty(), "a flush starts over: nothing twice");
    // The checker refuses what is not EMF.
    assert!(check_emf(r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["f"]],"Metrics":[{"Name":"m","Unit":"Parsecs"}]}]},"f":"x","m":1}"#).is_err());
    assert!(check_emf(r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["f"]],"Metrics":[{"Name":"m"}]}]},"m":1}"#).is_err());
}

/// Issue 29, point 5: more than 100 values of one metric between flushes
/// (a sweep of many tenants, a batch of many events) go out in several
/// documents, each within EMF's 100 values; none is dropped.
#[test]
fn more_than_100_values_are_split_across_emf_documents() {
    let emf = switchboard::metrics::Emf::new("fanout");
    metrics::with_local_recorder(&emf, || {
        for i in 0..250 {
            switchboard::metrics::posts(1, 0, 0, 0, Duration::from_millis(i));
        }
    });
    let lines = emf.drain(1_796_000_000_000);
    for line in &lines {
        check_emf(line).unwrap_or_else(|e| panic!("not EMF ({e}): {line}"));
    }
    let mut durations: Vec<f64> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|d| d.get(switchboard::metrics::FANOUT_DURATION).cloned())
        .flat_map(|v| match v {
            Value::Array(values) => values.into_iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>(),
            one => vec![one.as_f64().unwrap()],
        })
        .collect();
    assert_eq!(durations.len(), 250, "every value, in {} documents", lines.len());
    durations.sort_by(f64::total_cmp);
    assert_eq!((durations[0], durations[249]), (0.0, 0.249));
}
