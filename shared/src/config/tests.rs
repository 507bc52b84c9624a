//! The configuration's parsing: each variable, its default and its errors.

use super::*;
use std::collections::HashMap;

fn lookup_from(map: HashMap<&'static str, String>) -> impl Fn(&str) -> Option<String> {
    move |name| map.get(name).cloned()
}

fn cfg(pairs: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
    let map = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    Config::from_lookup(&lookup_from(map))
}

#[test]
fn the_variable_lists_are_exactly_what_is_read() {
    use std::cell::RefCell;
    let asked = RefCell::new(std::collections::BTreeSet::new());
    let record = |name: &str| {
        asked.borrow_mut().insert(name.to_owned());
        match name {
            "REDIS_URL" => Some("redis://localhost:6379".to_owned()),
            "JWT_SECRET" => Some("x".repeat(32)),
            _ => None,
        }
    };
    Config::from_lookup(&record).unwrap();
    let config: Vec<String> = asked.borrow().iter().cloned().collect();
    assert_eq!(config, CONFIG_VARIABLES, "Config reads exactly CONFIG_VARIABLES");
}

#[test]
fn redis_credentials_join_the_url_without_being_in_it() {
    let c = cfg(&[
        ("REDIS_URL", "rediss://a.cache.amazonaws.com:6379,rediss://b.cache.amazonaws.com:6379"),
        ("REDIS_CLUSTER", "true"),
        ("REDIS_USERNAME", "switchboard"),
        ("REDIS_PASSWORD", "s3cr3t/with:odd@chars"),
    ])
    .unwrap();
    let urls = &c.redis.unwrap().urls;
    assert_eq!(urls.len(), 2);
    for u in urls {
        let parsed = Url::parse(u).unwrap();
        assert_eq!(parsed.username(), "switchboard");
        assert_eq!(parsed.password(), Some("s3cr3t%2Fwith%3Aodd%40chars"), "percent-encoded: {u}");
    }
    let c = cfg(&[("REDIS_URL", "redis://localhost:6379"), ("REDIS_PASSWORD", "tok")]).unwrap();
    assert_eq!(c.redis.unwrap().urls, ["redis://:tok@localhost:6379"]);
}

#[test]
fn queues_and_webhook_policy_are_read_and_checked() {
    let c = cfg(&[
        ("WEBHOOK_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123456789012/hooks"),
        ("EVENTS_QUEUE_URL", "http://127.0.0.1:9324/000000000000/events"),
        ("WEBHOOK_RETRY_SCHEDULE", "1s, 2m,3h,45"),
        ("WEBHOOK_RETRY_JITTER", "0"),
        ("WEBHOOK_BREAKER_THRESHOLD", "0"),
        ("FANOUT_CHUNK_SIZE", "250"),
    ])
    .unwrap();
    assert_eq!(c.queues.webhooks.as_deref(), Some("https://sqs.eu-west-1.amazonaws.com/123456789012/hooks"));
    assert_eq!(c.queues.webhooks_dlq, None);
    let secs: Vec<u64> = c.webhooks.schedule.delays.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [1, 120, 10_800, 45]);
    assert_eq!((c.webhooks.schedule.jitter, c.webhooks.breaker_threshold, c.fanout_chunk_size), (0.0, 0, 250));
    let d = Config::default();
    assert_eq!(d.webhooks.schedule.delays.len(), 7, "Svix's schedule");

    let err = |pairs: &[(&'static str, &str)]| cfg(pairs).unwrap_err().to_string();
    assert!(err(&[("WEBHOOK_QUEUE_URL", "hooks")]).starts_with("WEBHOOK_QUEUE_URL is not an SQS queue URL"));
    assert!(err(&[("EVENTS_QUEUE_URL", "https://sqs.example.com/")]).starts_with("EVENTS_QUEUE_URL is not"));
    assert!(err(&[("WEBHOOK_RETRY_SCHEDULE", "5s,13h")]).contains("over 12 h"));
    assert!(err(&[("WEBHOOK_RETRY_SCHEDULE", "5d")]).contains("use s, m or h"));
    assert!(err(&[("WEBHOOK_RETRY_SCHEDULE", ",")]).contains("WEBHOOK_RETRY_SCHEDULE is empty"));
    assert!(err(&[("WEBHOOK_RETRY_JITTER", "2")]).starts_with("WEBHOOK_RETRY_JITTER is 2"));
    assert!(err(&[("FANOUT_CHUNK_SIZE", "0")]).starts_with("FANOUT_CHUNK_SIZE"));
}

#[test]
fn defaults_are_the_seeds() {
    let c = cfg(&[]).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.key_prefix, "callcenter");
    assert_eq!(c.limits.presence_ttl, Duration::from_secs(300));
    assert!(c.require_redis().unwrap_err().to_string().starts_with("REDIS_URL is not set"));
}

#[test]
fn errors_name_the_variable_and_the_expectation() {
    let cases: &[(&[(&'static str, &str)], &str)] = &[
        (&[("REDIS_URL", "http://x")], "REDIS_URL is not a redis:// or rediss:// URL"),
        (&[("REDIS_URL", "redis://a:1,redis://b:2")], "REDIS_URL lists several nodes"),
        (&[("REDIS_URL", "redis://a:1"), ("REDIS_CLUSTER", "maybe")], "REDIS_CLUSTER is not true or false"),
        (
            &[("REDIS_URL", "redis://a:1"), ("REDIS_RESPONSE_TIMEOUT_MS", "soon")],
            "REDIS_RESPONSE_TIMEOUT_MS is not a number of milliseconds",
        ),
        (&[("PRESENCE_TTL_SECS", "0")], "PRESENCE_TTL_SECS must be greater than 0"),
        (&[("RECOVERY_MAX_BYTES", "5000000")], "RECOVERY_MAX_BYTES must be from HISTORY_MAX_EVENT_BYTES (16384) to"),
        (
            &[("RECOVERY_MAX_BYTES", "1000"), ("HISTORY_MAX_EVENT_BYTES", "2000")],
            "RECOVERY_MAX_BYTES must be from HISTORY_MAX_EVENT_BYTES (2000)",
        ),
        (&[("OFFLINE_MAX_MESSAGES", "-3")], "OFFLINE_MAX_MESSAGES is not a positive whole number"),
        (&[("KEY_PREFIX", "a{b}")], "KEY_PREFIX must be"),
        (&[("CALLBACK_ENDPOINT", "ftp://x")], "CALLBACK_ENDPOINT is not an http:// or https:// URL"),
    ];
    for (pairs, expected) in cases {
        let err = cfg(pairs).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err:?} should start with {expected:?}");
    }
    let err = cfg(&[("REDIS_URL", "redis//:secretpw@host")]).unwrap_err().to_string();
    assert!(!err.contains("secretpw"), "URLs may carry passwords: {err}");
}

#[test]
fn redis_cluster_seeds() {
    let c = cfg(&[("REDIS_URL", "redis://a:7000, redis://b:7001"), ("REDIS_CLUSTER", "true")]).unwrap();
    let r = c.require_redis().unwrap();
    assert!(r.cluster);
    assert_eq!(r.urls, vec!["redis://a:7000", "redis://b:7001"]);
    assert!(cfg(&[("REDIS_URL", "rediss://user:pw@cache.example:6380/0")]).is_ok());
}
