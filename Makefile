# synod developer targets. The default test run is `go test ./...`.
GO ?= go
# PROTOCOL picks the protocol of `make sim` and `make soak` (raft, multipaxos).
PROTOCOL ?= raft

.PHONY: test race vet sim soak bench bench-core bench-protocols ci

test:
	$(GO) test ./...

race:
	$(GO) test -race -short ./sim/... ./cmd/... ./storage/... ./transport/... ./server/... ./node/...

vet:
	$(GO) vet ./...
	cd bench && $(GO) vet ./...

# The CI swarm: 300 seeds, each drawing its own cluster size and fault mix.
sim:
	$(GO) run ./cmd/synod sim --protocol $(PROTOCOL) --seeds 1-300

# A long soak: 10,000 seeds. Takes a while; prints every failing seed.
# `make soak PROTOCOL=multipaxos` soaks Multi-Paxos.
soak:
	$(GO) run ./cmd/synod sim --protocol $(PROTOCOL) --seeds 1-10000

# Core benchmarks: synod's Raft against etcd-io/raft and hashicorp/raft, in process.
bench-core:
	cd bench && $(GO) run ./cmd/corebench

# Raft, Multi-Paxos and EPaxos through the same in-process loop at 0%, 2%
# and 100% conflicting commands (CONFLICTS=0,2,100).
CONFLICTS ?= 0,2,100
bench-protocols:
	cd bench && $(GO) run ./cmd/protobench -conflicts $(CONFLICTS)

bench: bench-core bench-protocols
	$(GO) test -run '^$$' -bench . -benchmem ./raft/ ./paxos/ ./sim/

ci:
	bash .ci/run

# synod against etcd end to end: 3-member clusters of real processes on loopback,
# both driven by etcd's benchmark tool (builds etcd and the tool into ~/.cache/synod-bench).
# ETCDBENCH_FLAGS passes flags to it; the protocol comparison at 0%, 2% and 100%
# conflicting puts (bench/etcd/README.md):
#   make bench-etcd ETCDBENCH_FLAGS='-synod-protocol raft,multipaxos,epaxos -conflicts 0,2,100 -workloads put,range -rounds 7 -put-total 30000 -range-total 30000'
ETCDBENCH_FLAGS ?=
bench-etcd:
	cd bench && $(GO) run ./cmd/etcdbench $(ETCDBENCH_FLAGS)
.PHONY: bench-etcd
