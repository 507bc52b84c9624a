//! Logging setup: JSON lines in Lambda (CloudWatch indexes the fields),
//! readable text everywhere else. `RUST_LOG` filters, `info` by default.

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Compact human-readable text.
    Text,
}

/// Installs the global subscriber: JSON inside Lambda or when
/// `LOG_FORMAT=json`, text otherwise. A second call is a no-op.
pub fn init() {
    let json = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
        || std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json");
    init_with(if json { LogFormat::Json } else { LogFormat::Text });
}

/// Installs the global subscriber with a chosen format.
pub fn init_with(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr (Lambda captures it like stdout), leaving stdout to
    // program output such as the emulator's banner; colour only on a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        // Lambda adds its own timestamps and request ids to every line.
        LogFormat::Json => builder.json().without_time().with_current_span(false).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}
