# ovsgate: build, test and run against a throwaway Open vSwitch.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -o errexit -o nounset -o pipefail -c

GO      ?= go
# The release these sources make. The manifests pin the image to this tag
# (a test checks that they agree); `ovsgate version` prints it with the commit.
RELEASE := v0.4.0
VERSION ?= $(RELEASE)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME ?= 20s
# The oldest Go that builds this module (go.mod's go line).
GO_MIN  := 1.26

# golangci-lint, pinned; installed into bin/tools by `make lint` (the Go build
# cache makes that quick after the first time).
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := bin/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)

# Helm, pinned the same way; the deploy tests render the Kube-OVN and
# OVN-Kubernetes charts with it (offline, `helm template`).
HELM_VERSION := v4.3.2
HELM := bin/tools/helm-$(HELM_VERSION)

.PHONY: all build test vet lint deps test-deps need-go need-cc run fuzz bench clean

all: build

build: need-go
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ovsgate .

# need-go and need-cc say in one line what is missing, rather than letting a
# recipe fail with "command not found".
need-go:
	@command -v $(GO) >/dev/null || { echo "make: Go $(GO_MIN) or newer is needed and '$(GO)' is not on PATH: install it from https://go.dev/dl (or set GO=/path/to/go)" >&2; exit 1; }
	@v=$$($(GO) env GOVERSION); v=$${v#go}; [ "$$(printf '%s\n%s\n' "$(GO_MIN)" "$$v" | sort -V | head -n1)" = "$(GO_MIN)" ] || { echo "make: Go $(GO_MIN) or newer is needed, '$(GO)' is $$v" >&2; exit 1; }

need-cc:
	@command -v cc >/dev/null || { echo "make: a C compiler is needed for the race detector (make test): apt-get install gcc" >&2; exit 1; }

# deps installs what make run needs and is missing: Open vSwitch. Go modules
# are fetched by the go command itself.
deps: need-go
	hack/install-ovs.sh
	$(GO) mod download

# test-deps adds what the tests need: etcd, systemd-analyze (it checks the
# unit file; Debian's systemd package) and a kube-apiserver built from the
# Go module proxy (cached outside the checkout, so only the first run on a
# machine pays for it: 7 to 13 minutes), then the kube-scheduler of the same
# release (2 to 3 minutes more) and node-readiness-controller from its release
# archive beside the checkout (about 5 minutes) for the end-to-end tests in
# e2e/, and promtool for the alerts' unit tests (taken out of Debian's
# prometheus package; no Prometheus server). A cached build costs nothing.
test-deps: deps need-cc
	hack/install-promtool.sh
	hack/kube-apiserver.sh deps
	command -v systemd-analyze >/dev/null || hack/apt-install.sh systemd
	hack/kube-apiserver.sh build >/dev/null
	hack/kube-apiserver.sh build kube-scheduler >/dev/null
	hack/node-readiness-controller.sh build >/dev/null

vet: need-go
	$(GO) vet ./...

# lint runs the linters of .golangci.yml; any finding fails it.
lint: need-go $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	mkdir -p bin/tools
	GOBIN=$(CURDIR)/bin/tools $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv bin/tools/golangci-lint $@

$(HELM):
	mkdir -p bin/tools
	GOBIN=$(CURDIR)/bin/tools $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv bin/tools/helm $@

test: test-deps lint vet $(HELM)
	$(GO) test -race -count=1 -timeout 15m ./...

# run starts a sandbox OVS with br-int under _sandbox/ and serves the gate for it.
run: deps build
	hack/run.sh

# fuzz fuzzes every parser, each from its committed seed corpus in
# appctl/testdata/fuzz (what a real ovs-vswitchd says, and any input that
# once failed).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseDPFeatures$$' -fuzztime $(FUZZTIME) ./appctl/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeReply$$' -fuzztime $(FUZZTIME) ./appctl/
	$(GO) test -run '^$$' -fuzz '^FuzzParseDPIFShow$$' -fuzztime $(FUZZTIME) ./appctl/

# fuzz-seeds captures the seed corpus again from the ovs-vswitchd of a
# sandbox (after an upgrade of Open vSwitch); go test checks it against the
# installed release.
.PHONY: fuzz-seeds
fuzz-seeds: deps
	$(GO) test -count=1 -run '^TestCaptureFuzzSeeds$$' ./appctl/ -args -update-fuzz-seeds

clean:
	-hack/ovs-sandbox.sh stop _sandbox >/dev/null 2>&1
	rm -rf bin _sandbox _run

# bench runs the root package's benchmarks (*_bench_test.go), which measure
# ovsgate against the shell gates it replaces and its own targets, and writes
# BENCHMARKS.md (from hack/bench/BENCHMARKS.md.tmpl) and benchmarks-latency.svg
# (about fifteen minutes: a minute of idle CPU, a compressed day of probes,
# 10,000 ports in the sandbox for the scale figures, and a kube-apiserver for
# the API load), then the fleet's section (bench-fleet, about five minutes
# more), appended to BENCHMARKS.md.
bench: deps
	$(GO) run ./hack/bench -out BENCHMARKS.md
	mkdir -p _run
	$(MAKE) --no-print-directory bench-fleet FLEET_FLAGS='$(FLEET_FLAGS) -fleet.md=$(CURDIR)/_run/fleet.md'
	{ echo; cat _run/fleet.md; } >> BENCHMARKS.md

# bench-fleet simulates FLEET_NODES nodes, each with ovsgate's node-condition
# writer, against a real kube-apiserver beside as many simulated kubelets,
# and prints what each costs the control plane (about five minutes at
# 1,000 nodes; its section of BENCHMARKS.md is copied from the output, or
# written to a file with FLEET_FLAGS=-fleet.md=FILE).
FLEET_NODES ?= 1000
FLEET_FLAGS ?=
.PHONY: bench-fleet
bench-fleet: need-go
	hack/kube-apiserver.sh deps
	hack/kube-apiserver.sh build >/dev/null
	$(GO) test -v -run '^$$' -bench '^BenchmarkFleet$$' -benchtime 1x -count 1 -timeout 20m ./hack/fleet -fleet.nodes=$(FLEET_NODES) $(FLEET_FLAGS)
