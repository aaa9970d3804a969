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
        s.query(stmt)  # idempotent: IF NOT EXISTS
    print("applied twice:", os.path.basename(path))
s.query("""INSERT INTO invoices (invoice_id, subscription_id, customer, period, period_start, period_end,
  currency, plan, plan_version, subtotal, tax, total, line_count, status, revision, content_hash, issued_at, version)
  VALUES (generateUUIDv4(), 'sub-1', 'acme', '2026-10', '2026-10-01 00:00:00', '2026-11-01 00:00:00', 'USD', 'basic', 1,
  13.28, 0.96, 14.24, 4, 'finalized', 0, 1, '2026-11-01 00:00:00', 1)""")
got = s.query("SELECT currency, count() AS invoices, sum(total) AS billed FROM invoices FINAL "
              "WHERE period = '2026-10' GROUP BY currency ORDER BY currency", "CSV").bytes().decode().strip()
assert got == '"USD",1,14.24', got
print("documented query:", got)
print("ok: migrations and queries run on a current ClickHouse engine")
