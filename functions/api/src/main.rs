use lambda_http::Error;
use switchboard::Context;
use switchboard::auth::AuthConfig;
use switchboard::auth::Verifier;

#[tokio::main]
async fn main() -> Result<(), Error> {
    switchboard::telemetry::init();
    let ctx = Context::for_function().await?;
    // JWT_SECRET_ARN: the key comes from Secrets Manager, not the environment.
    let secrets = switchboard::secrets::from_env().await?;
    let verifier = Verifier::new(&AuthConfig::from_lookup(&switchboard::secrets::overlay(&secrets))?)?;
    lambda_http::run(api::router(ctx, verifier)).await
}
