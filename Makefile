# ovsgate: build, test and run against a throwaway Open vSwitch.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME ?= 20s

# golangci-lint, pinned; installed into bin/tools by `make lint` (the Go build
# cache makes that quick after the first time).
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)

.PHONY: all build test vet lint deps run fuzz bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ovsgate .

# deps installs what the tests need and is missing: Open vSwitch, etcd, and
# a kube-apiserver built from the Go module proxy (cached outside the
# checkout, so only the first run on a machine pays for it: 7 to 13 minutes).
# Go modules are fetched by the go command itself.
deps:
	hack/install-ovs.sh
	hack/kube-apiserver.sh deps
	hack/kube-apiserver.sh build >/dev/null
	$(GO) mod download

vet:
	$(GO) vet ./...

# lint runs the linters of .golangci.yml; any finding fails it.
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	mkdir -p bin/tools
	GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv bin/tools/golangci-lint $@

test: deps lint vet
	$(GO) test -race -count=1 -timeout 15m ./...

# run starts a sandbox OVS with br-int under _sandbox/ and serves the gate for it.
run: deps build
	hack/run.sh

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseDPFeatures$$' -fuzztime $(FUZZTIME) ./appctl/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeReply$$' -fuzztime $(FUZZTIME) ./appctl/

clean:
	-hack/ovs-sandbox.sh stop _sandbox >/dev/null 2>&1
	rm -rf bin _sandbox _run

# bench measures ovsgate against the shell gates it replaces and writes
# BENCHMARKS.md (about five minutes: a minute of idle CPU, and adding
# 10,000 ports to the sandbox for the scale figures).
bench: deps build
	$(GO) run ./hack/bench -out BENCHMARKS.md
