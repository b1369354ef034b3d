# payhook: `make run` and `make test` do all set-up on a fresh Debian machine with Swift.
SWIFT ?= swift
CONFIG ?= Fixtures/demo.toml
APT_PACKAGES := libmicrohttpd-dev libgnutls28-dev libssl-dev libpq-dev pkg-config
# The tests start a private PostgreSQL cluster of their own (Tests/PayhookTestSupport/TestPostgres.swift):
# the server's package, without the cluster Debian would create and start for it.
TEST_APT_PACKAGES := postgresql postgresql-contrib nginx prometheus
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps system-libs test-deps build run test crash-test fuzz bench clean distclean release install deb

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

# On Debian `make deps` installs the libraries. Elsewhere there is no apt-get to ask (docs/deploy.md §5), so the
# build stops with one sentence naming the libraries pkg-config cannot find, instead of a dpkg error.
PKG_CONFIG_LIBS := libmicrohttpd gnutls libcrypto libpq
system-libs:
	@if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory deps; \
	elif ! command -v pkg-config >/dev/null 2>&1; then \
		echo "payhook needs pkg-config and the development files of $(PKG_CONFIG_LIBS), and pkg-config is not installed (docs/deploy.md §5 names the packages)." >&2; exit 1; \
	else \
		missing=""; for l in $(PKG_CONFIG_LIBS); do pkg-config --exists $$l || missing="$$missing $$l"; done; \
		if [ -n "$$missing" ]; then \
			echo "payhook needs the development files of$$missing, which pkg-config cannot find: install them with this system's package manager (docs/deploy.md §5 names the packages)." >&2; exit 1; \
		fi; \
	fi

build: system-libs
	$(SWIFT) build

run: build
	@# git keeps no permission bits but x: the demo's secret files are checked out readable by everyone, which
	@# check-config and serve warn about (docs/deploy.md §1).
	chmod go-rwx Fixtures/secrets/*
	$(SWIFT) run payhook serve --config $(CONFIG)

# Every cited document is a file of the repository (.ci/check-citations.py), every target imports exactly what
# it declares and no file holds a machine's path (.ci/check-manifest.py); every suite, in parallel, except
# that the suites measuring time, memory or processes run one at a time
# (MeasuringSuites, Tests/PayhookTestSupport/Suites.swift); then the crash harness and each fuzz target in
# short configurations; last the release build, `make install`, the unit and the Debian package (docs/deploy.md).
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
	python3 Tests/packaging/package_test.py

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

# Release binary (docs/deploy.md §1): optimised, the Swift runtime and Foundation linked in statically so the
# machine needs only Debian's libraries, stripped, in $(DIST). The commit and the day reach `payhook --version`
# as C defines read by CPayhookShim; no tracked file changes. SOURCE_DATE_EPOCH, when set, fixes the day.
DIST := .build/dist
COMMIT := $(shell c=$$(git rev-parse --short=7 HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null || c="$$c-dirty"; }; echo $${c:-unknown})
BUILD_DATE := $(shell date -u -d "@$${SOURCE_DATE_EPOCH:-$$(date +%s)}" +%Y-%m-%d 2>/dev/null || echo unknown)
RELEASE_FLAGS := -c release --static-swift-stdlib -Xcc '-DPAYHOOK_COMMIT="$(COMMIT)"' -Xcc '-DPAYHOOK_BUILD_DATE="$(BUILD_DATE)"'
# The man pages come from swift-argument-parser's generate-manual, the tool behind its GenerateManual plugin,
# run directly: `swift package generate-manual` would rebuild every product in release mode without these
# flags, and the next `make release` would rebuild them all again.
release: system-libs
	$(SWIFT) build $(RELEASE_FLAGS) --product payhook
	$(SWIFT) build $(RELEASE_FLAGS) --product generate-manual
	mkdir -p $(DIST)
	bin="$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)" && \
	cp "$$bin/payhook" $(DIST)/payhook.tmp && \
	strip --strip-all $(DIST)/payhook.tmp && \
	mv $(DIST)/payhook.tmp $(DIST)/payhook && \
	rm -rf $(DIST)/man && mkdir $(DIST)/man && \
	"$$bin/generate-manual" $(DIST)/payhook --multi-page --date $(BUILD_DATE) --output-directory $(DIST)/man
	@$(DIST)/payhook --version

# `make install` (docs/deploy.md §1) copies what `make release` built, so `sudo make install` never builds as
# root: the binary, one man page per command, completions for bash, zsh and fish, the systemd unit (pointing at
# the installed binary), and the example config, also as /etc/payhook/payhook.toml unless that file exists.
PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/payhook
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BASH_COMPLETION_DIR ?= $(PREFIX)/share/bash-completion/completions
ZSH_COMPLETION_DIR ?= $(PREFIX)/share/zsh/site-functions
FISH_COMPLETION_DIR ?= $(PREFIX)/share/fish/vendor_completions.d
install:
	@[ -x $(DIST)/payhook ] && [ -d $(DIST)/man ] || { echo "nothing to install: run make release first" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(BASH_COMPLETION_DIR) $(DESTDIR)$(ZSH_COMPLETION_DIR) $(DESTDIR)$(FISH_COMPLETION_DIR) \
		$(DESTDIR)$(SYSCONFDIR)/payhook
	install -m 0755 $(DIST)/payhook $(DESTDIR)$(BINDIR)/payhook
	install -m 0644 $(DIST)/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	$(DIST)/payhook --generate-completion-script bash > $(DESTDIR)$(BASH_COMPLETION_DIR)/payhook
	$(DIST)/payhook --generate-completion-script zsh > $(DESTDIR)$(ZSH_COMPLETION_DIR)/_payhook
	$(DIST)/payhook --generate-completion-script fish > $(DESTDIR)$(FISH_COMPLETION_DIR)/payhook.fish
	sed 's|@BINDIR@|$(BINDIR)|g' packaging/payhook.service.in > $(DESTDIR)$(SYSTEMDUNITDIR)/payhook.service
	install -m 0644 packaging/payhook.example.toml $(DESTDIR)$(DOCDIR)/payhook.example.toml
	[ -e $(DESTDIR)$(SYSCONFDIR)/payhook/payhook.toml ] || \
		install -m 0644 packaging/payhook.example.toml $(DESTDIR)$(SYSCONFDIR)/payhook/payhook.toml

# The Debian package (docs/deploy.md §2), built from the tree `make install` stages with PREFIX=/usr; zsh's
# completion folder is Debian's own. Maintainer scripts and control file in packaging/debian/.
VERSION := $(shell sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/PayhookServer/Version.swift)
DEB_ROOT := $(DIST)/deb-root
# dpkg requires a Maintainer field: whoever builds and distributes the package (docs/deploy.md §2).
DEB_MAINTAINER ?= payhook builder <root@localhost>
deb: release
	rm -rf $(DEB_ROOT) && mkdir -p $(DEB_ROOT)/DEBIAN
	$(MAKE) --no-print-directory install DESTDIR=$(DEB_ROOT) PREFIX=/usr ZSH_COMPLETION_DIR=/usr/share/zsh/vendor-completions
	gzip -9n $(DEB_ROOT)/usr/share/man/man1/*.1
	install -m 0644 packaging/debian/conffiles $(DEB_ROOT)/DEBIAN/conffiles
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm $(DEB_ROOT)/DEBIAN/
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@MAINTAINER@|$(DEB_MAINTAINER)|' -e "s|@ARCH@|$$(dpkg --print-architecture)|" \
		-e "s|@SIZE@|$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f1)|" packaging/debian/control.in > $(DEB_ROOT)/DEBIAN/control
	dpkg-deb --root-owner-group -Zxz --build $(DEB_ROOT) $(DIST)/payhook_$(VERSION)_$$(dpkg --print-architecture).deb

# clean removes what running payhook left in the working tree (the demo spool, bench data) and keeps the
# build, which takes minutes to redo; distclean removes the builds too.
clean:
	rm -rf Fixtures/spool bench/.data

distclean: clean
	rm -rf .build .build-fuzz
