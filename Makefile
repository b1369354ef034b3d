# payhook: `make run` and `make test` do all set-up on a fresh Debian machine with Swift.
SWIFT ?= swift
CONFIG ?= Fixtures/demo.toml
APT_PACKAGES := libmicrohttpd-dev libssl-dev libpq-dev pkg-config
# The tests start a private PostgreSQL cluster of their own (Tests/PayhookTestSupport/TestPostgres.swift):
# the server's package, without the cluster Debian would create and start for it.
TEST_APT_PACKAGES := postgresql postgresql-contrib nginx
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps test-deps build run test crash-test fuzz bench clean

# Installs the three C libraries' -dev packages (and pkg-config) when any is missing.
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Test tooling only, never a runtime dependency: Python's jsonschema checks real event files against the
# schema, wechatpy is an independent WeChat Pay implementation the tests cross-check against, and
# cryptography an independent RSA and AES-GCM the WeChat Pay v3 primitives are checked against.
test-deps: deps
	@missing=""; \
	for p in $(TEST_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) mkdir -p /etc/postgresql-common; \
		[ -e /etc/postgresql-common/createcluster.conf ] || echo 'create_main_cluster = false' | $(SUDO) tee /etc/postgresql-common/createcluster.conf >/dev/null; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@python3 -c 'import jsonschema, wechatpy, cryptography' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check jsonschema wechatpy cryptography

build: deps
	$(SWIFT) build

run: build
	$(SWIFT) run payhook serve --config $(CONFIG)

# Every cited document is a file of the repository (.ci/check-citations.py), every target imports exactly what
# it declares and no file holds a machine's path (.ci/check-manifest.py); every suite, in parallel, except
# that the suites measuring time, memory or processes run one at a time
# (MeasuringSuites, Tests/PayhookTestSupport/Suites.swift); then the crash harness and each fuzz target in
# short configurations.
test: test-deps
	python3 .ci/check-citations.py
	python3 .ci/check-manifest.py
	$(SWIFT) build --build-tests
	$(SWIFT) test
	python3 Tests/crash/crash_test.py --binary .build/debug/payhook $(CRASH_SHORT_ARGS)
	python3 Tests/crash/crash_test.py --binary .build/debug/payhook --store postgres $(CRASH_PG_SHORT_ARGS)
	python3 Tests/crash/stop_storm.py --binary .build/debug/payhook $(STORM_SHORT_ARGS)
	python3 Tests/crash/hostile_run.py --binary .build/debug/payhook $(HOSTILE_SHORT_ARGS)
	SWIFTC=$(SWIFTC) Fuzz/fuzz.sh --seconds $(FUZZ_SMOKE_SECONDS)

# Crash harness (Tests/crash/README.md; docs/durability.md §10.2, §8): SIGKILL and SIGTERM under load, then an
# ALICE-style check of the spool against what was acknowledged.
CRASH_ARGS ?= --kills 100 --graceful-rounds 3 --seconds 900
CRASH_SHORT_ARGS ?= --kills 25 --graceful-rounds 2 --seconds 240
# The same against [store] kind = "postgres" on a private cluster, with some kills of the database itself.
CRASH_PG_ARGS ?= --kills 50 --graceful-rounds 3 --seconds 900
CRASH_PG_SHORT_ARGS ?= --kills 12 --graceful-rounds 2 --db-crashes 40 --seconds 180
# Stop storm (Tests/crash/README.md): many SIGTERMs under connection churn, each must exit 0 having stored
# every acknowledged callback.
STORM_ARGS ?= --rounds 100
STORM_SHORT_ARGS ?= --rounds 20
# Hostile-client run (Tests/crash/hostile_run.py): floods of hostile requests against the binary; its RSS, its
# in-flight gauge and its SIGTERM exit are checked.
HOSTILE_ARGS ?= --requests 20000
HOSTILE_SHORT_ARGS ?= --requests 3000
crash-test: test-deps build
	python3 Tests/crash/crash_test.py --binary .build/debug/payhook $(CRASH_ARGS)
	python3 Tests/crash/crash_test.py --binary .build/debug/payhook --store postgres $(CRASH_PG_ARGS)
	python3 Tests/crash/stop_storm.py --binary .build/debug/payhook $(STORM_ARGS)
	python3 Tests/crash/hostile_run.py --binary .build/debug/payhook $(HOSTILE_ARGS)

# libFuzzer targets (Fuzz/README.md). `make fuzz FUZZ_SECONDS=600 FUZZ_TARGETS=wechat-xml` for one, longer.
SWIFTC ?= swiftc
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_TARGETS ?=
fuzz: deps
	SWIFTC=$(SWIFTC) Fuzz/fuzz.sh --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Benchmark: payhook against a do-nothing nginx in the same run, and on PostgreSQL against pgbench running its
# store statement on the same private cluster (bench/postgres.py); tables on stdout and in
# bench/results/latest.md (bench/README.md). Options pass through: make bench BENCH_ARGS=--quick
BENCH_ARGS ?=
bench: deps
	SWIFT="$(SWIFT)" python3 bench/run.py $(BENCH_ARGS)

clean:
	rm -rf .build .build-fuzz Fixtures/spool
