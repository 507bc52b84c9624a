//! Our webhook signatures against the published `standardwebhooks` crate:
//! a verifier nobody here wrote accepts what we sign, and we accept what it
//! signs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue};
use switchboard::webhook::{Secret, signature_header, standard_signature, verify_signature};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn headers(id: &str, ts: i64, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("webhook-id", HeaderValue::from_str(id).unwrap());
    h.insert("webhook-timestamp", HeaderValue::from_str(&ts.to_string()).unwrap());
    h.insert("webhook-signature", HeaderValue::from_str(signature).unwrap());
    h
}

#[test]
fn the_reference_verifier_accepts_our_signatures() {
    let secret = Secret::generate();
    let reference = standardwebhooks::Webhook::new(secret.expose()).unwrap();
    let body = br#"{"event":"call.incoming","timestamp":1795684542,"data":{"caller_id":"+15551234"}}"#;
    let ts = now();
    let ours = standard_signature(&secret, "dlv_01", ts, body);
    reference.verify(body, &headers("dlv_01", ts, &ours)).expect("the reference verifier accepts our signature");
    assert!(reference.verify(b"{}", &headers("dlv_01", ts, &ours)).is_err(), "and refuses another body");

    // During a rotation we send two; the reference accepts with either secret.
    let old = Secret::generate();
    let both = signature_header(&[&secret, &old], "dlv_02", ts, body);
    reference.verify(body, &headers("dlv_02", ts, &both)).unwrap();
    standardwebhooks::Webhook::new(old.expose()).unwrap().verify(body, &headers("dlv_02", ts, &both)).unwrap();
}

#[test]
fn we_accept_the_reference_signatures() {
    let secret = Secret::generate();
    let reference = standardwebhooks::Webhook::new(secret.expose()).unwrap();
    let ts = now();
    let theirs = reference.sign("dlv_03", ts, b"payload").unwrap();
    assert_eq!(theirs, standard_signature(&secret, "dlv_03", ts, b"payload"), "byte-for-byte the same signature");
    verify_signature(&secret, "dlv_03", &ts.to_string(), b"payload", &theirs, ts, Duration::from_secs(300)).unwrap();
}
