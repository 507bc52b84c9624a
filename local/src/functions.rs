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

/// Runs the functions behind the gateway.
#[async_trait]
pub trait Functions: Send + Sync + 'static {
    /// Runs the `$connect` authorizer.
    async fn authorize(&self, event: ApiGatewayCustomAuthorizerRequestTypeRequest) -> Verdict;
    /// Runs a route's function; `Err` is a function error (API Gateway: 500).
    async fn route(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, String>;
    /// Runs an SQS-triggered function (`webhook`, `fanout`) on a batch;
    /// `Err` is a function error (the whole batch returns to the queue).
    async fn queue(&self, function: &str, event: SqsEvent) -> Result<SqsBatchResponse, String>;
    /// Runs a function as a scheduled rule does (EventBridge with a fixed
    /// `Input`): the `fanout` function's `{"action":"sweep"}`.
    async fn schedule(&self, function: &str, payload: Value) -> Result<Value, String>;
}

/// Reads an authorizer response the way API Gateway does: every statement
/// must allow `execute-api:Invoke`; one `Deny` denies.
fn verdict_from_policy(response: ApiGatewayCustomAuthorizerResponse<Value>) -> Verdict {
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
    deliverer: switchboard::webhook_sender::WebhookSender,
}

impl InProcess {
    /// Functions over this context and verifier.
    pub fn new(ctx: Context, verifier: Verifier) -> Self {
        InProcess { deliverer: switchboard::webhook_sender::WebhookSender::new(ctx.clone()), ctx, verifier }
    }
}

#[async_trait]
impl Functions for InProcess {
    async fn authorize(&self, event: ApiGatewayCustomAuthorizerRequestTypeRequest) -> Verdict {
        match ws_authorizer::handle(&self.verifier, event).await {
            Ok(response) => verdict_from_policy(response),
            Err(ws_authorizer::Unauthorized) => Verdict::Unauthorized,
        }
    }

    async fn route(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, String> {
        Ok(match route {
            Route::Connect => ws_connect::handle(&self.ctx, event).await,
            Route::Disconnect => ws_disconnect::handle(&self.ctx, event).await,
            Route::Message => ws_message::handle(&self.ctx, event).await,
        })
    }

    async fn queue(&self, function: &str, event: SqsEvent) -> Result<SqsBatchResponse, String> {
        match function {
            "webhook" => Ok(webhook::handle(&self.deliverer, event).await),
            // Through the entry point the Lambda's main runs, which tells an
            // SQS batch from a direct payload (and from a scheduled sweep).
            "fanout" => {
                let payload = serde_json::to_value(&event).map_err(|e| e.to_string())?;
                let answer = fanout::invoke(&self.ctx, payload).await.map_err(|e| e.to_string())?;
                serde_json::from_value(answer)
                    .map_err(|e| format!("fanout answered something that is not a batch response: {e}"))
            }
            other => Err(format!("no SQS-triggered function named {other}")),
        }
    }

    async fn schedule(&self, function: &str, payload: Value) -> Result<Value, String> {
        match function {
            "fanout" => fanout::invoke(&self.ctx, payload).await.map_err(|e| e.to_string()),
            other => Err(format!("no scheduled function named {other}")),
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
    /// `Err(errorMessage)`.
    async fn invoke(&self, name: &str, payload: &impl serde::Serialize) -> Result<Value, String> {
        let payload = api_gateway_json(payload)?;
        let url = self.base.join(&format!("2015-03-31/functions/{name}/invocations")).map_err(|e| e.to_string())?;
        let response =
            self.client.post(url).json(&payload).send().await.map_err(|e| format!("invoking {name}: {e}"))?;
        let function_error = response.headers().contains_key("x-amz-function-error");
        let status = response.status();
        let body: Value =
            response.json().await.map_err(|e| format!("{name} answered something that is not JSON: {e}"))?;
        if function_error || !status.is_success() {
            let message = body.get("errorMessage").and_then(Value::as_str).unwrap_or("function error");
            return Err(message.to_owned());
        }
        Ok(body)
    }
}

/// The event as API Gateway puts it on the wire. `aws_lambda_events`
/// serialises `queryStringParameters` with list values; API Gateway sends
/// one string per key (the last one), so that is what goes out.
fn api_gateway_json(event: &impl serde::Serialize) -> Result<Value, String> {
    let mut value = serde_json::to_value(event).map_err(|e| e.to_string())?;
    if let Some(Value::Object(params)) = value.get_mut("queryStringParameters") {
        for v in params.values_mut() {
            if let Value::Array(items) = v {
                *v = items.pop().unwrap_or(Value::Null);
            }
        }
    }
    Ok(value)
}

#[async_trait]
impl Functions for Remote {
    async fn authorize(&self, event: ApiGatewayCustomAuthorizerRequestTypeRequest) -> Verdict {
        match self.invoke("ws-authorizer", &event).await {
            Ok(body) => match serde_json::from_value::<ApiGatewayCustomAuthorizerResponse<Value>>(body) {
                Ok(response) => verdict_from_policy(response),
                Err(e) => Verdict::Failed(format!("authorizer response is not a policy: {e}")),
            },
            Err(message) if message == "Unauthorized" => Verdict::Unauthorized,
            Err(message) => Verdict::Failed(message),
        }
    }

    async fn route(
        &self,
        route: Route,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, String> {
        let body = self.invoke(route.function_name(), &event).await?;
        serde_json::from_value(body)
            .map_err(|e| format!("{} answered something that is not a proxy response: {e}", route.function_name()))
    }

    async fn queue(&self, function: &str, event: SqsEvent) -> Result<SqsBatchResponse, String> {
        let body = self.invoke(function, &event).await?;
        serde_json::from_value(body)
            .map_err(|e| format!("{function} answered something that is not a batch response: {e}"))
    }

    async fn schedule(&self, function: &str, payload: Value) -> Result<Value, String> {
        self.invoke(function, &payload).await
    }
}
