//! `audit --annotate OUT.pcapng`: a copy of the capture with a packet comment on every
//! evidence frame, so an analyst filters `frame.comment contains "dpaudit"` in Wireshark.
//!
//! The copy is written to a temporary file beside OUT and renamed over it only when
//! complete; an output that is one of the inputs is refused.

use super::output::Staged;
use crate::capture::{read_capture, FileSummary, Source};
use crate::gen::PcapngWriter;
use std::collections::{BTreeMap, HashMap};
use std::io::BufWriter;
use std::path::Path;

/// Write `source` to `out` as pcapng with `comments` (frame number -> text) attached.
/// Returns the number of frames written.
pub fn annotate(
    source: &Source,
    out: &Path,
    comments: &BTreeMap<u64, String>,
) -> Result<u64, String> {
    let Source::Path(input) = source else {
        return Err("--annotate needs a capture file, not standard input".into());
    };
    let staged = Staged::create(out, std::slice::from_ref(input))?;
    // Dropped on error: the temporary file goes, `out` stays as it was.
    let (n, staged) = write_copy(source, out, staged, comments)?;
    staged
        .commit()
        .map(|()| n)
        .map_err(|e| format!("{}: {e}", out.display()))
}

fn write_copy(
    source: &Source,
    out: &Path,
    staged: Staged,
    comments: &BTreeMap<u64, String>,
) -> Result<(u64, Staged), String> {
    let mut writer: Option<PcapngWriter<BufWriter<Staged>>> = None;
    let mut file = Some(BufWriter::with_capacity(1 << 20, staged));
    let mut interfaces: HashMap<u32, u32> = HashMap::new();
    let mut error: Option<String> = None;
    let mut written = 0u64;
    let mut summary = FileSummary::default();
    let read = read_capture(source, &mut summary, |f| {
        if error.is_some() {
            return;
        }
        let step = (|| -> std::io::Result<()> {
            if writer.is_none() {
                if let Some(inner) = file.take() {
                    writer = Some(PcapngWriter::new(inner, f.linktype)?);
                    interfaces.insert(f.linktype, 0);
                }
            }
            let Some(w) = writer.as_mut() else {
                return Ok(());
            };
            let id = match interfaces.get(&f.linktype) {
                Some(id) => *id,
                None => {
                    let id = w.interface(f.linktype)?;
                    interfaces.insert(f.linktype, id);
                    id
                }
            };
            let comment = comments.get(&f.number).map(String::as_str);
            w.write_packet_on(id, f.ts_ns, f.data, f.orig_len, comment)
        })();
        match step {
            Ok(()) => written += 1,
            Err(e) => error = Some(format!("{}: {e}", out.display())),
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if let Err(e) = read {
        if !e.is_partial() {
            return Err(e.to_string());
        }
    }
    match writer {
        Some(w) => {
            let inner = w.finish().map_err(|e| e.to_string())?;
            let staged = inner.into_inner().map_err(|e| e.error().to_string())?;
            Ok((written, staged))
        }
        None => Err("the capture has no frame to annotate".into()),
    }
}
