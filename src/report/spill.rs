//! Records that outgrow memory: an external merge sort over a temporary file.
//!
//! `audit` judges a flow only after it has seen every flow (roles come from the whole
//! run), and prints flows and findings in an order the capture does not give them in.
//! Holding them cost kilobytes per flow. Here each record is encoded, sorted in memory
//! up to a byte budget, written as a sorted run to an unnamed temporary file (in
//! `TMPDIR`, gone when the file is closed, even after a crash), and the runs are merged
//! when read back. Memory is the budget plus one read buffer per run, whatever the size
//! of the capture; a run that fits the budget never touches the disk.
//!
//! Records with equal keys come back in the order they were pushed (runs are sorted
//! stably and the merge prefers the earlier run), as a stable in-memory sort would give.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};

/// A sort key that can be written to a spill file and read back.
pub trait Key: Ord + Clone {
    fn put(&self, out: &mut Vec<u8>);
    fn get(d: &mut Dec<'_>) -> Option<Self>;
}

/// Bytes read from the file per refill of a run's buffer: the budget shared between
/// the runs, within these bounds (so many runs do not multiply the memory).
const READ_MAX: usize = 64 * 1024;
const READ_MIN: usize = 4 * 1024;
/// Bytes buffered per write when a run goes to the file.
const WRITE_BUF: usize = 256 * 1024;
/// Most bytes reserved up front for held records (a larger budget grows past it).
const MAX_RESERVE: usize = 64 * 1024 * 1024;
/// What a held record costs beside its bytes (its key and offsets), counted in the budget.
const ENTRY_COST: usize = 64;

/// Records sorted by key, held in memory up to a budget, then spilled.
pub struct Spill<K: Key> {
    budget: usize,
    /// Records not yet written: key and byte range in `arena`, in push order until sorted.
    held: Vec<(K, usize, usize)>,
    arena: Vec<u8>,
    sorted: bool,
    file: Option<File>,
    /// (offset, length) of each sorted run in `file`, in push order.
    runs: Vec<(u64, u64)>,
    end: u64,
    len: u64,
}

impl<K: Key> Spill<K> {
    /// A spill that writes a run whenever its held records pass `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Spill {
            budget: budget.max(1),
            held: Vec::new(),
            arena: Vec::new(),
            sorted: true,
            file: None,
            runs: Vec::new(),
            end: 0,
            len: 0,
        }
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Runs written to the temporary file so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Bytes written to the temporary file so far.
    pub fn spilled_bytes(&self) -> u64 {
        self.end
    }

    /// Add a record: its key, and its bytes written by `record`.
    pub fn push(&mut self, key: K, record: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        if self.arena.capacity() == 0 {
            // The whole budget at once: growing by doubling would pass it by half again
            // (old and new buffer) at every step. Untouched pages cost no memory.
            self.arena.reserve(self.budget.min(MAX_RESERVE));
        }
        let start = self.arena.len();
        record(&mut self.arena);
        self.held.push((key, start, self.arena.len()));
        self.sorted = false;
        self.len += 1;
        if self.arena.len() + self.held.len() * ENTRY_COST >= self.budget {
            self.write_run()?;
        }
        Ok(())
    }

    fn sort_held(&mut self) {
        if !self.sorted {
            // Stable: equal keys keep their push order.
            self.held.sort_by(|a, b| a.0.cmp(&b.0));
            self.sorted = true;
        }
    }

    /// Write the held records to the file as one sorted run.
    fn write_run(&mut self) -> io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.sort_held();
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                tempfile::tempfile().map_err(|e| in_tmp("cannot create a temporary file", e))?,
            ),
        };
        let length = write_sorted(file, self.end, &self.held, &self.arena)
            .map_err(|e| in_tmp("cannot write the temporary file", e))?;
        self.runs.push((self.end, length));
        self.end += length;
        self.held.clear();
        self.arena.clear();
        Ok(())
    }

    /// Every record in key order (push order among equal keys). Can be called again:
    /// each call reads the runs from their start.
    pub fn merge(&mut self) -> io::Result<Merge<'_, K>> {
        self.sort_held();
        let spill: &Spill<K> = self;
        let mut m = Merge {
            spill,
            runs: spill
                .runs
                .iter()
                .map(|&(pos, len)| Run {
                    pos,
                    end: pos + len,
                    read: (spill.budget / spill.runs.len().max(1)).clamp(READ_MIN, READ_MAX),
                    buf: Vec::new(),
                    at: 0,
                    body: (0, 0),
                })
                .collect(),
            held_at: 0,
            heap: BinaryHeap::new(),
        };
        for i in 0..m.runs.len() {
            m.advance(i)?;
        }
        m.advance_held();
        Ok(m)
    }
}

/// An error of the temporary file, saying where it is and what helps.
fn in_tmp(what: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "{what} in {} (set TMPDIR to a directory with room, or raise --spill-budget to \
             hold more in memory): {e}",
            std::env::temp_dir().display()
        ),
    )
}

/// Write `held` (sorted, bytes in `arena`) at `at` in `file` as one run; its length.
fn write_sorted<K: Key>(
    mut file: &File,
    at: u64,
    held: &[(K, usize, usize)],
    arena: &[u8],
) -> io::Result<u64> {
    file.seek(SeekFrom::Start(at))?;
    let mut w = BufWriter::with_capacity(WRITE_BUF, file);
    let mut key = Vec::new();
    let mut length = 0u64;
    for (k, start, end) in held {
        key.clear();
        k.put(&mut key);
        let body = arena.get(*start..*end).unwrap_or_default();
        let too_big = || io::Error::other("a spilled record passes 4 GiB");
        let kl = u32::try_from(key.len()).map_err(|_| too_big())?;
        let bl = u32::try_from(body.len()).map_err(|_| too_big())?;
        w.write_all(&kl.to_le_bytes())?;
        w.write_all(&bl.to_le_bytes())?;
        w.write_all(&key)?;
        w.write_all(body)?;
        length += 8 + u64::from(kl) + u64::from(bl);
    }
    w.flush()?;
    Ok(length)
}

/// One run being read back.
struct Run {
    pos: u64,
    end: u64,
    /// Bytes to read per refill.
    read: usize,
    buf: Vec<u8>,
    at: usize,
    /// The current record's bytes in `buf`.
    body: (usize, usize),
}

fn damaged() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the temporary spill file no longer reads back as written",
    )
}

impl Run {
    /// Make `need` bytes available from `at`; false when the run ended cleanly first.
    fn fill(&mut self, mut file: &File, need: usize) -> io::Result<bool> {
        let have = self.buf.len() - self.at;
        if have >= need {
            return Ok(true);
        }
        let left = self.end - self.pos;
        if have == 0 && left == 0 {
            return Ok(false);
        }
        let want = (need.max(self.read) - have) as u64;
        let n = usize::try_from(want.min(left)).map_err(|_| damaged())?;
        if have + n < need {
            return Err(damaged());
        }
        self.buf.drain(..self.at);
        self.at = 0;
        let old = self.buf.len();
        self.buf.resize(old + n, 0);
        file.seek(SeekFrom::Start(self.pos))?;
        file.read_exact(&mut self.buf[old..])?;
        self.pos += n as u64;
        Ok(true)
    }

    /// Read the next record: its key, with its bytes left at `body`.
    fn next<K: Key>(&mut self, file: &File) -> io::Result<Option<K>> {
        if !self.fill(file, 8)? {
            return Ok(None);
        }
        let head = self.buf.get(self.at..self.at + 8).ok_or_else(damaged)?;
        let (kl, bl) = head.split_at(4);
        let kl = u32::from_le_bytes(kl.try_into().map_err(|_| damaged())?) as usize;
        let bl = u32::from_le_bytes(bl.try_into().map_err(|_| damaged())?) as usize;
        let whole = kl.checked_add(bl).and_then(|n| n.checked_add(8));
        if !self.fill(file, whole.ok_or_else(damaged)?)? {
            return Err(damaged());
        }
        let key_at = self.at + 8;
        let key_bytes = self.buf.get(key_at..key_at + kl).ok_or_else(damaged)?;
        let key = K::get(&mut Dec::new(key_bytes)).ok_or_else(damaged)?;
        self.body = (key_at + kl, key_at + kl + bl);
        self.at = key_at + kl + bl;
        Ok(Some(key))
    }
}

/// The records of a [`Spill`] in order.
pub struct Merge<'a, K: Key> {
    spill: &'a Spill<K>,
    runs: Vec<Run>,
    /// Next held (in-memory) record.
    held_at: usize,
    /// The head key of every source that has one; sources are runs in push order, then
    /// the held records, so equal keys leave in push order.
    heap: BinaryHeap<Reverse<(K, usize)>>,
}

impl<K: Key> Merge<'_, K> {
    fn advance(&mut self, i: usize) -> io::Result<()> {
        let (Some(file), Some(run)) = (&self.spill.file, self.runs.get_mut(i)) else {
            return Ok(());
        };
        if let Some(k) = run.next::<K>(file)? {
            self.heap.push(Reverse((k, i)));
        }
        Ok(())
    }

    fn advance_held(&mut self) {
        if let Some((k, _, _)) = self.spill.held.get(self.held_at) {
            self.heap.push(Reverse((k.clone(), self.runs.len())));
        }
    }

    /// The next record: its key, with its bytes put in `body` (replacing what was there).
    pub fn next_into(&mut self, body: &mut Vec<u8>) -> io::Result<Option<K>> {
        let Some(Reverse((key, src))) = self.heap.pop() else {
            return Ok(None);
        };
        body.clear();
        if src == self.runs.len() {
            if let Some((_, start, end)) = self.spill.held.get(self.held_at) {
                body.extend_from_slice(self.spill.arena.get(*start..*end).unwrap_or_default());
            }
            self.held_at += 1;
            self.advance_held();
        } else {
            if let Some(run) = self.runs.get(src) {
                body.extend_from_slice(run.buf.get(run.body.0..run.body.1).unwrap_or_default());
            }
            self.advance(src)?;
        }
        Ok(Some(key))
    }

    /// Up to `n` next records, in order.
    pub fn take(&mut self, n: usize) -> io::Result<Vec<(K, Vec<u8>)>> {
        let mut out = Vec::with_capacity(n.min(4096));
        while out.len() < n {
            let mut body = Vec::new();
            match self.next_into(&mut body)? {
                Some(k) => out.push((k, body)),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Writing the compact encoding the spill records use: LEB128 integers, zigzag for
/// signed ones, strings as a length and their bytes.
pub mod enc {
    pub fn u64(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    pub fn i64(out: &mut Vec<u8>, v: i64) {
        u64(out, ((v << 1) ^ (v >> 63)) as u64);
    }
    pub fn bool(out: &mut Vec<u8>, v: bool) {
        out.push(u8::from(v));
    }
    pub fn bytes(out: &mut Vec<u8>, v: &[u8]) {
        u64(out, v.len() as u64);
        out.extend_from_slice(v);
    }
    pub fn str(out: &mut Vec<u8>, v: &str) {
        bytes(out, v.as_bytes());
    }
    pub fn opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
        bool(out, v.is_some());
        if let Some(x) = v {
            u64(out, x);
        }
    }
    pub fn opt_str(out: &mut Vec<u8>, v: Option<&str>) {
        bool(out, v.is_some());
        if let Some(s) = v {
            str(out, s);
        }
    }
}

/// Reading the encoding of [`enc`]; every getter is `None` on bytes that do not fit.
pub struct Dec<'a> {
    b: &'a [u8],
}

impl<'a> Dec<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Dec { b }
    }
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    pub fn byte(&mut self) -> Option<u8> {
        let (&x, rest) = self.b.split_first()?;
        self.b = rest;
        Some(x)
    }
    pub fn u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let x = self.byte()?;
            if shift == 63 && x > 1 {
                return None; // more than 64 bits
            }
            v |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    pub fn i64(&mut self) -> Option<i64> {
        let v = self.u64()?;
        Some(((v >> 1) as i64) ^ -((v & 1) as i64))
    }
    pub fn u16(&mut self) -> Option<u16> {
        u16::try_from(self.u64()?).ok()
    }
    pub fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }
    pub fn bool(&mut self) -> Option<bool> {
        match self.byte()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        if n > self.b.len() {
            return None;
        }
        let (x, rest) = self.b.split_at(n);
        self.b = rest;
        Some(x)
    }
    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    pub fn string(&mut self) -> Option<String> {
        self.str().map(str::to_string)
    }
    /// A count, then that many items read by `item`. The list is allocated once: every
    /// item takes at least a byte, so the bytes left bound the room reserved.
    pub fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let n = usize::try_from(self.u64()?).ok()?;
        let mut v = Vec::with_capacity(n.min(self.b.len()));
        for _ in 0..n {
            v.push(item(self)?);
        }
        Some(v)
    }
    pub fn opt_u64(&mut self) -> Option<Option<u64>> {
        Some(if self.bool()? {
            Some(self.u64()?)
        } else {
            None
        })
    }
    pub fn opt_string(&mut self) -> Option<Option<String>> {
        Some(if self.bool()? {
            Some(self.string()?)
        } else {
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl Key for u16 {
        fn put(&self, out: &mut Vec<u8>) {
            enc::u64(out, u64::from(*self));
        }
        fn get(d: &mut Dec<'_>) -> Option<Self> {
            d.u16()
        }
    }

    /// Everything pushed, read back through a spill of `budget` bytes.
    fn through(budget: usize, items: &[(u16, Vec<u8>)]) -> (Vec<(u16, Vec<u8>)>, usize) {
        let mut s = Spill::new(budget);
        for (k, body) in items {
            s.push(*k, |b| b.extend_from_slice(body)).unwrap();
        }
        assert_eq!(s.len(), items.len() as u64);
        let mut m = s.merge().unwrap();
        let out = m.take(usize::MAX).unwrap();
        assert!(m.take(1).unwrap().is_empty(), "nothing after the end");
        (out, s.runs())
    }

    proptest! {
        /// Any budget gives the stable sort of what was pushed: keys in order, equal
        /// keys in push order (the bodies tell them apart), bodies intact.
        #[test]
        fn merge_is_a_stable_sort(
            keys in proptest::collection::vec(0u16..8, 0..300),
            budget in 1usize..4000,
            long in 0usize..3000,
        ) {
            let items: Vec<(u16, Vec<u8>)> = keys
                .iter()
                .enumerate()
                .map(|(i, &k)| {
                    // One long record crosses the read buffer of its run.
                    let extra = if i == 7 { long * 40 } else { 0 };
                    let mut body = (i as u32).to_le_bytes().to_vec();
                    body.resize(4 + extra + i % 5, i as u8);
                    (k, body)
                })
                .collect();
            let mut want = items.clone();
            want.sort_by_key(|x| x.0);
            let (got, _) = through(budget, &items);
            prop_assert_eq!(got, want);
        }

        #[test]
        fn encoding_reads_back(
            u in any::<u64>(), i in any::<i64>(), o in any::<Option<u64>>(),
            s in ".{0,40}", os in proptest::option::of(".{0,10}"), b in any::<bool>(),
        ) {
            let mut out = Vec::new();
            enc::u64(&mut out, u);
            enc::i64(&mut out, i);
            enc::opt_u64(&mut out, o);
            enc::str(&mut out, &s);
            enc::opt_str(&mut out, os.as_deref());
            enc::bool(&mut out, b);
            let mut d = Dec::new(&out);
            prop_assert_eq!(d.u64(), Some(u));
            prop_assert_eq!(d.i64(), Some(i));
            prop_assert_eq!(d.opt_u64(), Some(o));
            prop_assert_eq!(d.string(), Some(s));
            prop_assert_eq!(d.opt_string(), Some(os));
            prop_assert_eq!(d.bool(), Some(b));
            prop_assert!(d.is_empty());
            // Cut anywhere, the bytes never read as the whole record.
            for cut in 0..out.len() {
                let mut d = Dec::new(&out[..cut]);
                let whole = d.u64().is_some()
                    && d.i64().is_some()
                    && d.opt_u64().is_some()
                    && d.string().is_some()
                    && d.opt_string().is_some()
                    && d.bool().is_some();
                prop_assert!(!whole, "cut at {}", cut);
            }
        }
    }

    #[test]
    fn a_small_budget_writes_runs_and_a_large_one_none() {
        let items: Vec<(u16, Vec<u8>)> = (0..1000u16).rev().map(|k| (k, vec![1; 100])).collect();
        let (small, runs) = through(10_000, &items);
        assert!(runs >= 10, "{runs} runs");
        let (large, none) = through(1 << 30, &items);
        assert_eq!(none, 0);
        assert_eq!(small, large);
        assert_eq!(small.first().map(|x| x.0), Some(0));
    }

    #[test]
    fn read_twice_and_empty() {
        let mut s: Spill<u16> = Spill::new(100);
        assert!(s.merge().unwrap().take(10).unwrap().is_empty());
        for k in [3u16, 1, 2, 1] {
            s.push(k, |b| b.push(k as u8)).unwrap();
        }
        let first = s.merge().unwrap().take(10).unwrap();
        let again = s.merge().unwrap().take(10).unwrap();
        assert_eq!(first, again);
        let keys: Vec<u16> = first.iter().map(|x| x.0).collect();
        assert_eq!(keys, [1, 1, 2, 3]);
    }

    #[test]
    fn invalid_bytes_are_refused_not_misread() {
        assert_eq!(
            Dec::new(&[0x80; 11]).u64(),
            None,
            "an integer that never ends"
        );
        assert_eq!(Dec::new(&[2]).bool(), None);
        assert_eq!(Dec::new(&[5, b'a']).str(), None, "shorter than its length");
        assert_eq!(Dec::new(&[2, 0xff, 0xfe]).str(), None, "not UTF-8");
        assert_eq!(Dec::new(&[0x80, 0x80, 0x04]).u16(), None, "65536 is no u16");
    }
}
