//! What happens when Redis goes away and comes back: handlers fail with a
//! clear error (no panic, no hang), and the store reconnects on its own.

use std::time::{Duration, Instant};

use switchboard::config::{Limits, RedisConfig};
use switchboard::ids::Role;
use switchboard::store::{Connection, ConnectionStore, Keys, RedisStore, Store, StoreError};
use switchboard_test_support::RedisServer;

fn conn(id: &str) -> Connection {
    Connection {
        id: id.parse().unwrap(),
        tenant_id: "acme".parse().unwrap(),
        user_id: "42".parse().unwrap(),
        role: Role::Agent,
        endpoint: "https://gw.example/prod".into(),
        connected_at: 1,
    }
}

#[tokio::test]
async fn the_store_reconnects_after_a_redis_restart() {
    let server = RedisServer::start().unwrap();
    let port = server.port;
    let mut config = RedisConfig::single(server.url());
    config.connect_timeout = Duration::from_millis(300);
    config.response_timeout = Duration::from_millis(500);
    let store = RedisStore::new(config, Keys::new("callcenter"), Limits::default());
    store.register(&conn("before")).await.unwrap();

    server.stop();
    let started = Instant::now();
    let err = store.register(&conn("during")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "failed fast, not after {:?}", started.elapsed());

    // The same address comes back (an empty server, as after a failover
    // without persistence). No new store, no new client: it reconnects.
    let _again = RedisServer::start_on(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let result = loop {
        match store.register(&conn("after")).await {
            Ok(r) => break Ok(r),
            Err(e) if Instant::now() > deadline => break Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(result.is_ok(), "the store did not reconnect: {result:?}");
    store.ping().await.unwrap();
    assert_eq!(
        store.connection_count(&"acme".parse().unwrap()).await.unwrap(),
        1,
        "the new server holds only the new connection"
    );
}
