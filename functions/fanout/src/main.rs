use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;
use switchboard::Context;

/// A broadcast allocates for every post (the SDK's request, its signing):
/// with glibc's malloc it took a quarter more CPU per post (BENCHMARKS.md,
/// benchmark 12).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
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
