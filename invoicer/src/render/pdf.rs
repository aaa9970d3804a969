//! PDF from the same HTML, printed by headless Chromium (`--print-to-pdf`).
//!
//! Why Chromium: the PDF is the HTML document exactly (same template, same fonts, CJK
//! included), and Chromium's layout engine is the most robust one available as a Debian package
//! (`chromium`). A pure-Rust path would be a second layout of the same invoice to keep in step.
//! The binary is optional at build time: without it, HTML and CSV still work and PDF output
//! fails with an error naming the binary and the package to install.
//!
//! Each run gets a fresh temporary profile and working directory, no network
//! (`--disable-background-networking`, and the document's Content-Security-Policy allows only
//! inline styles and `data:` images, so no script runs; Chromium's own `--blink-settings=
//! scriptEnabled=false` would also stop `--print-to-pdf`), and a timeout after which it is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A located Chromium binary.
#[derive(Debug, Clone)]
pub struct Chromium {
    binary: PathBuf,
    timeout: Duration,
}

impl Chromium {
    /// Finds `name` (a path, or a name looked up in `PATH`).
    pub fn locate(name: &str, timeout: Duration) -> Result<Chromium> {
        let missing = || Error::PdfEngineMissing { binary: name.to_owned() };
        let binary = if name.contains('/') {
            let p = PathBuf::from(name);
            if !p.is_file() {
                return Err(missing());
            }
            p
        } else {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()).ok_or_else(missing)?
        };
        Ok(Chromium { binary, timeout })
    }

    /// The binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Prints an HTML document to PDF (A4, as the template's `@page` says).
    pub fn html_to_pdf(&self, html: &str) -> Result<Vec<u8>> {
        let dir = tempfile::Builder::new().prefix("meterline-pdf-").tempdir().map_err(|e| self.fail(format!("temp dir: {e}")))?;
        let input = dir.path().join("invoice.html");
        let output = dir.path().join("invoice.pdf");
        std::fs::write(&input, html).map_err(|e| self.fail(format!("write {}: {e}", input.display())))?;
        let mut cmd = Command::new(&self.binary);
        cmd.args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", dir.path().join("profile").display()))
        .arg(format!("--print-to-pdf={}", output.display()))
        .arg(format!("file://{}", input.display()))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.fail(format!("start: {e}")))?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait().map_err(|e| self.fail(format!("wait: {e}")))? {
                Some(status) => break status,
                None if started.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.fail(format!("no PDF after {} s (render.pdf_timeout_secs); killed", self.timeout.as_secs())));
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
        }
        let bytes = std::fs::read(&output).unwrap_or_default();
        if !status.success() || !bytes.starts_with(b"%PDF-") {
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(self.fail(format!("exited with {status} without a PDF: {}", tail.join(" | "))));
        }
        Ok(bytes)
    }

    fn fail(&self, reason: String) -> Error {
        Error::Pdf { binary: self.binary.display().to_string(), reason }
    }
}

/// Number of pages of a PDF written by Chromium (counts `/Type /Page` objects).
pub fn page_count(pdf: &[u8]) -> usize {
    let needle = b"/Type /Page";
    pdf.windows(needle.len() + 1).filter(|w| w.starts_with(needle) && w[needle.len()] != b's').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_named_in_the_error() {
        let err = Chromium::locate("/nonexistent/chromium", Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/chromium") && err.contains("apt-get install"), "{err}");
        let err = Chromium::locate("no-such-chromium-binary", Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.contains("no-such-chromium-binary") && err.contains("render.chromium"), "{err}");
    }
}
