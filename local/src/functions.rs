//! How the emulator runs a function: in this process, or through the
//! Lambda Invoke API that `cargo lambda watch` serves.
//!
//! Either way the function receives the same `aws_lambda_events` value
//! API Gateway would send, and its answer is read the way API Gateway
//! reads it: an authorizer's policy decides Allow / Deny, the error
//! message `Unauthorized` means 401, and a route's `statusCode` and body
//! are the route response.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse, ApiGatewayProxyResponse,
    ApiGatewayWebsocketProxyRequest,
};
use aws_lambda_events::iam::IamPolicyEffect;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use serde_json::Value;
use switchboard::Context;
use switchboard::auth::Verifier;

/// The WebSocket routes, by the function that serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `$connect` → `ws-connect`.
    Connect,
    /// `$disconnect` → `ws-disconnect`.
    Disconnect,
    /// `$default` and named routes → `ws-message`.
    Message,
}

impl Route {
    /// The function (and cargo-lambda binary) name.
    pub fn function_name(self) -> &'static str {
        match self {
            Route::Connect => "ws-connect",
            Route::Disconnect => "ws-disconnect",
            Route::Message => "ws-message",
        }
    }
}

/// The authorizer's verdict, as API Gateway applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed; the context is attached to every later event.
    Allow(HashMap<String, Value>),
    /// A `Deny` policy: 403.
    Deny,
    /// The `Unauthorized` error: 401.
    Unauthorized,
    /// Any other failure: 500.
    Failed(String),
}

/// Why an invocation did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function ran and failed (Lambda's `errorMessage`): API Gateway
    /// answers 500, an event-source mapping returns the whole batch.
    #[error("{function} failed: {message}")]
    Function {
        /// The function's name.
        function: String,
        /// Its error message.
        message: String,
    },
    /// The function could not be invoked (is `cargo lambda watch` running?).
    #[error("invoking {function}: {source}")]
    Unreachable {
        /// The function's name.
        function: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The function answered something that is not what its trigger expects.
    #[error("{function} answered something that is not {expected}: {source}")]
    BadAnswer {
        /// The function's name.
        function: String,
        /// What the trigger reads (`a proxy response`, `a batch response`).
        expected: &'static str,
        /// Why the answer does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// No function of that name is wired to this kind of trigger.
    #[error("no {trigger} function named {function}")]
    NoSuchFunction {
        /// `SQS-triggered`, `scheduled`.
        trigger: &'static str,
        /// The name asked for.
        function: String,
    },
}

impl InvokeError {
    fn bad_answer(function: &str, expected: &'static str) -> impl FnOnce(serde_json::Error) -> InvokeError {
        move |source| InvokeError::BadAnswer { function: function.to_owned(), expected, source }
    }
}

/// Runs the functions behind the gateway.
#[async_trait]
pub trait Functions: Send + Sync + 'static {
    /// Runs the `$connect` authorizer.
    async fn authorize(&self, event: &ApiGatewayCustomAuthorizerRequestTypeRequest) -> Verdict;
    /// Runs a route's function; `Err` is a function error (API Gateway: 500).
    async fn route(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, InvokeError>;
    /// Runs an SQS-triggered function (`webhook`, `fanout`) on a batch;
    /// `Err` is a function error (the whole batch returns to the queue).
    async fn queue(&self, function: &str, event: SqsEvent) -> Result<SqsBatchResponse, InvokeError>;
    /// Runs a function as a scheduled rule does (EventBridge with a fixed
    /// `Input`): the `fanout` function's `{"action":"sweep"}`.
    async fn schedule(&self, function: &str, payload: Value) -> Result<Value, InvokeError>;
}

/// Reads an authorizer response the way API Gateway does: every statement
/// must allow `execute-api:Invoke`; one `Deny` denies.
/// A result over API Gateway's 8 KB (policy and context, as JSON) fails
/// the handshake with a 500, as there.
fn verdict_from_policy(response: ApiGatewayCustomAuthorizerResponse<Value>) -> Verdict {
    let size = serde_json::to_vec(&response).map_or(usize::MAX, |json| json.len());
    if size > crate::limits::AUTHORIZER_RESULT_MAX_BYTES {
        return Verdict::Failed(format!(
            "the authorizer's result is {size} bytes; API Gateway takes at most {}",
            crate::limits::AUTHORIZER_RESULT_MAX_BYTES
        ));
    }
    let statements = &response.policy_document.statement;
    if statements.is_empty() || statements.iter().any(|s| matches!(s.effect, IamPolicyEffect::Deny)) {
        return Verdict::Deny;
    }
    match response.context {
        Value::Object(map) => Verdict::Allow(map.into_iter().collect()),
        Value::Null => Verdict::Allow(HashMap::new()),
        other => Verdict::Failed(format!("authorizer context must be an object, got {other}")),
    }
}

/// The handler libraries, called directly: what `make dev` runs.
pub struct InProcess {
    ctx: Context,
    verifier: Verifier,
    deliverer: switchboard::webhook_delivery::WebhookSender,
}

impl InProcess {
    /// Functions over this context and verifier.
    pub fn new(ctx: Context, verifier: Verifier) -> Self {
        InProcess { deliverer: switchboard::webhook_delivery::WebhookSender::new(ctx.clone()), ctx, verifier }
    }
}

#[async_trait]
impl Functions for InProcess {
    async fn authorize(&self, event: &ApiGatewayCustomAuthorizerRequestTypeRequest) -> Verdict {
        match ws_authorizer::handle(&self.verifier, event).await {
            Ok(response) => verdict_from_policy(response),
            Err(ws_authorizer::Unauthorized) => Verdict::Unauthorized,
        }
    }

    async fn route(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, InvokeError> {
        Ok(match route {
            Route::Connect => ws_connect::handle(&self.ctx, event).await,
            Route::Disconnect => ws_disconnect::handle(&self.ctx, event).await,
            Route::Message => ws_message::handle(&self.ctx, event).await,
        })
    }

    async fn queue(&self, function: &str, event: SqsEvent) -> Result<SqsBatchResponse, InvokeError> {
        match function {
            "webhook" => Ok(webhook::handle(&self.deliverer, event).await),
            // Through the entry point the Lambda's main runs, which tells an
            // SQS batch from a direct payload (and from a scheduled sweep).
            "fanout" => {
                let payload = serde_json::to_value(&event).expect("an SQS event is plain JSON");
                let answer = fanout::invoke(&self.ctx, payload)
                    .await
                    .map_err(|e| InvokeError::Function { function: function.to_owned(), message: e.to_string() })?;
                serde_json::from_value(answer).map_err(InvokeError::bad_answer(function, "a batch response"))
            }
            other => Err(InvokeError::NoSuchFunction { trigger: "SQS-triggered", function: other.to_owned() }),
        }
    }

    async fn schedule(&self, function: &str, payload: Value) -> Result<Value, InvokeError> {
        match function {
            "fanout" => fanout::invoke(&self.ctx, payload)
                .await
                .map_err(|e| InvokeError::Function { function: function.to_owned(), message: e.to_string() }),
            other => Err(InvokeError::NoSuchFunction { trigger: "scheduled", function: other.to_owned() }),
        }
    }
}

/// Functions served by `cargo lambda watch` (or anything speaking the
/// Lambda Invoke API): `POST {base}/2015-03-31/functions/{name}/invocations`.
pub struct Remote {
    client: reqwest::Client,
    base: url::Url,
}

impl Remote {
    /// Functions behind `base`, e.g. `http://127.0.0.1:9000`.
    pub fn new(base: url::Url) -> Self {
        Remote { client: reqwest::Client::new(), base }
    }

    /// Invokes `name` with `payload`. A function error (the
    /// `X-Amz-Function-Error` header, or an error status) comes back as
    /// [`InvokeError::Function`] with its `errorMessage`.
    async fn invoke(&self, name: &str, payload: &impl serde::Serialize) -> Result<Value, InvokeError> {
        let payload = api_gateway_json(payload);
        let url =
            self.base.join(&format!("2015-03-31/functions/{name}/invocations")).expect("a function name is a path");
        let unreachable = |source| InvokeError::Unreachable { function: name.to_owned(), source };
        let response = self.client.post(url).json(&payload).send().await.map_err(unreachable)?;
        let function_error = response.headers().contains_key("x-amz-function-error");
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let body: Value = serde_json::from_str(&text).map_err(InvokeError::bad_answer(name, "JSON"))?;
        if function_error || !status.is_success() {
            let message = body.get("errorMessage").and_then(Value::as_str).unwrap_or("function error");
            return Err(InvokeError::Function { function: name.to_owned(), message: message.to_owned() });
        }
        Ok(body)
    }
}

/// The event as API Gateway puts it on the wire. `aws_lambda_events`
/// serialises `queryStringParameters` with list values; API Gateway sends
/// one string per key (the last one), so that is what goes out.
fn api_gateway_json(event: &impl serde::Serialize) -> Value {
    let mut value = serde_json::to_value(event).expect("an aws_lambda_events value is plain JSON");
    if let Some(Value::Object(params)) = value.get_mut("queryStringParameters") {
        for v in params.values_mut() {
            if let Value::Array(items) = v {
                *v = items.pop().unwrap_or(Value::Null);
            }
        }
    }
    value
}

#[async_trait]
impl Functions for Remote {
    async fn authorize(&self, event: &ApiGatewayCustomAuthorizerRequestTypeRequest) -> Verdict {
        match self.invoke("ws-authorizer", event).await {
            Ok(body) => match serde_json::from_value::<ApiGatewayCustomAuthorizerResponse<Value>>(body) {
                Ok(response) => verdict_from_policy(response),
                Err(e) => Verdict::Failed(format!("authorizer response is not a policy: {e}")),
            },
            Err(InvokeError::Function { message, .. }) if message == "Unauthorized" => Verdict::Unauthorized,
            Err(e) => Verdict::Failed(e.to_string()),
        }
    }

    async fn route(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, InvokeError> {
        let name = route.function_name();
        let body = self.invoke(name, &event).await?;
        serde_json::from_value(body).map_err(InvokeError::bad_answer(name, "a proxy response"))
    }

    async fn queue(&self, function: &str, event: SqsEvent) -> Result<SqsBatchResponse, InvokeError> {
        let body = self.invoke(function, &event).await?;
        serde_json::from_value(body).map_err(InvokeError::bad_answer(function, "a batch response"))
    }

    async fn schedule(&self, function: &str, payload: Value) -> Result<Value, InvokeError> {
        self.invoke(function, &payload).await
    }
}
