//! TCP reassembly for one direction of a connection.
//!
//! Segments are placed by sequence number (compared with wrapping arithmetic, RFC 1323
//! style) and handed on as contiguous [`Piece::Data`]. Overlaps are resolved by
//! *first copy wins*: once a byte has been delivered, a retransmission that carries a
//! different value for it is counted as a conflicting overlap, never re-delivered. This
//! is what an analyzer needs (it has already acted on the first copy) and what a
//! passive observer can defend: it cannot know which copy the receiver kept, so it
//! reports that the two differed. Out-of-order segments wait in a buffer bounded by
//! [`ReassemblyLimits`]; when the buffer is full, or when the peer acknowledges bytes the
//! capture never showed, the missing range becomes a [`Piece::Gap`] and delivery goes on.

/// Caps on what one direction may hold while waiting for missing segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Out-of-order segments held per direction.
    pub max_segments: usize,
    /// Out-of-order bytes held per direction.
    pub max_bytes: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits {
            max_segments: DEFAULT_MAX_OOO_SEGMENTS,
            max_bytes: DEFAULT_MAX_OOO_BYTES,
        }
    }
}

/// Default out-of-order segments held per direction (a full 64 KiB window of 1 KiB segments).
pub const DEFAULT_MAX_OOO_SEGMENTS: usize = 64;
/// Default out-of-order bytes held per direction (the largest unscaled TCP window).
pub const DEFAULT_MAX_OOO_BYTES: usize = 256 * 1024;
/// A segment further ahead than this is not a plausible window (RFC 7323 caps the window
/// at 2^30); it is counted and ignored instead of opening a gigabyte-sized hole.
const MAX_PLAUSIBLE_AHEAD: u32 = 1 << 30;

/// What the reassembler hands on.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Data(&'a [u8]),
    /// This many bytes never appeared in the capture.
    Gap(u64),
}

/// Counters that the flow report shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReassemblyStats {
    /// Bytes seen again after they were delivered (retransmissions, keep-alives).
    pub retransmitted_bytes: u64,
    /// Segments that overlapped delivered bytes with a different value.
    pub conflicting_overlaps: u64,
    /// Segments that arrived ahead of a missing one.
    pub out_of_order: u64,
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Times the out-of-order buffer was full and a gap was declared early.
    pub cap_hits: u64,
    /// Segments ignored because their sequence number was implausibly far ahead.
    pub implausible: u64,
}

/// A flow's reassembly counters for both directions, allocated only when one is not
/// zero: most flows never retransmit, and every live flow carries this.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReassemblyTotals(Option<Box<[ReassemblyStats; 2]>>);

const NO_STATS: ReassemblyStats = ReassemblyStats {
    retransmitted_bytes: 0,
    conflicting_overlaps: 0,
    out_of_order: 0,
    gaps: 0,
    gap_bytes: 0,
    cap_hits: 0,
    implausible: 0,
};

impl ReassemblyTotals {
    /// Client-to-server, then server-to-client.
    pub fn iter(&self) -> impl Iterator<Item = &ReassemblyStats> {
        [&self[0], &self[1]].into_iter()
    }
}

impl std::ops::Index<usize> for ReassemblyTotals {
    type Output = ReassemblyStats;
    fn index(&self, i: usize) -> &ReassemblyStats {
        self.0.as_deref().map_or(&NO_STATS, |s| &s[i])
    }
}

impl std::ops::IndexMut<usize> for ReassemblyTotals {
    fn index_mut(&mut self, i: usize) -> &mut ReassemblyStats {
        &mut self.0.get_or_insert_with(Default::default)[i]
    }
}

struct Held {
    seq: u32,
    data: Vec<u8>,
}

/// One direction's reassembly state.
#[derive(Default)]
pub struct Reassembler {
    /// Next sequence number expected; `None` until the first SYN or data segment.
    next: Option<u32>,
    /// Sequence number just after the last byte, once a FIN was seen.
    fin: Option<u32>,
    held: Vec<Held>,
    held_bytes: usize,
    /// The last bytes delivered, to tell a faithful retransmission from a conflicting one.
    tail: Vec<u8>,
    /// True when data arrived before any SYN: the start of this direction was not seen.
    pub start_missing: bool,
    /// Nobody reads the bytes any more (analysis finished): skip the conflict check copy.
    light: bool,
    /// An acknowledgement beyond `next` seen once, with nothing held beyond the hole: the
    /// segment may just come later in the capture (the two directions of a capture are
    /// not always in order), so the gap waits for a second sign.
    pending_ack: Option<u32>,
    pub stats: ReassemblyStats,
}

/// How many delivered bytes are kept to compare retransmissions against.
const TAIL_KEEP: usize = 2048;

fn ahead(seq: u32, of: u32) -> i64 {
    i64::from(seq.wrapping_sub(of) as i32)
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// A SYN with this sequence number: data starts at `isn + 1`.
    pub fn syn(&mut self, isn: u32) {
        if self.next.is_none() {
            self.next = Some(isn.wrapping_add(1));
        }
    }

    /// A FIN whose sequence number (after any data in the same segment) is `seq`.
    pub fn fin(&mut self, seq: u32) {
        if self.fin.is_none() {
            self.fin = Some(seq);
        }
    }

    /// Stop keeping delivered bytes for the overlap-conflict check: the flow's analysis
    /// is over, only positions and counts still matter.
    pub fn set_light(&mut self) {
        self.light = true;
        self.tail = Vec::new();
    }

    /// Bytes held out of order right now.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Place one segment's payload and deliver whatever became contiguous.
    pub fn segment(
        &mut self,
        seq: u32,
        data: &[u8],
        limits: &ReassemblyLimits,
        out: &mut dyn FnMut(Piece<'_>),
    ) {
        self.place(seq, data, limits, out);
        if self.pending_ack.is_some() {
            self.settle_pending(out);
        }
    }

    fn place(
        &mut self,
        seq: u32,
        data: &[u8],
        limits: &ReassemblyLimits,
        out: &mut dyn FnMut(Piece<'_>),
    ) {
        if data.is_empty() {
            return;
        }
        let next = match self.next {
            Some(n) => n,
            None => {
                self.start_missing = true;
                self.next = Some(seq);
                seq
            }
        };
        let rel = ahead(seq, next);
        if rel <= 0 {
            self.deliver_overlapping(seq, data, next, out);
            self.drain(out);
            return;
        }
        if rel > i64::from(MAX_PLAUSIBLE_AHEAD) {
            self.stats.implausible += 1;
            return;
        }
        // Ahead of a hole: hold it, within the caps.
        self.stats.out_of_order += 1;
        while self.held.len() >= limits.max_segments
            || self.held_bytes + data.len() > limits.max_bytes
        {
            // Full: declare the earliest hole now (before this segment or before the
            // earliest held one, whichever comes first) and deliver what follows it.
            self.stats.cap_hits += 1;
            let next = self.next.unwrap_or(seq);
            let first = self.first_held().map(|i| self.held[i].seq);
            if first.is_none_or(|f| ahead(seq, f) < 0) {
                let missing = ahead(seq, next);
                if missing > 0 {
                    self.gap(missing as u64, out);
                    self.next = Some(seq);
                }
                let next = self.next.unwrap_or(seq);
                self.deliver_overlapping(seq, data, next, out);
                self.drain(out);
                return;
            }
            self.skip_to_first_held(out);
            self.drain(out);
            let next = self.next.unwrap_or(seq);
            if ahead(seq, next) <= 0 {
                // Delivery caught up with (or passed) this segment.
                self.deliver_overlapping(seq, data, next, out);
                self.drain(out);
                return;
            }
        }
        self.held_bytes += data.len();
        self.held.push(Held {
            seq,
            data: data.to_vec(),
        });
    }

    /// The peer acknowledged up to `ack`: bytes before it that never appeared were lost
    /// by the capture (the receiver had them). The gap is declared at once when data
    /// beyond the hole is already held; otherwise on a second acknowledgement beyond
    /// `next`, on held data below a pending acknowledgement, or at the end.
    pub fn acked(&mut self, ack: u32, out: &mut dyn FnMut(Piece<'_>)) {
        let Some(next) = self.next else { return };
        // A FIN takes one sequence number that carries no data.
        let limit = match self.fin {
            Some(f) if ahead(ack, f) > 0 => f,
            _ => ack,
        };
        let missing = ahead(limit, next);
        if missing <= 0 || missing > i64::from(MAX_PLAUSIBLE_AHEAD) {
            if self.pending_ack.is_some_and(|p| ahead(p, next) <= 0) {
                self.pending_ack = None;
            }
            return;
        }
        let held_below = self
            .first_held()
            .is_some_and(|i| ahead(self.held[i].seq, limit) < 0);
        if !held_below && self.pending_ack.is_none() {
            self.pending_ack = Some(limit);
            return;
        }
        self.pending_ack = None;
        self.declare_acked(limit, out);
    }

    /// Everything before `limit` that is still missing is a gap; deliver what follows.
    fn declare_acked(&mut self, limit: u32, out: &mut dyn FnMut(Piece<'_>)) {
        let Some(next) = self.next else { return };
        // Held segments inside the acknowledged range fill part of it.
        while let Some(first) = self.first_held() {
            let to_first = ahead(self.held[first].seq, self.next.unwrap_or(next));
            if to_first >= ahead(limit, self.next.unwrap_or(next)) {
                break;
            }
            self.skip_to_first_held(out);
            self.drain(out);
        }
        let cur = self.next.unwrap_or(next);
        let rest = ahead(limit, cur);
        if rest > 0 {
            self.gap(rest as u64, out);
            self.next = Some(limit);
            self.drain(out);
        }
    }

    /// After a segment: a pending acknowledgement is either satisfied or, when data
    /// beyond the hole is now held, confirmed.
    fn settle_pending(&mut self, out: &mut dyn FnMut(Piece<'_>)) {
        let (Some(p), Some(next)) = (self.pending_ack, self.next) else {
            return;
        };
        if ahead(p, next) <= 0 {
            self.pending_ack = None;
            return;
        }
        let held_below = self
            .first_held()
            .is_some_and(|i| ahead(self.held[i].seq, p) < 0);
        if held_below {
            self.pending_ack = None;
            self.declare_acked(p, out);
        }
    }

    /// End of the connection or capture: whatever is held is delivered behind gaps.
    pub fn finish(&mut self, out: &mut dyn FnMut(Piece<'_>)) {
        if let Some(p) = self.pending_ack.take() {
            self.declare_acked(p, out);
        }
        while !self.held.is_empty() {
            self.skip_to_first_held(out);
            self.drain(out);
        }
    }

    fn gap(&mut self, len: u64, out: &mut dyn FnMut(Piece<'_>)) {
        self.stats.gaps += 1;
        self.stats.gap_bytes += len;
        self.tail.clear();
        out(Piece::Gap(len));
    }

    fn first_held(&self) -> Option<usize> {
        let next = self.next?;
        let mut best: Option<(i64, usize)> = None;
        for (i, h) in self.held.iter().enumerate() {
            let r = ahead(h.seq, next);
            if best.is_none_or(|(b, _)| r < b) {
                best = Some((r, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// Declare the hole before the earliest held segment.
    fn skip_to_first_held(&mut self, out: &mut dyn FnMut(Piece<'_>)) {
        let (Some(i), Some(next)) = (self.first_held(), self.next) else {
            return;
        };
        let seq = self.held[i].seq;
        let missing = ahead(seq, next);
        if missing > 0 {
            self.gap(missing as u64, out);
            self.next = Some(seq);
        }
    }

    /// Deliver held segments that became contiguous, earliest first.
    fn drain(&mut self, out: &mut dyn FnMut(Piece<'_>)) {
        loop {
            let Some(next) = self.next else { return };
            let Some(i) = self.first_held() else { return };
            if ahead(self.held[i].seq, next) > 0 {
                return;
            }
            let h = self.held.swap_remove(i);
            self.held_bytes -= h.data.len();
            self.deliver_overlapping(h.seq, &h.data, next, out);
        }
    }

    /// `seq` is at or before `next`: skip what was delivered already, hand on the rest.
    fn deliver_overlapping(
        &mut self,
        seq: u32,
        data: &[u8],
        next: u32,
        out: &mut dyn FnMut(Piece<'_>),
    ) {
        let behind = ahead(next, seq).max(0) as u64;
        let old = (behind.min(data.len() as u64)) as usize;
        if old > 0 {
            self.stats.retransmitted_bytes += old as u64;
            self.check_conflict(behind, data.get(..old).unwrap_or(&[]));
        }
        let Some(new) = data.get(old..).filter(|d| !d.is_empty()) else {
            return;
        };
        self.next = Some(next.wrapping_add(new.len() as u32));
        if self.light {
        } else if new.len() >= TAIL_KEEP {
            self.tail.clear();
            self.tail
                .extend_from_slice(new.get(new.len() - TAIL_KEEP..).unwrap_or(&[]));
        } else {
            let excess = (self.tail.len() + new.len()).saturating_sub(TAIL_KEEP);
            self.tail.drain(..excess);
            self.tail.extend_from_slice(new);
        }
        out(Piece::Data(new));
    }

    /// `old` re-sends bytes that started `behind` bytes before `next`: compare with the
    /// delivered tail where it is still kept.
    fn check_conflict(&mut self, behind: u64, old: &[u8]) {
        let kept = self.tail.len() as u64;
        if behind > kept {
            return; // too far back to compare; counted as a plain retransmission
        }
        let start = (kept - behind) as usize;
        let Some(ours) = self.tail.get(start..) else {
            return;
        };
        let n = ours.len().min(old.len());
        if ours.get(..n) != old.get(..n) {
            self.stats.conflicting_overlaps += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Got {
        D(Vec<u8>),
        G(u64),
    }

    fn run(
        r: &mut Reassembler,
        f: impl FnOnce(&mut Reassembler, &mut dyn FnMut(Piece<'_>)),
    ) -> Vec<Got> {
        let mut got = Vec::new();
        let mut sink = |p: Piece<'_>| match p {
            Piece::Data(d) => got.push(Got::D(d.to_vec())),
            Piece::Gap(n) => got.push(Got::G(n)),
        };
        f(r, &mut sink);
        got
    }

    fn seg(r: &mut Reassembler, seq: u32, data: &[u8]) -> Vec<Got> {
        let lim = ReassemblyLimits::default();
        run(r, |r, out| r.segment(seq, data, &lim, out))
    }

    #[test]
    fn in_order_after_syn() {
        let mut r = Reassembler::new();
        r.syn(1000);
        assert_eq!(seg(&mut r, 1001, b"abc"), vec![Got::D(b"abc".to_vec())]);
        assert_eq!(seg(&mut r, 1004, b"de"), vec![Got::D(b"de".to_vec())]);
        assert!(!r.start_missing);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut r = Reassembler::new();
        r.syn(u32::MAX - 1);
        assert_eq!(seg(&mut r, u32::MAX, b"ab"), vec![Got::D(b"ab".to_vec())]);
        assert_eq!(seg(&mut r, 1, b"cd"), vec![Got::D(b"cd".to_vec())]);
    }

    #[test]
    fn out_of_order_waits_for_the_hole() {
        let mut r = Reassembler::new();
        r.syn(0);
        assert_eq!(seg(&mut r, 4, b"def"), vec![]);
        assert_eq!(seg(&mut r, 7, b"g"), vec![]);
        assert_eq!(
            seg(&mut r, 1, b"abc"),
            vec![
                Got::D(b"abc".to_vec()),
                Got::D(b"def".to_vec()),
                Got::D(b"g".to_vec())
            ]
        );
        assert_eq!(r.stats.out_of_order, 2);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn retransmission_is_not_delivered_twice() {
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 1, b"hello");
        assert_eq!(seg(&mut r, 1, b"hello"), vec![]);
        assert_eq!(r.stats.retransmitted_bytes, 5);
        assert_eq!(r.stats.conflicting_overlaps, 0);
    }

    #[test]
    fn first_copy_wins_on_overlap_and_conflict_is_counted() {
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 1, b"hello");
        // overlaps "llo" with "LLO" and adds " world"
        assert_eq!(
            seg(&mut r, 3, b"LLO world"),
            vec![Got::D(b" world".to_vec())]
        );
        assert_eq!(r.stats.conflicting_overlaps, 1);
        assert_eq!(r.stats.retransmitted_bytes, 3);
    }

    #[test]
    fn overlapping_held_segments_deliver_each_byte_once() {
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 3, b"cdef");
        seg(&mut r, 5, b"efgh");
        let got = seg(&mut r, 1, b"ab");
        let all: Vec<u8> = got
            .into_iter()
            .flat_map(|g| match g {
                Got::D(d) => d,
                Got::G(_) => panic!("no gap expected"),
            })
            .collect();
        assert_eq!(all, b"abcdefgh");
    }

    #[test]
    fn ack_beyond_unseen_bytes_declares_a_gap() {
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 1, b"abc");
        // 4..14 never captured; the peer acknowledges 14: maybe the segment is only
        // late in the capture, so the first ACK waits...
        assert_eq!(run(&mut r, |r, o| r.acked(14, o)), vec![]);
        // ...and a second one confirms the loss
        assert_eq!(run(&mut r, |r, o| r.acked(14, o)), vec![Got::G(10)]);
        assert_eq!(seg(&mut r, 14, b"x"), vec![Got::D(b"x".to_vec())]);
        assert_eq!(r.stats.gap_bytes, 10);
    }

    #[test]
    fn segment_arriving_after_its_ack_is_not_a_gap() {
        // capture order: the server's ACK of 4..14 comes before the client's segment
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 1, b"abc");
        assert_eq!(run(&mut r, |r, o| r.acked(14, o)), vec![]);
        assert_eq!(
            seg(&mut r, 4, b"0123456789"),
            vec![Got::D(b"0123456789".to_vec())]
        );
        assert_eq!(r.stats.gaps, 0);
        // the pending acknowledgement is satisfied: a later ACK of the same is nothing
        assert_eq!(run(&mut r, |r, o| r.acked(14, o)), vec![]);
    }

    #[test]
    fn held_data_below_a_pending_ack_confirms_the_gap() {
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 1, b"a");
        assert_eq!(run(&mut r, |r, o| r.acked(10, o)), vec![]);
        // 2..5 never comes; 5..7 arrives below the pending ACK: 2..5 and 7..10 were
        // received by the peer but not captured
        assert_eq!(
            seg(&mut r, 5, b"ef"),
            vec![Got::G(3), Got::D(b"ef".to_vec()), Got::G(3)]
        );
        assert_eq!(run(&mut r, |r, o| r.finish(o)), vec![]);
    }

    #[test]
    fn ack_of_fin_is_not_a_gap() {
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 1, b"abc");
        r.fin(4);
        assert_eq!(run(&mut r, |r, o| r.acked(5, o)), vec![]);
    }

    #[test]
    fn ack_fills_up_to_held_data() {
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 1, b"a");
        seg(&mut r, 5, b"ef");
        assert_eq!(
            run(&mut r, |r, o| r.acked(7, o)),
            vec![Got::G(3), Got::D(b"ef".to_vec())]
        );
    }

    #[test]
    fn cap_on_held_segments_forces_a_gap() {
        let mut r = Reassembler::new();
        r.syn(0);
        let lim = ReassemblyLimits {
            max_segments: 2,
            max_bytes: 1000,
        };
        let mut got = Vec::new();
        for s in [10u32, 20, 30] {
            got.extend(run(&mut r, |r, o| r.segment(s, b"x", &lim, o)));
        }
        assert_eq!(got, vec![Got::G(9), Got::D(b"x".to_vec())]);
        assert_eq!(r.stats.cap_hits, 1);
        assert!(r.held_bytes() <= 2);
    }

    #[test]
    fn cap_on_held_bytes_is_respected() {
        let mut r = Reassembler::new();
        r.syn(0);
        let lim = ReassemblyLimits {
            max_segments: 100,
            max_bytes: 8,
        };
        let big = [7u8; 20];
        let got = run(&mut r, |r, o| r.segment(100, &big, &lim, o));
        assert_eq!(got, vec![Got::G(99), Got::D(big.to_vec())]);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn finish_flushes_held_data_behind_gaps() {
        let mut r = Reassembler::new();
        r.syn(0);
        seg(&mut r, 11, b"late");
        assert_eq!(
            run(&mut r, |r, o| r.finish(o)),
            vec![Got::G(10), Got::D(b"late".to_vec())]
        );
    }

    #[test]
    fn start_without_syn_is_marked() {
        let mut r = Reassembler::new();
        assert_eq!(seg(&mut r, 500, b"mid"), vec![Got::D(b"mid".to_vec())]);
        assert!(r.start_missing);
    }

    #[test]
    fn implausible_jump_is_ignored() {
        let mut r = Reassembler::new();
        r.syn(0);
        assert_eq!(seg(&mut r, 0x8000_0000, b"far"), vec![]);
        assert_eq!(r.stats.implausible, 1);
        assert_eq!(r.stats.retransmitted_bytes, 0);
    }

    proptest::proptest! {
        /// Whatever order segments of one stream arrive in, with duplicates, the bytes
        /// delivered are the stream, each once, as long as nothing is missing.
        #[test]
        fn any_order_reassembles(cuts in proptest::collection::vec(1usize..40, 1..20), order in proptest::collection::vec(0usize..1000, 0..40), isn in proptest::num::u32::ANY) {
            let stream: Vec<u8> = (0..cuts.iter().sum::<usize>()).map(|i| (i * 7 % 251) as u8).collect();
            let mut segs = Vec::new();
            let mut at = 0usize;
            for c in &cuts {
                segs.push((at, &stream[at..at + c]));
                at += c;
            }
            let mut arrival: Vec<usize> = (0..segs.len()).collect();
            for (i, o) in order.iter().enumerate() {
                let n = arrival.len();
                arrival.swap(i % n, o % n);
            }
            // duplicate a few
            let extra: Vec<usize> = order.iter().take(5).map(|o| o % segs.len()).collect();
            arrival.extend(extra);
            let mut r = Reassembler::new();
            r.syn(isn);
            let lim = ReassemblyLimits { max_segments: 1000, max_bytes: 1 << 20 };
            let mut out = Vec::new();
            let mut gaps = 0;
            for i in arrival {
                let (off, d) = segs[i];
                r.segment(isn.wrapping_add(1).wrapping_add(off as u32), d, &lim, &mut |p| match p {
                    Piece::Data(d) => out.extend_from_slice(d),
                    Piece::Gap(_) => gaps += 1,
                });
            }
            proptest::prop_assert_eq!(gaps, 0);
            proptest::prop_assert_eq!(out, stream);
        }

        /// Any segmentation and reordering of the same stream reassembles to the same
        /// bytes: two independent segmentations (so segments overlap at different
        /// boundaries), their segments shuffled together, give the stream exactly once,
        /// with no gap and no conflicting overlap, whatever the initial sequence number.
        #[test]
        fn any_segmentation_and_order_reassembles_the_same_bytes(
            len in 1usize..600,
            cuts_a in proptest::collection::vec(1usize..90, 1..30),
            cuts_b in proptest::collection::vec(1usize..90, 1..30),
            shuffle in proptest::collection::vec(proptest::num::usize::ANY, 0..80),
            isn in proptest::num::u32::ANY,
        ) {
            let stream: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
            let mut segs: Vec<(usize, usize)> = Vec::new();
            for cuts in [&cuts_a, &cuts_b] {
                let mut at = 0;
                for c in cuts.iter().cycle() {
                    if at >= len {
                        break;
                    }
                    let end = (at + c).min(len);
                    segs.push((at, end));
                    at = end;
                }
            }
            for (i, s) in shuffle.iter().enumerate() {
                let n = segs.len();
                segs.swap(i % n, s % n);
            }
            let mut r = Reassembler::new();
            r.syn(isn);
            let lim = ReassemblyLimits { max_segments: 1000, max_bytes: 1 << 20 };
            let mut out = Vec::new();
            let mut gaps = 0;
            let mut sink = |p: Piece<'_>| match p {
                Piece::Data(d) => out.extend_from_slice(d),
                Piece::Gap(_) => gaps += 1,
            };
            for (from, to) in segs {
                let seq = isn.wrapping_add(1).wrapping_add(from as u32);
                r.segment(seq, &stream[from..to], &lim, &mut sink);
            }
            r.finish(&mut sink);
            proptest::prop_assert_eq!(gaps, 0);
            proptest::prop_assert_eq!(out, stream);
            proptest::prop_assert_eq!(r.stats.conflicting_overlaps, 0);
            proptest::prop_assert_eq!(r.held_bytes(), 0);
        }
    }
}
