# kubeha: `make plan STACK=dev` shows what a stack builds, offline.
#         `make test` runs every test tier.
STACK     ?= dev
FUZZTIME  ?= 10s
GO        ?= go

.PHONY: plan test check unit fuzz docs

plan:
	$(GO) run ./cmd/kubeha plan --stack $(STACK)

test: check unit fuzz

# Formatting and vet: a diff here fails the build.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Tier 1: unit tests under Pulumi mocks, every stack file, CLI, docs drift,
# and the fuzz seed corpora.
unit:
	$(GO) test -count=1 ./...

# A short coverage-guided run of each config fuzzer; `make fuzz FUZZTIME=10m` for longer.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseStackFile$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./internal/config
	$(GO) test -run='^$$' -fuzz='^FuzzParseRaw$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1s ./internal/config

# Regenerate the config reference inside README.md from internal/config.
docs:
	$(GO) run ./cmd/kubeha docs README.md
