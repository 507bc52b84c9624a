//! Secrets from Secrets Manager (issue 13, point 6), read with the real
//! AWS SDK client from moto's server (a local AWS, installed by `make test`
//! into `.tools/requirements-test`), as a function does at cold start.

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
use switchboard::auth::AuthConfig;
use switchboard::auth::{Verifier, mint_hs256};
use switchboard::ids::{Identity, Role};
use switchboard::secrets;
use switchboard_tests::moto::Moto;

fn client(moto: &Moto) -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(switchboard::connections_api::local_credentials())
        .endpoint_url(&moto.url)
        .build();
    Client::from_conf(config)
}

fn lookup(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn keys_and_passwords_are_read_from_secrets_manager_at_cold_start() {
    let moto = Moto::start();
    let client = client(&moto);
    let key = "an-hs256-key-kept-in-secrets-manager-only!";
    let jwt = client.create_secret().name("switchboard/jwt").secret_string(key).send().await.unwrap();
    let redis = client
        .create_secret()
        .name("switchboard/redis")
        .secret_string(r#"{"username":"switchboard","password":"pw-48-random-characters"}"#)
        .send()
        .await
        .unwrap();
    let (jwt_arn, redis_arn) = (jwt.arn().unwrap().to_owned(), redis.arn().unwrap().to_owned());
    let env = lookup(vec![("JWT_SECRET_ARN", jwt_arn.clone()), ("REDIS_PASSWORD_ARN", redis_arn)]);
    let found = secrets::fetch(Some(&client), &env).await.unwrap();
    assert_eq!(found.get("JWT_SECRET").map(String::as_str), Some(key));
    assert_eq!(found.get("REDIS_PASSWORD").map(String::as_str), Some("pw-48-random-characters"), "the JSON's password");

    // The authorizer's set-up: the key from the secret verifies tokens signed with it.
    let auth = AuthConfig::from_lookup(&|name| found.get(name).cloned().or_else(|| env(name))).unwrap();
    let verifier = Verifier::new(&auth).unwrap();
    let who = Identity::new("t1".parse().unwrap(), "u".parse().unwrap(), Role::Agent);
    assert_eq!(verifier.verify(&mint_hs256(key.as_bytes(), &who, 60)).unwrap(), who);

    // Clear errors: both forms set; a secret that does not exist.
    let both = lookup(vec![("JWT_SECRET_ARN", jwt_arn), ("JWT_SECRET", "x".repeat(40))]);
    let e = secrets::fetch(Some(&client), &both).await.unwrap_err();
    assert_eq!((e.var, e.problem.as_str()), ("JWT_SECRET_ARN", "and JWT_SECRET are both set; set one"));
    let missing = lookup(vec![(
        "JWT_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:nothing-AbCdEf".to_owned(),
    )]);
    let e = secrets::fetch(Some(&client), &missing).await.unwrap_err();
    assert!(e.problem.starts_with("could not be read from Secrets Manager"), "{e:?}");
    // Nothing to read: no client needed, nothing fetched.
    assert!(secrets::fetch(None, &lookup(vec![])).await.unwrap().is_empty());
}
