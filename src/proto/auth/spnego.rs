//! SPNEGO (RFC 4178, MS-SPNG) and the GSS-API InitialContextToken (RFC 2743 3.1).
//!
//! Guarantees: DER is read with der-parser's BER reader, one element at a time, so a
//! length past the end of the token is the anomaly `spnego.der-truncated` and any other
//! encoding error `spnego.der-invalid`; nothing panics. The mechanism *offered*
//! (`spnego.mech-offered`, the client's preference list) is kept apart from the
//! mechanism *chosen* (`spnego.mech-chosen`): the one whose token is carried, or the
//! server's supportedMech. Embedded tokens are handed back to
//! `inspect_nested` in the parent module, one level deeper.

use super::{inspect_nested, kerberos, note_first_seen, TokenSummary, SPNEGO_FIRST_SEEN};
use crate::model::Mechanism;
use crate::proto::api::Ctx;
use der_parser::asn1_rs::{Any, Class, FromBer, Oid, Tag};
use std::borrow::Cow;

/// GSS InitialContextToken: `[APPLICATION 0]`, constructed (RFC 2743 3.1).
pub const TAG_GSS_INITIAL_CONTEXT: u8 = 0x60;
/// NegotiationToken choice negTokenInit `[0]` (RFC 4178 4.2).
pub const TAG_NEG_TOKEN_INIT: u8 = 0xa0;
/// NegotiationToken choice negTokenResp `[1]` (RFC 4178 4.2).
pub const TAG_NEG_TOKEN_RESP: u8 = 0xa1;
/// Every NegoEx message starts with this signature (MS-NEGOEX 2.2.6.1).
pub const NEGOEX_SIGNATURE: &[u8] = b"NEGOEXTS";

/// OID contents (the bytes after `06 len`).
pub const OID_SPNEGO: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02]; // 1.3.6.1.5.5.2
pub const OID_KERBEROS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02]; // 1.2.840.113554.1.2.2
pub const OID_KERBEROS_U2U: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x03]; // 1.2.840.113554.1.2.2.3
pub const OID_MS_KERBEROS: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02]; // 1.2.840.48018.1.2.2
pub const OID_NTLMSSP: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a]; // 1.3.6.1.4.1.311.2.2.10
pub const OID_NEGOEX: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x1e]; // 1.3.6.1.4.1.311.2.2.30

/// Most mechTypes read from one NegTokenInit. Windows offers four or five; the cap
/// bounds the facts a crafted list can create.
pub const MAX_MECH_TYPES: usize = 16;
/// Longest OID rendered as text, in encoded bytes; longer ones are not mechanisms.
pub const MAX_OID_LEN: usize = 64;

/// Name of a mechanism OID for facts: a known name, else the dotted OID.
pub fn mech_name(oid: &[u8]) -> String {
    match oid {
        OID_KERBEROS => "kerberos".into(),
        OID_MS_KERBEROS => "ms-kerberos".into(),
        OID_KERBEROS_U2U => "kerberos-u2u".into(),
        OID_NTLMSSP => "ntlmssp".into(),
        OID_NEGOEX => "negoex".into(),
        OID_SPNEGO => "spnego".into(),
        _ if oid.len() > MAX_OID_LEN => format!("oid-of-{}-bytes", oid.len()),
        _ => Oid::new(Cow::Borrowed(oid)).to_id_string(),
    }
}

/// The mechanism an OID names, for the summary.
fn mechanism_of(oid: &[u8]) -> Option<Mechanism> {
    match oid {
        OID_KERBEROS | OID_MS_KERBEROS => Some(Mechanism::Kerberos),
        OID_NTLMSSP => Some(Mechanism::Ntlm),
        _ => None,
    }
}

/// Read one BER element; on failure record a named anomaly.
fn element<'a>(data: &'a [u8], what: &str, cx: &mut Ctx) -> Option<(Any<'a>, &'a [u8])> {
    match Any::from_ber(data) {
        Ok((rest, any)) => Some((any, rest)),
        Err(e) => {
            let kind = match &e {
                nom::Err::Incomplete(_)
                | nom::Err::Error(der_parser::asn1_rs::Error::Incomplete(_))
                | nom::Err::Failure(der_parser::asn1_rs::Error::Incomplete(_)) => {
                    "spnego.der-truncated"
                }
                _ => "spnego.der-invalid",
            };
            cx.posture.anomaly(
                cx.frame,
                kind,
                format!("{what}: {e} ({} bytes)", data.len()),
            );
            None
        }
    }
}

fn is(any: &Any, class: Class, tag: u32) -> bool {
    any.header.class() == class && any.header.tag() == Tag(tag)
}

fn unexpected(cx: &mut Ctx, what: &str, any: &Any) {
    cx.posture.anomaly(
        cx.frame,
        "spnego.unexpected-tag",
        format!(
            "{what}: class {:?} tag {} where another was expected",
            any.header.class(),
            any.header.tag().0
        ),
    );
}

/// Inspect a GSS InitialContextToken (`data` starts with 0x60).
pub(crate) fn inspect_gss(
    data: &[u8],
    cx: &mut Ctx,
    context: &str,
    depth: usize,
) -> Option<TokenSummary> {
    let (outer, _) = element(data, "GSS InitialContextToken", cx)?;
    let (oid, inner) = element(outer.data, "GSS thisMech", cx)?;
    if !is(&oid, Class::Universal, 6) {
        unexpected(cx, "GSS thisMech", &oid);
        return None;
    }
    match oid.data {
        OID_SPNEGO => inspect_negotiation_token(inner, cx, context, depth),
        OID_KERBEROS | OID_MS_KERBEROS => kerberos::inspect_gss_krb5(inner, cx, context),
        OID_NTLMSSP => inspect_nested(inner, cx, context, depth + 1),
        other => {
            cx.posture.fact("gss.mech", mech_name(other));
            Some(TokenSummary::of_kind("unknown"))
        }
    }
}

/// Inspect a SPNEGO NegotiationToken (`data` starts with 0xa0 or 0xa1).
pub(crate) fn inspect_negotiation_token(
    data: &[u8],
    cx: &mut Ctx,
    context: &str,
    depth: usize,
) -> Option<TokenSummary> {
    note_first_seen(cx, SPNEGO_FIRST_SEEN, context);
    let (choice, _) = element(data, "SPNEGO NegotiationToken", cx)?;
    let init = if is(&choice, Class::ContextSpecific, 0) {
        true
    } else if is(&choice, Class::ContextSpecific, 1) {
        false
    } else {
        unexpected(cx, "SPNEGO NegotiationToken", &choice);
        return None;
    };
    let what = if init { "NegTokenInit" } else { "NegTokenResp" };
    let mut summary = TokenSummary::of_kind(if init { "spnego.init" } else { "spnego.resp" });
    let (seq, _) = element(choice.data, what, cx)?;
    if !is(&seq, Class::Universal, 16) {
        unexpected(cx, what, &seq);
        return Some(summary);
    }
    let mut rest = seq.data;
    while !rest.is_empty() {
        let Some((field, next)) = element(rest, what, cx) else {
            break;
        };
        rest = next;
        if field.header.class() != Class::ContextSpecific {
            unexpected(cx, what, &field);
            continue;
        }
        match (init, field.header.tag().0) {
            (true, 0) => mech_types(field.data, cx),
            (true, 2) | (false, 2) => {
                let Some((octets, _)) = element(field.data, "SPNEGO token", cx) else {
                    continue;
                };
                if let Some(inner) = inspect_nested(octets.data, cx, context, depth + 1) {
                    chosen_from_token(&inner, cx);
                    summary.mechanism = inner.mechanism.or(summary.mechanism);
                    summary.user = inner.user;
                    summary.ntlm_flags = inner.ntlm_flags;
                }
            }
            (false, 0) => neg_state(field.data, cx),
            (false, 1) => {
                let Some((oid, _)) = element(field.data, "supportedMech", cx) else {
                    continue;
                };
                cx.posture.fact("spnego.mech-chosen", mech_name(oid.data));
                if summary.mechanism.is_none() {
                    summary.mechanism = mechanism_of(oid.data);
                }
            }
            // reqFlags, negHints, mechListMIC: nothing the audit needs.
            _ => {}
        }
    }
    Some(summary)
}

/// The mechanism whose token a NegTokenInit/NegTokenResp actually carries.
fn chosen_from_token(inner: &TokenSummary, cx: &mut Ctx) {
    let name = if inner.kind.starts_with("ntlmssp") {
        "ntlmssp"
    } else if inner.kind.starts_with("krb5") {
        "kerberos"
    } else {
        return;
    };
    cx.posture.fact("spnego.mech-chosen", name);
}

fn mech_types(data: &[u8], cx: &mut Ctx) {
    let Some((list, _)) = element(data, "mechTypes", cx) else {
        return;
    };
    let mut rest = list.data;
    for _ in 0..MAX_MECH_TYPES {
        if rest.is_empty() {
            return;
        }
        let Some((oid, next)) = element(rest, "mechTypes", cx) else {
            return;
        };
        rest = next;
        if is(&oid, Class::Universal, 6) {
            cx.posture.fact("spnego.mech-offered", mech_name(oid.data));
        } else {
            unexpected(cx, "mechTypes", &oid);
        }
    }
    if !rest.is_empty() {
        cx.posture.anomaly(
            cx.frame,
            "spnego.too-many-mechs",
            format!("more than {MAX_MECH_TYPES} mechTypes; rest ignored"),
        );
    }
}

fn neg_state(data: &[u8], cx: &mut Ctx) {
    let Some((state, _)) = element(data, "negState", cx) else {
        return;
    };
    let name = match state.data {
        [0] => "accept-completed".to_string(),
        [1] => "accept-incomplete".to_string(),
        [2] => "reject".to_string(),
        [3] => "request-mic".to_string(),
        [n] => n.to_string(),
        _ => {
            cx.posture.anomaly(
                cx.frame,
                "spnego.der-invalid",
                format!("negState of {} bytes", state.data.len()),
            );
            return;
        }
    };
    cx.posture.fact("spnego.neg-state", name);
}

#[cfg(test)]
mod tests {
    use super::super::ntlmssp::tests::{authenticate_v2, negotiate};
    use super::super::tests::{ctx, hex};
    use super::super::{inspect_token, MAX_TOKEN_DEPTH};
    use super::*;
    use crate::model::Posture;

    /// DER TLV with a short or long length.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
            n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    fn oid(content: &[u8]) -> Vec<u8> {
        tlv(0x06, content)
    }

    /// GSS InitialContextToken(SPNEGO, NegTokenInit(mechTypes, mechToken)).
    fn gss_init(mechs: &[&[u8]], token: Option<&[u8]>) -> Vec<u8> {
        let list: Vec<u8> = mechs.iter().flat_map(|m| oid(m)).collect();
        let mut fields = tlv(0xa0, &tlv(0x30, &list));
        if let Some(t) = token {
            fields.extend(tlv(0xa2, &tlv(0x04, t)));
        }
        let init = tlv(0xa0, &tlv(0x30, &fields));
        let mut body = oid(OID_SPNEGO);
        body.extend(init);
        tlv(0x60, &body)
    }

    fn kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    /// SMB2 SESSION_SETUP request, frame 8 of zeek's smb_smb2.pcap: a SPNEGO NegTokenResp
    /// whose responseToken is an NTLMv2 AUTHENTICATE from CONTOSO\\Administrator on SERVER01.
    const REAL_SPNEGO_NTLMV2: &str = concat!(
        "a18201e7",                                                         // [1] NegTokenResp
        "308201e3",                                                         // SEQUENCE
        "a0030a0101",               // [0] negState ENUMERATED 1 accept-incomplete
        "a28201c6",                 // [2] responseToken
        "048201c2",                 // OCTET STRING, 450 bytes: NTLMSSP follows
        "4e544c4d5353500003000000", // NTLMSSP signature, MessageType 3 AUTHENTICATE
        "1800180090000000",         // LmChallengeResponse len 24 off 144
        "0a010a01a8000000",         // NtChallengeResponse len 266 off 168
        "0e000e0058000000",         // DomainName len 14 off 88
        "1a001a0066000000",         // UserName len 26 off 102
        "1000100080000000",         // Workstation len 16 off 128
        "10001000b2010000",         // EncryptedRandomSessionKey len 16 off 434
        "158288e2",                 // NegotiateFlags 0xe2888215
        "060071170000000f",         // Version
        "ecace01b091dd78758e49fd885628044", // MIC
        "43004f004e0054004f0053004f00", // "CONTOSO" UTF-16LE
        "410064006d0069006e006900730074007200610074006f007200", // "Administrator"
        "53004500520056004500520030003100", // "SERVER01"
        "000000000000000000000000000000000000000000000000", // LMv2 response (zero)
        "0f842a7e66fa9a6b76ee3fc96a2fa7f6", // NTProofStr
        "0101000000000000",         // RespType 1, HiRespType 1, reserved
        "58df7b2f54b4cc01",         // TimeStamp
        "9893fd6eaaccc574",         // ChallengeFromClient
        "00000000",                 // Reserved3
        "02000e0043004f004e0054004f0053004f000100120053004500520056004500", // AV pairs: NbDomainName, NbComputerName, DnsDomainName, DnsComputerName, DnsTreeName, Timestamp, Flags, SingleHost, ChannelBindings, EOL
        "52003000300032000400160063006f006e0074006f0073006f002e0063006f00",
        "6d0003002a005300450052005600450052003000300032002e0063006f006e00",
        "74006f0073006f002e0063006f006d000500160063006f006e0074006f007300",
        "6f002e0063006f006d000700080058df7b2f54b4cc0106000400020000000800",
        "300030000000000000000000000000300000a74aafecff55a2e6a2329bd6588c",
        "7964edac7378e2eb6289c1b679aef6b80f03000000000000000000000000",
        "52f655e3be2e928da15806d7d528af4f", // EncryptedRandomSessionKey
        "a31204100100000065983b70a7097b9300000000", // [3] mechListMIC OCTET STRING (16)
    );

    /// SMB2 SESSION_SETUP response, frame 14 of zeek's krb_smb2_krb.pcap: a SPNEGO NegTokenResp
    /// (accept-completed, MS Kerberos) whose responseToken is a GSS Kerberos AP-REP.
    const REAL_SPNEGO_AP_REP: &str = concat!(
        "a181b6",                                                           // [1] NegTokenResp
        "3081b3",                                                           // SEQUENCE
        "a0030a0100",                 // [0] negState ENUMERATED 0 accept-completed
        "a10b06092a864882f712010202", // [1] supportedMech 1.2.840.48018.1.2.2 (MS Kerberos)
        "a2819e04819b",               // [2] responseToken, OCTET STRING
        "608198",                     // GSS InitialContextToken [APPLICATION 0]
        "06092a864886f712010202",     // thisMech 1.2.840.113554.1.2.2 (Kerberos)
        "0200",                       // TOK_ID 02 00: AP-REP
        "6f8188",                     // AP-REP [APPLICATION 15]
        "308185",                     // SEQUENCE
        "a003020105",                 // [0] pvno 5
        "a10302010f",                 // [1] msg-type 15
        "a2793077a003020112a270046eec6df261f2543a57496851b29b27c80359f052", // [2] enc-part: etype 18, cipher
        "59af95c4d521006c496c5b85c4ba7d46dd99c07ade4f956bedf7a5544e15bf32",
        "18514bd7b700c092324cfc40054ca9ee1f46e2c4515e0ea2f2c42dee1d0e4ad4",
        "a087765f33506992f355cd42113ca01095855a5eeef142fbbb5231",
    );

    #[test]
    fn init_with_ntlm_token_offered_kerberos_but_chose_ntlm() {
        let tok = gss_init(
            &[OID_MS_KERBEROS, OID_KERBEROS, OID_NEGOEX, OID_NTLMSSP],
            Some(&negotiate(0xe208_8297)),
        );
        let mut p = Posture::default();
        let s = inspect_token(&tok, &mut ctx(&mut p, 6), "SMB2 SESSION_SETUP");
        let s = s.expect("a token");
        assert_eq!(s.kind, "spnego.init");
        assert_eq!(s.mechanism, Some(Mechanism::Ntlm));
        assert_eq!(s.ntlm_flags, Some(0xe208_8297));
        for m in ["ms-kerberos", "kerberos", "negoex", "ntlmssp"] {
            assert!(p.has_fact("spnego.mech-offered", m), "{m}");
        }
        assert_eq!(
            p.facts
                .get("spnego.mech-chosen")
                .map(|s| s.iter().collect::<Vec<_>>()),
            Some(vec!["ntlmssp"]),
            "mechTypes is a preference list, the token is what is used"
        );
        assert!(p.has_fact("ntlmssp.message", "NEGOTIATE"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn unknown_mech_oid_is_named_by_its_dotted_form() {
        let tok = gss_init(
            &[
                &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x81, 0x01],
                OID_KERBEROS_U2U,
            ],
            None,
        );
        let mut p = Posture::default();
        inspect_token(&tok, &mut ctx(&mut p, 1), "HTTP Authorization");
        assert!(p.has_fact("spnego.mech-offered", "1.3.6.1.4.1.129"));
        assert!(p.has_fact("spnego.mech-offered", "kerberos-u2u"));
        assert!(
            !p.facts.contains_key("spnego.mech-chosen"),
            "offered is not chosen"
        );
    }

    #[test]
    fn real_negtokenresp_with_ntlmv2_authenticate() {
        let mut p = Posture::default();
        let s = inspect_token(
            &hex(REAL_SPNEGO_NTLMV2),
            &mut ctx(&mut p, 8),
            "SMB2 SESSION_SETUP",
        );
        let s = s.expect("a token");
        assert_eq!(s.kind, "spnego.resp");
        assert_eq!(s.mechanism, Some(Mechanism::Ntlmv2));
        assert_eq!(s.user.as_deref(), Some("CONTOSO\\Administrator"));
        assert_eq!(s.ntlm_flags, Some(0xe288_8215));
        assert!(p.has_fact("spnego.neg-state", "accept-incomplete"));
        assert!(p.has_fact("spnego.mech-chosen", "ntlmssp"));
        assert!(p.has_fact("ntlmssp.workstation", "SERVER01"));
        assert!(p.has_fact("ntlmssp.target.dns-computer", "SERVER002.contoso.com"));
        for f in ["sign", "128", "56", "key-exch", "ess"] {
            assert!(p.has_fact("ntlmssp.flags", f), "{f}");
        }
        assert!(
            !p.has_fact("ntlmssp.flags", "seal"),
            "this client signs but does not seal"
        );
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Ntlmv2);
        assert_eq!(p.auth[0].frame, 8);
        assert!(!p.auth[0].cleartext);
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn real_negtokenresp_with_kerberos_ap_rep() {
        let mut p = Posture::default();
        let s = inspect_token(
            &hex(REAL_SPNEGO_AP_REP),
            &mut ctx(&mut p, 14),
            "SMB2 SESSION_SETUP",
        );
        let s = s.expect("a token");
        assert_eq!(s.kind, "spnego.resp");
        assert_eq!(s.mechanism, Some(Mechanism::Kerberos));
        assert!(p.has_fact("spnego.neg-state", "accept-completed"));
        assert!(p.has_fact("spnego.mech-chosen", "ms-kerberos"));
        assert!(p.has_fact("krb5.msg-type", "AP-REP"));
        assert!(p.has_fact("krb5.etype-used", "aes256-cts-hmac-sha1-96"));
        assert!(p.auth.is_empty(), "an AP-REP alone names no client");
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn der_length_past_end_is_truncated_not_a_panic() {
        let tok = hex(REAL_SPNEGO_NTLMV2);
        for cut in 0..tok.len() {
            let mut p = Posture::default();
            inspect_token(&tok[..cut], &mut ctx(&mut p, 2), "test");
        }
        let mut p = Posture::default();
        inspect_token(&tok[..100], &mut ctx(&mut p, 2), "test");
        assert_eq!(kinds(&p), ["spnego.der-truncated"]);
        let mut p = Posture::default();
        // GSS header claiming 0x7f bytes with 3 present.
        inspect_token(&[0x60, 0x7f, 0x06, 0x01, 0x00], &mut ctx(&mut p, 2), "test");
        assert_eq!(kinds(&p), ["spnego.der-truncated"]);
    }

    #[test]
    fn wrong_tags_are_named_anomalies() {
        let mut p = Posture::default();
        // GSS token whose first element is an INTEGER, not an OID.
        inspect_token(&[0x60, 0x03, 0x02, 0x01, 0x05], &mut ctx(&mut p, 2), "test");
        assert_eq!(kinds(&p), ["spnego.unexpected-tag"]);
        let mut p = Posture::default();
        // NegTokenInit holding an OCTET STRING instead of a SEQUENCE.
        inspect_token(&[0xa0, 0x02, 0x04, 0x00], &mut ctx(&mut p, 2), "test");
        assert_eq!(kinds(&p), ["spnego.unexpected-tag"]);
    }

    #[test]
    fn recursion_is_bounded() {
        // mechToken holding a GSS SPNEGO token holding another, far past the limit.
        let mut tok = authenticate_v2("D", "u", "w");
        for _ in 0..(MAX_TOKEN_DEPTH + 3) {
            tok = gss_init(&[OID_NTLMSSP], Some(&tok));
        }
        let mut p = Posture::default();
        let s = inspect_token(&tok, &mut ctx(&mut p, 3), "test");
        assert_eq!(s.map(|s| s.kind), Some("spnego.init"));
        assert_eq!(kinds(&p), ["auth.token-depth"]);
        assert!(p.auth.is_empty(), "the too-deep AUTHENTICATE was not read");
    }

    #[test]
    fn negoex_token_is_recognised() {
        let mut token = NEGOEX_SIGNATURE.to_vec();
        token.extend_from_slice(&[0; 16]);
        let tok = gss_init(&[OID_NEGOEX, OID_NTLMSSP], Some(&token));
        let mut p = Posture::default();
        inspect_token(&tok, &mut ctx(&mut p, 3), "test");
        assert!(p.has_fact("spnego.mech-chosen", "negoex"));
    }
}
