//! The servers under test and the processes around them: starting the
//! emulator, serverless-offline or the baseline, the load client process,
//! and timing broadcasts through it. The runner (`run.rs`) and the quota
//! benchmark (`quotas.rs`) both use these.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use switchboard::auth::mint_hs256;
use switchboard::ids::{Identity, Role};

use crate::client::{Command as ClientCommand, Trigger};
use crate::procfs::{cpu_time, status_kib};

pub(crate) const SECRET: &str = "bench-secret-bench-secret-bench-secret-0001";

pub(crate) fn token(user: &str, role: Role) -> String {
    let who = Identity::new("bench".parse().unwrap(), user.parse().unwrap(), role);
    mint_hs256(SECRET.as_bytes(), &who, 3600)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn sibling(name: &str) -> PathBuf {
    std::env::current_exe().unwrap().with_file_name(name)
}

/// A child process with a raised open-files limit, its stdout read line by line.
pub(crate) struct Proc {
    pub(crate) child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub(crate) fn spawn(program: &PathBuf, args: &[String], env: &[(&str, String)]) -> anyhow::Result<Proc> {
        Self::spawn_in(program, args, env, None)
    }

    fn spawn_in(
        program: &PathBuf,
        args: &[String],
        env: &[(&str, String)],
        dir: Option<&std::path::Path>,
    ) -> anyhow::Result<Proc> {
        let mut script = String::from("ulimit -n 20000 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$0\" \"$@\"");
        script.push(' ');
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script.trim()).arg(program).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        // Each role's stderr goes to a file beside the others, for when a run fails.
        let name = program.file_name().and_then(|n| n.to_str()).unwrap_or("child");
        let role = args
            .first()
            .filter(|a| !a.starts_with('-'))
            .and_then(|a| std::path::Path::new(a).file_stem()?.to_str())
            .unwrap_or(name);
        let log = std::fs::File::create(std::env::temp_dir().join(format!("switchboard-bench-{role}.log")))?;
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log).spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc { child, stdin, lines })
    }

    fn line(&self, timeout: Duration) -> anyhow::Result<String> {
        self.lines.recv_timeout(timeout).context("no answer from a benchmark process")
    }

    pub(crate) fn json(&self, timeout: Duration) -> anyhow::Result<Value> {
        loop {
            let line = self.line(timeout)?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["event"] == "error" {
                    bail!("client error: {}", v["error"]);
                }
                return Ok(v);
            }
        }
    }

    pub(crate) fn send(&mut self, cmd: &ClientCommand) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{}", serde_json::to_string(cmd)?)?;
        stdin.flush()?;
        Ok(())
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        // The sh wrapper exec'd, so the child's pid is the program's.
        status_kib(self.child.id(), "VmRSS:").unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one server under test is.
pub(crate) enum Server {
    /// The emulator; `over_http`: posts go through the AWS SDK over HTTP, as from a Lambda.
    Switchboard {
        redis: Option<String>,
        over_http: bool,
        /// `HISTORY_SIZE`: `None` the default (1,000), `Some(0)` history off.
        history: Option<usize>,
        /// More flags for the emulator (API Gateway's quotas, benchmark 13).
        args: Vec<String>,
    },
    Baseline,
    /// serverless-offline 13 running `bench/serverless-offline`'s Node
    /// handlers, the connection list in this redis-server.
    ServerlessOffline {
        redis: String,
    },
}

/// Where benchmark 9's serverless project lives.
fn serverless_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("serverless-offline")
}

/// Installs benchmark 9's npm packages from its lock file, once.
fn npm_install() -> anyhow::Result<()> {
    let dir = serverless_dir();
    if dir.join("node_modules/serverless-offline").is_dir() {
        return Ok(());
    }
    eprintln!("bench: npm ci in {} (serverless 3, serverless-offline 13; about a minute)", dir.display());
    let log = std::fs::File::create(std::env::temp_dir().join("switchboard-bench-npm.log"))?;
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("npm (Node.js) is needed for benchmark 9")?;
    anyhow::ensure!(
        status.success(),
        "npm ci failed: see {}/switchboard-bench-npm.log",
        std::env::temp_dir().display()
    );
    Ok(())
}

pub(crate) struct Started {
    pub(crate) proc: Proc,
    pub(crate) ws_url: String,
    pub(crate) http: String,
    /// Its `KEY_PREFIX` (Switchboard on Redis).
    pub(crate) prefix: String,
}

pub(crate) fn start(server: &Server) -> anyhow::Result<Started> {
    match server {
        Server::Switchboard { redis, over_http, history, args: extra } => {
            let (ws, http, sqs) = (free_port(), free_port(), free_port());
            let mut env = vec![
                ("JWT_SECRET", SECRET.to_owned()),
                ("RATE_LIMIT_PER_SECOND", "10000000".to_owned()),
                ("RUST_LOG", "warn".to_owned()),
                ("FANOUT_CONCURRENCY", "512".to_owned()),
                // The load tools put the token in the URL: a stack deployed with that identity source.
                ("AUTHORIZER_IDENTITY_SOURCE", "route.request.querystring.token".to_owned()),
            ];
            let prefix = format!("bench{}", free_port());
            if let Some(url) = redis {
                env.push(("REDIS_URL", url.clone()));
                env.push(("KEY_PREFIX", prefix.clone()));
            }
            if let Some(size) = history {
                env.push(("HISTORY_SIZE", size.to_string()));
            }
            let mut args: Vec<String> =
                ["--ws-port", &ws.to_string(), "--http-port", &http.to_string(), "--sqs-port", &sqs.to_string()]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            if *over_http {
                args.push("--connections-over-http".into());
            }
            args.extend(extra.iter().cloned());
            let proc = Proc::spawn(&sibling("switchboard-local"), &args, &env)?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let line = proc.line(Duration::from_secs(30))?;
                if line.trim_start().starts_with("Stop") {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("the emulator did not start");
                }
            }
            Ok(Started {
                proc,
                ws_url: format!("ws://127.0.0.1:{ws}/local"),
                http: format!("http://127.0.0.1:{http}"),
                prefix,
            })
        }
        Server::ServerlessOffline { redis } => {
            npm_install()?;
            let (http, ws, lambda) = (free_port(), free_port(), free_port());
            let redis_port: u16 = redis.rsplit(':').next().and_then(|p| p.parse().ok()).context("redis URL")?;
            switchboard_test_support::redis_cmd(redis_port, &["DEL", "sls-bench:connections"])?;
            let env = [
                ("BENCH_REDIS_URL", redis.clone()),
                ("BENCH_CONNECTIONS_ENDPOINT", format!("http://127.0.0.1:{ws}")),
                ("BENCH_SLS_HTTP_PORT", http.to_string()),
                ("BENCH_SLS_WS_PORT", ws.to_string()),
                ("BENCH_SLS_LAMBDA_PORT", lambda.to_string()),
                ("SLS_TELEMETRY_DISABLED", "1".to_owned()),
                ("SLS_NOTIFICATIONS_MODE", "off".to_owned()),
            ];
            let dir = serverless_dir();
            let args = ["node_modules/serverless/bin/serverless.js".to_owned(), "offline".into(), "start".into()];
            let proc = Proc::spawn_in(&PathBuf::from("node"), &args, &env, Some(&dir))?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::net::TcpStream::connect(("127.0.0.1", ws)).is_err() {
                anyhow::ensure!(Instant::now() < deadline, "serverless-offline did not listen on {ws} within 60 s");
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(Started { proc, ws_url: format!("ws://127.0.0.1:{ws}"), http: String::new(), prefix: String::new() })
        }
        Server::Baseline => {
            let port = free_port();
            let proc =
                Proc::spawn(&std::env::current_exe()?, &["baseline".into(), "--port".into(), port.to_string()], &[])?;
            proc.line(Duration::from_secs(10))?;
            Ok(Started { proc, ws_url: format!("ws://127.0.0.1:{port}"), http: String::new(), prefix: String::new() })
        }
    }
}

pub(crate) fn client(server: &Server, started: &Started, n: usize) -> anyhow::Result<Proc> {
    let mut args = vec!["client".to_owned(), "--n".into(), n.to_string()];
    match server {
        Server::Switchboard { .. } => {
            args.extend(["--url".into(), format!("{}?token={{token}}", started.ws_url)]);
            args.extend(["--hello".into(), json!({"action": "subscribe", "events": ["call.*", "chat.*"]}).to_string()]);
        }
        Server::Baseline => args.extend(["--url".into(), started.ws_url.clone()]),
        Server::ServerlessOffline { .. } => {
            // Fewer handshakes at once, and retries: it starts a worker per
            // concurrent $connect and refuses some while they start.
            args.extend(["--url".into(), started.ws_url.clone(), "--concurrency".into(), "16".into()]);
            args.extend(["--retries".into(), "5".into()]);
        }
    }
    Proc::spawn(&std::env::current_exe()?, &args, &[("BENCH_JWT_SECRET", SECRET.to_owned())])
}

pub(crate) fn broadcast_trigger(server: &Server, started: &Started, marker: &str) -> Trigger {
    match server {
        Server::Switchboard { .. } => Trigger::Http {
            url: format!("{}/v1/events", started.http),
            token: token("svc", Role::Service),
            body: json!({"type": "call.incoming", "data": {"bench": marker, "caller_id": "+15550000000", "queue": "support"}}),
        },
        Server::ServerlessOffline { .. } => Trigger::Text {
            text: json!({"action": "broadcast", "data": {"bench": marker, "caller_id": "+15550000000", "queue": "support"}})
                .to_string(),
        },
        Server::Baseline => Trigger::Text {
            text: format!(
                "broadcast {}",
                json!({"id": "x", "type": "call.incoming", "tenant_id": "bench", "timestamp": 0,
                    "data": {"bench": marker, "caller_id": "+15550000000", "queue": "support"}})
            ),
        },
    }
}

pub(crate) fn timed_broadcasts(
    server: &Server,
    started: &Started,
    c: &mut Proc,
    timed: usize,
    prefix: &str,
) -> anyhow::Result<Vec<(Value, Duration)>> {
    let answers =
        timed_by(c, timed, prefix, |marker| broadcast_trigger(server, started, marker), &[started.proc.child.id()])?;
    Ok(answers.into_iter().map(|(r, cpu)| (r, cpu[0])).collect())
}

/// One warm-up broadcast, then `timed` ones, each started by `trigger`
/// (given its marker); the client's answers to the timed ones, each with
/// the CPU time every process of `pids` spent during it.
pub(crate) fn timed_by(
    c: &mut Proc,
    timed: usize,
    prefix: &str,
    trigger: impl Fn(&str) -> Trigger,
    pids: &[u32],
) -> anyhow::Result<Vec<(Value, Vec<Duration>)>> {
    let cpu = || pids.iter().map(|&pid| cpu_time(pid)).collect::<Vec<_>>();
    let mut answers = Vec::new();
    for i in 0..=timed {
        let marker = format!("{prefix}-{i}");
        let before = cpu();
        c.send(&ClientCommand::Broadcast { trigger: trigger(&marker), marker })?;
        let r = c.json(Duration::from_secs(120))?;
        if i > 0 {
            answers.push((r, cpu().iter().zip(before).map(|(after, before)| *after - before).collect()));
        }
    }
    Ok(answers)
}
