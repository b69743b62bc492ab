//! The protocol-analyzer interface: a cheap probe on a bounded prefix decides which
//! analyzer owns a flow; the analyzer then receives the reassembled byte stream of each
//! direction, in capture order, and writes what it sees into the flow's [`Posture`].

use crate::limits::ProtoLimits;
use crate::model::{Direction, Posture};

/// What a probe thinks of a stream prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The bytes are this protocol's handshake.
    Certain,
    /// Could be this protocol; more bytes (or the port) would tell.
    Unsure,
    /// Not this protocol.
    No,
}

/// What the engine should do after feeding an analyzer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep feeding bytes.
    Continue,
    /// Nothing more to learn (encrypted, or the analyzer gave up): count bytes only.
    Done,
}

/// Context for one call: the frame that delivered the bytes, its time, and the posture.
pub struct Ctx<'a> {
    /// 1-based frame number (Wireshark's) of the packet whose payload is being fed.
    pub frame: u64,
    /// Capture timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Client and server ports of the flow.
    pub client_port: u16,
    pub server_port: u16,
    pub posture: &'a mut Posture,
    /// Caps the analyzer must keep to.
    pub limits: &'a ProtoLimits,
}

/// A protocol analyzer: one instance per flow.
pub trait Analyzer: Send {
    /// Bytes for `dir`, contiguous with the previous call for that direction unless
    /// [`Analyzer::gap`] was called in between. Analyzers buffer what they need
    /// themselves (bounded) and must never panic on any input.
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next;

    /// `len` bytes of `dir` are missing from the capture.
    fn gap(&mut self, dir: Direction, len: u64, cx: &mut Ctx) -> Next {
        let _ = (dir, len);
        cx.posture.anomaly(
            cx.frame,
            "stream.gap",
            "bytes missing from the capture; parser stopped",
        );
        Next::Done
    }

    /// The flow ended (FIN/RST, timeout, end of capture).
    fn finish(&mut self, cx: &mut Ctx) {
        let _ = cx;
    }
}

/// Probe signature: which direction the prefix came from, the prefix, the flow's ports.
pub type ProbeFn = fn(dir: Direction, prefix: &[u8], client_port: u16, server_port: u16) -> Probe;

/// A protocol known to the engine.
pub struct Registration {
    pub name: &'static str,
    /// Transport: `true` for TCP stream analyzers, `false` for UDP datagram analyzers.
    pub tcp: bool,
    /// Server ports where an `Unsure` probe is enough.
    pub ports: &'static [u16],
    pub probe: ProbeFn,
    pub make: fn() -> Box<dyn Analyzer>,
}

/// A bounded byte buffer for analyzers that need whole lines or records.
/// Pushing past `cap` drops the excess and reports it, so memory stays bounded.
#[derive(Debug, Default)]
pub struct StreamBuf {
    pub buf: Vec<u8>,
    pub cap: usize,
    pub overflowed: bool,
}

impl StreamBuf {
    pub fn new(cap: usize) -> Self {
        StreamBuf {
            buf: Vec::new(),
            cap,
            overflowed: false,
        }
    }
    /// Append; returns false (and sets `overflowed`) when the cap would be passed.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if self.buf.len() + data.len() > self.cap {
            self.overflowed = true;
            return false;
        }
        self.buf.extend_from_slice(data);
        true
    }
    /// Drop the first `n` bytes (already parsed).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.drain(..n);
    }
}
