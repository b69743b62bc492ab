//! Connection-oriented DCE/RPC (C706 chapter 12, MS-RPCE 2.2.2): PDU reassembly by
//! `frag_length`, presentation contexts of bind / alter_context and their results,
//! request opnums, the authentication verifier (`sec_trailer`), and the endpoint mapper's
//! `ept_map` answers.
//!
//! Guarantees: every field is read through bounds-checked accessors, so no input panics;
//! at most one PDU (`frag_length` is a u16) is buffered per direction; contexts, pending
//! calls and opnum facts are capped. Both data representations (drep little- and
//! big-endian integers) are handled. Odd input becomes a named anomaly: a bad header
//! stops the analyzer (the stream cannot be re-synchronised), anything inside a PDU only
//! skips that part. Authentication level 6 (packet privacy) confirmed by the server's
//! answer or by a level-6 request marks the flow [`Encryption::RpcPrivacy`]; readable stub
//! data at any other level marks it cleartext. Auth tokens go to
//! [`crate::proto::auth::inspect_token`].
//!
//! Used directly on TCP (135 and dynamic ports), and fed by the SMB analyzer (named
//! pipes) and the HTTP analyzer (Outlook Anywhere bodies).

use crate::model::{Direction, Encryption};
use crate::proto::api::{Analyzer, Ctx, Next, Probe, Registration, StreamBuf};
use crate::proto::auth::{finish_auth, inspect_token};
use crate::proto::uuids::{self, Uuid, UUID_LEN};

/// C706 12.6.1: the common header of every connection-oriented PDU.
pub const HEADER_LEN: usize = 16;
/// Reassembly cap per direction: `frag_length` is a u16 (C706 12.6.3.1), so one PDU never
/// needs more; a longer value cannot be expressed.
pub const MAX_FRAG: usize = u16::MAX as usize;
/// C706 13.2.6.1: auth_type, auth_level, auth_pad_length, reserved, auth_context_id.
const SEC_TRAILER_LEN: usize = 8;
/// Presentation contexts remembered per connection (clients offer a handful; Windows
/// limits a bind to a few dozen).
const MAX_CONTEXTS: usize = 64;
/// Distinct `dcerpc.opnum` facts per connection: the first calls name the conversation;
/// a busy MAPI session would otherwise fill the fact set with noise.
const MAX_OPNUM_FACTS: usize = 16;
/// Towers read from one ept_map answer (C706 declares max_towers in 0..=500; Windows
/// answers with a few).
const MAX_EPM_TOWERS: usize = 32;
/// Floors read from one tower (ncacn_ip_tcp uses 5).
const MAX_TOWER_FLOORS: usize = 16;

/// pfc_flags bits (C706 12.6.3.1).
const PFC_FIRST_FRAG: u8 = 0x01;
const PFC_LAST_FRAG: u8 = 0x02;
const PFC_OBJECT_UUID: u8 = 0x80;
/// drep byte 0: integer representation, 0x10 = little-endian (C706 14.1).
const DREP_LITTLE_ENDIAN: u8 = 0x10;

/// Endpoint mapper `ept_map` operation number (C706 appendix O).
const EPT_MAP_OPNUM: u16 = 3;
/// Tower floor protocol identifiers (C706 appendix I, MS-RPCE 2.2.1.1.x).
const FLOOR_UUID: u8 = 0x0d;
const FLOOR_TCP: u8 = 0x07;
const FLOOR_HTTP: u8 = 0x1f;
const FLOOR_IP: u8 = 0x09;

/// PDU type (C706 12.6.4, MS-RPCH 2.2.4 for rts); unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PType(pub u8);

impl PType {
    pub const REQUEST: PType = PType(0);
    pub const PING: PType = PType(1);
    pub const RESPONSE: PType = PType(2);
    pub const FAULT: PType = PType(3);
    pub const BIND: PType = PType(11);
    pub const BIND_ACK: PType = PType(12);
    pub const BIND_NAK: PType = PType(13);
    pub const ALTER_CONTEXT: PType = PType(14);
    pub const ALTER_CONTEXT_RESP: PType = PType(15);
    pub const AUTH3: PType = PType(16);
    pub const SHUTDOWN: PType = PType(17);
    pub const CO_CANCEL: PType = PType(18);
    pub const ORPHANED: PType = PType(19);
    pub const RTS: PType = PType(20);

    /// Fact name; None for a type connection-oriented RPC does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            PType::REQUEST => "request",
            PType::RESPONSE => "response",
            PType::FAULT => "fault",
            PType::BIND => "bind",
            PType::BIND_ACK => "bind_ack",
            PType::BIND_NAK => "bind_nak",
            PType::ALTER_CONTEXT => "alter_context",
            PType::ALTER_CONTEXT_RESP => "alter_context_resp",
            PType::AUTH3 => "auth3",
            PType::SHUTDOWN => "shutdown",
            PType::CO_CANCEL => "co_cancel",
            PType::ORPHANED => "orphaned",
            PType::RTS => "rts",
            _ => return None,
        })
    }
}

/// sec_trailer auth_type (MS-RPCE 2.2.1.1.7); unknown numbers are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthType(pub u8);

impl AuthType {
    pub const NONE: AuthType = AuthType(0);
    pub const SPNEGO: AuthType = AuthType(9);
    pub const NTLMSSP: AuthType = AuthType(10);
    pub const SCHANNEL: AuthType = AuthType(14);
    pub const KERBEROS: AuthType = AuthType(16);
    pub const NETLOGON: AuthType = AuthType(68);
    pub const DEFAULT: AuthType = AuthType(255);

    pub fn name(self) -> String {
        match self {
            AuthType::NONE => "none".into(),
            AuthType::SPNEGO => "spnego".into(),
            AuthType::NTLMSSP => "ntlmssp".into(),
            AuthType::SCHANNEL => "schannel".into(),
            AuthType::KERBEROS => "kerberos".into(),
            AuthType::NETLOGON => "netlogon".into(),
            AuthType::DEFAULT => "default".into(),
            AuthType(n) => format!("auth-type-{n}"),
        }
    }

    /// Types whose auth_value is a GSS / NTLMSSP token the auth module can read.
    fn carries_token(self) -> bool {
        matches!(
            self,
            AuthType::SPNEGO | AuthType::NTLMSSP | AuthType::KERBEROS
        )
    }
}

/// sec_trailer auth_level (MS-RPCE 2.2.1.1.8); unknown numbers are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthLevel(pub u8);

impl AuthLevel {
    pub const DEFAULT: AuthLevel = AuthLevel(0);
    pub const NONE: AuthLevel = AuthLevel(1);
    pub const CONNECT: AuthLevel = AuthLevel(2);
    pub const CALL: AuthLevel = AuthLevel(3);
    pub const PKT: AuthLevel = AuthLevel(4);
    pub const PKT_INTEGRITY: AuthLevel = AuthLevel(5);
    pub const PKT_PRIVACY: AuthLevel = AuthLevel(6);

    pub fn name(self) -> String {
        match self {
            AuthLevel::DEFAULT => "default".into(),
            AuthLevel::NONE => "none".into(),
            AuthLevel::CONNECT => "connect".into(),
            AuthLevel::CALL => "call".into(),
            AuthLevel::PKT => "packet".into(),
            AuthLevel::PKT_INTEGRITY => "integrity".into(),
            AuthLevel::PKT_PRIVACY => "privacy".into(),
            AuthLevel(n) => format!("auth-level-{n}"),
        }
    }
}

/// The common header, decoded.
#[derive(Clone, Copy, Debug)]
struct Header {
    ptype: PType,
    flags: u8,
    little_endian: bool,
    frag_len: usize,
    auth_len: usize,
    call_id: u32,
}

/// Why a header cannot start a PDU.
enum HeaderError {
    Version(u8, u8),
    FragLength(usize),
}

/// Decode the 16-byte common header (`b` holds at least [`HEADER_LEN`] bytes).
fn parse_header(b: &[u8]) -> Option<Result<Header, HeaderError>> {
    let h: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
    let (vers, minor) = (h[0], h[1]);
    if vers != 5 || minor > 1 {
        return Some(Err(HeaderError::Version(vers, minor)));
    }
    let little_endian = h[4] & DREP_LITTLE_ENDIAN != 0;
    let u16_at = |i: usize| -> usize {
        let pair = [h[i], h[i + 1]];
        usize::from(if little_endian {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        })
    };
    let frag_len = u16_at(8);
    if frag_len < HEADER_LEN {
        return Some(Err(HeaderError::FragLength(frag_len)));
    }
    let call = [h[12], h[13], h[14], h[15]];
    Some(Ok(Header {
        ptype: PType(h[2]),
        flags: h[3],
        little_endian,
        frag_len,
        auth_len: u16_at(10),
        call_id: if little_endian {
            u32::from_le_bytes(call)
        } else {
            u32::from_be_bytes(call)
        },
    }))
}

/// Bounds-checked cursor over NDR data in one data representation.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    le: bool,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], le: bool) -> Self {
        Reader { b, pos: 0, le }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        let a: [u8; 2] = self.take(2)?.try_into().ok()?;
        Some(if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    }
    fn u32(&mut self) -> Option<u32> {
        let a: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }
    fn uuid(&mut self) -> Option<Uuid> {
        Uuid::from_ndr(self.take(UUID_LEN)?, self.le)
    }
    /// Skip to the next multiple of 4 from the start of the buffer (NDR alignment).
    fn align4(&mut self) -> Option<()> {
        let pad = (4 - self.pos % 4) % 4;
        self.take(pad).map(|_| ())
    }
    fn rest(&self) -> &'a [u8] {
        self.b.get(self.pos..).unwrap_or_default()
    }
}

/// The authentication verifier of one PDU.
#[derive(Clone, Copy, Debug)]
struct SecTrailer<'a> {
    auth_type: AuthType,
    level: AuthLevel,
    value: &'a [u8],
}

/// A request whose response has not been seen yet.
#[derive(Clone, Copy, Debug)]
struct PendingCall {
    call_id: u32,
    interface: Option<Uuid>,
    opnum: u16,
}

/// Connection-oriented DCE/RPC analyzer: one per TCP connection, SMB pipe or RPC over
/// HTTP channel.
pub struct DceRpcAnalyzer {
    bufs: [StreamBuf; 2],
    /// Context id -> abstract syntax, from every bind / alter_context seen.
    contexts: Vec<(u16, Uuid)>,
    /// Abstract syntaxes of the latest bind / alter_context, in order, for its results.
    offered: Vec<Uuid>,
    pending: Vec<PendingCall>,
    /// `dcerpc.opnum` values already recorded (at most [`MAX_OPNUM_FACTS`]).
    opnums: Vec<String>,
    /// A bind / alter_context asked for packet privacy.
    privacy_requested: bool,
    caps_reported: bool,
    done: bool,
}

impl Default for DceRpcAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl DceRpcAnalyzer {
    pub fn new() -> Self {
        DceRpcAnalyzer {
            bufs: [StreamBuf::new(MAX_FRAG), StreamBuf::new(MAX_FRAG)],
            contexts: Vec::new(),
            offered: Vec::new(),
            pending: Vec::new(),
            opnums: Vec::new(),
            privacy_requested: false,
            caps_reported: false,
            done: false,
        }
    }

    /// Validate a header at the start of `b`; Some(frag_len) to go on, None to stop.
    fn check_header(&mut self, b: &[u8], cx: &mut Ctx) -> Option<usize> {
        match parse_header(b)? {
            Ok(h) => Some(h.frag_len),
            Err(HeaderError::Version(v, m)) => {
                cx.posture.anomaly(
                    cx.frame,
                    "dcerpc.bad-version",
                    format!("rpc_vers {v}.{m} where 5.0 or 5.1 was expected; parser stopped"),
                );
                self.done = true;
                None
            }
            Err(HeaderError::FragLength(n)) => {
                cx.posture.anomaly(
                    cx.frame,
                    "dcerpc.bad-frag-length",
                    format!("frag_length {n} is shorter than the {HEADER_LEN}-byte header; parser stopped"),
                );
                self.done = true;
                None
            }
        }
    }

    /// Feed one direction's bytes, completing a buffered PDU first.
    fn feed(&mut self, dir: Direction, mut data: &[u8], cx: &mut Ctx) {
        let idx = dir.index();
        while !data.is_empty() && !self.done {
            let buffered = self.bufs.get(idx).map_or(0, |b| b.buf.len());
            if buffered > 0 {
                let mut pending = std::mem::take(&mut self.bufs[idx % 2].buf);
                let want = match pending.get(..HEADER_LEN) {
                    None => HEADER_LEN,
                    Some(header) => match self.check_header(header, cx) {
                        Some(n) => n,
                        None => return,
                    },
                };
                let take = want.saturating_sub(pending.len()).min(data.len());
                let (head, tail) = data.split_at(take);
                pending.extend_from_slice(head);
                data = tail;
                if pending.len() >= HEADER_LEN {
                    let Some(frag_len) = self.check_header(&pending, cx) else {
                        return;
                    };
                    if pending.len() >= frag_len {
                        self.pdu(&pending, cx);
                        continue;
                    }
                }
                self.bufs[idx % 2].buf = pending;
                continue;
            }
            if data.len() < HEADER_LEN {
                self.stash(idx, data, cx);
                return;
            }
            let Some(frag_len) = self.check_header(data, cx) else {
                return;
            };
            match (data.get(..frag_len), data.get(frag_len..)) {
                (Some(pdu), Some(rest)) => {
                    self.pdu(pdu, cx);
                    data = rest;
                }
                _ => {
                    self.stash(idx, data, cx);
                    return;
                }
            }
        }
    }

    /// Keep an incomplete PDU (never more than [`MAX_FRAG`] bytes).
    fn stash(&mut self, idx: usize, data: &[u8], cx: &mut Ctx) {
        if !self.bufs[idx % 2].push(data) {
            cx.posture.anomaly(
                cx.frame,
                "dcerpc.buffer-over-cap",
                format!("more than {MAX_FRAG} bytes buffered for one PDU; parser stopped"),
            );
            self.done = true;
        }
    }

    /// One complete PDU (`pdu.len() == frag_length`).
    fn pdu(&mut self, pdu: &[u8], cx: &mut Ctx) {
        let Some(Ok(h)) = parse_header(pdu) else {
            return;
        };
        match h.ptype.name() {
            Some(name) => cx.posture.fact("dcerpc.ptype", name),
            None => {
                cx.posture
                    .fact("dcerpc.ptype", format!("ptype-{}", h.ptype.0));
                cx.posture.anomaly(
                    cx.frame,
                    "dcerpc.unknown-ptype",
                    format!("PDU type {} is not a connection-oriented type", h.ptype.0),
                );
                return;
            }
        }
        let (body, trailer) = split_auth(pdu, &h, cx);
        if let Some(t) = trailer {
            cx.posture.fact("dcerpc.auth-type", t.auth_type.name());
            cx.posture.fact("dcerpc.auth-level", t.level.name());
        }
        match h.ptype {
            PType::BIND | PType::ALTER_CONTEXT => {
                self.bind(body, &h, cx);
                if let Some(t) = trailer {
                    if t.level == AuthLevel::PKT_PRIVACY {
                        self.privacy_requested = true;
                    }
                    let context = if h.ptype == PType::BIND {
                        "DCE/RPC bind"
                    } else {
                        "DCE/RPC alter_context"
                    };
                    token(t, cx, context);
                }
            }
            PType::BIND_ACK | PType::ALTER_CONTEXT_RESP => {
                self.bind_ack(body, &h, cx);
                if let Some(t) = trailer {
                    if self.privacy_requested || t.level == AuthLevel::PKT_PRIVACY {
                        cx.posture.set_encryption(Encryption::RpcPrivacy, cx.frame);
                    }
                    let context = if h.ptype == PType::BIND_ACK {
                        "DCE/RPC bind_ack"
                    } else {
                        "DCE/RPC alter_context_resp"
                    };
                    token(t, cx, context);
                }
            }
            PType::BIND_NAK => {
                let mut r = Reader::new(body, h.little_endian);
                if let Some(reason) = r.u16() {
                    cx.posture
                        .fact("dcerpc.bind-nak-reason", reason.to_string());
                }
            }
            PType::AUTH3 => {
                if let Some(t) = trailer {
                    token(t, cx, "DCE/RPC auth3");
                }
            }
            PType::REQUEST => self.request(body, &h, trailer, cx),
            PType::RESPONSE => self.response(body, &h, trailer, cx),
            PType::FAULT => {
                let mut r = Reader::new(body, h.little_endian);
                let status = r.take(8).and_then(|_| r.u32());
                if let Some(status) = status {
                    cx.posture.fact("dcerpc.fault", format!("0x{status:08x}"));
                }
                self.forget_call(h.call_id);
            }
            _ => {}
        }
    }

    fn bind(&mut self, body: &[u8], h: &Header, cx: &mut Ctx) {
        let mut r = Reader::new(body, h.little_endian);
        // max_xmit_frag, max_recv_frag, assoc_group_id.
        let Some(n_ctx) = r.take(8).and_then(|_| r.u8()) else {
            truncated(cx, "bind header");
            return;
        };
        self.offered.clear();
        if r.take(3).is_none() {
            truncated(cx, "bind context list");
            return;
        }
        for _ in 0..n_ctx {
            let Some((ctx_id, n_ts)) = r.u16().zip(r.u8()) else {
                truncated(cx, "presentation context");
                return;
            };
            // reserved, then abstract syntax: if_uuid + if_version (major, minor).
            let Some(abs) = r.u8().and_then(|_| r.uuid()) else {
                truncated(cx, "abstract syntax");
                return;
            };
            if r.u32().is_none() {
                truncated(cx, "abstract syntax version");
                return;
            }
            let mut feature_negotiation = false;
            for _ in 0..n_ts {
                let Some(ts) = r.uuid() else {
                    truncated(cx, "transfer syntax");
                    return;
                };
                if r.u32().is_none() {
                    truncated(cx, "transfer syntax version");
                    return;
                }
                feature_negotiation |= uuids::is_bind_time_feature(&ts);
                cx.posture
                    .fact("dcerpc.transfer-syntax", uuids::transfer_syntax_label(&ts));
            }
            if !feature_negotiation {
                cx.posture
                    .fact("dcerpc.interface", uuids::interface_label(&abs));
                cx.posture.fact("dcerpc.uuid", abs.to_string());
            }
            self.remember_context(ctx_id, abs, cx);
            if self.offered.len() < MAX_CONTEXTS {
                self.offered.push(abs);
            }
        }
    }

    fn remember_context(&mut self, ctx_id: u16, abs: Uuid, cx: &mut Ctx) {
        if let Some(slot) = self.contexts.iter_mut().find(|(id, _)| *id == ctx_id) {
            slot.1 = abs;
        } else if self.contexts.len() < MAX_CONTEXTS {
            self.contexts.push((ctx_id, abs));
        } else {
            self.report_cap(cx, "presentation contexts");
        }
    }

    fn bind_ack(&mut self, body: &[u8], h: &Header, cx: &mut Ctx) {
        let mut r = Reader::new(body, h.little_endian);
        let Some(addr_len) = r.take(8).and_then(|_| r.u16()) else {
            truncated(cx, "bind_ack header");
            return;
        };
        let Some(addr) = r.take(usize::from(addr_len)) else {
            truncated(cx, "secondary address");
            return;
        };
        let addr = printable(addr.split(|&c| c == 0).next().unwrap_or_default());
        if !addr.is_empty() {
            cx.posture.fact("dcerpc.secondary-address", addr);
        }
        // The results list starts 4-aligned from the PDU start; the body starts at 16.
        let Some(n_results) = r.align4().and_then(|_| r.u8()) else {
            truncated(cx, "result list");
            return;
        };
        if r.take(3).is_none() {
            truncated(cx, "result list");
            return;
        }
        // An interface is rejected only when none of its contexts (one per transfer
        // syntax offered) was accepted.
        let mut accepted: Vec<Uuid> = Vec::new();
        let mut rejected: Vec<Uuid> = Vec::new();
        for i in 0..usize::from(n_results) {
            let Some(result) = r.u16() else {
                truncated(cx, "result");
                break;
            };
            // reason, transfer syntax + version.
            if r.take(2 + UUID_LEN + 4).is_none() {
                truncated(cx, "result transfer syntax");
                break;
            }
            let Some(offered) = self.offered.get(i).copied() else {
                continue;
            };
            match result {
                0 => accepted.push(offered),
                1 | 2 => rejected.push(offered),
                // 3 = negotiate_ack of bind time feature negotiation (MS-RPCE 2.2.2.4).
                _ => {}
            }
        }
        for u in &accepted {
            cx.posture
                .fact("dcerpc.accepted", uuids::interface_label(u));
        }
        for u in rejected.iter().filter(|u| !accepted.contains(u)) {
            cx.posture
                .fact("dcerpc.rejected", uuids::interface_label(u));
        }
    }

    fn request(&mut self, body: &[u8], h: &Header, trailer: Option<SecTrailer>, cx: &mut Ctx) {
        let mut r = Reader::new(body, h.little_endian);
        // alloc_hint, then p_cont_id and opnum.
        let Some((ctx_id, opnum)) = r.take(4).and_then(|_| r.u16().zip(r.u16())) else {
            truncated(cx, "request header");
            return;
        };
        if h.flags & PFC_OBJECT_UUID != 0 && r.take(UUID_LEN).is_none() {
            truncated(cx, "request object uuid");
            return;
        }
        let interface = self
            .contexts
            .iter()
            .find(|(id, _)| *id == ctx_id)
            .map(|(_, u)| *u);
        if h.flags & PFC_FIRST_FRAG != 0 {
            if self.opnums.len() < MAX_OPNUM_FACTS {
                let label = interface
                    .map_or_else(|| format!("ctx{ctx_id}"), |u| uuids::interface_label(&u));
                let value = format!("{label}:{opnum}");
                if !self.opnums.contains(&value) {
                    cx.posture.fact("dcerpc.opnum", value.clone());
                    self.opnums.push(value);
                }
            }
            self.forget_call(h.call_id);
            if self.pending.len() >= cx.limits.transactions {
                self.pending.remove(0);
                self.report_cap(cx, "outstanding calls");
            }
            self.pending.push(PendingCall {
                call_id: h.call_id,
                interface,
                opnum,
            });
        }
        stub_protection(trailer, r.rest(), cx);
    }

    fn response(&mut self, body: &[u8], h: &Header, trailer: Option<SecTrailer>, cx: &mut Ctx) {
        let mut r = Reader::new(body, h.little_endian);
        // alloc_hint, p_cont_id, cancel_count, reserved.
        if r.take(8).is_none() {
            truncated(cx, "response header");
            return;
        }
        let stub = r.rest();
        stub_protection(trailer, stub, cx);
        let call = self
            .pending
            .iter()
            .find(|c| c.call_id == h.call_id)
            .copied();
        let whole = h.flags & (PFC_FIRST_FRAG | PFC_LAST_FRAG) == PFC_FIRST_FRAG | PFC_LAST_FRAG;
        let sealed = trailer.is_some_and(|t| t.level == AuthLevel::PKT_PRIVACY);
        if let Some(call) = call {
            let is_epm = call
                .interface
                .is_some_and(|u| uuids::lookup(&u).is_some_and(|i| i.name == "epm"));
            if is_epm && call.opnum == EPT_MAP_OPNUM && whole && !sealed {
                ept_map_response(stub, h.little_endian, cx);
            }
        }
        if h.flags & PFC_LAST_FRAG != 0 {
            self.forget_call(h.call_id);
        }
    }

    fn forget_call(&mut self, call_id: u32) {
        self.pending.retain(|c| c.call_id != call_id);
    }

    fn report_cap(&mut self, cx: &mut Ctx, what: &str) {
        if !self.caps_reported {
            self.caps_reported = true;
            cx.posture.anomaly(
                cx.frame,
                "dcerpc.state-over-cap",
                format!("too many {what} on one connection; oldest dropped"),
            );
        }
    }
}

/// Split a PDU into its body (after the common header, before any auth padding) and its
/// authentication verifier.
fn split_auth<'a>(pdu: &'a [u8], h: &Header, cx: &mut Ctx) -> (&'a [u8], Option<SecTrailer<'a>>) {
    let whole_body = pdu.get(HEADER_LEN..).unwrap_or_default();
    if h.auth_len == 0 {
        return (whole_body, None);
    }
    let trailer_start = h
        .auth_len
        .checked_add(SEC_TRAILER_LEN)
        .and_then(|n| pdu.len().checked_sub(n))
        .filter(|&s| s >= HEADER_LEN);
    let Some(trailer_start) = trailer_start else {
        cx.posture.anomaly(
            cx.frame,
            "dcerpc.auth-length-out-of-range",
            format!(
                "auth_length {} plus the {SEC_TRAILER_LEN}-byte sec_trailer does not fit in frag_length {}",
                h.auth_len,
                pdu.len()
            ),
        );
        return (whole_body, None);
    };
    let (Some(t), Some(value)) = (
        pdu.get(trailer_start..trailer_start + SEC_TRAILER_LEN),
        pdu.get(trailer_start + SEC_TRAILER_LEN..),
    ) else {
        return (whole_body, None);
    };
    let (auth_type, level, pad) = match t {
        [a, b, c, ..] => (AuthType(*a), AuthLevel(*b), usize::from(*c)),
        _ => return (whole_body, None),
    };
    let body_end = match trailer_start.checked_sub(pad).filter(|&e| e >= HEADER_LEN) {
        Some(e) => e,
        None => {
            cx.posture.anomaly(
                cx.frame,
                "dcerpc.auth-pad-out-of-range",
                format!("auth_pad_length {pad} runs before the PDU body"),
            );
            trailer_start
        }
    };
    let body = pdu.get(HEADER_LEN..body_end).unwrap_or_default();
    (
        body,
        Some(SecTrailer {
            auth_type,
            level,
            value,
        }),
    )
}

/// Hand an auth_value to the token inspector and note what it was.
fn token(t: SecTrailer, cx: &mut Ctx, context: &str) {
    if !t.auth_type.carries_token() || t.value.is_empty() {
        return;
    }
    if let Some(summary) = inspect_token(t.value, cx, context) {
        cx.posture.fact("dcerpc.token", summary.kind);
    }
}

/// Request / response stub data: sealed at level 6, readable otherwise.
fn stub_protection(trailer: Option<SecTrailer>, stub: &[u8], cx: &mut Ctx) {
    match trailer {
        Some(t) if t.level == AuthLevel::PKT_PRIVACY => {
            cx.posture.set_encryption(Encryption::RpcPrivacy, cx.frame);
        }
        _ if !stub.is_empty() => cx.posture.set_cleartext(),
        _ => {}
    }
}

fn truncated(cx: &mut Ctx, what: &str) {
    cx.posture.anomaly(
        cx.frame,
        "dcerpc.truncated-pdu",
        format!("{what} runs past frag_length"),
    );
}

/// Visible ASCII kept, anything else shown as `.`.
fn printable(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                char::from(c)
            } else {
                '.'
            }
        })
        .collect()
}

/// ept_map response stub (C706 appendix O): entry_handle, num_towers, then the towers as
/// a conformant varying array of pointers to twr_t. Records `epm.map`.
fn ept_map_response(stub: &[u8], le: bool, cx: &mut Ctx) {
    let mut r = Reader::new(stub, le);
    // entry_handle (context handle: attributes + uuid), num_towers, max_count, offset.
    let Some(actual) = r.take(20 + 4 + 4 + 4).and_then(|_| r.u32()) else {
        tower_anomaly(cx, "ept_map response shorter than its tower array header");
        return;
    };
    let count = usize::try_from(actual).unwrap_or(usize::MAX);
    let mut referents = 0usize;
    for _ in 0..count.min(MAX_EPM_TOWERS) {
        let Some(ptr) = r.u32() else {
            tower_anomaly(cx, "tower pointer array truncated");
            return;
        };
        if ptr != 0 {
            referents += 1;
        }
    }
    if count > MAX_EPM_TOWERS {
        // The remaining pointers are skipped; their towers follow them.
        let skip = (count - MAX_EPM_TOWERS).saturating_mul(4);
        if r.take(skip).is_none() {
            tower_anomaly(cx, "tower pointer array truncated");
            return;
        }
    }
    for _ in 0..referents {
        // twr_t: conformance, tower_length, tower_octet_string, then NDR alignment.
        let tower = r
            .align4()
            .and_then(|_| r.u32())
            .and_then(|_| r.u32())
            .and_then(|len| r.take(usize::try_from(len).ok()?));
        let Some(tower) = tower else {
            tower_anomaly(cx, "tower runs past the response stub");
            return;
        };
        match parse_tower(tower) {
            Ok(Some(map)) => cx.posture.fact("epm.map", map),
            Ok(None) => {}
            Err(why) => tower_anomaly(cx, why),
        }
    }
}

fn tower_anomaly(cx: &mut Ctx, detail: &str) {
    cx.posture
        .anomaly(cx.frame, "epm.tower-malformed", detail.to_string());
}

/// Tower floors (C706 appendix L, always little-endian): `<uuid>@<ip>:<port>` when the
/// tower names an interface and a TCP (or HTTP) port; Ok(None) for other protocols.
fn parse_tower(t: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader::new(t, true);
    let floors = r.u16().ok_or("tower floor count truncated")?;
    let mut interface = None;
    let mut port = None;
    let mut ip = None;
    for _ in 0..usize::from(floors).min(MAX_TOWER_FLOORS) {
        let lhs_len = r.u16().ok_or("tower floor truncated")?;
        let lhs = r
            .take(usize::from(lhs_len))
            .ok_or("tower floor lhs truncated")?;
        let rhs_len = r.u16().ok_or("tower floor truncated")?;
        let rhs = r
            .take(usize::from(rhs_len))
            .ok_or("tower floor rhs truncated")?;
        match lhs.split_first() {
            Some((&FLOOR_UUID, id)) if interface.is_none() => {
                interface = Some(Uuid::from_ndr(id, true).ok_or("interface floor too short")?);
            }
            Some((&(FLOOR_TCP | FLOOR_HTTP), _)) => {
                let p: [u8; 2] = rhs.try_into().map_err(|_| "port floor is not 2 bytes")?;
                port = Some(u16::from_be_bytes(p));
            }
            Some((&FLOOR_IP, _)) => {
                let a: [u8; 4] = rhs.try_into().map_err(|_| "IP floor is not 4 bytes")?;
                ip = Some(std::net::Ipv4Addr::from(a));
            }
            _ => {}
        }
    }
    Ok(match (interface, port) {
        (Some(u), Some(p)) => Some(match ip {
            Some(ip) => format!("{u}@{ip}:{p}"),
            None => format!("{u}@?:{p}"),
        }),
        _ => None,
    })
}

impl Analyzer for DceRpcAnalyzer {
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
        finish_auth(cx);
    }
}

/// Probe: a v5.0/5.1 header whose type is bind / alter_context from the client with a
/// plausible frag_length is certain; other connection-oriented headers (mid-stream
/// captures, RTS) and short prefixes on 135 are unsure.
pub fn probe(dir: Direction, prefix: &[u8], _client_port: u16, server_port: u16) -> Probe {
    let on_135 = server_port == 135;
    let (Some(&vers), Some(&minor)) = (prefix.first(), prefix.get(1)) else {
        return if on_135 { Probe::Unsure } else { Probe::No };
    };
    if vers != 5 || minor > 1 {
        return Probe::No;
    }
    let Some(Ok(h)) = parse_header(prefix) else {
        return if prefix.len() < HEADER_LEN {
            Probe::Unsure
        } else {
            Probe::No
        };
    };
    let Some(drep0) = prefix.get(4) else {
        return Probe::No;
    };
    // drep byte 0: character set in the low nibble (0 ASCII, 1 EBCDIC), integer order in
    // the high nibble (0 or 1).
    if drep0 & 0xee != 0 || h.ptype.name().is_none() {
        return Probe::No;
    }
    // bind / alter_context: header + 12 bytes before the first context.
    let client_open =
        matches!(h.ptype, PType::BIND | PType::ALTER_CONTEXT) && dir == Direction::ToServer;
    if client_open && h.frag_len >= HEADER_LEN + 12 && h.auth_len < h.frag_len {
        Probe::Certain
    } else {
        Probe::Unsure
    }
}

fn make() -> Box<dyn Analyzer> {
    Box::new(DceRpcAnalyzer::new())
}

/// DCE/RPC over TCP: the endpoint mapper on 135 and dynamic ports found by handshake.
pub const REGISTRATION: Registration = Registration {
    name: "dcerpc",
    tcp: true,
    ports: &[135],
    probe,
    make,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Posture;

    /// Feed `chunks` (direction, frame, bytes) to one analyzer; returns the posture and
    /// the last `Next`.
    fn run(chunks: &[(Direction, u64, &[u8])]) -> (Posture, Next) {
        let mut p = Posture::default();
        let mut a = DceRpcAnalyzer::new();
        let mut next = Next::Continue;
        for (dir, frame, bytes) in chunks {
            let mut cx = Ctx {
                limits: &crate::limits::ProtoLimits::DEFAULT,
                frame: *frame,
                ts_ns: 0,
                client_port: 50000,
                server_port: 135,
                posture: &mut p,
            };
            next = a.data(*dir, bytes, &mut cx);
        }
        (p, next)
    }

    fn has(p: &Posture, key: &str, value: &str) -> bool {
        p.has_fact(key, value)
    }

    fn anomaly_kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    /// Build a little-endian PDU: common header, body, then (auth_type, auth_level,
    /// auth_value) as sec_trailer + verifier with the body padded to 4.
    fn pdu(ptype: u8, call_id: u32, body: &[u8], auth: Option<(u8, u8, &[u8])>) -> Vec<u8> {
        let mut b = body.to_vec();
        let mut auth_len = 0u16;
        if let Some((ty, level, value)) = auth {
            let pad = (4 - b.len() % 4) % 4;
            b.extend(std::iter::repeat_n(0u8, pad));
            b.extend([ty, level, pad as u8, 0, 0, 0, 0, 0]);
            b.extend_from_slice(value);
            auth_len = value.len() as u16;
        }
        let frag = (HEADER_LEN + b.len()) as u16;
        let mut out = vec![5, 0, ptype, PFC_FIRST_FRAG | PFC_LAST_FRAG, 0x10, 0, 0, 0];
        out.extend(frag.to_le_bytes());
        out.extend(auth_len.to_le_bytes());
        out.extend(call_id.to_le_bytes());
        out.extend(b);
        out
    }

    /// bind body: one context (id 0) for `iface` v(major, minor) with NDR v2.
    fn bind_body(iface: &Uuid) -> Vec<u8> {
        let mut b = vec![0xb8, 0x10, 0xb8, 0x10, 0, 0, 0, 0]; // max_xmit, max_recv, assoc_group
        b.extend([1, 0, 0, 0]); // n_context_elem 1, reserved
        b.extend([0, 0, 1, 0]); // p_cont_id 0, n_transfer_syn 1, reserved
        b.extend(le_uuid(iface));
        b.extend([0, 0, 81, 0]); // if_version major 0, minor 81
        b.extend(le_uuid(&uuids::NDR));
        b.extend([2, 0, 0, 0]); // NDR v2.0
        b
    }

    fn le_uuid(u: &Uuid) -> [u8; 16] {
        let mut w = u.0;
        w[0..4].reverse();
        w[4..6].reverse();
        w[6..8].reverse();
        w
    }

    /// bind_ack body: secondary address "1025", one result (`result`).
    fn bind_ack_body(result: u16) -> Vec<u8> {
        let mut b = vec![0xb8, 0x10, 0xb8, 0x10, 0x11, 0x22, 0, 0]; // max_xmit, max_recv, assoc_group
        b.extend([5, 0]); // sec_addr length 5
        b.extend(b"1025\0"); // port_spec
        b.extend([0]); // pad to 4 from the PDU start (16 + 8 + 2 + 5 = 31 -> 32)
        b.extend([1, 0, 0, 0]); // n_results 1, reserved
        b.extend(result.to_le_bytes());
        b.extend([0, 0]); // reason
        b.extend(le_uuid(&uuids::NDR));
        b.extend([2, 0, 0, 0]);
        b
    }

    /// request body: alloc_hint, p_cont_id, opnum, then `stub`.
    fn request_body(ctx: u16, opnum: u16, stub: &[u8]) -> Vec<u8> {
        let mut b = (stub.len() as u32).to_le_bytes().to_vec();
        b.extend(ctx.to_le_bytes());
        b.extend(opnum.to_le_bytes());
        b.extend_from_slice(stub);
        b
    }

    const EMSMDB: Uuid = Uuid::parse("a4f1db00-ca47-1067-b31f-00dd010662da");
    const NTLM_NEGOTIATE: &[u8] = b"NTLMSSP\0\x01\x00\x00\x00\x97\x82\x08\xe2";

    #[test]
    fn bind_with_ntlmssp_at_connect_level_then_cleartext_request() {
        // Common header: v5.0, bind (11), first+last frag, drep LE/ASCII/IEEE,
        // frag_length 0x60 (96), auth_length 16, call_id 1.
        let bind: &[u8] = &[
            0x05, 0x00, 0x0b, 0x03, 0x10, 0x00, 0x00, 0x00, 0x60, 0x00, 0x10, 0x00, 0x01, 0x00,
            0x00, 0x00, // max_xmit_frag 4280, max_recv_frag 4280, assoc_group_id 0
            0xb8, 0x10, 0xb8, 0x10, 0x00, 0x00, 0x00, 0x00, // n_context_elem 1, reserved
            0x01, 0x00, 0x00, 0x00, // p_cont_id 0, n_transfer_syn 1, reserved
            0x00, 0x00, 0x01, 0x00,
            // abstract syntax: EMSMDB a4f1db00-ca47-1067-b31f-00dd010662da v0.81
            0x00, 0xdb, 0xf1, 0xa4, 0x47, 0xca, 0x67, 0x10, 0xb3, 0x1f, 0x00, 0xdd, 0x01, 0x06,
            0x62, 0xda, 0x00, 0x00, 0x51, 0x00,
            // transfer syntax: NDR 8a885d04-1ceb-11c9-9fe8-08002b104860 v2
            0x04, 0x5d, 0x88, 0x8a, 0xeb, 0x1c, 0xc9, 0x11, 0x9f, 0xe8, 0x08, 0x00, 0x2b, 0x10,
            0x48, 0x60, 0x02, 0x00, 0x00, 0x00,
            // sec_trailer: auth_type 10 (NTLMSSP), level 2 (connect), pad 0, reserved, ctx id 0
            0x0a, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            // auth_value: NTLMSSP NEGOTIATE (signature, type 1, flags)
            0x4e, 0x54, 0x4c, 0x4d, 0x53, 0x53, 0x50, 0x00, 0x01, 0x00, 0x00, 0x00, 0x97, 0x82,
            0x08, 0xe2,
        ];
        let request = pdu(
            0,
            2,
            &request_body(0, 10, &[0xaa; 24]),
            Some((10, 2, &[0; 16])),
        );
        let (p, next) = run(&[
            (Direction::ToServer, 4, bind),
            (Direction::ToServer, 6, &request),
        ]);
        assert_eq!(next, Next::Continue);
        assert!(has(&p, "dcerpc.ptype", "bind"));
        assert!(has(&p, "dcerpc.interface", "emsmdb"));
        assert!(has(
            &p,
            "dcerpc.uuid",
            "a4f1db00-ca47-1067-b31f-00dd010662da"
        ));
        assert!(has(&p, "dcerpc.transfer-syntax", "ndr"));
        assert!(has(&p, "dcerpc.auth-type", "ntlmssp"));
        assert!(has(&p, "dcerpc.auth-level", "connect"));
        assert!(has(&p, "dcerpc.token", "ntlmssp.negotiate"));
        assert!(has(&p, "dcerpc.opnum", "emsmdb:10"));
        assert_eq!(
            p.encryption,
            Encryption::None,
            "connect level leaves stub data readable"
        );
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn privacy_bind_confirmed_by_bind_ack_is_rpc_privacy() {
        let bind = pdu(11, 1, &bind_body(&EMSMDB), Some((10, 6, NTLM_NEGOTIATE)));
        let ack = pdu(
            12,
            1,
            &bind_ack_body(0),
            Some((10, 6, b"NTLMSSP\0\x02\0\0\0")),
        );
        let (p, _) = run(&[(Direction::ToServer, 10, &bind)]);
        assert_eq!(
            p.encryption,
            Encryption::Unknown,
            "a request alone proves nothing"
        );
        let (p, _) = run(&[
            (Direction::ToServer, 10, &bind),
            (Direction::ToClient, 11, &ack),
        ]);
        assert_eq!(p.encryption, Encryption::RpcPrivacy);
        assert_eq!(p.encryption_frame, Some(11));
        assert!(has(&p, "dcerpc.auth-level", "privacy"));
        assert!(has(&p, "dcerpc.accepted", "emsmdb"));
        assert!(has(&p, "dcerpc.secondary-address", "1025"));
        assert!(has(&p, "dcerpc.token", "ntlmssp.challenge"));
    }

    #[test]
    fn level6_request_confirms_privacy_without_ack() {
        let bind = pdu(11, 1, &bind_body(&EMSMDB), Some((9, 6, &[0x60, 0x00])));
        let req = pdu(
            0,
            2,
            &request_body(0, 11, &[0x55; 40]),
            Some((9, 6, &[0; 16])),
        );
        let (p, _) = run(&[
            (Direction::ToServer, 3, &bind),
            (Direction::ToServer, 9, &req),
        ]);
        assert_eq!(p.encryption, Encryption::RpcPrivacy);
        assert_eq!(p.encryption_frame, Some(9));
        assert!(has(&p, "dcerpc.auth-type", "spnego"));
    }

    #[test]
    fn rejected_interface_is_named() {
        let bind = pdu(11, 1, &bind_body(&EMSMDB), None);
        let nak = pdu(12, 1, &bind_ack_body(2), None);
        let (p, _) = run(&[
            (Direction::ToServer, 1, &bind),
            (Direction::ToClient, 2, &nak),
        ]);
        assert!(has(&p, "dcerpc.rejected", "emsmdb"));
        assert!(!p.facts.contains_key("dcerpc.accepted"));
    }

    #[test]
    fn alter_context_from_a_real_capture() {
        // dce-rpc_dce_rpc_ntlm.pcapng frame 4: alter_context (14), call_id 2, one context
        // IRemUnknown2 with NDR, sec_trailer auth_type 9 (SPNEGO) level 5 (integrity),
        // auth_value a NegTokenResp wrapping an NTLMSSP NEGOTIATE.
        let hex = "05000e07100000009900490002000000d016d016000000000100000000000100430100000000\
                   0000c00000000000004600000000045d888aeb1cc9119fe808002b104860020000000905000000\
                   000000a1473045a0030a0101a23e043c4e544c4d535350000100000097b218e20b000b00310000\
                   0009000900280000000a00ba470000000f434254482d57532d31424c41434b434c4f564552";
        let bytes = from_hex(hex);
        let (p, next) = run(&[(Direction::ToServer, 4, &bytes)]);
        assert_eq!(next, Next::Continue);
        assert!(has(&p, "dcerpc.ptype", "alter_context"));
        assert!(has(&p, "dcerpc.interface", "iremunknown2"));
        assert!(has(&p, "dcerpc.auth-type", "spnego"));
        assert!(has(&p, "dcerpc.auth-level", "integrity"));
        assert!(has(&p, "dcerpc.token", "spnego.resp"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn auth3_token_is_inspected() {
        // auth3: 4 bytes of padding, then the sec_trailer with NTLMSSP AUTHENTICATE.
        let auth3 = pdu(16, 1, &[0, 0, 0, 0], Some((10, 6, b"NTLMSSP\0\x03\0\0\0")));
        let (p, _) = run(&[(Direction::ToServer, 7, &auth3)]);
        assert!(has(&p, "dcerpc.ptype", "auth3"));
        assert!(has(&p, "dcerpc.token", "ntlmssp.authenticate"));
        // The token is a truncated AUTHENTICATE: only the token parser may complain.
        assert!(
            p.anomalies.iter().all(|a| a.kind.starts_with("ntlmssp.")),
            "{:?}",
            p.anomalies
        );
    }

    #[test]
    fn big_endian_request_reads_opnum() {
        let bind = pdu(11, 1, &bind_body(&EMSMDB), None);
        // Request in big-endian drep (0x00): frag_length 0x0020, auth 0, call_id 2,
        // alloc_hint 8, p_cont_id 0, opnum 0x000b, 8 bytes of stub.
        let req: &[u8] = &[
            0x05, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x02, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x0b, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        let (p, _) = run(&[
            (Direction::ToServer, 1, &bind),
            (Direction::ToServer, 2, req),
        ]);
        assert!(has(&p, "dcerpc.opnum", "emsmdb:11"), "{:?}", p.facts);
        assert_eq!(p.encryption, Encryption::None);
    }

    #[test]
    fn pdus_split_anywhere_and_coalesced() {
        let bind = pdu(11, 1, &bind_body(&EMSMDB), Some((10, 2, NTLM_NEGOTIATE)));
        let req = pdu(0, 2, &request_body(0, 2, &[1; 12]), None);
        let mut stream = bind.clone();
        stream.extend(&req);
        // One byte at a time.
        let chunks: Vec<(Direction, u64, &[u8])> = stream
            .chunks(1)
            .map(|c| (Direction::ToServer, 1, c))
            .collect();
        let (p, _) = run(&chunks);
        assert!(has(&p, "dcerpc.interface", "emsmdb"));
        assert!(has(&p, "dcerpc.opnum", "emsmdb:2"));
        // Both PDUs in one chunk.
        let (q, _) = run(&[(Direction::ToServer, 1, &stream)]);
        assert_eq!(p.facts, q.facts);
        assert!(q.anomalies.is_empty());
    }

    /// ept_map response stub with one tower for EMSMDB over ncacn_ip_tcp 10.0.0.5:1025.
    fn ept_map_stub(tower: &[u8]) -> Vec<u8> {
        let mut s = vec![0u8; 20]; // entry_handle
        s.extend(1u32.to_le_bytes()); // num_towers
        s.extend(4u32.to_le_bytes()); // max_count
        s.extend(0u32.to_le_bytes()); // offset
        s.extend(1u32.to_le_bytes()); // actual_count
        s.extend(3u32.to_le_bytes()); // referent id of tower 0
        s.extend((tower.len() as u32).to_le_bytes()); // twr_t conformance
        s.extend((tower.len() as u32).to_le_bytes()); // tower_length
        s.extend_from_slice(tower);
        s.extend(std::iter::repeat_n(0u8, (4 - tower.len() % 4) % 4));
        s.extend(0u32.to_le_bytes()); // status
        s
    }

    fn emsmdb_tower() -> Vec<u8> {
        let mut t = vec![5, 0]; // floor count 5
                                // floor 1: lhs 19 = 0x0d + interface uuid + major version; rhs 2 = minor
        t.extend([19, 0, 0x0d]);
        t.extend(le_uuid(&EMSMDB));
        t.extend([0, 0, 2, 0, 81, 0]);
        // floor 2: transfer syntax NDR v2
        t.extend([19, 0, 0x0d]);
        t.extend(le_uuid(&uuids::NDR));
        t.extend([2, 0, 2, 0, 0, 0]);
        // floor 3: 0x0b connection-oriented RPC, rhs minor version
        t.extend([1, 0, 0x0b, 2, 0, 0, 0]);
        // floor 4: 0x07 TCP, port 1025 big-endian
        t.extend([1, 0, 0x07, 2, 0, 0x04, 0x01]);
        // floor 5: 0x09 IP, 10.0.0.5
        t.extend([1, 0, 0x09, 4, 0, 10, 0, 0, 5]);
        t
    }

    fn epm_exchange(tower: &[u8]) -> Posture {
        let epm = Uuid::parse("e1af8308-5d1f-11c9-91a4-08002b14a0fa");
        let bind = pdu(11, 1, &bind_body(&epm), None);
        let req = pdu(0, 2, &request_body(0, EPT_MAP_OPNUM, &[0; 32]), None);
        let mut resp_body = vec![0u8; 8]; // alloc_hint, p_cont_id, cancel_count, reserved
        resp_body.extend(ept_map_stub(tower));
        let resp = pdu(2, 2, &resp_body, None);
        run(&[
            (Direction::ToServer, 1, &bind),
            (Direction::ToServer, 3, &req),
            (Direction::ToClient, 4, &resp),
        ])
        .0
    }

    #[test]
    fn epm_map_response_names_the_dynamic_port() {
        let p = epm_exchange(&emsmdb_tower());
        assert!(has(&p, "dcerpc.opnum", "epm:3"));
        assert!(
            has(
                &p,
                "epm.map",
                "a4f1db00-ca47-1067-b31f-00dd010662da@10.0.0.5:1025"
            ),
            "{:?}",
            p.facts
        );
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn truncated_tower_floors_are_an_anomaly() {
        let mut t = emsmdb_tower();
        t.truncate(t.len() - 3); // the IP floor's rhs is cut
        let p = epm_exchange(&t);
        assert!(
            anomaly_kinds(&p).contains(&"epm.tower-malformed"),
            "{:?}",
            p.anomalies
        );
        assert!(!p.facts.contains_key("epm.map"));
    }

    #[test]
    fn rts_pdu_is_accepted() {
        // RTS (20): flags 0, 0 commands (MS-RPCH 2.2.4.2).
        let rts = pdu(20, 0, &[0, 0, 0, 0], None);
        let (p, next) = run(&[(Direction::ToServer, 1, &rts)]);
        assert_eq!(next, Next::Continue);
        assert!(has(&p, "dcerpc.ptype", "rts"));
        assert!(p.anomalies.is_empty());
    }

    #[test]
    fn frag_length_5_stops_with_anomaly() {
        let mut bad = pdu(11, 1, &bind_body(&EMSMDB), None);
        bad[8] = 5;
        bad[9] = 0;
        let (p, next) = run(&[(Direction::ToServer, 2, &bad)]);
        assert_eq!(next, Next::Done);
        assert_eq!(anomaly_kinds(&p), vec!["dcerpc.bad-frag-length"]);
        assert_eq!(p.anomalies[0].frame, 2);
    }

    #[test]
    fn auth_length_past_the_pdu_is_an_anomaly() {
        let mut bad = pdu(11, 1, &bind_body(&EMSMDB), Some((10, 2, NTLM_NEGOTIATE)));
        bad[10] = 0xff; // auth_length 0x00ff > frag_length
        let (p, next) = run(&[(Direction::ToServer, 2, &bad)]);
        assert_eq!(next, Next::Continue);
        assert!(anomaly_kinds(&p).contains(&"dcerpc.auth-length-out-of-range"));
        assert!(
            has(&p, "dcerpc.interface", "emsmdb"),
            "the body is still read"
        );
        assert!(!p.facts.contains_key("dcerpc.auth-type"));
    }

    #[test]
    fn truncated_context_list_is_an_anomaly() {
        let body = bind_body(&EMSMDB);
        let bad = pdu(11, 1, &body[..30], None);
        let (p, _) = run(&[(Direction::ToServer, 2, &bad)]);
        assert_eq!(anomaly_kinds(&p), vec!["dcerpc.truncated-pdu"]);
    }

    #[test]
    fn wrong_version_stops() {
        let (p, next) = run(&[(Direction::ToServer, 1, &[4u8; 20][..])]);
        assert_eq!(next, Next::Done);
        assert_eq!(anomaly_kinds(&p), vec!["dcerpc.bad-version"]);
    }

    #[test]
    fn probe_recognises_bind() {
        let bind = pdu(11, 1, &bind_body(&EMSMDB), None);
        assert_eq!(
            probe(Direction::ToServer, &bind, 50000, 49152),
            Probe::Certain
        );
        let req = pdu(0, 2, &request_body(0, 2, &[0; 8]), None);
        assert_eq!(
            probe(Direction::ToServer, &req, 50000, 49152),
            Probe::Unsure
        );
        assert_eq!(
            probe(Direction::ToServer, b"GET / HTTP/1.1\r\n", 50000, 135),
            Probe::No
        );
        assert_eq!(probe(Direction::ToServer, &[], 50000, 135), Probe::Unsure);
        assert_eq!(
            probe(Direction::ToServer, &[5, 0, 11], 50000, 135),
            Probe::Unsure
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep: every prefix of valid PDUs with each byte flipped.
        let mut stream = pdu(11, 1, &bind_body(&EMSMDB), Some((10, 6, NTLM_NEGOTIATE)));
        stream.extend(pdu(12, 1, &bind_ack_body(0), Some((10, 6, NTLM_NEGOTIATE))));
        let mut resp_body = vec![0u8; 8];
        resp_body.extend(ept_map_stub(&emsmdb_tower()));
        stream.extend(pdu(2, 2, &resp_body, None));
        for i in 0..stream.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut s = stream.clone();
                s[i] ^= flip;
                let _ = run(&[(Direction::ToServer, 1, &s), (Direction::ToClient, 2, &s)]);
            }
        }
    }

    pub(crate) fn from_hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect()
    }
}
