//! `switchboard-bench`: `make bench` (and `make bench-quick`) run
//! `switchboard-bench run`, which starts the other roles of this binary —
//! the load client and the baseline server — as separate processes.

mod baseline;
mod client;
mod coldstart;
mod run;
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
    /// Benchmark 11 alone: cold starts of each function binary in DIR under a local Runtime API.
    Coldstart {
        /// Where the function binaries are (target/release).
        #[arg(long, default_value = "target/release")]
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 10)]
        starts: usize,
        #[arg(long, default_value_t = 20)]
        warm: usize,
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
        Cmd::Coldstart { dir, starts, warm } => {
            let redis = switchboard_tests::RedisServer::start()?;
            let rows = coldstart::measure(&dir, &redis.url(), starts, warm)?;
            print!("{}", run::coldstart_table(&rows));
            Ok(())
        }
        Cmd::Baseline { port } => tokio::runtime::Runtime::new()?.block_on(baseline::run(port)),
    }
}
