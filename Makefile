# kclb build, test and demo targets. Go 1.26 is the only build requirement.
GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all build demo test test-short fuzz bench bench-quick soak vet clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/kclb ./cmd/kclb
	$(GO) build -o bin/kcsim ./cmd/kcsim

## demo: three Keycloak stand-ins and kclb on localhost (Ctrl-C stops it)
demo: build
	./bin/kclb demo

## test: every test (root-only and peer tests skip with a reason when they cannot run)
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 12m ./...

test-short:
	$(GO) test -count=1 -short ./...

## fuzz: bounded fuzzing of every parser (FUZZTIME per target)
FUZZTIME ?= 30s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		dir=$$(dirname $$f); \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/func //'); do \
			echo "== $$dir $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

## bench: kclb side by side with HAProxy, nginx and direct; writes docs/benchmarks.md (< 10 min)
bench:
	$(GO) run ./bench -targets direct,kclb,haproxy,nginx

## bench-quick: the same in under 2 minutes
bench-quick:
	$(GO) run ./bench -quick -targets direct,kclb,haproxy,nginx

## soak: mixed traffic with node kills, drains, reloads and certificate rotation (SOAK, default 10m)
SOAK ?= 10m
soak:
	KCLB_SOAK=$(SOAK) $(GO) test -count=1 -run Soak -timeout 0 -v ./reliability/

vet:
	$(GO) vet ./...

clean:
	rm -rf bin

## install: the binary, the systemd unit (ExecStart rewritten to $(PREFIX)/bin/kclb),
## sysusers/tmpfiles entries and the example configuration; see deploy/README.md
UNITDIR ?= /lib/systemd/system
.PHONY: install
install: build
	install -D -m 0755 bin/kclb $(DESTDIR)$(PREFIX)/bin/kclb
	install -d $(DESTDIR)$(UNITDIR)
	sed 's#/usr/local/bin/kclb#$(PREFIX)/bin/kclb#g' deploy/kclb.service > $(DESTDIR)$(UNITDIR)/kclb.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/kclb.service
	install -D -m 0644 deploy/kclb.sysusers $(DESTDIR)/usr/lib/sysusers.d/kclb.conf
	install -D -m 0644 deploy/kclb.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/kclb.conf
	install -D -m 0644 config.example.toml $(DESTDIR)/etc/kclb/config.toml.example
