use lambda_http::Error;
use switchboard::Context;
use switchboard::auth::AuthConfig;
use switchboard::auth::Verifier;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    switchboard::telemetry::init();
    switchboard::metrics::install_emf("api");
    let ctx = Context::for_function().await?;
    // JWT_SECRET_ARN: the key comes from Secrets Manager, not the environment.
    let secrets = switchboard::secrets::from_env().await?;
    let verifier = Verifier::new(&AuthConfig::from_lookup(&switchboard::secrets::overlay(&secrets))?)?;
    // Each request's metrics are written when its response is ready.
    let flush = axum::middleware::map_response(|response: axum::response::Response| async {
        switchboard::metrics::flush_emf();
        response
    });
    lambda_http::run(api::router(ctx, verifier).layer(flush)).await
}
