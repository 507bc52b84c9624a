//! The SQS JSON protocol over the [`engine`](super::engine): `POST /` with
//! `X-Amz-Target: AmazonSQS.<Action>` and an `application/x-amz-json-1.0`
//! body. Each action's body is one `Deserialize` type below, named after the
//! action and spelled as the API reference spells it; a body of the wrong
//! shape is an `InvalidParameterValue` that names the field, never a default.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::engine::{
    MAX_MESSAGE_BYTES, MAX_VISIBILITY_SECS, Received, Sent, Sqs, SqsError, SqsResult, md5_of_attributes,
};

/// Message or queue attributes as sent: name → `{DataType, StringValue}` or a string.
type Attributes = Map<String, Value>;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateQueue {
    queue_name: Option<String>,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueUrl {
    queue_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListQueues {
    #[serde(default)]
    queue_name_prefix: String,
    max_results: Option<u64>,
    next_token: Option<String>,
}

/// The body of the actions that name only a queue (DeleteQueue, PurgeQueue).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueOnly {
    queue_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributes {
    queue_url: Option<String>,
    #[serde(default)]
    attribute_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetQueueAttributes {
    queue_url: Option<String>,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessage {
    queue_url: Option<String>,
    message_body: Option<String>,
    delay_seconds: Option<u64>,
    #[serde(default)]
    message_attributes: Attributes,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Batch<E> {
    queue_url: Option<String>,
    #[serde(default = "Vec::new")]
    entries: Vec<E>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageEntry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message_body: String,
    delay_seconds: Option<u64>,
    #[serde(default)]
    message_attributes: Attributes,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessage {
    queue_url: Option<String>,
    max_number_of_messages: Option<u64>,
    visibility_timeout: Option<u64>,
    wait_time_seconds: Option<u64>,
    #[serde(default)]
    attribute_names: Vec<String>,
    #[serde(default)]
    message_system_attribute_names: Vec<String>,
    #[serde(default)]
    message_attribute_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMessage {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMessageEntry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    receipt_handle: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeMessageVisibility {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeVisibilityEntry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    receipt_handle: String,
    #[serde(default)]
    visibility_timeout: u64,
}

/// A batch entry: its `Id` is what the answer's `Successful`/`Failed` refer to.
trait Entry {
    fn id(&self) -> &str;
}

impl Entry for SendMessageEntry {
    fn id(&self) -> &str {
        &self.id
    }
}
impl Entry for DeleteMessageEntry {
    fn id(&self) -> &str {
        &self.id
    }
}
impl Entry for ChangeVisibilityEntry {
    fn id(&self) -> &str {
        &self.id
    }
}

/// The request body as `T`, or an error that says what was wrong with it.
fn parse<T: DeserializeOwned>(action: &str, body: Value) -> SqsResult<T> {
    serde_path_to_error::deserialize(body)
        .map_err(|e| SqsError::invalid(format!("the {action} request is malformed at {}: {}", e.path(), e.inner())))
}

/// A parameter the action cannot do without.
fn required<T>(value: Option<T>, name: &str) -> SqsResult<T> {
    value.ok_or_else(|| SqsError::missing(name))
}

/// The entries of a batch request, checked: 1 to 10, ids valid and distinct.
fn checked<E: Entry>(entries: Vec<E>) -> SqsResult<Vec<E>> {
    if entries.is_empty() {
        return Err(SqsError::new(
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "there should be at least one entry in the request",
        ));
    }
    if entries.len() > 10 {
        return Err(SqsError::new(
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!("at most 10 entries per batch, got {}", entries.len()),
        ));
    }
    let mut ids = HashSet::new();
    for e in &entries {
        let id = e.id();
        if id.is_empty() || id.len() > 80 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(SqsError::new(
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "a batch entry id is 1-80 letters, digits, '-' or '_'",
            ));
        }
        if !ids.insert(id) {
            return Err(SqsError::new(
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("the id {id} is used twice"),
            ));
        }
    }
    Ok(entries)
}

/// Runs `each` on every (checked) entry; a missing queue fails the whole batch, any
/// other error only its entry (SQS's `Successful`/`Failed` answer).
fn run_batch<E: Entry>(entries: Vec<E>, mut each: impl FnMut(&E) -> SqsResult<Map<String, Value>>) -> SqsResult<Value> {
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for e in entries {
        match each(&e) {
            Ok(mut out) => {
                out.insert("Id".into(), Value::String(e.id().to_owned()));
                ok.push(Value::Object(out));
            }
            Err(err) if err.code == "QueueDoesNotExist" => return Err(err),
            Err(err) => {
                failed.push(json!({"Id": e.id(), "SenderFault": true, "Code": err.code, "Message": err.message}))
            }
        }
    }
    Ok(json!({"Successful": ok, "Failed": failed}))
}

/// The answer to a send, single or batched.
fn sent(s: Sent) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("MessageId".into(), Value::String(s.message_id));
    out.insert("MD5OfMessageBody".into(), Value::String(s.md5_of_body));
    if let Some(m) = s.md5_of_message_attributes {
        out.insert("MD5OfMessageAttributes".into(), Value::String(m));
    }
    out
}

/// Runs one JSON-protocol action on `sqs`.
pub async fn call(sqs: &Sqs, action: &str, body: Value) -> SqsResult<Value> {
    match action {
        "CreateQueue" => {
            let r: CreateQueue = parse(action, body)?;
            let name = required(r.queue_name, "QueueName")?;
            Ok(json!({"QueueUrl": sqs.create_queue(&name, &r.attributes)?}))
        }
        "GetQueueUrl" => {
            let r: GetQueueUrl = parse(action, body)?;
            Ok(json!({"QueueUrl": sqs.queue_url(&required(r.queue_name, "QueueName")?)?}))
        }
        "ListQueues" => list_queues(sqs, parse(action, body)?),
        "DeleteQueue" => {
            let r: QueueOnly = parse(action, body)?;
            sqs.delete_queue(&required(r.queue_url, "QueueUrl")?)?;
            Ok(json!({}))
        }
        "GetQueueAttributes" => {
            let r: GetQueueAttributes = parse(action, body)?;
            let attributes = sqs.attributes(&required(r.queue_url, "QueueUrl")?, &r.attribute_names)?;
            Ok(if attributes.is_empty() { json!({}) } else { json!({"Attributes": attributes}) })
        }
        "SetQueueAttributes" => {
            let r: SetQueueAttributes = parse(action, body)?;
            sqs.set_attributes(&required(r.queue_url, "QueueUrl")?, &r.attributes)?;
            Ok(json!({}))
        }
        "PurgeQueue" => {
            let r: QueueOnly = parse(action, body)?;
            sqs.purge(&required(r.queue_url, "QueueUrl")?)?;
            Ok(json!({}))
        }
        "SendMessage" => {
            let r: SendMessage = parse(action, body)?;
            let text = required(r.message_body, "MessageBody")?;
            let url = required(r.queue_url, "QueueUrl")?;
            Ok(Value::Object(sent(sqs.send(&url, &text, r.delay_seconds, r.message_attributes)?)))
        }
        "SendMessageBatch" => {
            let r: Batch<SendMessageEntry> = parse(action, body)?;
            let url = required(r.queue_url, "QueueUrl")?;
            let entries = checked(r.entries)?;
            let total: usize = entries.iter().map(|e| e.message_body.len()).sum();
            if total > MAX_MESSAGE_BYTES {
                return Err(SqsError::new(
                    "BatchRequestTooLong",
                    "AWS.SimpleQueueService.BatchRequestTooLong",
                    format!("the batch is {total} bytes; at most {MAX_MESSAGE_BYTES}"),
                ));
            }
            run_batch(entries, |e| {
                Ok(sent(sqs.send(&url, &e.message_body, e.delay_seconds, e.message_attributes.clone())?))
            })
        }
        "ReceiveMessage" => receive(sqs, parse(action, body)?).await,
        "DeleteMessage" => {
            let r: DeleteMessage = parse(action, body)?;
            let handle = required(r.receipt_handle, "ReceiptHandle")?;
            sqs.delete(&required(r.queue_url, "QueueUrl")?, &handle)?;
            Ok(json!({}))
        }
        "DeleteMessageBatch" => {
            let r: Batch<DeleteMessageEntry> = parse(action, body)?;
            let url = required(r.queue_url, "QueueUrl")?;
            run_batch(checked(r.entries)?, |e| sqs.delete(&url, &e.receipt_handle).map(|()| Map::new()))
        }
        "ChangeMessageVisibility" => {
            let r: ChangeMessageVisibility = parse(action, body)?;
            let handle = required(r.receipt_handle, "ReceiptHandle")?;
            let secs = required(r.visibility_timeout, "VisibilityTimeout")?;
            sqs.change_visibility(&required(r.queue_url, "QueueUrl")?, &handle, secs)?;
            Ok(json!({}))
        }
        "ChangeMessageVisibilityBatch" => {
            let r: Batch<ChangeVisibilityEntry> = parse(action, body)?;
            let url = required(r.queue_url, "QueueUrl")?;
            run_batch(checked(r.entries)?, |e| {
                sqs.change_visibility(&url, &e.receipt_handle, e.visibility_timeout).map(|()| Map::new())
            })
        }
        other => Err(SqsError::new(
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("{other} is not supported by switchboard-local"),
        )),
    }
}

/// ListQueues: one page. With `MaxResults` (1-1000), a `NextToken` when more
/// queues remain, as SQS pages; without, up to 1,000 and no token. The
/// token is opaque to clients: the base64 of the last name given.
fn list_queues(sqs: &Sqs, r: ListQueues) -> SqsResult<Value> {
    if r.max_results.is_some_and(|m| !(1..=1000).contains(&m)) {
        return Err(SqsError::invalid("MaxResults must be from 1 to 1000"));
    }
    if r.next_token.is_some() && r.max_results.is_none() {
        return Err(SqsError::invalid("NextToken is only valid with MaxResults"));
    }
    let after = match &r.next_token {
        Some(token) => Some(
            B64.decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SqsError::invalid("NextToken is not one this endpoint gave"))?,
        ),
        None => None,
    };
    let max = r.max_results.unwrap_or(1000) as usize;
    let (urls, next) = sqs.list_queues(&r.queue_name_prefix, after.as_deref(), max);
    let mut out = Map::new();
    // SQS leaves out an empty list rather than sending [].
    if !urls.is_empty() {
        out.insert("QueueUrls".into(), json!(urls));
    }
    if let (Some(last), Some(_)) = (next, r.max_results) {
        out.insert("NextToken".into(), Value::String(B64.encode(last)));
    }
    Ok(Value::Object(out))
}

/// ReceiveMessage: checks the request, waits, and returns the attributes asked for.
async fn receive(sqs: &Sqs, r: ReceiveMessage) -> SqsResult<Value> {
    let url = required(r.queue_url, "QueueUrl")?;
    let max = r.max_number_of_messages.unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(SqsError::invalid("MaxNumberOfMessages must be from 1 to 10"));
    }
    if r.visibility_timeout.is_some_and(|v| v > MAX_VISIBILITY_SECS) {
        return Err(SqsError::invalid(format!("VisibilityTimeout must be from 0 to {MAX_VISIBILITY_SECS}")));
    }
    let wait = match r.wait_time_seconds {
        Some(w) => w,
        None => sqs.receive_wait(&url)?,
    };
    if wait > 20 {
        return Err(SqsError::invalid("WaitTimeSeconds must be from 0 to 20"));
    }
    let mut system = r.message_system_attribute_names;
    system.extend(r.attribute_names);
    let wanted = r.message_attribute_names;
    let got = sqs.receive(&url, max as usize, r.visibility_timeout, Duration::from_secs(wait)).await?;
    let messages: Vec<Value> = got.into_iter().map(|m| received(m, &system, &wanted)).collect();
    // SQS leaves out an empty list rather than sending [].
    Ok(if messages.is_empty() { json!({}) } else { json!({"Messages": messages}) })
}

/// One received message as ReceiveMessage answers it: the system attributes
/// in `system` and the message attributes matching `wanted` (names, `All`,
/// `.*` or `prefix.*`).
fn received(m: Received, system: &[String], wanted: &[String]) -> Value {
    let mut out = json!({
        "MessageId": m.message_id,
        "ReceiptHandle": m.receipt_handle,
        "MD5OfBody": m.md5_of_body,
        "Body": m.body,
    });
    let attrs: Map<String, Value> = m
        .attributes
        .into_iter()
        .filter(|(k, _)| system.iter().any(|w| w == "All" || w == k))
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    if !attrs.is_empty() {
        out["Attributes"] = Value::Object(attrs);
    }
    let message_attrs: Map<String, Value> = m
        .message_attributes
        .into_iter()
        .filter(|(k, _)| {
            wanted
                .iter()
                .any(|w| w == "All" || w == ".*" || w == k || w.strip_suffix(".*").is_some_and(|p| k.starts_with(p)))
        })
        .collect();
    if !message_attrs.is_empty() {
        // The digest of what is returned, not of every attribute sent: the
        // SDKs recompute it over what they received and refuse a mismatch.
        if let Ok(Some(md5)) = md5_of_attributes(&message_attrs) {
            out["MD5OfMessageAttributes"] = Value::String(md5);
        }
        out["MessageAttributes"] = Value::Object(message_attrs);
    }
    out
}

impl IntoResponse for SqsError {
    fn into_response(self) -> Response {
        let body = json!({"__type": format!("com.amazonaws.sqs#{}", self.code), "message": self.message});
        let mut response = (StatusCode::BAD_REQUEST, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
        if let Ok(v) = HeaderValue::from_str(&format!("{};Sender", self.query_code)) {
            headers.insert("x-amzn-query-error", v);
        }
        response
    }
}

/// The SQS endpoint: `POST /` with `X-Amz-Target: AmazonSQS.<Action>`.
pub fn router(sqs: Arc<Sqs>) -> Router {
    Router::new().fallback(handle_http).with_state(sqs)
}
async fn handle_http(State(sqs): State<Arc<Sqs>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(action) = target.strip_prefix("AmazonSQS.") else {
        let query = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let hint = if query.starts_with("application/x-www-form-urlencoded") {
            "; this emulator speaks the SQS JSON protocol (current AWS SDKs and AWS CLI), not the query protocol"
        } else {
            ""
        };
        return SqsError::new(
            "InvalidAction",
            "InvalidAction",
            format!("missing or unknown X-Amz-Target header (expected AmazonSQS.<Action>){hint}"),
        )
        .into_response();
    };
    let parsed: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return SqsError::new(
                    "InvalidParameterValue",
                    "InvalidParameterValue",
                    "the body is not a JSON object",
                )
                .into_response();
            }
        }
    };
    match call(&sqs, action, parsed).await {
        Ok(v) => {
            let mut response = (StatusCode::OK, v.to_string()).into_response();
            response.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
            response.headers_mut().insert(
                "x-amzn-requestid",
                HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid is a header value"),
            );
            response
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqs_with_queue() -> (Sqs, String) {
        let sqs = Sqs::new("http://127.0.0.1:9324");
        let url = sqs.create_queue("q", &Map::new()).unwrap();
        (sqs, url)
    }

    #[tokio::test]
    async fn a_field_of_the_wrong_type_is_named_in_the_error() {
        let (sqs, url) = sqs_with_queue();
        let err =
            call(&sqs, "ReceiveMessage", json!({"QueueUrl": url, "MaxNumberOfMessages": "ten"})).await.unwrap_err();
        assert_eq!(err.code, "InvalidParameterValue");
        assert!(err.message.contains("MaxNumberOfMessages"), "{}", err.message);
        let err =
            call(&sqs, "SendMessageBatch", json!({"QueueUrl": url, "Entries": [{"Id": "a", "DelaySeconds": -1}]}))
                .await
                .unwrap_err();
        assert!(err.message.contains("Entries[0].DelaySeconds"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_missing_parameter_is_a_missing_parameter() {
        let (sqs, url) = sqs_with_queue();
        let err = call(&sqs, "SendMessage", json!({"QueueUrl": url})).await.unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            ("MissingParameter", "the request must contain the parameter MessageBody")
        );
        let err = call(&sqs, "PurgeQueue", json!({})).await.unwrap_err();
        assert_eq!(err.code, "MissingParameter");
    }

    #[tokio::test]
    async fn a_batch_answers_per_entry_and_fails_whole_only_for_a_missing_queue() {
        let (sqs, url) = sqs_with_queue();
        let out = call(
            &sqs,
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [{"Id": "a", "MessageBody": "x"}, {"Id": "b", "MessageBody": ""}]}),
        )
        .await
        .unwrap();
        assert_eq!(out["Successful"][0]["Id"], "a");
        assert_eq!(out["Failed"][0]["Id"], "b");
        assert_eq!(out["Failed"][0]["Code"], "MissingParameter");
        let gone = url.replace("/q", "/gone");
        let err = call(
            &sqs,
            "DeleteMessageBatch",
            json!({"QueueUrl": gone, "Entries": [{"Id": "a", "ReceiptHandle": "m#r"}]}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, "QueueDoesNotExist");
    }

    // What AWS's API reference says and the emulator once answered otherwise
    // (issue 17, point 2): each test fails on the old behaviour.

    #[tokio::test]
    async fn list_queues_pages_with_next_token_and_leaves_out_an_empty_list() {
        let sqs = Sqs::new("http://127.0.0.1:9324");
        for name in ["a1", "a2", "a3", "a4", "b1"] {
            sqs.create_queue(name, &Map::new()).unwrap();
        }
        let first = call(&sqs, "ListQueues", json!({"QueueNamePrefix": "a", "MaxResults": 3})).await.unwrap();
        assert_eq!(first["QueueUrls"].as_array().unwrap().len(), 3);
        let token = first["NextToken"].as_str().expect("more remain: a token").to_owned();
        let rest = call(&sqs, "ListQueues", json!({"QueueNamePrefix": "a", "MaxResults": 3, "NextToken": token}))
            .await
            .unwrap();
        assert_eq!(rest["QueueUrls"], json!(["http://127.0.0.1:9324/000000000000/a4"]));
        assert!(rest.get("NextToken").is_none(), "the last page has no token: {rest}");
        let all = call(&sqs, "ListQueues", json!({})).await.unwrap();
        assert_eq!(all["QueueUrls"].as_array().unwrap().len(), 5);
        assert!(all.get("NextToken").is_none(), "no MaxResults, no token");
        assert_eq!(call(&sqs, "ListQueues", json!({"QueueNamePrefix": "zz"})).await.unwrap(), json!({}));
        for bad in [json!({"MaxResults": 0}), json!({"MaxResults": 1001}), json!({"NextToken": "YTE="})] {
            assert_eq!(call(&sqs, "ListQueues", bad.clone()).await.unwrap_err().code, "InvalidParameterValue", "{bad}");
        }
    }

    #[tokio::test]
    async fn a_receive_digests_the_message_attributes_it_returns_and_leaves_out_no_messages() {
        let (sqs, url) = sqs_with_queue();
        assert_eq!(call(&sqs, "ReceiveMessage", json!({"QueueUrl": url})).await.unwrap(), json!({}), "no Messages: []");
        let attrs = json!({
            "tenant": {"DataType": "String", "StringValue": "t1"},
            "attempt": {"DataType": "Number", "StringValue": "2"},
        });
        let sent = call(&sqs, "SendMessage", json!({"QueueUrl": url, "MessageBody": "x", "MessageAttributes": attrs}))
            .await
            .unwrap();
        let got =
            call(&sqs, "ReceiveMessage", json!({"QueueUrl": url, "MessageAttributeNames": ["tenant"]})).await.unwrap();
        let m = &got["Messages"][0];
        assert_eq!(m["MessageAttributes"], json!({"tenant": {"DataType": "String", "StringValue": "t1"}}));
        let only_tenant = md5_of_attributes(m["MessageAttributes"].as_object().unwrap()).unwrap().unwrap();
        assert_eq!(m["MD5OfMessageAttributes"], only_tenant.as_str(), "the digest of what was returned");
        assert_ne!(m["MD5OfMessageAttributes"], sent["MD5OfMessageAttributes"], "not of everything sent");
    }

    #[tokio::test]
    async fn the_receive_count_goes_on_counting_in_the_dead_letter_queue() {
        let sqs = Sqs::new("http://127.0.0.1:9324");
        let dlq = sqs.create_queue("dlq", &Map::new()).unwrap();
        let policy = json!({"deadLetterTargetArn": Sqs::arn_of("dlq"), "maxReceiveCount": 2}).to_string();
        let mut attrs = Map::new();
        attrs.insert("RedrivePolicy".into(), Value::String(policy));
        let url = sqs.create_queue("src", &attrs).unwrap();
        call(&sqs, "SendMessage", json!({"QueueUrl": url, "MessageBody": "x"})).await.unwrap();
        let receive = |url: String| {
            let sqs = &sqs;
            async move {
                let r = json!({"QueueUrl": url, "VisibilityTimeout": 0, "AttributeNames": ["ApproximateReceiveCount"]});
                call(sqs, "ReceiveMessage", r).await.unwrap()
            }
        };
        for expected in ["1", "2"] {
            assert_eq!(receive(url.clone()).await["Messages"][0]["Attributes"]["ApproximateReceiveCount"], expected);
        }
        assert_eq!(receive(url.clone()).await, json!({}), "the third receive redrives it");
        let dead = receive(dlq).await;
        assert_eq!(dead["Messages"][0]["Attributes"]["ApproximateReceiveCount"], "3", "counted across both queues");
    }

    #[tokio::test]
    async fn get_queue_attributes_without_names_returns_none() {
        let (sqs, url) = sqs_with_queue();
        assert_eq!(call(&sqs, "GetQueueAttributes", json!({"QueueUrl": url})).await.unwrap(), json!({}));
        let all = call(&sqs, "GetQueueAttributes", json!({"QueueUrl": url, "AttributeNames": ["All"]})).await.unwrap();
        assert_eq!(all["Attributes"]["VisibilityTimeout"], "30");
    }

    #[tokio::test]
    async fn a_message_attribute_type_is_string_number_or_binary_with_an_optional_label() {
        let (sqs, url) = sqs_with_queue();
        let send = |data_type: &str| {
            let attrs = json!({"a": {"DataType": data_type, "StringValue": "1"}});
            call(&sqs, "SendMessage", json!({"QueueUrl": url, "MessageBody": "x", "MessageAttributes": attrs}))
        };
        for good in ["String", "Number", "Number.int", "String.custom-label"] {
            assert!(send(good).await.is_ok(), "{good}");
        }
        for bad in ["Strin", "Integer", "string", "Number.", ".int", ""] {
            let err = send(bad).await.unwrap_err();
            assert_eq!(err.code, "InvalidParameterValue", "{bad}");
            assert!(err.message.contains("String, Number or Binary"), "{bad}: {}", err.message);
        }
        let eleven: Map<String, Value> =
            (0..11).map(|i| (format!("a{i}"), json!({"DataType": "String", "StringValue": "v"}))).collect();
        let err = call(&sqs, "SendMessage", json!({"QueueUrl": url, "MessageBody": "x", "MessageAttributes": eleven}))
            .await
            .unwrap_err();
        assert!(err.message.contains("at most 10"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_second_purge_within_a_minute_is_refused() {
        let (sqs, url) = sqs_with_queue();
        call(&sqs, "PurgeQueue", json!({"QueueUrl": url})).await.unwrap();
        let err = call(&sqs, "PurgeQueue", json!({"QueueUrl": url})).await.unwrap_err();
        assert_eq!((err.code, err.query_code), ("PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress"));
    }
}
