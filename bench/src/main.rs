//! `switchboard-bench`: `make bench` (and `make bench-quick`) run
//! `switchboard-bench run`, which starts the other roles of this binary —
//! the load client and the baseline server — as separate processes.

mod baseline;
mod channels;
mod client;
mod coldstart;
mod procfs;
mod quotas;
mod report;
mod run;
mod servers;
mod sheet;
mod webhooks;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchboard-bench", about = "Switchboard's benchmarks, each beside its baseline.")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every benchmark and write BENCHMARKS.md.
    Run(run::RunArgs),
    /// The load client (started by `run`).
    Client(client::ClientArgs),
    /// Benchmark 11 alone: cold starts of the function binaries in each DIR under a local Runtime
    /// API; with several, a comparison of the builds (bench/PROFILES.md).
    Coldstart {
        /// label=folder of function binaries, e.g. lambda=target/lambda (repeatable).
        #[arg(long = "dir", required = true)]
        dirs: Vec<String>,
        #[arg(long, default_value_t = 10)]
        starts: usize,
        #[arg(long, default_value_t = 20)]
        warm: usize,
        /// Only these functions (comma-separated; hello-lambda is the baseline).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// With several builds and fanout among the functions: each build's fanout broadcasts to
        /// this many clients, for its CPU per post (0: not measured).
        #[arg(long, default_value_t = 10_000)]
        posts: usize,
    },
    /// Benchmark 12 alone: broadcasts to N clients from the fanout function binary in DIR (through
    /// the AWS SDK) and from the emulator in-process; CPU per post of each process.
    Fanout {
        #[arg(long)]
        functions_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// KEY=VALUE added to the function's environment (repeatable), e.g. FANOUT_CONCURRENCY=256.
        #[arg(long = "env")]
        env: Vec<String>,
    },
    /// Benchmark 4 alone: N handshakes against the emulator (or the baseline), the rate, the p99
    /// and each process's CPU per connection.
    Storm {
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Against the baseline server instead.
        #[arg(long)]
        baseline: bool,
    },
    /// Benchmark 10 alone: a client misses N events out of a tenant history of 10 N (it matches one
    /// in ten) and recovers them; the time, Redis's output per byte replayed, memory per event.
    Recovery {
        #[arg(long, default_value_t = 1000)]
        n: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// Benchmark 15 alone: a batch of 20 to 1,000 connections beside 20 single publishes; a
    /// channel of 50 in a tenant of N beside a tenant of 50; Redis bytes per channel subscription.
    Channels {
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// The baseline WebSocket server (started by `run`).
    Baseline {
        /// Port (0: any).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run(args) => run::run(args),
        Cmd::Client(args) => tokio::runtime::Runtime::new()?.block_on(client::run(args)),
        Cmd::Coldstart { dirs, starts, warm, only, posts } => {
            let redis = switchboard_test_support::RedisServer::start()?;
            let dirs: Vec<(&str, &str)> = dirs.iter().map(|d| d.split_once('=').unwrap_or((d, d))).collect();
            let mut builds = Vec::new();
            for &(label, dir) in &dirs {
                eprintln!("bench: cold starts of the binaries in {dir}");
                builds.push((
                    label.to_owned(),
                    coldstart::measure(std::path::Path::new(dir), &redis.url(), starts, warm, &only)?,
                ));
            }
            let mut costs = Vec::new();
            if posts > 0 && dirs.len() > 1 && (only.is_empty() || only.iter().any(|o| o == "fanout")) {
                for &(label, dir) in &dirs {
                    eprintln!("bench: {label}'s fanout broadcasting to {posts}");
                    costs.push((
                        label.to_owned(),
                        run::fanout_cost(&redis.url(), std::path::Path::new(dir), posts, 3, &[])?,
                    ));
                }
            }
            print!("{}", run::profiles_report(&builds, &only, &costs));
            Ok(())
        }
        Cmd::Fanout { functions_dir, n, repeats, env } => {
            let redis = switchboard_test_support::RedisServer::start()?;
            let env: Vec<(&str, String)> =
                env.iter().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k, v.to_owned())).collect();
            let cost = run::fanout_cost(&redis.url(), &functions_dir, n, repeats, &env)?;
            print!("{}", cost.cpu_table());
            Ok(())
        }
        Cmd::Storm { n, repeats, baseline } => {
            print!("{}", run::storm(baseline, n, repeats)?);
            Ok(())
        }
        Cmd::Recovery { n, repeats } => {
            let redis = switchboard_test_support::RedisServer::start()?;
            print!("{}", run::recovery_report(&run::recovery(&redis.url(), redis.port, n, repeats)?, n));
            Ok(())
        }
        Cmd::Channels { n, repeats } => {
            let redis = switchboard_test_support::RedisServer::start()?;
            let measured = channels::measure(&redis.url(), redis.port, n, repeats)?;
            print!("{}{}", report::table(&channels::rows(&measured)), channels::section(&measured));
            Ok(())
        }
        Cmd::Baseline { port } => tokio::runtime::Runtime::new()?.block_on(baseline::run(port)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    /// The bench's modules form a one-way stack (issue 30): read from the
    /// sources, every `crate::<module>` in a module's file is an edge, and
    /// no module reaches one that reaches back.
    #[test]
    fn modules_form_a_one_way_stack() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let files: BTreeMap<String, String> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
            .filter(|(name, _)| name != "main")
            .collect();
        let mut left: BTreeMap<&str, BTreeSet<&str>> = files
            .iter()
            .map(|(name, text)| {
                let deps = text
                    .split("crate::")
                    .skip(1)
                    .map(|rest| rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or(""))
                    .filter(|dep| files.contains_key(*dep) && dep != name)
                    .collect();
                (name.as_str(), deps)
            })
            .collect();
        let mut placed: Vec<&str> = Vec::new();
        while !left.is_empty() {
            let ready: Vec<&str> =
                left.iter().filter(|(_, deps)| deps.iter().all(|d| placed.contains(d))).map(|(m, _)| *m).collect();
            assert!(!ready.is_empty(), "a cycle among {left:?} (placed so far, bottom up: {placed:?})");
            for m in ready {
                left.remove(m);
                placed.push(m);
            }
        }
    }
}
