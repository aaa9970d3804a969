//! `perf-doc`: regenerate docs/PERFORMANCE.md (the generated part) and docs/img/loadtest-latency.png.

use std::path::PathBuf;

use clap::Parser;

/// Regenerates the performance page from benchmark JSON.
#[derive(Debug, Parser)]
struct Args {
    /// The page.
    #[arg(long, default_value = "docs/PERFORMANCE.md")]
    doc: PathBuf,
    /// Folder of the JSON results (loadtest-sweep.json, loadtest-run.json, bench-close.json).
    #[arg(long, default_value = ".local/bench/results")]
    results: PathBuf,
    /// criterion's output folder.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// The plot.
    #[arg(long, default_value = "docs/img/loadtest-latency.png")]
    img: PathBuf,
    /// Replace only the load-test part of the generated region (after `make loadtest` and
    /// `make loadtest-http` alone, without the other benchmarks' results at hand).
    #[arg(long)]
    only_loadtest: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    meterline_loadtest::perfdoc::write(&a.doc, &a.results, &a.criterion, &a.img, a.only_loadtest)?;
    eprintln!("wrote {} and {}", a.doc.display(), a.img.display());
    Ok(())
}
