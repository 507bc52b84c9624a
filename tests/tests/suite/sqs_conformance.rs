//! The emulator's SQS beside moto's (moto 5, `moto[server]` from PyPI,
//! started here): one scripted scenario in the raw JSON protocol, the
//! protocol the AWS SDKs and CLI speak, sent to both, the answers
//! normalised (queue URLs, ARNs, ids, handles and timestamps differ by
//! nature) and compared step by step. Raw JSON rather than an SDK, because
//! what an SDK hides is part of what is compared: a list left out or sent
//! empty, the digest of the attributes returned.
//!
//! AWS's API reference is the judge. Where moto itself departs from AWS,
//! the step says so in `MOTO_DEPARTS` and the emulator is held to AWS's
//! documented answer instead:
//! - a second `PurgeQueue` within 60 s: moto answers 403, AWS's reference
//!   says 400 (moto 5.2.5, pinned in `infra/requirements-test.txt`);
//! - seen beside the scenario: moto's error bodies carry `Message` as well
//!   as `message`, and its `NextToken` is base64 JSON of its own state;
//!   neither matters to a client, and the normalisation keeps only an
//!   error's `__type` and whether there is a token.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use switchboard::Context;
use switchboard::auth::{AuthConfig, Verifier};
use switchboard::config::Config;
use switchboard_local::{Emulator, Mode, Settings};
use switchboard_tests::Backend;
use switchboard_tests::auth::SECRET;
use switchboard_tests::moto::Moto;

/// Steps where moto departs from AWS: (step, what AWS answers, why).
const MOTO_DEPARTS: &[(&str, &str, &str)] = &[(
    "PurgeQueue again within 60 s",
    r#"{"status": 400, "answer": {"__type": "PurgeQueueInProgress"}}"#,
    "AWS's API reference gives PurgeQueueInProgress HTTP status 400; moto answers 403",
)];

/// One SQS endpoint and what the scenario learnt of it.
struct Endpoint {
    base: String,
    http: reqwest::Client,
    /// Queue name → its URL, as CreateQueue answered.
    urls: BTreeMap<String, String>,
    /// Queue name → its ARN, as GetQueueAttributes answered.
    arns: BTreeMap<String, String>,
}

impl Endpoint {
    fn new(base: String) -> Self {
        Endpoint { base, http: reqwest::Client::new(), urls: BTreeMap::new(), arns: BTreeMap::new() }
    }

    /// One action; the status and the JSON answer.
    async fn call(&self, action: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(&self.base)
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            // moto reads the region from the signature's scope; neither checks the signature.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{action} to {}: {e}", self.base));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, if text.is_empty() { json!({}) } else { serde_json::from_str(&text).expect("a JSON answer") })
    }

    fn url(&self, name: &str) -> &str {
        &self.urls[name]
    }

    /// `value` with what differs by nature replaced by what it stands for.
    fn normalise(&self, value: Value) -> Value {
        match value {
            Value::String(s) => {
                if let Some((name, _)) = self.urls.iter().find(|(_, url)| **url == s) {
                    return Value::String(format!("<url of {name}>"));
                }
                if let Some((name, _)) = self.arns.iter().find(|(_, arn)| **arn == s) {
                    return Value::String(format!("<arn of {name}>"));
                }
                Value::String(s)
            }
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.normalise(v)).collect()),
            Value::Object(map) => {
                if let Some(kind) = map.get("__type").and_then(Value::as_str) {
                    // An error: its type is the contract, its wording is not.
                    return json!({"__type": kind.rsplit('#').next().unwrap_or(kind)});
                }
                let mut out = Map::new();
                for (k, v) in map {
                    let v = match k.as_str() {
                        "MessageId"
                        | "ReceiptHandle"
                        | "SentTimestamp"
                        | "ApproximateFirstReceiveTimestamp"
                        | "SenderId"
                        | "NextToken" => Value::String(format!("<{k}>")),
                        _ => self.normalise(v),
                    };
                    out.insert(k, v);
                }
                Value::Object(out)
            }
            other => other,
        }
    }
}

/// The scenario, run on `ep`: a transcript of (step, status, normalised answer).
async fn scenario(ep: &mut Endpoint) -> Vec<(String, u16, Value)> {
    let mut log: Vec<(String, u16, Value)> = Vec::new();
    macro_rules! step {
        ($label:expr, $action:expr, $body:expr) => {{
            let (status, answer) = ep.call($action, $body).await;
            log.push(($label.to_string(), status, answer.clone()));
            answer
        }};
    }
    for name in ["cf-dead", "cf-a", "cf-b"] {
        let answer = step!(format!("CreateQueue {name}"), "CreateQueue", json!({"QueueName": name}));
        ep.urls.insert(name.into(), answer["QueueUrl"].as_str().unwrap().to_owned());
    }
    let answer = step!(
        "GetQueueAttributes QueueArn",
        "GetQueueAttributes",
        json!({"QueueUrl": ep.url("cf-dead"), "AttributeNames": ["QueueArn"]})
    );
    let dead_arn = answer["Attributes"]["QueueArn"].as_str().unwrap().to_owned();
    ep.arns.insert("cf-dead".into(), dead_arn.clone());
    let policy = json!({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 1}).to_string();
    let answer = step!(
        "CreateQueue with a redrive policy",
        "CreateQueue",
        json!({"QueueName": "cf-work", "Attributes": {"RedrivePolicy": policy}})
    );
    ep.urls.insert("cf-work".into(), answer["QueueUrl"].as_str().unwrap().to_owned());

    // Pagination: the order of queues is not specified, so a page is compared
    // by its size and its token, and the pages together by what they hold.
    let (_, first) = ep.call("ListQueues", json!({"QueueNamePrefix": "cf-", "MaxResults": 3})).await;
    let token = first["NextToken"].clone();
    let (_, second) =
        ep.call("ListQueues", json!({"QueueNamePrefix": "cf-", "MaxResults": 3, "NextToken": token})).await;
    let page = |p: &Value| json!({"count": p["QueueUrls"].as_array().map_or(0, Vec::len), "token": p.get("NextToken").is_some()});
    let mut all: Vec<Value> = [&first, &second]
        .iter()
        .flat_map(|p| p["QueueUrls"].as_array().cloned().unwrap_or_default())
        .map(|u| ep.normalise(u))
        .collect();
    all.sort_by_key(Value::to_string);
    log.push((
        "ListQueues pages of 3".into(),
        200,
        json!({"first": page(&first), "second": page(&second), "all": all}),
    ));
    step!("ListQueues matching nothing", "ListQueues", json!({"QueueNamePrefix": "cf-zz"}));

    step!("GetQueueAttributes without names", "GetQueueAttributes", json!({"QueueUrl": ep.url("cf-a")}));
    step!(
        "GetQueueAttributes by name",
        "GetQueueAttributes",
        json!({"QueueUrl": ep.url("cf-a"), "AttributeNames": ["VisibilityTimeout", "DelaySeconds", "MaximumMessageSize"]})
    );
    step!(
        "ReceiveMessage on an empty queue",
        "ReceiveMessage",
        json!({"QueueUrl": ep.url("cf-a"), "WaitTimeSeconds": 0})
    );
    let attributes = json!({
        "tenant": {"DataType": "String", "StringValue": "t1"},
        "attempt": {"DataType": "Number", "StringValue": "2"},
        "raw": {"DataType": "Binary", "BinaryValue": "AAEC"},
    });
    step!(
        "SendMessage with three attributes",
        "SendMessage",
        json!({"QueueUrl": ep.url("cf-a"), "MessageBody": "hello", "MessageAttributes": attributes})
    );
    step!(
        "ReceiveMessage asking for one attribute",
        "ReceiveMessage",
        json!({"QueueUrl": ep.url("cf-a"), "MessageAttributeNames": ["tenant"], "WaitTimeSeconds": 0})
    );
    step!(
        "SendMessage with an attribute type that does not exist",
        "SendMessage",
        json!({"QueueUrl": ep.url("cf-a"), "MessageBody": "x", "MessageAttributes": {"a": {"DataType": "Strin", "StringValue": "1"}}})
    );
    step!(
        "SendMessage with a labelled attribute type",
        "SendMessage",
        json!({"QueueUrl": ep.url("cf-a"), "MessageBody": "x", "MessageAttributes": {"a": {"DataType": "Number.int", "StringValue": "1"}}})
    );

    // A message received more often than the redrive policy allows.
    step!("SendMessage poison", "SendMessage", json!({"QueueUrl": ep.url("cf-work"), "MessageBody": "poison"}));
    let receive = |queue: &str| json!({"QueueUrl": ep.url(queue), "VisibilityTimeout": 0, "WaitTimeSeconds": 0, "AttributeNames": ["ApproximateReceiveCount"]});
    let (work, dead) = (receive("cf-work"), receive("cf-dead"));
    step!("ReceiveMessage poison, first time", "ReceiveMessage", work.clone());
    step!("ReceiveMessage poison, over the limit", "ReceiveMessage", work);
    step!("ReceiveMessage from the dead-letter queue", "ReceiveMessage", dead);

    step!("PurgeQueue", "PurgeQueue", json!({"QueueUrl": ep.url("cf-a")}));
    step!("PurgeQueue again within 60 s", "PurgeQueue", json!({"QueueUrl": ep.url("cf-a")}));
    step!("GetQueueUrl of no queue", "GetQueueUrl", json!({"QueueName": "cf-nope"}));
    // Normalised once every URL and ARN is known.
    log.into_iter().map(|(step, status, answer)| (step, status, ep.normalise(answer))).collect()
}

#[tokio::test]
async fn the_emulators_sqs_answers_a_scripted_scenario_as_moto_does() {
    let moto = Moto::start();
    let ctx = Context::new(Config::default(), Backend::Memory.store(Default::default()));
    let mode = Mode::InProcess { ctx, verifier: Verifier::new(&AuthConfig::hs256(SECRET)).unwrap() };
    let emu = Emulator::start(Settings::ephemeral(), mode).await.unwrap();

    let theirs = scenario(&mut Endpoint::new(moto.url.clone())).await;
    let ours = scenario(&mut Endpoint::new(emu.sqs_url())).await;
    assert_eq!(ours.len(), theirs.len());
    let mut differences = Vec::new();
    for ((step, status, answer), (_, moto_status, moto_answer)) in ours.iter().zip(&theirs) {
        let expected = match MOTO_DEPARTS.iter().find(|(s, _, _)| s == step) {
            Some((_, aws, _)) => serde_json::from_str(aws).expect("AWS's answer as JSON"),
            None => json!({"status": moto_status, "answer": moto_answer}),
        };
        let got = json!({"status": status, "answer": answer});
        if got != expected {
            differences.push(format!("{step}:\n  emulator {got}\n  expected {expected}"));
        }
    }
    assert!(differences.is_empty(), "the emulator answers otherwise than moto (AWS):\n{}", differences.join("\n"));
    // The scenario exercised what it is about.
    let answer = |name: &str| &ours.iter().find(|(s, _, _)| s == name).unwrap().2;
    assert_eq!(
        answer("ReceiveMessage from the dead-letter queue")["Messages"][0]["Attributes"]["ApproximateReceiveCount"],
        "2"
    );
    assert_eq!(answer("PurgeQueue again within 60 s")["__type"], "PurgeQueueInProgress");
    assert_eq!(answer("ListQueues pages of 3")["first"], json!({"count": 3, "token": true}));
    emu.shutdown().await;
}
