//! `switchboard-local`: run the emulator, or mint a development token.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use switchboard::auth::{AuthConfig, JwtKey};
use switchboard::auth::{Verifier, mint_hs256};
use switchboard::config::Config;
use switchboard::ids::{Identity, Role};
use switchboard::telemetry::{LogFormat, init_with};
use switchboard_local::{
    ConsoleSettings, Emulator, GatewayLimits, IdentitySources, MappingSettings, Minter, Mode, Quota, Quotas, Settings,
    queues,
};

/// The development secret: printed as such, refused in production mode.
const DEV_JWT_SECRET: &str = "switchboard-local-dev-secret-NOT-FOR-PRODUCTION";

/// mimalloc: in a connection storm glibc's malloc took a third of the
/// emulator's CPU (arena locks, consolidation); see bench/ANALYSIS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard-local",
    version,
    about = "Switchboard's local emulator: API Gateway WebSocket, @connections, the HTTP API and SQS on one machine."
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Serve,
}

#[derive(Subcommand)]
enum Command {
    /// Print a signed development token (HS256 with JWT_SECRET, or the dev default).
    Token(TokenArgs),
    /// Exit 0 when a running emulator answers GET /v1/health with its own "ok", 1 otherwise
    /// (a container HEALTHCHECK needs no curl; Docker reserves 2).
    Health(HealthArgs),
}

#[derive(Args)]
struct HealthArgs {
    /// The health URL to ask (default: http://127.0.0.1:<HTTP_PORT>/v1/health, the port the emulator serves on).
    #[arg(long, env = "HEALTH_URL")]
    url: Option<url::Url>,
    /// The HTTP API's port, as the emulator reads it, when no URL is given.
    #[arg(long, env = "HTTP_PORT", default_value_t = 3000)]
    http_port: u16,
}

#[derive(Args)]
struct TokenArgs {
    /// Tenant id (the `tenant_id` claim).
    #[arg(long, default_value = "t1")]
    tenant: String,
    /// User id (the `sub` claim).
    #[arg(long, default_value = "42")]
    user: String,
    /// admin, service, supervisor or agent.
    #[arg(long, default_value = "agent")]
    role: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl_secs: u64,
    /// Channels the token grants (the `channels` claim), comma-separated:
    /// `queue:support,team:east,chat:*`.
    #[arg(long, value_delimiter = ',')]
    channels: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogArg {
    Text,
    Json,
}

/// Serving flags; each has an environment variable too. The functions read
/// the usual variables (REDIS_URL, JWT_SECRET, KEY_PREFIX, ... see README).
#[derive(Args)]
struct Serve {
    /// Address to bind to.
    #[arg(long, env = "SWITCHBOARD_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// WebSocket gateway and @connections port.
    #[arg(long, env = "WS_PORT", default_value_t = 3001)]
    ws_port: u16,
    /// HTTP API port.
    #[arg(long, env = "HTTP_PORT", default_value_t = 3000)]
    http_port: u16,
    /// Stage name: the gateway answers on / and /{stage}.
    #[arg(long, env = "STAGE", default_value = "local")]
    stage: String,
    /// domainName in events and callback endpoints (default: the bound host:port).
    #[arg(long, env = "DOMAIN_NAME")]
    domain_name: Option<String>,
    /// Route selection expression.
    #[arg(long, env = "ROUTE_SELECTION_EXPRESSION", default_value = "$request.body.action")]
    route_selection: String,
    /// Largest WebSocket frame in bytes (API Gateway: 32 KB).
    #[arg(long, env = "MAX_FRAME_BYTES", default_value_t = 32 * 1024)]
    max_frame_bytes: usize,
    /// Largest WebSocket message and @connections POST in bytes (API Gateway: 128 KB).
    #[arg(long, env = "GATEWAY_MAX_MESSAGE_BYTES", default_value_t = 128 * 1024)]
    max_message_bytes: usize,
    /// Idle timeout in seconds (API Gateway: 600).
    #[arg(long, env = "IDLE_TIMEOUT_SECS", default_value_t = 600)]
    idle_timeout_secs: u64,
    /// Maximum connection duration in seconds (API Gateway: 7200).
    #[arg(long, env = "MAX_CONNECTION_SECS", default_value_t = 7200)]
    max_connection_secs: u64,
    /// Seconds before the maximum duration that clients are sent {"type":"reconnect"} (at most half of it); 0: never.
    #[arg(long, env = "RECONNECT_NOTICE_SECS", default_value_t = 300)]
    reconnect_notice_secs: u64,
    /// A post to a client whose outbound queue is full waits this long, then the client is closed (1013).
    #[arg(long, env = "SLOW_CLIENT_WAIT_MS", default_value_t = 1000)]
    slow_client_wait_ms: u64,
    /// How long API Gateway waits for a function, in ms (AWS: 29,000, its most); a route over it answers
    /// {"message":"Endpoint request timed out"}, a handshake 504.
    #[arg(long, env = "INTEGRATION_TIMEOUT_MS", default_value_t = 29_000, value_parser = clap::value_parser!(u64).range(50..=900_000))]
    integration_timeout_ms: u64,
    /// Where the $connect authorizer requires the token, as the template's AuthorizerIdentitySource
    /// (comma-separated; "none" checks nothing). A handshake without it is refused 401 before the authorizer runs.
    #[arg(long, env = "AUTHORIZER_IDENTITY_SOURCE", default_value = IdentitySources::TEMPLATE_DEFAULT)]
    identity_source: String,
    /// New connections per second (AWS: 500 per account and Region); beyond it the handshake is answered 429. Default: no quota.
    #[arg(long, env = "CONNECT_QUOTA_PER_SEC", value_parser = clap::value_parser!(u32).range(1..))]
    connect_quota: Option<u32>,
    /// @connections requests per second (AWS: the account's 10,000); beyond it 429 LimitExceededException. Default: no quota.
    #[arg(long, env = "CONNECTIONS_QUOTA_PER_SEC", value_parser = clap::value_parser!(u32).range(1..))]
    connections_quota: Option<u32>,
    /// The @connections quota's burst (AWS: 5,000); default half the rate.
    #[arg(long, env = "CONNECTIONS_QUOTA_BURST", requires = "connections_quota", value_parser = clap::value_parser!(u32).range(1..))]
    connections_burst: Option<u32>,
    /// Seconds between sweeps of ghost connections (the template runs one every 300); 0: never.
    #[arg(long, env = "SWEEP_INTERVAL_SECS", default_value_t = 60)]
    sweep_interval_secs: u64,
    /// SQS endpoint port (the webhook and events queues, for aws-sdk-sqs and the AWS CLI).
    #[arg(long, env = "SQS_PORT", default_value_t = 9324)]
    sqs_port: u16,
    /// Records per invocation of the SQS-triggered functions (Lambda's BatchSize).
    #[arg(long, env = "SQS_BATCH_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10000))]
    sqs_batch_size: u16,
    /// Milliseconds to gather a batch (Lambda's MaximumBatchingWindowInSeconds).
    #[arg(long, env = "SQS_BATCH_WINDOW_MS", default_value_t = 0)]
    sqs_batch_window_ms: u64,
    /// Concurrent pollers per queue.
    #[arg(long, env = "SQS_POLLERS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    sqs_pollers: u16,
    /// Post to this emulator's own connections over HTTP through the AWS SDK, as a Lambda does (default: in-process).
    #[arg(long, env = "CONNECTIONS_OVER_HTTP")]
    connections_over_http: bool,
    /// Send invocations to this Lambda Invoke API (`cargo lambda watch`, e.g. http://127.0.0.1:9000) instead of running them in-process.
    #[arg(long, env = "FUNCTIONS_URL")]
    functions_url: Option<url::Url>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogArg,
    /// A bearer token GET /metrics requires; under --production, /metrics is served only with one.
    #[arg(long, env = "METRICS_TOKEN")]
    metrics_token: Option<String>,
    /// The channel namespaces and their rules: inline JSON, or the path of a JSON file
    /// (as CHANNEL_NAMESPACES, which it overrides; default: the call center's).
    #[arg(long)]
    channels: Option<String>,
    /// Production mode: refuse the development JWT secret; no console; /metrics only behind METRICS_TOKEN.
    #[arg(long, env = "SWITCHBOARD_PRODUCTION")]
    production: bool,
}

/// The auth settings: from JWT_SECRET / JWT_PUBLIC_KEY when set, else the
/// dev default (refused in production mode). Returns whether the default was used.
fn auth_config(production: bool) -> anyhow::Result<(AuthConfig, bool)> {
    auth_config_from(&|name| std::env::var(name).ok(), production)
}

/// The auth settings; without `JWT_SECRET` or `JWT_PUBLIC_KEY`, the
/// development secret stands in for the key and nothing else:
/// `ALLOWED_ORIGINS`, `JWT_ISSUER`, `JWT_AUDIENCE` and the lifetimes apply
/// whatever the key.
fn auth_config_from(get: &dyn Fn(&str) -> Option<String>, production: bool) -> anyhow::Result<(AuthConfig, bool)> {
    let set = |name: &str| get(name).is_some_and(|v| !v.trim().is_empty());
    let configured = set("JWT_SECRET") || set("JWT_PUBLIC_KEY");
    let auth = if configured {
        AuthConfig::from_lookup(get)?
    } else {
        AuthConfig::from_lookup(&|name| if name == "JWT_SECRET" { Some(DEV_JWT_SECRET.into()) } else { get(name) })?
    };
    let uses_dev_secret = matches!(&auth.key, JwtKey::Hs256Secret(s) if s == DEV_JWT_SECRET.as_bytes());
    if production && uses_dev_secret {
        bail!("production mode refuses the development JWT secret: set JWT_SECRET (32+ bytes) or JWT_PUBLIC_KEY");
    }
    Ok((auth, !configured || uses_dev_secret))
}

/// The console in development mode only; it mints tokens only while the
/// development secret (printed in the banner, so anybody's to sign with)
/// is the key.
fn console_settings(auth: &AuthConfig, dev_secret: bool, production: bool) -> Option<ConsoleSettings> {
    if production {
        return None;
    }
    let mint = match &auth.key {
        JwtKey::Hs256Secret(secret) if dev_secret => {
            Some(Minter { secret: secret.clone(), issuer: auth.issuer.clone(), audience: auth.audience.clone() })
        }
        _ => None,
    };
    Some(ConsoleSettings { mint })
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let (auth, _) = auth_config(false)?;
    let JwtKey::Hs256Secret(secret) = auth.key else {
        bail!(
            "with JWT_PUBLIC_KEY, tokens come from your identity provider; `token` signs only with JWT_SECRET (HS256)"
        );
    };
    let identity = Identity {
        channels: switchboard::channel::Grants::parse(args.channels.iter().map(String::as_str))
            .map_err(|e| anyhow::anyhow!("--channels: {e}"))?,
        ..Identity::new(
            args.tenant.parse().context("--tenant")?,
            args.user.parse().context("--user")?,
            args.role.parse::<Role>().map_err(|e| anyhow::anyhow!("--role: {e}"))?,
        )
    };
    // With the iss and aud the emulator checks, when they are configured.
    let (iss, aud) = (auth.issuer.as_deref(), auth.audience.as_deref());
    println!("{}", switchboard::auth::mint_hs256_for(&secret, &identity, args.ttl_secs, iss, aud));
    Ok(())
}

/// Is the emulator at `args` healthy? Only its own answer counts
/// (`{"status":"ok","store":"ok","version":..}`): under host networking
/// another program could hold the port.
async fn health(args: HealthArgs) -> anyhow::Result<()> {
    let url = match args.url {
        Some(url) => url,
        None => format!("http://127.0.0.1:{}/v1/health", args.http_port).parse()?,
    };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    let response = client.get(url.clone()).send().await.with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if answer["status"] != "ok" || answer["store"] != "ok" || !answer["version"].is_string() {
        bail!("{url} answered, but not as switchboard-local does: {body}");
    }
    println!("{body}");
    Ok(())
}

async fn serve(args: Serve) -> anyhow::Result<()> {
    init_with(match args.log_format {
        LogArg::Text => LogFormat::Text,
        LogArg::Json => LogFormat::Json,
    });
    let (auth, dev_secret) = auth_config(args.production)?;
    if dev_secret && !args.host.is_loopback() {
        bail!(
            "the development JWT secret is public (anyone could mint an admin token of any tenant): listening on {} \
             (reachable from the network) needs JWT_SECRET (32+ bytes) or JWT_PUBLIC_KEY; or listen on 127.0.0.1",
            args.host
        );
    }
    let settings = settings(&args, &auth, dev_secret)?;
    let (mode, store_line) = mode(&args, &auth)?;
    let banner = Banner::of(&settings, store_line, &auth, dev_secret)?;
    let emulator = Emulator::start(settings, mode).await?;
    banner.print(&emulator);
    wait_for_signal().await;
    println!("shutting down: closing {} connection(s)", emulator.connection_count());
    emulator.shutdown().await;
    Ok(())
}

/// The emulator's settings, from the command line.
fn settings(args: &Serve, auth: &AuthConfig, dev_secret: bool) -> anyhow::Result<Settings> {
    Ok(Settings {
        host: args.host,
        ws_port: args.ws_port,
        http_port: args.http_port,
        stage: args.stage.clone(),
        domain_name: args.domain_name.clone(),
        route_selection: args.route_selection.clone(),
        limits: GatewayLimits {
            max_frame_bytes: args.max_frame_bytes,
            max_message_bytes: args.max_message_bytes,
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            max_duration: Duration::from_secs(args.max_connection_secs),
            reconnect_notice: Duration::from_secs(args.reconnect_notice_secs),
            slow_client_wait: Duration::from_millis(args.slow_client_wait_ms),
            integration_timeout: Duration::from_millis(args.integration_timeout_ms),
            identity_sources: IdentitySources::parse(&args.identity_source)
                .map_err(|e| anyhow::anyhow!("--identity-source: {e}"))?,
            quotas: Quotas {
                connects: args.connect_quota.map(|n| Quota { per_second: f64::from(n), burst: f64::from(n) }),
                connections_api: args.connections_quota.map(|n| Quota {
                    per_second: f64::from(n),
                    burst: f64::from(args.connections_burst.unwrap_or((n / 2).max(1))),
                }),
            },
        },
        sqs_port: args.sqs_port,
        in_process_posts: !args.connections_over_http,
        sweep_interval: Duration::from_secs(args.sweep_interval_secs),
        console: console_settings(auth, dev_secret, args.production),
        // Production serves no unauthenticated metrics: none, or behind the token.
        metrics: if args.production && args.metrics_token.is_none() {
            None
        } else {
            Some(switchboard_local::install_prometheus()?)
        },
        metrics_token: args.metrics_token.clone().filter(|t| !t.is_empty()),
        mapping: MappingSettings {
            batch_size: usize::from(args.sqs_batch_size),
            batch_window: Duration::from_millis(args.sqs_batch_window_ms),
            pollers: usize::from(args.sqs_pollers),
        },
    })
}

/// Where the functions run (in this process, or behind `--functions-url`),
/// and the banner's line for it.
fn mode(args: &Serve, auth: &AuthConfig) -> anyhow::Result<(Mode, String)> {
    if let Some(functions_url) = &args.functions_url {
        if args.channels.is_some() {
            bail!("--channels configures in-process functions; give the functions CHANNEL_NAMESPACES instead");
        }
        let line = format!("functions at {functions_url} (cargo lambda watch)");
        return Ok((Mode::Remote { functions_url: functions_url.clone() }, line));
    }
    let mut config = Config::from_env()?;
    if let Some(raw) = &args.channels {
        config.channels = namespaces_flag(raw)?;
    }
    // Local receivers (http://127.0.0.1:...) are the point of local
    // development; production mode keeps the strict policy.
    if !args.production && std::env::var_os("WEBHOOK_ALLOW_PRIVATE").is_none() {
        config.webhook_urls = switchboard::ssrf::UrlPolicy::LOCAL;
    }
    let store_line = match &config.redis {
        Some(r) => format!("Redis{} store, functions in-process", if r.cluster { " Cluster" } else { "" }),
        None => "memory store, functions in-process".to_owned(),
    };
    Ok((Mode::InProcess { ctx: switchboard::Context::from_config(config), verifier: Verifier::new(auth)? }, store_line))
}

/// `--channels`: inline JSON (it starts with `{`) or a file's path; each
/// error names the flag, the file and the namespace and field at fault.
fn namespaces_flag(raw: &str) -> anyhow::Result<switchboard::namespaces::Namespaces> {
    let (json, from) = if raw.trim_start().starts_with('{') {
        (raw.to_owned(), "--channels".to_owned())
    } else {
        let text = std::fs::read_to_string(raw).with_context(|| format!("--channels: cannot read {raw}"))?;
        (text, format!("--channels {raw}"))
    };
    switchboard::namespaces::Namespaces::parse(&json).map_err(|e| anyhow::anyhow!("{from}: {e}"))
}

/// What the start-up banner says beside the emulator's addresses.
struct Banner {
    store_line: String,
    dev_secret: bool,
    console: bool,
    identity_sources: String,
    quotas: Quotas,
    metrics_line: &'static str,
    /// A token to try it with (the HS256 secret's).
    sample: Option<String>,
}

impl Banner {
    fn of(settings: &Settings, store_line: String, auth: &AuthConfig, dev_secret: bool) -> anyhow::Result<Banner> {
        let metrics_line = match (&settings.metrics, &settings.metrics_token) {
            (None, _) => "off (--production without METRICS_TOKEN)",
            (Some(_), Some(_)) => "(Prometheus text; Authorization: Bearer $METRICS_TOKEN)",
            (Some(_), None) => "(Prometheus text)",
        };
        let sample = match &auth.key {
            JwtKey::Hs256Secret(secret) => {
                Some(mint_hs256(secret, &Identity::new("t1".parse()?, "42".parse()?, Role::Agent), 86_400))
            }
            _ => None,
        };
        Ok(Banner {
            store_line,
            dev_secret,
            console: settings.console.is_some(),
            identity_sources: settings.limits.identity_sources.to_string(),
            quotas: settings.limits.quotas.clone(),
            metrics_line,
            sample,
        })
    }

    fn print(&self, emulator: &Emulator) {
        println!("switchboard-local is up ({})", self.store_line);
        println!("  WebSocket     {}", emulator.ws_url());
        println!("  HTTP API      {}/v1/health", emulator.http_url());
        println!("  @connections  {}/@connections/{{connectionId}}", emulator.connections_endpoint());
        println!(
            "  SQS           {}  (queues {}, {}, {}, {}; aws --endpoint-url {} sqs list-queues)",
            emulator.sqs_url(),
            queues::WEBHOOKS,
            queues::WEBHOOKS_DLQ,
            queues::EVENTS,
            queues::EVENTS_DLQ,
            emulator.sqs_url()
        );
        if self.dev_secret {
            println!(
                "  JWT secret    development default \"{DEV_JWT_SECRET}\" (set JWT_SECRET to change it; refused with --production)"
            );
        }
        println!("  Tokens        switchboard-local token --tenant t1 --user 42 --role agent   (make token)");
        let identity_sources = &self.identity_sources;
        println!(
            "  Identity      {identity_sources}  (a handshake without it: 401, as API Gateway; --identity-source)"
        );
        let quota = |q: Option<Quota>, what: &str| match q {
            Some(q) => format!("{what} {}/s (burst {})", q.per_second, q.burst),
            None => format!("{what} unlimited"),
        };
        println!(
            "  Quotas        {}, {}  (--connect-quota, --connections-quota)",
            quota(self.quotas.connects, "connections"),
            quota(self.quotas.connections_api, "@connections")
        );
        if let Some(t) = &self.sample {
            if identity_sources.contains("querystring") {
                println!("  Try it        wscat -c \"{}?token={t}\"", emulator.ws_url());
            } else {
                println!("  Try it        wscat -c \"{}\" -s switchboard -s {t}", emulator.ws_url());
            }
            println!("                then send {{\"action\":\"subscribe\",\"events\":[\"call.incoming\"]}}");
        }
        if self.console {
            println!("  Console       {}/console", emulator.http_url());
        }
        println!("  Metrics       {}/metrics  {}", emulator.http_url(), self.metrics_line);
        println!("  Stop          Ctrl-C (closes every connection with 1001 and runs $disconnect)");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // A failed health check exits 1, as Docker's HEALTHCHECK means "unhealthy" (2 is reserved).
    let (result, failure) = match cli.command {
        Some(Command::Token(args)) => (token(args), 2),
        Some(Command::Health(args)) => (health(args).await, 1),
        None => (serve(cli.serve).await, 2),
    };
    if let Err(e) = result {
        eprintln!("switchboard-local: {e:#}");
        std::process::exit(failure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    /// Issue 13, point 7: under the development secret the other auth
    /// settings were dropped (any Origin, any issuer and audience).
    #[test]
    fn every_auth_setting_applies_under_the_development_secret() {
        let vars = [
            ("ALLOWED_ORIGINS", "https://app.example.com"),
            ("JWT_AUDIENCE", "switchboard"),
            ("JWT_ISSUER", "https://idp.example"),
        ];
        let (auth, dev) = auth_config_from(&lookup(&vars), false).unwrap();
        assert!(dev, "no key configured: the development secret");
        assert_eq!(auth.key, JwtKey::Hs256Secret(DEV_JWT_SECRET.as_bytes().to_vec()));
        assert_eq!(auth.allowed_origins, ["https://app.example.com"]);
        assert_eq!(
            (auth.audience.as_deref(), auth.issuer.as_deref()),
            (Some("switchboard"), Some("https://idp.example"))
        );
        let verifier = switchboard::auth::Verifier::new(&auth).unwrap();
        assert!(verifier.check_origin(Some("https://evil.example.com")).is_err());
        assert!(verifier.check_origin(Some("https://app.example.com")).is_ok());
        let plain = mint_hs256(
            DEV_JWT_SECRET.as_bytes(),
            &Identity::new("t".parse().unwrap(), "u".parse().unwrap(), Role::Agent),
            60,
        );
        assert!(verifier.verify(&plain).is_err(), "no aud, no iss: refused");
        assert!(auth_config_from(&lookup(&[]), true).is_err(), "production refuses the development secret");
    }

    /// The console: never in production; minting only under the
    /// development secret (which anybody can sign with anyway).
    #[test]
    fn the_console_is_for_development_and_mints_only_with_the_development_secret() {
        let (dev, dev_secret) = auth_config_from(&lookup(&[]), false).unwrap();
        let console = console_settings(&dev, dev_secret, false).expect("a console in development");
        assert!(console.mint.is_some(), "the development secret: the page may mint");
        let vars = [("JWT_SECRET", "a-configured-secret-of-32-bytes-or-more")];
        let (own, own_secret) = auth_config_from(&lookup(&vars), false).unwrap();
        assert!(console_settings(&own, own_secret, false).unwrap().mint.is_none(), "a configured key: no minting");
        assert!(console_settings(&own, own_secret, true).is_none(), "production: no console at all");
    }
}
