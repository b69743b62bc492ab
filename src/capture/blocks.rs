//! The block reader under [`super::read_capture`]: pcap-parser's block parsers over a
//! buffer this module owns, so that a filled buffer can be handed to another thread with
//! the frames in it instead of copying every frame out of it.
//!
//! It behaves as pcap-parser's streaming reader (`create_reader` and
//! `PcapReaderIterator`) block for block, damaged files included: the same blocks, the
//! same errors on the same bytes, and a buffer that asks to grow when one block does not
//! fit. The test `blocks_match_pcap_parsers_reader` compares the two on every fixture
//! and on cut and damaged copies of them. What differs:
//! - a refill may move the unread tail into a new buffer (see [`FrameSink`]);
//! - a buffer grown for a huge block goes back to [`super::READ_BUFFER`] once little is
//!   left unread, so one 16 MiB block does not make every later buffer 16 MiB (the
//!   framing thread also bounds the bytes it has in flight);
//! - opening reads once. pcap-parser read a second time, which, on a compressed stream
//!   that fails within its first megabyte, failed at open with no frame; here the
//!   frames before the failure come first, then the read error (test
//!   `a_compressed_stream_cut_short_keeps_the_frames_before_it`).

use super::READ_BUFFER;
use nom::IResult;
use pcap_parser::pcap::{
    parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified, parse_pcap_header,
    LegacyPcapBlock, PcapHeader,
};
use pcap_parser::pcapng::{parse_block_be, parse_block_le, parse_sectionheaderblock, Block};
use pcap_parser::{PcapBlockOwned, PcapError};
use std::io::{self, Read};
use std::ops::ControlFlow;

/// Where the reader's frames go, and its filled buffers when it needs fresh bytes. The
/// framing thread passes each buffer, with the frames it delivered from it, to the
/// decoding thread.
pub trait FrameSink {
    /// One frame, and the offset of its bytes in the buffer being read.
    fn frame(&mut self, frame: &super::Frame, start: usize) -> ControlFlow<()>;
    /// Whether buffers are handed on (else the reader keeps one buffer and never calls
    /// `fresh` or `done`).
    fn hands_off(&self) -> bool {
        true
    }
    /// A buffer to read into next. Its length and contents do not matter: the reader
    /// sizes it and overwrites what it uses.
    fn fresh(&mut self) -> Vec<u8> {
        Vec::new()
    }
    /// A buffer the reader is done with. Every frame delivered since the previous
    /// buffer was handed on lies in it. `Break` stops the read (the receiver is gone).
    fn done(&mut self, _buf: Vec<u8>) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

type LegacyParse = fn(&[u8]) -> IResult<&[u8], LegacyPcapBlock<'_>, PcapError<&[u8]>>;

enum Format {
    Legacy {
        header: PcapHeader,
        sent: bool,
        parse: LegacyParse,
    },
    Ng {
        big_endian: bool,
    },
}

/// Why [`Blocks::open`] could not start: the streaming reader's error at the same point.
pub enum OpenError {
    /// The source gave no byte at all.
    Empty,
    /// The read failed.
    Read,
    /// A pcap header cut short.
    Truncated,
    /// Neither a pcapng section header nor a pcap header.
    NotRecognized,
}

/// What a refill did.
pub enum Refilled {
    Read,
    /// The handoff asked to stop.
    Stopped,
}

/// A pcap or pcapng file read block by block through owned buffers.
pub struct Blocks {
    reader: Box<dyn Read + Send>,
    /// Its length is what may be filled; `pos..filled` is unread.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    /// The streaming reader's buffer size: a block that cannot fit asks to grow.
    capacity: usize,
    exhausted: bool,
    format: Format,
}

impl Blocks {
    /// Reads the first buffer and recognises the format, as `create_reader` does.
    pub fn open(mut reader: Box<dyn Read + Send>) -> Result<Blocks, OpenError> {
        let mut buf = vec![0u8; READ_BUFFER];
        let filled = reader.read(&mut buf).map_err(|_| OpenError::Read)?;
        if filled == 0 {
            return Err(OpenError::Empty);
        }
        let head = &buf[..filled];
        let format = if parse_sectionheaderblock(head).is_ok() {
            Format::Ng { big_endian: false }
        } else {
            match parse_pcap_header(head) {
                Ok((_, header)) => {
                    let parse: LegacyParse = if header.is_modified_format() {
                        parse_pcap_frame_modified
                    } else if header.is_bigendian() {
                        parse_pcap_frame_be
                    } else {
                        parse_pcap_frame
                    };
                    Format::Legacy {
                        header,
                        sent: false,
                        parse,
                    }
                }
                Err(nom::Err::Incomplete(_)) => return Err(OpenError::Truncated),
                Err(_) => return Err(OpenError::NotRecognized),
            }
        };
        Ok(Blocks {
            reader,
            buf,
            pos: 0,
            filled,
            capacity: READ_BUFFER,
            exhausted: false,
            format,
        })
    }

    /// The unread bytes.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.pos..self.filled).unwrap_or_default()
    }

    /// The next block and the bytes it took, as `PcapReaderIterator::next`, and the
    /// buffer the block lies in.
    #[allow(clippy::type_complexity)]
    pub fn next(&mut self) -> (Result<(usize, PcapBlockOwned<'_>), PcapError<&[u8]>>, &[u8]) {
        let buf = &self.buf;
        if let Format::Legacy { header, sent, .. } = &mut self.format {
            if !*sent {
                *sent = true;
                let h = header.clone();
                return (Ok((h.size(), PcapBlockOwned::from(h))), buf);
            }
        }
        let available = self.filled - self.pos;
        if available == 0 && self.pos == 0 && self.exhausted {
            return (Err(PcapError::Eof), buf);
        }
        let data = &buf[self.pos..self.filled];
        let parsed = match &mut self.format {
            Format::Legacy { parse, .. } => {
                parse(data).map(|(rem, b)| (rem, PcapBlockOwned::from(b)))
            }
            Format::Ng { big_endian } => {
                let r = if *big_endian {
                    parse_block_be(data)
                } else {
                    parse_block_le(data)
                };
                if let Ok((_, Block::SectionHeader(shb))) = &r {
                    *big_endian = shb.big_endian();
                }
                r.map(|(rem, b)| (rem, PcapBlockOwned::from(b)))
            }
        };
        let r = match parsed {
            Ok((rem, b)) => Ok((data.len() - rem.len(), b)),
            Err(nom::Err::Error(e)) | Err(nom::Err::Failure(e)) => Err(e),
            Err(nom::Err::Incomplete(_)) if self.exhausted => Err(PcapError::UnexpectedEof),
            Err(nom::Err::Incomplete(nom::Needed::Size(n))) => {
                if available + usize::from(n) >= self.capacity {
                    Err(PcapError::BufferTooSmall)
                } else {
                    Err(PcapError::Incomplete(n.into()))
                }
            }
            Err(nom::Err::Incomplete(nom::Needed::Unknown)) => Err(PcapError::Incomplete(0)),
        };
        (r, buf)
    }

    /// Marks `n` bytes read; they stay where they are until the next refill.
    pub fn consume(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.filled);
    }

    /// The buffer size: what [`Blocks::grow`] doubles.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Lets the next refill hold `size` bytes.
    pub fn grow(&mut self, size: usize) {
        self.capacity = self.capacity.max(size);
    }

    /// Moves the unread bytes to the front of a buffer (a new one from `sink`, the
    /// current one handed on; or the same one) and reads to fill it, as the streaming
    /// reader's `refill`. A buffer grown for a huge block goes back to its usual size
    /// once little is left unread; that cannot undo a growth the block still needs,
    /// since a refill fills the buffer and leaves more than that unread.
    pub fn refill(&mut self, sink: &mut dyn FrameSink) -> io::Result<Refilled> {
        let tail = self.pos..self.filled;
        let kept = tail.len();
        if self.capacity > READ_BUFFER && kept <= READ_BUFFER / 2 {
            self.capacity = READ_BUFFER;
        }
        let mut stopped = false;
        match sink.hands_off() {
            false => self.buf.copy_within(tail, 0),
            true => {
                let h = sink;
                let mut next = h.fresh();
                if next.len() < self.capacity.max(kept) {
                    next.resize(self.capacity.max(kept), 0);
                }
                next[..kept].copy_from_slice(&self.buf[tail]);
                let full = std::mem::replace(&mut self.buf, next);
                stopped = h.done(full).is_break();
            }
        }
        let want = self.capacity.max(kept);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        } else if self.buf.len() > want {
            // Back from a huge block: give the memory back.
            self.buf.truncate(want);
            self.buf.shrink_to_fit();
        }
        self.pos = 0;
        self.filled = kept;
        if stopped {
            return Ok(Refilled::Stopped);
        }
        let space = &mut self.buf[kept..];
        if space.is_empty() {
            return Ok(Refilled::Read);
        }
        let got = self.reader.read(space)?;
        self.exhausted = got == 0;
        self.filled += got;
        Ok(Refilled::Read)
    }

    /// Hands the last buffer on: the frames delivered since the previous handoff lie in
    /// it.
    pub fn finish(self, sink: &mut dyn FrameSink) {
        if sink.hands_off() {
            let _ = sink.done(self.buf);
        }
    }
}

/// Where `part`, a slice of `buf`, starts in it; `None` when it is not one.
pub fn offset_in(buf: &[u8], part: &[u8]) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    (at.checked_add(part.len())? <= buf.len()).then_some(at)
}
