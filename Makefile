# Meterline: the two commands that do all the set-up on a fresh machine.
#   make demo   local services up, then the whole pipeline on synthetic data (1M events)
#   make test   local services up, then every test (unit, golden, integration)

SHELL := /bin/bash
CARGO ?= cargo
SERVICES := deploy/local/services.sh
export METERLINE__NATS__URL ?= nats://127.0.0.1:14222
export METERLINE__CLICKHOUSE__URL ?= http://127.0.0.1:18123

BENCH_RATE_EVENTS ?= 100000000
BENCH_RATE_CUSTOMERS ?= 100000
BENCH_CLOSE_CUSTOMERS ?= 100000
BENCH_CLOSE_EVENTS ?= 4000000
# Load test: the sweep starts here and steps up by LOADTEST_STEP_PERCENT; the run is at half the
# maximum it finds (LOADTEST_RATE overrides) for LOADTEST_SECS.
LOADTEST_START ?= 2000
LOADTEST_STEP_PERCENT ?= 150
LOADTEST_STEP_SECS ?= 10
LOADTEST_SECS ?= 60
LOADTEST_PROFILE ?= release
# nats: publish to JetStream directly; http: POST each event to the HTTP ingest started in-process
# (results then go to loadtest-http-*.json). LOADTEST_IN_FLIGHT bounds sends awaiting an answer.
LOADTEST_TRANSPORT ?= nats
LOADTEST_IN_FLIGHT ?= 8192
LOADTEST_OUT = $(if $(filter http,$(LOADTEST_TRANSPORT)),loadtest-http,loadtest)
# `make loadtest-http`: a shorter sweep and run; 1,024 requests in flight (each holds a loopback
# connection, two file descriptors in the one process).
LOADTEST_HTTP_START ?= 1000
LOADTEST_HTTP_STEP_SECS ?= 5
LOADTEST_HTTP_SECS ?= 30
LOADTEST_HTTP_IN_FLIGHT ?= 1024
# `make loadtest-batch` (issue 4): producer-batched load over NATS, LOADTEST_BATCH_EVENTS events
# per JetStream message at LOADTEST_BATCH_RATE events/s for LOADTEST_BATCH_SECS, in its own stream
# (lt_batch_usage), database (lt_batch_loadtest) and ledger.
LOADTEST_BATCH_RATE ?= 100000
LOADTEST_BATCH_EVENTS ?= 100
LOADTEST_BATCH_SECS ?= 60
BENCH_RESULTS := .local/bench/results

.PHONY: screenshots bench bench-close bench-ingest bench-spend loadtest loadtest-http loadtest-batch bench-rate demo test services-up services-down services-status build lint fmt clean check-modern-clickhouse

demo: services-up
	$(CARGO) build --bin meterline
	./target/debug/meterline demo $(DEMO_ARGS)

# docs/img/invoice-*.png: one finalized demo invoice per locale, rendered to PDF and PNG (after make demo).
screenshots:
	bash deploy/local/screenshots.sh

test: services-up
	$(CARGO) test --workspace --no-fail-fast

services-up:
	bash $(SERVICES) up

services-down:
	bash $(SERVICES) down

services-status:
	bash $(SERVICES) status

build:
	$(CARGO) build --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf out

# The migrations and documented queries on a current ClickHouse engine (chdb-core, in-process;
# about 850 MB, installed into .local/chdb on first use). Dev and CI servers are 18.16.
check-modern-clickhouse:
	test -d .local/chdb/chdb || python3 -m pip install --quiet --target .local/chdb chdb-core==26.9.0
	python3 deploy/local/check_modern_clickhouse.py

# Rating benchmark: a synthetic ledger (100M events, 100k customers, 5 meters with group-bys),
# then the full rating beside the plain DataFusion GROUP BY over the same files.
bench-rate:
	$(CARGO) build --release -p meterline-benches --bin bench-rate
	./target/release/bench-rate generate --events $(BENCH_RATE_EVENTS) --customers $(BENCH_RATE_CUSTOMERS) --dir .local/bench/rate
	./target/release/bench-rate run --customers $(BENCH_RATE_CUSTOMERS) --dir .local/bench/rate --json $(BENCH_RESULTS)/bench-rate.json

# Current spend, incremental: a refresher reads a 10M-event ledger (100k customers), then one new
# segment of 100k events arrives and the next refresh reads only it; beside a full read.
BENCH_SPEND_EVENTS ?= 10000000
BENCH_SPEND_NEW ?= 100000
bench-spend:
	$(CARGO) build --release -p meterline-benches --bin bench-rate
	./target/release/bench-rate spend --events $(BENCH_SPEND_EVENTS) --new $(BENCH_SPEND_NEW) --customers $(BENCH_RATE_CUSTOMERS) --dir .local/bench/spend

# Ingest benchmark: pre-load a stream (1 and 100 events per message), then in the same run the raw
# JetStream consume rate of that stream and Meterline ingest draining it into the durable ledger.
# `sync` after each load: the pre-load's writeback (2.3 GB at 100 per message) is not measured.
# Ingest runs with glibc's MALLOC_ARENA_MAX=4, as README's operations section recommends for
# `meterline ingest` (peak RSS ~0.73 GiB instead of 0.88-1.03 GiB, same speed; docs/PERFORMANCE.md).
BENCH_INGEST_EVENTS_1 ?= 1000000
BENCH_INGEST_EVENTS_100 ?= 10000000
INGEST_MALLOC_ARENA_MAX ?= 4
bench-ingest: services-up
	$(CARGO) build --release -p meterline-benches --bin bench-ingest
	./target/release/bench-ingest load --per-message 1 --events $(BENCH_INGEST_EVENTS_1)
	sync
	./target/release/bench-ingest raw --per-message 1
	MALLOC_ARENA_MAX=$(INGEST_MALLOC_ARENA_MAX) ./target/release/bench-ingest run --per-message 1
	./target/release/bench-ingest load --per-message 100 --events $(BENCH_INGEST_EVENTS_100)
	sync
	./target/release/bench-ingest raw --per-message 100
	MALLOC_ARENA_MAX=$(INGEST_MALLOC_ARENA_MAX) ./target/release/bench-ingest run --per-message 100
	./target/release/bench-ingest report --json $(BENCH_RESULTS)/bench-ingest.json

# Period close at scale (issue 5): 100k customers, about 1.1M invoice lines, into ClickHouse
# database lt_bench_close, beside a plain INSERT of the same rows. Needs ClickHouse running.
bench-close:
	$(CARGO) build --release -p meterline-benches --bin bench-close
	./target/release/bench-close --customers $(BENCH_CLOSE_CUSTOMERS) --events $(BENCH_CLOSE_EVENTS) --extra-meters 4 \
		--dir .local/bench/close --database lt_bench_close --json $(BENCH_RESULTS)/bench-close.json

# Open-loop load test with in-process ingest (stream lt_usage, database lt_loadtest), over
# LOADTEST_TRANSPORT: a --find-max sweep, then a run at half the maximum, each beside the raw
# JetStream ceiling measured in the same run. Needs NATS and ClickHouse running.
loadtest:
	$(CARGO) build --profile $(LOADTEST_PROFILE) -p meterline-loadtest --bin loadtest
	./target/$(LOADTEST_PROFILE)/loadtest --transport $(LOADTEST_TRANSPORT) --in-flight $(LOADTEST_IN_FLIGHT) \
		--find-max --rate $(LOADTEST_START) --step-percent $(LOADTEST_STEP_PERCENT) \
		--step-secs $(LOADTEST_STEP_SECS) --quiet --json $(BENCH_RESULTS)/$(LOADTEST_OUT)-sweep.json
	rate=$${LOADTEST_RATE:-$$(python3 -c 'import json;print(max(1,json.load(open("$(BENCH_RESULTS)/$(LOADTEST_OUT)-sweep.json"))["max_sustainable_rate"]//2))')}; \
	./target/$(LOADTEST_PROFILE)/loadtest --transport $(LOADTEST_TRANSPORT) --in-flight $(LOADTEST_IN_FLIGHT) \
		--rate $$rate --duration $(LOADTEST_SECS) --json $(BENCH_RESULTS)/$(LOADTEST_OUT)-run.json

# The same over HTTP (POST /v1/events, one event per request), shorter.
loadtest-http:
	$(MAKE) loadtest LOADTEST_TRANSPORT=http LOADTEST_IN_FLIGHT=$(LOADTEST_HTTP_IN_FLIGHT) LOADTEST_START=$(LOADTEST_HTTP_START) \
		LOADTEST_STEP_SECS=$(LOADTEST_HTTP_STEP_SECS) LOADTEST_SECS=$(LOADTEST_HTTP_SECS)

# Producer-batched over NATS: LOADTEST_BATCH_EVENTS events per message (a JSON array of consecutive
# events of one partition, sent when its last event is due), one run at LOADTEST_BATCH_RATE, every
# latency from each event's own scheduled time. Needs NATS and ClickHouse running.
loadtest-batch:
	$(CARGO) build --profile $(LOADTEST_PROFILE) -p meterline-loadtest --bin loadtest
	$(or $(CARGO_TARGET_DIR),target)/$(LOADTEST_PROFILE)/loadtest --transport nats --in-flight $(LOADTEST_IN_FLIGHT) \
		--rate $(LOADTEST_BATCH_RATE) --events-per-message $(LOADTEST_BATCH_EVENTS) --duration $(LOADTEST_BATCH_SECS) \
		--stream lt_batch_usage --database lt_batch_loadtest --ledger .local/loadtest/batch-ledger \
		--json $(BENCH_RESULTS)/loadtest-batch-run.json

# Every benchmark, then docs/PERFORMANCE.md (generated part) and docs/img/loadtest-latency.png
# regenerated from their JSON. Needs NATS and ClickHouse running; about 45 min with release builds.
bench:
	$(CARGO) bench -p meterline-benches
	$(MAKE) bench-ingest
	$(MAKE) bench-rate
	$(MAKE) bench-close
	$(MAKE) loadtest
	$(MAKE) loadtest-http
	$(CARGO) run --release -p meterline-loadtest --bin perf-doc -- --results $(BENCH_RESULTS)
