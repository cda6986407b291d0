# kubeha: `make plan STACK=dev` shows what a stack builds, offline.
#         `make test` runs every test tier.
STACK     ?= dev
FUZZTIME  ?= 10s
GO        ?= go
SHELL     := /bin/bash
.SHELLFLAGS := -o pipefail -c

# Tests that run real binaries and print measured numbers; run verbosely.
REAL_TESTS := TestNodeContainersBoot|TestCertRenewalWithTheRealKubeadm|TestEtcdNodesBootFromTheirUserData|TestAWSCLIAgainstTheDouble|TestImagesImportIntoContainerd|TestEtcdUserDataPassesRealTools|TestControlPlaneUserDataPassesRealTools|TestWorkerUserDataPassesRealTools|TestStackKubeadmConfigsValidate|TestManifestsPassTheAPIServersSchemas

.PHONY: plan rehearse test deps check tools unit real rehearsal rehearsal-upgrade fuzz docs bench

plan:
	$(GO) run ./cmd/kubeha plan --stack $(STACK)

# The local HA rehearsal: the stack's cluster in network namespaces, drilled
# (Linux, root, haproxy). Prints a table and writes rehearsal-report.json.
rehearse: tools
	$(GO) run ./cmd/kubeha rehearse --stack $(STACK)

test: deps check tools unit real rehearsal fuzz

# The Debian packages the tiers below need, installed when run as root and
# missing (hack/deps.sh); elsewhere it says what is missing.
deps:
	./hack/deps.sh

# Formatting and vet: a diff here fails the build.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd examples/consumer && $(GO) vet ./...

# Pinned etcd, Kubernetes (kubeadm, kubelet, the control plane), containerd,
# runc and kubeha's pause, built from Go modules into
# ~/.cache/kubeha/tools (outside the clone; $KUBEHA_CACHE overrides).
tools:
	./hack/tools.sh

# Tier 1: unit tests under Pulumi mocks: components, every stack file, the
# CLI, docs and schema drift, config fuzz seeds, and the example consumer
# (its own module, importing kubeha as another program would).
unit:
	$(GO) test -count=1 -skip '^($(REAL_TESTS))$$' ./...
	cd examples/consumer && $(GO) test -count=1 ./...

# Tiers 2 and 3: nodes as Debian 12 system containers (the rootfs is built
# once by hack/rootfs.sh into ~/.cache/kubeha/rootfs; needs root,
# debootstrap, systemd-nspawn); rendered user-data through cloud-init schema, shellcheck
# and kubeadm's own validation; kubeha's own manifests through a real
# kube-apiserver's schemas (dry run); the real AWS CLI against the AWS
# double; the dev stack's etcd members booted from their launch templates,
# then snapshotted to the S3 double (needs root). Verbose, so the measured
# numbers show in the log.
real:
	$(GO) test -count=1 -v -run '^($(REAL_TESTS))$$' ./internal/lab ./internal/awsdouble ./internal/bootstrap ./internal/addons ./tests \
	  | grep -E '^(--- |ok|FAIL|PASS)|MEASURED|SKIPPED|refused|_test.go'

# What the rehearsal targets print of the test's verbose log.
REHEARSAL_LINES := '^(--- |ok|FAIL|PASS)|SKIPPED|_test.go|^\s+(drill|[a-k]|u|d-tcp)[[:space:]:]|^\s+upgrade |^\s+\S+ \((etcd member|control plane|worker), |^\s+longest unheld|acknowledged writes|^\s+(add-ons|join token|worker join token|worker boot|kube-bench|kubelet certificates|certificate renewal|workload identity|kube-proxy|data plane|service|scheduling)|^\s+(gap|denied|signed) '

# The whole log, and on failure the whole failure: its message carries the
# node's log, which the lines above leave out. The test's findings come
# last, where a reader of the log's tail sees them.
REHEARSAL_LOG := .cache/rehearsal-test.log
REHEARSAL_FAILURE := echo "--- the failure in full (all of it in $(REHEARSAL_LOG)):"; \
  sed -n '/rehearsal failed:/,/^--- FAIL/p' $(REHEARSAL_LOG) | tail -n 300; \
  echo "--- what the test found wrong:"; \
  grep -E '^\s+\S+_test\.go:[0-9]+: ' $(REHEARSAL_LOG) | grep -v 'MEASURED:' | cut -c1-2000

# Tier 4: the rehearsal as a test (build tag rehearsal): every etcd and
# control-plane node booted from its user-data, the security baseline held,
# no lost writes, and
# every drill within what the stack's configuration allows (the API back, the
# Leases moved, a new etcd leader, a failed node out of rotation); /readyz
# beating TCP, which never takes out a node cut from etcd.
rehearsal:
	@echo "NOT IN make test: drill u, the upgrade (13 to 80 min on 2 cores, by how busy they are; on a busy machine more than CI's 90-min run leaves); run make rehearsal-upgrade"
	@mkdir -p .cache
	$(GO) test -count=1 -tags rehearsal -timeout 80m -v -run '^TestRehearsal$$' ./internal/rehearsal \
	  | tee $(REHEARSAL_LOG) | grep -E $(REHEARSAL_LINES) || { $(REHEARSAL_FAILURE); exit 1; }

# Drill u alone: a dev cluster created at the release before the stack's,
# upgraded to it node by node under the write probe (23 min on a quiet
# 2-core machine, 56 to 105 min on a saturated one, setup included).
rehearsal-upgrade: tools
	@mkdir -p .cache
	$(GO) test -count=1 -tags rehearsal -timeout 150m -v -run '^TestRehearsalUpgrade$$' ./internal/rehearsal \
	  | tee $(REHEARSAL_LOG) | grep -E $(REHEARSAL_LINES) || { $(REHEARSAL_FAILURE); exit 1; }

# A short coverage-guided run of each config fuzzer; `make fuzz FUZZTIME=10m` for longer.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseStackFile$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./internal/config
	$(GO) test -run='^$$' -fuzz='^FuzzParseRaw$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./internal/config

# How long the whole prod program takes to evaluate under mocks.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 20x ./tests

# Regenerate the config reference inside README.md from components.ClusterArgs.
docs:
	$(GO) run ./cmd/kubeha docs README.md
