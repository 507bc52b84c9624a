use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use switchboard::Context;

#[tokio::main]
async fn main() -> Result<(), Error> {
    switchboard::telemetry::init();
    switchboard::metrics::install_emf("fanout");
    let ctx = Context::for_function().await?;
    run(service_fn(|event: LambdaEvent<Value>| {
        let ctx = ctx.clone();
        async move { switchboard::metrics::flushed(fanout::invoke(&ctx, event.payload)).await.map_err(Error::from) }
    }))
    .await
}
