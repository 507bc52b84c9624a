//! The orchestrator: starts redis-server, the emulator (`switchboard-local`,
//! release) or the baseline server, and the load client in separate
//! processes; sends the client its commands; reads the server's memory from
//! /proc and Redis's command counts from INFO; writes BENCHMARKS.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use switchboard::ids::Role;

use crate::client::{Command as ClientCommand, Trigger};
use crate::procfs::{cpu_time, machine, status_kib};
use crate::report::{Row, Series, fmt, md_table, table, verdict};
use crate::servers::{Server, broadcast_trigger, client, start, timed_broadcasts, timed_by, token};
use crate::sheet::{RedisCost, RedisCosts};

/// `bench run` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A reduced run (1,000 connections, fewer repeats): proves the harness in under a minute.
    #[arg(long)]
    pub quick: bool,
    /// Where the table goes.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// The function binaries for the cold starts (default: beside this binary).
    #[arg(long)]
    pub functions_dir: Option<PathBuf>,
}

struct Sizes {
    big: usize,
    small: usize,
    repeats: usize,
    burst_events: usize,
    latency_secs: u32,
    webhooks: usize,
}

#[derive(Default)]
struct Figures {
    storm_rate: Series,
    storm_p99: Series,
    rss_per_conn_kib: Series,
    broadcast_ms: Series,
    /// The server's CPU time per recipient of a broadcast.
    server_us_per_post: Series,
    burst_per_sec: Series,
    latency_p50: Series,
    latency_p99: Series,
    client_cpu: BTreeMap<&'static str, f64>,
}

/// Benchmarks 1, 4 and 5 at `n` connections, and 2 (and 3 for Switchboard) at `small`.
fn measure(server: &Server, sizes: &Sizes) -> anyhow::Result<Figures> {
    let mut f = Figures::default();
    for round in 0..sizes.repeats {
        let started = start(server)?;
        std::thread::sleep(Duration::from_millis(200));
        let rss0 = started.proc.rss_kib();
        let mut c = client(server, &started, sizes.big)?;
        let connected = c.json(Duration::from_secs(120))?;
        f.storm_rate.push(connected["rate"].as_f64().unwrap_or(0.0));
        f.storm_p99.push(connected["handshake_p99_ms"].as_f64().unwrap_or(0.0));
        *f.client_cpu.entry("storm").or_default() += connected["client_cpu_secs"].as_f64().unwrap_or(0.0);
        std::thread::sleep(Duration::from_millis(500));
        let rss1 = started.proc.rss_kib();
        f.rss_per_conn_kib.push(rss1.saturating_sub(rss0) as f64 / sizes.big as f64);
        for (r, cpu) in timed_broadcasts(server, &started, &mut c, 2, &format!("m{round}"))? {
            f.broadcast_ms.push(r["ms"].as_f64().unwrap_or(f64::NAN));
            f.server_us_per_post.push(cpu.as_secs_f64() * 1e6 / sizes.big as f64);
            *f.client_cpu.entry("broadcast").or_default() += r["client_cpu_secs"].as_f64().unwrap_or(0.0);
        }
        c.send(&ClientCommand::Quit)?;
        drop(c);
        drop(started);
        sustained(server, sizes, round, &mut f)?;
    }
    Ok(f)
}

/// Sustained fan-out (2) and, for Switchboard, latency (3) at the smaller size, on a fresh server.
fn sustained(server: &Server, sizes: &Sizes, round: usize, f: &mut Figures) -> anyhow::Result<()> {
    {
        let started = start(server)?;
        let mut c = client(server, &started, sizes.small)?;
        c.json(Duration::from_secs(60))?;
        let triggers: Vec<Trigger> =
            (0..sizes.burst_events).map(|i| broadcast_trigger(server, &started, &format!("b{round}-{i}"))).collect();
        c.send(&ClientCommand::Burst { triggers, in_flight: 8 })?;
        let r = c.json(Duration::from_secs(120))?;
        f.burst_per_sec.push(r["per_sec"].as_f64().unwrap_or(0.0));
        if let Server::Switchboard { .. } = server {
            c.send(&ClientCommand::Latency {
                url: format!("{}/v1/events", started.http),
                token: token("svc", Role::Service),
                rate: 200,
                secs: sizes.latency_secs,
            })?;
            let r = c.json(Duration::from_secs(60))?;
            f.latency_p50.push(r["p50_ms"].as_f64().unwrap_or(f64::NAN));
            f.latency_p99.push(r["p99_ms"].as_f64().unwrap_or(f64::NAN));
        }
        c.send(&ClientCommand::Quit)?;
    }
    Ok(())
}

/// One warm-up broadcast (connections and caches), then `timed` ones from
/// the server's HTTP API; the client's answers to the timed ones, each with
/// the server's CPU time during it.
/// Benchmark 1 alone at `n` connections (benchmark 9's comparison): one
/// warm-up broadcast, then `repeats` timed ones. The server is stopped
/// before its clients close: serverless-offline grows past 8 GB when a
/// thousand `$disconnect`s arrive at once.
fn broadcast_at(server: &Server, n: usize, repeats: usize) -> anyhow::Result<Series> {
    let started = start(server)?;
    let mut c = client(server, &started, n)?;
    let connected = c.json(Duration::from_secs(180))?;
    eprintln!("bench: {n} connected, {} handshake(s) retried", connected["retried"]);
    let mut times = Series::default();
    for (r, _) in timed_broadcasts(server, &started, &mut c, repeats, "s")? {
        times.push(r["ms"].as_f64().unwrap_or(f64::NAN));
    }
    drop(started);
    c.send(&ClientCommand::Quit)?;
    Ok(times)
}

/// Redis commands per operation, from `INFO commandstats` deltas.
fn redis_costs(redis_port: u16) -> anyhow::Result<RedisCosts> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let server = Server::Switchboard {
            redis: Some(format!("redis://127.0.0.1:{redis_port}")),
            over_http: false,
            history: None,
            args: vec![],
        };
        let started = start(&server)?;
        // (script calls, all commands, the scripts' µs, every command's µs)
        let stats = || -> anyhow::Result<(u64, u64, u64, u64)> {
            let info = switchboard_test_support::redis_cmd(redis_port, &["INFO", "commandstats"])?;
            let (mut scripts, mut all, mut script_usec, mut all_usec) = (0, 0, 0, 0);
            for line in info.lines() {
                let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
                    continue;
                };
                let field = |key: &str| -> u64 {
                    rest.split(',').find_map(|kv| kv.strip_prefix(key)).and_then(|c| c.parse().ok()).unwrap_or(0)
                };
                if name == "info" || name == "memory" {
                    continue;
                }
                all += field("calls=");
                all_usec += field("usec=");
                if name == "evalsha" || name == "eval" {
                    scripts += field("calls=");
                    script_usec += field("usec=");
                }
            }
            Ok((scripts, all, script_usec, all_usec))
        };
        let used_memory = || -> anyhow::Result<f64> {
            let info = switchboard_test_support::redis_cmd(redis_port, &["INFO", "memory"])?;
            info.lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse().ok())
                .context("INFO memory without used_memory")
        };
        let mut out = Vec::new();
        let mut step = |label: &str, before: (u64, u64, u64, u64)| -> anyhow::Result<()> {
            let after = stats()?;
            let scripts = after.0 - before.0;
            out.push(RedisCost {
                label: label.to_owned(),
                scripts,
                commands: after.1 - before.1,
                // A script's usec covers the commands it runs, which are
                // counted on their own as well: an operation made of
                // scripts costs its scripts' time.
                usec: if scripts > 0 { after.2 - before.2 } else { after.3 - before.3 },
            });
            Ok(())
        };
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let url = |user: &str| format!("{}?token={}", started.ws_url, token(user, Role::Agent));
        let http = reqwest::Client::new();
        let publish = |n: usize| {
            let http = http.clone();
            let url = format!("{}/v1/events", started.http);
            async move {
                let r = http
                    .post(url)
                    .bearer_auth(token("svc", Role::Service))
                    .json(&json!({"type": "call.incoming", "data": {"n": n}}))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200);
                Ok::<_, anyhow::Error>(())
            }
        };
        // Warm the script cache and the HTTP pool.
        publish(0).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;

        let before = stats()?;
        let (mut ws, _) = tokio_tungstenite::connect_async(url("solo")).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        step("connect ($connect: register, presence.online recipients in the same script)", before)?;
        let before = stats()?;
        ws.send(Message::text(json!({"action": "subscribe", "events": ["call.*"]}).to_string())).await?;
        ws.next().await;
        step("subscribe", before)?;
        let before = stats()?;
        ws.send(Message::text(json!({"action": "ping"}).to_string())).await?;
        ws.next().await;
        step("ping (every 4 minutes from each client: presence refreshed)", before)?;
        let since = json!({"action": "subscribe", "events": ["call.*"], "since": {"epoch": "0", "offset": 0}});
        // Once to load the script into this Redis (its first EVALSHA answers NOSCRIPT).
        ws.send(Message::text(since.to_string())).await?;
        ws.next().await;
        ws.next().await;
        let before = stats()?;
        ws.send(Message::text(since.to_string())).await?;
        ws.next().await;
        ws.next().await;
        step("subscribe with since (a recovery: subscribe and history read in one script)", before)?;
        let before = stats()?;
        publish(1).await?;
        ws.next().await;
        step("publish to 1 recipient (HTTP API: rate limit, resolve and history in one script)", before)?;
        // Channels (issue 31): the same budget.
        let (mut member, _) = tokio_tungstenite::connect_async(format!(
            "{}?token={}",
            started.ws_url,
            token("member", Role::Supervisor)
        ))
        .await?;
        let join = json!({"action": "subscribe", "channel": "queue:one", "events": ["call.*"]});
        member.send(Message::text(join.to_string())).await?;
        member.next().await;
        let channel_publish = |n: usize| {
            let http = http.clone();
            let url = format!("{}/v1/events", started.http);
            async move {
                let body = json!({"type": "call.incoming", "target": {"channel": "queue:one"}, "data": {"n": n}});
                let r = http.post(url).bearer_auth(token("svc", Role::Service)).json(&body).send().await?;
                anyhow::ensure!(r.status() == 200);
                Ok::<_, anyhow::Error>(())
            }
        };
        channel_publish(0).await?;
        member.next().await;
        let join_since = json!({"action": "subscribe", "channel": "queue:one", "events": ["call.*"],
            "since": {"epoch": "0", "offset": 0}});
        member.send(Message::text(join_since.to_string())).await?;
        member.next().await;
        member.next().await;
        let before = stats()?;
        member.send(Message::text(join.to_string())).await?;
        member.next().await;
        step("channel subscribe (with a filter)", before)?;
        let before = stats()?;
        member.send(Message::text(join_since.to_string())).await?;
        member.next().await;
        member.next().await;
        step("channel subscribe with since (the channel's own history read in the same script)", before)?;
        let before = stats()?;
        channel_publish(1).await?;
        member.next().await;
        step("channel publish to 1 subscriber (rate limit, the channel's subscribers and its history in one script)", before)?;
        let batch = json!({"events": (0..20).map(|n| json!({"type": "call.incoming", "target": {"channel": "queue:one"}, "data": {"n": n}})).collect::<Vec<_>>()});
        let post_batch = || http.post(format!("{}/v1/events", started.http)).bearer_auth(token("svc", Role::Service)).json(&batch).send();
        anyhow::ensure!(post_batch().await?.status() == 200);
        member.next().await;
        let before = stats()?;
        anyhow::ensure!(post_batch().await?.status() == 200);
        member.next().await;
        step("channel batch of 20 events to 1 subscriber (the rate limit once, then each event's script; one post)", before)?;
        member.close(None).await.ok();
        let mut many = Vec::new();
        let memory_before = used_memory()?;
        for i in 0..999 {
            let (mut c, _) = tokio_tungstenite::connect_async(url(&format!("m{i}"))).await?;
            c.send(Message::text(json!({"action": "subscribe", "events": ["call.*"]}).to_string())).await?;
            c.next().await;
            many.push(c);
        }
        let bytes_per_connection = (used_memory()? - memory_before) / 999.0;
        let before = stats()?;
        publish(2).await?;
        ws.next().await;
        for c in many.iter_mut() {
            while let Some(Ok(m)) = c.next().await {
                if m.to_text().is_ok_and(|t| t.contains("\"n\":2")) {
                    break;
                }
            }
        }
        step("publish to 1,000 recipients (HTTP API: rate limit, resolve and history in one script)", before)?;
        for c in many.iter_mut() {
            c.close(None).await.ok();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = stats()?;
        ws.close(None).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        step("disconnect ($disconnect: unregister, presence.offline recipients in the same script)", before)?;
        drop(started);
        Ok(RedisCosts { ops: out, bytes_per_connection })
    })
}

/// What a recovery costs: the time from a reconnected client's `subscribe`
/// with `since` to its `recovered`, `n` missed events replayed (each
/// posted to it through `@connections`) out of a history of `10 n` events
/// of which the client matches one in ten; the bytes Redis sent for it
/// (`total_net_output_bytes`) per byte replayed; and the Redis memory the
/// history takes per retained event (`MEMORY USAGE` of the stream and its
/// indexes over the stream's length).
pub(crate) struct Recovery {
    replay_ms: Series,
    redis_out_per_byte: Series,
    bytes_per_event: Series,
    event_bytes: usize,
    history: usize,
}

/// Benchmark 10's rows of the main table.
fn recovery_rows(rec: &Recovery, missed: usize) -> String {
    format!(
        "| 10 | recovery: a reconnected client's subscribe with since until recovered, {missed} missed events replayed out of a history of {} (it matches one in ten) | {} | — | — | ≤ 50 ms (1,000) | {} |\n\
         | 10 | the same recovery: bytes Redis sent per byte replayed (`total_net_output_bytes`) | {} | — | — | ≤ 2× | {} |\n",
        rec.history,
        rec.replay_ms.show("ms"),
        verdict(rec.replay_ms.median() <= 50.0),
        rec.redis_out_per_byte.show("×"),
        verdict(rec.redis_out_per_byte.median() <= 2.0)
    )
}

/// Benchmark 10 alone, as `switchboard-bench recovery` prints it.
pub(crate) fn recovery_report(rec: &Recovery, missed: usize) -> String {
    format!(
        "| # | benchmark | Switchboard | | | target | |\n| --- | --- | --- | --- | --- | --- | --- |\n{}\nRedis memory per retained event, stream and indexes ({} bytes of envelope): {}\n",
        recovery_rows(rec, missed),
        rec.event_bytes,
        rec.bytes_per_event.show("bytes")
    )
}

/// The next text message as JSON (30 s at most).
async fn next_json<S>(ws: &mut S) -> anyhow::Result<Value>
where
    S: futures::Stream<Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    use futures::StreamExt;
    let m = tokio::time::timeout(Duration::from_secs(30), ws.next()).await?.context("closed")??;
    Ok(serde_json::from_str(m.to_text()?)?)
}

pub(crate) fn recovery(redis_url: &str, redis_port: u16, n: usize, repeats: usize) -> anyhow::Result<Recovery> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Runtime::new()?;
    // Room for the missed events (one in ten for this client) and the presence events of the reconnects.
    let history = 10 * n;
    let server = Server::Switchboard {
        redis: Some(redis_url.to_owned()),
        over_http: false,
        history: Some(history + 100),
        args: vec![],
    };
    let mut out = Recovery {
        replay_ms: Series::default(),
        redis_out_per_byte: Series::default(),
        bytes_per_event: Series::default(),
        event_bytes: 0,
        history,
    };
    for round in 0..repeats {
        let started = start(&server)?;
        let (ms, event_bytes, out_per_byte) = rt.block_on(async {
            let url = format!("{}?token={}", started.ws_url, token(&format!("r{round}"), Role::Agent));
            let subscribe = json!({"action": "subscribe", "events": ["call.*"]});
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
            ws.send(Message::text(subscribe.to_string())).await?;
            next_json(&mut ws).await?;
            let http = reqwest::Client::new();
            let body = json!({"type": "call.incoming", "data": {"caller_id": "+15550000000", "queue": "support"}});
            // Nine in ten of the tenant's events are not for this client: queue stats (a
            // topic it did not subscribe to) and chat messages to another user.
            let others = [
                json!({"type": "queue.stats", "data": {"queue": "support", "waiting": 3, "agents": 12}}),
                json!({"type": "chat.message", "target": {"user": "someone-else"}, "data": {"text": "hello there"}}),
            ];
            let post = |body: &Value| {
                http.post(format!("{}/v1/events", started.http))
                    .bearer_auth(token("svc", Role::Service))
                    .json(body)
                    .send()
            };
            let publish = || post(&body);
            publish().await?.error_for_status()?;
            let seen = next_json(&mut ws).await?;
            let event_bytes = seen.to_string().len();
            ws.close(None).await?;
            drop(ws);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let bodies: Vec<&Value> = (0..history).map(|i| if i % 10 == 0 { &body } else { &others[i % 2] }).collect();
            let sent = futures::stream::iter(bodies).map(post).buffer_unordered(16);
            let sent: Vec<_> = sent.collect().await;
            for r in sent {
                r?.error_for_status()?;
            }
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await?;
            let since = json!({"action": "subscribe", "events": ["call.*"],
                "since": {"epoch": seen["epoch"], "offset": seen["offset"], "id": seen["id"]}});
            tokio::time::sleep(Duration::from_millis(200)).await;
            let redis_before = switchboard_test_support::redis_output_bytes(redis_port)?;
            let t0 = Instant::now();
            ws.send(Message::text(since.to_string())).await?;
            let (mut replayed, mut replayed_bytes) = (0, 0);
            loop {
                let m = next_json(&mut ws).await?;
                match m["type"].as_str() {
                    Some("recovered") => {
                        anyhow::ensure!(m["recovered"] == true && m["count"] == n, "recovery answered {m}");
                        break;
                    }
                    Some("subscribed") => {}
                    _ => {
                        replayed += 1;
                        replayed_bytes += m.to_string().len();
                    }
                }
            }
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let redis_out = switchboard_test_support::redis_output_bytes(redis_port)? - redis_before;
            anyhow::ensure!(replayed == n, "{replayed} of {n} replayed");
            Ok::<_, anyhow::Error>((ms, event_bytes, redis_out as f64 / replayed_bytes.max(1) as f64))
        })?;
        out.replay_ms.push(ms);
        out.redis_out_per_byte.push(out_per_byte);
        out.event_bytes = event_bytes;
        let key = format!("{}:history:{{bench}}", started.prefix);
        let mut bytes: f64 =
            switchboard_test_support::redis_cmd(redis_port, &["MEMORY", "USAGE", &key, "SAMPLES", "0"])?
                .trim()
                .parse()?;
        // The indexes, found by their stem (a test server: KEYS is fine here).
        let pattern = format!("{}:hidx:{{bench}}:*", started.prefix);
        for index in
            switchboard_test_support::redis_cmd(redis_port, &["KEYS", &pattern])?.lines().filter(|l| !l.is_empty())
        {
            let used = switchboard_test_support::redis_cmd(redis_port, &["MEMORY", "USAGE", index, "SAMPLES", "0"])?;
            bytes += used.trim().parse::<f64>().unwrap_or(0.0);
        }
        let len: f64 = switchboard_test_support::redis_cmd(redis_port, &["XLEN", &key])?.trim().parse()?;
        out.bytes_per_event.push(bytes / len.max(1.0));
    }
    Ok(out)
}

/// Benchmark 12: what one broadcast costs the function that sends it. The
/// same `n` subscribed clients get broadcasts two ways: from the emulator's
/// HTTP API, posting in-process; and from the `fanout` function binary
/// (invoked directly, as back-end services do) under a local Runtime API,
/// posting each frame through `aws-sdk-apigatewaymanagement` to the
/// emulator's `@connections`, as in AWS. Per broadcast: the time until the
/// last client has it, and each process's CPU time per post.
#[derive(Default)]
pub(crate) struct FanoutCost {
    pub in_process_ms: Series,
    /// The emulator's CPU per post when it posts in-process (API Gateway's side included).
    pub in_process_us: Series,
    pub sdk_ms: Series,
    /// The function's own CPU per post: signing, the SDK, HTTP.
    pub function_us: Series,
    /// The emulator's CPU per post received on `@connections` (API Gateway's side, not the function's).
    pub receiver_us: Series,
    /// The function's RSS after the broadcasts.
    pub function_rss_kib: f64,
    /// Recipients of each broadcast.
    pub posts: usize,
}

pub(crate) fn fanout_cost(
    redis_url: &str,
    functions_dir: &std::path::Path,
    n: usize,
    repeats: usize,
    function_env: &[(&str, String)],
) -> anyhow::Result<FanoutCost> {
    let server =
        Server::Switchboard { redis: Some(redis_url.to_owned()), over_http: false, history: None, args: vec![] };
    let started = start(&server)?;
    let emulator = started.proc.child.id();
    let mut c = client(&server, &started, n)?;
    c.json(Duration::from_secs(120))?;
    let mut out = FanoutCost { function_rss_kib: f64::NAN, posts: n, ..FanoutCost::default() };
    let per_post = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    // One warm-up broadcast each way (connections, caches), then `repeats`.
    for (r, cpu) in timed_broadcasts(&server, &started, &mut c, repeats, "ip")? {
        out.in_process_us.push(per_post(cpu));
        out.in_process_ms.push(r["ms"].as_f64().unwrap_or(f64::NAN));
    }
    // The function gets a runtime of its own: the Runtime API serves it
    // while this thread waits on the client.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let log = std::env::temp_dir().join("switchboard-bench-fanout.log");
    let mut env = vec![("REDIS_URL", redis_url.to_owned()), ("KEY_PREFIX", started.prefix.clone())];
    env.extend(function_env.iter().cloned());
    let lambda = rt.block_on(crate::coldstart::Lambda::start("fanout", &functions_dir.join("fanout"), &env, &log))?;
    let invoke = |marker: &str| Trigger::Http {
        url: format!("http://{}/invoke", lambda.addr),
        token: "unused".into(),
        body: json!({"tenant_id": "bench", "type": "call.incoming",
            "data": {"bench": marker, "caller_id": "+15550000000", "queue": "support"}}),
    };
    for (r, cpu) in timed_by(&mut c, repeats, "fn", invoke, &[lambda.pid, emulator])? {
        out.function_us.push(per_post(cpu[0]));
        out.receiver_us.push(per_post(cpu[1]));
        out.sdk_ms.push(r["ms"].as_f64().unwrap_or(f64::NAN));
    }
    out.function_rss_kib = status_kib(lambda.pid, "VmRSS:").map_or(f64::NAN, |v| v as f64);
    rt.block_on(lambda.stop());
    c.send(&ClientCommand::Quit)?;
    Ok(out)
}

impl FanoutCost {
    /// The CPU rows of benchmark 12, per post.
    pub(crate) fn cpu_table(&self) -> String {
        format!(
            "| process | CPU per post |\n| --- | --- |\n\
             | `fanout` function, posting through the AWS SDK (its own CPU: what Lambda bills) | {} |\n\
             | the emulator receiving those posts on `@connections` (API Gateway's side) | {} |\n\
             | the emulator posting in-process (resolve, serialize, the socket write) | {} |\n\n\
             Broadcast until the last client has it: through the function {}, in-process {}. The function's RSS after the broadcasts: {:.1} MiB.\n",
            self.function_us.show("µs"),
            self.receiver_us.show("µs"),
            self.in_process_us.show("µs"),
            self.sdk_ms.show("ms"),
            self.in_process_ms.show("ms"),
            self.function_rss_kib / 1024.0
        )
    }
}

/// Redis's own CPU time so far (`INFO cpu`).
fn redis_cpu(port: u16) -> anyhow::Result<Duration> {
    let info = switchboard_test_support::redis_cmd(port, &["INFO", "cpu"])?;
    let field =
        |name: &str| -> f64 { info.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0) };
    Ok(Duration::from_secs_f64(field("used_cpu_sys:") + field("used_cpu_user:")))
}

/// Benchmark 4 alone, for profiling (`switchboard-bench storm`): `n`
/// handshakes at the load client's concurrency, `repeats` times on a fresh
/// server; the rate and p99, and each process's CPU per connection.
pub(crate) fn storm(baseline: bool, n: usize, repeats: usize) -> anyhow::Result<String> {
    let redis = switchboard_test_support::RedisServer::start()?;
    let server = if baseline {
        Server::Baseline
    } else {
        Server::Switchboard { redis: Some(redis.url()), over_http: false, history: None, args: vec![] }
    };
    let (mut rate, mut p99, mut server_us, mut redis_us, mut client_us) =
        (Series::default(), Series::default(), Series::default(), Series::default(), Series::default());
    let per_conn = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    switchboard_test_support::redis_cmd(redis.port, &["CONFIG", "RESETSTAT"])?;
    for _ in 0..repeats {
        let started = start(&server)?;
        std::thread::sleep(Duration::from_millis(200));
        let (cpu, rcpu) = (cpu_time(started.proc.child.id()), redis_cpu(redis.port)?);
        let c = client(&server, &started, n)?;
        let connected = c.json(Duration::from_secs(120))?;
        server_us.push(per_conn(cpu_time(started.proc.child.id()) - cpu));
        redis_us.push(per_conn(redis_cpu(redis.port)? - rcpu));
        client_us.push(connected["client_cpu_secs"].as_f64().unwrap_or(f64::NAN) * 1e6 / n as f64);
        rate.push(connected["rate"].as_f64().unwrap_or(f64::NAN));
        p99.push(connected["handshake_p99_ms"].as_f64().unwrap_or(f64::NAN));
        drop(started);
        drop(c);
    }
    // Where Redis's time went, for the profile (stderr).
    eprint!("{}", switchboard_test_support::redis_cmd(redis.port, &["INFO", "commandstats"])?);
    Ok(format!(
        "{}: {} (p99 {}); CPU per connection: server {}, redis-server {}, client {}\n",
        if baseline { "baseline" } else { "Switchboard, Redis store" },
        rate.show("conn/s"),
        p99.show("ms"),
        server_us.show("µs"),
        redis_us.show("µs"),
        client_us.show("µs")
    ))
}

fn webhook_rate(n: usize, repeats: usize) -> anyhow::Result<Series> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut s = Series::default();
    for _ in 0..repeats {
        s.push(rt.block_on(crate::webhooks::deliveries_per_sec(n))?);
    }
    Ok(s)
}

fn git(args: &[&str]) -> String {
    Command::new("git")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Benchmark 11's section: each function's cold start beside `hello-lambda`'s.
pub fn coldstart_table(rows: &[crate::coldstart::Row]) -> String {
    let starts = rows.first().map_or(0, |r| r.starts.len());
    format!(
        "## 11. Cold start of each Lambda function\n\n{starts} cold starts of each binary of the `lambda-release` profile (what `make build` zips; `bench-quick` takes the debug build) under a local Lambda Runtime API (`bench/src/coldstart.rs`), with the Lambda environment, a real redis-server and dummy credentials. Init: process start to its first `GET /runtime/invocation/next` (Lambda's Init Duration). First: the first event's round trip (first Redis connection included). Warm: the median of the invocations after it. RSS after them. The baseline is `hello-lambda`, a hello-world `lambda_runtime` function built in the same profile. Targets: init ≤ 1.5× the baseline, first invocation ≤ 3 ms, RSS ≤ 2× the baseline. The choice of profile: `bench/PROFILES.md` (`make bench-profiles`).\n\n{}",
        coldstart_rows(rows)
    )
}

/// The cold-start table's rows.
fn coldstart_rows(rows: &[crate::coldstart::Row]) -> String {
    use std::fmt::Write as _;
    let series = |row: &crate::coldstart::Row, f: fn(&crate::coldstart::Start) -> f64| -> Series {
        row.starts.iter().map(f).collect()
    };
    let mut w = String::new();
    let _ = writeln!(
        w,
        "| function | binary (zipped) | init | first invocation | warm | RSS | of it anonymous | init ÷ baseline | RSS ÷ baseline | |"
    );
    let _ = writeln!(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let base = rows.iter().find(|r| r.name == "hello-lambda");
    let base_init = base.map_or(f64::NAN, |b| series(b, |s| s.init_ms).median());
    let base_rss = base.map_or(f64::NAN, |b| series(b, |s| s.rss_kib).median());
    for row in rows {
        let init = series(row, |s| s.init_ms);
        let first = series(row, |s| s.first_ms);
        let rss = series(row, |s| s.rss_kib / 1024.0);
        let (ri, rr) = (init.median() / base_init, rss.median() * 1024.0 / base_rss);
        let met = ri <= 1.5 && first.median() <= 3.0 && rr <= 2.0;
        let _ = writeln!(
            w,
            "| {} | {:.1} MB ({:.1} MB) | {} | {} | {} | {} | {} | {:.2}× | {:.2}× | {} |",
            row.name,
            row.binary_bytes as f64 / 1e6,
            row.zip_bytes as f64 / 1e6,
            init.show("ms"),
            first.show("ms"),
            series(row, |s| s.warm_ms).show("ms"),
            rss.show("MiB"),
            series(row, |s| s.anon_kib / 1024.0).show("MiB"),
            ri,
            rr,
            if row.name == "hello-lambda" { "baseline" } else { verdict(met) }
        );
    }
    w
}

/// The comparison of builds (`make bench-profiles`): per function, each
/// build's medians side by side, then each build's own table.
pub fn profiles_report(
    builds: &[(String, Vec<crate::coldstart::Row>)],
    only: &[String],
    posts: &[(String, FanoutCost)],
) -> String {
    use std::fmt::Write as _;
    let mut w = String::new();
    let median = |row: &crate::coldstart::Row, f: fn(&crate::coldstart::Start) -> f64| {
        row.starts.iter().map(f).collect::<Series>().median()
    };
    if builds.len() > 1 {
        let _ = writeln!(w, "# The functions built in different profiles\n");
        let _ = writeln!(w, "Written by `make bench-profiles` — do not edit by hand.\n");
        let _ = writeln!(w, "- machine: {}", machine());
        let _ = writeln!(w, "- commit: {}", git(&["rev-parse", "--short", "HEAD"]));
        if !only.is_empty() {
            let _ = writeln!(w, "- functions: {} only (`--only`)", only.join(", "));
        }
        let starts = builds[0].1.first().map_or(0, |r| r.starts.len());
        let _ = writeln!(
            w,
            "- {starts} cold starts of each binary, as in BENCHMARKS.md's benchmark 11; zip: the x86_64 binary deflated as `bootstrap` (the arm64 zips of `make build` are of the same order)\n"
        );
        let _ = writeln!(w, "## Builds compared (medians)\n");
        let _ = writeln!(w, "| function | build | binary | zip | init | first invocation | warm | RSS | anonymous |");
        let _ = writeln!(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        for (i, row) in builds[0].1.iter().enumerate() {
            for (label, rows) in builds {
                let Some(r) = rows.get(i) else { continue };
                let _ = writeln!(
                    w,
                    "| {} | {label} | {:.1} MB | {:.1} MB | {} ms | {} ms | {} ms | {} MiB | {} MiB |",
                    row.name,
                    r.binary_bytes as f64 / 1e6,
                    r.zip_bytes as f64 / 1e6,
                    fmt(median(r, |s| s.init_ms)),
                    fmt(median(r, |s| s.first_ms)),
                    fmt(median(r, |s| s.warm_ms)),
                    fmt(median(r, |s| s.rss_kib) / 1024.0),
                    fmt(median(r, |s| s.anon_kib) / 1024.0),
                );
            }
        }
        let _ = writeln!(w);
    }
    if let Some((_, first)) = posts.first() {
        let n = first.posts;
        let _ = writeln!(w, "## The fan-out function's CPU per post, by build\n");
        let _ = writeln!(
            w,
            "Each build's `fanout` broadcasting to {n} clients through the AWS SDK, as in BENCHMARKS.md's benchmark 12 (min / median / max of its broadcasts).\n"
        );
        let _ = writeln!(w, "| build | the function's CPU per post | broadcast until the last has it | RSS after |");
        let _ = writeln!(w, "| --- | --- | --- | --- |");
        for (label, cost) in posts {
            let _ = writeln!(
                w,
                "| {label} | {} | {} | {} MiB |",
                cost.function_us.show("µs"),
                cost.sdk_ms.show("ms"),
                fmt(cost.function_rss_kib / 1024.0)
            );
        }
        let _ = writeln!(w);
    }
    for (label, rows) in builds {
        let _ = writeln!(w, "### {label}\n");
        let _ = writeln!(w, "{}", coldstart_rows(rows));
    }
    w
}

/// Runs every benchmark and writes the table.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let sizes = if args.quick {
        Sizes { big: 1000, small: 200, repeats: 1, burst_events: 20, latency_secs: 1, webhooks: 1000 }
    } else {
        Sizes { big: 10_000, small: 1000, repeats: 3, burst_events: 50, latency_secs: 5, webhooks: 5000 }
    };
    let began = Instant::now();
    let measured = measure_all(&args, &sizes)?;
    let md = write_report(&args, &sizes, &measured, began)?;
    std::fs::write(&args.out, md)?;
    eprintln!("bench: wrote {} in {:.0} s", args.out.display(), began.elapsed().as_secs_f64());
    Ok(())
}

/// Everything one run measured, for the report.
struct Measured {
    base: Figures,
    sb_redis: Figures,
    sb_http: Figures,
    sb_mem: Figures,
    sb_off: Figures,
    cmp_n: usize,
    sls: Series,
    sls_sb: Series,
    sls_sb_http: Series,
    costs: RedisCosts,
    missed: usize,
    rec: Recovery,
    hooks: Series,
    cold: Vec<crate::coldstart::Row>,
    fan: FanoutCost,
    at_quotas: Option<crate::quotas::AtQuotas>,
    channels: Option<crate::channels::Channels>,
    /// What failed (reported in the table, not fatal to the rest).
    failures: Vec<String>,
}

/// Runs every benchmark, one server at a time.
fn measure_all(args: &RunArgs, sizes: &Sizes) -> anyhow::Result<Measured> {
    let redis = switchboard_test_support::RedisServer::start()?;
    eprintln!("bench: redis-server on {}", redis.port);

    // A configuration that fails is reported in the table, not fatal to the others.
    let mut failures: Vec<String> = Vec::new();
    let mut measured = |label: &str, server: Server| -> Figures {
        eprintln!("bench: {label}");
        // Once more after a failure: a port picked free can be taken before
        // the server binds it (then the emulator exits at start).
        let first = measure(&server, sizes).or_else(|e| {
            eprintln!("bench: {label} failed ({e:#}); once more");
            measure(&server, sizes)
        });
        first.unwrap_or_else(|e| {
            eprintln!(
                "bench: {label} failed: {e:#} (children's stderr: {}/switchboard-bench-*.log)",
                std::env::temp_dir().display()
            );
            failures.push(format!("{label}: {e:#}"));
            Figures::default()
        })
    };
    let base = measured(&format!("baseline ({} connections)", sizes.big), Server::Baseline);
    let sb_redis = measured(
        "Switchboard, Redis store",
        Server::Switchboard { redis: Some(redis.url()), over_http: false, history: None, args: vec![] },
    );
    let sb_http = measured(
        "Switchboard, Redis store, posts over HTTP (SDK)",
        Server::Switchboard { redis: Some(redis.url()), over_http: true, history: None, args: vec![] },
    );
    let sb_mem = measured(
        "Switchboard, memory store",
        Server::Switchboard { redis: None, over_http: false, history: None, args: vec![] },
    );
    let sb_off = measured(
        "Switchboard, Redis store, history off",
        Server::Switchboard { redis: Some(redis.url()), over_http: false, history: Some(0), args: vec![] },
    );
    // Benchmark 9: the same client, the same broadcast, at the size
    // serverless-offline copes with.
    let cmp_n = if args.quick { sizes.small } else { 1000 };
    let cmp_repeats = if args.quick { 1 } else { 5 };
    let mut compared = |label: &str, server: Server| -> Series {
        eprintln!("bench: {label}, one broadcast to {cmp_n}");
        broadcast_at(&server, cmp_n, cmp_repeats).unwrap_or_else(|e| {
            eprintln!("bench: {label} failed: {e:#}");
            failures.push(format!("{label} ({cmp_n} connections): {e:#}"));
            Series::default()
        })
    };
    let sls = compared("serverless-offline 13", Server::ServerlessOffline { redis: redis.url() });
    let sls_sb = compared(
        "Switchboard, Redis store",
        Server::Switchboard { redis: Some(redis.url()), over_http: false, history: None, args: vec![] },
    );
    let sls_sb_http = compared(
        "Switchboard, Redis store, posts over HTTP (SDK)",
        Server::Switchboard { redis: Some(redis.url()), over_http: true, history: None, args: vec![] },
    );
    eprintln!("bench: Redis cost per operation");
    let costs = redis_costs(redis.port)?;
    let missed = if args.quick { 200 } else { 1000 };
    eprintln!("bench: recovery of {missed} missed events");
    let rec = recovery(&redis.url(), redis.port, missed, sizes.repeats)?;
    eprintln!("bench: webhook deliveries");
    let hooks = webhook_rate(sizes.webhooks, sizes.repeats)?;
    let (starts, warm) = if args.quick { (2, 5) } else { (10, 20) };
    eprintln!("bench: cold starts ({starts} of each function)");
    let exe = std::env::current_exe()?;
    let functions_dir = match &args.functions_dir {
        Some(dir) => dir.clone(),
        None => exe.parent().context("bench binary's folder")?.to_path_buf(),
    };
    let cold = crate::coldstart::measure(&functions_dir, &redis.url(), starts, warm, &[])?;
    eprintln!("bench: broadcasts to {} from the fanout function", sizes.big);
    let fan = fanout_cost(&redis.url(), &functions_dir, sizes.big, sizes.repeats, &[]).unwrap_or_else(|e| {
        eprintln!("bench: the fanout function's broadcasts failed: {e:#}");
        failures.push(format!("benchmark 12: {e:#}"));
        FanoutCost { function_rss_kib: f64::NAN, ..FanoutCost::default() }
    });
    eprintln!("bench: at API Gateway's quotas");
    let at_quotas = crate::quotas::at_quotas(&redis.url(), args.quick, sizes.repeats)
        .inspect_err(|e| {
            eprintln!("bench: benchmark 13 failed: {e:#}");
            failures.push(format!("benchmark 13: {e:#}"));
        })
        .ok();
    eprintln!("bench: channels and batches");
    let channels = crate::channels::measure(&redis.url(), redis.port, sizes.big, sizes.repeats)
        .inspect_err(|e| {
            eprintln!("bench: benchmark 15 failed: {e:#}");
            failures.push(format!("benchmark 15: {e:#}"));
        })
        .ok();

    Ok(Measured {
        base,
        sb_redis,
        sb_http,
        sb_mem,
        sb_off,
        cmp_n,
        sls,
        sls_sb,
        sls_sb_http,
        costs,
        missed,
        rec,
        hooks,
        cold,
        fan,
        at_quotas,
        channels,
        failures,
    })
}

/// BENCHMARKS.md from what was measured.
fn write_report(args: &RunArgs, sizes: &Sizes, m: &Measured, began: Instant) -> anyhow::Result<String> {
    let Measured { base, sb_redis, costs, missed, rec, cold, fan, at_quotas, channels, failures, .. } = m;
    let missed = *missed;
    let n = sizes.big;
    let mut md = String::new();
    let w = &mut md;
    use std::fmt::Write as _;
    writeln!(w, "# Benchmarks\n")?;
    writeln!(w, "Written by `make bench{}` — do not edit by hand.\n", if args.quick { "-quick" } else { "" })?;
    writeln!(w, "- machine: {}", machine())?;
    writeln!(
        w,
        "- date: {}",
        git(&["log", "-1", "--format=%cd", "--date=iso-strict"]).split('T').next().unwrap_or("")
    )?;
    writeln!(
        w,
        "- run at: {} (UTC, `date -u`)",
        Command::new("date")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    )?;
    writeln!(w, "- commit: {}", git(&["rev-parse", "--short", "HEAD"]))?;
    writeln!(
        w,
        "- mode: {}; {} repeat(s) of each server start; figures are min / median / max",
        if args.quick { "quick" } else { "full" },
        sizes.repeats
    )?;
    writeln!(w, "- took: {:.0} s\n", began.elapsed().as_secs_f64())?;
    writeln!(
        w,
        "Release builds. Servers, the load client and redis-server are separate processes on this machine; the baseline is a minimal tokio-tungstenite server (`bench/src/baseline.rs`) driven by the same client in the same run.\n"
    )?;
    writeln!(w, "| # | benchmark | Switchboard (Redis store) | baseline | ratio (median) | target | |")?;
    writeln!(w, "| --- | --- | --- | --- | --- | --- | --- |")?;
    write!(w, "{}", table(&main_rows(m, sizes)))?;
    write!(w, "{}", recovery_rows(rec, missed))?;
    if let Some(q) = &at_quotas {
        write!(w, "{}", crate::quotas::rows(q))?;
    }
    if let Some(c) = &channels {
        write!(w, "{}", table(&crate::channels::rows(c)))?;
    }
    writeln!(w)?;
    w.push_str(&history_section(m, n));
    writeln!(w, "{}", coldstart_table(cold))?;
    w.push_str(&fanout_section(m, n));
    w.push_str(&redis_section(costs));
    w.push_str(&stores_section(m, n));
    if let Some(c) = &channels {
        w.push_str(&crate::channels::section(c));
    }
    let warm_ms =
        cold.iter().map(|row| (row.name, row.starts.iter().map(|s| s.warm_ms).collect::<Series>().median())).collect();
    let measured = crate::sheet::Measured {
        redis: costs,
        history_bytes_per_event: rec.bytes_per_event.median(),
        cpu_us_per_post: fan.function_us.median(),
        warm_ms,
    };
    write!(w, "{}", crate::sheet::report(&measured))?;
    if !failures.is_empty() {
        writeln!(w, "## Runs that failed\n")?;
        for f in failures {
            writeln!(w, "- {f}")?;
        }
        writeln!(w)?;
    }
    writeln!(w, "## The load client's own cost\n")?;
    writeln!(
        w,
        "CPU seconds the client process spent (all repeats): storm {:.2} s (baseline run {:.2} s), broadcasts {:.2} s (baseline run {:.2} s). On 2 cores the client competes with the server for CPU, so every figure above includes that contention — equally for Switchboard and the baseline.\n",
        sb_redis.client_cpu.get("storm").unwrap_or(&0.0),
        base.client_cpu.get("storm").unwrap_or(&0.0),
        sb_redis.client_cpu.get("broadcast").unwrap_or(&0.0),
        base.client_cpu.get("broadcast").unwrap_or(&0.0)
    )?;
    // The hand-written part: what limits each figure that falls short, from
    // the profiles (kept beside the harness, so a run never loses it).
    if let Ok(analysis) = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ANALYSIS.md")) {
        writeln!(w, "{}", analysis.trim_end())?;
    }
    Ok(md)
}

/// The main table's rows: each benchmark beside its comparison and target.
fn main_rows(m: &Measured, sizes: &Sizes) -> Vec<Row> {
    let Measured { base, sb_redis, sb_http, cmp_n, sls, sls_sb, sls_sb_http, hooks, fan, .. } = m;
    let (n, cmp_n) = (sizes.big, *cmp_n);
    let ratio = |a: &Series, b: &Series| a.median() / b.median();
    let x = |r: f64, digits: usize| format!("{r:.digits$}×");
    let faster = |r: f64| format!("{r:.0}× faster");
    let dash = || "—".to_owned();
    let (r1, r1h) =
        (ratio(&sb_redis.broadcast_ms, &base.broadcast_ms), ratio(&sb_http.broadcast_ms, &base.broadcast_ms));
    let r2 = ratio(&sb_redis.burst_per_sec, &base.burst_per_sec);
    let r4 = ratio(&sb_redis.storm_rate, &base.storm_rate);
    let r5 = ratio(&sb_redis.rss_per_conn_kib, &base.rss_per_conn_kib);
    let (r9, r9h) = (ratio(sls, sls_sb), ratio(sls, sls_sb_http));
    let r9_verdict = |r: f64| if sls.0.is_empty() { "**not measured**" } else { verdict(r >= 20.0) };
    let r12 = ratio(&fan.sdk_ms, &base.broadcast_ms);
    vec![
        Row {
            n: "1",
            what: format!("one broadcast to {n} connections, until the last has it"),
            ours: sb_redis.broadcast_ms.show("ms"),
            theirs: base.broadcast_ms.show("ms"),
            ratio: x(r1, 1),
            target: "≤ 5× baseline",
            verdict: verdict(r1 <= 5.0),
        },
        Row {
            n: "1",
            what: "the same, every post over HTTP `@connections` through the AWS SDK (what a Lambda does)".into(),
            ours: sb_http.broadcast_ms.show("ms"),
            theirs: base.broadcast_ms.show("ms"),
            ratio: x(r1h, 1),
            target: "(≤ 5×)",
            verdict: verdict(r1h <= 5.0),
        },
        Row {
            n: "2",
            what: format!("sustained fan-out, {} events × {} recipients", sizes.burst_events, sizes.small),
            ours: sb_redis.burst_per_sec.show("deliveries/s"),
            theirs: base.burst_per_sec.show("deliveries/s"),
            ratio: x(r2, 2),
            target: "≥ 50,000/s",
            verdict: verdict(sb_redis.burst_per_sec.median() >= 50_000.0),
        },
        Row {
            n: "3",
            what: format!("publish → receive, {} users, 200 events/s to random users, p50", sizes.small),
            ours: sb_redis.latency_p50.show("ms"),
            theirs: dash(),
            ratio: dash(),
            target: "≤ 2 ms",
            verdict: verdict(sb_redis.latency_p50.median() <= 2.0),
        },
        Row {
            n: "3",
            what: "the same, p99".into(),
            ours: sb_redis.latency_p99.show("ms"),
            theirs: dash(),
            ratio: dash(),
            target: "≤ 10 ms",
            verdict: verdict(sb_redis.latency_p99.median() <= 10.0),
        },
        Row {
            n: "4",
            what: format!("connection storm, {n} connects (authorizer + $connect + subscribe)"),
            ours: sb_redis.storm_rate.show("conn/s"),
            theirs: base.storm_rate.show("conn/s"),
            ratio: x(r4, 2),
            target: "≥ 5,000/s",
            verdict: verdict(sb_redis.storm_rate.median() >= 5000.0),
        },
        Row {
            n: "4",
            what: "the same, p99 handshake".into(),
            ours: sb_redis.storm_p99.show("ms"),
            theirs: base.storm_p99.show("ms"),
            ratio: dash(),
            target: "≤ 50 ms",
            verdict: verdict(sb_redis.storm_p99.median() <= 50.0),
        },
        Row {
            n: "5",
            what: format!("server memory per idle connection at {n}"),
            ours: sb_redis.rss_per_conn_kib.show("KiB"),
            theirs: base.rss_per_conn_kib.show("KiB"),
            ratio: x(r5, 2),
            target: "≤ 1.5× baseline",
            verdict: verdict(r5 <= 1.5),
        },
        Row {
            n: "7",
            what: "signed webhook deliveries through the emulator's SQS to a local receiver".into(),
            ours: hooks.show("deliveries/s"),
            theirs: dash(),
            ratio: dash(),
            target: "≥ 5,000/s",
            verdict: verdict(hooks.median() >= 5000.0),
        },
        Row {
            n: "9",
            what: format!("one broadcast to {cmp_n} connections; beside it serverless-offline 13 (Node `postToConnection` loop) instead of the baseline"),
            ours: sls_sb.show("ms"),
            theirs: sls.show("ms"),
            ratio: faster(r9),
            target: "≥ 20× faster",
            verdict: r9_verdict(r9),
        },
        Row {
            n: "9",
            what: "the same, every post over HTTP `@connections` through the AWS SDK".into(),
            ours: sls_sb_http.show("ms"),
            theirs: sls.show("ms"),
            ratio: faster(r9h),
            target: "(≥ 20×)",
            verdict: r9_verdict(r9h),
        },
        Row {
            n: "12",
            what: format!("one broadcast to {n} from the `fanout` function (a Lambda under a local Runtime API), every post through the AWS SDK to the emulator's `@connections`, until the last has it"),
            ours: fan.sdk_ms.show("ms"),
            theirs: base.broadcast_ms.show("ms"),
            ratio: x(r12, 1),
            target: "≤ 2.5× baseline",
            verdict: verdict(r12 <= 2.5),
        },
        Row {
            n: "12",
            what: "the `fanout` function's own CPU per post (what Lambda bills; beside it the baseline server's per frame written)".into(),
            ours: fan.function_us.show("µs"),
            theirs: base.server_us_per_post.show("µs"),
            ratio: x(ratio(&fan.function_us, &base.server_us_per_post), 1),
            target: "(section 12)",
            verdict: "",
        },
    ]
}

/// Section 10: what recording every event costs, history on against off.
fn history_section(m: &Measured, n: usize) -> String {
    let (on, off, rec) = (&m.sb_redis, &m.sb_off, &m.rec);
    let cost2 = 1.0 - on.burst_per_sec.median() / off.burst_per_sec.median();
    let cost4 = 1.0 - on.storm_rate.median() / off.storm_rate.median();
    let rows = vec![
        vec![
            "2. sustained fan-out".into(),
            on.burst_per_sec.show("deliveries/s"),
            off.burst_per_sec.show("deliveries/s"),
            format!("{:.1} %", cost2 * 100.0),
            format!("≤ 15 % ({})", verdict(cost2 <= 0.15)),
        ],
        vec![
            "3. latency p50 / p99".into(),
            format!("{} / {}", on.latency_p50.show("ms"), on.latency_p99.show("ms")),
            format!("{} / {}", off.latency_p50.show("ms"), off.latency_p99.show("ms")),
            format!(
                "{:+.2} / {:+.2} ms",
                on.latency_p50.median() - off.latency_p50.median(),
                on.latency_p99.median() - off.latency_p99.median()
            ),
            String::new(),
        ],
        vec![
            "4. connection storm (each new user's presence.online is recorded)".into(),
            format!("{} (p99 {})", on.storm_rate.show("conn/s"), on.storm_p99.show("ms")),
            format!("{} (p99 {})", off.storm_rate.show("conn/s"), off.storm_p99.show("ms")),
            format!("{:.1} %", cost4 * 100.0),
            String::new(),
        ],
        vec![
            format!("1. broadcast to {n}"),
            on.broadcast_ms.show("ms"),
            off.broadcast_ms.show("ms"),
            String::new(),
            String::new(),
        ],
        vec![
            format!("Redis memory per retained event, stream and indexes ({} bytes of envelope)", rec.event_bytes),
            rec.bytes_per_event.show("bytes"),
            "—".into(),
            String::new(),
            String::new(),
        ],
    ];
    let header = ["benchmark", "history on (`HISTORY_SIZE=1000`)", "history off (`HISTORY_SIZE=0`)", "cost", "target"];
    format!(
        "## 10. The cost of history (every event recorded in its tenant's Redis stream)\n\n{}\nA publish stays one round trip with history on: section 6 counts it.\n\n",
        md_table(&header, &rows)
    )
}

/// Section 12: the `fanout` function's CPU per post.
fn fanout_section(m: &Measured, n: usize) -> String {
    format!(
        "## 12. What a broadcast to {n} costs the function that sends it\n\n\
         The `fanout` binary of the same build as section 11, invoked directly (as back-end services do) under the local Runtime API; CPU time from `/proc/<pid>/stat` around each broadcast, divided by the recipients. The same {n} clients get the emulator's own in-process broadcasts first, for comparison.\n\n\
         {}\n\
         The baseline server, writing the same frame to {n} sockets: {} per frame; Switchboard in-process in benchmark 1: {} per post.\n\n",
        m.fan.cpu_table(),
        m.base.server_us_per_post.show("µs"),
        m.sb_redis.server_us_per_post.show("µs")
    )
}

/// Section 6: Redis's cost per hot-path operation.
fn redis_section(costs: &RedisCosts) -> String {
    let rows: Vec<Vec<String>> = costs
        .ops
        .iter()
        .map(|c| vec![c.label.clone(), c.scripts.to_string(), c.commands.to_string(), format!("{} µs", c.usec)])
        .collect();
    let header = [
        "operation",
        "script calls (EVALSHA = round trips)",
        "all commands, inside scripts included",
        "Redis time (`usec`)",
    ];
    format!(
        "## 6. Redis cost per operation (`INFO commandstats` deltas)\n\n{}\nRedis memory per idle connection subscribed to two topics (`used_memory` over 999 of them): {:.0} bytes.\n\n",
        md_table(&header, &rows),
        costs.bytes_per_connection
    )
}

/// Section 8: the memory store against the Redis store.
fn stores_section(m: &Measured, n: usize) -> String {
    let (mem, redis) = (&m.sb_mem, &m.sb_redis);
    let both = |what: String, f: &dyn Fn(&Figures) -> String| vec![what, f(mem), f(redis)];
    let rows = vec![
        both(format!("1. broadcast to {n}"), &|f| f.broadcast_ms.show("ms")),
        both("2. sustained fan-out".into(), &|f| f.burst_per_sec.show("deliveries/s")),
        both("3. latency p50 / p99".into(), &|f| {
            format!("{} / {}", f.latency_p50.show("ms"), f.latency_p99.show("ms"))
        }),
        both("4. connection storm".into(), &|f| f.storm_rate.show("conn/s")),
        both("5. memory per connection".into(), &|f| f.rss_per_conn_kib.show("KiB")),
    ];
    format!(
        "## 8. Memory store vs Redis store (benchmarks 1-4)\n\n{}\n",
        md_table(&["benchmark", "memory store", "Redis store"], &rows)
    )
}
