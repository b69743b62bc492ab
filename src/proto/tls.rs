//! Minimal TLS analyzer (placeholder until the tls-parser handshake analyzer lands): records that TLS
//! began and counts the bytes it was given.

use crate::model::{Direction, Encryption, TlsInfo};
use crate::proto::api::{Analyzer, Ctx, Next};

/// Minimal TLS analyzer: notes that TLS began; the handshake is not parsed yet.
pub struct TlsAnalyzer {
    started_by: &'static str,
    /// Bytes forwarded per direction (tests read it).
    pub bytes: [u64; 2],
}

impl TlsAnalyzer {
    pub fn new(started_by: &'static str) -> Self {
        TlsAnalyzer {
            started_by,
            bytes: [0; 2],
        }
    }
}

impl Analyzer for TlsAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        if let Some(b) = self.bytes.get_mut(dir.index()) {
            *b += data.len() as u64;
        }
        if cx.posture.tls.is_none() {
            cx.posture.tls = Some(TlsInfo {
                started_by: self.started_by.to_string(),
                ..TlsInfo::default()
            });
        }
        if dir == Direction::ToClient && data.first() == Some(&0x16) {
            cx.posture.set_encryption(Encryption::Tls, cx.frame);
        }
        Next::Continue
    }
}
