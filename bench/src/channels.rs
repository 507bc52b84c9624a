//! Benchmark 15: channels and batches (issue 31), against the emulator on
//! a real redis-server, with WebSocket clients in this process.
//!
//! - A batch of 20 events to 1,000 connections beside 20 single publishes:
//!   the posts made (frames the clients received: each is one API Gateway
//!   message) and the time until the last client has all 20.
//! - A publish to a channel of 50 in a tenant of 10,000 connections (the
//!   others in channels of their own): the posts made, and publish → receive
//!   p50 / p99, beside a publish to 50 connections in a tenant of 50 (both
//!   tenants connected at once, their publishes interleaved, so the server's
//!   load is the same for both and only the tenant's size differs).
//! - Redis bytes per channel subscription (`MEMORY USAGE` of the channels'
//!   subscriber hashes and the connections' channel hashes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::ids::Role;
use tokio_tungstenite::tungstenite::Message;

use crate::report::Series;
use crate::servers::{Server, start, token};

/// What benchmark 15 measured.
#[derive(Default)]
pub(crate) struct Channels {
    /// Connections the batch went to, and the events in it.
    pub batch_to: usize,
    pub batch_events: usize,
    pub batch_posts: Series,
    pub batch_ms: Series,
    pub singles_posts: Series,
    pub singles_ms: Series,
    /// The channel's subscribers, the tenant's connections, the events published.
    pub channel_size: usize,
    pub tenant_size: usize,
    pub channel_events: usize,
    pub channel_posts: Series,
    pub channel_p50_ms: Series,
    pub channel_p99_ms: Series,
    pub small_p50_ms: Series,
    pub small_p99_ms: Series,
    pub bytes_per_subscription: Series,
}

/// What every client saw: frames (posts), events, and when each marked event arrived.
#[derive(Default)]
struct Seen {
    frames: AtomicUsize,
    events: AtomicUsize,
    arrivals: Mutex<HashMap<u64, Vec<Instant>>>,
}

/// Opens `n` connections of tenant `tenant`, each subscribing with `frame(i)`;
/// their frames and events are counted in `seen`.
async fn clients(
    ws_url: &str,
    tenant: &str,
    n: usize,
    frame: impl Fn(usize) -> Value,
    seen: &Arc<Seen>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let role = Role::Supervisor;
    let frames: Vec<Value> = (0..n).map(frame).collect();
    let opened = futures::stream::iter(frames.into_iter().enumerate())
        .map(|(i, subscribe)| {
            let who = switchboard::ids::Identity::new(
                tenant.parse().expect("a tenant id"),
                format!("u{i}").parse().expect("a user id"),
                role,
            );
            let url = format!(
                "{ws_url}?token={}",
                switchboard::auth::mint_hs256(crate::servers::SECRET.as_bytes(), &who, 3600)
            );
            async move {
                // A handshake can be lost at this rate (a full accept queue): try again rather than wait forever.
                let mut tries = 0;
                let mut ws = loop {
                    tries += 1;
                    match tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(&url)).await {
                        Ok(Ok((ws, _))) => break ws,
                        Ok(Err(e)) if tries >= 3 => return Err(e.into()),
                        Err(_) if tries >= 3 => anyhow::bail!("handshake timed out three times"),
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                };
                ws.send(Message::text(subscribe.to_string())).await?;
                // The subscribed reply (a channel subscribe with since also answers recovered).
                let reply = tokio::time::timeout(Duration::from_secs(30), ws.next()).await?.context("closed")??;
                anyhow::ensure!(reply.to_text()?.contains("subscribed"), "subscribe answered {reply}");
                if subscribe.get("since").is_some() {
                    tokio::time::timeout(Duration::from_secs(30), ws.next()).await?.context("closed")??;
                }
                Ok::<_, anyhow::Error>(ws)
            }
        })
        .buffer_unordered(100)
        .collect::<Vec<_>>()
        .await;
    let mut tasks = Vec::with_capacity(n);
    for ws in opened {
        let mut ws = ws?;
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let at = Instant::now();
                let Ok(text) = m.to_text() else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text) else { continue };
                seen.frames.fetch_add(1, Ordering::Relaxed);
                let events = match v["events"].as_array() {
                    Some(list) if v["type"] == "batch" => list.clone(),
                    _ => vec![v],
                };
                for e in events {
                    seen.events.fetch_add(1, Ordering::Relaxed);
                    if let Some(mark) = e["data"]["mark"].as_u64() {
                        seen.arrivals.lock().unwrap().entry(mark).or_default().push(at);
                    }
                }
            }
        }));
    }
    Ok(tasks)
}

async fn until(what: &str, counter: &AtomicUsize, want: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter.load(Ordering::Relaxed) < want {
        anyhow::ensure!(Instant::now() < deadline, "{what}: {} of {want}", counter.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Publish → receive p50 and p99 over every delivery of the events `sent`, in ms.
fn latencies(sent: &HashMap<u64, Instant>, seen: &Seen) -> (f64, f64) {
    let arrivals = seen.arrivals.lock().unwrap();
    let mut ms: Vec<f64> = sent
        .iter()
        .flat_map(|(mark, at)| {
            arrivals.get(mark).into_iter().flatten().map(move |got| got.duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99))
}

/// Benchmark 15; `big` connections in the large tenant (10,000 in a full run).
pub(crate) fn measure(redis_url: &str, redis_port: u16, big: usize, repeats: usize) -> anyhow::Result<Channels> {
    let rt = tokio::runtime::Runtime::new()?;
    let server =
        Server::Switchboard { redis: Some(redis_url.to_owned()), over_http: false, history: None, args: vec![] };
    let batch_to = big.min(1000);
    let channel_size = 50;
    let channel_events = 200;
    let mut out =
        Channels { batch_to, batch_events: 20, channel_size, tenant_size: big, channel_events, ..Channels::default() };
    for _ in 0..repeats {
        let started = start(&server)?;
        rt.block_on(async {
            // A request the server does not answer fails the run rather than hanging it.
            let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
            let api = format!("{}/v1/events", started.http);
            // 1. A batch of 20 to `batch_to` connections, beside 20 single publishes.
            let seen = Arc::new(Seen::default());
            let tasks = clients(
                &started.ws_url,
                "batch",
                batch_to,
                |_| json!({"action": "subscribe", "channel": "queue:all"}),
                &seen,
            )
            .await?;
            let event = |n: usize| json!({"type": "queue.stats", "target": {"channel": "queue:all"}, "data": {"n": n}});
            let service = switchboard::ids::Identity::new("batch".parse()?, "svc".parse()?, Role::Service);
            let bearer = switchboard::auth::mint_hs256(crate::servers::SECRET.as_bytes(), &service, 3600);
            // Warm: the scripts, the HTTP pool.
            http.post(&api).bearer_auth(&bearer).json(&event(0)).send().await?.error_for_status()?;
            until("warm-up", &seen.events, batch_to).await?;
            let (frames0, events0) = (seen.frames.load(Ordering::Relaxed), seen.events.load(Ordering::Relaxed));
            let t0 = Instant::now();
            for n in 0..20 {
                http.post(&api).bearer_auth(&bearer).json(&event(n)).send().await?.error_for_status()?;
            }
            until("20 single publishes", &seen.events, events0 + 20 * batch_to).await?;
            out.singles_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            out.singles_posts.push((seen.frames.load(Ordering::Relaxed) - frames0) as f64);
            let (frames1, events1) = (seen.frames.load(Ordering::Relaxed), seen.events.load(Ordering::Relaxed));
            let batch = json!({"events": (0..20).map(event).collect::<Vec<_>>()});
            let t0 = Instant::now();
            http.post(&api).bearer_auth(&bearer).json(&batch).send().await?.error_for_status()?;
            until("the batch", &seen.events, events1 + 20 * batch_to).await?;
            out.batch_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            out.batch_posts.push((seen.frames.load(Ordering::Relaxed) - frames1) as f64);
            for t in tasks {
                t.abort();
            }

            // 2. A channel of 50 in a tenant of `big`, beside a tenant of 50: both
            // tenants connected at once (the server holds the same connections
            // for both), their publishes interleaved (the same load for both).
            let seen = Arc::new(Seen::default());
            let subscribe = |i: usize| {
                let channel = if i < channel_size { "queue:hot".to_owned() } else { format!("queue:q{}", i % 500) };
                json!({"action": "subscribe", "channel": channel})
            };
            eprintln!("bench: channels: {big} connections of one tenant");
            let mut tasks = clients(&started.ws_url, "bench", big, subscribe, &seen).await?;
            eprintln!("bench: channels: connected");
            let small = Arc::new(Seen::default());
            let small_sub = |_| json!({"action": "subscribe", "events": ["queue.*"]});
            tasks.extend(clients(&started.ws_url, "small", channel_size, small_sub, &small).await?);
            let service = switchboard::ids::Identity::new("small".parse()?, "svc".parse()?, Role::Service);
            let bearer_small = switchboard::auth::mint_hs256(crate::servers::SECRET.as_bytes(), &service, 3600);
            let bearer_big = token("svc", Role::Service);
            eprintln!("bench: channels: publishing");
            let frames0 = seen.frames.load(Ordering::Relaxed);
            let (mut sent_big, mut sent_small) = (HashMap::new(), HashMap::new());
            let gap = Duration::from_millis(5);
            for mark in 0..channel_events as u64 {
                let body = json!({"type": "queue.stats", "target": {"channel": "queue:hot"}, "data": {"mark": mark}});
                sent_big.insert(mark, Instant::now());
                http.post(&api).bearer_auth(&bearer_big).json(&body).send().await?.error_for_status()?;
                tokio::time::sleep(gap).await;
                let body = json!({"type": "queue.stats", "data": {"mark": mark}});
                sent_small.insert(mark, Instant::now());
                http.post(&api).bearer_auth(&bearer_small).json(&body).send().await?.error_for_status()?;
                tokio::time::sleep(gap).await;
            }
            until("the channel's deliveries", &seen.events, channel_events * channel_size).await?;
            until("the small tenant's deliveries", &small.events, channel_events * channel_size).await?;
            out.channel_posts.push((seen.frames.load(Ordering::Relaxed) - frames0) as f64);
            let (p50, p99) = latencies(&sent_big, &seen);
            out.channel_p50_ms.push(p50);
            out.channel_p99_ms.push(p99);
            let (p50, p99) = latencies(&sent_small, &small);
            out.small_p50_ms.push(p50);
            out.small_p99_ms.push(p99);
            // The subscriptions' Redis memory: every channel hash and connection channel hash of the tenant.
            let mut bytes = 0.0;
            for pattern in
                [format!("{}:ch:{{bench}}:*", started.prefix), format!("{}:connch:{{bench}}:*", started.prefix)]
            {
                for key in switchboard_test_support::redis_cmd(redis_port, &["KEYS", &pattern])?
                    .lines()
                    .filter(|l| !l.is_empty())
                {
                    let used =
                        switchboard_test_support::redis_cmd(redis_port, &["MEMORY", "USAGE", key, "SAMPLES", "0"])?;
                    bytes += used.trim().parse::<f64>().unwrap_or(0.0);
                }
            }
            out.bytes_per_subscription.push(bytes / big as f64);
            for t in tasks {
                t.abort();
            }
            Ok::<_, anyhow::Error>(())
        })?;
        drop(started);
    }
    Ok(out)
}

/// Benchmark 15's rows of the main table.
pub(crate) fn rows(c: &Channels) -> Vec<crate::report::Row> {
    use crate::report::Row;
    let verdict = |ok: bool| if ok { "met" } else { "**not met**" };
    let posts_ok = c.batch_posts.median() == c.batch_to as f64;
    let within = c.channel_p99_ms.median() / c.small_p99_ms.median();
    let within50 = c.channel_p50_ms.median() / c.small_p50_ms.median();
    vec![
        Row {
            n: "15",
            what: format!(
                "a batch of {} events to {} connections: posts made (frames received), beside {} single publishes",
                c.batch_events, c.batch_to, c.batch_events
            ),
            ours: c.batch_posts.show("posts"),
            theirs: c.singles_posts.show("posts"),
            ratio: format!("{:.0}× fewer", c.singles_posts.median() / c.batch_posts.median()),
            target: "one post per connection",
            verdict: verdict(posts_ok),
        },
        Row {
            n: "15",
            what: "the same: until the last connection has all of them".into(),
            ours: c.batch_ms.show("ms"),
            theirs: c.singles_ms.show("ms"),
            ratio: format!("{:.1}× faster", c.singles_ms.median() / c.batch_ms.median()),
            target: "(faster)",
            verdict: verdict(c.batch_ms.median() < c.singles_ms.median()),
        },
        Row {
            n: "15",
            what: format!(
                "{} publishes to a channel of {} in a tenant of {} connections: posts made",
                c.channel_events, c.channel_size, c.tenant_size
            ),
            ours: c.channel_posts.show("posts"),
            theirs: format!("{}", c.channel_events * c.channel_size),
            ratio: "—".into(),
            target: "only the channel's",
            verdict: verdict(c.channel_posts.median() == (c.channel_events * c.channel_size) as f64),
        },
        Row {
            n: "15",
            what: format!(
                "the same, publish → receive p50; beside it a publish to {} connections in a tenant of {}",
                c.channel_size, c.channel_size
            ),
            ours: c.channel_p50_ms.show("ms"),
            theirs: c.small_p50_ms.show("ms"),
            ratio: format!("{within50:.2}×"),
            target: "≤ 1.2×",
            verdict: verdict(within50 <= 1.2),
        },
        Row {
            n: "15",
            what: "the same, p99".into(),
            ours: c.channel_p99_ms.show("ms"),
            theirs: c.small_p99_ms.show("ms"),
            ratio: format!("{within:.2}×"),
            target: "≤ 1.2×",
            verdict: verdict(within <= 1.2),
        },
    ]
}

/// Benchmark 15's section.
pub(crate) fn section(c: &Channels) -> String {
    let show = |x: &Series| x.show("").trim_end().to_owned();
    format!(
        "## 15. Channels and batches\n\n\
         Each frame a client receives is one `@connections` post: one API Gateway message, billed and counted against the account's quota. \
         A batch of {} events reached each of {} connections as one frame ({} posts; {} single publishes made {}). \
         A publish to a channel of {} in a tenant of {} connections (the others in 500 channels of their own) made {} posts for {} events: the channel's subscribers only, \
         resolved in one script that reads the channel's subscriber hash, not the tenant. \
         A channel subscription keeps {} bytes of Redis (`MEMORY USAGE` of the channels' subscriber hashes and the connections' channel hashes, per subscription).\n\n",
        c.batch_events,
        c.batch_to,
        show(&c.batch_posts),
        c.batch_events,
        show(&c.singles_posts),
        c.channel_size,
        c.tenant_size,
        show(&c.channel_posts),
        c.channel_events,
        show(&c.bytes_per_subscription),
    )
}
