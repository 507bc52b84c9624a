//! Secrets read at cold start from AWS Secrets Manager, never from the
//! function's environment.
//!
//! A value such as `JWT_SECRET` in a Lambda's environment is readable by
//! anyone with `lambda:GetFunctionConfiguration` (and an HS256 key mints
//! admin tokens for any tenant). So the template sets only the secret's ARN
//! (`JWT_SECRET_ARN`, `REDIS_PASSWORD_ARN`); the function's role may read
//! that secret and nothing else, and the value lives in the process only:
//! one `GetSecretValue` per secret per cold start, kept for the instance's
//! life. A variable set directly (`JWT_SECRET`, local development) wins.
//!
//! A secret's string is the value itself, or a JSON object whose
//! `password` (Redis, what the template's generated secret holds) or
//! `secret` field is.

use std::collections::HashMap;

use aws_sdk_secretsmanager::Client;

use crate::config::ConfigError;

/// The secrets the functions read: (ARN variable, the variable it stands for).
pub const SECRET_VARIABLES: &[(&str, &str)] =
    &[("JWT_SECRET_ARN", "JWT_SECRET"), ("REDIS_PASSWORD_ARN", "REDIS_PASSWORD")];

/// The values behind the ARN variables that `get` sets (and whose plain
/// variable it does not), fetched with `client`: a map to overlay on the
/// environment. `None` for `client` when no ARN is set: nothing to fetch.
pub async fn fetch(
    client: Option<&Client>,
    get: &dyn Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>, ConfigError> {
    let mut found = HashMap::new();
    for &(arn_var, var) in SECRET_VARIABLES {
        let set = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let Some(arn) = set(arn_var) else { continue };
        if set(var).is_some() {
            return Err(ConfigError::new(arn_var, format!("and {var} are both set; set one")));
        }
        let client = client.ok_or_else(|| ConfigError::new(arn_var, "is set but no Secrets Manager client exists"))?;
        let answer = client.get_secret_value().secret_id(&arn).send().await.map_err(|e| {
            let why = aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string();
            ConfigError::new(arn_var, format!("could not be read from Secrets Manager: {why}"))
        })?;
        let text =
            answer.secret_string().ok_or_else(|| ConfigError::new(arn_var, "names a secret with no SecretString"))?;
        found.insert(var.to_owned(), unwrap_json(text, arn_var)?);
    }
    Ok(found)
}

/// The value in a secret string: itself, or its JSON `password`/`secret`.
fn unwrap_json(text: &str, arn_var: &'static str) -> Result<String, ConfigError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(fields)) => ["password", "secret"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
            .ok_or_else(|| ConfigError::new(arn_var, "names a JSON secret without a \"password\" or \"secret\" field")),
        _ => Ok(text.to_owned()),
    }
}

/// [`fetch`] for a Lambda: the process environment, and a client with the
/// function's credentials, made only when an ARN variable is set.
pub async fn from_env() -> Result<HashMap<String, String>, ConfigError> {
    let get = |name: &str| std::env::var(name).ok();
    if SECRET_VARIABLES.iter().all(|(arn_var, _)| get(arn_var).is_none()) {
        return Ok(HashMap::new());
    }
    fetch(Some(&Client::new(crate::aws::sdk_config().await)), &get).await
}

/// The environment with `secrets` laid over it.
pub fn overlay(secrets: &HashMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| secrets.get(name).cloned().or_else(|| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_string_is_the_value_or_its_json_field() {
        assert_eq!(unwrap_json("plain-key", "X").unwrap(), "plain-key");
        assert_eq!(unwrap_json(r#"{"username":"switchboard","password":"pw"}"#, "X").unwrap(), "pw");
        assert_eq!(unwrap_json(r#"{"secret":"k"}"#, "X").unwrap(), "k");
        assert!(unwrap_json(r#"{"user":"x"}"#, "X").is_err());
    }
}
