//! The demo's closing summary.

use std::collections::BTreeMap;
use std::path::Path;

use comfy_table::{CellAlignment, Table};
use rust_decimal::Decimal;

use meterline_ingest::IngestReport;
use meterline_schemas::catalog::Catalog;
use meterline_schemas::invoice::InvoiceRow;
use meterline_schemas::money::Currency;
use meterline_schemas::period::PeriodLabel;

use super::Stage;
use super::usage_gen::Truth;

pub struct Summary<'a> {
    pub label: PeriodLabel,
    pub seed: u64,
    pub stages: &'a [Stage],
    pub truth: &'a Truth,
    pub published: &'a meterline_ingest::publish::PublishReport,
    pub ingest: &'a IngestReport,
    pub invoices: &'a [InvoiceRow],
    pub catalog: &'a Catalog,
    pub ledger: &'a Path,
    pub segments: usize,
    pub dlq_stream: &'a str,
    pub dlq_count: u64,
    pub out: &'a Path,
    pub ch_database: &'a str,
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[allow(clippy::float_arithmetic)] // throughput figures, not money
fn rate(items: u64, secs: f64) -> String {
    if secs <= 0.0 { "-".into() } else { format!("{}/s", group((items as f64 / secs) as u64)) }
}

pub fn print(s: &Summary<'_>) {
    println!();
    println!("Meterline demo: period {} (seed {})", s.label, s.seed);
    println!();
    let mut t = Table::new();
    t.set_header(["stage", "items", "time", "rate"]);
    for st in s.stages {
        let secs = st.time.as_secs_f64();
        t.add_row([st.name.to_string(), format!("{} {}", group(st.items), st.unit), format!("{secs:.2} s"), rate(st.items, secs)]);
    }
    right(&mut t, &[1, 2, 3]);
    println!("{t}");

    let tr = s.truth;
    let check = if s.ingest.valid == tr.expected_ledger_events { "matches" } else { "MISMATCH" };
    println!(
        "events: {} sent = {} distinct valid (incl. {} late, {} next month) + {} duplicates + {} invalid",
        group(tr.lines),
        group(tr.expected_ledger_events),
        group(tr.late),
        group(tr.next_month),
        group(tr.duplicates),
        group(tr.invalid)
    );
    println!(
        "dedup:  {} duplicates dropped by JetStream at publish (same Nats-Msg-Id within its window), {} by ingest's exact index (re-sent in batch messages)",
        group(s.published.duplicates),
        group(s.ingest.duplicates)
    );
    println!(
        "ingest: {} events to the ledger ({check} the generator), {} dead-lettered with their reason",
        group(s.ingest.valid),
        group(s.ingest.invalid)
    );
    println!();

    let mut per_currency: BTreeMap<&str, (usize, Decimal, Decimal, Decimal)> = BTreeMap::new();
    for i in s.invoices {
        let e = per_currency.entry(i.currency.as_str()).or_default();
        e.0 += 1;
        e.1 += i.subtotal;
        e.2 += i.tax;
        e.3 += i.total;
    }
    let fmt = |cur: &str, d: Decimal| Currency::from_code(cur).map_or_else(|_| d.to_string(), |c| c.format(d));
    let mut t = Table::new();
    t.set_header(["currency", "invoices", "subtotal", "tax", "total"]);
    for (cur, (n, sub, tax, total)) in &per_currency {
        t.add_row([cur.to_string(), n.to_string(), fmt(cur, *sub), fmt(cur, *tax), fmt(cur, *total)]);
    }
    right(&mut t, &[1, 2, 3, 4]);
    println!("invoices: {} for period {} (read back from ClickHouse database {})", s.invoices.len(), s.label, s.ch_database);
    println!("{t}");

    let mut t = Table::new();
    t.set_header(["top customers", "name", "plan", "currency", "total"]);
    for cur in per_currency.keys() {
        let mut top: Vec<&InvoiceRow> = s.invoices.iter().filter(|i| i.currency == *cur).collect();
        top.sort_by(|a, b| b.total.cmp(&a.total).then(a.customer.cmp(&b.customer)));
        for i in top.into_iter().take(3) {
            let name = s.catalog.customers.get(&i.customer).map(|c| c.name.clone()).unwrap_or_default();
            t.add_row([i.customer.clone(), name, format!("{}@{}", i.plan, i.plan_version), i.currency.clone(), fmt(cur, i.total)]);
        }
    }
    right(&mut t, &[4]);
    println!("{t}");
    println!();
    println!("ledger:       {} ({} Parquet segments)", s.ledger.display(), s.segments);
    println!(
        "dead letters: NATS stream {} ({} messages; `nats stream view {}` shows them with their reasons)",
        s.dlq_stream, s.dlq_count, s.dlq_stream
    );
    println!("catalog:      {}", s.out.join("catalog.yaml").display());
    println!("events:       {}", s.out.join("events.ndjson").display());
    println!("invoices:     meterline invoices list --period {} (with METERLINE__CLICKHOUSE__DATABASE={})", s.label, s.ch_database);
}

fn right(t: &mut Table, cols: &[usize]) {
    for c in cols {
        if let Some(col) = t.column_mut(*c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}
