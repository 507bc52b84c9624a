use lambda_http::Error;
use switchboard::Context;
use switchboard::auth::Verifier;
use switchboard::config::AuthConfig;

#[tokio::main]
async fn main() -> Result<(), Error> {
    switchboard::telemetry::init();
    let ctx = Context::for_function().await?;
    let verifier = Verifier::new(&AuthConfig::from_env()?)?;
    lambda_http::run(api::router(ctx, verifier)).await
}
