//! `[branding]` and `[render]` settings of invoice documents.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `[branding]`: how documents look and who issues them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// Issuer's legal name, printed in the header and the footer.
    pub issuer_name: String,
    /// Issuer's postal address, one entry per line.
    pub issuer_address: Vec<String>,
    /// Issuer's tax (VAT) id; empty hides it.
    pub issuer_tax_id: String,
    /// A logo file (`.svg`, `.png`, `.jpg`/`.jpeg`), embedded into the document; empty for none.
    pub logo_path: String,
    /// An inline SVG logo (used when `logo_path` is empty), embedded as an image.
    pub logo_svg: String,
    /// Primary colour (headings, table header), `#rgb` or `#rrggbb`.
    pub primary_color: String,
    /// Accent colour (rules, the total), `#rgb` or `#rrggbb`.
    pub accent_color: String,
    /// Footer text; line breaks are kept.
    pub footer: String,
}

impl Default for Branding {
    fn default() -> Self {
        Branding {
            issuer_name: "Meterline".into(),
            issuer_address: Vec::new(),
            issuer_tax_id: String::new(),
            logo_path: String::new(),
            logo_svg: String::new(),
            primary_color: "#1f3a5f".into(),
            accent_color: "#2a9d8f".into(),
            footer: String::new(),
        }
    }
}

impl Branding {
    /// Checks values; colours are strict because they go into a stylesheet.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [("primary_color", &self.primary_color), ("accent_color", &self.accent_color)] {
            if !is_hex_color(value) {
                return Err(format!("branding.{key} = {value:?}: expected a hex colour such as \"#1f3a5f\""));
            }
        }
        if self.issuer_name.trim().is_empty() {
            return Err("branding.issuer_name is empty".into());
        }
        if !self.logo_svg.is_empty() && !self.logo_svg.trim_start().starts_with("<svg") && !self.logo_svg.trim_start().starts_with("<?xml")
        {
            return Err("branding.logo_svg: expected SVG markup starting with <svg".into());
        }
        Ok(())
    }

    /// The logo as a `data:` URI, so a document is one self-contained file (and a PDF engine
    /// needs no file access). Images are shown with `<img>`, so scripts in an SVG never run.
    pub fn logo_data_uri(&self) -> Result<Option<String>> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        if !self.logo_path.is_empty() {
            let path = Path::new(&self.logo_path);
            let mime = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
                Some("svg") => "image/svg+xml",
                Some("png") => "image/png",
                Some("jpg" | "jpeg") => "image/jpeg",
                _ => return Err(Error::Render(format!("branding.logo_path = {:?}: expected a .svg, .png or .jpg file", self.logo_path))),
            };
            let bytes = std::fs::read(path).map_err(|e| Error::Render(format!("branding.logo_path = {:?}: {e}", self.logo_path)))?;
            return Ok(Some(format!("data:{mime};base64,{}", b64(&bytes))));
        }
        if !self.logo_svg.is_empty() {
            return Ok(Some(format!("data:image/svg+xml;base64,{}", b64(self.logo_svg.as_bytes()))));
        }
        Ok(None)
    }
}

fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `[render]`: how documents are produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderConfig {
    /// An HTML template (minijinja) replacing the built-in one; empty for the built-in.
    pub template: String,
    /// Removed: documents print the invoice's stored due date, whose terms are
    /// `[billing] payment_terms_days` (and the customer's own). Still parsed so that a config
    /// that sets it fails [`RenderConfig::validate`] with a message naming the new key, instead
    /// of its terms being silently replaced by the billing default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_terms_days: Option<u32>,
    /// Chromium binary for PDF output: a name looked up in `PATH` or a path.
    pub chromium: String,
    /// Longest a PDF may take, in seconds, before Chromium is killed.
    pub pdf_timeout_secs: u64,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig { template: String::new(), payment_terms_days: None, chromium: "chromium".into(), pdf_timeout_secs: 60 }
    }
}

impl RenderConfig {
    /// Checks values.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(days) = self.payment_terms_days {
            return Err(format!(
                "render.payment_terms_days = {days}: moved to billing.payment_terms_days (invoices now store their due date); \
                 set billing.payment_terms_days = {days} and remove it from [render]"
            ));
        }
        if self.chromium.trim().is_empty() {
            return Err("render.chromium is empty: name the Chromium binary, e.g. \"chromium\"".into());
        }
        if self.pdf_timeout_secs == 0 {
            return Err("render.pdf_timeout_secs = 0: must be at least 1".into());
        }
        if !self.template.is_empty() && !Path::new(&self.template).is_file() {
            return Err(format!("render.template = {:?}: no such file", self.template));
        }
        Ok(())
    }

    /// The custom template's text, if one is configured.
    pub fn template_text(&self) -> Result<Option<String>> {
        if self.template.is_empty() {
            return Ok(None);
        }
        let path = PathBuf::from(&self.template);
        std::fs::read_to_string(&path).map(Some).map_err(|e| Error::Render(format!("render.template = {:?}: {e}", self.template)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_and_logos_are_checked() {
        assert!(Branding::default().validate().is_ok());
        let mut b = Branding { primary_color: "red;} body{display:none".into(), ..Branding::default() };
        assert!(b.validate().unwrap_err().contains("branding.primary_color"));
        b.primary_color = "#abc".into();
        assert!(b.validate().is_ok());
        b.logo_svg = "<script>alert(1)</script>".into();
        assert!(b.validate().unwrap_err().contains("logo_svg"));
        b.logo_svg = "<svg xmlns=\"http://www.w3.org/2000/svg\"/>".into();
        assert!(b.logo_data_uri().unwrap().unwrap().starts_with("data:image/svg+xml;base64,PHN2Zy"));
        b.logo_path = "/nonexistent/logo.png".into();
        assert!(b.logo_data_uri().unwrap_err().to_string().contains("/nonexistent/logo.png"));
    }
}
