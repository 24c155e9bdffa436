# uplinkd. Every target that touches the kernel does so only inside network
# namespaces it creates and deletes itself; nothing changes the root namespace.

GO        ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN       := bin/uplinkd
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PREFIX    ?= /usr/local
FUZZTIME  ?= 10s
# Every Fuzz* target in the tree runs for FUZZTIME in `make test`; they are
# found, not listed, so a new target cannot be forgotten.

.PHONY: all build test test-unit test-fuzz test-contrib bench demo lint vulncheck install deb setup clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/uplinkd

setup:
	sh scripts/setup.sh

# Every tier: pure tables, fake-kernel scenarios and privileged namespace
# tests (these need root; they skip, saying why, only where the kernel
# cannot create namespaces; `make test` sets UPLINKD_NSTEST_REQUIRE so even
# that fails instead of skipping on a machine meant to run them). Then each fuzz target for a bounded time.
test: build lint test-unit test-fuzz test-contrib

# The fault suites (internal/reliability, the e2e restarts) append their
# totals to out/faults.txt, printed after the run whatever its outcome.
test-unit:
	@mkdir -p out && rm -f out/faults.txt
	UPLINKD_NSTEST_REQUIRE=1 UPLINKD_FAULT_SUMMARY=$(CURDIR)/out/faults.txt $(GO) test -count=1 -timeout 30m ./...; \
	status=$$?; cat out/faults.txt 2>/dev/null; exit $$status

test-fuzz:
	@sh scripts/fuzz.sh $(GO) $(FUZZTIME)

# Checks on contrib/ that need external tools (promtool, systemd-analyze);
# filled in by contrib/Makefile.inc when present.
-include contrib/Makefile.inc
test-contrib::
	@true

# The fault matrix in the namespace lab (uplinkd against the kernel alone;
# table on stdout, out/bench.csv, out/bench.json, out/bench.md), then the
# package benchmarks.
bench: build
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/uplinkd-lab ./lab/cmd/uplinkd-lab
	bin/uplinkd-lab bench --uplinkd $(BIN) --out out
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 -timeout 60m ./...

# A gateway dies silently in the namespace lab; uplinkd moves the traffic
# and brings it back. Under a minute; the lab is removed on exit and Ctrl-C.
demo: build
	@CGO_ENABLED=0 $(GO) build -trimpath -o bin/uplinkd-lab ./lab/cmd/uplinkd-lab
	@bin/uplinkd-lab demo --uplinkd $(BIN) --config contrib/examples/demo.toml

STATICCHECK_VERSION := v0.8.2
GOVULNCHECK_VERSION := v1.1.4
GOBIN := $(shell $(GO) env GOPATH)/bin

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files -o --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...
	@test -x $(GOBIN)/govulncheck || $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	@# govulncheck needs its database (vuln.go.dev). Where the machine cannot
	@# resolve it, say so plainly instead of passing silently.
	@if getent hosts vuln.go.dev >/dev/null 2>&1; then \
		$(GOBIN)/govulncheck ./...; \
	else \
		echo "NOT RUN: govulncheck (installed, but vuln.go.dev does not resolve from this machine; run 'make vulncheck' where it does)"; \
	fi

vulncheck:
	$(GOBIN)/govulncheck ./...

# DESTDIR-aware. The binary goes under PREFIX and the unit's paths follow
# it; the policy is installed only if none exists, never overwritten.
UNITDIR   ?= /lib/systemd/system
SYSCONFDIR ?= /etc
EXAMPLE_POLICY ?= contrib/examples/router-two-isps.toml

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/uplinkd
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/sbin/uplinkd|$(PREFIX)/sbin/uplinkd|g' contrib/systemd/uplinkd.service >$(DESTDIR)$(UNITDIR)/uplinkd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/uplinkd.service
	install -D -m 0644 contrib/iproute2/rt_protos.d/uplinkd.conf $(DESTDIR)$(SYSCONFDIR)/iproute2/rt_protos.d/uplinkd.conf
	install -D -m 0755 contrib/examples/hooks/move-address $(DESTDIR)$(PREFIX)/lib/uplinkd/hooks/move-address
	install -D -m 0755 contrib/examples/hooks/failover-ip-api $(DESTDIR)$(PREFIX)/lib/uplinkd/hooks/failover-ip-api
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/doc/uplinkd/examples
	install -m 0644 contrib/examples/*.toml contrib/examples/keepalived.conf contrib/iproute2/rt_tables.d/uplinkd.conf \
		$(DESTDIR)$(PREFIX)/share/doc/uplinkd/examples/
	install -m 0644 docs/*.md $(DESTDIR)$(PREFIX)/share/doc/uplinkd/
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/uplinkd
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/uplinkd/uplinkd.toml ]; then \
		echo "install: keeping the existing $(DESTDIR)$(SYSCONFDIR)/uplinkd/uplinkd.toml"; \
	else \
		echo "install -m 0644 $(EXAMPLE_POLICY) $(DESTDIR)$(SYSCONFDIR)/uplinkd/uplinkd.toml"; \
		install -m 0644 $(EXAMPLE_POLICY) $(DESTDIR)$(SYSCONFDIR)/uplinkd/uplinkd.toml; \
	fi

# A Debian package (dpkg-deb; lintian-clean but for the override it ships,
# see contrib/debian/lintian-overrides) in DEBDIR. contrib's TestDebPackage
# builds one and inspects it.
DEBDIR ?= out
DEB_VERSION ?=
deb: build
	sh scripts/deb.sh $(DEBDIR) $(DEB_VERSION)

clean:
	rm -rf bin out
