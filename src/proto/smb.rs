//! SMB 1/2/3 over direct TCP (445, MS-SMB2 2.1) and over the NetBIOS session service
//! (139, RFC 1002 4.3): dialect negotiation, signing, session setup (security tokens,
//! SMB1 passwords), shares, files and named pipes, with the DCE/RPC carried by pipe
//! WRITE / READ / FSCTL_PIPE_TRANSCEIVE (SMB2) and TRANS TransactNmPipe / WRITE_ANDX /
//! READ_ANDX / WRITE / READ (SMB1) handed to one [`DceRpcAnalyzer`] per pipe. An SMB1
//! pipe opened before the capture is still followed: its NT_CREATE_ANDX response says
//! the file is a pipe, or a TransactNmPipe names its FID.
//!
//! Guarantees: every offset and length read from a message is checked against that
//! message before use, so no input panics; one message per direction is buffered, and
//! only its first [`MAX_SMB_MESSAGE`] bytes (bigger messages are file data, whose headers
//! fit); outstanding requests, trees, pipes, SMB2 compound chains and SMB1 AndX chains are
//! capped. An SMB3 transform header marks the flow [`Encryption::Smb3`] and its content is
//! skipped; readable tree / file / pipe traffic marks it cleartext. An SMB1 session setup
//! against a server that did not ask for encrypted passwords records the plaintext
//! password as a cleartext [`AuthEvent`] (redacted by the report).

use crate::model::{AuthEvent, Direction, Encryption, Mechanism, Secret};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration};
use crate::proto::auth::{finish_auth, inspect_token};
use crate::proto::dcerpc::DceRpcAnalyzer;

/// Direct TCP transport / NetBIOS session header (MS-SMB2 2.1, RFC 1002 4.3.1).
pub const TRANSPORT_HEADER_LEN: usize = 4;
/// Bytes kept of one message. Negotiate, session setup (Kerberos tickets included), tree
/// connect, create and pipe transactions are far smaller; larger messages are file READ /
/// WRITE data (up to 8 MiB), of which only the header part is needed.
pub const MAX_SMB_MESSAGE: usize = 128 * 1024;
/// Tree connects remembered per connection.
const MAX_TREES: usize = 64;
/// Named pipes followed per connection, each with its own DCE/RPC state.
const MAX_PIPES: usize = 16;
/// `smb.file` facts per connection: enough to show what was touched, not a listing.
const MAX_FILE_FACTS: usize = 16;
/// Messages followed in one SMB2 compound chain.
const MAX_COMPOUND: usize = 64;
/// Commands followed in one SMB1 AndX chain.
const MAX_ANDX: usize = 8;
/// SMB1 dialect strings remembered from the negotiate request.
const MAX_DIALECTS: usize = 32;

/// NetBIOS session packet types (RFC 1002 4.3.1).
const NB_SESSION_MESSAGE: u8 = 0x00;
const NB_SESSION_REQUEST: u8 = 0x81;
const NB_POSITIVE_RESPONSE: u8 = 0x82;
const NB_NEGATIVE_RESPONSE: u8 = 0x83;
const NB_RETARGET: u8 = 0x84;
const NB_KEEPALIVE: u8 = 0x85;

const SMB1_MAGIC: &[u8; 4] = b"\xffSMB";
const SMB2_MAGIC: &[u8; 4] = b"\xfeSMB";
const TRANSFORM_MAGIC: &[u8; 4] = b"\xfdSMB";
const COMPRESSION_MAGIC: &[u8; 4] = b"\xfcSMB";

/// MS-SMB2 2.2.1: the SMB2 header.
const SMB2_HEADER_LEN: usize = 64;
/// MS-CIFS 2.2.3.1: the SMB1 header.
const SMB1_HEADER_LEN: usize = 32;

/// NTSTATUS values that change how a response is read (MS-ERREF 2.3).
const STATUS_SUCCESS: u32 = 0;
const STATUS_PENDING: u32 = 0x0000_0103;
const STATUS_BUFFER_OVERFLOW: u32 = 0x8000_0005;
const STATUS_MORE_PROCESSING_REQUIRED: u32 = 0xc000_0016;

/// FSCTL_PIPE_TRANSCEIVE (MS-FSCC 2.3): a pipe write and read in one IOCTL.
const FSCTL_PIPE_TRANSCEIVE: u32 = 0x0011_c017;

/// SMB2 header flags (MS-SMB2 2.2.1.2).
const SMB2_FLAGS_SERVER_TO_REDIR: u32 = 0x0000_0001;
const SMB2_FLAGS_ASYNC_COMMAND: u32 = 0x0000_0002;
const SMB2_FLAGS_RELATED_OPERATIONS: u32 = 0x0000_0004;
/// SESSION_SETUP response SessionFlags (MS-SMB2 2.2.6).
const SESSION_FLAG_IS_GUEST: u16 = 0x0001;
const SESSION_FLAG_IS_NULL: u16 = 0x0002;
const SESSION_FLAG_ENCRYPT_DATA: u16 = 0x0004;
/// NEGOTIATE SecurityMode (MS-SMB2 2.2.3 / 2.2.4).
const SMB2_SIGNING_ENABLED: u16 = 0x0001;
const SMB2_SIGNING_REQUIRED: u16 = 0x0002;
/// TREE_CONNECT response (MS-SMB2 2.2.10).
const SMB2_SHARE_TYPE_PIPE: u8 = 0x02;
const SMB2_SHAREFLAG_ENCRYPT_DATA: u32 = 0x0000_8000;
/// A related compound request's "same tree as before" TreeId (MS-SMB2 3.2.4.1.4).
const RELATED_TREE_ID: u32 = 0xffff_ffff;

/// SMB1 (MS-CIFS 2.2.3.1) header flags and Flags2.
const SMB1_FLAGS_REPLY: u8 = 0x80;
const SMB1_FLAGS2_UNICODE: u16 = 0x8000;
/// SMB1 negotiate SecurityMode (MS-CIFS 2.2.4.52.2).
const SMB1_ENCRYPT_PASSWORDS: u8 = 0x02;
const SMB1_SIGNATURES_ENABLED: u8 = 0x04;
const SMB1_SIGNATURES_REQUIRED: u8 = 0x08;
/// SMB1 session setup response Action bit 0: logged in as guest.
const SMB1_ACTION_GUEST: u16 = 0x0001;
/// ERRDOS / ERRmoredata (class 0x01, code 0x00EA) read as the 32-bit Status field: the
/// DOS-error spelling of STATUS_BUFFER_OVERFLOW (MS-CIFS 2.2.2.4).
const SMB1_ERRDOS_MORE_DATA: u32 = 0x00ea_0001;
/// SMB1 transaction subcommands on a named pipe, Setup[0] (MS-CIFS 2.2.5); Setup[1] is
/// the FID.
const TRANS_TRANSACT_NMPIPE: u16 = 0x0026;
const TRANS_READ_NMPIPE: u16 = 0x0036;
const TRANS_WRITE_NMPIPE: u16 = 0x0037;
/// NT_CREATE_ANDX response ResourceType of a named pipe (MS-CIFS 2.2.4.64.2).
const FILE_TYPE_BYTE_MODE_PIPE: u16 = 0x0001;
const FILE_TYPE_MESSAGE_MODE_PIPE: u16 = 0x0002;
/// WRITE_ANDX WriteMode (MS-CIFS 2.2.4.43.1): a raw-mode write that starts a pipe
/// message puts the message length in the first two data bytes.
const WRITE_MODE_RAW: u16 = 0x0004;
const WRITE_MODE_MSG_START: u16 = 0x0008;
/// BufferFormat of the data block of SMB_COM_WRITE / SMB_COM_READ (MS-CIFS 2.2.4.11-12).
const SMB1_DATA_BLOCK: u8 = 0x01;
/// NTLMv1 / LM challenge responses are 24 bytes (MS-NLMP 3.3.1).
const NTLMV1_RESPONSE_LEN: usize = 24;

/// SMB2 command codes (MS-SMB2 2.2.1); unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smb2Command(pub u16);

impl Smb2Command {
    pub const NEGOTIATE: Smb2Command = Smb2Command(0x00);
    pub const SESSION_SETUP: Smb2Command = Smb2Command(0x01);
    pub const LOGOFF: Smb2Command = Smb2Command(0x02);
    pub const TREE_CONNECT: Smb2Command = Smb2Command(0x03);
    pub const CREATE: Smb2Command = Smb2Command(0x05);
    pub const CLOSE: Smb2Command = Smb2Command(0x06);
    pub const READ: Smb2Command = Smb2Command(0x08);
    pub const WRITE: Smb2Command = Smb2Command(0x09);
    pub const IOCTL: Smb2Command = Smb2Command(0x0b);
    pub const CANCEL: Smb2Command = Smb2Command(0x0c);
    pub const ECHO: Smb2Command = Smb2Command(0x0d);
}

/// SMB1 command codes (MS-CIFS 2.2.2.1); unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smb1Command(pub u8);

impl Smb1Command {
    pub const NEGOTIATE: Smb1Command = Smb1Command(0x72);
    pub const SESSION_SETUP_ANDX: Smb1Command = Smb1Command(0x73);
    pub const LOGOFF_ANDX: Smb1Command = Smb1Command(0x74);
    pub const TREE_CONNECT_ANDX: Smb1Command = Smb1Command(0x75);
    pub const ECHO: Smb1Command = Smb1Command(0x2b);
    pub const NT_CREATE_ANDX: Smb1Command = Smb1Command(0xa2);
    pub const CLOSE: Smb1Command = Smb1Command(0x04);
    pub const READ: Smb1Command = Smb1Command(0x0a);
    pub const WRITE: Smb1Command = Smb1Command(0x0b);
    pub const TRANSACTION: Smb1Command = Smb1Command(0x25);
    pub const TRANSACTION_SECONDARY: Smb1Command = Smb1Command(0x26);
    pub const READ_ANDX: Smb1Command = Smb1Command(0x2e);
    pub const WRITE_ANDX: Smb1Command = Smb1Command(0x2f);
    /// No further command in an AndX chain.
    pub const NO_ANDX: Smb1Command = Smb1Command(0xff);

    /// Commands whose words start with AndXCommand / AndXReserved / AndXOffset.
    fn is_andx(self) -> bool {
        matches!(
            self.0,
            0x24 | 0x2d | 0x2e | 0x2f | 0x73 | 0x74 | 0x75 | 0xa2
        )
    }
}

/// Name of an SMB2 dialect revision (MS-SMB2 2.2.3).
pub fn dialect_name(d: u16) -> String {
    match d {
        0x0202 => "2.0.2".into(),
        0x0210 => "2.1".into(),
        0x0300 => "3.0".into(),
        0x0302 => "3.0.2".into(),
        0x0311 => "3.1.1".into(),
        0x02ff => "2.x-wildcard".into(),
        other => format!("0x{other:04x}"),
    }
}

// ---- bounds-checked little-endian readers (SMB is little-endian throughout) ----

fn bytes(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}
fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}
fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes(b, off, 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes(b, off, 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes(b, off, 8)?.try_into().ok()?))
}
fn file_id_at(b: &[u8], off: usize) -> Option<[u8; 16]> {
    bytes(b, off, 16)?.try_into().ok()
}

/// UTF-16LE text up to a NUL or the end of `b`.
fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// OEM text up to a NUL or the end of `b` (non-ASCII shown as U+FFFD).
fn oem(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned()
}

/// An SMB1 string at `pos` within `data` (whose first byte is at `abs` from the SMB
/// header): Unicode strings are 2-aligned from the header. Returns the text and the
/// position after its terminator.
fn smb1_string(data: &[u8], pos: usize, abs: usize, unicode: bool) -> (String, usize) {
    let rest = |p: usize| data.get(p..).unwrap_or_default();
    if unicode {
        let p = if (abs + pos) % 2 == 1 { pos + 1 } else { pos };
        let r = rest(p);
        let units = r.chunks_exact(2).take_while(|c| c != &[0, 0]).count();
        (utf16(r), p + units * 2 + 2)
    } else {
        let r = rest(pos);
        let n = r.iter().position(|&c| c == 0).unwrap_or(r.len());
        (oem(r), pos + n + 1)
    }
}

/// The last component of a UNC path (`\\server\IPC$` -> `IPC$`).
fn share_of(path: &str) -> String {
    path.trim_end_matches('\\')
        .rsplit('\\')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Pipe name as a fact: no leading backslashes or `PIPE\`, lower case.
fn pipe_name(name: &str) -> String {
    let n = name.trim_start_matches('\\');
    let n = match n.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("pipe\\") => n.get(5..).unwrap_or_default(),
        _ => n,
    };
    n.to_ascii_lowercase()
}

/// First-level decoded NetBIOS name (RFC 1001 14.1), trailing spaces removed.
fn netbios_name(encoded: &[u8]) -> Option<String> {
    let (&len, rest) = encoded.split_first()?;
    let half = rest.get(..usize::from(len))?;
    if len != 32 {
        return None;
    }
    let raw: Vec<u8> = half
        .chunks_exact(2)
        .map(|p| (p[0].wrapping_sub(b'A') << 4) | (p[1].wrapping_sub(b'A') & 0x0f))
        .collect();
    let name = raw.get(..15)?;
    let text: String = name
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() {
                char::from(c)
            } else {
                ' '
            }
        })
        .collect();
    Some(text.trim_end().to_string())
}

/// What a request left for its response to complete.
#[derive(Clone, Debug)]
enum PendingOp {
    TreeConnect(String),
    CreatePipe(String),
    ReadPipe([u8; 16]),
}

/// What an SMB1 request left for its response (by MID; one AndX chain shares its MID).
#[derive(Clone, Debug)]
enum Smb1Op {
    TreeConnect(String),
    /// NT_CREATE_ANDX of `name`; `ipc` is None when the tree was connected before the
    /// capture, and the response's ResourceType decides between pipe and file.
    Create {
        name: String,
        ipc: Option<bool>,
    },
    /// READ_ANDX / READ of a followed pipe.
    Read(u16),
    /// A named-pipe transaction.
    Trans(PipeTrans),
}

/// An SMB1 named-pipe transaction awaiting more request data or its response.
#[derive(Clone, Debug)]
struct PipeTrans {
    fid: u16,
    /// The response data is pipe data (TransactNmPipe, ReadNmPipe).
    answer: bool,
    /// DataDisplacement the next request / response part must have.
    request_at: usize,
    response_at: usize,
}

impl Smb1Op {
    fn same_kind(&self, cmd: Smb1Command) -> bool {
        match self {
            Smb1Op::TreeConnect(_) => cmd == Smb1Command::TREE_CONNECT_ANDX,
            Smb1Op::Create { .. } => cmd == Smb1Command::NT_CREATE_ANDX,
            Smb1Op::Read(_) => cmd == Smb1Command::READ_ANDX || cmd == Smb1Command::READ,
            Smb1Op::Trans(_) => {
                cmd == Smb1Command::TRANSACTION || cmd == Smb1Command::TRANSACTION_SECONDARY
            }
        }
    }
}

/// A followed pipe's handle: an SMB2 FileId, or an SMB1 FID (unique within the
/// connection, MS-CIFS 2.2.1.6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PipeKey {
    Smb2([u8; 16]),
    Smb1(u16),
}

struct Tree {
    id: u32,
    share: String,
    ipc: bool,
}

struct Pipe {
    key: PipeKey,
    name: String,
    rpc: DceRpcAnalyzer,
    done: bool,
}

/// Length of an SMB2 TRANSFORM_HEADER, protocol id included (MS-SMB2 2.2.41).
const TRANSFORM_HEADER_LEN: usize = 52;

/// How many bytes of a transport packet of type `kind` starting with `start` to keep:
/// an encrypted session message is its transform header and sealed bytes nobody can
/// read, so the sealed bytes (most of an encrypted file copy) are only counted, not
/// copied. Other packets are kept up to [`MAX_SMB_MESSAGE`].
fn keep_limit(kind: Option<u8>, start: &[u8]) -> usize {
    if kind == Some(NB_SESSION_MESSAGE) && start.starts_with(TRANSFORM_MAGIC) {
        TRANSFORM_HEADER_LEN
    } else {
        MAX_SMB_MESSAGE
    }
}

/// Reassembly state of one direction.
#[derive(Default)]
struct DirState {
    /// Transport header bytes gathered so far.
    header: Vec<u8>,
    /// Type of the packet being gathered (after a complete header).
    kind: Option<u8>,
    /// Bytes of the packet still to come.
    left: usize,
    /// Kept bytes of the packet: at most [`MAX_SMB_MESSAGE`], and only the transform
    /// header of an encrypted message ([`keep_limit`]).
    kept: Vec<u8>,
    /// The packet was longer than [`MAX_SMB_MESSAGE`] (only SMB1 and SMB2 messages,
    /// which are parsed whole, look at it).
    cut: bool,
}

/// SMB analyzer: one per TCP connection on 445 or 139.
#[derive(Default)]
pub struct SmbAnalyzer {
    dirs: [DirState; 2],
    pending: Vec<(u64, PendingOp)>,
    trees: Vec<Tree>,
    pipes: Vec<Pipe>,
    files: usize,
    smb1_dialects: Vec<String>,
    smb1_pending: Vec<(u16, Smb1Op)>,
    /// SMB1 trees: TID and whether it is IPC$.
    smb1_trees: Vec<(u16, bool)>,
    /// A TREE_CONNECT_ANDX request earlier in the current AndX chain: is its share IPC$?
    smb1_chain_ipc: Option<bool>,
    /// SMB1 negotiate response: did the server ask for challenge/response passwords?
    smb1_encrypt_passwords: Option<bool>,
    caps_reported: bool,
    done: bool,
    /// An SMB2/3 message was seen (the version is known from NEGOTIATE only).
    saw_smb2: bool,
}

impl SmbAnalyzer {
    pub fn new() -> Self {
        Self::default()
    }

    fn feed(&mut self, dir: Direction, mut data: &[u8], cx: &mut Ctx) {
        let idx = dir.index() % 2;
        while !data.is_empty() && !self.done {
            let st = &mut self.dirs[idx];
            if st.kind.is_none() {
                let take = (TRANSPORT_HEADER_LEN - st.header.len()).min(data.len());
                let (head, tail) = data.split_at(take);
                st.header.extend_from_slice(head);
                data = tail;
                let Ok(h) = <[u8; 4]>::try_from(st.header.as_slice()) else {
                    continue;
                };
                st.header.clear();
                let len = match h[0] {
                    NB_SESSION_MESSAGE => {
                        usize::from(h[1]) << 16 | usize::from(u16::from_be_bytes([h[2], h[3]]))
                    }
                    NB_SESSION_REQUEST..=NB_KEEPALIVE => {
                        usize::from(h[1] & 0x01) << 16
                            | usize::from(u16::from_be_bytes([h[2], h[3]]))
                    }
                    other => {
                        cx.posture.anomaly(
                            cx.frame,
                            "smb.bad-transport-header",
                            format!("transport packet type 0x{other:02x} is neither SMB nor NetBIOS session; parser stopped"),
                        );
                        self.done = true;
                        return;
                    }
                };
                st.kind = Some(h[0]);
                st.left = len;
                st.cut = len > MAX_SMB_MESSAGE;
                st.kept.clear();
            }
            let st = &mut self.dirs[idx];
            let take = st.left.min(data.len());
            let (mut chunk, tail) = data.split_at(take);
            // The protocol id first: it says how much of the message is worth keeping.
            if st.kept.len() < 4 {
                let (id, rest) = chunk.split_at((4 - st.kept.len()).min(chunk.len()));
                st.kept.extend_from_slice(id);
                chunk = rest;
            }
            let room = keep_limit(st.kind, &st.kept).saturating_sub(st.kept.len());
            st.kept
                .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            st.left -= take;
            data = tail;
            if st.left == 0 {
                let kind = st.kind.take().unwrap_or(NB_SESSION_MESSAGE);
                let msg = std::mem::take(&mut st.kept);
                let cut = st.cut;
                self.packet(kind, &msg, cut, cx);
                // Reuse the allocation for the next message.
                let st = &mut self.dirs[idx];
                if st.kept.is_empty() {
                    st.kept = msg;
                    st.kept.clear();
                }
            }
        }
    }

    /// One transport packet, complete (or cut at [`MAX_SMB_MESSAGE`] when `cut`).
    fn packet(&mut self, kind: u8, msg: &[u8], cut: bool, cx: &mut Ctx) {
        match kind {
            NB_SESSION_MESSAGE => {}
            NB_SESSION_REQUEST => {
                cx.posture.fact("smb.netbios", "session-request");
                if let Some(called) = netbios_name(msg) {
                    cx.posture.fact("smb.netbios-called", called);
                }
                let calling = msg.get(34..).and_then(netbios_name);
                if let Some(calling) = calling {
                    cx.posture.fact("smb.netbios-calling", calling);
                }
                return;
            }
            NB_POSITIVE_RESPONSE => return cx.posture.fact("smb.netbios", "positive-response"),
            NB_NEGATIVE_RESPONSE => return cx.posture.fact("smb.netbios", "negative-response"),
            NB_RETARGET => return cx.posture.fact("smb.netbios", "retarget"),
            NB_KEEPALIVE => return,
            _ => return,
        }
        match msg.get(..4) {
            None if msg.is_empty() => {}
            Some(m) if m == SMB1_MAGIC => self.smb1(msg, cut, cx),
            Some(m) if m == SMB2_MAGIC => self.smb2(msg, cut, cx),
            Some(m) if m == TRANSFORM_MAGIC => {
                // MS-SMB2 2.2.41: everything after the 52-byte transform header is sealed.
                cx.posture.set_encryption(Encryption::Smb3, cx.frame);
                cx.posture.fact("smb.version", "3");
            }
            Some(m) if m == COMPRESSION_MAGIC => {
                // MS-SMB2 2.2.42: compressed payload; not decompressed here.
                cx.posture.fact("smb.compression", "transform");
            }
            _ => cx.posture.anomaly(
                cx.frame,
                "smb.unknown-protocol",
                "session message does not start with an SMB protocol id",
            ),
        }
    }

    // ------------------------------------------------------------------ SMB2 ----

    fn smb2(&mut self, msg: &[u8], cut: bool, cx: &mut Ctx) {
        self.saw_smb2 = true;
        let mut off = 0usize;
        let mut prev_tree = None;
        for _ in 0..MAX_COMPOUND {
            let Some(m) = msg.get(off..) else { return };
            if m.len() < SMB2_HEADER_LEN {
                cx.posture.anomaly(
                    cx.frame,
                    "smb2.truncated",
                    format!(
                        "SMB2 header needs {SMB2_HEADER_LEN} bytes, {} left",
                        m.len()
                    ),
                );
                return;
            }
            if m.get(..4) != Some(SMB2_MAGIC.as_slice()) {
                cx.posture.anomaly(
                    cx.frame,
                    "smb2.compound-not-smb2",
                    format!("message {off} bytes into a compound has no SMB2 protocol id"),
                );
                return;
            }
            let next = u32_at(m, 20).map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
            let this = if next == 0 {
                m
            } else if next < SMB2_HEADER_LEN || next >= m.len() {
                if !cut {
                    cx.posture.anomaly(
                        cx.frame,
                        "smb2.next-command-out-of-range",
                        format!("NextCommand {next} outside the {}-byte message", m.len()),
                    );
                }
                self.smb2_one(m, cut, &mut prev_tree, cx);
                return;
            } else {
                m.get(..next).unwrap_or(m)
            };
            self.smb2_one(this, cut, &mut prev_tree, cx);
            if next == 0 {
                return;
            }
            off += next;
        }
        self.report_cap(cx, "SMB2 compound messages");
    }

    /// One SMB2 message: `m` starts at its header and ends at its end (offsets in the
    /// body are relative to the header).
    fn smb2_one(&mut self, m: &[u8], cut: bool, prev_tree: &mut Option<u32>, cx: &mut Ctx) {
        let (Some(command), Some(status), Some(flags), Some(mid)) =
            (u16_at(m, 12), u32_at(m, 8), u32_at(m, 16), u64_at(m, 24))
        else {
            return;
        };
        let command = Smb2Command(command);
        let response = flags & SMB2_FLAGS_SERVER_TO_REDIR != 0;
        let mut tree = if flags & SMB2_FLAGS_ASYNC_COMMAND == 0 {
            u32_at(m, 36)
        } else {
            None
        };
        if flags & SMB2_FLAGS_RELATED_OPERATIONS != 0 && tree == Some(RELATED_TREE_ID) {
            tree = *prev_tree;
        }
        *prev_tree = tree;
        if command.0 >= Smb2Command::TREE_CONNECT.0
            && !matches!(command, Smb2Command::CANCEL | Smb2Command::ECHO)
        {
            cx.posture.set_cleartext();
        }
        let body = SMB2_HEADER_LEN;
        if response {
            if status == STATUS_PENDING {
                return;
            }
            let ok = status == STATUS_SUCCESS;
            match command {
                Smb2Command::NEGOTIATE if ok => self.smb2_negotiate_response(m, cx),
                Smb2Command::SESSION_SETUP => self.smb2_session_setup_response(m, status, cx),
                Smb2Command::TREE_CONNECT => {
                    let share = self.take_pending(mid);
                    if let (true, Some(PendingOp::TreeConnect(share)), Some(tree)) =
                        (ok, share, tree)
                    {
                        let share_type = u8_at(m, body + 2);
                        let share_flags = u32_at(m, body + 4).unwrap_or(0);
                        if share_flags & SMB2_SHAREFLAG_ENCRYPT_DATA != 0 {
                            cx.posture.fact("smb.share-encrypted", share.clone());
                        }
                        let ipc = share_type == Some(SMB2_SHARE_TYPE_PIPE)
                            || share.eq_ignore_ascii_case("IPC$");
                        self.add_tree(tree, share, ipc, cx);
                    }
                }
                Smb2Command::CREATE => {
                    let op = self.take_pending(mid);
                    if let (true, Some(PendingOp::CreatePipe(name)), Some(fid)) =
                        (ok, op, file_id_at(m, body + 64))
                    {
                        self.add_pipe(PipeKey::Smb2(fid), name, cx);
                    }
                }
                Smb2Command::READ => {
                    let op = self.take_pending(mid);
                    let data_ok = ok || status == STATUS_BUFFER_OVERFLOW;
                    if let (true, Some(PendingOp::ReadPipe(fid))) = (data_ok, op) {
                        let off = u8_at(m, body + 2).map(usize::from);
                        let len = u32_at(m, body + 4).and_then(|l| usize::try_from(l).ok());
                        let key = PipeKey::Smb2(fid);
                        self.pipe_bytes(key, Direction::ToClient, m, off, len, cut, cx);
                    }
                }
                Smb2Command::IOCTL if ok || status == STATUS_BUFFER_OVERFLOW => {
                    if u32_at(m, body + 4) == Some(FSCTL_PIPE_TRANSCEIVE) {
                        if let Some(fid) = file_id_at(m, body + 8) {
                            let off = u32_at(m, body + 32).and_then(|o| usize::try_from(o).ok());
                            let len = u32_at(m, body + 36).and_then(|l| usize::try_from(l).ok());
                            let key = PipeKey::Smb2(fid);
                            self.pipe_bytes(key, Direction::ToClient, m, off, len, cut, cx);
                        }
                    }
                }
                _ => {
                    self.take_pending(mid);
                }
            }
            return;
        }
        match command {
            Smb2Command::NEGOTIATE => {
                let count = u16_at(m, body + 2).map_or(0, usize::from);
                if u16_at(m, body + 4).is_some_and(|s| s & SMB2_SIGNING_REQUIRED != 0) {
                    cx.posture.fact("smb.client-signing", "required");
                }
                for i in 0..count.min(MAX_DIALECTS) {
                    match u16_at(m, body + 36 + 2 * i) {
                        Some(d) => cx.posture.fact("smb.dialect-offered", dialect_name(d)),
                        None => {
                            self.out_of_range(
                                cx,
                                cut,
                                "smb2.truncated",
                                "NEGOTIATE dialect list runs past the message",
                            );
                            break;
                        }
                    }
                }
            }
            Smb2Command::SESSION_SETUP => {
                let off = u16_at(m, body + 12).map(usize::from);
                let len = u16_at(m, body + 14).map(usize::from);
                self.security_buffer(m, off, len, cut, cx);
            }
            Smb2Command::TREE_CONNECT => {
                let off = u16_at(m, body + 4).map(usize::from);
                let len = u16_at(m, body + 6).map(usize::from);
                match off.zip(len).and_then(|(o, l)| bytes(m, o, l)) {
                    Some(path) => {
                        let share = share_of(&utf16(path));
                        cx.posture.fact("smb.share", share.clone());
                        self.add_pending(mid, PendingOp::TreeConnect(share), cx);
                    }
                    None => self.out_of_range(
                        cx,
                        cut,
                        "smb2.offset-out-of-range",
                        "TREE_CONNECT path outside the message",
                    ),
                }
            }
            Smb2Command::CREATE => {
                let off = u16_at(m, body + 44).map(usize::from);
                let len = u16_at(m, body + 46).map(usize::from);
                let Some(name) = off.zip(len).and_then(|(o, l)| {
                    if l == 0 {
                        Some(&[][..])
                    } else {
                        bytes(m, o, l)
                    }
                }) else {
                    self.out_of_range(
                        cx,
                        cut,
                        "smb2.offset-out-of-range",
                        "CREATE name outside the message",
                    );
                    return;
                };
                let name = utf16(name);
                let on_ipc = tree.is_some_and(|t| self.trees.iter().any(|x| x.id == t && x.ipc));
                if on_ipc {
                    let pipe = pipe_name(&name);
                    cx.posture.fact("smb.pipe", pipe.clone());
                    self.add_pending(mid, PendingOp::CreatePipe(pipe), cx);
                } else if !name.is_empty() {
                    self.file_fact(name, cx);
                }
            }
            Smb2Command::WRITE => {
                if let Some(fid) = file_id_at(m, body + 16) {
                    let off = u16_at(m, body + 2).map(usize::from);
                    let len = u32_at(m, body + 4).and_then(|l| usize::try_from(l).ok());
                    let key = PipeKey::Smb2(fid);
                    self.pipe_bytes(key, Direction::ToServer, m, off, len, cut, cx);
                }
            }
            Smb2Command::READ => {
                if let Some(fid) = file_id_at(m, body + 16) {
                    if self.pipes.iter().any(|p| p.key == PipeKey::Smb2(fid)) {
                        self.add_pending(mid, PendingOp::ReadPipe(fid), cx);
                    }
                }
            }
            Smb2Command::IOCTL if u32_at(m, body + 4) == Some(FSCTL_PIPE_TRANSCEIVE) => {
                if let Some(fid) = file_id_at(m, body + 8) {
                    let off = u32_at(m, body + 24).and_then(|o| usize::try_from(o).ok());
                    let len = u32_at(m, body + 28).and_then(|l| usize::try_from(l).ok());
                    let key = PipeKey::Smb2(fid);
                    self.pipe_bytes(key, Direction::ToServer, m, off, len, cut, cx);
                }
            }
            Smb2Command::CLOSE => {
                if let Some(fid) = file_id_at(m, body + 8) {
                    self.pipes.retain(|p| p.key != PipeKey::Smb2(fid));
                }
            }
            _ => {}
        }
    }

    fn smb2_negotiate_response(&mut self, m: &[u8], cx: &mut Ctx) {
        let body = SMB2_HEADER_LEN;
        let (Some(mode), Some(dialect)) = (u16_at(m, body + 2), u16_at(m, body + 4)) else {
            cx.posture.anomaly(
                cx.frame,
                "smb2.truncated",
                "NEGOTIATE response shorter than its fixed part",
            );
            return;
        };
        // 0x02FF only answers an SMB1 multi-protocol negotiate: the real dialect follows.
        if dialect != 0x02ff {
            cx.posture.fact("smb.dialect", dialect_name(dialect));
            let version = if dialect >= 0x0300 { "3" } else { "2" };
            cx.posture.fact("smb.version", version);
        }
        let signing = if mode & SMB2_SIGNING_REQUIRED != 0 {
            "required"
        } else if mode & SMB2_SIGNING_ENABLED != 0 {
            "enabled"
        } else {
            "disabled"
        };
        cx.posture.fact("smb.signing", signing);
    }

    fn smb2_session_setup_response(&mut self, m: &[u8], status: u32, cx: &mut Ctx) {
        let body = SMB2_HEADER_LEN;
        if status != STATUS_SUCCESS && status != STATUS_MORE_PROCESSING_REQUIRED {
            cx.posture
                .fact("smb.session-setup-status", format!("0x{status:08x}"));
            return;
        }
        let off = u16_at(m, body + 4).map(usize::from);
        let len = u16_at(m, body + 6).map(usize::from);
        self.security_buffer(m, off, len, false, cx);
        if status != STATUS_SUCCESS {
            return;
        }
        let flags = u16_at(m, body + 2).unwrap_or(0);
        if flags & (SESSION_FLAG_IS_GUEST | SESSION_FLAG_IS_NULL) != 0 {
            let which = if flags & SESSION_FLAG_IS_NULL != 0 {
                "null"
            } else {
                "guest"
            };
            cx.posture.fact("smb.session-flags", which);
            anonymous(cx, "SMB2 SESSION_SETUP");
        }
        if flags & SESSION_FLAG_ENCRYPT_DATA != 0 {
            cx.posture.fact("smb.session-flags", "encrypt-data");
            cx.posture.set_encryption(Encryption::Smb3, cx.frame);
        }
    }

    /// SESSION_SETUP security buffer (offset from the SMB2 header) to the token inspector.
    fn security_buffer(
        &mut self,
        m: &[u8],
        off: Option<usize>,
        len: Option<usize>,
        cut: bool,
        cx: &mut Ctx,
    ) {
        let Some((off, len)) = off.zip(len) else {
            cx.posture.anomaly(
                cx.frame,
                "smb2.truncated",
                "SESSION_SETUP shorter than its fixed part",
            );
            return;
        };
        if len == 0 {
            return;
        }
        match bytes(m, off, len) {
            Some(blob) => {
                if let Some(s) = inspect_token(blob, cx, "SMB2 SESSION_SETUP") {
                    cx.posture.fact("smb.token", s.kind);
                }
            }
            None => self.out_of_range(
                cx,
                cut,
                "smb2.security-buffer-out-of-range",
                &format!(
                    "security buffer {off}+{len} outside the {}-byte message",
                    m.len()
                ),
            ),
        }
    }

    /// Data of a pipe write / read / transaction (`off` counted from the start of the SMB
    /// message `m`) to the pipe's DCE/RPC analyzer. Files that are not followed pipes are
    /// ignored.
    #[allow(clippy::too_many_arguments)] // reason: one call shape for every pipe command
    fn pipe_bytes(
        &mut self,
        key: PipeKey,
        dir: Direction,
        m: &[u8],
        off: Option<usize>,
        len: Option<usize>,
        cut: bool,
        cx: &mut Ctx,
    ) {
        let Some(pipe) = self.pipes.iter_mut().find(|p| p.key == key && !p.done) else {
            return;
        };
        let data = off.zip(len).and_then(|(o, l)| bytes(m, o, l));
        match data {
            Some(d) => {
                if pipe.rpc.data(dir, d, cx) == Next::Done {
                    pipe.done = true;
                }
            }
            None if cut => {
                pipe.done = true;
                cx.posture.anomaly(
                    cx.frame,
                    "smb.pipe-data-over-cap",
                    format!(
                        "message on pipe {} longer than {MAX_SMB_MESSAGE} bytes; pipe no longer followed",
                        pipe.name
                    ),
                );
            }
            None => {
                pipe.done = true;
                let kind = match key {
                    PipeKey::Smb2(_) => "smb2.offset-out-of-range",
                    PipeKey::Smb1(_) => "smb1.offset-out-of-range",
                };
                cx.posture.anomaly(
                    cx.frame,
                    kind,
                    format!(
                        "data offset/length on pipe {} outside the message; pipe no longer followed",
                        pipe.name
                    ),
                );
            }
        }
    }

    // ------------------------------------------------------------------ SMB1 ----

    fn smb1(&mut self, msg: &[u8], cut: bool, cx: &mut Ctx) {
        let (Some(command), Some(status), Some(flags), Some(flags2), Some(tid), Some(mid)) = (
            u8_at(msg, 4),
            u32_at(msg, 5),
            u8_at(msg, 9),
            u16_at(msg, 10),
            u16_at(msg, 24),
            u16_at(msg, 30),
        ) else {
            cx.posture.anomaly(
                cx.frame,
                "smb1.truncated",
                "SMB1 header shorter than 32 bytes",
            );
            return;
        };
        let reply = flags & SMB1_FLAGS_REPLY != 0;
        let unicode = flags2 & SMB1_FLAGS2_UNICODE != 0;
        let mut cmd = Smb1Command(command);
        if cmd != Smb1Command::NEGOTIATE || reply {
            cx.posture.fact("smb.version", "1");
        }
        self.smb1_chain_ipc = None;
        let mut pos = SMB1_HEADER_LEN;
        for _ in 0..MAX_ANDX {
            let Some(wc) = u8_at(msg, pos).map(usize::from) else {
                if !cut {
                    cx.posture.anomaly(
                        cx.frame,
                        "smb1.truncated",
                        "word count past the end of the message",
                    );
                }
                return;
            };
            let words_at = pos + 1;
            let bc_at = words_at + 2 * wc;
            let (Some(words), Some(bc)) = (bytes(msg, words_at, 2 * wc), u16_at(msg, bc_at)) else {
                if !cut {
                    cx.posture.anomaly(
                        cx.frame,
                        "smb1.truncated",
                        "parameter words past the end of the message",
                    );
                }
                return;
            };
            let data_at = bc_at + 2;
            let data = match bytes(msg, data_at, usize::from(bc)) {
                Some(d) => d,
                None => {
                    if !cut {
                        cx.posture.anomaly(
                            cx.frame,
                            "smb1.truncated",
                            "ByteCount runs past the end of the message",
                        );
                    }
                    msg.get(data_at..).unwrap_or_default()
                }
            };
            let blk = Smb1Block {
                reply,
                unicode,
                status,
                tid,
                mid,
                words,
                data,
                data_at,
                msg,
                cut,
            };
            self.smb1_command(cmd, &blk, cx);
            if !cmd.is_andx() {
                return;
            }
            let (Some(next), Some(next_at)) = (u8_at(words, 0), u16_at(words, 2)) else {
                return;
            };
            let (next, next_at) = (Smb1Command(next), usize::from(next_at));
            if next == Smb1Command::NO_ANDX {
                return;
            }
            if next_at <= pos || next_at >= msg.len() {
                if !cut {
                    cx.posture.anomaly(
                        cx.frame,
                        "smb1.andx-offset-invalid",
                        format!("AndXOffset {next_at} does not move forward inside the message"),
                    );
                }
                return;
            }
            cmd = next;
            pos = next_at;
        }
        self.report_cap(cx, "SMB1 AndX commands");
    }

    fn smb1_command(&mut self, cmd: Smb1Command, b: &Smb1Block, cx: &mut Ctx) {
        if !matches!(
            cmd,
            Smb1Command::NEGOTIATE
                | Smb1Command::SESSION_SETUP_ANDX
                | Smb1Command::LOGOFF_ANDX
                | Smb1Command::ECHO
        ) {
            cx.posture.set_cleartext();
        }
        match (cmd, b.reply) {
            (Smb1Command::NEGOTIATE, false) => {
                // Dialects: 0x02 then a NUL-terminated OEM string, repeated.
                self.smb1_dialects.clear();
                for d in b
                    .data
                    .split(|&c| c == 0)
                    .filter_map(|s| s.strip_prefix(&[0x02]))
                {
                    let name = oem(d);
                    cx.posture.fact("smb.dialect-offered", name.clone());
                    if self.smb1_dialects.len() < MAX_DIALECTS {
                        self.smb1_dialects.push(name);
                    }
                }
            }
            (Smb1Command::NEGOTIATE, true) => self.smb1_negotiate_response(b, cx),
            (Smb1Command::SESSION_SETUP_ANDX, false) => self.smb1_session_setup(b, cx),
            (Smb1Command::SESSION_SETUP_ANDX, true) => {
                if b.status != STATUS_SUCCESS && b.status != STATUS_MORE_PROCESSING_REQUIRED {
                    cx.posture
                        .fact("smb.session-setup-status", format!("0x{:08x}", b.status));
                    return;
                }
                let action = u16_at(b.words, 4).unwrap_or(0);
                if b.words.len() == 8 {
                    let len = u16_at(b.words, 6).map_or(0, usize::from);
                    self.smb1_blob(b.data, len, cx);
                }
                if b.status == STATUS_SUCCESS && action & SMB1_ACTION_GUEST != 0 {
                    cx.posture.fact("smb.session-flags", "guest");
                    anonymous(cx, "SMB1 SESSION_SETUP");
                }
            }
            (Smb1Command::TREE_CONNECT_ANDX, false) => {
                let pw_len = u16_at(b.words, 6).map_or(0, usize::from);
                let (path, _) = smb1_string(b.data, pw_len, b.data_at, b.unicode);
                let share = share_of(&path);
                cx.posture.fact("smb.share", share.clone());
                // The rest of this chain runs on the tree being connected.
                self.smb1_chain_ipc = Some(share.eq_ignore_ascii_case("IPC$"));
                self.smb1_add_pending(b.mid, Smb1Op::TreeConnect(share), cx);
            }
            (Smb1Command::TREE_CONNECT_ANDX, true) => {
                if let Some(Smb1Op::TreeConnect(share)) = self.smb1_take_pending(b.mid, cmd) {
                    // Service (always OEM, MS-CIFS 2.2.4.55.2) "IPC" names a pipe share.
                    let service = oem(b.data);
                    let ipc = share.eq_ignore_ascii_case("IPC$") || service == "IPC";
                    if b.status == STATUS_SUCCESS {
                        self.smb1_add_tree(b.tid, ipc, cx);
                    }
                }
            }
            (Smb1Command::NT_CREATE_ANDX, false) => self.smb1_create(b, cx),
            (Smb1Command::NT_CREATE_ANDX, true) => self.smb1_create_response(b, cx),
            (Smb1Command::TRANSACTION, false) => self.smb1_trans(b, cx),
            (Smb1Command::TRANSACTION_SECONDARY, false) => self.smb1_trans_secondary(b, cx),
            (Smb1Command::TRANSACTION, true) => self.smb1_trans_response(b, cx),
            (Smb1Command::WRITE_ANDX, false) => {
                // MS-CIFS 2.2.4.43.1: FID, Offset, Timeout, WriteMode, Remaining,
                // DataLengthHigh (MS-SMB 2.2.4.3.1), DataLength, DataOffset.
                let Some(fid) = u16_at(b.words, 4) else {
                    return self.smb1_short(b, "WRITE_ANDX", cx);
                };
                let mode = u16_at(b.words, 14).unwrap_or(0);
                let high = u16_at(b.words, 18).map_or(0, usize::from);
                let mut len = u16_at(b.words, 20).map(|l| high << 16 | usize::from(l));
                let mut off = b.data_offset(22);
                if mode & (WRITE_MODE_RAW | WRITE_MODE_MSG_START)
                    == WRITE_MODE_RAW | WRITE_MODE_MSG_START
                {
                    // The two-byte message length is not pipe data.
                    off = off.and_then(|o| o.checked_add(2));
                    len = len.and_then(|l| l.checked_sub(2));
                }
                let key = PipeKey::Smb1(fid);
                self.pipe_bytes(key, Direction::ToServer, b.msg, off, len, b.cut, cx);
            }
            (Smb1Command::WRITE, false) => {
                // MS-CIFS 2.2.4.12.1: FID, Count, Offset, Estimate; data block
                // BufferFormat 0x01, DataLength, Data.
                let Some(fid) = u16_at(b.words, 0) else {
                    return self.smb1_short(b, "WRITE", cx);
                };
                let (off, len) = smb1_data_block(b);
                let key = PipeKey::Smb1(fid);
                self.pipe_bytes(key, Direction::ToServer, b.msg, off, len, b.cut, cx);
            }
            (Smb1Command::READ_ANDX | Smb1Command::READ, false) => {
                // READ_ANDX: FID after the AndX words (MS-CIFS 2.2.4.42.1); READ: FID
                // first (MS-CIFS 2.2.4.11.1).
                let fid_at = if cmd == Smb1Command::READ { 0 } else { 4 };
                if let Some(fid) = u16_at(b.words, fid_at) {
                    if self.pipes.iter().any(|p| p.key == PipeKey::Smb1(fid)) {
                        self.smb1_add_pending(b.mid, Smb1Op::Read(fid), cx);
                    }
                }
            }
            (Smb1Command::READ_ANDX | Smb1Command::READ, true) => {
                let Some(Smb1Op::Read(fid)) = self.smb1_take_pending(b.mid, cmd) else {
                    return;
                };
                if !b.has_data() || b.words.is_empty() {
                    return;
                }
                let (off, len) = if cmd == Smb1Command::READ {
                    smb1_data_block(b)
                } else {
                    // MS-CIFS 2.2.4.42.2: AndX, Available, DataCompactionMode, Reserved,
                    // DataLength, DataOffset, DataLengthHigh (MS-SMB 2.2.4.2.2).
                    let high = u16_at(b.words, 14).map_or(0, usize::from);
                    let len = u16_at(b.words, 10).map(|l| high << 16 | usize::from(l));
                    (b.data_offset(12), len)
                };
                let key = PipeKey::Smb1(fid);
                self.pipe_bytes(key, Direction::ToClient, b.msg, off, len, b.cut, cx);
            }
            (Smb1Command::CLOSE, false) => {
                if let Some(fid) = u16_at(b.words, 0) {
                    self.pipes.retain(|p| p.key != PipeKey::Smb1(fid));
                }
            }
            _ => {}
        }
    }

    /// NT_CREATE_ANDX request (MS-CIFS 2.2.4.64.1): the name is the whole data part.
    fn smb1_create(&mut self, b: &Smb1Block, cx: &mut Ctx) {
        let (name, _) = smb1_string(b.data, 0, b.data_at, b.unicode);
        let ipc = self.smb1_chain_ipc.or_else(|| {
            self.smb1_trees
                .iter()
                .find(|&&(t, _)| t == b.tid)
                .map(|&(_, ipc)| ipc)
        });
        match ipc {
            Some(true) => {
                let pipe = pipe_name(&name);
                cx.posture.fact("smb.pipe", pipe.clone());
                let op = Smb1Op::Create {
                    name: pipe,
                    ipc: Some(true),
                };
                self.smb1_add_pending(b.mid, op, cx);
            }
            Some(false) => {
                if !name.is_empty() {
                    self.file_fact(name, cx);
                }
            }
            None => self.smb1_add_pending(b.mid, Smb1Op::Create { name, ipc: None }, cx),
        }
    }

    /// NT_CREATE_ANDX response (MS-CIFS 2.2.4.64.2; 34 words, or 42 for the MS-SMB
    /// 2.2.4.9.2 extended form): FID at word byte 5, ResourceType at 63.
    fn smb1_create_response(&mut self, b: &Smb1Block, cx: &mut Ctx) {
        let Some(Smb1Op::Create { name, ipc }) =
            self.smb1_take_pending(b.mid, Smb1Command::NT_CREATE_ANDX)
        else {
            return;
        };
        let fid = u16_at(b.words, 5).filter(|_| b.status == STATUS_SUCCESS);
        let pipe_type = matches!(
            u16_at(b.words, 63),
            Some(FILE_TYPE_BYTE_MODE_PIPE | FILE_TYPE_MESSAGE_MODE_PIPE)
        );
        match (ipc, fid) {
            (Some(true), Some(fid)) => self.add_pipe(PipeKey::Smb1(fid), name, cx),
            (None, Some(fid)) if pipe_type => {
                // A tree connected before the capture, but the server says: a pipe.
                let pipe = pipe_name(&name);
                cx.posture.fact("smb.pipe", pipe.clone());
                self.add_pipe(PipeKey::Smb1(fid), pipe, cx);
            }
            (None, _) if !name.is_empty() => self.file_fact(name, cx),
            _ => {}
        }
    }

    /// TRANS request (MS-CIFS 2.2.4.33.1): TotalParameterCount, TotalDataCount, ...,
    /// DataCount at word byte 22, DataOffset at 24, SetupCount at 26, Setup at 28. A
    /// named-pipe subcommand's Setup[1] is the FID; a FID not seen opened is a pipe
    /// opened before the capture.
    fn smb1_trans(&mut self, b: &Smb1Block, cx: &mut Ctx) {
        let setup_count = u8_at(b.words, 26).map_or(0, usize::from);
        let (Some(sub), Some(fid)) = (u16_at(b.words, 28), u16_at(b.words, 30)) else {
            return;
        };
        if setup_count < 2 {
            return;
        }
        let (carries, answer) = match sub {
            TRANS_TRANSACT_NMPIPE => (true, true),
            TRANS_WRITE_NMPIPE => (true, false),
            TRANS_READ_NMPIPE => (false, true),
            _ => return,
        };
        let key = PipeKey::Smb1(fid);
        if !self.pipes.iter().any(|p| p.key == key) {
            self.add_pipe(key, format!("fid 0x{fid:04x}"), cx);
        }
        let total = u16_at(b.words, 2).map_or(0, usize::from);
        let count = u16_at(b.words, 22).map(usize::from);
        if carries {
            let off = b.data_offset(24);
            self.pipe_bytes(key, Direction::ToServer, b.msg, off, count, b.cut, cx);
        }
        let sent = count.unwrap_or(0);
        if answer || sent < total {
            let op = PipeTrans {
                fid,
                answer,
                request_at: sent,
                response_at: 0,
            };
            self.smb1_add_pending(b.mid, Smb1Op::Trans(op), cx);
        }
    }

    /// TRANS_SECONDARY request (MS-CIFS 2.2.4.34.1): more request data of the
    /// transaction with the same MID; DataCount at word byte 10, DataOffset at 12,
    /// DataDisplacement at 14.
    fn smb1_trans_secondary(&mut self, b: &Smb1Block, cx: &mut Ctx) {
        let Some(t) = self.smb1_trans_of(b.mid) else {
            return;
        };
        let key = PipeKey::Smb1(t.fid);
        let count = u16_at(b.words, 10).map(usize::from);
        let disp = u16_at(b.words, 14).map(usize::from);
        if disp != Some(t.request_at) {
            let expected = t.request_at;
            return self.smb1_displacement(key, disp, expected, cx);
        }
        t.request_at += count.unwrap_or(0);
        let off = b.data_offset(12);
        self.pipe_bytes(key, Direction::ToServer, b.msg, off, count, b.cut, cx);
    }

    /// TRANS response (MS-CIFS 2.2.4.33.2): TotalDataCount at word byte 2, DataCount at
    /// 12, DataOffset at 14, DataDisplacement at 16. A response without words is the
    /// interim answer that asks for the secondary requests.
    fn smb1_trans_response(&mut self, b: &Smb1Block, cx: &mut Ctx) {
        let Some(i) = self
            .smb1_pending
            .iter()
            .position(|(m, op)| *m == b.mid && op.same_kind(Smb1Command::TRANSACTION))
        else {
            return;
        };
        let interim = b.words.is_empty() && b.status == STATUS_SUCCESS;
        if interim {
            return;
        }
        if !b.has_data() || b.words.is_empty() {
            self.smb1_pending.remove(i);
            return;
        }
        let Some((_, Smb1Op::Trans(t))) = self.smb1_pending.get_mut(i) else {
            return;
        };
        let (key, answer, expected) = (PipeKey::Smb1(t.fid), t.answer, t.response_at);
        let total = u16_at(b.words, 2).map_or(0, usize::from);
        let count = u16_at(b.words, 12).map(usize::from);
        let disp = u16_at(b.words, 16).map(usize::from);
        t.response_at += count.unwrap_or(0);
        // The last part, or a message-mode pipe's partial answer (the client reads the
        // rest with READ_ANDX).
        let last = t.response_at >= total || b.status != STATUS_SUCCESS || count.is_none();
        if last {
            self.smb1_pending.remove(i);
        }
        if !answer {
            return;
        }
        if disp != Some(expected) {
            return self.smb1_displacement(key, disp, expected, cx);
        }
        let off = b.data_offset(14);
        self.pipe_bytes(key, Direction::ToClient, b.msg, off, count, b.cut, cx);
    }

    /// The pipe transaction that MID `mid` is part of.
    fn smb1_trans_of(&mut self, mid: u16) -> Option<&mut PipeTrans> {
        self.smb1_pending.iter_mut().find_map(|(m, op)| match op {
            Smb1Op::Trans(t) if *m == mid => Some(t),
            _ => None,
        })
    }

    /// Transaction data out of order: the pipe's byte stream can no longer be followed.
    fn smb1_displacement(
        &mut self,
        key: PipeKey,
        disp: Option<usize>,
        expected: usize,
        cx: &mut Ctx,
    ) {
        let Some(pipe) = self.pipes.iter_mut().find(|p| p.key == key && !p.done) else {
            return;
        };
        pipe.done = true;
        let disp = disp.map_or_else(|| "missing".to_string(), |d| d.to_string());
        cx.posture.anomaly(
            cx.frame,
            "smb1.trans-displacement",
            format!(
                "transaction data displacement {disp} on pipe {}, {expected} expected; pipe no longer followed",
                pipe.name
            ),
        );
    }

    /// A write request whose parameter words are too few to name its FID.
    fn smb1_short(&mut self, b: &Smb1Block, what: &str, cx: &mut Ctx) {
        let detail = format!("{what} with {} parameter bytes has no FID", b.words.len());
        self.out_of_range(cx, b.cut, "smb1.truncated", &detail);
    }

    fn smb1_negotiate_response(&mut self, b: &Smb1Block, cx: &mut Ctx) {
        let Some(index) = u16_at(b.words, 0) else {
            cx.posture.anomaly(
                cx.frame,
                "smb1.truncated",
                "NEGOTIATE response without a dialect index",
            );
            return;
        };
        let dialect = self
            .smb1_dialects
            .get(usize::from(index))
            .cloned()
            .unwrap_or_else(|| format!("dialect-index-{index}"));
        cx.posture.fact("smb.dialect", dialect);
        // NT LM 0.12 (17 words): SecurityMode is a byte; LANMAN (13 words): a u16.
        let mode = match b.words.len() {
            34 | 26 => u8_at(b.words, 2),
            _ => None,
        };
        if let Some(mode) = mode {
            let encrypt = mode & SMB1_ENCRYPT_PASSWORDS != 0;
            self.smb1_encrypt_passwords = Some(encrypt);
            if !encrypt {
                cx.posture.fact("smb.encrypt-passwords", "no");
            }
            if b.words.len() == 34 {
                let signing = if mode & SMB1_SIGNATURES_REQUIRED != 0 {
                    "required"
                } else if mode & SMB1_SIGNATURES_ENABLED != 0 {
                    "enabled"
                } else {
                    "disabled"
                };
                cx.posture.fact("smb.signing", signing);
            }
        }
    }

    fn smb1_session_setup(&mut self, b: &Smb1Block, cx: &mut Ctx) {
        match b.words.len() {
            // Extended security (MS-SMB 2.2.4.6.1): SecurityBlobLength at word 7.
            24 => {
                let len = u16_at(b.words, 14).map_or(0, usize::from);
                self.smb1_blob(b.data, len, cx);
            }
            // NT LM 0.12 without extended security (MS-CIFS 2.2.4.53.1): two passwords.
            26 => {
                let lm = u16_at(b.words, 14).map_or(0, usize::from);
                let nt = u16_at(b.words, 16).map_or(0, usize::from);
                self.smb1_passwords(b, lm, nt, cx);
            }
            // LANMAN (MS-CIFS 2.2.4.53.1, 10 words): one password.
            20 => {
                let lm = u16_at(b.words, 14).map_or(0, usize::from);
                self.smb1_passwords(b, lm, 0, cx);
            }
            _ => {}
        }
    }

    /// Non-extended session setup: account, domain and what the password fields say.
    fn smb1_passwords(&mut self, b: &Smb1Block, lm_len: usize, nt_len: usize, cx: &mut Ctx) {
        let (Some(lm), Some(nt)) = (bytes(b.data, 0, lm_len), bytes(b.data, lm_len, nt_len)) else {
            cx.posture.anomaly(
                cx.frame,
                "smb1.password-out-of-range",
                format!(
                    "password lengths {lm_len}+{nt_len} exceed the {}-byte data",
                    b.data.len()
                ),
            );
            return;
        };
        let (account, next) = smb1_string(b.data, lm_len + nt_len, b.data_at, b.unicode);
        let (domain, _) = smb1_string(b.data, next, b.data_at, b.unicode);
        let user = match (account.is_empty(), domain.is_empty()) {
            (true, _) => None,
            (false, true) => Some(account.clone()),
            (false, false) => Some(format!("{domain}\\{account}")),
        };
        let context = "SMB1 SESSION_SETUP".to_string();
        if account.is_empty() && lm_len <= 1 && nt_len == 0 {
            anonymous(cx, "SMB1 SESSION_SETUP");
            return;
        }
        let (mechanism, secret) = if self.smb1_encrypt_passwords == Some(false) {
            // The server asked for plaintext: the password fields hold the password.
            let pw = if nt_len > 0 { utf16(nt) } else { oem(lm) };
            (Mechanism::UserPass, Some(Secret(pw)))
        } else if nt_len == NTLMV1_RESPONSE_LEN || (nt_len == 0 && lm_len == NTLMV1_RESPONSE_LEN) {
            (Mechanism::Ntlmv1, None)
        } else if nt_len > NTLMV1_RESPONSE_LEN {
            (Mechanism::Ntlmv2, None)
        } else {
            (Mechanism::Ntlm, None)
        };
        cx.posture.add_auth(AuthEvent {
            mechanism,
            user,
            cleartext: secret.is_some(),
            secret,
            frame: cx.frame,
            context,
            after_tls: false,
        });
    }

    fn smb1_blob(&mut self, data: &[u8], len: usize, cx: &mut Ctx) {
        if len == 0 {
            return;
        }
        match data.get(..len) {
            Some(blob) => {
                if let Some(s) = inspect_token(blob, cx, "SMB1 SESSION_SETUP") {
                    cx.posture.fact("smb.token", s.kind);
                }
            }
            None => cx.posture.anomaly(
                cx.frame,
                "smb1.security-blob-truncated",
                format!(
                    "SecurityBlobLength {len} exceeds the {}-byte data",
                    data.len()
                ),
            ),
        }
    }

    // ------------------------------------------------------------------ state ---

    fn add_pending(&mut self, mid: u64, op: PendingOp, cx: &mut Ctx) {
        self.pending.retain(|(m, _)| *m != mid);
        if self.pending.len() >= cx.limits.transactions {
            self.pending.remove(0);
            self.report_cap(cx, "outstanding requests");
        }
        self.pending.push((mid, op));
    }

    fn take_pending(&mut self, mid: u64) -> Option<PendingOp> {
        let i = self.pending.iter().position(|(m, _)| *m == mid)?;
        Some(self.pending.remove(i).1)
    }

    /// An SMB1 request awaiting its response. A MID is shared by the commands of one
    /// AndX chain, so an older entry of the same kind is replaced, not the whole MID.
    fn smb1_add_pending(&mut self, mid: u16, op: Smb1Op, cx: &mut Ctx) {
        let kind = std::mem::discriminant(&op);
        self.smb1_pending
            .retain(|(m, o)| *m != mid || std::mem::discriminant(o) != kind);
        if self.smb1_pending.len() >= cx.limits.transactions {
            self.smb1_pending.remove(0);
            self.report_cap(cx, "outstanding SMB1 requests");
        }
        self.smb1_pending.push((mid, op));
    }

    /// The pending SMB1 request that a response of `cmd` with `mid` completes.
    fn smb1_take_pending(&mut self, mid: u16, cmd: Smb1Command) -> Option<Smb1Op> {
        let i = self
            .smb1_pending
            .iter()
            .position(|(m, op)| *m == mid && op.same_kind(cmd))?;
        Some(self.smb1_pending.remove(i).1)
    }

    fn smb1_add_tree(&mut self, tid: u16, ipc: bool, cx: &mut Ctx) {
        self.smb1_trees.retain(|&(t, _)| t != tid);
        if self.smb1_trees.len() >= MAX_TREES {
            self.smb1_trees.remove(0);
            self.report_cap(cx, "SMB1 tree connects");
        }
        self.smb1_trees.push((tid, ipc));
    }

    fn add_tree(&mut self, id: u32, share: String, ipc: bool, cx: &mut Ctx) {
        self.trees.retain(|t| t.id != id);
        if self.trees.len() >= MAX_TREES {
            self.trees.remove(0);
            self.report_cap(cx, "tree connects");
        }
        self.trees.push(Tree { id, share, ipc });
    }

    fn add_pipe(&mut self, key: PipeKey, name: String, cx: &mut Ctx) {
        self.pipes.retain(|p| p.key != key);
        if self.pipes.len() >= MAX_PIPES {
            self.report_cap(cx, "open named pipes");
            return;
        }
        self.pipes.push(Pipe {
            key,
            name,
            rpc: DceRpcAnalyzer::new(),
            done: false,
        });
    }

    fn file_fact(&mut self, name: String, cx: &mut Ctx) {
        if self.files < MAX_FILE_FACTS {
            self.files += 1;
            cx.posture.fact("smb.file", name);
        }
    }

    fn out_of_range(&mut self, cx: &mut Ctx, cut: bool, kind: &'static str, detail: &str) {
        if cut {
            return;
        }
        cx.posture.anomaly(cx.frame, kind, detail.to_string());
    }

    fn report_cap(&mut self, cx: &mut Ctx, what: &str) {
        if !self.caps_reported {
            self.caps_reported = true;
            cx.posture.anomaly(
                cx.frame,
                "smb.state-over-cap",
                format!("too many {what} on one connection; extra ones not followed"),
            );
        }
    }

    /// Share names of the trees connected so far (for tests and debugging).
    pub fn shares(&self) -> impl Iterator<Item = &str> {
        self.trees.iter().map(|t| t.share.as_str())
    }
}

/// One SMB1 command block of an AndX chain.
struct Smb1Block<'a> {
    reply: bool,
    unicode: bool,
    status: u32,
    tid: u16,
    mid: u16,
    words: &'a [u8],
    data: &'a [u8],
    /// Offset of `data` from the SMB header (Unicode alignment is relative to it).
    data_at: usize,
    /// The whole SMB message: DataOffset fields count from its first byte.
    msg: &'a [u8],
    /// The message was cut at [`MAX_SMB_MESSAGE`].
    cut: bool,
}

impl Smb1Block<'_> {
    /// A response status that still carries data: success, or more data to come
    /// (STATUS_BUFFER_OVERFLOW from a message-mode pipe, in NT or DOS spelling).
    fn has_data(&self) -> bool {
        matches!(
            self.status,
            STATUS_SUCCESS | STATUS_BUFFER_OVERFLOW | SMB1_ERRDOS_MORE_DATA
        )
    }

    /// A DataOffset read from this block's words, kept only when it points past the
    /// block's parameter words (data never lives in the header or in the words).
    fn data_offset(&self, word_off: usize) -> Option<usize> {
        u16_at(self.words, word_off)
            .map(usize::from)
            .filter(|&o| o >= self.data_at)
    }
}

/// The data block of SMB_COM_WRITE / SMB_COM_READ (MS-CIFS 2.2.4.11.2, 2.2.4.12.1):
/// BufferFormat 0x01, a 16-bit length, then the bytes. Returns their offset from the
/// SMB header and their length; no offset when the BufferFormat is wrong.
fn smb1_data_block(b: &Smb1Block) -> (Option<usize>, Option<usize>) {
    let off = (u8_at(b.data, 0) == Some(SMB1_DATA_BLOCK)).then_some(b.data_at + 3);
    (off, u16_at(b.data, 1).map(usize::from))
}

fn anonymous(cx: &mut Ctx, context: &str) {
    cx.posture.add_auth(AuthEvent {
        mechanism: Mechanism::Anonymous,
        user: None,
        cleartext: false,
        secret: None,
        frame: cx.frame,
        context: context.to_string(),
        after_tls: false,
    });
}

impl Analyzer for SmbAnalyzer {
    fn data(&mut self, dir: Direction, data: &[u8], cx: &mut Ctx) -> Next {
        if !self.done {
            self.feed(dir, data, cx);
        }
        if self.done {
            Next::Done
        } else {
            Next::Continue
        }
    }

    fn finish(&mut self, cx: &mut Ctx) {
        // A session captured after its NEGOTIATE: SMB 2 or 3, dialect unknown.
        let known = cx
            .posture
            .facts
            .get("smb.version")
            .is_some_and(|v| v.iter().any(|v| v != "1"));
        if self.saw_smb2 && !known {
            cx.posture.fact("smb.version", "2+");
        }
        finish_auth(cx);
    }
}

/// Probe: a session message (0x00 + 24-bit length) holding an SMB protocol id, or a
/// NetBIOS session request from the client on 139, is certain.
pub fn probe(dir: Direction, prefix: &[u8], _client_port: u16, server_port: u16) -> Probe {
    match prefix.first() {
        None => Probe::Unsure,
        Some(&NB_SESSION_MESSAGE) => match prefix.get(4..8) {
            Some(id)
                if [SMB1_MAGIC, SMB2_MAGIC, TRANSFORM_MAGIC, COMPRESSION_MAGIC]
                    .iter()
                    .any(|m| id == *m) =>
            {
                Probe::Certain
            }
            Some(_) => Probe::No,
            None => Probe::Unsure,
        },
        Some(&NB_SESSION_REQUEST) if server_port == 139 && dir == Direction::ToServer => {
            Probe::Certain
        }
        Some(&(NB_SESSION_REQUEST..=NB_KEEPALIVE)) => Probe::Unsure,
        Some(_) => Probe::No,
    }
}

fn make() -> Box<dyn Analyzer> {
    Box::new(SmbAnalyzer::new())
}

/// SMB over direct TCP (445) and over the NetBIOS session service (139).
pub const REGISTRATION: Registration = Registration {
    name: "smb",
    tcp: true,
    ports: &[445, 139],
    probe,
    make,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Posture;

    fn from_hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect()
    }

    fn run_on(port: u16, chunks: &[(Direction, u64, &[u8])]) -> (Posture, Next) {
        let mut p = Posture::default();
        let mut a = SmbAnalyzer::new();
        let mut next = Next::Continue;
        for (dir, frame, bytes) in chunks {
            let mut cx = Ctx {
                limits: &crate::limits::ProtoLimits::DEFAULT,
                frame: *frame,
                ts_ns: 0,
                client_port: 50000,
                server_port: port,
                posture: &mut p,
            };
            next = a.data(*dir, bytes, &mut cx);
        }
        (p, next)
    }

    fn run(chunks: &[(Direction, u64, &[u8])]) -> (Posture, Next) {
        run_on(445, chunks)
    }

    fn kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    /// Direct TCP transport header: 0x00 + 24-bit big-endian length.
    fn nb(msg: &[u8]) -> Vec<u8> {
        let n = msg.len() as u32;
        let mut out = vec![0, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(msg);
        out
    }

    /// SMB2 sync header (64 bytes).
    fn hdr2(cmd: u16, response: bool, status: u32, mid: u64, tree: u32) -> Vec<u8> {
        let mut h = b"\xfeSMB".to_vec();
        h.extend(64u16.to_le_bytes()); // StructureSize
        h.extend(1u16.to_le_bytes()); // CreditCharge
        h.extend(status.to_le_bytes()); // Status
        h.extend(cmd.to_le_bytes()); // Command
        h.extend(1u16.to_le_bytes()); // CreditRequest/Response
        h.extend((response as u32).to_le_bytes()); // Flags
        h.extend(0u32.to_le_bytes()); // NextCommand
        h.extend(mid.to_le_bytes()); // MessageId
        h.extend(0u32.to_le_bytes()); // Reserved (ProcessId)
        h.extend(tree.to_le_bytes()); // TreeId
        h.extend(0x1122_3344_5566_7788u64.to_le_bytes()); // SessionId
        h.extend([0u8; 16]); // Signature
        h
    }

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    const FID: [u8; 16] = [1, 0, 0, 0, 0, 0, 0, 0, 0x42, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn smb2_negotiate_from_a_real_capture() {
        // smb_smb3.pcap frame 1: NEGOTIATE request offering dialect 0x0300.
        let req = from_hex(
            "00000066fe534d4240000000000000000000020000000000000000000000000000000000d5000000\
             00000000000000000000000000000000000000000000000000000000240001000100000057000000\
             b2fceea195244165893fbf5b2c69acd400000000000000000003",
        );
        // Frame 2: NEGOTIATE response, SecurityMode 0x0003 (signing required), dialect 0x0300,
        // security buffer (SPNEGO NegTokenInit2) at offset 0x80.
        let resp = from_hex(
            "000000f8fe534d4240000000000000000000010001000000000000000000000000000000d5000000\
             0000000000000000000000000000000000000000000000000000000041000300000300004bf432bf\
             8f92054890c03ddf2546646e470000000000800000008000000080008a8ce7a9f4ced20100b579ab\
             b4cdd2018000780000000000607606062b0601050502a06c306aa03c303a060a2b06010401823702\
             021e06092a864882f71201020206092a864886f712010202060a2a864886f71201020203060a2b06\
             010401823702020aa32a3028a0261b246e6f745f646566696e65645f696e5f524643343137384070\
             6c656173655f69676e6f7265",
        );
        let (p, next) = run(&[
            (Direction::ToServer, 1, &req),
            (Direction::ToClient, 2, &resp),
        ]);
        assert_eq!(next, Next::Continue);
        assert!(p.has_fact("smb.dialect-offered", "3.0"));
        assert!(p.has_fact("smb.dialect", "3.0"));
        assert!(p.has_fact("smb.version", "3"));
        assert!(p.has_fact("smb.signing", "required"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn smb2_session_setup_token_from_a_real_capture() {
        // smb_smb3.pcap frame 3: SESSION_SETUP request, security buffer at 0x58, 0x20 bytes:
        // a raw NTLMSSP NEGOTIATE.
        let req = from_hex(
            "00000078fe534d4240000000000000000100030000000000000000000100000000000000d5000000\
             00000000000000000000000000000000000000000000000000000000190000020000000000000000\
             5800200000000000000000004e544c4d5353500001000000350208e0000000000000000000000000\
             00000000",
        );
        let (p, _) = run(&[(Direction::ToServer, 3, &req)]);
        assert!(
            p.has_fact("smb.token", "ntlmssp.negotiate"),
            "{:?}",
            p.facts
        );
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn guest_session_is_anonymous() {
        // SESSION_SETUP response: StructureSize 9, SessionFlags IS_GUEST, no buffer.
        let mut m = hdr2(1, true, 0, 2, 0);
        m.extend([9, 0, 0x01, 0x00, 0x48, 0x00, 0x00, 0x00, 0x00]);
        let (p, _) = run(&[(Direction::ToClient, 6, &nb(&m))]);
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Anonymous);
        assert_eq!(p.auth[0].frame, 6);
        assert_eq!(p.auth[0].context, "SMB2 SESSION_SETUP");
        assert!(p.has_fact("smb.session-flags", "guest"));
    }

    #[test]
    fn failed_session_setup_status_is_a_fact() {
        // ERROR response to SESSION_SETUP with STATUS_LOGON_FAILURE.
        let mut m = hdr2(1, true, 0xc000_006d, 3, 0);
        m.extend([9, 0, 0, 0, 0, 0, 0, 0, 0]);
        let (p, _) = run(&[(Direction::ToClient, 8, &nb(&m))]);
        assert!(p.has_fact("smb.session-setup-status", "0xc000006d"));
        assert!(p.auth.is_empty());
    }

    /// TREE_CONNECT \\srv\IPC$ (mid 4) and its response (tree 7, pipe share), CREATE
    /// winreg (mid 5) and its response (FileId FID).
    fn ipc_winreg_open() -> Vec<(Direction, u64, Vec<u8>)> {
        let path = utf16le("\\\\srv\\IPC$");
        let mut tc = hdr2(3, false, 0, 4, 0);
        // StructureSize 9, Reserved, PathOffset 0x48, PathLength, then the path.
        tc.extend([9, 0, 0, 0, 0x48, 0]);
        tc.extend((path.len() as u16).to_le_bytes());
        tc.extend(&path);
        let mut tc_resp = hdr2(3, true, 0, 4, 7);
        // StructureSize 16, ShareType 2 (pipe), Reserved, ShareFlags, Capabilities, MaximalAccess.
        tc_resp.extend([16, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0x01, 0x1f, 0x00]);
        let name = utf16le("winreg");
        let mut create = hdr2(5, false, 0, 5, 7);
        // StructureSize 57 and fixed fields up to NameOffset (at body + 44).
        create.extend(57u16.to_le_bytes());
        create.extend([0u8; 42]);
        create.extend(0x78u16.to_le_bytes()); // NameOffset = 64 + 56
        create.extend((name.len() as u16).to_le_bytes()); // NameLength
        create.extend([0u8; 8]); // CreateContextsOffset, CreateContextsLength
        create.extend(&name);
        let mut create_resp = hdr2(5, true, 0, 5, 7);
        // StructureSize 89, fixed fields, FileId at body + 64.
        create_resp.extend(89u16.to_le_bytes());
        create_resp.extend([0u8; 62]);
        create_resp.extend(FID);
        create_resp.extend([0u8; 8]);
        vec![
            (Direction::ToServer, 10, nb(&tc)),
            (Direction::ToClient, 11, nb(&tc_resp)),
            (Direction::ToServer, 12, nb(&create)),
            (Direction::ToClient, 13, nb(&create_resp)),
        ]
    }

    /// DCE/RPC bind for winreg (v1.0, NDR), call_id 1, no auth.
    fn winreg_bind() -> Vec<u8> {
        let mut b = vec![
            0x05, 0x00, 0x0b, 0x03, 0x10, 0x00, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 1, 0, 0, 0,
        ];
        b.extend([0xb8, 0x10, 0xb8, 0x10, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0]);
        // 338cd001-2244-31f1-aaaa-900038001003, little-endian fields, v1.0
        b.extend([
            0x01, 0xd0, 0x8c, 0x33, 0x44, 0x22, 0xf1, 0x31, 0xaa, 0xaa, 0x90, 0x00, 0x38, 0x00,
            0x10, 0x03,
        ]);
        b.extend([1, 0, 0, 0]);
        b.extend([
            0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11, 0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10,
            0x48, 0x60,
        ]);
        b.extend([2, 0, 0, 0]);
        b
    }

    /// DCE/RPC bind_ack for call_id 1 whose one result is a provider rejection.
    fn winreg_bind_ack_rejected() -> Vec<u8> {
        let mut ack = vec![
            0x05, 0x00, 0x0c, 0x03, 0x10, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 1, 0, 0, 0,
        ];
        ack.extend([0xb8, 0x10, 0xb8, 0x10, 0, 0, 0, 0, 0, 0]); // sec_addr length 0
        ack.extend([0, 0]); // pad to 4
        ack.extend([1, 0, 0, 0, 2, 0, 1, 0]); // 1 result: provider rejection, reason 1
        ack.extend([0u8; 20]);
        ack
    }

    fn write_msg(mid: u64, data: &[u8]) -> Vec<u8> {
        let mut w = hdr2(9, false, 0, mid, 7);
        // StructureSize 49, DataOffset 0x70, Length, Offset, FileId, Channel, Remaining,
        // WriteChannelInfoOffset/Length, Flags, then the data.
        w.extend(49u16.to_le_bytes());
        w.extend(0x70u16.to_le_bytes());
        w.extend((data.len() as u32).to_le_bytes());
        w.extend(0u64.to_le_bytes());
        w.extend(FID);
        w.extend([0u8; 16]);
        w.extend_from_slice(data);
        w
    }

    #[test]
    fn ipc_pipe_bind_inside_smb2_write_is_seen() {
        let mut chunks = ipc_winreg_open();
        chunks.push((Direction::ToServer, 14, nb(&write_msg(6, &winreg_bind()))));
        let refs: Vec<(Direction, u64, &[u8])> = chunks
            .iter()
            .map(|(d, f, b)| (*d, *f, b.as_slice()))
            .collect();
        let (p, _) = run(&refs);
        assert!(p.has_fact("smb.share", "IPC$"));
        assert!(p.has_fact("smb.pipe", "winreg"));
        assert!(p.has_fact("dcerpc.ptype", "bind"));
        assert!(p.has_fact("dcerpc.interface", "winreg"), "{:?}", p.facts);
        assert_eq!(p.encryption, Encryption::None);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn pipe_data_through_read_and_transceive() {
        let mut chunks = ipc_winreg_open();
        // IOCTL FSCTL_PIPE_TRANSCEIVE carrying the bind.
        let bind = winreg_bind();
        let mut ioctl = hdr2(0x0b, false, 0, 6, 7);
        ioctl.extend(57u16.to_le_bytes());
        ioctl.extend([0, 0]);
        ioctl.extend(FSCTL_PIPE_TRANSCEIVE.to_le_bytes());
        ioctl.extend(FID);
        ioctl.extend(0x78u32.to_le_bytes()); // InputOffset
        ioctl.extend((bind.len() as u32).to_le_bytes()); // InputCount
        ioctl.extend([0u8; 24]);
        ioctl.extend(&bind);
        chunks.push((Direction::ToServer, 14, nb(&ioctl)));
        // READ request (mid 7) and its response with a bind_ack rejecting the context.
        let mut read = hdr2(8, false, 0, 7, 7);
        read.extend(49u16.to_le_bytes());
        read.extend([0, 0]);
        read.extend(1024u32.to_le_bytes());
        read.extend(0u64.to_le_bytes());
        read.extend(FID);
        read.extend([0u8; 17]);
        chunks.push((Direction::ToServer, 15, nb(&read)));
        let ack = winreg_bind_ack_rejected();
        let mut read_resp = hdr2(8, true, 0, 7, 7);
        read_resp.extend([17, 0, 0x50, 0]); // StructureSize, DataOffset 0x50, Reserved
        read_resp.extend((ack.len() as u32).to_le_bytes());
        read_resp.extend([0u8; 8]);
        read_resp.extend(&ack);
        chunks.push((Direction::ToClient, 16, nb(&read_resp)));
        let refs: Vec<(Direction, u64, &[u8])> = chunks
            .iter()
            .map(|(d, f, b)| (*d, *f, b.as_slice()))
            .collect();
        let (p, _) = run(&refs);
        assert!(p.has_fact("dcerpc.interface", "winreg"));
        assert!(p.has_fact("dcerpc.ptype", "bind_ack"));
        assert!(p.has_fact("dcerpc.rejected", "winreg"), "{:?}", p.facts);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    /// An encrypted message: transform header (ProtocolId, Signature 16, Nonce 16,
    /// OriginalMessageSize, Reserved, Flags 0x0001 (encrypted), SessionId), then `len`
    /// bytes of ciphertext.
    fn sealed_message(len: usize) -> Vec<u8> {
        let mut t = b"\xfdSMB".to_vec();
        t.extend([0x11u8; 32]);
        t.extend((len as u32).to_le_bytes());
        t.extend([0, 0, 1, 0]);
        t.extend(7u64.to_le_bytes());
        t.extend(vec![0xabu8; len]);
        t
    }

    #[test]
    fn smb3_transform_is_encryption() {
        let t = sealed_message(200);
        let (p, next) = run(&[(Direction::ToServer, 9, &nb(&t))]);
        assert_eq!(next, Next::Continue);
        assert_eq!(p.encryption, Encryption::Smb3);
        assert_eq!(p.encryption_frame, Some(9));
        assert!(p.has_fact("smb.version", "3"));
    }

    #[test]
    fn sealed_bytes_are_counted_not_kept_and_cleartext_after_them_is_read() {
        // A 300 KB encrypted message (its protocol id split across two segments), then
        // a cleartext TREE_CONNECT in the same direction.
        let sealed = nb(&sealed_message(300_000));
        let path = utf16le("\\\\srv\\Data");
        let mut tc = hdr2(3, false, 0, 1, 0);
        tc.extend([9, 0, 0, 0, 0x48, 0]);
        tc.extend((path.len() as u16).to_le_bytes());
        tc.extend(&path);
        let clear = nb(&tc);
        let mut p = Posture::default();
        let mut a = SmbAnalyzer::new();
        let mut biggest = 0;
        let mut cuts = vec![&sealed[..6], &sealed[6..70_000]];
        cuts.extend(sealed[70_000..].chunks(1460));
        // Like Wireshark, the message is dissected in the frame that completes it.
        let completed = cuts.len() as u64;
        cuts.push(&clear);
        for (frame, piece) in (1..).zip(cuts) {
            let mut cx = crate::proto::testutil::ctx(&mut p, frame, 445);
            assert_eq!(a.data(Direction::ToServer, piece, &mut cx), Next::Continue);
            biggest = biggest.max(a.dirs[0].kept.len());
        }
        assert_eq!(biggest, TRANSFORM_HEADER_LEN);
        assert_eq!(p.encryption, Encryption::Smb3);
        assert_eq!(p.encryption_frame, Some(completed));
        assert!(p.has_fact("smb.share", "Data"), "{:?}", p.facts);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn next_command_past_the_end_is_an_anomaly() {
        let mut m = hdr2(0x0d, false, 0, 1, 0); // ECHO
        m[20..24].copy_from_slice(&500u32.to_le_bytes()); // NextCommand far past the end
        m.extend([4, 0, 0, 0]);
        let (p, next) = run(&[(Direction::ToServer, 3, &nb(&m))]);
        assert_eq!(next, Next::Continue);
        assert_eq!(kinds(&p), vec!["smb2.next-command-out-of-range"]);
    }

    #[test]
    fn compound_messages_are_all_read() {
        // TREE_CONNECT (padded to 8) then a related CREATE on the same tree.
        let path = utf16le("\\\\srv\\C$");
        let mut first = hdr2(3, false, 0, 1, 0);
        first.extend([9, 0, 0, 0, 0x48, 0]);
        first.extend((path.len() as u16).to_le_bytes());
        first.extend(&path);
        while first.len() % 8 != 0 {
            first.push(0);
        }
        let next = first.len() as u32;
        first[20..24].copy_from_slice(&next.to_le_bytes());
        let mut second = hdr2(0x0d, false, 0, 2, 0);
        second.extend([4, 0, 0, 0]);
        first.extend(second);
        let (p, _) = run(&[(Direction::ToServer, 3, &nb(&first))]);
        assert!(p.has_fact("smb.share", "C$"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn truncated_security_buffer_is_an_anomaly() {
        let mut m = hdr2(1, false, 0, 2, 0);
        // StructureSize 25, Flags, SecurityMode, Capabilities, Channel,
        // SecurityBufferOffset 0x58, SecurityBufferLength 0x200 (past the end).
        m.extend([25, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x58, 0, 0x00, 0x02]);
        m.extend([0u8; 8]);
        m.extend(b"NTLMSSP\0\x01\0\0\0");
        let (p, _) = run(&[(Direction::ToServer, 5, &nb(&m))]);
        assert_eq!(kinds(&p), vec!["smb2.security-buffer-out-of-range"]);
        assert!(!p.facts.contains_key("smb.token"));
    }

    /// SMB1 header: command, status, flags, Flags2 (Unicode + NT status + ext security as
    /// given), TID, MID.
    fn hdr1(cmd: u8, reply: bool, flags2: u16, tid: u16, mid: u16) -> Vec<u8> {
        let mut h = b"\xffSMB".to_vec();
        h.push(cmd);
        h.extend(0u32.to_le_bytes()); // Status
        h.push(if reply { 0x98 } else { 0x18 }); // Flags
        h.extend(flags2.to_le_bytes());
        h.extend([0u8; 12]); // PIDHigh, SecurityFeatures, Reserved
        h.extend(tid.to_le_bytes());
        h.extend(0xfeffu16.to_le_bytes()); // PIDLow
        h.extend(0u16.to_le_bytes()); // UID
        h.extend(mid.to_le_bytes());
        h
    }

    /// SMB1 NEGOTIATE request offering NT LM 0.12, and a response choosing it with the
    /// given SecurityMode.
    fn smb1_negotiate(security_mode: u8) -> (Vec<u8>, Vec<u8>) {
        let mut req = hdr1(0x72, false, 0xc001, 0, 1);
        let dialects = b"\x02PC NETWORK PROGRAM 1.0\0\x02NT LM 0.12\0";
        req.push(0); // WordCount
        req.extend((dialects.len() as u16).to_le_bytes());
        req.extend(dialects);
        let mut resp = hdr1(0x72, true, 0xc001, 0, 1);
        resp.push(17); // WordCount
        resp.extend(1u16.to_le_bytes()); // DialectIndex 1 = NT LM 0.12
        resp.push(security_mode);
        resp.extend([0u8; 31]); // MaxMpx .. ChallengeLength
        resp.extend(0u16.to_le_bytes()); // ByteCount
        (req, resp)
    }

    /// Non-extended SESSION_SETUP_ANDX (13 words), OEM strings.
    fn smb1_session_setup(lm: &[u8], nt: &[u8], account: &str, domain: &str) -> Vec<u8> {
        let mut m = hdr1(0x73, false, 0x4001, 0, 2);
        m.push(13);
        m.extend([0xff, 0, 0, 0]); // AndXCommand none, reserved, AndXOffset
        m.extend([0u8; 10]); // MaxBufferSize, MaxMpxCount, VcNumber, SessionKey
        m.extend((lm.len() as u16).to_le_bytes());
        m.extend((nt.len() as u16).to_le_bytes());
        m.extend([0u8; 8]); // Reserved, Capabilities
        let mut data = lm.to_vec();
        data.extend(nt);
        data.extend(account.as_bytes());
        data.push(0);
        data.extend(domain.as_bytes());
        data.push(0);
        m.extend((data.len() as u16).to_le_bytes());
        m.extend(data);
        m
    }

    #[test]
    fn smb1_plaintext_password_is_a_cleartext_credential() {
        let (req, resp) = smb1_negotiate(0x01); // user level, passwords NOT encrypted
        let setup = smb1_session_setup(b"Secret1\0", b"", "alice", "CORP");
        let (p, _) = run(&[
            (Direction::ToServer, 1, &nb(&req)),
            (Direction::ToClient, 2, &nb(&resp)),
            (Direction::ToServer, 3, &nb(&setup)),
        ]);
        assert!(p.has_fact("smb.dialect", "NT LM 0.12"));
        assert!(p.has_fact("smb.version", "1"));
        assert!(p.has_fact("smb.encrypt-passwords", "no"));
        assert!(p.has_fact("smb.signing", "disabled"));
        assert_eq!(p.auth.len(), 1);
        let ev = &p.auth[0];
        assert_eq!(ev.mechanism, Mechanism::UserPass);
        assert!(ev.cleartext);
        assert_eq!(ev.secret, Some(Secret("Secret1".into())));
        assert_eq!(ev.user.as_deref(), Some("CORP\\alice"));
        assert_eq!(ev.frame, 3);
    }

    #[test]
    fn smb1_24_byte_response_is_ntlmv1() {
        let (req, resp) = smb1_negotiate(0x03); // passwords encrypted
        let setup = smb1_session_setup(&[0x11; 24], &[0x22; 24], "bob", "CORP");
        let (p, _) = run(&[
            (Direction::ToServer, 1, &nb(&req)),
            (Direction::ToClient, 2, &nb(&resp)),
            (Direction::ToServer, 3, &nb(&setup)),
        ]);
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Ntlmv1);
        assert!(!p.auth[0].cleartext);
        assert!(p.auth[0].secret.is_none());
        assert_eq!(p.auth[0].user.as_deref(), Some("CORP\\bob"));
    }

    #[test]
    fn smb1_truncated_security_blob_is_an_anomaly() {
        // Extended security SESSION_SETUP_ANDX (12 words) claiming a 200-byte blob.
        let mut m = hdr1(0x73, false, 0xc801, 0, 2);
        m.push(12);
        m.extend([0xff, 0, 0, 0]);
        m.extend([0u8; 10]);
        m.extend(200u16.to_le_bytes()); // SecurityBlobLength
        m.extend([0u8; 8]);
        m.extend(12u16.to_le_bytes()); // ByteCount
        m.extend(b"NTLMSSP\0\x01\0\0\0");
        let (p, _) = run(&[(Direction::ToServer, 4, &nb(&m))]);
        assert_eq!(kinds(&p), vec!["smb1.security-blob-truncated"]);
    }

    /// A NetBIOS name, first-level encoded with the 0x20 suffix (34 bytes).
    fn encode(name: &str) -> Vec<u8> {
        let mut out = vec![32];
        let padded = format!("{name:<15}");
        for c in padded.bytes().chain([0x20]) {
            out.push(b'A' + (c >> 4));
            out.push(b'A' + (c & 0x0f));
        }
        out.push(0);
        out
    }

    #[test]
    fn only_session_messages_are_cut_to_a_transform_header() {
        // A session request whose called name happens to start with the transform
        // protocol id: kept whole, so the calling name after it is still read.
        let mut called = encode("SERVER");
        called[..4].copy_from_slice(TRANSFORM_MAGIC);
        let mut req = vec![0x81, 0, 0, 68];
        req.extend(called);
        req.extend(encode("CLIENT"));
        let (p, _) = run_on(139, &[(Direction::ToServer, 1, &req)]);
        assert!(p.has_fact("smb.netbios-calling", "CLIENT"), "{:?}", p.facts);
        assert_ne!(p.encryption, Encryption::Smb3);
    }

    #[test]
    fn netbios_session_request_on_139() {
        // 0x81 session request, length 68: called "SERVER", calling "CLIENT" (first-level
        // encoded, 0x20 suffix), then a session message with an SMB1 negotiate.
        let mut req = vec![0x81, 0, 0, 68];
        req.extend(encode("SERVER"));
        req.extend(encode("CLIENT"));
        assert_eq!(probe(Direction::ToServer, &req, 50000, 139), Probe::Certain);
        let (neg, _) = smb1_negotiate(0x03);
        let (p, next) = run_on(
            139,
            &[
                (Direction::ToServer, 1, &req),
                (Direction::ToClient, 2, &[0x82, 0, 0, 0]),
                (Direction::ToServer, 3, &nb(&neg)),
            ],
        );
        assert_eq!(next, Next::Continue);
        assert!(p.has_fact("smb.netbios", "session-request"));
        assert!(p.has_fact("smb.netbios", "positive-response"));
        assert!(p.has_fact("smb.netbios-called", "SERVER"));
        assert!(p.has_fact("smb.netbios-calling", "CLIENT"));
        assert!(p.has_fact("smb.dialect-offered", "NT LM 0.12"));
    }

    #[test]
    fn bad_transport_header_stops() {
        let (p, next) = run(&[(Direction::ToServer, 1, b"\x16\x03\x01\x00\x10hello")]);
        assert_eq!(next, Next::Done);
        assert_eq!(kinds(&p), vec!["smb.bad-transport-header"]);
    }

    #[test]
    fn message_over_cap_is_skipped_and_the_next_one_read() {
        // A 200 KiB READ response (file data), then a NEGOTIATE response.
        let mut big = hdr2(8, true, 0, 9, 1);
        big.extend([17, 0, 0x50, 0]);
        big.extend((200 * 1024u32).to_le_bytes());
        big.extend([0u8; 8]);
        big.resize(big.len() + 200 * 1024, 0x5a);
        let mut neg = hdr2(0, true, 0, 10, 0);
        neg.extend(65u16.to_le_bytes());
        neg.extend(1u16.to_le_bytes()); // signing enabled
        neg.extend(0x0210u16.to_le_bytes());
        neg.extend([0u8; 58]);
        let mut stream = nb(&big);
        stream.extend(nb(&neg));
        let chunks: Vec<(Direction, u64, &[u8])> = stream
            .chunks(1460)
            .map(|c| (Direction::ToClient, 5, c))
            .collect();
        let (p, _) = run(&chunks);
        assert!(p.has_fact("smb.dialect", "2.1"));
        assert!(p.has_fact("smb.signing", "enabled"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn probe_recognises_smb() {
        let (neg, _) = smb1_negotiate(0);
        assert_eq!(
            probe(Direction::ToServer, &nb(&neg), 50000, 445),
            Probe::Certain
        );
        assert_eq!(
            probe(
                Direction::ToServer,
                &nb(&hdr2(0, false, 0, 0, 0)),
                50000,
                445
            ),
            Probe::Certain
        );
        assert_eq!(
            probe(Direction::ToServer, b"\x00\x00\x00\x10GET ", 50000, 445),
            Probe::No
        );
        assert_eq!(
            probe(Direction::ToServer, b"\x00\x00", 50000, 445),
            Probe::Unsure
        );
        assert_eq!(probe(Direction::ToServer, b"EHLO", 50000, 445), Probe::No);
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let mut stream = Vec::new();
        for (_, _, b) in ipc_winreg_open() {
            stream.extend(b);
        }
        stream.extend(nb(&write_msg(6, &winreg_bind())));
        let (req, resp) = smb1_negotiate(0x01);
        stream.extend(nb(&req));
        stream.extend(nb(&resp));
        stream.extend(nb(&smb1_session_setup(b"pw\0", b"", "a", "b")));
        for i in 0..stream.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut s = stream.clone();
                s[i] ^= flip;
                let _ = run(&[(Direction::ToServer, 1, &s), (Direction::ToClient, 2, &s)]);
            }
        }
    }

    #[test]
    fn wildcard_dialect_waits_for_the_real_one() {
        // NEGOTIATE response with DialectRevision 0x02FF (answer to an SMB1 negotiate).
        let mut neg = hdr2(0, true, 0, 0, 0);
        neg.extend(65u16.to_le_bytes());
        neg.extend(1u16.to_le_bytes());
        neg.extend(0x02ffu16.to_le_bytes());
        neg.extend([0u8; 58]);
        let (p, _) = run(&[(Direction::ToClient, 2, &nb(&neg))]);
        assert!(!p.facts.contains_key("smb.version"));
        assert!(!p.facts.contains_key("smb.dialect"));
    }

    #[test]
    fn compound_member_without_protocol_id_is_an_anomaly() {
        let mut m = hdr2(0x0d, false, 0, 1, 0);
        m[20..24].copy_from_slice(&72u32.to_le_bytes());
        m.extend([4, 0, 0, 0, 0, 0, 0, 0]);
        m.extend([0x49u8; 70]); // not an SMB2 header
        let (p, _) = run(&[(Direction::ToServer, 3, &nb(&m))]);
        assert_eq!(kinds(&p), vec!["smb2.compound-not-smb2"]);
    }

    // ---- SMB1 named pipes ----

    /// Flags2 of the synthetic SMB1 messages: long names, NT status, and Unicode or not.
    fn flags2(unicode: bool) -> u16 {
        if unicode {
            0xc001
        } else {
            0x4001
        }
    }

    /// Appends one SMB1 command block (WordCount, words, ByteCount, data) to `m` and
    /// returns where its words start.
    fn push_block(m: &mut Vec<u8>, words: &[u8], data: &[u8]) -> usize {
        m.push((words.len() / 2) as u8);
        let at = m.len();
        m.extend_from_slice(words);
        m.extend((data.len() as u16).to_le_bytes());
        m.extend_from_slice(data);
        at
    }

    /// Where the data of a block with `words` parameter bytes appended to `m` will start.
    fn next_data_at(m: &[u8], words: usize) -> usize {
        m.len() + 1 + words + 2
    }

    /// Points the AndX words at `words_at` to a `cmd` block about to be appended to `m`.
    fn link(m: &mut [u8], words_at: usize, cmd: u8) {
        let next = m.len() as u16;
        m[words_at] = cmd;
        m[words_at + 2..words_at + 4].copy_from_slice(&next.to_le_bytes());
    }

    /// An SMB string starting at header offset `at`: Unicode ones get their pad byte.
    fn smb1_str(text: &str, unicode: bool, at: usize) -> Vec<u8> {
        if unicode {
            let mut v = if at % 2 == 1 { vec![0] } else { Vec::new() };
            v.extend(utf16le(text));
            v.extend([0, 0]);
            v
        } else {
            let mut v = text.as_bytes().to_vec();
            v.push(0);
            v
        }
    }

    /// TREE_CONNECT_ANDX request block: 4 words, a 1-byte password, the path, "?????".
    fn push_tree_connect(m: &mut Vec<u8>, path: &str, unicode: bool) -> usize {
        let words = [0xff, 0, 0, 0, 0, 0, 1, 0]; // AndX, Flags, PasswordLength 1
        let at = next_data_at(m, words.len());
        let mut data = vec![0];
        data.extend(smb1_str(path, unicode, at + 1));
        data.extend(b"?????\0");
        push_block(m, &words, &data)
    }

    /// NT_CREATE_ANDX request block (24 words) opening `name`.
    fn push_create(m: &mut Vec<u8>, name: &str, unicode: bool) -> usize {
        let mut words = vec![0xff, 0, 0, 0, 0]; // AndX, Reserved
        let name_len = if unicode { 2 * name.len() } else { name.len() };
        words.extend((name_len as u16).to_le_bytes()); // NameLength
        words.extend([0u8; 41]); // Flags .. SecurityFlags
        let at = next_data_at(m, words.len());
        let data = smb1_str(name, unicode, at);
        push_block(m, &words, &data)
    }

    /// NT_CREATE_ANDX response block (34 words): FID and ResourceType.
    fn push_create_resp(m: &mut Vec<u8>, fid: u16, resource_type: u16) -> usize {
        let mut words = vec![0xff, 0, 0, 0, 0]; // AndX, OplockLevel
        words.extend(fid.to_le_bytes());
        words.extend([0u8; 56]); // CreateDisposition .. EndOfFile
        words.extend(resource_type.to_le_bytes());
        words.extend([0xff, 0x05, 0]); // NMPipeStatus, Directory
        push_block(m, &words, &[])
    }

    /// TRANS request with a named-pipe subcommand on `fid`, carrying `data` (with
    /// `total` as TotalDataCount) after the name "\PIPE\".
    fn trans_req(mid: u16, sub: u16, fid: u16, data: &[u8], total: usize) -> Vec<u8> {
        let mut m = hdr1(0x25, false, flags2(true), 5, mid);
        let name = smb1_str("\\PIPE\\", true, next_data_at(&m, 32));
        let data_off = next_data_at(&m, 32) + name.len();
        let mut words = Vec::new();
        words.extend(0u16.to_le_bytes()); // TotalParameterCount
        words.extend((total as u16).to_le_bytes()); // TotalDataCount
        words.extend(0u16.to_le_bytes()); // MaxParameterCount
        words.extend(1024u16.to_le_bytes()); // MaxDataCount
        words.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // MaxSetupCount .. Reserved2
        words.extend(0u16.to_le_bytes()); // ParameterCount
        words.extend((data_off as u16).to_le_bytes()); // ParameterOffset
        words.extend((data.len() as u16).to_le_bytes()); // DataCount
        words.extend((data_off as u16).to_le_bytes()); // DataOffset
        words.extend([2, 0]); // SetupCount, Reserved3
        words.extend(sub.to_le_bytes());
        words.extend(fid.to_le_bytes());
        let mut bytes = name;
        bytes.extend_from_slice(data);
        push_block(&mut m, &words, &bytes);
        m
    }

    /// TRANS response carrying `data` at displacement 0.
    fn trans_resp(mid: u16, data: &[u8]) -> Vec<u8> {
        let mut m = hdr1(0x25, true, flags2(true), 5, mid);
        let data_off = next_data_at(&m, 20) + 1; // one pad byte
        let mut words = Vec::new();
        words.extend(0u16.to_le_bytes()); // TotalParameterCount
        words.extend((data.len() as u16).to_le_bytes()); // TotalDataCount
        words.extend([0u8; 4]); // Reserved1, ParameterCount
        words.extend((data_off as u16).to_le_bytes()); // ParameterOffset
        words.extend(0u16.to_le_bytes()); // ParameterDisplacement
        words.extend((data.len() as u16).to_le_bytes()); // DataCount
        words.extend((data_off as u16).to_le_bytes()); // DataOffset
        words.extend([0, 0, 0, 0]); // DataDisplacement, SetupCount, Reserved2
        let mut bytes = vec![0];
        bytes.extend_from_slice(data);
        push_block(&mut m, &words, &bytes);
        m
    }

    /// Tree 5 = IPC$ and FID 0x4001 = winreg, opened by one AndX chain (OEM strings):
    /// TREE_CONNECT_ANDX + NT_CREATE_ANDX, and the response chain.
    fn smb1_open_winreg_chained() -> (Vec<u8>, Vec<u8>) {
        let mut req = hdr1(0x75, false, flags2(false), 0, 9);
        let tc = push_tree_connect(&mut req, "\\\\SRV\\IPC$", false);
        link(&mut req, tc, 0xa2);
        push_create(&mut req, "\\winreg", false);
        let mut resp = hdr1(0x75, true, flags2(false), 5, 9);
        let tc = push_block(&mut resp, &[0xff, 0, 0, 0, 1, 0], b"IPC\0");
        link(&mut resp, tc, 0xa2);
        push_create_resp(&mut resp, 0x4001, FILE_TYPE_MESSAGE_MODE_PIPE);
        (req, resp)
    }

    fn owned(chunks: &[(Direction, u64, Vec<u8>)]) -> (Posture, Next) {
        let refs: Vec<(Direction, u64, &[u8])> = chunks
            .iter()
            .map(|(d, f, b)| (*d, *f, b.as_slice()))
            .collect();
        run(&refs)
    }

    #[test]
    fn smb1_trans_pipe_rpc_from_smb_raw_ntlm_in_smb() {
        // smb_raw_ntlm_in_smb.pcap tcp/2, where the bug was found. Frame 25:
        // TREE_CONNECT_ANDX \\192.168.56.101\IPC$ (Unicode, MID 3).
        let tc = from_hex(
            "0000005eff534d4275000000000801c8000000000000000000000000ffff01000008030004ff00\
             0000080001003300005c005c003100390032002e003100360038002e00350036002e0031003000\
             31005c00490050004300240000003f3f3f3f3f00",
        );
        // Frame 26: its response, TID 0x0800, Service "IPC".
        let tc_resp = from_hex(
            "00000038ff534d4275000000008801c8000000000000000000000000000801000008030007ff00\
             38000100ff010000ff010000070049504300000000",
        );
        // Frame 28: NT_CREATE_ANDX \srvsvc (MID 4).
        let create = from_hex(
            "00000064ff534d42a2000000000801c8000000000000000000000000000801000008040018ff00\
             00000010001000000000000000000000c000000000000000008000000003000000010000000000\
             000002000000001100005c007300720076007300760063000000",
        );
        // Frame 29: the 42-word extended response, FID 0x4000, ResourceType 2 (message-mode
        // pipe).
        let create_resp = from_hex(
            "00000087ff534d42a2000000008801c800000000000000000000000000080100000804002aff00\
             870000004001000000000000000000000000000000000000000000000000000000000000000000\
             000080000000001000000000000000000000000000000200ff0500000000000000000000000000\
             0000000000000000000000009b0112009b0112000000",
        );
        // Frame 31: TRANS, Setup TransactNmPipe (0x0026) on FID 0x4000, name \PIPE\,
        // DataOffset 84, DataCount 72: the srvsvc bind.
        let trans = from_hex(
            "0000009cff534d4225000000000801c80000000000000000000000000008010000080500100000\
             4800000000100000000000000000000000005400480054000200260000405900005c0050004900\
             500045005c000000000005000b0310000000480000000300000000100010000000000100000000\
             000100c84f324b7016d30112785a47bf6ee18803000000045d888aeb1cc9119fe808002b104860\
             02000000",
        );
        // Frame 32: TRANS response, DataOffset 56, DataCount 68: the bind_ack.
        let trans_resp = from_hex(
            "0000007cff534d4225000000008801c800000000000000000000000000080100000805000a0000\
             44000000000038000000440038000000000045004805000c031000000044000000030000000010\
             00106c1300000d005c504950455c73727673766300000100000000000000045d888aeb1cc9119f\
             e808002b10486002000000",
        );
        let (p, next) = run(&[
            (Direction::ToServer, 25, &tc),
            (Direction::ToClient, 26, &tc_resp),
            (Direction::ToServer, 28, &create),
            (Direction::ToClient, 29, &create_resp),
            (Direction::ToServer, 31, &trans),
            (Direction::ToClient, 32, &trans_resp),
        ]);
        assert_eq!(next, Next::Continue);
        assert!(p.has_fact("smb.share", "IPC$"));
        assert!(p.has_fact("smb.pipe", "srvsvc"));
        assert!(p.has_fact("dcerpc.ptype", "bind"));
        assert!(p.has_fact("dcerpc.ptype", "bind_ack"));
        assert!(p.has_fact("dcerpc.interface", "srvsvc"), "{:?}", p.facts);
        assert!(p.has_fact("dcerpc.accepted", "srvsvc"), "{:?}", p.facts);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn smb1_andx_chain_opens_a_pipe_for_write_andx_and_read_andx() {
        let (open, open_resp) = smb1_open_winreg_chained();
        // WRITE_ANDX (MID 10) on FID 0x4001, raw-mode message start: two length bytes,
        // then the bind.
        let bind = winreg_bind();
        let mut write = hdr1(0x2f, false, flags2(false), 5, 10);
        let data_off = next_data_at(&write, 28) + 1; // one pad byte
        let mut words = vec![0xff, 0, 0, 0];
        words.extend(0x4001u16.to_le_bytes()); // FID
        words.extend([0u8; 8]); // Offset, Timeout
        words.extend((WRITE_MODE_RAW | WRITE_MODE_MSG_START).to_le_bytes());
        words.extend((bind.len() as u16).to_le_bytes()); // Remaining
        words.extend(0u16.to_le_bytes()); // DataLengthHigh
        words.extend((bind.len() as u16 + 2).to_le_bytes()); // DataLength
        words.extend((data_off as u16).to_le_bytes()); // DataOffset
        words.extend([0u8; 4]); // OffsetHigh
        let mut data = vec![0];
        data.extend((bind.len() as u16).to_le_bytes());
        data.extend(&bind);
        push_block(&mut write, &words, &data);
        // READ_ANDX (MID 11) and its response carrying the bind_ack.
        let mut read = hdr1(0x2e, false, flags2(false), 5, 11);
        let mut words = vec![0xff, 0, 0, 0];
        words.extend(0x4001u16.to_le_bytes());
        words.extend([0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        push_block(&mut read, &words, &[]);
        let ack = winreg_bind_ack_rejected();
        let mut read_resp = hdr1(0x2e, true, flags2(false), 5, 11);
        let data_off = next_data_at(&read_resp, 24) + 1;
        let mut words = vec![0xff, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0];
        words.extend((ack.len() as u16).to_le_bytes()); // DataLength
        words.extend((data_off as u16).to_le_bytes()); // DataOffset
        words.extend([0u8; 10]); // DataLengthHigh, Reserved
        let mut data = vec![0];
        data.extend(&ack);
        push_block(&mut read_resp, &words, &data);
        let (p, _) = owned(&[
            (Direction::ToServer, 1, nb(&open)),
            (Direction::ToClient, 2, nb(&open_resp)),
            (Direction::ToServer, 3, nb(&write)),
            (Direction::ToServer, 4, nb(&read)),
            (Direction::ToClient, 5, nb(&read_resp)),
        ]);
        assert!(p.has_fact("smb.share", "IPC$"));
        assert!(p.has_fact("smb.pipe", "winreg"));
        assert!(p.has_fact("dcerpc.interface", "winreg"), "{:?}", p.facts);
        assert!(p.has_fact("dcerpc.ptype", "bind_ack"));
        assert!(p.has_fact("dcerpc.rejected", "winreg"), "{:?}", p.facts);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn smb1_core_write_and_read_carry_pipe_data() {
        let (open, open_resp) = smb1_open_winreg_chained();
        // WRITE (0x0B): FID, Count, Offset, Estimate; data block 0x01, length, bytes.
        let bind = winreg_bind();
        let mut write = hdr1(0x0b, false, flags2(false), 5, 12);
        let mut words = 0x4001u16.to_le_bytes().to_vec();
        words.extend((bind.len() as u16).to_le_bytes());
        words.extend([0u8; 6]);
        let mut data = vec![SMB1_DATA_BLOCK];
        data.extend((bind.len() as u16).to_le_bytes());
        data.extend(&bind);
        push_block(&mut write, &words, &data);
        // READ (0x0A) and its response: Count, 8 reserved bytes; data block.
        let mut read = hdr1(0x0a, false, flags2(false), 5, 13);
        push_block(&mut read, &[0x01, 0x40, 0, 4, 0, 0, 0, 0, 0, 0], &[]);
        let ack = winreg_bind_ack_rejected();
        let mut read_resp = hdr1(0x0a, true, flags2(false), 5, 13);
        let mut words = (ack.len() as u16).to_le_bytes().to_vec();
        words.extend([0u8; 8]);
        let mut data = vec![SMB1_DATA_BLOCK];
        data.extend((ack.len() as u16).to_le_bytes());
        data.extend(&ack);
        push_block(&mut read_resp, &words, &data);
        // CLOSE: later data on the FID is not followed.
        let mut close = hdr1(0x04, false, flags2(false), 5, 14);
        push_block(&mut close, &[0x01, 0x40, 0, 0, 0, 0], &[]);
        let (p, _) = owned(&[
            (Direction::ToServer, 1, nb(&open)),
            (Direction::ToClient, 2, nb(&open_resp)),
            (Direction::ToServer, 3, nb(&write)),
            (Direction::ToServer, 4, nb(&read)),
            (Direction::ToClient, 5, nb(&read_resp)),
            (Direction::ToServer, 6, nb(&close)),
            (Direction::ToServer, 7, nb(&write)),
        ]);
        assert!(p.has_fact("dcerpc.interface", "winreg"), "{:?}", p.facts);
        assert!(p.has_fact("dcerpc.rejected", "winreg"), "{:?}", p.facts);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn smb1_lying_data_offset_is_an_anomaly() {
        let (open, open_resp) = smb1_open_winreg_chained();
        // TransactNmPipe whose DataOffset points 200 bytes past the message end.
        let mut past = trans_req(20, TRANS_TRANSACT_NMPIPE, 0x4001, &winreg_bind(), 72);
        let off_at = SMB1_HEADER_LEN + 1 + 24;
        let len = past.len() as u16;
        past[off_at..off_at + 2].copy_from_slice(&(len + 200).to_le_bytes());
        // The same with a DataOffset inside the SMB header.
        let mut inside = trans_req(21, TRANS_TRANSACT_NMPIPE, 0x4001, &winreg_bind(), 72);
        inside[off_at..off_at + 2].copy_from_slice(&4u16.to_le_bytes());
        let answer = trans_resp(21, &winreg_bind_ack_rejected());
        for bad in [past, inside] {
            let (p, next) = owned(&[
                (Direction::ToServer, 1, nb(&open)),
                (Direction::ToClient, 2, nb(&open_resp)),
                (Direction::ToServer, 3, nb(&bad)),
                (Direction::ToClient, 4, nb(&answer)),
            ]);
            assert_eq!(next, Next::Continue);
            assert_eq!(kinds(&p), vec!["smb1.offset-out-of-range"]);
            assert_eq!(p.anomalies[0].frame, 3);
            assert!(!p.facts.contains_key("dcerpc.ptype"), "{:?}", p.facts);
        }
    }

    #[test]
    fn smb1_pipes_opened_before_the_capture_are_followed() {
        // dce-rpc_mapi.pcap tcp/18 and smb_dssetup_*.pcap tcp/0: no TREE_CONNECT in the
        // capture. An NT_CREATE_ANDX whose response says "message-mode pipe" is a pipe;
        // one whose response says "disk file" is a file.
        let mut create = hdr1(0xa2, false, flags2(true), 0x0800, 30);
        push_create(&mut create, "\\lsarpc", true);
        let mut create_resp = hdr1(0xa2, true, flags2(true), 0x0800, 30);
        push_create_resp(&mut create_resp, 0x400b, FILE_TYPE_MESSAGE_MODE_PIPE);
        let mut file = hdr1(0xa2, false, flags2(true), 0x0800, 31);
        push_create(&mut file, "\\notes.txt", true);
        let mut file_resp = hdr1(0xa2, true, flags2(true), 0x0800, 31);
        push_create_resp(&mut file_resp, 0x400c, 0);
        let bind = winreg_bind();
        let trans = trans_req(32, TRANS_TRANSACT_NMPIPE, 0x400b, &bind, 72);
        let (p, _) = owned(&[
            (Direction::ToServer, 1, nb(&create)),
            (Direction::ToClient, 2, nb(&create_resp)),
            (Direction::ToServer, 3, nb(&file)),
            (Direction::ToClient, 4, nb(&file_resp)),
            (Direction::ToServer, 5, nb(&trans)),
        ]);
        assert!(p.has_fact("smb.pipe", "lsarpc"), "{:?}", p.facts);
        assert!(p.has_fact("smb.file", "\\notes.txt"), "{:?}", p.facts);
        assert!(!p.has_fact("smb.file", "\\lsarpc"));
        assert!(p.has_fact("dcerpc.interface", "winreg"), "{:?}", p.facts);
        // A TransactNmPipe on a FID never seen opened: the subcommand says it is a pipe.
        let trans = trans_req(40, TRANS_TRANSACT_NMPIPE, 0xc00f, &bind, 72);
        let answer = trans_resp(40, &winreg_bind_ack_rejected());
        let (p, _) = owned(&[
            (Direction::ToServer, 1, nb(&trans)),
            (Direction::ToClient, 2, nb(&answer)),
        ]);
        assert!(p.has_fact("dcerpc.interface", "winreg"), "{:?}", p.facts);
        assert!(p.has_fact("dcerpc.rejected", "winreg"), "{:?}", p.facts);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn smb1_trans_secondary_continues_the_request() {
        let (open, open_resp) = smb1_open_winreg_chained();
        let bind = winreg_bind();
        let (first, rest) = bind.split_at(30);
        let primary = trans_req(50, TRANS_TRANSACT_NMPIPE, 0x4001, first, bind.len());
        // TRANS_SECONDARY (8 words): totals, parameter count / offset / displacement,
        // DataCount, DataOffset, DataDisplacement.
        let secondary = |disp: u16| {
            let mut m = hdr1(0x26, false, flags2(false), 5, 50);
            let data_off = next_data_at(&m, 16);
            let mut words = vec![0, 0];
            words.extend((bind.len() as u16).to_le_bytes());
            words.extend([0u8; 6]);
            words.extend((rest.len() as u16).to_le_bytes());
            words.extend((data_off as u16).to_le_bytes());
            words.extend(disp.to_le_bytes());
            push_block(&mut m, &words, rest);
            m
        };
        let (p, _) = owned(&[
            (Direction::ToServer, 1, nb(&open)),
            (Direction::ToClient, 2, nb(&open_resp)),
            (Direction::ToServer, 3, nb(&primary)),
            (Direction::ToServer, 4, nb(&secondary(30))),
        ]);
        assert!(p.has_fact("dcerpc.interface", "winreg"), "{:?}", p.facts);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        // A secondary that skips bytes leaves the pipe.
        let (p, _) = owned(&[
            (Direction::ToServer, 1, nb(&open)),
            (Direction::ToClient, 2, nb(&open_resp)),
            (Direction::ToServer, 3, nb(&primary)),
            (Direction::ToServer, 4, nb(&secondary(40))),
        ]);
        assert_eq!(kinds(&p), vec!["smb1.trans-displacement"]);
        assert!(!p.facts.contains_key("dcerpc.interface"));
    }

    #[test]
    fn smb1_pipe_messages_with_flipped_bytes_never_panic() {
        let (open, open_resp) = smb1_open_winreg_chained();
        let bind = winreg_bind();
        let mut stream = nb(&open);
        stream.extend(nb(&open_resp));
        stream.extend(nb(&trans_req(20, 0x26, 0x4001, &bind, 72)));
        stream.extend(nb(&trans_resp(20, &winreg_bind_ack_rejected())));
        for i in 0..stream.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut s = stream.clone();
                s[i] ^= flip;
                let _ = run(&[(Direction::ToServer, 1, &s), (Direction::ToClient, 2, &s)]);
            }
        }
    }
}
