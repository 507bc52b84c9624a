//! Metrics: one set of names and units, two outputs.
//!
//! Code records through the [`metrics`] facade with the helpers below (so
//! a name or a label is spelled once). What receives them is installed by
//! the binary: in Lambda, [`install_emf`] collects them and [`flush_emf`]
//! writes them after each invocation as CloudWatch Embedded Metric Format
//! lines on stdout, which CloudWatch Logs turns into metrics without a
//! `PutMetricData` call on the hot path; the emulator installs a
//! Prometheus recorder and serves `GET /metrics`. With neither installed
//! (tests, tools) recording costs next to nothing.
//!
//! No metric has a tenant dimension: tenants are unbounded, and every
//! distinct dimension value is a separate (billed) CloudWatch metric and a
//! separate Prometheus series. Each label below takes a fixed, small set of
//! values (an event's family is the first word of a catalogue type).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// `$connect`s accepted.
pub const CONNECTIONS_OPENED: &str = "switchboard_connections_opened_total";
/// `$disconnect`s handled.
pub const CONNECTIONS_CLOSED: &str = "switchboard_connections_closed_total";
/// Connections open now (the emulator's gateway; in AWS, API Gateway's `ConnectCount`).
pub const CONNECTIONS_CURRENT: &str = "switchboard_connections_current";
/// Client frames routed to `ws-message`, by `action`.
pub const MESSAGES_IN: &str = "switchboard_messages_in_total";
/// Events recorded and fanned out, by `family` (`call`, `chat`, ...).
pub const EVENTS_PUBLISHED: &str = "switchboard_events_published_total";
/// Posts to connections and offline queueing, by `outcome`.
pub const DELIVERIES: &str = "switchboard_deliveries_total";
/// One fan-out, from its recipients to its last post.
pub const FANOUT_DURATION: &str = "switchboard_fanout_duration_seconds";
/// Webhook attempts, by `outcome` (the delivery log's status).
pub const WEBHOOK_ATTEMPTS: &str = "switchboard_webhook_attempts_total";
/// One webhook attempt's round trip to the receiver.
pub const WEBHOOK_LATENCY: &str = "switchboard_webhook_latency_seconds";
/// Messages sent to a dead-letter queue, by `queue` (`webhooks`, `events`).
pub const DEAD_LETTERS: &str = "switchboard_dead_letters_total";
/// Webhook circuit breakers found open (a delivery held back).
pub const BREAKER_OPENS: &str = "switchboard_breaker_opens_total";
/// Requests refused by a tenant's rate limit, by `path` (`http`, `websocket`, `recovery`).
pub const RATE_LIMITED: &str = "switchboard_rate_limited_total";
/// `subscribe` with `since`, by `result` (`recovered`, `refused`).
pub const RECOVERIES: &str = "switchboard_recoveries_total";

/// Every metric: name, unit, help. The README's metrics table lists the same.
pub const ALL: &[(&str, Unit, &str)] = &[
    (CONNECTIONS_OPENED, Unit::Count, "$connect requests accepted"),
    (CONNECTIONS_CLOSED, Unit::Count, "$disconnect events handled"),
    (CONNECTIONS_CURRENT, Unit::Count, "connections open on this gateway"),
    (MESSAGES_IN, Unit::Count, "client frames routed to ws-message, by action"),
    (EVENTS_PUBLISHED, Unit::Count, "events published, by family"),
    (DELIVERIES, Unit::Count, "posts to connections and offline queueing, by outcome"),
    (FANOUT_DURATION, Unit::Seconds, "one fan-out from its resolved recipients to its last post"),
    (WEBHOOK_ATTEMPTS, Unit::Count, "webhook attempts, by outcome"),
    (WEBHOOK_LATENCY, Unit::Seconds, "one webhook attempt's round trip"),
    (DEAD_LETTERS, Unit::Count, "messages sent to a dead-letter queue, by queue"),
    (BREAKER_OPENS, Unit::Count, "deliveries held back by an open circuit breaker"),
    (RATE_LIMITED, Unit::Count, "requests refused by a tenant's rate limit, by path"),
    (RECOVERIES, Unit::Count, "subscribes with since, by result"),
];

/// Gives every metric its unit and help with the installed recorder.
pub fn describe() {
    for &(name, unit, help) in ALL {
        match unit {
            Unit::Seconds => ::metrics::describe_histogram!(name, unit, help),
            _ if name == CONNECTIONS_CURRENT => ::metrics::describe_gauge!(name, unit, help),
            _ => ::metrics::describe_counter!(name, unit, help),
        }
    }
}

/// A `$connect` accepted.
pub fn connection_opened() {
    ::metrics::counter!(CONNECTIONS_OPENED).increment(1);
}

/// A `$disconnect` handled.
pub fn connection_closed() {
    ::metrics::counter!(CONNECTIONS_CLOSED).increment(1);
}

/// A client frame for `action` (one of the protocol's actions, or `invalid`).
pub fn message_in(action: &'static str) {
    ::metrics::counter!(MESSAGES_IN, "action" => action).increment(1);
}

/// An event of `event_type` (`call.incoming`) published: counted by its family (`call`).
pub fn event_published(event_type: &'static str) {
    let family = event_type.split('.').next().unwrap_or(event_type);
    ::metrics::counter!(EVENTS_PUBLISHED, "family" => family).increment(1);
}

/// One fan-out's posts: how many were delivered, found gone or failed, and how long they took.
pub fn posts(delivered: usize, gone: usize, failed: usize, throttled: usize, took: Duration) {
    for (outcome, n) in [("delivered", delivered), ("gone", gone), ("failed", failed), ("throttled", throttled)] {
        if n > 0 {
            ::metrics::counter!(DELIVERIES, "outcome" => outcome).increment(n as u64);
        }
    }
    ::metrics::histogram!(FANOUT_DURATION).record(took.as_secs_f64());
}

/// Recipients of a synchronous fan-out handed to a queued job (throttled
/// or failed past the fan-out's retry window).
pub fn requeued(n: usize) {
    if n > 0 {
        ::metrics::counter!(DELIVERIES, "outcome" => "requeued").increment(n as u64);
    }
}

/// An event kept in an offline user's queue.
pub fn queued_offline() {
    ::metrics::counter!(DELIVERIES, "outcome" => "queued_offline").increment(1);
}

/// A webhook attempt logged with `outcome` (the delivery log's status)
/// that took `took` (`dropped`: none was sent, no latency).
pub fn webhook_attempt(outcome: &'static str, took: Duration) {
    ::metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
    if outcome != "dropped" {
        ::metrics::histogram!(WEBHOOK_LATENCY).record(took.as_secs_f64());
    }
}

/// `n` messages sent to the dead-letter queue of `queue` (`webhooks`, `events`).
pub fn dead_lettered(queue: &'static str, n: usize) {
    ::metrics::counter!(DEAD_LETTERS, "queue" => queue).increment(n as u64);
}

/// A delivery held back by an open breaker.
pub fn breaker_open() {
    ::metrics::counter!(BREAKER_OPENS).increment(1);
}

/// A request refused by the tenant's rate limit on `path` (`http`, `websocket`, `recovery`).
pub fn rate_limited(path: &'static str) {
    ::metrics::counter!(RATE_LIMITED, "path" => path).increment(1);
}

/// A recovery that replayed (`true`) or answered `recovered:false`.
pub fn recovery(recovered: bool) {
    ::metrics::counter!(RECOVERIES, "result" => if recovered { "recovered" } else { "refused" }).increment(1);
}

/// The connections open now (the emulator's gateway).
pub fn connections_current(n: usize) {
    ::metrics::gauge!(CONNECTIONS_CURRENT).set(n as f64);
}

// ---------------------------------------------------------------- EMF

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Switchboard";

/// A metric's labels, in name order: one EMF document per distinct set.
type Labels = Vec<(String, String)>;

/// Collects what is recorded between two flushes, for EMF.
pub struct Emf {
    registry: Registry<Key, AtomicStorage>,
    function: String,
}

static EMF: OnceLock<Arc<Emf>> = OnceLock::new();

impl Emf {
    /// A collector for `function` (the `function` dimension of every metric).
    pub fn new(function: &str) -> Self {
        Emf { registry: Registry::atomic(), function: function.to_owned() }
    }

    /// What was recorded since the last call, as EMF documents (one per
    /// set of labels), and starts over. `timestamp_ms`: their time.
    pub fn drain(&self, timestamp_ms: i64) -> Vec<String> {
        let mut groups: BTreeMap<Labels, BTreeMap<String, (&'static str, Vec<f64>)>> = BTreeMap::new();
        let mut put = |key: &Key, values: Vec<f64>| {
            let labels: Labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            let unit = ALL.iter().find(|(n, _, _)| *n == key.name()).map_or("None", |(_, u, _)| emf_unit(*u));
            groups
                .entry(labels)
                .or_default()
                .entry(key.name().to_owned())
                .or_insert((unit, Vec::new()))
                .1
                .extend(values);
        };
        for (key, counter) in self.registry.get_counter_handles() {
            let n = counter.swap(0, Ordering::Relaxed);
            if n > 0 {
                put(&key, vec![n as f64]);
            }
        }
        for (key, gauge) in self.registry.get_gauge_handles() {
            put(&key, vec![f64::from_bits(gauge.load(Ordering::Relaxed))]);
        }
        for (key, histogram) in self.registry.get_histogram_handles() {
            let mut values = Vec::new();
            histogram.clear_with(|chunk| values.extend_from_slice(chunk));
            if !values.is_empty() {
                put(&key, values);
            }
        }
        let mut docs = Vec::new();
        for (labels, metrics) in groups {
            // EMF takes at most 100 values per metric in a document: more
            // (a sweep of many tenants, a large batch) go in further ones.
            let most = metrics.values().map(|(_, v)| v.len()).max().unwrap_or(0);
            for part in 0..most.div_ceil(EMF_MAX_VALUES) {
                let range = part * EMF_MAX_VALUES..(part + 1) * EMF_MAX_VALUES;
                let here: Vec<(&String, &'static str, &[f64])> = metrics
                    .iter()
                    .filter(|(_, (_, v))| v.len() > range.start)
                    .map(|(name, (unit, v))| (name, *unit, &v[range.start..range.end.min(v.len())]))
                    .collect();
                docs.push(self.document(timestamp_ms, &labels, &here));
            }
        }
        docs
    }

    /// One EMF document: `metrics` (name, unit, values) under `labels`.
    fn document(&self, timestamp_ms: i64, labels: &Labels, metrics: &[(&String, &'static str, &[f64])]) -> String {
        let mut dimensions = vec!["function".to_owned()];
        dimensions.extend(labels.iter().map(|(k, _)| k.clone()));
        let definitions: Vec<serde_json::Value> =
            metrics.iter().map(|(name, unit, _)| serde_json::json!({"Name": name, "Unit": unit})).collect();
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dimensions], "Metrics": definitions}],
            },
            "function": self.function,
        });
        for (k, v) in labels {
            doc[k] = serde_json::Value::String(v.clone());
        }
        for (name, _, values) in metrics {
            doc[name.as_str()] = match values {
                [one] => serde_json::json!(one),
                many => serde_json::json!(many),
            };
        }
        doc.to_string()
    }
}

/// The most values one metric may carry in one EMF document.
pub const EMF_MAX_VALUES: usize = 100;

fn emf_unit(unit: Unit) -> &'static str {
    match unit {
        Unit::Seconds => "Seconds",
        Unit::Count => "Count",
        _ => "None",
    }
}

impl Recorder for Emf {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry.get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry.get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry.get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// A shared [`Emf`] as the global recorder.
struct Installed(Arc<Emf>);

impl Recorder for Installed {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, m: &Metadata<'_>) -> Counter {
        self.0.register_counter(key, m)
    }
    fn register_gauge(&self, key: &Key, m: &Metadata<'_>) -> Gauge {
        self.0.register_gauge(key, m)
    }
    fn register_histogram(&self, key: &Key, m: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, m)
    }
}

/// Makes EMF the process's recorder, for the Lambda function `function`
/// (its `main` calls this once; a second call, or another recorder
/// installed first, leaves things as they are).
pub fn install_emf(function: &str) {
    let emf = EMF.get_or_init(|| Arc::new(Emf::new(function))).clone();
    let _ = ::metrics::set_global_recorder(Installed(emf));
}

/// Awaits `work` (one invocation), then [`flush_emf`].
pub async fn flushed<T>(work: impl std::future::Future<Output = T>) -> T {
    let out = work.await;
    flush_emf();
    out
}

/// Writes what was recorded since the last flush to stdout as EMF lines
/// (CloudWatch Logs extracts them); nothing without [`install_emf`].
/// Lambda functions call it after each invocation.
pub fn flush_emf() {
    if let Some(emf) = EMF.get() {
        use std::io::Write;
        let lines = emf.drain(crate::time::now_millis());
        if lines.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }
}
