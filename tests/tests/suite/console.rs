//! The development console's routes on the emulator's HTTP API (the page
//! itself is tested in Chromium by `clients/js/test/console.test.js`):
//! nothing of it without console settings (production mode), a strict
//! content policy, the gateway's address from the page's host, and
//! minting that validates what it signs.

use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, LOCATION};
use serde_json::{Value, json};
use switchboard::Context;
use switchboard::auth::{AuthConfig, Verifier};
use switchboard::config::Config;
use switchboard::ids::Role;
use switchboard_local::{ConsoleSettings, Emulator, Minter, Mode, Settings};
use switchboard_tests::Backend;
use switchboard_tests::auth::SECRET;

async fn emulator(console: Option<ConsoleSettings>) -> Emulator {
    let ctx = Context::new(Config::default(), Backend::Memory.store(Default::default()));
    let mode = Mode::InProcess { ctx, verifier: Verifier::new(&AuthConfig::hs256(SECRET)).unwrap() };
    Emulator::start(Settings { console, ..Settings::ephemeral() }, mode).await.unwrap()
}

fn minting() -> Option<ConsoleSettings> {
    Some(ConsoleSettings { mint: Some(Minter { secret: SECRET.to_vec(), issuer: None, audience: None }) })
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// `POST /console/token` with `body`.
async fn mint(emu: &Emulator, body: &Value) -> reqwest::Response {
    no_redirects().post(format!("{}/console/token", emu.http_url())).json(body).send().await.unwrap()
}

#[tokio::test]
async fn without_console_settings_nothing_of_the_console_is_routed() {
    let emu = emulator(None).await;
    let http = no_redirects();
    for path in ["/console", "/console/", "/console/console.js", "/console/switchboard.js", "/console/config.json"] {
        let r = http.get(format!("{}{path}", emu.http_url())).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = mint(&emu, &json!({"tenant": "t1", "user": "u", "role": "admin"})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    emu.shutdown().await;
}

#[tokio::test]
async fn the_console_page_is_served_with_a_strict_policy_and_finds_the_gateway_on_its_own_host() {
    let emu = emulator(minting()).await;
    let http = no_redirects();
    let base = emu.http_url();
    let r = http.get(format!("{base}/console?token=abc&ws=x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()[LOCATION], "/console/?token=abc&ws=x", "the query goes along");

    let r = http.get(format!("{base}/console/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>") && html.contains(r#"src="console.js""#), "no inline script");

    let client = http.get(format!("{base}/console/switchboard.js")).send().await.unwrap().text().await.unwrap();
    assert_eq!(client, include_str!("../../../clients/js/src/index.js"), "the page runs the published client");

    let config: Value = http
        .get(format!("{base}/console/config.json"))
        .header(HOST, "localhost:9")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["ws_url"], format!("ws://localhost:{}/local", emu.ws_addr.port()));
    assert_eq!(config["mint"], true);
    emu.shutdown().await;
}

#[tokio::test]
async fn minted_tokens_verify_and_bad_requests_say_what_was_wrong() {
    let emu = emulator(minting()).await;
    let r = mint(&emu, &json!({"tenant": "t9", "user": "sup-1", "role": "supervisor"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let who = Verifier::new(&AuthConfig::hs256(SECRET)).unwrap().verify(&token).unwrap();
    assert_eq!((who.tenant_id.as_str(), who.user_id.as_str(), who.role), ("t9", "sup-1", Role::Supervisor));

    for (body, says) in [
        (json!({"tenant": "t1", "user": "u", "role": "root"}), "role"),
        (json!({"tenant": "t 1", "user": "u", "role": "admin"}), "tenant"),
        (json!({"tenant": "t1", "user": "", "role": "admin"}), "user"),
        (json!({"tenant": "t1", "user": "u", "role": "admin", "ttl_secs": 90_000_000}), "ttl_secs"),
        (json!({"tenant": "t1", "user": "u", "role": "admin", "sub": "other"}), "unknown field"),
        (json!({"tenant": "t1"}), "missing field"),
    ] {
        let r = mint(&emu, &body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = r.json().await.unwrap();
        assert!(error["message"].as_str().unwrap().contains(says), "{body}: {error}");
    }
    emu.shutdown().await;

    let emu = emulator(Some(ConsoleSettings { mint: None })).await;
    let r = mint(&emu, &json!({"tenant": "t1", "user": "u", "role": "admin"})).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "minting_disabled");
    emu.shutdown().await;
}
