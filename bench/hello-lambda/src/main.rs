//! The cold-start benchmark's baseline: what any Rust Lambda function pays
//! before it does anything of its own (the tokio runtime, `lambda_runtime`'s
//! client of the Runtime API, one JSON event in and out).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<_, Error>(event.payload) })).await
}
