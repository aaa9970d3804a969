#!/usr/bin/env bash
# Screenshots of real invoices for docs/INVOICES.md (docs/img/invoice-<lang>.png), one per locale.
#
# Run after `make demo` (it needs the demo's finalized invoices in database `meterline_demo` and
# its catalog in the `demo_catalog_*` buckets): `make screenshots`. Each invoice is rendered to
# PDF by `meterline invoices render` with the branding of docs/img/branding.toml, exactly as a
# user would, then its first page is turned into PNG by `pdftoppm -r 90` (Debian poppler-utils).
set -euo pipefail

cd "$(dirname "$0")/../.."
BIN=${METERLINE_BIN:-./target/debug/meterline}
OUT=${SCREENSHOTS_OUT:-docs/img}
eval "$(bash deploy/local/services.sh env)"
export METERLINE__CLICKHOUSE__DATABASE=meterline_demo
export METERLINE__CATALOG__BUCKET_PREFIX=demo_catalog_
CH=${METERLINE__CLICKHOUSE__URL}

command -v pdftoppm >/dev/null || { echo "pdftoppm not found: apt-get install -y poppler-utils" >&2; exit 1; }
[[ -x $BIN ]] || { echo "$BIN not found: run make demo first" >&2; exit 1; }

# The first finalized demo invoice (by number) in a currency whose tax line is of a jurisdiction.
pick() {
    local currency=$1 jurisdiction=$2 q id
    q="SELECT toString(invoice_id) FROM meterline_demo.invoices_current WHERE currency = '$currency' AND status = 'finalized' \
       AND invoice_id IN (SELECT invoice_id FROM meterline_demo.invoice_lines_current WHERE kind = 'tax' AND breakdown LIKE '%\"jurisdiction\":\"$jurisdiction%') \
       ORDER BY number LIMIT 1"
    id=$(curl -sf "$CH/" --data-binary "$q")
    [[ -n $id ]] || { echo "no finalized $currency invoice taxed in $jurisdiction in meterline_demo: run make demo first" >&2; exit 1; }
    echo "$id"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# lang currency jurisdiction locale
while read -r lang currency jurisdiction locale; do
    id=$(pick "$currency" "$jurisdiction")
    "$BIN" --config docs/img/branding.toml invoices render --id "$id" --format pdf --locale "$locale" --out "$tmp/$lang.pdf" >/dev/null
    pdftoppm -r 90 -png -singlefile -f 1 -l 1 "$tmp/$lang.pdf" "$OUT/invoice-$lang"
    echo "$OUT/invoice-$lang.png  invoice $id in $locale"
done <<'EOF'
en USD US- en-US
de EUR DE de-DE
fr EUR FR fr-FR
es EUR NL es-ES
ja JPY JP ja-JP
EOF
