//! The load client: its own process (10,000 sockets on each side do not fit
//! one process's open-files limit), driven by the orchestrator through
//! stdin/stdout lines of JSON.
//!
//! It connects N WebSocket clients, reports the handshake times, then runs
//! the commands it is sent: time a broadcast until every client has it,
//! time a burst of events, measure publish-to-receive latency. It measures
//! itself too: its CPU time is reported with every result.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;

/// What the orchestrator asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Time one broadcast: trigger it, wait until every client has a frame containing `marker`.
    Broadcast {
        /// How to trigger it.
        trigger: Trigger,
        /// A string only this broadcast's frames contain.
        marker: String,
    },
    /// Trigger `count` broadcasts (at most `in_flight` at once) and time
    /// until every client has had all of them.
    Burst {
        /// The triggers, one per event (markers are counted by frame).
        triggers: Vec<Trigger>,
        /// Concurrent triggers.
        in_flight: usize,
    },
    /// Publish to random single users at `rate` per second for `secs`;
    /// report publish-to-receive latency percentiles.
    Latency {
        /// `POST /v1/events` URL.
        url: String,
        /// A service token.
        token: String,
        /// Events per second, all users together.
        rate: u32,
        /// How long.
        secs: u32,
    },
    /// Close every socket and exit.
    Quit,
}

/// How a broadcast is started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// `POST url` with a bearer token and a JSON body (Switchboard's HTTP API).
    Http {
        /// The URL.
        url: String,
        /// Bearer token.
        token: String,
        /// The body.
        body: Value,
    },
    /// Send this text on client 0 (the baseline server broadcasts it).
    Text {
        /// The frame.
        text: String,
    },
}

/// The client's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// WebSocket URL; `{i}` is replaced by the client's index, `{token}` by a
    /// token for user `u{i}` of tenant `bench` signed with `BENCH_JWT_SECRET`.
    #[arg(long)]
    pub url: String,
    /// How many sockets.
    #[arg(long)]
    pub n: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Sent by every client after connecting (a subscribe), waiting for one reply.
    #[arg(long)]
    pub hello: Option<String>,
    /// Retry a failed handshake this many times (serverless-offline refuses
    /// some under load); the retries are reported. 0: any failure ends the run.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
}

struct Socket {
    tx: mpsc::UnboundedSender<Message>,
}

struct Shared {
    /// Frames seen containing the current marker.
    hits: AtomicUsize,
    marker: std::sync::RwLock<String>,
    /// All text frames received.
    frames: AtomicUsize,
    changed: Notify,
    /// Latency samples: receive instant minus the `sent_ns` in the frame.
    latencies: std::sync::Mutex<Vec<u64>>,
    started: Instant,
}

fn cpu_secs() -> f64 {
    crate::procfs::cpu_time(std::process::id()).as_secs_f64()
}

fn say(v: Value) {
    println!("{v}");
}

/// Runs the client until `quit` or end of input.
pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        hits: AtomicUsize::new(0),
        marker: std::sync::RwLock::new(String::from("\u{0}")),
        frames: AtomicUsize::new(0),
        changed: Notify::new(),
        latencies: std::sync::Mutex::new(Vec::new()),
        started: Instant::now(),
    });
    // Tokens are minted before the clock starts: a real client arrives with
    // one, and minting is the client's cost, not the server's.
    let urls: Vec<String> = (0..args.n)
        .map(|i| {
            let mut url = args.url.replace("{i}", &i.to_string());
            if url.contains("{token}") {
                let secret = std::env::var("BENCH_JWT_SECRET").unwrap_or_default();
                let who = switchboard::ids::Identity::new(
                    "bench".parse().expect("a tenant id"),
                    format!("u{i}").parse().expect("a user id"),
                    switchboard::ids::Role::Agent,
                );
                url = url.replace("{token}", &switchboard::auth::mint_hs256(secret.as_bytes(), &who, 3600));
            }
            url
        })
        .collect();
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let retried = Arc::new(AtomicUsize::new(0));
    let handshakes: Vec<(Socket, u64)> = futures::stream::iter(urls)
        .map(|url| {
            let hello = args.hello.clone();
            let shared = shared.clone();
            let (retries, retried) = (args.retries, retried.clone());
            async move {
                let mut attempt = 0;
                loop {
                    match connect(&url, hello.clone(), shared.clone()).await {
                        Err(_) if attempt < retries => {
                            attempt += 1;
                            retried.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                        }
                        done => break done,
                    }
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let took = t0.elapsed();
    let mut micros: Vec<u64> = handshakes.iter().map(|(_, us)| *us).collect();
    micros.sort_unstable();
    let sockets: Vec<Socket> = handshakes.into_iter().map(|(s, _)| s).collect();
    say(json!({
        "event": "connected", "n": sockets.len(), "secs": took.as_secs_f64(),
        "rate": sockets.len() as f64 / took.as_secs_f64(),
        "handshake_p50_ms": pct(&micros, 0.50) as f64 / 1000.0, "handshake_p99_ms": pct(&micros, 0.99) as f64 / 1000.0,
        "client_cpu_secs": cpu_secs() - cpu0, "retried": retried.load(Ordering::Relaxed),
    }));

    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let cmd: Command = match serde_json::from_str(&line) {
            Ok(c) => c,
            Err(e) => {
                say(json!({"event": "error", "error": e.to_string()}));
                continue;
            }
        };
        let cpu0 = cpu_secs();
        match cmd {
            Command::Quit => break,
            Command::Broadcast { trigger, marker } => {
                *shared.marker.write().unwrap() = marker;
                shared.hits.store(0, Ordering::SeqCst);
                let t = Instant::now();
                fire(&http, &sockets, &trigger).await?;
                wait(&shared, sockets.len(), &shared.hits, Duration::from_secs(60)).await?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                say(json!({"event": "broadcast", "ms": ms, "client_cpu_secs": cpu_secs() - cpu0}));
            }
            Command::Burst { triggers, in_flight } => {
                let before = shared.frames.load(Ordering::SeqCst);
                let want = before + triggers.len() * sockets.len();
                let t = Instant::now();
                let fired = futures::stream::iter(triggers.iter())
                    .map(|tr| fire(&http, &sockets, tr))
                    .buffer_unordered(in_flight.max(1))
                    .collect::<Vec<_>>()
                    .await;
                for f in fired {
                    f?;
                }
                wait(&shared, want, &shared.frames, Duration::from_secs(120)).await?;
                let secs = t.elapsed().as_secs_f64();
                let deliveries = triggers.len() * sockets.len();
                say(json!({"event": "burst", "secs": secs, "deliveries": deliveries,
                    "per_sec": deliveries as f64 / secs, "client_cpu_secs": cpu_secs() - cpu0}));
            }
            Command::Latency { url, token, rate, secs } => {
                shared.latencies.lock().unwrap().clear();
                let total = (rate * secs) as usize;
                let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut seed = 0x2545_f491_4f6c_dd1du64;
                let mut tasks = Vec::with_capacity(total);
                for _ in 0..total {
                    tick.tick().await;
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let user = seed % sockets.len() as u64;
                    let sent = shared.started.elapsed().as_nanos() as u64;
                    let body = json!({"type": "chat.message", "target": {"user": format!("u{user}")}, "data": {"sent_ns": sent}});
                    let req = http.post(&url).bearer_auth(&token).json(&body);
                    tasks.push(tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) }));
                }
                for t in tasks {
                    let status = t.await??;
                    anyhow::ensure!(status == 200, "publish answered {status}");
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while shared.latencies.lock().unwrap().len() < total && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let mut l = shared.latencies.lock().unwrap().clone();
                l.sort_unstable();
                say(json!({"event": "latency", "events": total, "received": l.len(),
                    "p50_ms": pct(&l, 0.50) as f64 / 1e6, "p99_ms": pct(&l, 0.99) as f64 / 1e6, "max_ms": l.last().copied().unwrap_or(0) as f64 / 1e6,
                    "client_cpu_secs": cpu_secs() - cpu0}));
            }
        }
    }
    for s in &sockets {
        let _ = s.tx.send(Message::Close(None));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn wait(shared: &Shared, want: usize, counter: &AtomicUsize, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = shared.changed.notified();
        if counter.load(Ordering::SeqCst) >= want {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            anyhow::bail!("timed out: {} of {want}", counter.load(Ordering::SeqCst));
        }
    }
}

async fn fire(http: &reqwest::Client, sockets: &[Socket], trigger: &Trigger) -> anyhow::Result<()> {
    match trigger {
        Trigger::Http { url, token, body } => {
            let r = http.post(url).bearer_auth(token).json(body).send().await?;
            anyhow::ensure!(r.status().is_success(), "trigger answered {}", r.status());
        }
        Trigger::Text { text } => {
            sockets[0].tx.send(Message::text(text.clone()))?;
        }
    }
    Ok(())
}

async fn connect(url: &str, hello: Option<String>, shared: Arc<Shared>) -> anyhow::Result<(Socket, u64)> {
    let t = Instant::now();
    let (ws, _) = tokio_tungstenite::connect_async(url).await?;
    let (mut sink, mut stream) = ws.split();
    if let Some(hello) = hello {
        sink.send(Message::text(hello)).await?;
        // The reply to the subscribe.
        stream.next().await.ok_or_else(|| anyhow::anyhow!("closed before the hello reply"))??;
    }
    let micros = t.elapsed().as_micros() as u64;
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            if let Message::Text(text) = m {
                shared.frames.fetch_add(1, Ordering::SeqCst);
                let is_hit = text.contains(shared.marker.read().unwrap().as_str());
                if is_hit {
                    shared.hits.fetch_add(1, Ordering::SeqCst);
                }
                if let Some(i) = text.find("\"sent_ns\":") {
                    let digits: String = text[i + 10..].chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(sent) = digits.parse::<u64>() {
                        let now = shared.started.elapsed().as_nanos() as u64;
                        shared.latencies.lock().unwrap().push(now.saturating_sub(sent));
                    }
                }
                shared.changed.notify_waiters();
            }
        }
    });
    Ok((Socket { tx }, micros))
}
