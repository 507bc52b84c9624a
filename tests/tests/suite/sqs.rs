//! The emulator's SQS through the real `aws-sdk-sqs` client: the queues made
//! at start-up, send / receive / delete, long polling, visibility timeouts
//! and receive counts, delays, redrive to a dead-letter queue, batches with
//! partial failures, attributes, purge, and errors the SDK types.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageAttributeValue,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use switchboard::Context;
use switchboard::auth::AuthConfig;
use switchboard::auth::Verifier;
use switchboard::config::Config;
use switchboard::store::MemoryStore;
use switchboard_local::{Emulator, Mode, Settings, queues};

async fn emulator() -> (Emulator, Client) {
    let config = Config::default();
    let ctx = Context::new(config.clone(), std::sync::Arc::new(MemoryStore::new(config.limits.clone())));
    let verifier = Verifier::new(&AuthConfig::hs256(b"sqs-test-secret-sqs-test-secret-sqs".to_vec())).unwrap();
    let emu = Emulator::start(Settings::ephemeral(), Mode::InProcess { ctx, verifier }).await.unwrap();
    let conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(emu.sqs_url())
        .credentials_provider(Credentials::new("x", "y", None, None, "test"))
        .build();
    (emu, Client::from_conf(conf))
}

async fn queue(sqs: &Client, name: &str, attrs: &[(QueueAttributeName, &str)]) -> String {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in attrs {
        req = req.attributes(k.clone(), *v);
    }
    req.send().await.unwrap().queue_url().unwrap().to_owned()
}

async fn receive(sqs: &Client, url: &str, max: i32, wait: i32) -> Vec<aws_sdk_sqs::types::Message> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .wait_time_seconds(wait)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

fn receive_count(m: &aws_sdk_sqs::types::Message) -> u32 {
    m.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount].parse().unwrap()
}

#[tokio::test]
async fn the_queues_exist_at_start_and_the_sdk_can_list_and_find_them() {
    let (emu, sqs) = emulator().await;
    let listed = sqs.list_queues().send().await.unwrap();
    let urls = listed.queue_urls();
    for name in [queues::WEBHOOKS, queues::WEBHOOKS_DLQ, queues::EVENTS, queues::EVENTS_DLQ] {
        assert!(urls.contains(&emu.queue_url(name)), "{name} in {urls:?}");
        let got = sqs.get_queue_url().queue_name(name).send().await.unwrap();
        assert_eq!(got.queue_url(), Some(emu.queue_url(name).as_str()));
    }
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(emu.queue_url(queues::WEBHOOKS))
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let redrive = &attrs.attributes().unwrap()[&QueueAttributeName::RedrivePolicy];
    assert!(redrive.contains(queues::WEBHOOKS_DLQ) && redrive.contains("\"maxReceiveCount\":12"), "{redrive}");

    let err = sqs.get_queue_url().queue_name("nope").send().await.unwrap_err();
    assert!(err.into_service_error().is_queue_does_not_exist(), "a typed QueueDoesNotExist");
    emu.shutdown().await;
}

#[tokio::test]
async fn messages_round_trip_with_checksums_attributes_and_delete() {
    let (emu, sqs) = emulator().await;
    let url = queue(&sqs, "plain", &[]).await;
    let sent = sqs
        .send_message()
        .queue_url(&url)
        .message_body("héllo {\"a\":1}")
        .message_attributes(
            "kind",
            MessageAttributeValue::builder().data_type("String").string_value("greeting").build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    // MD5 of the UTF-8 body, as SQS computes it.
    let other = queue(&sqs, "md5", &[]).await;
    let hello = sqs.send_message().queue_url(&other).message_body("hello").send().await.unwrap();
    assert_eq!(hello.md5_of_message_body(), Some("5d41402abc4b2a76b9719d911017c592"));
    assert!(sent.md5_of_message_attributes().is_some());

    let got = receive(&sqs, &url, 10, 0).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.body(), Some("héllo {\"a\":1}"));
    assert_eq!(m.message_id(), sent.message_id());
    assert_eq!(m.md5_of_body(), sent.md5_of_message_body());
    assert_eq!(m.message_attributes().unwrap()["kind"].string_value(), Some("greeting"));
    assert_eq!(receive_count(m), 1);
    sqs.delete_message().queue_url(&url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
    assert!(receive(&sqs, &url, 10, 0).await.is_empty(), "deleted");

    let err =
        sqs.change_message_visibility().queue_url(&url).receipt_handle("bogus").visibility_timeout(5).send().await;
    assert!(err.unwrap_err().into_service_error().is_receipt_handle_is_invalid());
    emu.shutdown().await;
}

#[tokio::test]
async fn visibility_timeouts_bring_messages_back_with_higher_receive_counts() {
    let (emu, sqs) = emulator().await;
    let url = queue(&sqs, "visible", &[(QueueAttributeName::VisibilityTimeout, "1")]).await;
    sqs.send_message().queue_url(&url).message_body("once").send().await.unwrap();
    let first = receive(&sqs, &url, 1, 0).await;
    assert_eq!(receive_count(&first[0]), 1);
    assert!(receive(&sqs, &url, 1, 0).await.is_empty(), "invisible while in flight");
    // Long polling: waits for the message to become visible again (~1 s).
    let again = receive(&sqs, &url, 1, 5).await;
    assert_eq!(again.len(), 1, "back after the visibility timeout");
    assert_eq!(receive_count(&again[0]), 2);
    assert_ne!(again[0].receipt_handle(), first[0].receipt_handle(), "a new receipt per receive");

    // ChangeMessageVisibility to 0: visible at once.
    sqs.change_message_visibility()
        .queue_url(&url)
        .receipt_handle(again[0].receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let third = receive(&sqs, &url, 1, 0).await;
    assert_eq!(receive_count(&third[0]), 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn long_polling_returns_as_soon_as_a_message_arrives() {
    let (emu, sqs) = emulator().await;
    let url = queue(&sqs, "poll", &[]).await;
    let (sqs2, url2) = (sqs.clone(), url.clone());
    let waiter = tokio::spawn(async move { receive(&sqs2, &url2, 1, 20).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "still waiting for a message");
    sqs.send_message().queue_url(&url).message_body("now").send().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("woken by the send").unwrap();
    assert_eq!(got[0].body(), Some("now"));
    emu.shutdown().await;
}

#[tokio::test]
async fn delayed_messages_wait_and_counts_say_so() {
    let (emu, sqs) = emulator().await;
    let url = queue(&sqs, "delays", &[]).await;
    sqs.send_message().queue_url(&url).message_body("later").delay_seconds(1).send().await.unwrap();
    sqs.send_message().queue_url(&url).message_body("now").send().await.unwrap();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let a = attrs.attributes().unwrap();
    assert_eq!(a[&QueueAttributeName::ApproximateNumberOfMessages], "1");
    assert_eq!(a[&QueueAttributeName::ApproximateNumberOfMessagesDelayed], "1");
    let first = receive(&sqs, &url, 10, 0).await;
    assert_eq!(first.iter().map(|m| m.body().unwrap()).collect::<Vec<_>>(), ["now"]);
    let later = receive(&sqs, &url, 10, 5).await;
    assert_eq!(later[0].body(), Some("later"));

    sqs.send_message().queue_url(&url).message_body("x").send().await.unwrap();
    sqs.purge_queue().queue_url(&url).send().await.unwrap();
    assert!(receive(&sqs, &url, 10, 0).await.is_empty(), "purged");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_message_received_too_often_moves_to_the_dead_letter_queue() {
    let (emu, sqs) = emulator().await;
    let dlq = queue(&sqs, "dead", &[]).await;
    let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dead","maxReceiveCount":2}"#;
    let url = queue(
        &sqs,
        "work",
        &[(QueueAttributeName::RedrivePolicy, policy), (QueueAttributeName::VisibilityTimeout, "0")],
    )
    .await;
    sqs.send_message().queue_url(&url).message_body("poison").send().await.unwrap();
    assert_eq!(receive_count(&receive(&sqs, &url, 1, 0).await[0]), 1);
    assert_eq!(receive_count(&receive(&sqs, &url, 1, 0).await[0]), 2);
    assert!(receive(&sqs, &url, 1, 0).await.is_empty(), "the third receive moved it instead");
    let dead = receive(&sqs, &dlq, 1, 0).await;
    assert_eq!(dead[0].body(), Some("poison"));
    assert_eq!(
        receive_count(&dead[0]),
        3,
        "receives are counted across the queue and its dead-letter queue, as in AWS"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn batches_report_each_entry() {
    let (emu, sqs) = emulator().await;
    let url = queue(&sqs, "batches", &[]).await;
    let entries: Vec<_> = (0..10)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(format!("body {i}"))
                .build()
                .unwrap()
        })
        .collect();
    let sent = sqs.send_message_batch().queue_url(&url).set_entries(Some(entries)).send().await.unwrap();
    assert_eq!(sent.successful().len(), 10);

    let too_many: Vec<_> = (0..11)
        .map(|i| SendMessageBatchRequestEntry::builder().id(format!("m{i}")).message_body("x").build().unwrap())
        .collect();
    let err = sqs.send_message_batch().queue_url(&url).set_entries(Some(too_many)).send().await.unwrap_err();
    assert!(err.into_service_error().is_too_many_entries_in_batch_request());

    let mut got = Vec::new();
    while got.len() < 10 {
        got.extend(receive(&sqs, &url, 10, 1).await);
    }
    let mut visibility: Vec<_> = got
        .iter()
        .take(2)
        .enumerate()
        .map(|(i, m)| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(format!("v{i}"))
                .receipt_handle(m.receipt_handle().unwrap())
                .visibility_timeout(60)
                .build()
                .unwrap()
        })
        .collect();
    visibility.push(
        ChangeMessageVisibilityBatchRequestEntry::builder()
            .id("bad")
            .receipt_handle("nope#nope")
            .visibility_timeout(1)
            .build()
            .unwrap(),
    );
    let changed =
        sqs.change_message_visibility_batch().queue_url(&url).set_entries(Some(visibility)).send().await.unwrap();
    assert_eq!((changed.successful().len(), changed.failed().len()), (2, 1));
    assert_eq!(changed.failed()[0].code(), "ReceiptHandleIsInvalid");

    let deletes: Vec<_> = got
        .iter()
        .enumerate()
        .map(|(i, m)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(format!("d{i}"))
                .receipt_handle(m.receipt_handle().unwrap())
                .build()
                .unwrap()
        })
        .collect();
    let deleted = sqs.delete_message_batch().queue_url(&url).set_entries(Some(deletes)).send().await.unwrap();
    assert_eq!(deleted.successful().len(), 10);
    let counts = emu.sqs.counts(&url).unwrap();
    assert_eq!(counts, (0, 0, 0), "nothing left");
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_the_errors_the_sdk_expects() {
    let (emu, sqs) = emulator().await;
    let err = sqs.create_queue().queue_name("bad name!").send().await.unwrap_err();
    let text = format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&err));
    assert!(text.contains("queue name"), "{text}");
    let url = queue(&sqs, "errors", &[]).await;
    let err = sqs.receive_message().queue_url(&url).max_number_of_messages(11).send().await.unwrap_err();
    assert!(format!("{}", aws_sdk_sqs::error::DisplayErrorContext(&err)).contains("MaxNumberOfMessages"));
    let err =
        sqs.send_message().queue_url(format!("{}/000000000000/missing", emu.sqs_url())).message_body("x").send().await;
    assert!(err.unwrap_err().into_service_error().is_queue_does_not_exist());
    // A raw request without X-Amz-Target is refused with a message, not a crash.
    let raw = reqwest::Client::new().post(emu.sqs_url()).body("Action=ListQueues").send().await.unwrap();
    assert_eq!(raw.status(), 400);
    assert!(raw.text().await.unwrap().contains("X-Amz-Target"));
    emu.shutdown().await;
}

#[tokio::test]
async fn send_all_splits_batches_by_bytes_as_well_as_count() {
    // Ten 120 KB bodies are 1.2 MB: one SendMessageBatch would be refused
    // with BatchRequestTooLong, and every one of them lost with it.
    let (emu, sqs) = emulator().await;
    let url = queue(&sqs, "sized", &[]).await;
    let q = switchboard::queue::Queues::local(&emu.sqs_url(), Default::default());
    let bodies: Vec<String> = (0..10).map(|i| format!("{i}{}", "x".repeat(120 * 1024))).collect();
    assert_eq!(q.send_all(&url, &bodies).await.unwrap(), 10);
    let mut got = 0;
    while got < 10 {
        let batch = receive(&sqs, &url, 10, 1).await;
        assert!(!batch.is_empty(), "only {got} of 10 arrived");
        got += batch.len();
    }
    emu.shutdown().await;
}
