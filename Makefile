# Thin wrappers: each target is what you would type by hand.
.PHONY: test lint build fmt

# Every test: unit, store contract (memory, redis-server, 3-node cluster), handlers.
test:
	./scripts/ensure-redis
	cargo test --workspace

# Exactly what CI checks.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build:
	cargo build --workspace

fmt:
	cargo fmt --all
