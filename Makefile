# egresswatch build, test and benchmark entry points. `make test` is what CI
# runs: it installs what the tests need, then lints and runs every test.

GO        ?= go
BIN       ?= bin/egresswatch
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
LINT      := $(GOBIN)/golangci-lint
LINT_VERSION := v2.15.0
FUZZTIME  ?= 30s
FUZZJOBS  ?= 3
PCAPS     ?= ../shared/data/pcaps

export CGO_ENABLED = 0

IMAGE     ?= ghcr.io/egresswatch/egresswatch:$(VERSION)

.PHONY: all build test unit lint setup bench bench-capture fuzz static-check image clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/egresswatch

# The whole suite, as CI runs it.
test: setup lint static-check unit fuzz

setup:
	bash scripts/setup.sh

unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...

lint: $(LINT)
	$(GO) vet ./...
	$(LINT) run ./...

$(LINT):
	$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(LINT_VERSION)

# The binary must be static: no cgo, no dynamic loader.
static-check: build
	@if file $(BIN) | grep -q 'dynamically linked'; then echo "$(BIN) is not static"; exit 1; fi
	@echo "$(BIN): static"

# The container image (static binary on scratch); needs a Docker engine.
image:
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./capture ./flow ./baseline ./detect ./engine | tee bench.txt
	$(GO) test -run '^$$' -bench NewDestinationToWebhook -benchtime 300x ./agent | tee -a bench.txt
	bash scripts/bench-replay.sh

# Live capture beside tcpdump, pmacctd and tshark (root; about 10 minutes,
# BENCH_QUICK=1 for a one-minute smoke run); rewrites a section of
# docs/benchmarks.md. Not part of `make test`.
bench-capture:
	bash scripts/bench-capture.sh

# Every native fuzz target for FUZZTIME, FUZZJOBS at a time; a crasher
# fails and is kept under the package's testdata/fuzz as a regression test.
fuzz:
	FUZZJOBS=$(FUZZJOBS) bash scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin bench.txt
