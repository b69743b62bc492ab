//! Report writers: one module per report, each turning results into text or JSON.

pub mod annotate;
pub mod audit;
pub mod coverage;
pub mod flows;
pub mod json;
pub mod output;
pub mod records;
pub mod spill;

/// A JSON write error as an I/O error of the same kind, so a closed pipe stays a
/// `BrokenPipe` the command line can ignore.
pub(crate) fn json_io(e: serde_json::Error) -> std::io::Error {
    match e.io_error_kind() {
        Some(kind) => std::io::Error::new(kind, e),
        None => std::io::Error::other(e),
    }
}
