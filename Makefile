# uplinkd. Every target that touches the kernel does so only inside network
# namespaces it creates and deletes itself; nothing changes the root namespace.

GO        ?= go
export PATH := $(PATH):/usr/local/go/bin
BIN       := bin/uplinkd
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PREFIX    ?= /usr/local
FUZZTIME  ?= 10s
# Fuzz targets as package:Target; each runs for FUZZTIME in `make test`.
FUZZ      := ./policy:FuzzParse

.PHONY: all build test test-unit test-fuzz test-contrib bench demo lint install setup clean

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

test-unit:
	UPLINKD_NSTEST_REQUIRE=1 $(GO) test -count=1 -timeout 30m ./...

test-fuzz:
	@set -e; for t in $(FUZZ); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

# Checks on contrib/ that need external tools (promtool, systemd-analyze);
# filled in by contrib/Makefile.inc when present.
-include contrib/Makefile.inc
test-contrib::
	@true

bench: build
	$(GO) test -run='^$$' -bench=. -benchmem -count=1 -timeout 60m ./...

demo: build
	@echo "make demo: the namespace lab is not built yet" >&2; exit 1

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files -o --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/uplinkd

clean:
	rm -rf bin out
