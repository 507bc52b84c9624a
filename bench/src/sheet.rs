//! Section 14: a capacity and cost sheet for a platform of a given size,
//! computed from this run's measured per-operation figures and AWS's
//! published prices and default quotas. The workload and the prices are
//! data (below), so a reader can see, and change, every assumption.

use std::fmt::Write as _;

/// What this run measured that the sheet needs.
pub(crate) struct Measured<'a> {
    /// Section 6.
    pub redis: &'a RedisCosts,
    /// Redis bytes per retained history event (section 10).
    pub history_bytes_per_event: f64,
    /// The sending function's own CPU per post, µs (section 12).
    pub cpu_us_per_post: f64,
    /// Warm invocations of each function, ms (section 11), by name.
    pub warm_ms: Vec<(&'static str, f64)>,
}

/// A call center's traffic, per person and per tenant: the sheet's assumptions.
struct Workload {
    agents_per_tenant: f64,
    supervisors_per_agent: f64,
    /// Browser tabs and apps per person.
    connections_per_person: f64,
    /// Hours a month each person is connected (10 h × 22 days).
    hours_per_month: f64,
    calls_per_agent_hour: f64,
    /// `call.*` events per call (incoming, answered, hold, unhold, ended).
    events_per_call: f64,
    state_changes_per_agent_hour: f64,
    /// `chat.message` sent by agents, each to one user.
    chats_per_agent_hour: f64,
    /// `queue.stats` of each tenant, seconds apart.
    queue_stats_every_secs: f64,
    /// A rotation every 99–110 minutes (the client's jitter).
    connection_lifetime_secs: f64,
    /// The client's ping.
    ping_every_secs: f64,
    /// Webhooks of each tenant on `call.ended`.
    webhooks_per_tenant: f64,
    /// Wall time one `@connections` post waits on API Gateway (not measured here).
    post_round_trip_ms: f64,
    /// Posts in flight at once (`FANOUT_CONCURRENCY`).
    fanout_concurrency: f64,
    /// The functions' memory (`MemorySize` in the template), GB.
    function_gb: f64,
    /// `HISTORY_SIZE`.
    history_size: f64,
}

const WORKLOAD: Workload = Workload {
    agents_per_tenant: 50.0,
    supervisors_per_agent: 0.1,
    connections_per_person: 1.2,
    hours_per_month: 220.0,
    calls_per_agent_hour: 12.0,
    events_per_call: 5.0,
    state_changes_per_agent_hour: 30.0,
    chats_per_agent_hour: 60.0,
    queue_stats_every_secs: 5.0,
    connection_lifetime_secs: 105.0 * 60.0,
    ping_every_secs: 240.0,
    webhooks_per_tenant: 1.0,
    post_round_trip_ms: 20.0,
    fanout_concurrency: 128.0,
    function_gb: 0.25,
    history_size: 1000.0,
};

/// AWS's published on-demand list prices in us-east-1, read from the
/// pricing pages of API Gateway, Lambda (arm64), SQS and ElastiCache in
/// 2025: confirm them before relying on the totals.
struct Prices {
    /// WebSocket messages, per million (the first billion a month; each 32 KB counts as one).
    ws_messages: f64,
    /// WebSocket connection minutes, per million.
    ws_connection_minutes: f64,
    /// HTTP API requests, per million (the first 300 million).
    http_requests: f64,
    /// Lambda arm64, per GB-second.
    lambda_gb_second: f64,
    /// Lambda requests, per million.
    lambda_requests: f64,
    /// SQS standard requests, per million.
    sqs_requests: f64,
    /// ElastiCache Serverless (Redis OSS), per GB-hour of data (1 GB minimum).
    cache_gb_hour: f64,
    /// ElastiCache Serverless, per million ECPUs.
    cache_ecpus: f64,
}

const PRICES: Prices = Prices {
    ws_messages: 1.00,
    ws_connection_minutes: 0.25,
    http_requests: 1.00,
    lambda_gb_second: 0.000_013_333_4,
    lambda_requests: 0.20,
    sqs_requests: 0.40,
    cache_gb_hour: 0.125,
    cache_ecpus: 0.0034,
};

/// The account's default quotas (per Region).
const POSTS_PER_SEC_QUOTA: f64 = 10_000.0;
const NEW_CONNECTIONS_PER_SEC_QUOTA: f64 = 500.0;
const LAMBDA_CONCURRENCY_QUOTA: f64 = 1_000.0;

/// One platform size, worked out.
struct Sized {
    agents: f64,
    connections: f64,
    events_per_sec: f64,
    posts_per_sec: f64,
    new_connections_per_sec: f64,
    client_messages_per_sec: f64,
    http_per_sec: f64,
    lambda_per_sec: f64,
    lambda_gb_secs_per_sec: f64,
    concurrency: f64,
    redis_commands_per_sec: f64,
    redis_cores: f64,
    redis_gb: f64,
    sqs_per_sec: f64,
    /// A full reconnect (every connection at once) at the new-connection quota, seconds.
    full_reconnect_secs: f64,
    bill: Vec<(&'static str, f64)>,
}

fn size(agents: f64, m: &Measured) -> Sized {
    let w = &WORKLOAD;
    let tenants = (agents / w.agents_per_tenant).max(1.0);
    let people = agents * (1.0 + w.supervisors_per_agent);
    let connections = people * w.connections_per_person;
    let per_tenant = connections / tenants;
    let supervisors_per_tenant = agents * w.supervisors_per_agent * w.connections_per_person / tenants;
    let call = agents * w.calls_per_agent_hour * w.events_per_call / 3600.0;
    let state = agents * w.state_changes_per_agent_hour / 3600.0;
    let chat = agents * w.chats_per_agent_hour / 3600.0;
    let stats = tenants / w.queue_stats_every_secs;
    // Today's subscriptions are tenant-wide types: call.* and queue.* reach
    // every connection of the tenant, agent.* its supervisors, a chat its user's.
    let posts = (call + stats) * per_tenant + state * supervisors_per_tenant + chat * w.connections_per_person;
    let new_connections = connections / w.connection_lifetime_secs;
    let pings = connections / w.ping_every_secs;
    // Each connect resubscribes (with since); agents send their chats over the socket.
    let client_messages = pings + new_connections + chat;
    let http = call + state + stats;
    let warm = |name: &str| m.warm_ms.iter().find(|(n, _)| *n == name).map_or(1.0, |(_, ms)| *ms).max(1.0);
    // A publish of the HTTP API posts inline: its CPU per post, and the
    // waits for API Gateway, FANOUT_CONCURRENCY posts at a time.
    let api_ms = |recipients: f64| {
        warm("api")
            + recipients * m.cpu_us_per_post / 1000.0
            + (recipients / w.fanout_concurrency).ceil() * w.post_round_trip_ms
    };
    let invocations: [(f64, f64); 6] = [
        (new_connections, warm("ws-authorizer")),
        (new_connections, warm("ws-connect")),
        (new_connections, warm("ws-disconnect")),
        (pings + new_connections, warm("ws-message")),
        (chat, api_ms(w.connections_per_person)),
        ((call + stats), api_ms(per_tenant)),
    ];
    let state_publish = (state, api_ms(supervisors_per_tenant));
    let all: Vec<(f64, f64)> = invocations.into_iter().chain([state_publish]).collect();
    let lambda_per_sec: f64 = all.iter().map(|(n, _)| n).sum();
    let busy_secs_per_sec: f64 = all.iter().map(|(n, ms)| n * ms / 1000.0).sum();
    let redis = m.redis;
    let op = |prefix: &str| redis.op(prefix).map_or((0.0, 0.0), |o| (o.commands as f64, o.usec as f64));
    let ops = [
        (new_connections, op("connect")),
        (new_connections, op("disconnect")),
        (new_connections, op("subscribe with since")),
        (pings, op("ping")),
        (call + stats, op("publish to 1,000")),
        (chat + state, op("publish to 1 ")),
    ];
    let redis_commands: f64 = ops.iter().map(|(n, (c, _))| n * c).sum();
    let redis_cores: f64 = ops.iter().map(|(n, (_, us))| n * us / 1e6).sum();
    let redis_gb =
        (connections * redis.bytes_per_connection + tenants * w.history_size * m.history_bytes_per_event) * 1.2 / 1e9;
    let deliveries = agents * w.calls_per_agent_hour / 3600.0 * w.webhooks_per_tenant;
    // SendMessageBatch, ReceiveMessage and DeleteMessageBatch, ten at a time.
    let sqs = deliveries * 3.0 / 10.0;
    let secs = w.hours_per_month * 3600.0;
    let month = |per_sec: f64| per_sec * secs;
    let p = &PRICES;
    let bill = vec![
        ("API Gateway messages", month(posts + 2.0 * client_messages) / 1e6 * p.ws_messages),
        ("API Gateway connection minutes", connections * w.hours_per_month * 60.0 / 1e6 * p.ws_connection_minutes),
        ("HTTP API requests", month(http) / 1e6 * p.http_requests),
        ("Lambda requests", month(lambda_per_sec) / 1e6 * p.lambda_requests),
        ("Lambda GB-seconds", month(busy_secs_per_sec * w.function_gb) * p.lambda_gb_second),
        ("SQS requests", month(sqs) / 1e6 * p.sqs_requests),
        ("ElastiCache data (all month)", redis_gb.max(1.0) * 730.0 * p.cache_gb_hour),
        ("ElastiCache ECPUs", month(redis_commands) / 1e6 * p.cache_ecpus),
    ];
    Sized {
        agents,
        connections,
        events_per_sec: call + state + chat + stats,
        posts_per_sec: posts,
        new_connections_per_sec: new_connections,
        client_messages_per_sec: client_messages,
        http_per_sec: http,
        lambda_per_sec,
        lambda_gb_secs_per_sec: busy_secs_per_sec * w.function_gb,
        concurrency: busy_secs_per_sec,
        redis_commands_per_sec: redis_commands,
        redis_cores,
        redis_gb,
        sqs_per_sec: sqs,
        full_reconnect_secs: connections / NEW_CONNECTIONS_PER_SEC_QUOTA,
        bill,
    }
}

/// Figures with thousands separators, or two significant decimals below 10.
fn n(x: f64) -> String {
    if x < 10.0 {
        return format!("{x:.2}");
    }
    let digits = format!("{:.0}", x.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Section 14, for 1,000, 10,000 and 100,000 agents.
pub(crate) fn report(m: &Measured) -> String {
    let sizes: Vec<Sized> = [1_000.0, 10_000.0, 100_000.0].iter().map(|a| size(*a, m)).collect();
    let w = &WORKLOAD;
    let mut out = String::new();
    let _ = writeln!(out, "## 14. Capacity and cost sheet\n");
    let _ = writeln!(
        out,
        "Computed from this run's measured figures — Redis commands, time and memory per operation (section 6), \
         Redis bytes per retained event (section 10), the sending function's CPU per post (section 12), each \
         function's warm invocation (section 11) — and AWS's published on-demand prices in us-east-1 (read from the \
         API Gateway, Lambda arm64, SQS and ElastiCache Serverless pricing pages in 2025; confirm them before relying \
         on the totals: WebSocket messages ${}/million in 32 KB units, connection minutes ${}/million, HTTP API \
         ${}/million, Lambda ${}/GB-s and ${}/million requests, SQS ${}/million, ElastiCache Serverless (Redis OSS) \
         ${}/GB-hour with a 1 GB minimum and ${}/million ECPUs) and default quotas (10,000 API requests/s with a \
         5,000 burst per account and Region, `@connections` posts included; 500 new WebSocket connections/s; \
         1,000 concurrent Lambda executions).\n",
        PRICES.ws_messages,
        PRICES.ws_connection_minutes,
        PRICES.http_requests,
        PRICES.lambda_gb_second,
        PRICES.lambda_requests,
        PRICES.sqs_requests,
        PRICES.cache_gb_hour,
        PRICES.cache_ecpus,
    );
    let _ = writeln!(
        out,
        "The workload (assumptions, `bench/src/sheet.rs`): tenants of {} agents and {} supervisor per {} agents, {} \
         connections per person, connected {} h a month; per agent and hour {} calls of {} `call.*` events, {} \
         `agent.state.changed`, {} `chat.message` (to one user); each tenant's `queue.stats` every {} s and {} \
         webhook on `call.ended`; a ping every {} s, a rotation every ~{} min. Subscriptions are today's tenant-wide \
         types: a `call.*` or `queue.*` event reaches every connection of its tenant. A post's wait on API Gateway \
         ({} ms) is assumed, not measured; ECPUs are counted as one per Redis command (scripts as the commands they run).\n",
        w.agents_per_tenant,
        1,
        n(1.0 / w.supervisors_per_agent),
        w.connections_per_person,
        w.hours_per_month,
        w.calls_per_agent_hour,
        w.events_per_call,
        w.state_changes_per_agent_hour,
        w.chats_per_agent_hour,
        w.queue_stats_every_secs,
        w.webhooks_per_tenant,
        w.ping_every_secs,
        w.connection_lifetime_secs / 60.0,
        w.post_round_trip_ms,
    );
    let header: Vec<String> = sizes.iter().map(|s| format!("{} agents", n(s.agents))).collect();
    let _ = writeln!(out, "| | {} |", header.join(" | "));
    let _ = writeln!(out, "| --- |{}", " --- |".repeat(sizes.len()));
    let row = |out: &mut String, label: &str, f: &dyn Fn(&Sized) -> String| {
        let cells: Vec<String> = sizes.iter().map(f).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    row(&mut out, "connections", &|s| n(s.connections));
    row(&mut out, "events published /s", &|s| n(s.events_per_sec));
    row(&mut out, "`@connections` posts /s", &|s| n(s.posts_per_sec));
    row(&mut out, "client messages /s (pings, resubscribes, chats)", &|s| n(s.client_messages_per_sec));
    row(&mut out, "HTTP API publishes /s", &|s| n(s.http_per_sec));
    row(&mut out, "new connections /s (rotation)", &|s| n(s.new_connections_per_sec));
    row(&mut out, "everyone reconnecting at once, at 500/s", &|s| format!("{} s", n(s.full_reconnect_secs)));
    row(&mut out, "Lambda invocations /s", &|s| n(s.lambda_per_sec));
    row(&mut out, "Lambda GB-seconds /s", &|s| n(s.lambda_gb_secs_per_sec));
    row(&mut out, "Lambda concurrency (busy instances)", &|s| n(s.concurrency));
    row(&mut out, "Redis commands /s", &|s| n(s.redis_commands_per_sec));
    row(&mut out, "Redis CPU (cores, from `usec`)", &|s| n(s.redis_cores));
    row(&mut out, "Redis memory (connections and full histories, +20 %)", &|s| format!("{} GB", n(s.redis_gb)));
    row(&mut out, "SQS requests /s", &|s| n(s.sqs_per_sec));
    for (i, (line, _)) in sizes[0].bill.iter().enumerate() {
        row(&mut out, &format!("$ / month: {line}"), &|s| format!("${}", n(s.bill[i].1)));
    }
    row(&mut out, "**$ / month, total**", &|s| format!("**${}**", n(s.bill.iter().map(|(_, d)| d).sum())));
    row(&mut out, "`@connections` quota used (10,000/s)", &|s| {
        format!("{:.0} %", 100.0 * s.posts_per_sec / POSTS_PER_SEC_QUOTA)
    });
    row(&mut out, "Lambda concurrency quota used (1,000)", &|s| {
        format!("{:.1} %", 100.0 * s.concurrency / LAMBDA_CONCURRENCY_QUOTA)
    });
    row(&mut out, "new-connection quota used (500/s)", &|s| {
        format!("{:.1} %", 100.0 * s.new_connections_per_sec / NEW_CONNECTIONS_PER_SEC_QUOTA)
    });
    // Everything scales with the agents: each quota is reached at a size.
    let one = &sizes[0];
    let at = |used: f64, quota: f64| one.agents * quota / used;
    let mut limits = [
        ("the `@connections` quota (10,000 posts/s)", at(one.posts_per_sec, POSTS_PER_SEC_QUOTA)),
        ("Lambda's concurrency (1,000)", at(one.concurrency, LAMBDA_CONCURRENCY_QUOTA)),
        ("new connections (500/s) by rotation alone", at(one.new_connections_per_sec, NEW_CONNECTIONS_PER_SEC_QUOTA)),
    ];
    limits.sort_by(|a, b| a.1.total_cmp(&b.1));
    let _ = writeln!(
        out,
        "\nWhich quota comes first: {} at about {} agents; then {} at about {}; then {} at about {}. \
         Long before the last, a reconnect of everyone at once (a network blip, a deployment) takes the \
         new-connection quota's pace: the row above. The `@connections` quota is spent by tenant-wide \
         `call.*` and `queue.*` events reaching every connection of a tenant; channels that reach only a \
         queue's members would divide it by the share of a tenant that cares.\n",
        limits[0].0,
        n(limits[0].1),
        limits[1].0,
        n(limits[1].1),
        limits[2].0,
        n(limits[2].1),
    );
    out
}

/// What one operation costs Redis (`INFO commandstats` deltas).
#[derive(Debug, Clone)]
pub(crate) struct RedisCost {
    pub label: String,
    /// Script calls: round trips.
    pub scripts: u64,
    /// Every command, inside scripts included.
    pub commands: u64,
    /// Redis's own time for them (`usec`), µs.
    pub usec: u64,
}

/// Section 6: what each hot-path operation costs Redis; and the Redis
/// memory one idle, subscribed connection takes (`used_memory` across
/// 1,000 of them), bytes.
pub(crate) struct RedisCosts {
    pub ops: Vec<RedisCost>,
    pub bytes_per_connection: f64,
}

impl RedisCosts {
    /// The operation whose label starts with `prefix`.
    pub(crate) fn op(&self, prefix: &str) -> Option<&RedisCost> {
        self.ops.iter().find(|o| o.label.starts_with(prefix))
    }
}
