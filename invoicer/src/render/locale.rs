//! Locales of invoice documents: labels, numbers, money and dates, exact from `Decimal`.
//!
//! The conventions are CLDR's (checked against ICU 78 / CLDR 48, the `Intl` of Node.js 20) for
//! the language's default region; region variants (`de-AT`, `fr-CH`, `es-MX`, …) use their
//! language's conventions, and unsupported languages fall back to English (documented in
//! docs/INVOICES.md). A hand-kept table rather than ICU4X: five locales, audited in review, no
//! megabytes of compiled data, and ICU4X's currency formatting is still experimental.
//!
//! | locale | number | money (EUR) | money (JPY) | long date |
//! | --- | --- | --- | --- | --- |
//! | en | `1,234.56` | `€1,234.56` | `¥1,235` | `October 31, 2026` |
//! | de | `1.234,56` | `1.234,56 €` | `1.235 ¥` | `31. Oktober 2026` |
//! | fr | `1 234,56` (U+202F) | `1 234,56 €` (U+00A0) | `1 235 JPY` | `31 octobre 2026` |
//! | es | `1234,56`, `12.345,67` | `1234,56 €` | `1235 JPY` | `31 de octubre de 2026` |
//! | ja | `1,234.56` | `€1,234.56` | `￥1,235` | `2026年10月31日` |
//!
//! No floats anywhere: a `Decimal` is printed to its exact digits, then the digits are grouped.

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use meterline_schemas::money::Currency;

/// A supported document language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English (United States conventions).
    En,
    /// German (Germany).
    De,
    /// French (France).
    Fr,
    /// Spanish (Spain).
    Es,
    /// Japanese.
    Ja,
}

impl Lang {
    /// Every supported language.
    pub const ALL: [Lang; 5] = [Lang::En, Lang::De, Lang::Fr, Lang::Es, Lang::Ja];

    /// The BCP 47 language subtag.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Fr => "fr",
            Lang::Es => "es",
            Lang::Ja => "ja",
        }
    }
}

/// A resolved locale: the tag asked for and the language whose conventions apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale {
    /// The tag as asked for (e.g. a customer's `de-AT`).
    pub requested: String,
    /// The language used.
    pub lang: Lang,
    /// Whether the requested language is unsupported and English is used instead.
    pub fallback: bool,
}

/// Separators and patterns of one language (CLDR `latn` number symbols).
struct Symbols {
    decimal: &'static str,
    group: &'static str,
    /// CLDR `minimumGroupingDigits`: es writes `1234` but `12.345`.
    min_grouping: usize,
    /// `true`: `1.234,56 €` (number, U+00A0, symbol); `false`: `€1,234.56`.
    symbol_after: bool,
}

const NBSP: &str = "\u{a0}";
const NNBSP: &str = "\u{202f}";

impl Locale {
    /// Resolves a BCP 47 tag (`de-DE`, `fr`, `ja-JP`, `es_MX`) by its language subtag.
    pub fn resolve(tag: &str) -> Locale {
        let language = tag.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        let lang = Lang::ALL.into_iter().find(|l| l.code() == language);
        Locale { requested: tag.to_owned(), lang: lang.unwrap_or(Lang::En), fallback: lang.is_none() }
    }

    /// The locale of one language, e.g. for tests and `--locale`.
    pub fn of(lang: Lang) -> Locale {
        Locale { requested: lang.code().to_owned(), lang, fallback: false }
    }

    fn symbols(&self) -> Symbols {
        match self.lang {
            Lang::En | Lang::Ja => Symbols { decimal: ".", group: ",", min_grouping: 1, symbol_after: false },
            Lang::De => Symbols { decimal: ",", group: ".", min_grouping: 1, symbol_after: true },
            Lang::Fr => Symbols { decimal: ",", group: NNBSP, min_grouping: 1, symbol_after: true },
            Lang::Es => Symbols { decimal: ",", group: ".", min_grouping: 2, symbol_after: true },
        }
    }

    /// Formats a number exactly, with all its digits (trailing zeros kept as given).
    pub fn number(&self, value: Decimal) -> String {
        let s = self.symbols();
        // Rounding can leave a negative zero (-0.001 → -0.00); print it as 0.
        let value = if value.is_zero() { value.abs() } else { value };
        let text = value.to_string();
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let mut out = String::with_capacity(text.len() + 8);
        if negative {
            out.push('-');
        }
        out.push_str(&group_digits(int, s.group, s.min_grouping));
        if !frac.is_empty() {
            out.push_str(s.decimal);
            out.push_str(frac);
        }
        out
    }

    /// Formats a quantity: exact, without trailing zeros.
    pub fn quantity(&self, value: Decimal) -> String {
        self.number(value.normalize())
    }

    /// Formats an amount of money with exactly the currency's minor-unit digits (JPY 0, USD 2,
    /// KWD 3), the locale's symbol and its placement.
    ///
    /// Amounts on invoices are already rounded to the minor unit (`round_line`); should one
    /// carry more digits it is rounded half-even for display by [`Currency::format`], the same
    /// as `meterline invoices list` prints it.
    pub fn money(&self, amount: Decimal, currency: Currency) -> String {
        let exact: Decimal = currency.format(amount).parse().unwrap_or(amount);
        self.place_symbol(self.number(exact), currency)
    }

    /// Formats a unit price: at least the currency's minor-unit digits, more when the price has
    /// them (`$0.002` per token), never rounded.
    pub fn unit_price(&self, price: Decimal, currency: Currency) -> String {
        let mut p = price.normalize();
        if p.scale() < currency.minor_units() {
            p.rescale(currency.minor_units());
        }
        self.place_symbol(self.number(p), currency)
    }

    fn place_symbol(&self, number: String, currency: Currency) -> String {
        let symbol = currency_symbol(self.lang, currency.code());
        let (negative, number) = match number.strip_prefix('-') {
            Some(rest) => (true, rest.to_owned()),
            None => (false, number),
        };
        let sign = if negative { "-" } else { "" };
        if self.symbols().symbol_after {
            format!("{sign}{number}{NBSP}{symbol}")
        } else {
            // CLDR currencySpacing: a symbol ending in a letter (`KWD`, `CHF`, `元`) is kept
            // apart from the digits by a no-break space; `$`, `€`, `CA$` are not.
            let space = if symbol.chars().last().is_some_and(char::is_alphabetic) { NBSP } else { "" };
            format!("{sign}{symbol}{space}{number}")
        }
    }

    /// Formats a date in the locale's long style.
    pub fn date(&self, date: NaiveDate) -> String {
        let (y, m, d) = (date.year(), date.month0() as usize, date.day());
        match self.lang {
            Lang::En => format!("{} {d}, {y}", EN_MONTHS[m]),
            Lang::De => format!("{d}. {} {y}", DE_MONTHS[m]),
            Lang::Fr => format!("{d} {} {y}", FR_MONTHS[m]),
            Lang::Es => format!("{d} de {} de {y}", ES_MONTHS[m]),
            Lang::Ja => format!("{y}年{}月{d}日", m + 1),
        }
    }

    /// A date range, both ends inclusive.
    pub fn date_range(&self, first: NaiveDate, last: NaiveDate) -> String {
        format!("{} – {}", self.date(first), self.date(last))
    }

    /// The document labels.
    pub fn labels(&self) -> &'static Labels {
        match self.lang {
            Lang::En => &EN,
            Lang::De => &DE,
            Lang::Fr => &FR,
            Lang::Es => &ES,
            Lang::Ja => &JA,
        }
    }
}

/// Groups the integer digits by three from the right, when there are at least
/// `3 + min_grouping` of them.
fn group_digits(int: &str, sep: &str, min_grouping: usize) -> String {
    if int.len() < 3 + min_grouping {
        return int.to_owned();
    }
    let mut out = String::with_capacity(int.len() * 2);
    let head = int.len() % 3;
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (i + 3 - head).is_multiple_of(3) {
            out.push_str(sep);
        }
        out.push(c);
    }
    out
}

/// The CLDR symbol of a currency in a language; the ISO code for currencies not listed.
fn currency_symbol(lang: Lang, code: &'static str) -> &'static str {
    let table: &[(&str, &str)] = match lang {
        Lang::En => &[("USD", "$"), ("EUR", "€"), ("GBP", "£"), ("JPY", "¥"), ("CAD", "CA$"), ("AUD", "A$"), ("CNY", "CN¥")],
        Lang::De => &[("USD", "$"), ("EUR", "€"), ("GBP", "£"), ("JPY", "¥"), ("CAD", "CA$"), ("AUD", "AU$"), ("CNY", "CN¥")],
        Lang::Fr => &[("USD", "$US"), ("EUR", "€"), ("GBP", "£GB"), ("CAD", "$CA"), ("AUD", "$AU")],
        Lang::Es => &[("USD", "US$"), ("EUR", "€")],
        Lang::Ja => &[("USD", "$"), ("EUR", "€"), ("GBP", "£"), ("JPY", "￥"), ("CAD", "CA$"), ("AUD", "A$"), ("CNY", "元")],
    };
    table.iter().find(|(c, _)| *c == code).map_or(code, |(_, s)| s)
}

const EN_MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DE_MONTHS: [&str; 12] =
    ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"];
const FR_MONTHS: [&str; 12] =
    ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"];
const ES_MONTHS: [&str; 12] =
    ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre"];

/// Every text a document prints that is not data. Templates read them as `labels.<name>`.
#[derive(Debug, Serialize)]
pub struct Labels {
    pub invoice: &'static str,
    pub invoice_number: &'static str,
    pub date: &'static str,
    pub due_date: &'static str,
    pub period: &'static str,
    pub bill_to: &'static str,
    pub customer_id: &'static str,
    pub plan: &'static str,
    pub currency: &'static str,
    pub description: &'static str,
    pub quantity: &'static str,
    pub unit_price: &'static str,
    pub amount: &'static str,
    pub subtotal: &'static str,
    pub tax: &'static str,
    pub credit: &'static str,
    pub total: &'static str,
    pub tier: &'static str,
    pub draft: &'static str,
    pub tax_id: &'static str,
}

const EN: Labels = Labels {
    invoice: "Invoice",
    invoice_number: "Invoice number",
    date: "Date",
    due_date: "Due date",
    period: "Period",
    bill_to: "Bill to",
    customer_id: "Customer ID",
    plan: "Plan",
    currency: "Currency",
    description: "Description",
    quantity: "Quantity",
    unit_price: "Unit price",
    amount: "Amount",
    subtotal: "Subtotal",
    tax: "Tax",
    credit: "Prepaid credit",
    total: "Total",
    tier: "Tier",
    draft: "Draft",
    tax_id: "Tax ID",
};

const DE: Labels = Labels {
    invoice: "Rechnung",
    invoice_number: "Rechnungsnummer",
    date: "Rechnungsdatum",
    due_date: "Fällig am",
    period: "Leistungszeitraum",
    bill_to: "Rechnungsempfänger",
    customer_id: "Kundennummer",
    plan: "Tarif",
    currency: "Währung",
    description: "Beschreibung",
    quantity: "Menge",
    unit_price: "Einzelpreis",
    amount: "Betrag",
    subtotal: "Zwischensumme",
    tax: "Steuer",
    credit: "Guthaben",
    total: "Gesamtbetrag",
    tier: "Stufe",
    draft: "Entwurf",
    tax_id: "USt-IdNr.",
};

const FR: Labels = Labels {
    invoice: "Facture",
    invoice_number: "Numéro de facture",
    date: "Date",
    due_date: "Date d’échéance",
    period: "Période",
    bill_to: "Facturé à",
    customer_id: "Numéro client",
    plan: "Forfait",
    currency: "Devise",
    description: "Description",
    quantity: "Quantité",
    unit_price: "Prix unitaire",
    amount: "Montant",
    subtotal: "Sous-total",
    tax: "Taxes",
    credit: "Crédit prépayé",
    total: "Total",
    tier: "Palier",
    draft: "Brouillon",
    tax_id: "N° TVA",
};

const ES: Labels = Labels {
    invoice: "Factura",
    invoice_number: "Número de factura",
    date: "Fecha",
    due_date: "Fecha de vencimiento",
    period: "Periodo",
    bill_to: "Facturar a",
    customer_id: "Número de cliente",
    plan: "Plan",
    currency: "Moneda",
    description: "Descripción",
    quantity: "Cantidad",
    unit_price: "Precio unitario",
    amount: "Importe",
    subtotal: "Subtotal",
    tax: "Impuestos",
    credit: "Crédito prepago",
    total: "Total",
    tier: "Tramo",
    draft: "Borrador",
    tax_id: "NIF",
};

const JA: Labels = Labels {
    invoice: "請求書",
    invoice_number: "請求書番号",
    date: "発行日",
    due_date: "お支払期限",
    period: "請求期間",
    bill_to: "請求先",
    customer_id: "顧客ID",
    plan: "プラン",
    currency: "通貨",
    description: "内容",
    quantity: "数量",
    unit_price: "単価",
    amount: "金額",
    subtotal: "小計",
    tax: "税額",
    credit: "前払いクレジット",
    total: "合計",
    tier: "段階",
    draft: "下書き",
    tax_id: "登録番号",
};

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn cur(c: &str) -> Currency {
        Currency::from_code(c).unwrap()
    }

    fn money(lang: Lang, amount: &str, c: &str) -> String {
        Locale::of(lang).money(d(amount), cur(c))
    }

    #[test]
    fn numbers_follow_cldr() {
        let n = |lang, v| Locale::of(lang).number(d(v));
        assert_eq!(n(Lang::En, "1234567.891"), "1,234,567.891");
        assert_eq!(n(Lang::De, "1234567.891"), "1.234.567,891");
        assert_eq!(n(Lang::Fr, "1234567.891"), "1\u{202f}234\u{202f}567,891");
        assert_eq!(n(Lang::Ja, "1234567.891"), "1,234,567.891");
        // Spanish groups only from five integer digits on (minimumGroupingDigits = 2).
        assert_eq!(n(Lang::Es, "1234.56"), "1234,56");
        assert_eq!(n(Lang::Es, "12345.67"), "12.345,67");
        assert_eq!(n(Lang::Es, "1234567.891"), "1.234.567,891");
        assert_eq!(n(Lang::En, "999"), "999");
        assert_eq!(n(Lang::En, "100000"), "100,000");
        assert_eq!(n(Lang::De, "-1000.5"), "-1.000,5");
        assert_eq!(n(Lang::En, "0.000000001"), "0.000000001");
        assert_eq!(Locale::of(Lang::En).quantity(d("12.500000000")), "12.5");
        // Digits beyond f64 precision survive: no floats on the way.
        assert_eq!(n(Lang::En, "12345678901234567.89"), "12,345,678,901,234,567.89");
    }

    #[test]
    fn money_follows_cldr_and_minor_units() {
        assert_eq!(money(Lang::En, "1234.56", "USD"), "$1,234.56");
        assert_eq!(money(Lang::En, "1234.56", "EUR"), "€1,234.56");
        assert_eq!(money(Lang::En, "1235", "JPY"), "¥1,235");
        assert_eq!(money(Lang::En, "1234.567", "KWD"), "KWD\u{a0}1,234.567");
        assert_eq!(money(Lang::En, "-1234.56", "GBP"), "-£1,234.56");
        assert_eq!(money(Lang::En, "1234.56", "CHF"), "CHF\u{a0}1,234.56");
        assert_eq!(money(Lang::De, "1234.56", "EUR"), "1.234,56\u{a0}€");
        assert_eq!(money(Lang::De, "1234.56", "USD"), "1.234,56\u{a0}$");
        assert_eq!(money(Lang::De, "1235", "JPY"), "1.235\u{a0}¥");
        assert_eq!(money(Lang::De, "1234.567", "KWD"), "1.234,567\u{a0}KWD");
        assert_eq!(money(Lang::De, "-1234567.5", "EUR"), "-1.234.567,50\u{a0}€");
        assert_eq!(money(Lang::Fr, "1234.56", "EUR"), "1\u{202f}234,56\u{a0}€");
        assert_eq!(money(Lang::Fr, "1234.56", "USD"), "1\u{202f}234,56\u{a0}$US");
        assert_eq!(money(Lang::Fr, "1235", "JPY"), "1\u{202f}235\u{a0}JPY");
        assert_eq!(money(Lang::Es, "1234.56", "EUR"), "1234,56\u{a0}€");
        assert_eq!(money(Lang::Es, "12345.67", "EUR"), "12.345,67\u{a0}€");
        assert_eq!(money(Lang::Es, "1234.56", "USD"), "1234,56\u{a0}US$");
        assert_eq!(money(Lang::Ja, "1235", "JPY"), "￥1,235");
        assert_eq!(money(Lang::Ja, "1234.56", "USD"), "$1,234.56");
        assert_eq!(money(Lang::Ja, "1234.567", "KWD"), "KWD\u{a0}1,234.567");
        assert_eq!(money(Lang::Ja, "1234.56", "CNY"), "元\u{a0}1,234.56");
        // Minor units always printed: 29 USD is $29.00, 7 KWD is 7.000, JPY has none.
        assert_eq!(money(Lang::En, "29", "USD"), "$29.00");
        let negative_zero = meterline_schemas::money::round_line(d("-0.001"), cur("USD"), meterline_schemas::money::RoundingMode::HalfEven);
        assert_eq!(Locale::of(Lang::En).money(negative_zero, cur("USD")), "$0.00");
        assert_eq!(money(Lang::De, "7", "KWD"), "7,000\u{a0}KWD");
        assert_eq!(money(Lang::Ja, "1234.000000000", "JPY"), "￥1,234");
        // Currencies without a listed symbol print their ISO code.
        assert_eq!(money(Lang::En, "10", "SEK"), "SEK\u{a0}10.00");
        assert_eq!(money(Lang::Fr, "10", "SEK"), "10,00\u{a0}SEK");
    }

    #[test]
    fn unit_prices_keep_their_digits() {
        let l = Locale::of(Lang::En);
        assert_eq!(l.unit_price(d("0.002"), cur("USD")), "$0.002");
        assert_eq!(l.unit_price(d("5"), cur("USD")), "$5.00");
        assert_eq!(l.unit_price(d("0.5"), cur("JPY")), "¥0.5");
        assert_eq!(Locale::of(Lang::De).unit_price(d("0.0001500"), cur("EUR")), "0,00015\u{a0}€");
    }

    #[test]
    fn long_dates() {
        let date = NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
        let f = |lang| Locale::of(lang).date(date);
        assert_eq!(f(Lang::En), "October 31, 2026");
        assert_eq!(f(Lang::De), "31. Oktober 2026");
        assert_eq!(f(Lang::Fr), "31 octobre 2026");
        assert_eq!(f(Lang::Es), "31 de octubre de 2026");
        assert_eq!(f(Lang::Ja), "2026年10月31日");
        let may = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        assert_eq!(Locale::of(Lang::De).date(may), "1. Mai 2026");
        assert_eq!(Locale::of(Lang::Ja).date(may), "2026年5月1日");
    }

    #[test]
    fn tags_resolve_by_language() {
        assert_eq!(Locale::resolve("de-AT").lang, Lang::De);
        assert_eq!(Locale::resolve("ja_JP").lang, Lang::Ja);
        assert_eq!(Locale::resolve("FR").lang, Lang::Fr);
        let ar = Locale::resolve("ar-KW");
        assert_eq!((ar.lang, ar.fallback), (Lang::En, true));
        assert!(!Locale::resolve("en-US").fallback);
    }
}
