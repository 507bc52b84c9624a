//! Logging setup: JSON lines in Lambda (CloudWatch indexes the fields),
//! readable text everywhere else. `RUST_LOG` filters, `info` by default.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if in_lambda || std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        // Lambda adds its own timestamps and request ids to every line.
        builder
            .json()
            .without_time()
            .with_current_span(false)
            .try_init()
    } else {
        builder.compact().try_init()
    };
}
