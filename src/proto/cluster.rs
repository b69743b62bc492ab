//! Windows cluster service traffic on UDP 3343 (ClusSvc heartbeats and intra-cluster
//! messages tunnelled by the NetFT / clusnet driver).
//!
//! What can be verified: Microsoft documents only the port and the behaviour (every node
//! exchanges sequenced unicast datagrams with every other node, about one a second); the
//! datagram layout is not published and no public dissector decodes it. So this
//! analyzer recognises the flow by port alone, says so in the fact
//! `cluster.heartbeat` = `port-only`, and counts datagrams (`cluster.datagrams`, written
//! when the flow ends) without claiming anything about their fields.
//!
//! Encryption: Windows can sign or encrypt this traffic, and nothing in an opaque
//! datagram tells which. The flow therefore stays [`Encryption::Unknown`] unless a
//! datagram visibly carries structured plaintext: a run of at least
//! [`MIN_ASCII_RUN`] printable ASCII bytes or [`MIN_UTF16_RUN`] printable UTF-16LE
//! characters (node names, resource names). Those lengths make a false match on random
//! or encrypted bytes negligible (about 1e-10 per datagram), so such a flow is marked
//! cleartext with the fact `cluster.plaintext`.
//!
//! [`Encryption::Unknown`]: crate::model::Encryption::Unknown

use crate::model::Direction;
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration};

/// The cluster service port (UDP).
pub const CLUSTER_PORT: u16 = 3343;

/// ClusSvc / NetFT datagrams on UDP 3343.
pub const REGISTRATION: Registration = Registration {
    name: "cluster",
    tcp: false,
    ports: &[CLUSTER_PORT],
    probe,
    make,
};

fn make() -> Box<dyn Analyzer> {
    Box::new(ClusterAnalyzer::new())
}

/// Printable ASCII bytes in a row that count as visible plaintext: (95/256)^24 is about
/// 5e-11 per position, negligible for encrypted datagrams.
pub const MIN_ASCII_RUN: usize = 24;
/// Printable UTF-16LE characters in a row that count as visible plaintext.
pub const MIN_UTF16_RUN: usize = 8;
/// Bytes of each datagram scanned for plaintext (heartbeats are small; bounds work).
pub const MAX_SCAN: usize = 2048;

/// Probe: the format is not public, so only the port can tell; any non-empty datagram
/// to or from 3343 is unsure (the port decides), anything else is not ours.
pub fn probe(_dir: Direction, prefix: &[u8], client_port: u16, server_port: u16) -> Probe {
    if !prefix.is_empty() && (server_port == CLUSTER_PORT || client_port == CLUSTER_PORT) {
        Probe::Unsure
    } else {
        Probe::No
    }
}

/// Per-flow cluster state: datagram counts per direction.
#[derive(Debug, Default)]
pub struct ClusterAnalyzer {
    datagrams: [u64; 2],
    plaintext_seen: bool,
}

impl ClusterAnalyzer {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Which kind of readable run `data` holds, if any.
pub fn visible_plaintext(data: &[u8]) -> Option<&'static str> {
    let data = data.get(..data.len().min(MAX_SCAN)).unwrap_or_default();
    let printable = |b: u8| (0x20..0x7f).contains(&b);
    let mut run = 0usize;
    for &b in data {
        run = if printable(b) { run + 1 } else { 0 };
        if run >= MIN_ASCII_RUN {
            return Some("ascii");
        }
    }
    for start in 0..2 {
        let mut run = 0usize;
        let pairs = data.get(start..).unwrap_or_default().chunks_exact(2);
        for pair in pairs {
            let (lo, hi) = (pair.first().copied(), pair.get(1).copied());
            run = match (lo, hi) {
                (Some(l), Some(0)) if printable(l) => run + 1,
                _ => 0,
            };
            if run >= MIN_UTF16_RUN {
                return Some("utf16");
            }
        }
    }
    None
}

impl Analyzer for ClusterAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        cx.posture.protocol.get_or_insert("cluster");
        if let Some(n) = self.datagrams.get_mut(dir.index()) {
            *n += 1;
        }
        cx.posture.fact("cluster.heartbeat", "port-only");
        if !self.plaintext_seen {
            if let Some(kind) = visible_plaintext(data) {
                self.plaintext_seen = true;
                cx.posture.fact("cluster.plaintext", kind);
                cx.posture.set_cleartext();
            }
        }
        Next::Continue
    }

    fn finish(&mut self, cx: &mut Ctx) {
        let [to_server, to_client] = self.datagrams;
        cx.posture.fact(
            "cluster.datagrams",
            format!("{to_server} to server, {to_client} to client"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Encryption, Posture};

    fn run(datagrams: &[(Direction, &[u8])]) -> Posture {
        let mut a = ClusterAnalyzer::new();
        let mut posture = Posture::default();
        for (i, (dir, d)) in datagrams.iter().enumerate() {
            let mut cx = Ctx {
                limits: &crate::limits::ProtoLimits::DEFAULT,
                frame: i as u64 + 1,
                ts_ns: 0,
                client_port: CLUSTER_PORT,
                server_port: CLUSTER_PORT,
                posture: &mut posture,
            };
            a.data(*dir, d, &mut cx);
        }
        let mut cx = Ctx {
            limits: &crate::limits::ProtoLimits::DEFAULT,
            frame: 99,
            ts_ns: 0,
            client_port: CLUSTER_PORT,
            server_port: CLUSTER_PORT,
            posture: &mut posture,
        };
        a.finish(&mut cx);
        posture
    }

    /// An opaque datagram: a made-up 8-byte header then high-entropy bytes, the shape a
    /// signed-and-encrypted heartbeat has on the wire.
    const OPAQUE: &[u8] = &[
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2a, // header-like words
        0x9f, 0x3c, 0x22, 0xaa, 0x01, 0x7b, 0xe4, 0xc8, 0x1d, 0x55, 0xe0, 0xf3, 0xa9, 0xb2, 0xc7,
        0xd6, 0x0e, 0x11, 0xf4, 0xa2, 0x5b, 0x7e, 0x33, 0x90, 0x61, 0xc4, 0x08, 0xdd,
    ];

    #[test]
    fn heartbeats_are_counted_and_stay_unknown() {
        let p = run(&[
            (Direction::ToServer, OPAQUE),
            (Direction::ToClient, OPAQUE),
            (Direction::ToServer, OPAQUE),
        ]);
        assert!(p.has_fact("cluster.heartbeat", "port-only"));
        assert!(p.has_fact("cluster.datagrams", "2 to server, 1 to client"));
        assert_eq!(p.encryption, Encryption::Unknown);
        assert_eq!(p.protocol, Some("cluster"));
    }

    #[test]
    fn utf16_node_name_is_visible_plaintext() {
        // Header words then "EXMBXNODE01" in UTF-16LE.
        let mut d = vec![0x00, 0x00, 0x00, 0x02];
        for c in "EXMBXNODE01".bytes() {
            d.extend([c, 0x00]);
        }
        let p = run(&[(Direction::ToServer, &d)]);
        assert!(p.has_fact("cluster.plaintext", "utf16"));
        assert_eq!(p.encryption, Encryption::None);
    }

    #[test]
    fn short_text_is_not_enough() {
        // 7 UTF-16 characters and 23 ASCII bytes: below both thresholds.
        let mut d = Vec::new();
        for c in "NODE-01".bytes() {
            d.extend([c, 0x00]);
        }
        d.push(0xff);
        d.extend(b"abcdefghijklmnopqrstuvw");
        assert_eq!(visible_plaintext(&d), None);
        d.extend(b"x");
        assert_eq!(visible_plaintext(&d), Some("ascii"));
    }

    #[test]
    fn probe_is_port_only() {
        assert_eq!(
            probe(Direction::ToServer, OPAQUE, 50000, 3343),
            Probe::Unsure
        );
        assert_eq!(probe(Direction::ToServer, OPAQUE, 50000, 3344), Probe::No);
        assert_eq!(probe(Direction::ToServer, &[], 3343, 3343), Probe::No);
    }
}
