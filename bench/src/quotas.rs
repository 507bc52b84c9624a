//! Benchmark 13: Switchboard at API Gateway's quotas, played by the
//! emulator. One broadcast through an `@connections` quota (every post
//! over it is answered 429 and made again, paced), timed until the last
//! client has it, against the quota's own pace; and a reconnect storm of
//! the shipped JavaScript client through a new-connection quota, timed
//! until every client is back and has recovered what it missed.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::report::{Series, fmt, verdict};
use crate::servers::{Proc, SECRET, Server, client, sibling, start, timed_broadcasts};

/// What benchmark 13 measured.
pub(crate) struct AtQuotas {
    /// Recipients of the broadcast.
    pub broadcast_n: usize,
    /// The `@connections` quota it ran under: per second, burst.
    pub posts_quota: (u32, u32),
    /// Seconds until the last client had it.
    pub broadcast_secs: Series,
    /// Posts answered 429 (and made again) per broadcast.
    pub throttled: Series,
    /// Recipients handed to a queued job per broadcast.
    pub requeued: Series,
    /// Clients in the reconnect storm.
    pub storm_n: usize,
    /// The new-connection quota it ran under, per second.
    pub connect_quota: u32,
    /// Seconds from the cut until every client was back and had recovered.
    pub storm_secs: Series,
}

/// A counter of the emulator's `GET /metrics`: `switchboard_deliveries_total{outcome=...}`.
fn deliveries(http: &str, outcome: &str) -> anyhow::Result<f64> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let text = rt.block_on(async { reqwest::get(format!("{http}/metrics")).await?.text().await })?;
    let wanted = format!("outcome=\"{outcome}\"");
    Ok(text
        .lines()
        .filter(|l| l.starts_with("switchboard_deliveries_total{") && l.contains(&wanted))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Runs benchmark 13: `quick` at a tenth of the sizes and quotas (the same ratios).
pub(crate) fn at_quotas(redis_url: &str, quick: bool, repeats: usize) -> anyhow::Result<AtQuotas> {
    let scale = if quick { 10 } else { 1 };
    let (broadcast_n, rate, burst) = (10_000 / scale, 2_000 / scale as u32, 1_000 / scale as u32);
    let (storm_n, connect_quota) = (2_000 / scale, 500 / scale as u32);
    let mut out = AtQuotas {
        broadcast_n,
        posts_quota: (rate, burst),
        broadcast_secs: Series::default(),
        throttled: Series::default(),
        requeued: Series::default(),
        storm_n,
        connect_quota,
        storm_secs: Series::default(),
    };

    let server = Server::Switchboard {
        redis: Some(redis_url.to_owned()),
        over_http: false,
        history: None,
        args: ["--connections-quota", &rate.to_string(), "--connections-burst", &burst.to_string()]
            .map(str::to_owned)
            .to_vec(),
    };
    let started = start(&server)?;
    let mut c = client(&server, &started, broadcast_n)?;
    c.json(Duration::from_secs(300))?;
    for round in 0..repeats {
        // A full bucket at the start of each, as after a quiet spell.
        std::thread::sleep(Duration::from_secs_f64(f64::from(burst) / f64::from(rate) + 0.5));
        let (throttled0, requeued0) = (deliveries(&started.http, "throttled")?, deliveries(&started.http, "requeued")?);
        // timed_broadcasts sends a warm-up first: two broadcasts, the second timed.
        for (r, _) in timed_broadcasts(&server, &started, &mut c, 1, &format!("q{round}"))? {
            out.broadcast_secs.push(r["ms"].as_f64().unwrap_or(f64::NAN) / 1000.0);
        }
        out.throttled.push((deliveries(&started.http, "throttled")? - throttled0) / 2.0);
        out.requeued.push((deliveries(&started.http, "requeued")? - requeued0) / 2.0);
    }
    c.send(&crate::client::Command::Quit)?;
    drop(started);

    for _ in 0..repeats {
        // Each client that drops and comes back adds presence.offline and
        // presence.online to the tenant's history: room for all of them.
        let server = Server::Switchboard {
            redis: Some(redis_url.to_owned()),
            over_http: false,
            history: Some(4 * storm_n + 1000),
            args: [
                "--connect-quota",
                &connect_quota.to_string(),
                // The JavaScript client sends its token as the template's default identity source says.
                "--identity-source",
                "route.request.header.Sec-WebSocket-Protocol",
            ]
            .map(str::to_owned)
            .to_vec(),
        };
        let started = start(&server)?;
        let ws_port = started.ws_url.rsplit(':').next().and_then(|p| p.split('/').next()).context("the ws port")?;
        out.storm_secs.push(node_storm(ws_port, &started.http, storm_n)?);
        drop(started);
    }
    Ok(out)
}

/// `bench/js/storm.mjs` under Node: seconds until every client is back.
fn node_storm(ws_port: &str, http: &str, n: usize) -> anyhow::Result<f64> {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/storm.mjs");
    let major: u32 = std::process::Command::new("node")
        .args(["-p", "process.versions.node.split('.')[0]"])
        .output()
        .context("node (Node.js) runs benchmark 13's storm")?
        .stdout
        .iter()
        .map(|b| *b as char)
        .collect::<String>()
        .trim()
        .parse()
        .unwrap_or(22);
    let mut args = Vec::new();
    if major < 22 {
        args.push("--experimental-websocket".to_owned());
    }
    args.extend([script.display().to_string(), ws_port.to_owned(), http.to_owned(), n.to_string(), SECRET.to_owned()]);
    let env = [("SWITCHBOARD_LOCAL", sibling("switchboard-local").display().to_string())];
    let proc = Proc::spawn(&"node".into(), &args, &env)?;
    let answer: Value = proc.json(Duration::from_secs(600))?;
    answer["secs"].as_f64().context("the storm's answer has no secs")
}

/// Benchmark 13's rows of the main table.
pub(crate) fn rows(q: &AtQuotas) -> String {
    let (rate, burst) = q.posts_quota;
    let pace = q.broadcast_n as f64 / f64::from(rate);
    let ratio = q.broadcast_secs.median() / pace;
    let storm_pace = q.storm_n as f64 / f64::from(q.connect_quota);
    let storm_ratio = q.storm_secs.median() / storm_pace;
    format!(
        "| 13 | one broadcast to {} under an `@connections` quota of {rate}/s (burst {burst}), until the last client has it; beside it the quota's own pace ({} ÷ {rate}) | {} | {} | {:.2}× | ≤ 1.15× | {} |\n\
         | 13 | the same: posts answered 429 and made again; recipients handed to a queued job | {} ; {} | — | — | (none lost) | |\n\
         | 13 | {} clients of the JavaScript client cut at once, through a new-connection quota of {}/s: until all are back and recovered; beside it the quota's pace | {} | {} | {:.2}× | ≤ 1.3× | {} |\n",
        q.broadcast_n,
        q.broadcast_n,
        q.broadcast_secs.show("s"),
        fmt(pace) + " s",
        ratio,
        verdict(ratio <= 1.15),
        q.throttled.show(""),
        q.requeued.show(""),
        q.storm_n,
        q.connect_quota,
        q.storm_secs.show("s"),
        fmt(storm_pace) + " s",
        storm_ratio,
        verdict(storm_ratio <= 1.3),
    )
}
