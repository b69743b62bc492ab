//! NTLMSSP messages (MS-NLMP 2.2.1): NEGOTIATE, CHALLENGE and AUTHENTICATE.
//!
//! Guarantees: every payload field (length, maximum length, offset) is checked against
//! the message before it is read; a field outside the message becomes the anomaly
//! `ntlmssp.field-out-of-range` and is treated as absent. The AUTHENTICATE message is
//! classified NTLMv1 (24-byte NT response), NTLMv2 (longer NT response carrying the
//! client blob) or anonymous (empty user and empty NT response), and recorded as one
//! [`AuthEvent`](crate::model::AuthEvent) that never holds a secret: an NTLM response is
//! a challenge answer, not a reusable password (though NTLMv1 ones can be cracked, which
//! the fact `ntlmssp.v1-crackable` says).
//!
//! Flags of the NEGOTIATE message are only the client's wishes and go to
//! `ntlmssp.flags-requested`; the flags of CHALLENGE and AUTHENTICATE are the negotiated
//! ones and go to `ntlmssp.flags`.

use super::{auth_event, note_first_seen, TokenSummary, NTLM_FIRST_SEEN};
use crate::model::Mechanism;
use crate::proto::api::Ctx;

/// Every NTLMSSP message starts with these 8 bytes (MS-NLMP 2.2.1.1).
pub const SIGNATURE: &[u8] = b"NTLMSSP\0";

/// Longest user, domain or host name kept, in characters. Active Directory names are
/// far shorter (sAMAccountName 20, DNS names 255), so longer ones are garbage or attacks.
pub const MAX_NAME_CHARS: usize = 256;

/// Most AV pairs read from one list. MS-NLMP 2.2.2.1 defines 11 AvIds, each expected
/// once; the cap bounds the work a crafted list can cause.
pub const MAX_AV_PAIRS: usize = 32;

/// NTLM message type (MS-NLMP 2.2.1), unknown values kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageType(pub u32);

impl MessageType {
    pub const NEGOTIATE: MessageType = MessageType(1);
    pub const CHALLENGE: MessageType = MessageType(2);
    pub const AUTHENTICATE: MessageType = MessageType(3);
}

/// NegotiateFlags (MS-NLMP 2.2.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegotiateFlags(pub u32);

#[rustfmt::skip]
impl NegotiateFlags {
    pub const UNICODE: NegotiateFlags                  = NegotiateFlags(0x0000_0001);
    pub const OEM: NegotiateFlags                      = NegotiateFlags(0x0000_0002);
    pub const REQUEST_TARGET: NegotiateFlags           = NegotiateFlags(0x0000_0004);
    pub const SIGN: NegotiateFlags                     = NegotiateFlags(0x0000_0010);
    pub const SEAL: NegotiateFlags                     = NegotiateFlags(0x0000_0020);
    pub const DATAGRAM: NegotiateFlags                 = NegotiateFlags(0x0000_0040);
    pub const LM_KEY: NegotiateFlags                   = NegotiateFlags(0x0000_0080);
    pub const NTLM: NegotiateFlags                     = NegotiateFlags(0x0000_0200);
    pub const ANONYMOUS: NegotiateFlags                = NegotiateFlags(0x0000_0800);
    pub const OEM_DOMAIN_SUPPLIED: NegotiateFlags      = NegotiateFlags(0x0000_1000);
    pub const OEM_WORKSTATION_SUPPLIED: NegotiateFlags = NegotiateFlags(0x0000_2000);
    pub const ALWAYS_SIGN: NegotiateFlags              = NegotiateFlags(0x0000_8000);
    pub const EXTENDED_SESSIONSECURITY: NegotiateFlags = NegotiateFlags(0x0008_0000);
    pub const TARGET_INFO: NegotiateFlags              = NegotiateFlags(0x0080_0000);
    pub const VERSION: NegotiateFlags                  = NegotiateFlags(0x0200_0000);
    pub const N128: NegotiateFlags                     = NegotiateFlags(0x2000_0000);
    pub const KEY_EXCH: NegotiateFlags                 = NegotiateFlags(0x4000_0000);
    pub const N56: NegotiateFlags                      = NegotiateFlags(0x8000_0000);
}

impl NegotiateFlags {
    pub fn contains(self, flag: NegotiateFlags) -> bool {
        self.0 & flag.0 == flag.0
    }

    /// Names of the security-relevant flags that are set, in a fixed order.
    pub fn security_names(self) -> impl Iterator<Item = &'static str> {
        SECURITY_FLAGS
            .iter()
            .filter(move |(flag, _)| self.contains(*flag))
            .map(|(_, name)| *name)
    }
}

/// Flags that change what the exchange protects, with the name used in facts.
const SECURITY_FLAGS: &[(NegotiateFlags, &str)] = &[
    (NegotiateFlags::SIGN, "sign"),
    (NegotiateFlags::SEAL, "seal"),
    (NegotiateFlags::N128, "128"),
    (NegotiateFlags::N56, "56"),
    (NegotiateFlags::KEY_EXCH, "key-exch"),
    (NegotiateFlags::EXTENDED_SESSIONSECURITY, "ess"),
    (NegotiateFlags::LM_KEY, "lm-key"),
    (NegotiateFlags::ANONYMOUS, "anonymous"),
];

/// AV pair identifier (MS-NLMP 2.2.2.1), unknown values kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvId(pub u16);

impl AvId {
    pub const EOL: AvId = AvId(0);
    pub const NB_COMPUTER_NAME: AvId = AvId(1);
    pub const NB_DOMAIN_NAME: AvId = AvId(2);
    pub const DNS_COMPUTER_NAME: AvId = AvId(3);
    pub const DNS_DOMAIN_NAME: AvId = AvId(4);
    pub const DNS_TREE_NAME: AvId = AvId(5);
    pub const TARGET_NAME: AvId = AvId(9);

    /// Fact key of the AV pairs that carry a name worth reporting.
    fn fact_key(self) -> Option<&'static str> {
        match self {
            AvId::NB_COMPUTER_NAME => Some("ntlmssp.target.nb-computer"),
            AvId::NB_DOMAIN_NAME => Some("ntlmssp.target.nb-domain"),
            AvId::DNS_COMPUTER_NAME => Some("ntlmssp.target.dns-computer"),
            AvId::DNS_DOMAIN_NAME => Some("ntlmssp.target.dns-domain"),
            AvId::DNS_TREE_NAME => Some("ntlmssp.target.dns-tree"),
            AvId::TARGET_NAME => Some("ntlmssp.target.spn"),
            _ => None,
        }
    }
}

/// Length of an NTLMv1 (and LM) response (MS-NLMP 2.2.2.6).
const V1_RESPONSE_LEN: usize = 24;
/// NTProofStr (16) + RespType, HiRespType, Reserved1 (2), Reserved2 (4), TimeStamp (8),
/// ChallengeFromClient (8), Reserved3 (4): where the AV pairs of an NTLMv2 blob begin
/// (MS-NLMP 2.2.2.7, 2.2.2.8).
const V2_AV_PAIRS_AT: usize = 44;
/// Offset of RespType in an NTLMv2 response; its only defined value is 1.
const V2_RESP_TYPE_AT: usize = 16;

/// Fixed header lengths (MS-NLMP 2.2.1): the smallest message that holds the fields
/// this parser needs. Optional trailing fields (Version, MIC) are read only if present.
const NEGOTIATE_MIN: usize = 16;
const NEGOTIATE_FIELDS_END: usize = 32;
const CHALLENGE_MIN: usize = 32;
const CHALLENGE_TARGET_INFO_END: usize = 48;
const AUTHENTICATE_MIN: usize = 52;
const AUTHENTICATE_SESSION_KEY_END: usize = 60;
const AUTHENTICATE_FLAGS_END: usize = 64;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The payload of the (Len, MaxLen, Offset) field whose descriptor is at `at`.
/// `None` when the descriptor is missing or points outside the message (anomaly).
fn field<'a>(msg: &'a [u8], at: usize, name: &str, cx: &mut Ctx) -> Option<&'a [u8]> {
    let len = usize::from(u16_at(msg, at)?);
    let offset = usize::try_from(u32_at(msg, at + 4)?).ok()?;
    if len == 0 {
        return Some(&[]);
    }
    match offset.checked_add(len).and_then(|end| msg.get(offset..end)) {
        Some(bytes) => Some(bytes),
        None => {
            cx.posture.anomaly(
                cx.frame,
                "ntlmssp.field-out-of-range",
                format!(
                    "{name}: offset {offset} length {len} past the {}-byte message",
                    msg.len()
                ),
            );
            None
        }
    }
}

/// Decode a name: UTF-16LE when `unicode`, else OEM (only ASCII is trusted; other
/// bytes become U+FFFD since the code page is unknown). Control characters become
/// U+FFFD so that reports stay one line per value.
fn decode_name(bytes: &[u8], unicode: bool, what: &str, cx: &mut Ctx) -> String {
    // Names are mostly printable ASCII in UTF-16: their low bytes, at once.
    if unicode
        && bytes.len() % 2 == 0
        && bytes.len() / 2 <= MAX_NAME_CHARS
        && bytes
            .chunks_exact(2)
            .all(|p| p[1] == 0 && (0x20..0x7f).contains(&p[0]))
    {
        return bytes.chunks_exact(2).map(|p| char::from(p[0])).collect();
    }
    let clean = |c: char| if c.is_control() { '\u{fffd}' } else { c };
    let chars = if unicode {
        bytes.len() / 2
    } else {
        bytes.len()
    };
    let mut out = String::with_capacity(chars.min(MAX_NAME_CHARS));
    let mut count = 0usize;
    let mut too_long = false;
    let mut push = |c: char| {
        if count < MAX_NAME_CHARS {
            out.push(clean(c));
            count += 1;
        } else {
            too_long = true;
        }
    };
    if unicode {
        if bytes.len() % 2 != 0 {
            cx.posture.anomaly(
                cx.frame,
                "ntlmssp.odd-utf16-length",
                format!("{what}: {} bytes is not whole UTF-16 units", bytes.len()),
            );
        }
        let units = bytes
            .chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]));
        for c in char::decode_utf16(units) {
            push(c.unwrap_or('\u{fffd}'));
        }
    } else {
        for &b in bytes {
            push(if b.is_ascii() {
                char::from(b)
            } else {
                '\u{fffd}'
            });
        }
    }
    if too_long {
        cx.posture.anomaly(
            cx.frame,
            "ntlmssp.name-too-long",
            format!("{what}: longer than {MAX_NAME_CHARS} characters; cut"),
        );
    }
    out
}

/// Walk an AV pair list (MS-NLMP 2.2.2.1), recording the names it carries.
fn av_pairs(list: &[u8], where_: &str, cx: &mut Ctx) {
    if list.is_empty() {
        cx.posture.anomaly(
            cx.frame,
            "ntlmssp.av-pairs-empty",
            format!("{where_}: empty AV pair list (no MsvAvEOL)"),
        );
        return;
    }
    let mut rest = list;
    for _ in 0..MAX_AV_PAIRS {
        let (Some(id), Some(len)) = (u16_at(rest, 0), u16_at(rest, 2)) else {
            let kind = if rest.is_empty() {
                "ntlmssp.av-pairs-unterminated"
            } else {
                "ntlmssp.av-pair-truncated"
            };
            cx.posture.anomaly(
                cx.frame,
                kind,
                format!("{where_}: AV pair list ends without MsvAvEOL"),
            );
            return;
        };
        let id = AvId(id);
        if id == AvId::EOL {
            return;
        }
        let Some(value) = rest.get(4..4 + usize::from(len)) else {
            cx.posture.anomaly(
                cx.frame,
                "ntlmssp.av-pair-truncated",
                format!("{where_}: AvId {} length {len} past the list", id.0),
            );
            return;
        };
        if let Some(key) = id.fact_key() {
            let name = decode_name(value, true, key, cx);
            if !name.is_empty() {
                cx.posture.fact(key, name);
            }
        }
        rest = rest.get(4 + usize::from(len)..).unwrap_or(&[]);
    }
    cx.posture.anomaly(
        cx.frame,
        "ntlmssp.av-pairs-too-many",
        format!("{where_}: more than {MAX_AV_PAIRS} AV pairs; rest ignored"),
    );
}

fn record_flags(key: &'static str, flags: NegotiateFlags, cx: &mut Ctx) {
    for name in flags.security_names() {
        cx.posture.fact(key, name);
    }
}

fn truncated(cx: &mut Ctx, what: &str, len: usize, need: usize) {
    cx.posture.anomaly(
        cx.frame,
        "ntlmssp.truncated",
        format!("{what}: {len} bytes, fixed part needs {need}"),
    );
}

/// Inspect one NTLMSSP message (`data` starts with [`SIGNATURE`]; trailing bytes are
/// allowed, offsets are relative to the signature).
pub fn inspect(data: &[u8], cx: &mut Ctx, context: &str) -> TokenSummary {
    note_first_seen(cx, NTLM_FIRST_SEEN, context);
    let Some(kind) = u32_at(data, 8).map(MessageType) else {
        truncated(cx, "NTLMSSP message", data.len(), 12);
        return TokenSummary::of_kind("unknown");
    };
    match kind {
        MessageType::NEGOTIATE => negotiate(data, cx),
        MessageType::CHALLENGE => challenge(data, cx),
        MessageType::AUTHENTICATE => authenticate(data, cx, context),
        MessageType(other) => {
            cx.posture.anomaly(
                cx.frame,
                "ntlmssp.unknown-message-type",
                format!("message type {other}"),
            );
            TokenSummary::of_kind("unknown")
        }
    }
}

fn negotiate(msg: &[u8], cx: &mut Ctx) -> TokenSummary {
    cx.posture.fact("ntlmssp.message", "NEGOTIATE");
    let mut summary = TokenSummary {
        kind: "ntlmssp.negotiate",
        mechanism: Some(Mechanism::Ntlm),
        ..TokenSummary::default()
    };
    let Some(flags) = u32_at(msg, 12).map(NegotiateFlags) else {
        truncated(cx, "NEGOTIATE", msg.len(), NEGOTIATE_MIN);
        return summary;
    };
    summary.ntlm_flags = Some(flags.0);
    record_flags("ntlmssp.flags-requested", flags, cx);
    if msg.len() >= NEGOTIATE_FIELDS_END {
        // Both names are OEM strings, present only when their flag says so.
        let named = [
            (16, NegotiateFlags::OEM_DOMAIN_SUPPLIED, "ntlmssp.domain"),
            (
                24,
                NegotiateFlags::OEM_WORKSTATION_SUPPLIED,
                "ntlmssp.workstation",
            ),
        ];
        for (at, flag, key) in named {
            if !flags.contains(flag) {
                continue;
            }
            if let Some(bytes) = field(msg, at, key, cx) {
                let name = decode_name(bytes, false, key, cx);
                if !name.is_empty() {
                    cx.posture.fact(key, name);
                }
            }
        }
    }
    summary
}

fn challenge(msg: &[u8], cx: &mut Ctx) -> TokenSummary {
    cx.posture.fact("ntlmssp.message", "CHALLENGE");
    let mut summary = TokenSummary {
        kind: "ntlmssp.challenge",
        mechanism: Some(Mechanism::Ntlm),
        ..TokenSummary::default()
    };
    let Some(flags) = u32_at(msg, 20).map(NegotiateFlags) else {
        truncated(cx, "CHALLENGE", msg.len(), CHALLENGE_MIN);
        return summary;
    };
    summary.ntlm_flags = Some(flags.0);
    record_flags("ntlmssp.flags", flags, cx);
    if msg.len() < CHALLENGE_MIN {
        truncated(cx, "CHALLENGE", msg.len(), CHALLENGE_MIN);
        return summary;
    }
    if let Some(bytes) = field(msg, 12, "TargetName", cx) {
        let unicode = flags.contains(NegotiateFlags::UNICODE);
        let name = decode_name(bytes, unicode, "TargetName", cx);
        if !name.is_empty() {
            cx.posture.fact("ntlmssp.target-name", name);
        }
    }
    if msg.len() >= CHALLENGE_TARGET_INFO_END {
        if let Some(info) = field(msg, 40, "TargetInfo", cx) {
            if flags.contains(NegotiateFlags::TARGET_INFO) || !info.is_empty() {
                av_pairs(info, "CHALLENGE TargetInfo", cx);
            }
        }
    }
    summary
}

fn authenticate(msg: &[u8], cx: &mut Ctx, context: &str) -> TokenSummary {
    cx.posture.fact("ntlmssp.message", "AUTHENTICATE");
    let mut summary = TokenSummary::of_kind("ntlmssp.authenticate");
    if msg.len() < AUTHENTICATE_MIN {
        truncated(cx, "AUTHENTICATE", msg.len(), AUTHENTICATE_MIN);
        summary.mechanism = Some(Mechanism::Ntlm);
        cx.posture
            .add_auth(auth_event(cx, Mechanism::Ntlm, None, context));
        return summary;
    }
    // Messages from before NegotiateFlags was added to AUTHENTICATE stop at 52 or 60
    // bytes; their strings were Unicode in practice.
    let flags = (msg.len() >= AUTHENTICATE_FLAGS_END)
        .then(|| u32_at(msg, 60).map(NegotiateFlags))
        .flatten();
    summary.ntlm_flags = flags.map(|f| f.0);
    if let Some(f) = flags {
        record_flags("ntlmssp.flags", f, cx);
    }
    let unicode = flags.is_none_or(|f| f.contains(NegotiateFlags::UNICODE));

    let lm = field(msg, 12, "LmChallengeResponse", cx);
    let nt = field(msg, 20, "NtChallengeResponse", cx);
    let text = |at: usize, what: &str, key: &'static str, cx: &mut Ctx| -> String {
        let name = field(msg, at, what, cx)
            .map(|b| decode_name(b, unicode, what, cx))
            .unwrap_or_default();
        if !name.is_empty() {
            cx.posture.fact(key, name.clone());
        }
        name
    };
    let domain = text(28, "DomainName", "ntlmssp.domain", cx);
    let user = text(36, "UserName", "ntlmssp.user", cx);
    text(44, "Workstation", "ntlmssp.workstation", cx);
    if msg.len() >= AUTHENTICATE_SESSION_KEY_END {
        field(msg, 52, "EncryptedRandomSessionKey", cx);
    }

    let ess = flags.is_some_and(|f| f.contains(NegotiateFlags::EXTENDED_SESSIONSECURITY));
    let mechanism = classify(lm, nt, user.is_empty(), ess, cx);
    let who = match (&mechanism, domain.is_empty()) {
        (Mechanism::Anonymous, _) => None,
        (_, true) if user.is_empty() => None,
        (_, true) => Some(user),
        (_, false) => Some(format!("{domain}\\{user}")),
    };
    cx.posture
        .add_auth(auth_event(cx, mechanism.clone(), who.clone(), context));
    summary.mechanism = Some(mechanism);
    summary.user = who;
    summary
}

/// Which NTLM variant the responses of an AUTHENTICATE message show (MS-NLMP 3.3).
fn classify(
    lm: Option<&[u8]>,
    nt: Option<&[u8]>,
    user_empty: bool,
    ess: bool,
    cx: &mut Ctx,
) -> Mechanism {
    let Some(nt) = nt else {
        // Out of range: already an anomaly, version cannot be told.
        return Mechanism::Ntlm;
    };
    let lm = lm.unwrap_or(&[]);
    let lm_is_real = lm.len() == V1_RESPONSE_LEN && lm.iter().any(|&b| b != 0) && lm != nt;
    match nt.len() {
        0 if user_empty => Mechanism::Anonymous,
        0 if lm_is_real => {
            // LM response only: the weakest form of NTLMv1.
            v1_facts(cx, false);
            cx.posture.fact("ntlmssp.lm-response", "present");
            Mechanism::Ntlmv1
        }
        V1_RESPONSE_LEN => {
            v1_facts(cx, ess);
            // With ESS the LM field carries the client challenge, not an LM response.
            if lm_is_real && !ess {
                cx.posture.fact("ntlmssp.lm-response", "present");
            }
            Mechanism::Ntlmv1
        }
        n if n > V1_RESPONSE_LEN => {
            cx.posture.fact("ntlmssp.version", "v2");
            match nt.get(V2_RESP_TYPE_AT) {
                Some(1) if nt.len() >= V2_AV_PAIRS_AT => {
                    av_pairs(
                        nt.get(V2_AV_PAIRS_AT..).unwrap_or(&[]),
                        "NTLMv2 client blob",
                        cx,
                    );
                }
                _ => cx.posture.anomaly(
                    cx.frame,
                    "ntlmssp.v2-blob-malformed",
                    format!("NTLMv2 response of {n} bytes without a RespType 1 blob"),
                ),
            }
            Mechanism::Ntlmv2
        }
        n => {
            cx.posture.anomaly(
                cx.frame,
                "ntlmssp.nt-response-length",
                format!("NT response of {n} bytes is neither NTLMv1 nor NTLMv2"),
            );
            Mechanism::Ntlm
        }
    }
}

fn v1_facts(cx: &mut Ctx, ess: bool) {
    cx.posture.fact("ntlmssp.version", "v1");
    cx.posture.fact("ntlmssp.v1-crackable", "yes");
    if ess {
        cx.posture.fact("ntlmssp.v1-ess", "yes");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Posture;

    /// Builds an NTLMSSP message: a zeroed fixed part of `fixed` bytes with signature,
    /// type and flags, then each payload appended in order, its (Len, MaxLen, Offset)
    /// descriptor written at the given position.
    pub(crate) fn build(
        kind: u32,
        fixed: usize,
        flags_at: usize,
        flags: u32,
        fields: &[(usize, &[u8])],
    ) -> Vec<u8> {
        let mut m = vec![0u8; fixed];
        m[..8].copy_from_slice(SIGNATURE);
        m[8..12].copy_from_slice(&kind.to_le_bytes());
        m[flags_at..flags_at + 4].copy_from_slice(&flags.to_le_bytes());
        for (at, payload) in fields {
            let len = payload.len() as u16;
            let offset = m.len() as u32;
            m[*at..*at + 2].copy_from_slice(&len.to_le_bytes());
            m[*at + 2..*at + 4].copy_from_slice(&len.to_le_bytes());
            m[*at + 4..*at + 8].copy_from_slice(&offset.to_le_bytes());
            m.extend_from_slice(payload);
        }
        m
    }

    pub(crate) fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    pub(crate) fn negotiate(flags: u32) -> Vec<u8> {
        build(1, 32, 12, flags, &[])
    }

    /// CHALLENGE with a Unicode target name and the given AV pair list bytes.
    pub(crate) fn challenge(flags: u32, target: &[u8], target_info: &[u8]) -> Vec<u8> {
        build(2, 48, 20, flags, &[(12, target), (40, target_info)])
    }

    fn authenticate(flags: u32, lm: &[u8], nt: &[u8], d: &str, u: &str, w: &str) -> Vec<u8> {
        let (d, u, w) = (utf16(d), utf16(u), utf16(w));
        let fields: [(usize, &[u8]); 5] = [(12, lm), (20, nt), (28, &d), (36, &u), (44, &w)];
        build(3, 64, 60, flags, &fields)
    }

    /// AV pair bytes: (AvId, value) then MsvAvEOL.
    fn av(list: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, v) in list {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
            out.extend_from_slice(v);
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out
    }

    /// NTLMv2 response: NTProofStr, blob header (RespType 1), one AV pair, EOL.
    fn v2_response() -> Vec<u8> {
        let mut nt = vec![0xab; 16]; // NTProofStr
        nt.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]); // RespType, HiRespType, reserved
        nt.extend_from_slice(&[0x11; 8]); // TimeStamp
        nt.extend_from_slice(&[0x22; 8]); // ChallengeFromClient
        nt.extend_from_slice(&[0; 4]); // Reserved3
        nt.extend_from_slice(&av(&[(9, &utf16("cifs/fs1.contoso.com"))]));
        nt
    }

    pub(crate) fn authenticate_v2(domain: &str, user: &str, ws: &str) -> Vec<u8> {
        authenticate(0xe288_8215, &[0; 24], &v2_response(), domain, user, ws)
    }

    fn run(msg: &[u8]) -> (Posture, TokenSummary) {
        let mut p = Posture::default();
        let s = {
            let mut cx = Ctx {
                limits: &crate::limits::ProtoLimits::DEFAULT,
                frame: 8,
                ts_ns: 0,
                client_port: 50000,
                server_port: 445,
                posture: &mut p,
            };
            inspect(msg, &mut cx, "SMB2 SESSION_SETUP")
        };
        (p, s)
    }

    fn kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn negotiate_records_requested_flags_and_oem_names() {
        // Flags: UNICODE|OEM|REQUEST_TARGET|SIGN|SEAL|NTLM|OEM_DOMAIN|OEM_WS|ESS|128|KEY_EXCH|56.
        let flags = 0xe008_3237;
        let msg = build(1, 32, 12, flags, &[(16, b"CONTOSO"), (24, b"WS1")]);
        let (p, s) = run(&msg);
        assert_eq!(s.kind, "ntlmssp.negotiate");
        assert_eq!(s.mechanism, Some(Mechanism::Ntlm));
        assert_eq!(s.ntlm_flags, Some(flags));
        assert!(p.has_fact("ntlmssp.message", "NEGOTIATE"));
        for f in ["sign", "seal", "128", "56", "key-exch", "ess"] {
            assert!(p.has_fact("ntlmssp.flags-requested", f), "{f}");
        }
        assert!(
            !p.facts.contains_key("ntlmssp.flags"),
            "requests are not negotiated flags"
        );
        assert!(p.has_fact("ntlmssp.domain", "CONTOSO"));
        assert!(p.has_fact("ntlmssp.workstation", "WS1"));
        assert!(p.auth.is_empty() && p.anomalies.is_empty());
    }

    #[test]
    fn short_negotiate_of_16_bytes_is_accepted() {
        let (p, s) = run(&build(1, 16, 12, 0x0000_0207, &[]));
        assert_eq!(s.ntlm_flags, Some(0x207));
        assert!(p.anomalies.is_empty());
    }

    #[test]
    fn challenge_records_target_names() {
        let info = av(&[
            (2, &utf16("CONTOSO")),
            (1, &utf16("SERVER002")),
            (4, &utf16("contoso.com")),
            (3, &utf16("SERVER002.contoso.com")),
        ]);
        let (p, s) = run(&challenge(0xe289_8235, &utf16("CONTOSO"), &info));
        assert_eq!(s.kind, "ntlmssp.challenge");
        assert!(p.has_fact("ntlmssp.message", "CHALLENGE"));
        assert!(p.has_fact("ntlmssp.target-name", "CONTOSO"));
        assert!(p.has_fact("ntlmssp.target.nb-domain", "CONTOSO"));
        assert!(p.has_fact("ntlmssp.target.nb-computer", "SERVER002"));
        assert!(p.has_fact("ntlmssp.target.dns-domain", "contoso.com"));
        assert!(p.has_fact("ntlmssp.target.dns-computer", "SERVER002.contoso.com"));
        assert!(p.has_fact("ntlmssp.flags", "seal"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn challenge_with_empty_av_list_is_an_anomaly() {
        // TARGET_INFO flag set, TargetInfo length 0 (zeek ntlm-empty-av-sequence case).
        let (p, _) = run(&challenge(0x0080_8201, b"", &[]));
        assert_eq!(kinds(&p), ["ntlmssp.av-pairs-empty"]);
    }

    #[test]
    fn challenge_with_unterminated_av_list_is_an_anomaly() {
        let mut info = av(&[(1, &utf16("SRV"))]);
        info.truncate(info.len() - 4); // drop MsvAvEOL
        let (p, _) = run(&challenge(0x0080_8201, b"", &info));
        assert_eq!(kinds(&p), ["ntlmssp.av-pairs-unterminated"]);
        assert!(
            p.has_fact("ntlmssp.target.nb-computer", "SRV"),
            "pairs before the end kept"
        );
        let mut info = av(&[(1, &utf16("SRV"))]);
        info.truncate(info.len() - 6); // AvLen now runs past the list
        let (p, _) = run(&challenge(0x0080_8201, b"", &info));
        assert_eq!(kinds(&p), ["ntlmssp.av-pair-truncated"]);
    }

    #[test]
    fn authenticate_v2_names_user_and_version() {
        let (p, s) = run(&authenticate_v2("CONTOSO", "alice", "WS1"));
        assert_eq!(s.kind, "ntlmssp.authenticate");
        assert_eq!(s.mechanism, Some(Mechanism::Ntlmv2));
        assert_eq!(s.user.as_deref(), Some("CONTOSO\\alice"));
        assert!(p.has_fact("ntlmssp.version", "v2"));
        assert!(p.has_fact("ntlmssp.user", "alice"));
        assert!(p.has_fact("ntlmssp.domain", "CONTOSO"));
        assert!(p.has_fact("ntlmssp.workstation", "WS1"));
        assert!(p.has_fact("ntlmssp.target.spn", "cifs/fs1.contoso.com"));
        assert_eq!(p.auth.len(), 1);
        let ev = &p.auth[0];
        assert_eq!(ev.mechanism, Mechanism::Ntlmv2);
        assert_eq!(ev.user.as_deref(), Some("CONTOSO\\alice"));
        assert!(!ev.cleartext && ev.secret.is_none());
        assert_eq!((ev.frame, ev.context.as_str()), (8, "SMB2 SESSION_SETUP"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn authenticate_v1_with_lm_response_is_flagged() {
        // No ESS: a real LM response (non-zero, different from the NT response).
        let msg = authenticate(0x0000_8201, &[0x5a; 24], &[0xa5; 24], "", "bob", "WS1");
        let (p, s) = run(&msg);
        assert_eq!(s.mechanism, Some(Mechanism::Ntlmv1));
        assert_eq!(s.user.as_deref(), Some("bob"), "no domain: plain user");
        assert!(p.has_fact("ntlmssp.version", "v1"));
        assert!(p.has_fact("ntlmssp.v1-crackable", "yes"));
        assert!(p.has_fact("ntlmssp.lm-response", "present"));
        assert!(!p.facts.contains_key("ntlmssp.v1-ess"));
        assert_eq!(p.auth[0].mechanism, Mechanism::Ntlmv1);
    }

    #[test]
    fn authenticate_v1_ess_is_still_v1() {
        // ESS: the LM field holds the client challenge padded with zeros.
        let mut lm = vec![0x33; 8];
        lm.extend_from_slice(&[0; 16]);
        let msg = authenticate(0x0008_8201, &lm, &[0xa5; 24], "D", "bob", "WS1");
        let (p, s) = run(&msg);
        assert_eq!(s.mechanism, Some(Mechanism::Ntlmv1));
        assert!(p.has_fact("ntlmssp.v1-ess", "yes"));
        assert!(!p.facts.contains_key("ntlmssp.lm-response"));
    }

    #[test]
    fn authenticate_anonymous() {
        // Empty user, empty NT response, LM response Z(1).
        let msg = authenticate(0x0000_0a01, &[0], &[], "", "", "WS1");
        let (p, s) = run(&msg);
        assert_eq!(s.mechanism, Some(Mechanism::Anonymous));
        assert_eq!(s.user, None);
        assert_eq!(p.auth[0].mechanism, Mechanism::Anonymous);
        assert!(p.has_fact("ntlmssp.flags", "anonymous"));
        assert!(!p.facts.contains_key("ntlmssp.version"));
    }

    #[test]
    fn authenticate_oem_strings_without_unicode_flag() {
        let fields: [(usize, &[u8]); 5] = [
            (12, &[0; 24]),
            (20, &[7; 24]),
            (28, b"DOM"),
            (36, b"carol"),
            (44, b"W\x01"),
        ];
        let (p, s) = run(&build(3, 64, 60, 0x0000_0202, &fields));
        assert_eq!(s.user.as_deref(), Some("DOM\\carol"));
        assert!(
            p.has_fact("ntlmssp.workstation", "W\u{fffd}"),
            "control byte replaced"
        );
    }

    #[test]
    fn field_out_of_range_is_an_anomaly_not_a_panic() {
        let mut msg = authenticate_v2("CONTOSO", "alice", "WS1");
        // UserName offset (descriptor at 36, offset at 40) moved past the end.
        msg[40..44].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        // NtChallengeResponse length made longer than the message.
        msg[20..22].copy_from_slice(&0xfff0u16.to_le_bytes());
        let (p, s) = run(&msg);
        assert_eq!(
            kinds(&p),
            ["ntlmssp.field-out-of-range", "ntlmssp.field-out-of-range"]
        );
        assert_eq!(
            s.mechanism,
            Some(Mechanism::Ntlm),
            "version unknown without NT response"
        );
        assert_eq!(s.user.as_deref(), Some("CONTOSO\\"));
    }

    #[test]
    fn truncated_messages_are_anomalies() {
        for (msg, kind) in [
            (b"NTLMSSP\0\x01".to_vec(), "ntlmssp.truncated"),
            (build(2, 24, 20, 0, &[]), "ntlmssp.truncated"),
            (
                b"NTLMSSP\0\x09\0\0\0".to_vec(),
                "ntlmssp.unknown-message-type",
            ),
        ] {
            let (p, _) = run(&msg);
            assert_eq!(kinds(&p), [kind]);
        }
        let full = authenticate_v2("CONTOSO", "alice", "WS1");
        let (p, s) = run(&full[..40]);
        assert_eq!(kinds(&p), ["ntlmssp.truncated"]);
        assert_eq!(s.mechanism, Some(Mechanism::Ntlm));
        assert_eq!(p.auth.len(), 1, "a cut AUTHENTICATE is still NTLM");
        for cut in 0..full.len() {
            run(&full[..cut]);
        }
    }

    #[test]
    fn odd_nt_response_length_and_bad_v2_blob() {
        let (p, s) = run(&authenticate(0x201, &[], &[1; 10], "D", "u", "w"));
        assert_eq!(kinds(&p), ["ntlmssp.nt-response-length"]);
        assert_eq!(s.mechanism, Some(Mechanism::Ntlm));
        let (p, s) = run(&authenticate(0x201, &[], &[9; 40], "D", "u", "w"));
        assert_eq!(kinds(&p), ["ntlmssp.v2-blob-malformed"]);
        assert_eq!(s.mechanism, Some(Mechanism::Ntlmv2));
    }

    #[test]
    fn long_and_odd_names_are_cut_with_anomalies() {
        let long = "x".repeat(MAX_NAME_CHARS + 10);
        let (p, s) = run(&authenticate(0x201, &[], &v2_response(), "", &long, "w"));
        assert_eq!(s.user.map(|u| u.chars().count()), Some(MAX_NAME_CHARS));
        assert!(kinds(&p).contains(&"ntlmssp.name-too-long"));
        let fields: [(usize, &[u8]); 3] = [(20, &[7; 24]), (28, b"ABC"), (36, &[b'u', 0])];
        let (p, _) = run(&build(3, 64, 60, 0x1, &fields));
        assert!(kinds(&p).contains(&"ntlmssp.odd-utf16-length"));
    }

    #[test]
    fn names_decode_from_utf16_with_control_characters_replaced() {
        let mut p = Posture::default();
        let mut cx = crate::proto::testutil::ctx(&mut p, 1, 445);
        let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
        for (name, want) in [
            ("CONTOSO\\alice", "CONTOSO\\alice"),
            ("M\u{fc}ller", "M\u{fc}ller"),
            ("a\u{1}b\u{7f}", "a\u{fffd}b\u{fffd}"),
            ("", ""),
        ] {
            assert_eq!(decode_name(&utf16(name), true, "name", &mut cx), want);
        }
        // A lone surrogate is replaced too.
        assert_eq!(
            decode_name(&[0x00, 0xd8, b'a', 0], true, "name", &mut cx),
            "\u{fffd}a"
        );
        assert_eq!(
            decode_name(b"HOST\x01", false, "name", &mut cx),
            "HOST\u{fffd}"
        );
        assert!(p.anomalies.is_empty());
    }
}
