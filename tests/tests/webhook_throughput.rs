//! How many signed webhook deliveries per second go through the emulator's
//! SQS and the `webhook` function to a local receiver. Ignored by `make
//! test` (a measurement, not a check of behaviour beyond "all arrived,
//! once"); run it with
//!
//! ```sh
//! cargo test --release -p switchboard-tests --test webhook_throughput -- --ignored --nocapture
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use serde_json::json;
use switchboard::Context;
use switchboard::auth::Verifier;
use switchboard::config::{AuthConfig, Config, RedisConfig};
use switchboard::ssrf::UrlPolicy;
use switchboard::webhook::{Delivery, Secret, WebhookConfig};
use switchboard_local::{Emulator, MappingSettings, Mode, Settings, queues};
use switchboard_tests::{shared_redis, unique_prefix};

async fn measure(redis: bool, n: usize) {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let app = Router::new().fallback({
        let seen = seen.clone();
        move |headers: HeaderMap| async move {
            let id = headers.get("webhook-id").unwrap().to_str().unwrap().to_owned();
            seen.lock().unwrap().insert(id);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let config = Config {
        redis: redis.then(|| RedisConfig::single(shared_redis().url())),
        key_prefix: unique_prefix(),
        webhook_urls: UrlPolicy::LOCAL,
        ..Config::default()
    };
    let ctx = Context::from_config(config);
    let tenant = "acme".parse().unwrap();
    let hook = WebhookConfig {
        id: WebhookConfig::new_id(),
        name: "bench".into(),
        url,
        events: vec!["*".parse().unwrap()],
        secret: Secret::generate().expose().to_owned(),
        is_active: true,
        retry_count: 3,
        timeout: 5,
        created_at: 0,
        updated_at: 0,
        previous_secrets: vec![],
        disabled_reason: None,
    };
    ctx.store.put_webhook(&tenant, &hook.id, &serde_json::to_string(&hook).unwrap()).await.unwrap();
    let settings = Settings {
        mapping: MappingSettings { batch_size: 10, pollers: 16, ..MappingSettings::default() },
        ..Settings::ephemeral()
    };
    let verifier = Verifier::new(&AuthConfig::hs256(b"throughput-secret-throughput-secret!".to_vec())).unwrap();
    let emu = Emulator::start(settings, Mode::InProcess { ctx, verifier }).await.unwrap();
    let queue = emu.queue_url(queues::WEBHOOKS);

    let started = Instant::now();
    for i in 0..n {
        let d = Delivery {
            delivery_id: format!("msg_{i:08}"),
            tenant_id: tenant.clone(),
            webhook_id: hook.id.clone(),
            event: switchboard::event::EventType::CallIncoming,
            timestamp: 1_800_000_000,
            data: json!({"n": i, "caller_id": "+15550000000", "queue": "support"}),
            attempt_base: 0,
        };
        emu.sqs.send(&queue, &serde_json::to_string(&d).unwrap(), None, Default::default()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} arrived", seen.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let store = if redis { "Redis" } else { "memory" };
    eprintln!(
        "{n} signed deliveries through the emulator's SQS ({build}, {store} store): {took:?}, {:.0} deliveries/s",
        n as f64 / took.as_secs_f64()
    );
    assert_eq!(seen.lock().unwrap().len(), n);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run with --ignored --nocapture, preferably --release"]
async fn webhook_deliveries_per_second() {
    measure(false, 5000).await;
    measure(true, 5000).await;
}
