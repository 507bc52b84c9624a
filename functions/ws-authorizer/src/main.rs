use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use lambda_runtime::{Diagnostic, Error, LambdaEvent, run, service_fn};
use switchboard::auth::AuthConfig;
use switchboard::auth::Verifier;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    switchboard::telemetry::init();
    switchboard::metrics::install_emf("ws-authorizer");
    // JWT_SECRET_ARN: the key comes from Secrets Manager, not the environment.
    let secrets = switchboard::secrets::from_env().await?;
    let verifier = Verifier::new(&AuthConfig::from_lookup(&switchboard::secrets::overlay(&secrets))?)?;
    let verifier = &verifier;
    run(service_fn(|event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
        // API Gateway turns an error whose message is exactly "Unauthorized" into a 401.
        switchboard::metrics::flushed(ws_authorizer::handle(verifier, &event.payload))
            .await
            .map_err(|e| Diagnostic { error_type: "Unauthorized".into(), error_message: e.to_string() })
    }))
    .await
}
