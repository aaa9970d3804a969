//! HTML documents from a minijinja template, with every value HTML-escaped.
//!
//! The template is named `invoice.html`, so minijinja's auto-escaping for `.html` applies to
//! every `{{ … }}`: a customer called `<script>` prints as `&lt;script&gt;`. Undefined
//! variables are errors, so a typo in a custom template fails loudly instead of printing nothing.

use minijinja::{Environment, UndefinedBehavior};

use super::view::InvoiceView;
use crate::error::{Error, Result};

/// The built-in template (`invoicer/templates/invoice.html`).
pub const DEFAULT_TEMPLATE: &str = include_str!("../../templates/invoice.html");

/// Renders `view` with `template` (the built-in one when `None`).
pub fn render_html(view: &InvoiceView, template: Option<&str>) -> Result<String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.add_template("invoice.html", template.unwrap_or(DEFAULT_TEMPLATE)).map_err(|e| Error::Render(format!("template: {e:#}")))?;
    let tmpl = env.get_template("invoice.html").map_err(|e| Error::Render(format!("template: {e:#}")))?;
    tmpl.render(minijinja::value::Serde(view)).map_err(|e| Error::Render(format!("template: {e:#}")))
}
