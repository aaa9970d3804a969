//! Writing command output to stdout. A closed pipe (`meterline invoices list | head`) ends the
//! command quietly instead of panicking like `println!` does.

use std::io::Write;

/// The error a closed stdout pipe turns into; `main` exits successfully on it.
#[derive(Debug, thiserror::Error)]
#[error("stdout closed")]
pub struct StdoutClosed;

/// Writes `text` and a newline to stdout.
pub fn emit(text: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(e.into()),
    }
}
