# Thin wrappers: each target is what you would type by hand.
.PHONY: dev test lint build fmt watch token

# The emulator: WebSocket ws://127.0.0.1:3001/local, HTTP API :3000, memory store.
# REDIS_URL=redis://127.0.0.1:6379 switches to Redis; flags go in ARGS (make dev ARGS=--help).
dev:
	cargo run -p switchboard-local -- $(ARGS)

# Every test: unit, store contract (memory, redis-server, 3-node cluster), handlers, emulator end to end.
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

# Hot reload: serve the functions with cargo lambda watch (Invoke API on :9000), then in
# another terminal: make dev ARGS="--functions-url http://127.0.0.1:9000". Functions need REDIS_URL.
watch:
	@command -v cargo-lambda >/dev/null 2>&1 || { echo "cargo-lambda is not installed: cargo install --locked cargo-lambda (takes ~15 min), or pip install cargo-lambda"; exit 1; }
	cargo lambda watch

# A development token: make token TENANT=t1 USER_ID=42 ROLE=agent
TENANT ?= t1
USER_ID ?= 42
ROLE ?= agent
token:
	@cargo run -q -p switchboard-local -- token --tenant $(TENANT) --user $(USER_ID) --role $(ROLE)
