#!/usr/bin/env python3
"""Checks that Meterline's ClickHouse migrations and documented queries also run on a current
ClickHouse engine (chdb-core embeds one in-process), since dev and CI servers are 18.16.

Usage: make check-modern-clickhouse   (installs chdb-core into .local/chdb on first use)
"""
import glob
import os
import sys

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, ".local", "chdb"))
from chdb import session  # noqa: E402

def statements(sql):
    out = []
    for part in sql.split(";\n"):
        lines = [l for l in part.splitlines() if not l.lstrip().startswith("--")]
        s = "\n".join(lines).strip().rstrip(";").strip()
        if s:
            out.append(s)
    return out

s = session.Session()
print("engine:", s.query("SELECT version()", "CSV").bytes().decode().strip())
s.query("CREATE DATABASE IF NOT EXISTS meterline_check")
s.query("USE meterline_check")
for path in sorted(glob.glob(os.path.join(root, "schemas", "migrations", "*.sql"))):
    for stmt in statements(open(path, encoding="utf-8").read()):
        s.query(stmt)
        try:
            s.query(stmt)  # idempotent: IF NOT EXISTS
        except Exception as e:
            # 18.16 has no ADD COLUMN IF NOT EXISTS; such a migration runs once (recorded in
            # schema_migrations), so only its repetition may fail, and only as a duplicate column.
            # (`migrate` takes "already exists" as applied; current servers say DUPLICATE_COLUMN.)
            if not (stmt.startswith("ALTER TABLE") and "ADD COLUMN" in stmt
                    and ("already exists" in str(e) or "DUPLICATE_COLUMN" in str(e))):
                raise
    print("applied twice:", os.path.basename(path))
s.query("""INSERT INTO invoices (invoice_id, subscription_id, customer, period, period_start, period_end,
  currency, plan, plan_version, subtotal, tax, total, line_count, status, revision, content_hash, issued_at, version)
  VALUES (generateUUIDv4(), 'sub-1', 'acme', '2026-10', '2026-10-01 00:00:00', '2026-11-01 00:00:00', 'USD', 'basic', 1,
  13.28, 0.96, 14.24, 4, 'finalized', 0, 1, '2026-11-01 00:00:00', 1)""")
got = s.query("SELECT currency, count() AS invoices, sum(total) AS billed FROM invoices FINAL "
              "WHERE period = '2026-10' GROUP BY currency ORDER BY currency", "CSV").bytes().decode().strip()
assert got == '"USD",1,14.24', got
print("documented query:", got)

# The ledger mirror (migration 0004): rows into usage_events feed usage_hourly through the
# materialized view; SummingMergeTree adds up Decimal sums on merge; the documented dashboard
# queries of docs/CLICKHOUSE.md return the expected figures.
s.query("""INSERT INTO usage_events (event_key, event_id, source, customer, meter, event_time, value, unique_value,
  group_key, segment, ingested_at, data) VALUES
  (unhex('000102030405060708090a0b0c0d0e0f'), 't1', 'test', 'alice', 'tokens', '2026-10-05 10:10:00', 0.000000001, NULL, '{"model":"gpt"}', 'seg-a', '2026-10-05 10:11:00', '{}'),
  (unhex('100102030405060708090a0b0c0d0e0f'), 't2', 'test', 'alice', 'tokens', '2026-10-05 10:20:00', 12345.5, NULL, '{"model":"gpt"}', 'seg-a', '2026-10-05 10:21:00', '{}'),
  (unhex('200102030405060708090a0b0c0d0e0f'), 'a1', 'test', 'alice', 'calls', '2026-10-05 11:00:00', NULL, NULL, '', 'seg-a', '2026-10-05 11:01:00', '{}')""")
s.query("""INSERT INTO usage_events (event_key, event_id, source, customer, meter, event_time, value, unique_value,
  group_key, segment, ingested_at, data) VALUES
  (unhex('300102030405060708090a0b0c0d0e0f'), 't3', 'test', 'alice', 'tokens', '2026-10-05 10:30:00', 7, NULL, '{"model":"gpt"}', 'seg-b', '2026-10-05 10:31:00', '{}')""")
s.query("INSERT INTO mirror_segments (segment, rows, mirrored_at) VALUES ('seg-a', 3, '2026-10-05 11:02:00'), ('seg-b', 1, '2026-10-05 11:03:00')")

def csv(sql):
    return s.query(sql, "CSV").bytes().decode().strip()

got = csv("""SELECT meter, count() AS events, sum(value) AS value FROM usage_events
  WHERE customer = 'alice' AND event_time >= '2026-10-01 00:00:00' AND event_time < '2026-11-01 00:00:00'
  GROUP BY meter ORDER BY meter""")
assert got == '"calls",1,\\N\n"tokens",3,12352.500000001', repr(got)
print("usage_events query:", got.replace("\n", " | "))
hourly_sql = """SELECT hour, sum(events) AS events, sum(value_sum) AS value FROM usage_hourly
  WHERE customer = 'alice' AND meter = 'tokens' AND hour >= '2026-10-05 00:00:00' AND hour < '2026-10-06 00:00:00'
  GROUP BY hour ORDER BY hour"""
got = csv(hourly_sql)
assert got == '"2026-10-05 10:00:00",3,12352.500000001', repr(got)
s.query("OPTIMIZE TABLE usage_hourly FINAL")
rows = csv("SELECT count() FROM usage_hourly WHERE meter = 'tokens'")
assert rows == "1", rows  # the two inserts' rows were summed into one by the merge
assert csv(hourly_sql) == got
print("usage_hourly query:", got, "(one row after the merge)")
got = csv("SELECT count() AS segments, sum(rows) AS rows, max(mirrored_at) AS last FROM mirror_segments FINAL")
assert got == '2,4,"2026-10-05 11:03:00"', repr(got)
print("mirror_segments query:", got)

# The invoice lifecycle (migration 0006): two header versions of one invoice, a duplicate of the
# second (two closers at once), and lines under two lines versions; the views give one current
# row per invoice and the current lines, without FINAL.
s.query("""INSERT INTO invoices (invoice_id, subscription_id, customer, period, period_start, period_end, currency, plan,
  plan_version, subtotal, tax, total, line_count, status, number, status_at, lines_version, revision, content_hash, issued_at, version)
  VALUES
  ('00000000-0000-0000-0000-0000000000b1', 'sub-b', 'bob', '2026-10', '2026-10-01 00:00:00', '2026-11-01 00:00:00', 'EUR', 'eu', 1,
   8.73, 1.66, 10.39, 1, 'draft', '', '2026-11-01 00:00:00', 1, 0, 7, '2026-11-01 00:00:00', 1),
  ('00000000-0000-0000-0000-0000000000b1', 'sub-b', 'bob', '2026-10', '2026-10-01 00:00:00', '2026-11-01 00:00:00', 'EUR', 'eu', 1,
   8.73, 1.66, 10.39, 1, 'draft', '', '2026-11-01 00:00:00', 2, 0, 8, '2026-11-01 00:00:00', 2)""")
for _ in range(2):
    s.query("""INSERT INTO invoices (invoice_id, subscription_id, customer, period, period_start, period_end, currency, plan,
      plan_version, subtotal, tax, total, line_count, status, number, status_at, lines_version, revision, content_hash, issued_at, version)
      VALUES ('00000000-0000-0000-0000-0000000000b1', 'sub-b', 'bob', '2026-10', '2026-10-01 00:00:00', '2026-11-01 00:00:00', 'EUR',
      'eu', 1, 8.73, 1.66, 10.39, 1, 'finalized', 'INV-2026-000002', '2026-11-04 00:00:00', 2, 0, 8, '2026-11-01 00:00:00', 3)""")
s.query("""INSERT INTO invoice_lines (invoice_id, line_no, kind, customer, period, period_start, currency, description, meter,
  quantity, event_count, price_model, plan, plan_version, amount, amount_unrounded, rounding_mode, breakdown, segments, version) VALUES
  ('00000000-0000-0000-0000-0000000000b1', 1, 'usage', 'bob', '2026-10', '2026-10-01 00:00:00', 'EUR', 'tokens', 'tokens',
   12345, 1, 'per_unit', 'eu', 1, 1.23, '1.2345', 'half_even', '{}', [], 1),
  ('00000000-0000-0000-0000-0000000000b1', 1, 'adjustment', 'bob', '2026-10', '2026-10-01 00:00:00', 'EUR', 'Adjustment 2026-09 (INV-2026-000001): tokens', 'tokens',
   5000, 0, 'adjustment', 'eu', 1, 0.50, '0.50', 'half_even', '{}', [], 2)""")
got = csv("""SELECT status, count() AS invoices, sum(total) AS billed FROM invoices_current
  WHERE period = '2026-10' GROUP BY status ORDER BY status""")
assert got == '"finalized",2,24.63', repr(got)
print("invoices_current query:", got.replace("\n", " | "))
got = csv("SELECT number, status, version FROM invoices_current WHERE customer = 'bob'")
assert got == '"INV-2026-000002","finalized",3', repr(got)
got = csv("SELECT kind, sum(amount) FROM invoice_lines_current WHERE period = '2026-10' AND customer = 'bob' GROUP BY kind")
assert got == '"adjustment",0.5', repr(got)
print("invoice_lines_current query:", got)
# Rated calls (migration 0008): the documented query of docs/CLICKHOUSE.md rebuilds a telecom
# line from the calls' exact columns (Σ connect fees + Σ billed seconds × price ÷ 60).
s.query("""INSERT INTO rated_calls (period, period_start, subscription_id, customer, meter, rate_table, event_id, source,
  event_time, answered_at, destination, matched_prefix, description, band, duration_secs, billed_secs, price_per_minute,
  connect_fee, amount, currency, segment, version) VALUES
  ('2026-03', '2026-03-01 00:00:00', 'sub-acme', 'acme', 'calls', 'world', 'c5', 'sw', '2026-03-04 10:00:00', '2026-03-04 10:00:00', '+33 1', '33', 'France', 'any time', 37, 37, 0.0137, 0, '0.0084483333333333333333333333', 'USD', 'seg-a', 1),
  ('2026-03', '2026-03-01 00:00:00', 'sub-acme', 'acme', 'calls', 'world', 'c6', 'sw', '2026-03-04 10:01:00', '2026-03-04 10:01:00', '+33 1', '33', 'France', 'any time', 37, 37, 0.0137, 0, '0.0084483333333333333333333333', 'USD', 'seg-a', 1),
  ('2026-03', '2026-03-01 00:00:00', 'sub-acme', 'acme', 'calls', 'world', 'c7', 'sw', '2026-03-04 10:02:00', '2026-03-04 10:02:00', '+33 1', '33', 'France', 'any time', 37, 37, 0.0137, 0.05, '0.0584483333333333333333333333', 'USD', 'seg-a', 1)""")
got = csv("""SELECT matched_prefix, band, min(price_per_minute) AS lo, max(price_per_minute) AS hi, count() AS calls,
  sum(billed_secs) AS secs, sum(connect_fee) AS fees, secs * hi AS secs_x_price, fees + secs_x_price / 60 AS amount_9dp
  FROM rated_calls WHERE period = '2026-03' AND subscription_id = 'sub-acme'
  GROUP BY matched_prefix, band ORDER BY matched_prefix, band""")
from decimal import Decimal  # noqa: E402
fields = got.split(",")
assert fields[:2] == ['"33"', '"any time"'], repr(got)
assert [Decimal(f) for f in fields[2:]] == [Decimal(x) for x in ["0.0137", "0.0137", "3", "111", "0.05", "1.5207", "0.075345"]], repr(got)
print("rated_calls query:", got)
# Tax and currency reporting (migration 0007): the *_base columns and the three views. Issue
# dates are relative to today so the ageing buckets do not depend on when this runs.
s.query("""INSERT INTO invoices (invoice_id, subscription_id, customer, period, period_start, period_end,
  currency, plan, plan_version, subtotal, tax, total, line_count, status, revision, content_hash, issued_at, version,
  reporting_currency, subtotal_base, tax_base, total_base, fx_rate, fx_date) VALUES
  (generateUUIDv4(), 'sub-2', 'eu', '2026-10', '2026-10-01 00:00:00', '2026-11-01 00:00:00', 'EUR', 'pro', 1,
   100, 19, 119, 2, 'finalized', 0, 2, toStartOfDay(now()) - INTERVAL 45 DAY, 1, 'USD', 108.32, 20.58, 128.9, 1.0832, '2026-10-31'),
  (generateUUIDv4(), 'sub-3', 'eu', '2026-09', '2026-09-01 00:00:00', '2026-10-01 00:00:00', 'EUR', 'pro', 1,
   10, 1.9, 11.9, 2, 'finalized', 0, 3, toStartOfDay(now()) - INTERVAL 100 DAY, 1, 'USD', 10.83, 2.06, 12.89, 1.0832, '2026-10-31'),
  (generateUUIDv4(), 'sub-4', 'eu', '2026-11', '2026-11-01 00:00:00', '2026-12-01 00:00:00', 'EUR', 'pro', 1,
   5, 0.95, 5.95, 2, 'finalized', 0, 4, toStartOfDay(now()) - INTERVAL 3 DAY, 1, 'USD', 5.42, 1.03, 6.45, 1.0832, '2026-10-31')""")
s.query("""INSERT INTO invoice_lines (invoice_id, line_no, kind, customer, period, period_start, currency, description,
  meter, quantity, event_count, price_model, plan, plan_version, amount, amount_unrounded, rounding_mode, breakdown,
  segments, version) VALUES
  ('00000000-0000-0000-0000-0000000000c1', 1, 'usage', 'alice', '2026-10', '2026-10-01 00:00:00', 'USD', 'Tokens', 'tokens', 12352.500000001, 3,
   'per_unit', 'basic', 1, 24.71, '24.705000000002', 'half_even', '{}', ['seg-a', 'seg-b'], 1)""")
# usage_vs_billed reads the current lines (migration 0009): the line's header, lines version 1.
s.query("""INSERT INTO invoices (invoice_id, subscription_id, customer, period, period_start, period_end, currency, plan,
  plan_version, subtotal, tax, total, line_count, status, number, status_at, lines_version, revision, content_hash, issued_at, version)
  VALUES ('00000000-0000-0000-0000-0000000000c1', 'sub-c', 'alice', '2026-10', '2026-10-01 00:00:00', '2026-11-01 00:00:00', 'USD',
  'basic', 1, 24.71, 0, 24.71, 1, 'finalized', 'INV-2026-000009', '2026-11-04 00:00:00', 1, 0, 9, '2026-11-01 00:00:00', 1)""")
got = csv("""SELECT day = toDate(now() - INTERVAL 45 DAY), plan, customer, currency, invoices, subtotal, tax, total,
  reporting_currency, subtotal_base, total_base FROM revenue_daily WHERE customer = 'eu' ORDER BY day DESC LIMIT 1 OFFSET 1""")
assert got == '1,"pro","eu","EUR",1,100,19,119,"USD",108.32,128.9', repr(got)
print("revenue_daily query:", got)
# These rows leave due_at out, as rows written before migration 0010 did: it reads issued_at (the
# DEFAULT), so they age from their issue 3, 45 and 100 days ago.
got = csv("SELECT customer, currency, invoices, not_yet_due, due_1_30, due_31_60, due_61_90, due_over_90, outstanding "
          "FROM receivables_ageing WHERE customer = 'eu'")
assert got == '"eu","EUR",3,0,5.95,119,0,11.9,136.85', repr(got)
print("receivables_ageing query (rows without due_at):", got)
# Due dates (migration 0010): the bucket bounds of docs/CLICKHOUSE.md, one finalized invoice per
# bound with due_at relative to today (UTC), amounts in powers of two; a draft, a paid, a void and
# an uncollectible invoice and one whose finalized version was superseded by its payment are
# not receivables.
rows = []
for n, (status, days, total, version) in enumerate([
        ("finalized", -1, "1", 2), ("finalized", 0, "2", 2), ("finalized", 1, "4", 2), ("finalized", 30, "8", 2),
        ("finalized", 31, "16", 2), ("finalized", 60, "32", 2), ("finalized", 61, "64", 2), ("finalized", 90, "128", 2),
        ("finalized", 91, "256", 2), ("draft", 100, "1000", 1), ("paid", 100, "1000", 3), ("void", 100, "1000", 3),
        ("uncollectible", 100, "1000", 3), ("finalized", 100, "1000", 2)]):
    rows.append(f"(toUUID('00000000-0000-0000-0000-0000000d{n:04d}'), 'sub-due-{n}', 'due', '2026-10', '2026-10-01 00:00:00', "
                f"'2026-11-01 00:00:00', 'USD', 'basic', 1, {total}, 0, {total}, 1, '{status}', '', '2026-11-04 00:00:00', 1, 0, {n}, "
                f"'2026-11-01 00:00:00', toDateTime(toDate(now(), 'UTC'), 'UTC') - INTERVAL {days} DAY, {version})")
rows.append("(toUUID('00000000-0000-0000-0000-0000000d0013'), 'sub-due-13', 'due', '2026-10', '2026-10-01 00:00:00', "
            "'2026-11-01 00:00:00', 'USD', 'basic', 1, 1000, 0, 1000, 1, 'paid', '', '2026-11-20 00:00:00', 1, 0, 13, "
            "'2026-11-01 00:00:00', toDateTime(toDate(now(), 'UTC'), 'UTC') - INTERVAL 100 DAY, 3)")
s.query("""INSERT INTO invoices (invoice_id, subscription_id, customer, period, period_start, period_end, currency, plan,
  plan_version, subtotal, tax, total, line_count, status, number, status_at, lines_version, revision, content_hash, issued_at,
  due_at, version) VALUES """ + ", ".join(rows))
got = csv("SELECT customer, currency, invoices, not_yet_due, due_1_30, due_31_60, due_61_90, due_over_90, outstanding "
          "FROM receivables_ageing WHERE customer = 'due'")
assert got == '"due","USD",9,3,12,48,192,256,511', repr(got)
print("receivables_ageing query (bucket bounds):", got)
got = csv("SELECT toString(due_at) FROM invoices_current WHERE customer = 'due' AND subscription_id = 'sub-due-1'")
assert got == '"' + csv("SELECT toString(toDateTime(toDate(now(), 'UTC'), 'UTC'))").strip('"') + '"', repr(got)
got = csv("SELECT customer, meter, period, mirrored_events, mirrored_value, billed_events, billed_quantity, billed_amount, "
          "unbilled_events FROM usage_vs_billed WHERE customer = 'alice' ORDER BY meter")
assert got == '"alice","calls","2026-10",1,0,0,0,0,1\n"alice","tokens","2026-10",3,12352.500000001,3,12352.500000001,24.71,0', repr(got)
print("usage_vs_billed query:", got.replace("\n", " | "))
print("ok: migrations and queries run on a current ClickHouse engine")
