//! The AWS SDK's configuration for a Lambda function, loaded once per process.
//!
//! `aws_config`'s default credentials chain builds an STS client for web
//! identity tokens whether or not it is used, and building any SDK client
//! builds its HTTPS connector, which reads and parses every root certificate
//! the system has (on Debian ~300 files; measured at about 10 ms of a
//! ~20 ms cold start). In Lambda the role's credentials are in the
//! environment, so when they are there this reads them directly and builds
//! nothing else; elsewhere (a laptop, ECS, EC2) the default chain is used.
//! Clients are then built on first use (the `@connections` clients per
//! endpoint, the SQS client at its first call), so an invocation that posts
//! nothing and queues nothing never loads a certificate.

use aws_config::{BehaviorVersion, SdkConfig};
use tokio::sync::OnceCell;

static SHARED: OnceCell<SdkConfig> = OnceCell::const_new();

/// The process's SDK configuration (region, credentials, HTTP client), shared
/// by every client a function makes.
pub async fn sdk_config() -> &'static SdkConfig {
    SHARED.get_or_init(|| load(&|name| std::env::var(name).ok())).await
}

async fn load(get: &dyn Fn(&str) -> Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if lambda_credentials(get) {
        loader = loader.credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new());
    }
    loader.load().await
}

/// Whether the environment carries credentials, as Lambda's does (key id and
/// secret; the session token is read with them when present).
fn lambda_credentials(get: &dyn Fn(&str) -> Option<String>) -> bool {
    ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"].iter().all(|k| get(k).is_some_and(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_environment_are_read_directly_only_when_both_parts_are_there() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert!(lambda_credentials(&env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "s")])));
        assert!(!lambda_credentials(&env(&[("AWS_ACCESS_KEY_ID", "AKID")])));
        assert!(!lambda_credentials(&env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "")])));
        assert!(!lambda_credentials(&env(&[])));
    }
}
