//! Benchmark 7: signed webhook deliveries through the emulator's SQS and the
//! `webhook` function to a local receiver, in this process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap;
use serde_json::json;
use switchboard::Context;
use switchboard::auth::AuthConfig;
use switchboard::auth::Verifier;
use switchboard::config::Config;
use switchboard::ssrf::UrlPolicy;
use switchboard::webhook::{Delivery, WebhookConfig};
use switchboard_local::{Emulator, MappingSettings, Mode, Settings, queues};

/// Queues `n` deliveries and times until the receiver has them all.
pub async fn deliveries_per_sec(n: usize) -> anyhow::Result<f64> {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let app = Router::new().fallback({
        let seen = seen.clone();
        move |headers: HeaderMap| async move {
            if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
                seen.lock().unwrap().insert(id.to_owned());
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = Config { webhook_urls: UrlPolicy::LOCAL, ..Config::default() };
    let ctx = Context::from_config(config);
    let tenant: switchboard::ids::TenantId = "bench".parse()?;
    let hook = WebhookConfig::new("bench", url, vec!["*".parse()?], 0);
    ctx.store.save_webhook(&tenant, &hook).await?;
    let settings =
        Settings { mapping: MappingSettings { pollers: 16, ..MappingSettings::default() }, ..Settings::ephemeral() };
    let verifier = Verifier::new(&AuthConfig::hs256(b"bench-webhooks-secret-bench-webhooks!!".to_vec()))?;
    let emu = Emulator::start(settings, Mode::InProcess { ctx, verifier }).await?;
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
            channel: None,
            attempt_base: 0,
        };
        emu.sqs.send(&queue, &serde_json::to_string(&d)?, None, Default::default()).map_err(anyhow::Error::msg)?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().unwrap().len() < n {
        anyhow::ensure!(Instant::now() < deadline, "only {} of {n} deliveries arrived", seen.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    emu.shutdown().await;
    Ok(rate)
}
