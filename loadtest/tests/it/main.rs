//! Integration tests of the load test against the real NATS and ClickHouse (endpoints from
//! `METERLINE__NATS__URL` and `METERLINE__CLICKHOUSE__URL`, dev defaults otherwise). Each test
//! runs in its own stream, ledger and database, and removes them.

mod transports;
