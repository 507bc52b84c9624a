use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use switchboard::Context;
use webhook::WebhookSender;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    switchboard::telemetry::init();
    switchboard::metrics::install_emf("webhook");
    let deliverer = WebhookSender::new(Context::for_function().await?);
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let deliverer = deliverer.clone();
        async move { Ok::<_, Error>(switchboard::metrics::flushed(webhook::handle(&deliverer, event.payload)).await) }
    }))
    .await
}
