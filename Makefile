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

.PHONY: bench-rate bench-ingest demo test services-up services-down services-status build lint fmt clean check-modern-clickhouse

demo: services-up
	$(CARGO) build --bin meterline
	./target/debug/meterline demo $(DEMO_ARGS)

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
	./target/release/bench-rate run --customers $(BENCH_RATE_CUSTOMERS) --dir .local/bench/rate

# Ingest benchmark: pre-load a stream (1 and 100 events per message), then in the same run the raw
# JetStream consume rate of that stream and Meterline ingest draining it into the durable ledger.
BENCH_INGEST_EVENTS_1 ?= 1000000
BENCH_INGEST_EVENTS_100 ?= 10000000
bench-ingest: services-up
	$(CARGO) build --release -p meterline-benches --bin bench-ingest
	./target/release/bench-ingest load --per-message 1 --events $(BENCH_INGEST_EVENTS_1)
	./target/release/bench-ingest raw --per-message 1
	./target/release/bench-ingest run --per-message 1
	./target/release/bench-ingest load --per-message 100 --events $(BENCH_INGEST_EVENTS_100)
	./target/release/bench-ingest raw --per-message 100
	./target/release/bench-ingest run --per-message 100
	./target/release/bench-ingest report
