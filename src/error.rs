//! Errors that stop a file (tier 2) or the run (tier 1). Per-packet oddities are never
//! errors: they are counters and anomalies.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CaptureError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: empty file: no capture header")]
    Empty { path: PathBuf },
    #[error("{path}: not a pcap or pcapng capture (first bytes {magic}) at offset 0")]
    BadMagic { path: PathBuf, magic: String },
    #[error("{path}: truncated capture header (offset 0, {len} bytes)")]
    TruncatedHeader { path: PathBuf, len: usize },
    #[error("{path}: read error at byte offset {offset}: {detail}")]
    Read {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    #[error("{path}: damaged record at byte offset {offset}: {detail}")]
    Damaged {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
}

impl CaptureError {
    /// True when frames before the error were read and are worth reporting.
    pub fn is_partial(&self) -> bool {
        matches!(
            self,
            CaptureError::Damaged { .. } | CaptureError::Read { .. }
        )
    }
}
