//! Real `redis-server` processes for tests and benchmarks: a standalone
//! server or a 3-node (or replicated) Redis Cluster on free ports, each in
//! its own directory, killed by a watchdog when the process that started
//! it exits (statics are never dropped, and a test that panics must not
//! leak servers into CI); and `redis-cli` for what a test reads of a
//! server's own figures. The tests crate and the bench both depend on it;
//! neither depends on the other.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How long a server gets to come up before the test fails.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` child process.
pub struct RedisServer {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a standalone server on a free port.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(None, &[])
    }

    /// Starts a standalone server on a given port (to restart one in place).
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        Self::start_with(Some(port), &[])
    }

    /// Stops the server now (as a crash or failover would).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a standalone server with extra arguments (persistence, say),
    /// which [`RedisServer::crash_and_restart`] starts it with again.
    pub fn start_with_args(extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_with(None, extra)
    }

    /// Its working directory (where snapshots and the AOF go).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Kills the server (SIGKILL: nothing saved on the way out) and starts
    /// it again on the same port and directory, loading what is on disk,
    /// as a crashed Redis restarted by its supervisor would.
    pub fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start_again()
    }

    /// Kills the server (SIGKILL), leaving its directory as it was.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed server again on its port and directory.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.child = Self::spawn(self.port, self.dir.path(), &extra)?;
        let port = self.port;
        wait_until(STARTUP_TIMEOUT, || redis_cmd(port, &["PING"]).is_ok_and(|o| o.trim() == "PONG"))
            .with_context(|| format!("redis-server on port {port} did not answer PING after a restart"))
    }

    fn spawn(port: u16, dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<Child> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .args(["--dir", dir.to_str().context("temp dir is not UTF-8")?])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        watchdog(child.id());
        Ok(child)
    }

    fn start_with(port: Option<u16>, extra: &[&str]) -> anyhow::Result<Self> {
        require_binary("redis-server")?;
        let dir = tempfile::tempdir()?;
        let port = match port {
            Some(p) => p,
            None => free_port(extra.contains(&"--cluster-enabled"))?,
        };
        let child = Self::spawn(port, dir.path(), extra)?;
        let server = RedisServer { child, port, dir, extra: extra.iter().map(|a| a.to_string()).collect() };
        wait_until(STARTUP_TIMEOUT, || redis_cmd(port, &["PING"]).is_ok_and(|o| o.trim() == "PONG"))
            .with_context(|| format!("redis-server on port {port} did not answer PING"))?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three masters, no replicas, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes and joins them into a cluster.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(0, 5000)
    }

    /// Three masters with `replicas` replicas each, a node counted as
    /// failed after `node_timeout_ms` (a replica of a failed master is
    /// promoted soon after).
    pub fn start_with(replicas: usize, node_timeout_ms: u64) -> anyhow::Result<Self> {
        require_binary("redis-cli")?;
        let timeout = node_timeout_ms.to_string();
        let nodes = (0..3 * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(
                    None,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout,
                        // A replica syncs at once (the default waits 5 s
                        // for more replicas), so it can be promoted soon.
                        "--repl-diskless-sync-delay",
                        "0",
                    ],
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !out.status.success() {
            bail!("redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        }
        for n in &nodes {
            wait_until(STARTUP_TIMEOUT, || {
                redis_cmd(n.port, &["CLUSTER", "INFO"]).is_ok_and(|o| o.contains("cluster_state:ok"))
            })
            .with_context(|| format!("cluster node {} never reached cluster_state:ok", n.port))?;
        }
        // A replica that never synced cannot take over its master.
        for n in &nodes {
            wait_until(STARTUP_TIMEOUT, || {
                redis_cmd(n.port, &["INFO", "replication"])
                    .is_ok_and(|o| o.contains("role:master") || o.contains("master_link_status:up"))
            })
            .with_context(|| format!("replica {} never synced", n.port))?;
        }
        Ok(RedisCluster { nodes })
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The index in `nodes` of the live master serving the slot of hash
    /// tag `tag` (a tenant's keys all carry `{tenant}`), as node `asked` sees it.
    pub fn master_of(&self, tag: &str, asked: usize) -> anyhow::Result<usize> {
        let port = self.nodes[asked].port;
        let slot: u64 = redis_cmd(port, &["CLUSTER", "KEYSLOT", tag])?.trim().parse()?;
        // `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot ranges>...`
        for line in redis_cmd(port, &["CLUSTER", "NODES"])?.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
            if !flags.contains("master") || flags.contains("fail") {
                continue;
            }
            let serves = fields.iter().skip(8).any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u64>(), b.parse::<u64>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
            });
            if serves {
                let p: u16 = addr.split(['@', ':']).nth(1).context("a node address")?.parse()?;
                return self.nodes.iter().position(|n| n.port == p).context("the master is not one of the nodes");
            }
        }
        bail!("no live master serves slot {slot}")
    }
}

/// The standalone server shared by this test binary.
pub fn shared_redis() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start().expect("could not start redis-server"))
}

/// The cluster shared by this test binary.
pub fn shared_cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start().expect("could not start a Redis Cluster"))
}

/// Bytes the Redis server on `port` has sent to its clients so far
/// (`total_net_output_bytes` of `INFO stats`): what reads took out of it.
pub fn redis_output_bytes(port: u16) -> anyhow::Result<u64> {
    let info = redis_cmd(port, &["INFO", "stats"])?;
    let line = info.lines().find(|l| l.starts_with("total_net_output_bytes:")).context("no total_net_output_bytes")?;
    Ok(line["total_net_output_bytes:".len()..].trim().parse()?)
}

/// Runs `redis-cli -p <port> <args>` and returns its output.
pub fn redis_cmd(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("redis-cli {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port that is free now (and, for cluster nodes, whose bus port +10000 is too).
fn free_port(with_bus: bool) -> anyhow::Result<u16> {
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !with_bus {
            return Ok(port);
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port pair found for a cluster node")
}

fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out after {timeout:?}")
}

/// Kills `pid` once this test process is gone.
fn watchdog(pid: u32) {
    let me = std::process::id();
    let script = format!("while kill -0 {me} 2>/dev/null; do sleep 1; done; kill {pid} 2>/dev/null");
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

fn require_binary(name: &str) -> anyhow::Result<()> {
    let found =
        std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()));
    if !found {
        bail!(
            "{name} is not installed: run `make test` (it installs redis-server and redis-tools), or `apt-get install redis-server redis-tools`"
        );
    }
    Ok(())
}
