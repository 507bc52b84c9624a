//! The SSRF guard at connection time, against a real HTTP server on
//! loopback: a host name that resolves to 127.0.0.1 is refused unless the
//! local-development switch is on, and redirects are never followed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchboard::ssrf::{UrlError, UrlPolicy, check_url, delivery_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A receiver that answers every request with a redirect to /elsewhere, and counts requests.
async fn redirecting_receiver() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let reply = "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    (port, hits)
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_connection_time() {
    let (port, hits) = redirecting_receiver().await;
    let url = format!("http://localhost:{port}/hook");
    // The name is refused when the URL is checked (at save)...
    let strict = UrlPolicy { require_https: false, allow_private: false };
    assert!(matches!(check_url(&url, strict), Err(UrlError::Local(_))));
    // ...and at connection time, for any name resolving to loopback (a URL
    // stored before, DNS changed since): the resolver only hands out public
    // addresses, nothing connects.
    let err = delivery_client(strict, Duration::from_secs(5)).post(&url).body("{}").send().await.unwrap_err();
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    assert!(chain.iter().any(|m| m == "host 'localhost' does not resolve to a public address"), "{chain:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "no connection was made");

    // With the local switch on, it goes through; the redirect is not followed.
    let response =
        delivery_client(UrlPolicy::LOCAL, Duration::from_secs(5)).post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "one request, no second one to /elsewhere");
}
