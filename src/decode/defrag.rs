//! IP reassembly (RFC 791 3.2, RFC 8200 4.5) with hard caps.
//!
//! A datagram in progress is a byte buffer as long as the furthest fragment end seen,
//! plus the sorted list of byte ranges received. It completes when the last fragment
//! (MF = 0) has fixed the length and the ranges cover it without a hole.
//!
//! Overlaps: the first copy of a byte wins. A fragment that overlaps bytes already held
//! with the *same* values (a duplicate, e.g. a frame seen twice by a SPAN port, or a
//! retransmission re-fragmented the same way) is counted in `defrag_overlaps` and
//! otherwise harmless. When the overlapping bytes *differ* (the classic IDS-evasion
//! pattern: BSD, Linux and Windows each resolve such overlaps differently), the fragment's
//! new bytes are still placed, the first copy of every overlapping byte is kept, the
//! datagram is marked and counted in `defrag_conflicts`, and the packet it completes
//! carries `frag_conflict` so the flow reports the anomaly. Wireshark reassembles such
//! datagrams too (it flags "conflicting data in fragment overlap"), so the frame keeps
//! its place in the same TCP/UDP stream. Two last fragments that disagree on the
//! datagram's end cannot be reconciled: that datagram is dropped and counted.
//!
//! Caps: at most `max_datagrams` in progress and `max_bytes` held (buffer lengths, so a
//! single tiny fragment at offset 65000 is charged its 65 KB); reaching either drops the
//! oldest datagram. More than `max_fragments_per_datagram` fragments, or a fragment
//! reaching past 65535 bytes, drops that datagram. Datagrams whose first fragment is
//! older than `timeout_ns` (capture time) are dropped lazily on the next frame.

use std::collections::{BTreeMap, HashMap};

use super::{DecodeStats, DefragLimits};

/// Largest reassembled payload: the IPv4 total length and the IPv6 payload length are
/// 16-bit fields (RFC 791 3.1, RFC 8200 3; jumbograms are not supported).
pub(super) const MAX_DATAGRAM_LEN: usize = 65535;

/// What identifies the fragments of one datagram (RFC 791 3.2: source, destination,
/// protocol, identification; RFC 8200 4.5: source, destination, identification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum FragKey {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        id: u16,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
        id: u32,
    },
}

/// One received fragment.
pub(super) struct Piece<'f> {
    pub key: FragKey,
    /// Byte offset in the datagram's payload.
    pub offset: usize,
    pub more: bool,
    pub data: &'f [u8],
    /// Protocol of the reassembled payload (IPv4: the header's protocol; IPv6: the
    /// fragment header's next header, taken from the fragment at offset 0).
    pub next_header: u8,
}

/// A completed datagram.
pub(super) struct Done {
    pub data: Vec<u8>,
    pub next_header: u8,
    pub first_frame: u64,
    /// Overlapping fragments disagreed; the first copy of each byte was kept.
    pub conflict: bool,
}

pub(super) enum Insert {
    Held,
    Complete(Done),
    Dropped,
}

struct Datagram {
    /// Creation order, the key of [`Defrag::age`].
    seq: u64,
    first_ts: i64,
    first_frame: u64,
    data: Vec<u8>,
    /// Received byte ranges, sorted, disjoint and not adjacent (merged).
    have: Vec<(usize, usize)>,
    /// Payload length, once the last fragment is in.
    total: Option<usize>,
    frags: usize,
    next_header: Option<u8>,
    /// Some overlapping fragment carried different bytes (first copy kept).
    conflict: bool,
}

impl Datagram {
    /// True when `piece` contradicts the datagram's end as held (fatal). Sets `overlap`
    /// when it overlaps held bytes at all and `differs` when those bytes are different.
    fn conflicts(
        &self,
        offset: usize,
        data: &[u8],
        more: bool,
        overlap: &mut bool,
        differs: &mut bool,
    ) -> bool {
        let end = offset + data.len();
        let held_end = self.have.last().map_or(0, |r| r.1);
        match self.total {
            Some(t) if end > t || (!more && end != t) => return true,
            None if !more && held_end > end => return true,
            _ => {}
        }
        for &(s, e) in &self.have {
            let lo = s.max(offset);
            let hi = e.min(end);
            if lo < hi {
                *overlap = true;
                let old = self.data.get(lo..hi);
                let new = data.get(lo - offset..hi - offset);
                if old.is_none() || old != new {
                    *differs = true;
                }
            }
        }
        false
    }

    /// Records `[s, e)` as received, merging with neighbours.
    fn add_range(&mut self, s: usize, e: usize) {
        if s >= e {
            return;
        }
        let mut lo = s;
        let mut hi = e;
        self.have.retain(|&(a, b)| {
            if b < lo || a > hi {
                true
            } else {
                lo = lo.min(a);
                hi = hi.max(b);
                false
            }
        });
        let at = self.have.partition_point(|&(a, _)| a < lo);
        self.have.insert(at, (lo, hi));
    }

    fn complete(&self) -> bool {
        match (self.total, self.have.as_slice()) {
            (Some(t), [(0, e)]) => *e == t,
            (Some(0), []) => true,
            _ => false,
        }
    }
}

/// The reassembly table.
pub(super) struct Defrag {
    limits: DefragLimits,
    table: HashMap<FragKey, Datagram>,
    /// Datagrams in progress by creation order: the first one is the oldest.
    age: BTreeMap<u64, FragKey>,
    /// Sum of the buffer lengths of all datagrams in progress.
    bytes: usize,
    next_seq: u64,
}

impl Defrag {
    pub(super) fn new(limits: DefragLimits) -> Self {
        Defrag {
            limits,
            table: HashMap::new(),
            age: BTreeMap::new(),
            bytes: 0,
            next_seq: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops everything, returning how many datagrams were in progress.
    pub(super) fn clear(&mut self) -> usize {
        let n = self.table.len();
        self.table.clear();
        self.age.clear();
        self.bytes = 0;
        n
    }

    fn remove(&mut self, key: &FragKey) -> Option<Datagram> {
        let dg = self.table.remove(key)?;
        self.age.remove(&dg.seq);
        self.bytes = self.bytes.saturating_sub(dg.data.len());
        Some(dg)
    }

    /// Drops the oldest datagram other than `keep`; false when there is none.
    fn evict_oldest(&mut self, keep: &FragKey, stats: &mut DecodeStats) -> bool {
        let victim = self.age.values().find(|k| *k != keep).copied();
        match victim {
            Some(k) => {
                self.remove(&k);
                stats.defrag_dropped_cap += 1;
                true
            }
            None => false,
        }
    }

    /// Drops datagrams whose first fragment is older than the timeout. Capture time
    /// can step backwards; a datagram then simply lives a little longer (the caps still
    /// hold).
    pub(super) fn purge(&mut self, now: i64, stats: &mut DecodeStats) {
        while let Some((_, key)) = self.age.first_key_value() {
            let key = *key;
            let expired = self
                .table
                .get(&key)
                .is_none_or(|dg| now.saturating_sub(dg.first_ts) > self.limits.timeout_ns);
            if !expired {
                break;
            }
            if self.remove(&key).is_some() {
                stats.defrag_timed_out += 1;
            } else {
                // An age entry without its datagram cannot happen; drop it anyway so
                // this loop always makes progress.
                self.age.pop_first();
            }
        }
    }

    /// Adds one fragment.
    pub(super) fn insert(
        &mut self,
        p: Piece<'_>,
        ts: i64,
        frame: u64,
        stats: &mut DecodeStats,
    ) -> Insert {
        let key = p.key;
        let end = match p.offset.checked_add(p.data.len()) {
            Some(e) if e <= MAX_DATAGRAM_LEN => e,
            _ => {
                self.remove(&key);
                stats.defrag_oversize += 1;
                return Insert::Dropped;
            }
        };
        if end > self.limits.max_bytes
            || self.limits.max_datagrams == 0
            || self.limits.max_fragments_per_datagram == 0
        {
            // This datagram alone could never be held.
            self.remove(&key);
            stats.defrag_dropped_cap += 1;
            return Insert::Dropped;
        }
        if !self.table.contains_key(&key) {
            while self.table.len() >= self.limits.max_datagrams {
                if !self.evict_oldest(&key, stats) {
                    break;
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.age.insert(seq, key);
            self.table.insert(
                key,
                Datagram {
                    seq,
                    first_ts: ts,
                    first_frame: frame,
                    data: Vec::new(),
                    have: Vec::new(),
                    total: None,
                    frags: 0,
                    next_header: None,
                    conflict: false,
                },
            );
        }

        // Checks against what is held.
        let grow = {
            let Some(dg) = self.table.get_mut(&key) else {
                return Insert::Dropped;
            };
            dg.frags += 1;
            if dg.frags > self.limits.max_fragments_per_datagram {
                self.remove(&key);
                stats.defrag_dropped_cap += 1;
                return Insert::Dropped;
            }
            let (mut overlap, mut differs) = (false, false);
            if dg.conflicts(p.offset, p.data, p.more, &mut overlap, &mut differs) {
                self.remove(&key);
                stats.defrag_conflicts += 1;
                return Insert::Dropped;
            }
            if overlap {
                stats.defrag_overlaps += 1;
            }
            if differs {
                stats.defrag_conflicts += 1;
                dg.conflict = true;
            }
            end.saturating_sub(dg.data.len())
        };

        // Room for the bytes this fragment adds.
        while self.bytes + grow > self.limits.max_bytes {
            if !self.evict_oldest(&key, stats) {
                self.remove(&key);
                stats.defrag_dropped_cap += 1;
                return Insert::Dropped;
            }
        }

        let Some(dg) = self.table.get_mut(&key) else {
            return Insert::Dropped;
        };
        if grow > 0 {
            dg.data.reserve_exact(grow);
            dg.data.resize(end, 0);
            self.bytes += grow;
        }
        // Copy only the bytes not held yet: the first copy of every byte wins.
        let mut at = p.offset;
        for &(s, e) in dg.have.iter().chain(std::iter::once(&(end, end))) {
            if e <= at {
                continue;
            }
            let stop = s.min(end);
            if stop > at {
                if let (Some(dst), Some(src)) = (
                    dg.data.get_mut(at..stop),
                    p.data.get(at - p.offset..stop - p.offset),
                ) {
                    dst.copy_from_slice(src);
                }
            }
            at = at.max(e);
            if at >= end {
                break;
            }
        }
        dg.add_range(p.offset, end);
        if p.offset == 0 && dg.next_header.is_none() {
            dg.next_header = Some(p.next_header);
        }
        if !p.more {
            dg.total = Some(end);
        }
        if !dg.complete() {
            return Insert::Held;
        }
        match self.remove(&key) {
            Some(dg) => {
                let mut data = dg.data;
                data.truncate(dg.total.unwrap_or(0));
                Insert::Complete(Done {
                    data,
                    next_header: dg.next_header.unwrap_or(p.next_header),
                    first_frame: dg.first_frame,
                    conflict: dg.conflict,
                })
            }
            None => Insert::Dropped,
        }
    }
}
