//! The webhook registry through the HTTP API of the emulator, with a real
//! `redis-server`: create, list, get, update, delete; validation of every
//! field (the SSRF guard on URLs); admin-only; tenants isolated.

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::config::{Config, RedisConfig, WebhookSettings};
use switchboard::ids::Role;
use switchboard::ssrf::UrlPolicy;
use switchboard_local::{Emulator, Mode, Settings};
use switchboard_test_support::shared_redis;
use switchboard_tests::unique_prefix;

struct Api {
    emu: Emulator,
    http: reqwest::Client,
}

async fn api(policy: UrlPolicy) -> Api {
    api_with(policy, WebhookSettings::default()).await
}

async fn api_with(policy: UrlPolicy, webhooks: WebhookSettings) -> Api {
    let config = Config {
        redis: Some(RedisConfig::single(shared_redis().url())),
        key_prefix: unique_prefix(),
        webhook_urls: policy,
        webhooks,
        ..Config::default()
    };
    let ctx = Context::from_config(config);
    let mode = Mode::InProcess { ctx, verifier: switchboard_tests::auth::verifier() };
    Api { emu: Emulator::start(Settings::ephemeral(), mode).await.unwrap(), http: reqwest::Client::new() }
}

fn token(tenant: &str, role: Role) -> String {
    switchboard_tests::auth::token(tenant, "u1", role)
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.emu.http_url())).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn an_admin_manages_the_registry() {
    let api = api(UrlPolicy::LOCAL).await;
    let admin = token("acme", Role::Admin);
    let (status, created) = api
        .call(
            reqwest::Method::POST,
            "/v1/webhooks",
            &admin,
            Some(json!({"name": "CRM", "url": "http://127.0.0.1:9/hook", "events": ["call.*", "agent.state.changed"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("wh_"));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"), "the secret is shown on create");
    assert_eq!(created["events"], json!(["agent.state.changed", "call.*"]));
    assert_eq!(
        (created["retry_count"].as_u64(), created["timeout"].as_u64()),
        (Some(3), Some(30)),
        "the seed's defaults"
    );
    assert_eq!(created["is_active"], true);

    let (status, listed) = api.call(reqwest::Method::GET, "/v1/webhooks", &admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 1);
    assert!(listed["webhooks"][0].get("secret").is_none(), "never shown again");

    let path = format!("/v1/webhooks/{id}");
    let (status, patched) = api
        .call(
            reqwest::Method::PATCH,
            &path,
            &admin,
            Some(json!({"events": ["*"], "is_active": false, "retry_count": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (patched["events"].clone(), patched["is_active"].clone(), patched["retry_count"].clone()),
        (json!(["*"]), json!(false), json!(5))
    );
    assert_eq!(patched["name"], "CRM", "untouched fields stay");
    let (_, fetched) = api.call(reqwest::Method::GET, &path, &admin, None).await;
    assert_eq!(fetched, patched);
    assert!(fetched.get("secret").is_none());

    let (status, _) = api.call(reqwest::Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.call(reqwest::Method::GET, &path, &admin, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let (status, _) = api.call(reqwest::Method::DELETE, &path, &admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_field_is_validated_and_urls_pass_the_ssrf_guard() {
    let api = api(UrlPolicy::PRODUCTION).await;
    let admin = token("acme", Role::Admin);
    let ok = json!({"name": "x", "url": "https://hooks.example.com/in"});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        (json!({"url": "https://hooks.example.com/in"}), "name"),
        (json!({"name": "x"}), "url"),
        (with("url", json!("http://hooks.example.com/in")), "url"),
        (with("url", json!("https://169.254.169.254/latest/meta-data/")), "url"),
        (with("url", json!("https://127.0.0.1/")), "url"),
        (with("url", json!("https://[::ffff:10.0.0.1]/")), "url"),
        (with("url", json!("https://user:pw@hooks.example.com/")), "url"),
        // Issue 13, point 8: stored rewritten (newline, tab dropped) before;
        // names of this machine accepted at save before.
        (with("url", json!("https://127.0.0.1\n.example.com/")), "url"),
        (with("url", json!("https://hooks.example\t.com/in")), "url"),
        (with("url", json!("https://localhost/in")), "url"),
        (with("url", json!("https://localhost./in")), "url"),
        (with("url", json!("https://[fd00:ec2::254]/latest/meta-data/")), "url"),
        (with("events", json!(["call.nope"])), "events"),
        (with("events", json!([])), "events"),
        (with("retry_count", json!(11)), "retry_count"),
        (with("timeout", json!(0)), "timeout"),
        (with("secret", json!("short")), "secret"),
        (with("colour", json!("red")), "body"),
        (with("name", json!("")), "name"),
    ];
    for (body, field) in cases {
        let (status, reply) = api.call(reqwest::Method::POST, "/v1/webhooks", &admin, Some(body.clone())).await;
        assert_eq!((status, reply["field"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{body}: {reply}");
    }
    let (_, reply) = api
        .call(reqwest::Method::POST, "/v1/webhooks", &admin, Some(with("url", json!("https://169.254.169.254/"))))
        .await;
    assert!(reply["message"].as_str().unwrap().contains("169.254.169.254 is not a public address"), "{reply}");
    // Nothing was stored by any of them.
    let (_, listed) = api.call(reqwest::Method::GET, "/v1/webhooks", &admin, None).await;
    assert_eq!(listed["webhooks"], json!([]));
    // A good one, with its own secret.
    let (status, created) = api
        .call(reqwest::Method::POST, "/v1/webhooks", &admin, Some(with("secret", json!("a-seed-style-shared-secret"))))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["secret"], "a-seed-style-shared-secret");
    let (status, reply) = api.call(reqwest::Method::GET, "/v1/webhooks/not-an-id", &admin, None).await;
    assert_eq!((status, reply["field"].as_str()), (StatusCode::BAD_REQUEST, Some("id")));
}

#[tokio::test]
async fn only_admins_of_the_same_tenant_see_a_webhook() {
    let api = api(UrlPolicy::LOCAL).await;
    let admin = token("acme", Role::Admin);
    let (_, created) = api
        .call(reqwest::Method::POST, "/v1/webhooks", &admin, Some(json!({"name": "n", "url": "http://127.0.0.1:9/"})))
        .await;
    let path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    for role in [Role::Service, Role::Supervisor, Role::Agent] {
        let (status, reply) = api.call(reqwest::Method::GET, "/v1/webhooks", &token("acme", role), None).await;
        assert_eq!((status, reply["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{role:?}");
    }
    let other = token("globex", Role::Admin);
    assert_eq!(api.call(reqwest::Method::GET, &path, &other, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call(reqwest::Method::PATCH, &path, &other, Some(json!({"is_active": false}))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.call(reqwest::Method::DELETE, &path, &other, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(api.call(reqwest::Method::GET, "/v1/webhooks", &other, None).await.1["webhooks"], json!([]));
    let (_, still) = api.call(reqwest::Method::GET, &path, &admin, None).await;
    assert_eq!(still["is_active"], true, "globex changed nothing");
}

#[tokio::test]
async fn a_tenant_registry_and_its_secrets_are_bounded() {
    let settings = WebhookSettings { max_per_tenant: 2, max_previous_secrets: 2, ..WebhookSettings::default() };
    let api = api_with(UrlPolicy::LOCAL, settings).await;
    let admin = token("acme", Role::Admin);
    let post = |admin: String, body: Value| {
        let api = &api;
        async move { api.call(reqwest::Method::POST, "/v1/webhooks", &admin, Some(body)).await }
    };
    let long = format!("http://127.0.0.1:9/{}", "a".repeat(3000));
    let (status, reply) = post(admin.clone(), json!({"name": "n", "url": long})).await;
    assert_eq!((status, reply["field"].as_str()), (StatusCode::BAD_REQUEST, Some("url")), "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("at most 2048"), "{reply}");
    let mut ids = Vec::new();
    for n in 0..2 {
        let (status, created) =
            post(admin.clone(), json!({"name": format!("n{n}"), "url": "http://127.0.0.1:9/"})).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (status, reply) = post(admin.clone(), json!({"name": "third", "url": "http://127.0.0.1:9/"})).await;
    assert_eq!((status, reply["code"].as_str()), (StatusCode::CONFLICT, Some("limit_exceeded")), "{reply}");
    assert!(reply["message"].as_str().unwrap().contains("limit is 2"), "{reply}");
    let (_, listed) = api.call(reqwest::Method::GET, "/v1/webhooks", &admin, None).await;
    assert_eq!(listed["webhooks"].as_array().unwrap().len(), 2, "nothing was stored");
    let (status, _) = post(token("globex", Role::Admin), json!({"name": "n", "url": "http://127.0.0.1:9/"})).await;
    assert_eq!(status, StatusCode::CREATED, "another tenant has its own budget");

    // Each rotation with a grace period adds a signature to every delivery: bounded.
    let rotate = format!("/v1/webhooks/{}/rotate-secret", ids[0]);
    for _ in 0..2 {
        assert_eq!(api.call(reqwest::Method::POST, &rotate, &admin, Some(json!({}))).await.0, StatusCode::OK);
    }
    let (status, reply) = api.call(reqwest::Method::POST, &rotate, &admin, Some(json!({}))).await;
    assert_eq!((status, reply["code"].as_str()), (StatusCode::CONFLICT, Some("limit_exceeded")), "{reply}");
    let (status, _) = api.call(reqwest::Method::POST, &rotate, &admin, Some(json!({"grace_period_secs": 0}))).await;
    assert_eq!(status, StatusCode::OK, "revoking every old secret is always allowed");
    let (status, _) = api.call(reqwest::Method::POST, &rotate, &admin, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "the revoked secrets no longer count");
}
