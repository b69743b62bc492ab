//! Kerberos 5 messages (RFC 4120) as facts: the GSS-API tokens (RFC 4121 4.1: AP-REQ,
//! AP-REP, KRB-ERROR behind a two-byte token id) and the KDC exchange that the port-88
//! analyzer ([`crate::proto::kerberos`]) hands over one message at a time.
//!
//! Guarantees: parsing is kerberos-parser's DER reader over the borrowed bytes; a
//! message it rejects is the anomaly `krb5.truncated` (length past the end) or
//! `krb5.malformed` (anything else), never a panic. Names are cut to
//! [`MAX_NAME_CHARS`] and control characters replaced. Kerberos keeps its secrets
//! encrypted, so no event here is ever marked cleartext; what the audit learns is who
//! asked for which service, with which encryption types, and whether pre-authentication
//! was used.

use super::{auth_event, note_first_seen, TokenSummary, KRB5_FIRST_SEEN};
use crate::model::Mechanism;
use crate::proto::api::Ctx;
use der_parser::asn1_rs::{Error as DerError, FromDer};
use kerberos_parser::krb5::{
    ApRep, ApReq, EncryptionType, KdcRep, KdcReq, KrbError, PAType, PrincipalName, Realm,
};
use kerberos_parser::krb5_parser::{parse_as_rep, parse_as_req, parse_tgs_rep, parse_tgs_req};
use std::borrow::Cow;

/// APPLICATION tags of Kerberos messages as their first DER byte (RFC 4120 5.4-5.9).
pub const TAG_AS_REQ: u8 = 0x6a;
pub const TAG_AS_REP: u8 = 0x6b;
pub const TAG_TGS_REQ: u8 = 0x6c;
pub const TAG_TGS_REP: u8 = 0x6d;
pub const TAG_AP_REQ: u8 = 0x6e;
pub const TAG_AP_REP: u8 = 0x6f;
pub const TAG_KRB_ERROR: u8 = 0x7e;

/// Longest principal or realm kept, in characters (RFC 4120 sets no limit; real names
/// are far shorter, and reports stay readable).
pub const MAX_NAME_CHARS: usize = 256;

/// GSS-API krb5 token identifier (RFC 4121 4.1), unknown values kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GssTokenId(pub [u8; 2]);

impl GssTokenId {
    pub const AP_REQ: GssTokenId = GssTokenId([0x01, 0x00]);
    pub const AP_REP: GssTokenId = GssTokenId([0x02, 0x00]);
    pub const KRB_ERROR: GssTokenId = GssTokenId([0x03, 0x00]);
}

/// Name of an encryption type (RFC 3961 8, RFC 8009, RFC 4757), else its number.
pub fn etype_name(etype: EncryptionType) -> Cow<'static, str> {
    let name = match etype.0 {
        1 => "des-cbc-crc",
        2 => "des-cbc-md4",
        3 => "des-cbc-md5",
        5 => "des3-cbc-md5",
        7 => "des3-cbc-sha1",
        16 => "des3-cbc-sha1-kd",
        17 => "aes128-cts-hmac-sha1-96",
        18 => "aes256-cts-hmac-sha1-96",
        19 => "aes128-cts-hmac-sha256-128",
        20 => "aes256-cts-hmac-sha384-192",
        23 => "rc4-hmac",
        24 => "rc4-hmac-exp",
        25 => "camellia128-cts-cmac",
        26 => "camellia256-cts-cmac",
        -128 => "rc4-md4",
        -133 => "rc4-hmac-old",
        -135 => "rc4-hmac-old-exp",
        n => return Cow::Owned(n.to_string()),
    };
    Cow::Borrowed(name)
}

/// `"<code> <name>"` of a KRB-ERROR code (RFC 4120 7.5.9), the name when known.
pub fn error_name(code: i32) -> String {
    let name = match code {
        0 => "none",
        6 => "c-principal-unknown",
        7 => "s-principal-unknown",
        12 => "policy",
        14 => "etype-nosupp",
        16 => "padata-type-nosupp",
        18 => "client-revoked",
        23 => "key-expired",
        24 => "preauth-failed",
        25 => "preauth-required",
        31 => "ap-err-bad-integrity",
        32 => "ap-err-tkt-expired",
        34 => "ap-err-repeat",
        37 => "ap-err-skew",
        41 => "ap-err-modified",
        52 => "response-too-big",
        60 => "generic",
        68 => "wrong-realm",
        _ => return code.to_string(),
    };
    format!("{code} {name}")
}

fn clean(s: &str) -> String {
    s.chars()
        .take(MAX_NAME_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `name/instance@REALM`.
fn principal(name: &PrincipalName, realm: &Realm) -> String {
    clean(&format!("{}@{}", name.name_string.join("/"), realm.0))
}

fn parse_failed(cx: &mut Ctx, what: &str, e: &nom::Err<DerError>) {
    let kind = match e {
        nom::Err::Incomplete(_)
        | nom::Err::Error(DerError::Incomplete(_))
        | nom::Err::Failure(DerError::Incomplete(_)) => "krb5.truncated",
        _ => "krb5.malformed",
    };
    cx.posture.anomaly(cx.frame, kind, format!("{what}: {e}"));
}

fn etype_used(cx: &mut Ctx, etype: EncryptionType) {
    cx.posture.fact("krb5.etype-used", etype_name(etype));
}

/// Inspect the inner token of a GSS InitialContextToken whose mechanism is Kerberos:
/// two bytes of token id, then the Kerberos message.
pub(crate) fn inspect_gss_krb5(inner: &[u8], cx: &mut Ctx, context: &str) -> Option<TokenSummary> {
    note_first_seen(cx, KRB5_FIRST_SEEN, context);
    let (Some(&a), Some(&b)) = (inner.first(), inner.get(1)) else {
        cx.posture.anomaly(
            cx.frame,
            "krb5.truncated",
            "GSS Kerberos token without its token id",
        );
        return None;
    };
    let msg = inner.get(2..).unwrap_or(&[]);
    match GssTokenId([a, b]) {
        GssTokenId::AP_REQ => Some(ap_req(msg, cx, context)),
        GssTokenId::AP_REP => Some(ap_rep(msg, cx)),
        GssTokenId::KRB_ERROR => Some(krb_error(msg, cx)),
        GssTokenId(id) => {
            cx.posture.anomaly(
                cx.frame,
                "krb5.gss-token-id",
                format!("GSS Kerberos token id {:02x} {:02x}", id[0], id[1]),
            );
            Some(TokenSummary::of_kind("unknown"))
        }
    }
}

/// Inspect a bare Kerberos AP-REQ, AP-REP or KRB-ERROR (no GSS header).
pub(crate) fn inspect_raw(data: &[u8], cx: &mut Ctx, context: &str) -> Option<TokenSummary> {
    note_first_seen(cx, KRB5_FIRST_SEEN, context);
    match data.first() {
        Some(&TAG_AP_REQ) => Some(ap_req(data, cx, context)),
        Some(&TAG_AP_REP) => Some(ap_rep(data, cx)),
        Some(&TAG_KRB_ERROR) => Some(krb_error(data, cx)),
        _ => None,
    }
}

fn ap_req(msg: &[u8], cx: &mut Ctx, context: &str) -> TokenSummary {
    cx.posture.fact("krb5.msg-type", "AP-REQ");
    match ApReq::from_der(msg) {
        Ok((_, req)) => {
            let service = principal(&req.ticket.sname, &req.ticket.realm);
            cx.posture.fact("krb5.service", service);
            etype_used(cx, req.ticket.enc_part.etype);
            etype_used(cx, req.authenticator.etype);
        }
        Err(e) => parse_failed(cx, "AP-REQ", &e),
    }
    // The token id already says Kerberos was used, even if the body is damaged; the
    // client name is inside the encrypted authenticator, so it stays unknown.
    cx.posture
        .add_auth(auth_event(cx, Mechanism::Kerberos, None, context));
    TokenSummary {
        kind: "krb5.ap-req",
        mechanism: Some(Mechanism::Kerberos),
        ..TokenSummary::default()
    }
}

fn ap_rep(msg: &[u8], cx: &mut Ctx) -> TokenSummary {
    cx.posture.fact("krb5.msg-type", "AP-REP");
    match ApRep::from_der(msg) {
        Ok((_, rep)) => etype_used(cx, rep.enc_part.etype),
        Err(e) => parse_failed(cx, "AP-REP", &e),
    }
    TokenSummary {
        kind: "krb5.ap-rep",
        mechanism: Some(Mechanism::Kerberos),
        ..TokenSummary::default()
    }
}

fn krb_error(msg: &[u8], cx: &mut Ctx) -> TokenSummary {
    cx.posture.fact("krb5.msg-type", "KRB-ERROR");
    match KrbError::from_der(msg) {
        Ok((_, err)) => {
            cx.posture.fact("krb5.error", error_name(err.error_code.0));
            if let Some(cname) = &err.cname {
                let realm = err.crealm.as_ref().unwrap_or(&err.realm);
                cx.posture.fact("krb5.client", principal(cname, realm));
            }
            cx.posture
                .fact("krb5.service", principal(&err.sname, &err.realm));
        }
        Err(e) => parse_failed(cx, "KRB-ERROR", &e),
    }
    TokenSummary {
        kind: "krb5.error",
        mechanism: Some(Mechanism::Kerberos),
        ..TokenSummary::default()
    }
}

/// Record one message of a KDC exchange (port 88): AS-REQ, AS-REP, TGS-REQ, TGS-REP or
/// KRB-ERROR, as the first DER byte says. Anything else is `krb5.unexpected-message`.
pub(crate) fn record_kdc_message(msg: &[u8], cx: &mut Ctx) {
    match msg.first() {
        Some(&TAG_AS_REQ) => match parse_as_req(msg) {
            Ok((_, req)) => kdc_req("AS-REQ", &req, cx),
            Err(e) => {
                cx.posture.fact("krb5.msg-type", "AS-REQ");
                parse_failed(cx, "AS-REQ", &e);
            }
        },
        Some(&TAG_TGS_REQ) => match parse_tgs_req(msg) {
            Ok((_, req)) => kdc_req("TGS-REQ", &req, cx),
            Err(e) => {
                cx.posture.fact("krb5.msg-type", "TGS-REQ");
                parse_failed(cx, "TGS-REQ", &e);
            }
        },
        Some(&TAG_AS_REP) => match parse_as_rep(msg) {
            Ok((_, rep)) => kdc_rep("AS-REP", &rep, cx),
            Err(e) => {
                cx.posture.fact("krb5.msg-type", "AS-REP");
                parse_failed(cx, "AS-REP", &e);
            }
        },
        Some(&TAG_TGS_REP) => match parse_tgs_rep(msg) {
            Ok((_, rep)) => kdc_rep("TGS-REP", &rep, cx),
            Err(e) => {
                cx.posture.fact("krb5.msg-type", "TGS-REP");
                parse_failed(cx, "TGS-REP", &e);
            }
        },
        Some(&TAG_KRB_ERROR) => {
            krb_error(msg, cx);
        }
        first => cx.posture.anomaly(
            cx.frame,
            "krb5.unexpected-message",
            match first {
                Some(b) => format!("message starting with {b:#04x} on the KDC port"),
                None => "empty message on the KDC port".to_string(),
            },
        ),
    }
}

fn kdc_req(kind: &'static str, req: &KdcReq, cx: &mut Ctx) {
    cx.posture.fact("krb5.msg-type", kind);
    let body = &req.req_body;
    for etype in &body.etype {
        cx.posture.fact("krb5.etype-offered", etype_name(*etype));
    }
    if let Some(sname) = &body.sname {
        cx.posture
            .fact("krb5.service", principal(sname, &body.realm));
    }
    let context = format!("Kerberos {kind}");
    if kind == "AS-REQ" {
        let preauth = req
            .padata
            .iter()
            .any(|pa| pa.padata_type == PAType::PA_ENC_TS);
        cx.posture
            .fact("krb5.preauth", if preauth { "yes" } else { "no" });
        // In an AS-REQ the realm of the body is the client's realm (RFC 4120 5.4.1).
        let user = body.cname.as_ref().map(|c| principal(c, &body.realm));
        if let Some(u) = &user {
            cx.posture.fact("krb5.client", u.clone());
        }
        cx.posture
            .add_auth(auth_event(cx, Mechanism::Kerberos, user, &context));
    } else {
        // The client is named only inside the encrypted TGT it presents.
        cx.posture
            .add_auth(auth_event(cx, Mechanism::Kerberos, None, &context));
    }
}

fn kdc_rep(kind: &'static str, rep: &KdcRep, cx: &mut Ctx) {
    cx.posture.fact("krb5.msg-type", kind);
    cx.posture
        .fact("krb5.client", principal(&rep.cname, &rep.crealm));
    cx.posture.fact(
        "krb5.service",
        principal(&rep.ticket.sname, &rep.ticket.realm),
    );
    etype_used(cx, rep.ticket.enc_part.etype);
    etype_used(cx, rep.enc_part.etype);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::inspect_token;
    use super::super::tests::{ctx, hex};
    use super::*;
    use crate::model::Posture;

    /// DER TLV with a short or long length.
    pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
            n => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    fn int(n: u8) -> Vec<u8> {
        tlv(0x02, &[n])
    }

    fn gstr(s: &str) -> Vec<u8> {
        tlv(0x1b, s.as_bytes())
    }

    fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// PrincipalName { name-type [0], name-string [1] SEQUENCE OF GeneralString }.
    fn pname(kind: u8, parts: &[&str]) -> Vec<u8> {
        let names: Vec<Vec<u8>> = parts.iter().map(|p| gstr(p)).collect();
        seq(&[tlv(0xa0, &int(kind)), tlv(0xa1, &seq(&names))])
    }

    /// EncryptedData { etype [0], cipher [2] }.
    fn enc(etype: u8) -> Vec<u8> {
        seq(&[tlv(0xa0, &int(etype)), tlv(0xa2, &tlv(0x04, &[0xee; 16]))])
    }

    /// Ticket [APPLICATION 1] { tkt-vno 5, realm, sname, enc-part }.
    fn ticket(realm: &str, sname: &[&str], etype: u8) -> Vec<u8> {
        tlv(
            0x61,
            &seq(&[
                tlv(0xa0, &int(5)),
                tlv(0xa1, &gstr(realm)),
                tlv(0xa2, &pname(2, sname)),
                tlv(0xa3, &enc(etype)),
            ]),
        )
    }

    /// AP-REQ [APPLICATION 14] for HTTP/mail.contoso.com, ticket etype 18, authenticator 23.
    pub(crate) fn ap_req_bytes() -> Vec<u8> {
        tlv(
            TAG_AP_REQ,
            &seq(&[
                tlv(0xa0, &int(5)),                            // pvno
                tlv(0xa1, &int(14)),                           // msg-type
                tlv(0xa2, &tlv(0x03, &[0x00, 0x20, 0, 0, 0])), // ap-options: mutual-required
                tlv(
                    0xa3,
                    &ticket("CONTOSO.COM", &["HTTP", "mail.contoso.com"], 18),
                ),
                tlv(0xa4, &enc(23)), // authenticator
            ]),
        )
    }

    /// GSS InitialContextToken with the Kerberos OID, token id, message.
    pub(crate) fn gss_krb5(id: [u8; 2], msg: &[u8]) -> Vec<u8> {
        let mut body = tlv(
            0x06,
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02],
        );
        body.extend_from_slice(&id);
        body.extend_from_slice(msg);
        tlv(0x60, &body)
    }

    /// GeneralizedTime 2015-01-19 22:54:59Z.
    fn time() -> Vec<u8> {
        tlv(0x18, b"20150119225459Z")
    }

    /// KDC-REP (AS-REP when `tag` is 0x6b) for alice@CONTOSO.COM, krbtgt ticket.
    pub(crate) fn kdc_rep_bytes(tag: u8, msg_type: u8, ticket_etype: u8, enc_etype: u8) -> Vec<u8> {
        tlv(
            tag,
            &seq(&[
                tlv(0xa0, &int(5)),
                tlv(0xa1, &int(msg_type)),
                tlv(0xa3, &gstr("CONTOSO.COM")),
                tlv(0xa4, &pname(1, &["alice"])),
                tlv(
                    0xa5,
                    &ticket("CONTOSO.COM", &["krbtgt", "CONTOSO.COM"], ticket_etype),
                ),
                tlv(0xa6, &enc(enc_etype)),
            ]),
        )
    }

    /// TGS-REQ [APPLICATION 12] for cifs/fs1 offering rc4-hmac and des-cbc-md5, with a
    /// PA-TGS-REQ padata.
    pub(crate) fn tgs_req_bytes() -> Vec<u8> {
        let pa = seq(&[tlv(0xa1, &int(1)), tlv(0xa2, &tlv(0x04, &ap_req_bytes()))]);
        let body = seq(&[
            tlv(0xa0, &tlv(0x03, &[0, 0x40, 0x81, 0, 0])), // kdc-options
            tlv(0xa2, &gstr("CONTOSO.COM")),               // realm
            tlv(0xa3, &pname(2, &["cifs", "fs1.contoso.com"])),
            tlv(0xa5, &time()),                                      // till
            tlv(0xa7, &int(42)),                                     // nonce
            tlv(0xa8, &seq(&[int(23), int(3), tlv(0x02, &[0x7f])])), // etypes 23, 3, 127
        ]);
        tlv(
            TAG_TGS_REQ,
            &seq(&[
                tlv(0xa1, &int(5)),
                tlv(0xa2, &int(12)),
                tlv(0xa3, &seq(&[pa])),
                tlv(0xa4, &body),
            ]),
        )
    }

    /// KRB-ERROR [APPLICATION 30] code 25 for alice.
    pub(crate) fn krb_error_bytes() -> Vec<u8> {
        tlv(
            TAG_KRB_ERROR,
            &seq(&[
                tlv(0xa0, &int(5)),
                tlv(0xa1, &int(30)),
                tlv(0xa4, &time()),                               // stime
                tlv(0xa5, &int(0)),                               // susec
                tlv(0xa6, &int(25)),                              // error-code
                tlv(0xa8, &pname(1, &["alice"])),                 // cname
                tlv(0xa9, &gstr("CONTOSO.COM")),                  // realm
                tlv(0xaa, &pname(2, &["krbtgt", "CONTOSO.COM"])), // sname
            ]),
        )
    }

    /// AS-REQ, frame 1 of zeek's krb_kinit.pcap (UDP payload): no PA-ENC-TIMESTAMP.
    pub(crate) const REAL_AS_REQ: &str = concat!(
        "6a81af",                           // AS-REQ [APPLICATION 10]
        "3081ac",                           // SEQUENCE
        "a103020105",                       // [1] pvno 5
        "a20302010a",                       // [2] msg-type 10
        "a30e300c300aa10402020095a2020400", // [3] padata: type 149 (PA-REQ-ENC-PA-REP), empty
        "a4818f30818c",                     // [4] req-body SEQUENCE
        "a00703050000000010",               // [0] kdc-options: renewable-ok
        "a1233021a003020101a11a30181b1676616c69645f636c69656e745f7072696e636970616c", // [1] cname valid_client_principal
        "a20b1b09564c4144472e4e4554", // [2] realm VLADG.NET
        "a31e301ca003020102a11530131b066b72627467741b09564c4144472e4e4554", // [3] sname krbtgt/VLADG.NET
        "a511180f32303135303131393232353435395a",                           // [5] till
        "a70602047805a1eb",                                                 // [7] nonce
        "a814301202011202011102011002011702011902011a", // [8] etype 18 17 16 23 25 26
    );

    fn run_kdc(msg: &[u8]) -> Posture {
        let mut p = Posture::default();
        record_kdc_message(msg, &mut ctx(&mut p, 1));
        p
    }

    fn kinds(p: &Posture) -> Vec<&'static str> {
        p.anomalies.iter().map(|a| a.kind).collect()
    }

    #[test]
    fn real_as_req_names_client_service_etypes_and_no_preauth() {
        let p = run_kdc(&hex(REAL_AS_REQ));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert!(p.has_fact("krb5.msg-type", "AS-REQ"));
        assert!(p.has_fact("krb5.client", "valid_client_principal@VLADG.NET"));
        assert!(p.has_fact("krb5.service", "krbtgt/VLADG.NET@VLADG.NET"));
        assert!(p.has_fact("krb5.preauth", "no"));
        for e in [
            "aes256-cts-hmac-sha1-96",
            "aes128-cts-hmac-sha1-96",
            "des3-cbc-sha1-kd",
            "rc4-hmac",
            "camellia128-cts-cmac",
            "camellia256-cts-cmac",
        ] {
            assert!(p.has_fact("krb5.etype-offered", e), "{e}");
        }
        assert_eq!(p.auth.len(), 1);
        let ev = &p.auth[0];
        assert_eq!(ev.mechanism, Mechanism::Kerberos);
        assert_eq!(ev.user.as_deref(), Some("valid_client_principal@VLADG.NET"));
        assert!(!ev.cleartext && ev.secret.is_none());
        assert_eq!(ev.context, "Kerberos AS-REQ");
    }

    /// AS-REQ for bob@CONTOSO.COM with a PA-ENC-TIMESTAMP padata, offering aes256 only.
    fn as_req_preauth_bytes() -> Vec<u8> {
        let pa = seq(&[tlv(0xa1, &int(2)), tlv(0xa2, &tlv(0x04, &enc(18)))]);
        let body = seq(&[
            tlv(0xa0, &tlv(0x03, &[0, 0x40, 0x81, 0, 0x10])), // kdc-options
            tlv(0xa1, &pname(1, &["bob"])),                   // cname
            tlv(0xa2, &gstr("CONTOSO.COM")),                  // realm
            tlv(0xa3, &pname(2, &["krbtgt", "CONTOSO.COM"])), // sname
            tlv(0xa5, &time()),                               // till
            tlv(0xa7, &int(7)),                               // nonce
            tlv(0xa8, &seq(&[int(18)])),                      // etype
        ]);
        tlv(
            TAG_AS_REQ,
            &seq(&[
                tlv(0xa1, &int(5)),
                tlv(0xa2, &int(10)),
                tlv(0xa3, &seq(&[pa])),
                tlv(0xa4, &body),
            ]),
        )
    }

    #[test]
    fn as_req_with_enc_timestamp_is_preauth() {
        let p = run_kdc(&as_req_preauth_bytes());
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert!(p.has_fact("krb5.preauth", "yes"));
        assert!(!p.has_fact("krb5.preauth", "no"));
        assert_eq!(p.auth[0].user.as_deref(), Some("bob@CONTOSO.COM"));
    }

    #[test]
    fn tgs_req_names_service_and_unknown_etype_by_number() {
        let p = run_kdc(&tgs_req_bytes());
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert!(p.has_fact("krb5.msg-type", "TGS-REQ"));
        assert!(p.has_fact("krb5.service", "cifs/fs1.contoso.com@CONTOSO.COM"));
        assert!(p.has_fact("krb5.etype-offered", "rc4-hmac"));
        assert!(p.has_fact("krb5.etype-offered", "des-cbc-md5"));
        assert!(p.has_fact("krb5.etype-offered", "127"));
        assert!(
            !p.facts.contains_key("krb5.preauth"),
            "only meaningful for AS-REQ"
        );
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].user, None);
    }

    #[test]
    fn as_rep_and_tgs_rep_record_etypes_used() {
        let p = run_kdc(&kdc_rep_bytes(TAG_AS_REP, 11, 18, 23));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert!(p.has_fact("krb5.msg-type", "AS-REP"));
        assert!(p.has_fact("krb5.client", "alice@CONTOSO.COM"));
        assert!(p.has_fact("krb5.service", "krbtgt/CONTOSO.COM@CONTOSO.COM"));
        assert!(p.has_fact("krb5.etype-used", "aes256-cts-hmac-sha1-96"));
        assert!(p.has_fact("krb5.etype-used", "rc4-hmac"));
        assert!(
            p.auth.is_empty(),
            "the request is the authentication, not the reply"
        );
        let p = run_kdc(&kdc_rep_bytes(TAG_TGS_REP, 13, 1, 3));
        assert!(p.has_fact("krb5.msg-type", "TGS-REP"));
        assert!(p.has_fact("krb5.etype-used", "des-cbc-crc"));
        assert!(p.has_fact("krb5.etype-used", "des-cbc-md5"));
    }

    #[test]
    fn krb_error_preauth_required() {
        let p = run_kdc(&krb_error_bytes());
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert!(p.has_fact("krb5.msg-type", "KRB-ERROR"));
        assert!(p.has_fact("krb5.error", "25 preauth-required"));
        assert!(p.has_fact("krb5.client", "alice@CONTOSO.COM"));
    }

    #[test]
    fn malformed_kdc_messages_are_named() {
        let full = hex(REAL_AS_REQ);
        let p = run_kdc(&full[..60]);
        assert_eq!(kinds(&p), ["krb5.truncated"]);
        assert!(p.auth.is_empty());
        let mut bad = full.clone();
        bad[8] = 0x04; // pvno INTEGER turned into an OCTET STRING
        assert_eq!(kinds(&run_kdc(&bad)), ["krb5.malformed"]);
        assert_eq!(kinds(&run_kdc(&[0x30, 0x00])), ["krb5.unexpected-message"]);
        assert_eq!(kinds(&run_kdc(&[])), ["krb5.unexpected-message"]);
        for msg in [
            full,
            tgs_req_bytes(),
            kdc_rep_bytes(TAG_AS_REP, 11, 18, 18),
            krb_error_bytes(),
        ] {
            for cut in 0..msg.len() {
                run_kdc(&msg[..cut]);
            }
        }
    }

    #[test]
    fn gss_ap_req_is_kerberos_without_user() {
        let mut p = Posture::default();
        let tok = gss_krb5([1, 0], &ap_req_bytes());
        let s = inspect_token(&tok, &mut ctx(&mut p, 12), "LDAP SASL bind");
        let s = s.expect("a token");
        assert_eq!(s.kind, "krb5.ap-req");
        assert_eq!(s.mechanism, Some(Mechanism::Kerberos));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
        assert!(p.has_fact("krb5.service", "HTTP/mail.contoso.com@CONTOSO.COM"));
        assert!(p.has_fact("krb5.etype-used", "aes256-cts-hmac-sha1-96"));
        assert!(p.has_fact("krb5.etype-used", "rc4-hmac"));
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Kerberos);
        assert_eq!(p.auth[0].user, None);
        assert_eq!(
            (p.auth[0].frame, p.auth[0].context.as_str()),
            (12, "LDAP SASL bind")
        );
    }

    #[test]
    fn raw_ap_req_and_krb_error_tokens() {
        let mut p = Posture::default();
        let s = inspect_token(&ap_req_bytes(), &mut ctx(&mut p, 3), "DCE/RPC bind");
        assert_eq!(s.map(|s| s.kind), Some("krb5.ap-req"));
        let s = inspect_token(&krb_error_bytes(), &mut ctx(&mut p, 4), "DCE/RPC bind");
        assert_eq!(s.map(|s| s.kind), Some("krb5.error"));
        let tok = gss_krb5([3, 0], &krb_error_bytes());
        let s = inspect_token(&tok, &mut ctx(&mut p, 5), "HTTP WWW-Authenticate");
        assert_eq!(s.map(|s| s.kind), Some("krb5.error"));
        assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    }

    #[test]
    fn malformed_gss_kerberos_tokens() {
        let mut p = Posture::default();
        let tok = gss_krb5([4, 4], &[]);
        assert_eq!(
            inspect_token(&tok, &mut ctx(&mut p, 5), "t").map(|s| s.kind),
            Some("unknown")
        );
        assert_eq!(kinds(&p), ["krb5.gss-token-id"]);
        let mut p = Posture::default();
        let tok = gss_krb5([1, 0], &ap_req_bytes()[..40]);
        let s = inspect_token(&tok, &mut ctx(&mut p, 5), "t");
        assert_eq!(s.map(|s| s.kind), Some("krb5.ap-req"));
        assert_eq!(kinds(&p), ["krb5.truncated"]);
        assert_eq!(p.auth.len(), 1, "the token id alone proves Kerberos");
        let mut p = Posture::default();
        let tok = tlv(
            0x60,
            &tlv(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02],
            ),
        );
        assert_eq!(inspect_token(&tok, &mut ctx(&mut p, 5), "t"), None);
        assert_eq!(kinds(&p), ["krb5.truncated"]);
    }
}
