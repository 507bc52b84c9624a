//! `ws-authorizer`: the REQUEST authorizer on the WebSocket API's `$connect`.
//!
//! API Gateway calls it before accepting a handshake. A valid token gives an
//! `Allow` policy for the `methodArn` with the context `{tenant_id, user_id,
//! role}`, which API Gateway then attaches to every later event of the
//! connection (and `channels`, the token's channel grants, when it has
//! any). A missing or invalid token answers `Unauthorized` (API
//! Gateway: 401); a browser Origin outside the allowlist gets a `Deny`
//! policy (403). Whatever the event holds, the answer is one of these three:
//! the handler never panics and never lets an unverified caller through.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use serde_json::{Value, json};
use switchboard::apigw_event::context_keys;
use switchboard::auth::{Verifier, extract_token};
use switchboard::ids::Identity;

/// The error whose message API Gateway maps to `401 Unauthorized`.
/// The text must be exactly `Unauthorized`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Unauthorized")]
pub struct Unauthorized;

/// The authorizer's answer.
pub type AuthorizerResponse = ApiGatewayCustomAuthorizerResponse<Value>;

/// Decides a `$connect` request, inside the invocation's span (the
/// request id and the caller's address; the tenant and user once the
/// token is verified), so no log line below names them.
pub async fn handle(
    verifier: &Verifier,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<AuthorizerResponse, Unauthorized> {
    let source_ip = event.request_context.identity.as_ref().and_then(|i| i.source_ip.as_deref()).unwrap_or("-");
    let span = tracing::info_span!(
        "invocation",
        function = "ws-authorizer",
        request_id = event.request_context.request_id.as_deref().unwrap_or("-"),
        source_ip,
        tenant_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    let _entered = span.enter();
    decide(verifier, event)
}

fn decide(
    verifier: &Verifier,
    event: &ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> Result<AuthorizerResponse, Unauthorized> {
    let Some(method_arn) = event.method_arn.as_deref().filter(|a| !a.is_empty()) else {
        tracing::error!("authorizer event has no methodArn; refusing");
        return Err(Unauthorized);
    };
    let origin = event.headers.get(http::header::ORIGIN).and_then(|v| v.to_str().ok());
    if let Err(reason) = verifier.check_origin(origin) {
        tracing::warn!(%reason, "connection refused");
        return Ok(policy(IamPolicyEffect::Deny, method_arn, "anonymous", Value::Null));
    }
    let Some((token, source)) = extract_token(&event.headers, event.query_string_parameters.first("token")) else {
        tracing::warn!(reason = "no token", "connection refused");
        return Err(Unauthorized);
    };
    match verifier.verify(token) {
        Ok(Identity { tenant_id, user_id, role, channels }) => {
            let span = tracing::Span::current();
            span.record("tenant_id", tenant_id.as_str()).record("user_id", user_id.as_str());
            tracing::info!(role = role.as_str(), token_source = ?source, "connection authorized");
            let mut context = json!({
                context_keys::TENANT_ID: tenant_id.as_str(),
                context_keys::USER_ID: user_id.as_str(),
                context_keys::ROLE: role.as_str(),
            });
            if !channels.is_empty() {
                context[context_keys::CHANNELS] = channels.to_context().into();
            }
            Ok(policy(IamPolicyEffect::Allow, method_arn, user_id.as_str(), context))
        }
        Err(reason) => {
            tracing::warn!(%reason, "connection refused");
            Err(Unauthorized)
        }
    }
}

fn policy(effect: IamPolicyEffect, method_arn: &str, principal: &str, context: Value) -> AuthorizerResponse {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = effect;
    statement.resource = vec![method_arn.to_owned()];
    let mut document = ApiGatewayCustomAuthorizerPolicy::default();
    document.version = Some("2012-10-17".into());
    document.statement = vec![statement];
    let mut response = AuthorizerResponse::default();
    response.principal_id = Some(principal.to_owned());
    response.policy_document = document;
    response.context = context;
    response
}
