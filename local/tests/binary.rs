//! The `switchboard-local` binary as a newcomer and as CI use it: started
//! as a process, its printed instructions followed to the letter, stopped
//! with SIGTERM; two processes sharing one real `redis-server`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard::config::{Limits, RedisConfig};
use switchboard::event::{EventType, Target};
use switchboard::store::{ConnectionStore, Keys, RedisStore};
use switchboard_tests::ws::{self, connect, next_close, next_json, request};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard-local");
const SECRET: &str = "binary-test-secret-binary-test-secret!!";

/// A running emulator process and what it printed.
struct Process {
    child: Child,
    lines: Vec<String>,
}

impl Process {
    /// Starts the binary on free ports and waits for its banner.
    fn start(envs: &[(&str, &str)], args: &[&str]) -> Process {
        let mut cmd = Command::new(BIN);
        cmd.args(["--ws-port", "0", "--http-port", "0", "--sqs-port", "0"]).args(args);
        for var in ["JWT_SECRET", "JWT_PUBLIC_KEY", "REDIS_URL", "KEY_PREFIX", "SWITCHBOARD_PRODUCTION"] {
            cmd.env_remove(var);
        }
        cmd.envs(envs.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn switchboard-local");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut lines = Vec::new();
        while !lines.iter().any(|l: &String| l.trim_start().starts_with("Stop")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => panic!("no banner from switchboard-local; got {lines:?}"),
            }
        }
        Process { child, lines }
    }

    /// The value printed after `label`.
    fn printed(&self, label: &str) -> String {
        let line = self
            .lines
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no '{label}' line in {:?}", self.lines));
        line.trim_start()[label.len()..].trim().to_owned()
    }

    fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM failed");
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "switchboard-local did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (for `token` and refused start-ups).
fn run(envs: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    for var in ["JWT_SECRET", "JWT_PUBLIC_KEY", "REDIS_URL", "SWITCHBOARD_PRODUCTION"] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchboard-local {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The token as `@switchboard/client` offers it (the template's default identity source).
fn subprotocols(token: &str) -> String {
    format!("switchboard, {token}")
}

#[tokio::test]
async fn a_newcomer_follows_the_printed_instructions() {
    let mut p = Process::start(&[], &[]);
    assert!(p.printed("WebSocket").starts_with("ws://127.0.0.1:"));
    assert!(p.printed("JWT secret").contains("development default"));
    // The printed line is `wscat -c "<url>" -s switchboard -s <token>`:
    // the token where the template's default identity source looks for it.
    let try_it = p.printed("Try it");
    let url = try_it.split('"').nth(1).expect("a quoted URL");
    let token = try_it.rsplit("-s ").next().expect("the token as a subprotocol");
    assert_eq!(ws::refusal_status(connect(&format!("{url}?token={token}"), &[]).await), 401, "not in the URL");
    let (mut client, _) =
        connect(url, &[("sec-websocket-protocol", &subprotocols(token))]).await.expect("the printed line connects");
    let reply = request(&mut client, json!({"action": "subscribe", "events": ["call.incoming"]})).await;
    assert_eq!(reply, json!({"type": "subscribed", "events": ["call.incoming"]}));
    let health_url = p.printed("HTTP API");
    let health = reqwest::get(&health_url).await.unwrap();
    assert_eq!(health.status(), 200);
    // The container HEALTHCHECK: `switchboard-local health`.
    let url = health_url.clone();
    let checked = tokio::task::spawn_blocking(move || run(&[], &["health", "--url", &url])).await.unwrap();
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    assert!(String::from_utf8_lossy(&checked.stdout).contains("\"status\":\"ok\""));
    // Without a URL it asks the port HTTP_PORT names, as the container's HEALTHCHECK does.
    let port = url::Url::parse(&health_url).unwrap().port().unwrap().to_string();
    let by_port = tokio::task::spawn_blocking(move || run(&[("HTTP_PORT", &port)], &["health"])).await.unwrap();
    assert!(by_port.status.success(), "{}", String::from_utf8_lossy(&by_port.stderr));
    // Another program on the port (host networking) answering 200: not the emulator's health.
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let impostor_url = format!("http://{}/v1/health", impostor.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = impostor.accept() {
            let _ = stream.read(&mut [0u8; 1024]);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    let fooled = tokio::task::spawn_blocking(move || run(&[], &["health", "--url", &impostor_url])).await.unwrap();
    assert_eq!(fooled.status.code(), Some(1), "another program's 200 is not health");
    // SQS answers on the printed endpoint.
    let sqs = p.printed("SQS");
    let sqs_url = sqs.split_whitespace().next().unwrap();
    let listed = reqwest::Client::new()
        .post(sqs_url)
        .header("x-amz-target", "AmazonSQS.ListQueues")
        .header("content-type", "application/x-amz-json-1.0")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(listed.text().await.unwrap().contains("switchboard-webhooks"));

    p.sigterm();
    let close = next_close(&mut client).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001);
    assert!(p.wait_exit().success());
}

#[tokio::test]
async fn the_token_command_mints_what_the_emulator_accepts() {
    let out = run(&[("JWT_SECRET", SECRET)], &["token", "--tenant", "acme", "--user", "7", "--role", "supervisor"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let p = Process::start(&[("JWT_SECRET", SECRET)], &[]);
    assert!(
        !p.lines.iter().any(|l| l.contains("development default")),
        "a configured secret is not called the default"
    );
    let (mut client, _) =
        connect(&p.printed("WebSocket"), &[("sec-websocket-protocol", &subprotocols(&token))]).await.unwrap();
    assert_eq!(request(&mut client, json!({"action": "ping"})).await["type"], "pong");
    // A token minted with another secret is refused.
    let other = run(&[], &["token"]);
    let other = String::from_utf8(other.stdout).unwrap().trim().to_owned();
    let refused = connect(&p.printed("WebSocket"), &[("sec-websocket-protocol", &subprotocols(&other))]).await;
    assert_eq!(ws::refusal_status(refused), 401);

    let bad = run(&[], &["token", "--role", "root"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown role 'root'"));
}

#[test]
fn the_health_command_fails_when_nothing_answers() {
    let out = run(&[], &["health", "--url", "http://127.0.0.1:9/v1/health"]);
    assert_eq!(out.status.code(), Some(1), "unhealthy is 1 (Docker reserves 2)");
    assert!(String::from_utf8_lossy(&out.stderr).contains("GET http://127.0.0.1:9/v1/health"));
}

#[test]
fn bad_configuration_and_the_dev_secret_in_production_are_refused() {
    let out = run(&[], &["--production", "--ws-port", "0", "--http-port", "0", "--sqs-port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("production mode refuses the development JWT secret"));
    let out = run(&[("REDIS_URL", "http://localhost")], &["--ws-port", "0", "--http-port", "0", "--sqs-port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("REDIS_URL is not a redis:// or rediss:// URL"));
    let out =
        run(&[], &["--route-selection", "$request.header.x", "--ws-port", "0", "--http-port", "0", "--sqs-port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("route selection expression"));
    // Issue 29, point 5: the public development secret stays on loopback.
    let ports = ["--ws-port", "0", "--http-port", "0", "--sqs-port", "0"];
    let out = run(&[], &[&["--host", "0.0.0.0"][..], &ports].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the development JWT secret is public"), "{out:?}");
    let out = run(&[], &[&["--identity-source", "stageVariables.x"][..], &ports].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity-source: identity source 'stageVariables.x'"));
    let help = run(&[], &["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--ws-port",
        "--http-port",
        "--stage",
        "--route-selection",
        "--max-frame-bytes",
        "--idle-timeout-secs",
        "--functions-url",
        "--log-format",
        "--sqs-port",
        "--sqs-batch-size",
        "--identity-source",
        "--connect-quota",
        "--connections-quota",
        "--integration-timeout-ms",
    ] {
        assert!(help.contains(flag), "--help documents {flag}");
    }
}

#[tokio::test]
async fn two_processes_on_one_redis_reach_each_others_connections() {
    let redis_url = switchboard_test_support::shared_redis().url();
    let prefix = switchboard_tests::unique_prefix();
    let envs = [("JWT_SECRET", SECRET), ("REDIS_URL", redis_url.as_str()), ("KEY_PREFIX", prefix.as_str())];
    let (a, b) = (Process::start(&envs, &[]), Process::start(&envs, &[]));
    let token = |user: &str| {
        let out = run(&[("JWT_SECRET", SECRET)], &["token", "--tenant", "t1", "--user", user]);
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let as_user = |user: &str| subprotocols(&token(user));
    let (mut on_a, _) =
        connect(&a.printed("WebSocket"), &[("sec-websocket-protocol", &as_user("alice"))]).await.unwrap();
    let (mut on_b, _) = connect(&b.printed("WebSocket"), &[("sec-websocket-protocol", &as_user("bob"))]).await.unwrap();
    for c in [&mut on_a, &mut on_b] {
        assert_eq!(request(c, json!({"action": "subscribe", "events": ["agent.*"]})).await["type"], "subscribed");
    }

    // Whoever resolves the event finds both, each with its own endpoint, and
    // a plain POST to that endpoint reaches the connection.
    let store = RedisStore::new(RedisConfig::single(redis_url.clone()), Keys::new(prefix.as_str()), Limits::default());
    let resolved = store.resolve(&"t1".parse().unwrap(), EventType::AgentLogin, &Target::Tenant).await.unwrap();
    assert_eq!(resolved.recipients.len(), 2);
    let http = reqwest::Client::new();
    for r in &resolved.recipients {
        let printed = if r.user_id.as_str() == "alice" { a.printed("@connections") } else { b.printed("@connections") };
        assert!(printed.starts_with(&r.endpoint), "{printed} vs {}", r.endpoint);
        let id: String = url::form_urlencoded::byte_serialize(r.connection_id.as_str().as_bytes()).collect();
        let status = http
            .post(format!("{}/@connections/{id}", r.endpoint))
            .body(format!("{{\"to\":\"{}\"}}", r.user_id))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    assert_eq!(next_json(&mut on_a).await, json!({"to": "alice"}));
    assert_eq!(next_json(&mut on_b).await, json!({"to": "bob"}));
}

/// Issue 29, point 5: production mode serves no unauthenticated metrics.
#[tokio::test]
async fn production_serves_metrics_only_behind_its_token() {
    let metrics = |p: &Process| format!("{}/metrics", p.printed("HTTP API").trim_end_matches("/v1/health"));
    let http = reqwest::Client::new();
    let open = Process::start(&[("JWT_SECRET", SECRET)], &["--production"]);
    assert_eq!(http.get(metrics(&open)).send().await.unwrap().status(), 404, "no token: no /metrics");
    let guarded = Process::start(&[("JWT_SECRET", SECRET), ("METRICS_TOKEN", "scrape-me")], &["--production"]);
    assert_eq!(http.get(metrics(&guarded)).send().await.unwrap().status(), 401);
    assert_eq!(http.get(metrics(&guarded)).bearer_auth("wrong").send().await.unwrap().status(), 401);
    let scraped = http.get(metrics(&guarded)).bearer_auth("scrape-me").send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("switchboard_connections"));
}

/// Issue 29, point 4: two emulators on one Redis, the one holding a user's
/// only connection killed for good (`kill -9`: no `$disconnect`, its
/// endpoint gone). A message to the user is queued for their next sync,
/// not lost; the sweep forgets the unreachable connection within
/// `CONNECTION_UNREACHABLE_SECS`, so the user is offline with 0
/// connections; reconnecting elsewhere, `sync` delivers what was missed.
#[tokio::test]
async fn a_user_whose_instance_died_is_queued_offline_and_goes_offline_within_the_bound() {
    let redis_url = switchboard_test_support::shared_redis().url();
    let prefix = switchboard_tests::unique_prefix();
    let envs = [
        ("JWT_SECRET", SECRET),
        ("REDIS_URL", redis_url.as_str()),
        ("KEY_PREFIX", prefix.as_str()),
        ("CONNECTION_IDLE_SECS", "1"),
        ("CONNECTION_UNREACHABLE_SECS", "3"),
    ];
    let args = ["--sweep-interval-secs", "1"];
    let (mut a, b) = (Process::start(&envs, &args), Process::start(&envs, &args));
    let token = |user: &str, role: &str| {
        let out = run(&[("JWT_SECRET", SECRET)], &["token", "--tenant", "t1", "--user", user, "--role", role]);
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let alice = subprotocols(&token("alice", "agent"));
    let (mut on_a, _) = connect(&a.printed("WebSocket"), &[("sec-websocket-protocol", &alice)]).await.unwrap();
    assert_eq!(request(&mut on_a, json!({"action": "subscribe", "events": ["agent.*"]})).await["type"], "subscribed");
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    let api = b.printed("HTTP API").trim_end_matches("/v1/health").to_owned();
    let service = token("svc", "service");
    let http = reqwest::Client::new();
    let chat = |n: u32| {
        http.post(format!("{api}/v1/events"))
            .bearer_auth(&service)
            .json(&json!({"type": "chat.message", "target": {"user": "alice"}, "data": {"n": n}}))
            .send()
    };
    let first: serde_json::Value = chat(1).await.unwrap().json().await.unwrap();
    assert_eq!(first["report"]["queued_offline"], 1, "nobody could take it: queued, not lost: {first}");
    let online = || async {
        let r = http.get(format!("{api}/v1/users/alice/online")).bearer_auth(&service).send().await.unwrap();
        r.json::<serde_json::Value>().await.unwrap()
    };
    assert_eq!(online().await["connection_count"], 1, "the dead instance's record is still there");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = online().await;
        if now["connection_count"] == 0 && now["is_online"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "still online 15 s after the kill: {now}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let second: serde_json::Value = chat(2).await.unwrap().json().await.unwrap();
    assert_eq!(second["report"]["queued_offline"], 1, "{second}");

    let (mut on_b, _) = connect(&b.printed("WebSocket"), &[("sec-websocket-protocol", &alice)]).await.unwrap();
    ws::send_json(&mut on_b, json!({"action": "sync", "id": "s"})).await;
    let mut got = Vec::new();
    loop {
        let frame = next_json(&mut on_b).await;
        if frame["type"] == "synced" {
            break;
        }
        got.push(frame["data"]["n"].as_u64().unwrap());
    }
    assert_eq!(got, [1, 2], "both messages, in order");
}
