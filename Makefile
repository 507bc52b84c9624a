# Thin wrappers: each target is what you would type by hand.
.PHONY: dev test lint build deploy infra-check smoke bench bench-quick fmt watch watch-smoke docker-smoke bench-profiles token console-dist

# The Lambda functions (each a crate in functions/).
FUNCTIONS := ws-authorizer ws-connect ws-disconnect ws-message fanout webhook api
# Tools from PyPI, each set in its own venv under .tools/ (installed on first use):
# cargo-lambda and zig (its arm64 linker); cfn-lint and SAM CLI; schema checks and hadolint.
WITH_BUILD_TOOLS := ./scripts/with-tools infra/requirements-build.txt
WITH_CHECK_TOOLS := ./scripts/with-tools infra/requirements-check.txt
WITH_LINT_TOOLS := ./scripts/with-tools infra/requirements-lint.txt

# The emulator: WebSocket ws://127.0.0.1:3001/local, HTTP API :3000, memory store.
# REDIS_URL=redis://127.0.0.1:6379 switches to Redis; flags go in ARGS (make dev ARGS=--help).
dev:
	cargo run -p switchboard-local -- $(ARGS)

# Every test: unit, store contract (memory, redis-server, 3-node cluster), handlers, emulator end to end,
# then the JavaScript client's and the console's (Node, and headless Chromium) against the emulator binary.
# redis-server, Node and Chromium from apt, moto and openapi-spec-validator from PyPI are installed when
# missing; the client's dev tools from its package-lock.json (npm ci).
REDIS_PACKAGES := redis-server=redis-server redis-cli=redis-tools
test:
	./scripts/ensure-packages $(REDIS_PACKAGES) node=nodejs npm=npm chromium=chromium
	./scripts/with-tools infra/requirements-test.txt true
	cargo test --workspace
	cargo build -p switchboard-local
	cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npm test

# Exactly what CI checks.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# arm64 Lambda zips: target/lambda/<function>/bootstrap.zip (installs cargo-lambda + zig when missing),
# built with Cargo.toml's lambda-release profile (fat LTO, one codegen unit, no symbols).
build:
	$(WITH_BUILD_TOOLS) cargo lambda build --profile lambda-release --arm64 --output-format zip $(addprefix -p ,$(FUNCTIONS))
	@ls -l target/lambda/*/bootstrap.zip

# sam build + sam deploy with infra/samconfig.toml; guided until your parameters are saved there.
# SAM builds every function with --release; these variables give that build the lambda-release profile's settings.
LAMBDA_PROFILE_ENV := CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_STRIP=symbols
deploy:
	$(WITH_BUILD_TOOLS) $(WITH_CHECK_TOOLS) sh -c 'cd infra && $(LAMBDA_PROFILE_ENV) sam build'
	$(WITH_CHECK_TOOLS) sh -c 'cd infra && sam deploy $(if $(shell grep -s '^parameter_overrides' infra/samconfig.toml),,--guided) $(ARGS)'

# The deployment files: cfn-lint, sam validate --lint, the compose file and workflows against their schemas, hadolint.
infra-check:
	$(WITH_CHECK_TOOLS) cfn-lint infra/template.yaml
	SAM_CLI_TELEMETRY=0 $(WITH_CHECK_TOOLS) sam validate --lint --template infra/template.yaml --region us-east-1
	$(WITH_LINT_TOOLS) check-jsonschema --builtin-schema vendor.compose-spec infra/docker/compose.yaml
	$(WITH_LINT_TOOLS) check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(WITH_LINT_TOOLS) hadolint infra/docker/Dockerfile

# The example workflow's client test (infra/docker/smoke.py) against the emulator binary.
smoke:
	./scripts/smoke

# The emulator's image and compose file, built and run as a user would, with smoke.py against both
# (a private dockerd on the host network, base-image stand-ins from Debian's packages offline; needs root).
docker-smoke:
	./scripts/docker-smoke

fmt:
	cargo fmt --all

# Hot reload: serve the functions with cargo lambda watch (Invoke API on 127.0.0.1:9000), then in
# another terminal: make dev ARGS="--functions-url http://127.0.0.1:9000". Functions need REDIS_URL.
# The Invoke API listens on 127.0.0.1 only (cargo lambda's default is every interface): WATCH_ADDRESS=:: to share it.
# Node 20 and 21 keep the global WebSocket behind a flag.
NODE_WEBSOCKET := $(shell node -e 'process.exit(+process.versions.node.split(".")[0] >= 22 ? 0 : 1)' 2>/dev/null || echo --experimental-websocket)
WATCH_ADDRESS ?= 127.0.0.1
WATCH_PORT ?= 9000
watch:
	$(WITH_BUILD_TOOLS) cargo lambda watch --invoke-address $(WATCH_ADDRESS) --invoke-port $(WATCH_PORT)

# The hot-reload loop end to end: make watch on a real Redis, the emulator in front (--functions-url), a client
# subscribes and receives an HTTP publish, then an edit to ws-message's source answers the next frame (file restored).
watch-smoke:
	./scripts/ensure-packages $(REDIS_PACKAGES) node=nodejs
	cargo build -q -p switchboard-local
	$(WITH_BUILD_TOOLS) true
	node $(NODE_WEBSOCKET) scripts/watch-smoke.mjs

# Benchmarks against their baselines -> BENCHMARKS.md (release build; about 10 minutes).
# bench-quick: 1,000 connections, one repeat, under a minute once built (BENCH_PROFILE=debug to skip the release build).
BENCH_PROFILE ?= release
BENCH_BIN = target/$(BENCH_PROFILE)/switchboard-bench
# The cold starts (benchmark 11): the functions and their baseline, hello-lambda.
LAMBDA_PACKAGES = $(addprefix -p ,hello-lambda $(FUNCTIONS))
BENCH_BUILD = cargo build $(if $(filter release,$(BENCH_PROFILE)),--release) -p switchboard-bench -p switchboard-local $(LAMBDA_PACKAGES)
# make bench measures what make build ships: the functions in the lambda-release profile.
LAMBDA_BUILD = cargo build --profile lambda-release $(LAMBDA_PACKAGES)
bench:
	./scripts/ensure-packages $(REDIS_PACKAGES) zip=zip
	$(BENCH_BUILD)
	$(LAMBDA_BUILD)
	$(BENCH_BIN) run --out BENCHMARKS.md --functions-dir target/lambda-release

bench-quick:
	./scripts/ensure-packages $(REDIS_PACKAGES) zip=zip
	$(BENCH_BUILD)
	$(BENCH_BIN) run --quick --out $(or $(OUT),BENCHMARKS-quick.md)

# The Lambda release profile's choice: the functions' cold starts, warm invocations, zip sizes and the fan-out
# function's CPU per post, built three ways (release; lambda-release; lambda-release at opt-level s)
# -> bench/PROFILES.md. About 30 minutes.
bench-profiles:
	./scripts/ensure-packages $(REDIS_PACKAGES) zip=zip
	cargo build --release -p switchboard-bench -p switchboard-local $(LAMBDA_PACKAGES)
	$(LAMBDA_BUILD)
	CARGO_PROFILE_LAMBDA_RELEASE_OPT_LEVEL=s $(LAMBDA_BUILD) --target-dir target/opt-s
	target/release/switchboard-bench coldstart --dir release=target/release --dir lambda-release=target/lambda-release \
	  --dir "lambda-release, opt-level s=target/opt-s/lambda-release" > bench/PROFILES.md.new
	mv bench/PROFILES.md.new bench/PROFILES.md

# A development token: make token TENANT=t1 USER_ID=42 ROLE=agent CHANNELS=queue:support,team:east
TENANT ?= t1
USER_ID ?= 42
ROLE ?= agent
CHANNELS ?=
token:
	@cargo run -q -p switchboard-local -- token --tenant $(TENANT) --user $(USER_ID) --role $(ROLE) $(if $(CHANNELS),--channels $(CHANNELS))

# The console as static files for a deployed stage: make console-dist WS_URL=wss://<api>.execute-api.<region>.amazonaws.com/production
console-dist:
	./scripts/console-dist $(or $(OUT),dist/console) "$(WS_URL)" "$(API_URL)"
