# picket — the two commands that matter: `make run` and `make test`.
#
# `make test` is what CI runs (through .ci/run, as root, on a fresh Debian machine): it
# installs what it needs, then lints and runs every test with the race detector.

SHELL   := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/picket-agent/picket/agent.Version=$(VERSION)
GOFILES  = $(shell git ls-files --cached --others --exclude-standard '*.go')
# The compiler that generates the BPF objects, pinned: the committed objects are what this
# clang makes of bpf/ (the libbpf headers are vendored in bpf/include), so regenerating
# them anywhere gives the same bytes, and CI can check they are fresh.
DEB_GEN_NEEDS := clang-14:clang-14 llvm-strip-14:llvm-14
# Debian packages the tests need, by the command that shows each is there. setpriv runs
# picket without capabilities in the eBPF degradation test. influxdb is the influxtest
# server (installing it may start a system influxd on :8086; tests run their own on free
# ports and leave that one alone).
DEB_NEEDS := gcc:gcc git:git carbon-cache:graphite-carbon carbon-c-relay:carbon-c-relay whisper-fetch:python3-whisper influxd:influxdb setpriv:util-linux $(DEB_GEN_NEEDS)
# …and the baselines the benchmarks measure picket against.
DEB_BENCH_NEEDS := prometheus-node-exporter:prometheus-node-exporter

.PHONY: all build run once test deps apt-install lint tidy-check generate-check bench generate clean

all: build

## build: static bin/picket with the version stamped in
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/picket ./agent/cmd/picket

## run: the agent on this host, Graphite plaintext to stdout every 10s (Ctrl-C stops it)
run: build
	./bin/picket run $(ARGS)

## once: one collection as a table
once: build
	./bin/picket once --format table $(ARGS)

## test: install what is missing, lint, check go.mod is tidy and the BPF objects fresh, run every test with -race
test: deps lint tidy-check generate-check
	$(GO) test -race -count=1 ./...

## deps: install the Debian packages the tests need, where missing
deps:
	@command -v $(GO) >/dev/null || { echo "Go not found: install it at /usr/local/go" >&2; exit 1; }
	@$(MAKE) --no-print-directory apt-install NEEDS="$(DEB_NEEDS)"

# apt-install: install the packages of NEEDS (command:package pairs) whose command is missing
apt-install:
	@missing=""; for need in $(NEEDS); do \
		command -v "$${need%%:*}" >/dev/null || missing="$$missing $${need##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## lint: gofmt, go vet, staticcheck (pinned in go.mod as a tool)
lint:
	@unformatted=$$(gofmt -l $(GOFILES)); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

## tidy-check: go.mod and go.sum are exactly what `go mod tidy` makes
tidy-check:
	$(GO) mod tidy -diff

## bench: every benchmark, 6 runs each, baselines included; compare runs with benchstat
bench:
	@$(MAKE) --no-print-directory apt-install NEEDS="$(DEB_BENCH_NEEDS)"
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.txt

## generate: regenerate the BPF objects and their Go loaders (bpf2go, clang-14)
generate:
	@$(MAKE) --no-print-directory apt-install NEEDS="$(DEB_GEN_NEEDS)"
	$(GO) generate ./bpf/...

# generate-check: the committed BPF objects are what `make generate` makes of the sources
# (compared file by file, so it also holds in a tree with uncommitted edits)
generate-check:
	@sum() { find bpf -type f | LC_ALL=C sort | xargs sha256sum; }; \
	before=$$(sum); $(MAKE) --no-print-directory generate || exit 1; \
	if [ "$$(sum)" != "$$before" ]; then \
		echo "the generated BPF files were stale; run make generate and commit:"; \
		git status --short -- bpf/; exit 1; \
	fi

clean:
	rm -rf bin bench.txt
