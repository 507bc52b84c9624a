//! The integration tests: one binary, a module per area (the layout of
//! cargo's own `tests/testsuite`). One link instead of fifteen, and one
//! `redis-server` and one 3-node Cluster for the whole run instead of one
//! pair per file (the harness starts them once per process).
//!
//! Run one area with `cargo test -p switchboard-tests --test suite fanout::`.

mod channels;
mod channels_contract;
mod console;
mod deployment;
mod docs;
mod emulator;
mod emulator_remote;
mod fanout;
mod handlers;
mod metrics;
mod openapi;
mod queued_fanout;
mod quotas;
mod recovery;
mod resilience;
mod round_trips;
mod secrets;
mod sqs;
mod sqs_conformance;
mod store_contract;
mod webhook_delivery;
mod webhook_e2e;
mod webhooks;
