use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use switchboard::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    switchboard::telemetry::init();
    switchboard::metrics::install_emf("ws-disconnect");
    let ctx = Context::for_function().await?;
    run(service_fn(|event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let ctx = ctx.clone();
        async move { Ok::<_, Error>(switchboard::metrics::flushed(ws_disconnect::handle(&ctx, event.payload)).await) }
    }))
    .await
}
