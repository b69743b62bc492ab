//! Security tokens shared by every protocol: NTLMSSP, SPNEGO and GSS-API Kerberos.
//!
//! [`inspect_token`] takes the bytes a carrier protocol found in its authentication slot
//! (an HTTP `Authorization` header, an SMB2 security blob, a DCE/RPC auth verifier, an
//! LDAP SASL credential, an SMTP `X-EXPS` argument) and records into the flow's posture
//! what the token proves about authentication: the mechanism really used (not the one
//! merely offered), the user name when the wire shows it, the negotiated NTLM flags, and
//! a named anomaly for every malformed field.
//!
//! Guarantees: no input panics; every offset and length is checked against the token
//! before it is read; nested tokens (SPNEGO inside GSS, NTLMSSP inside SPNEGO) are
//! followed at most [`MAX_TOKEN_DEPTH`] levels deep; no credential is ever marked as
//! cleartext (an NTLM response or a Kerberos ticket is not a reusable password).
//!
//! [`finish_auth`] runs at flow end and turns an exchange that began but whose final
//! message was never seen into an authentication event of unknown version.

pub mod kerberos;
pub mod ntlmssp;
pub mod spnego;

use crate::model::{AuthEvent, Encryption, Mechanism};
use crate::proto::api::Ctx;

/// Deepest nesting of tokens followed. Real tokens nest at most three levels (GSS
/// InitialContextToken > SPNEGO NegTokenInit > NTLMSSP or GSS Kerberos); anything deeper
/// is crafted, and the limit keeps recursion bounded.
pub const MAX_TOKEN_DEPTH: usize = 4;

/// Fact holding `"<frame> <context>"` of the first NTLMSSP message of the flow.
pub(crate) const NTLM_FIRST_SEEN: &str = "ntlmssp.first-seen";
/// Fact holding `"<frame> <context>"` of the first SPNEGO token of the flow.
pub(crate) const SPNEGO_FIRST_SEEN: &str = "spnego.first-seen";
/// Fact holding `"<frame> <context>"` of the first GSS Kerberos token of the flow.
pub(crate) const KRB5_FIRST_SEEN: &str = "krb5.first-seen";

/// What one security token turned out to be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSummary {
    /// `ntlmssp.negotiate`, `ntlmssp.challenge`, `ntlmssp.authenticate`, `spnego.init`,
    /// `spnego.resp`, `krb5.ap-req`, `krb5.ap-rep`, `krb5.error` or `unknown`.
    pub kind: &'static str,
    /// Kerberos, Ntlm, Ntlmv1, Ntlmv2 or Anonymous, when the token settles it.
    pub mechanism: Option<Mechanism>,
    /// `DOMAIN\user` (or `user`) of an NTLM AUTHENTICATE message.
    pub user: Option<String>,
    /// NegotiateFlags of the NTLMSSP message, when one was seen.
    pub ntlm_flags: Option<u32>,
}

impl TokenSummary {
    pub(crate) fn of_kind(kind: &'static str) -> Self {
        TokenSummary {
            kind,
            ..TokenSummary::default()
        }
    }
}

/// Inspect a security token (raw NTLMSSP, SPNEGO NegTokenInit/NegTokenResp, GSS-API
/// InitialContextToken with a Kerberos AP-REQ, raw Kerberos AP-REQ/AP-REP) seen at
/// cx.frame inside `context` (e.g. "HTTP Authorization", "SMB2 SESSION_SETUP",
/// "DCE/RPC bind", "LDAP SASL bind", "SMTP X-EXPS"). Records AuthEvents, facts and
/// anomalies into cx.posture; returns a summary (None if the bytes are no token).
pub fn inspect_token(data: &[u8], cx: &mut Ctx, context: &str) -> Option<TokenSummary> {
    inspect_nested(data, cx, context, 0)
}

/// [`inspect_token`] for a token found `depth` levels inside another one.
pub(crate) fn inspect_nested(
    data: &[u8],
    cx: &mut Ctx,
    context: &str,
    depth: usize,
) -> Option<TokenSummary> {
    if depth >= MAX_TOKEN_DEPTH {
        cx.posture.anomaly(
            cx.frame,
            "auth.token-depth",
            format!("token nested deeper than {MAX_TOKEN_DEPTH} levels in {context}; not followed"),
        );
        return None;
    }
    if data.starts_with(ntlmssp::SIGNATURE) {
        return Some(ntlmssp::inspect(data, cx, context));
    }
    if data.starts_with(spnego::NEGOEX_SIGNATURE) {
        cx.posture.fact("spnego.mech-chosen", "negoex");
        return Some(TokenSummary::of_kind("unknown"));
    }
    match data.first() {
        Some(&spnego::TAG_GSS_INITIAL_CONTEXT) => spnego::inspect_gss(data, cx, context, depth),
        Some(&spnego::TAG_NEG_TOKEN_INIT) | Some(&spnego::TAG_NEG_TOKEN_RESP) => {
            spnego::inspect_negotiation_token(data, cx, context, depth)
        }
        Some(&kerberos::TAG_AP_REQ)
        | Some(&kerberos::TAG_AP_REP)
        | Some(&kerberos::TAG_KRB_ERROR) => kerberos::inspect_raw(data, cx, context),
        _ => None,
    }
}

/// Record `"<frame> <context>"` under `key` unless an earlier token already did.
pub(crate) fn note_first_seen(cx: &mut Ctx, key: &'static str, context: &str) {
    if !cx.posture.facts.contains_key(key) {
        cx.posture.fact(key, format!("{} {}", cx.frame, context));
    }
}

/// Read back a [`note_first_seen`] fact: the frame and context it names.
fn first_seen(cx: &Ctx, key: &str) -> Option<(u64, String)> {
    let value = cx.posture.facts.get(key)?.iter().next()?;
    let (frame, context) = value.split_once(' ')?;
    Some((frame.parse().ok()?, context.to_string()))
}

/// An authentication event for a token seen at `cx.frame`.
pub(crate) fn auth_event(
    cx: &Ctx,
    mechanism: Mechanism,
    user: Option<String>,
    context: &str,
) -> AuthEvent {
    AuthEvent {
        mechanism,
        user,
        cleartext: false,
        secret: None,
        frame: cx.frame,
        context: context.to_string(),
        after_tls: cx.posture.encryption == Encryption::Tls,
    }
}

/// Call at flow end: an NTLM exchange whose AUTHENTICATE was never seen still counts
/// as NTLM (version unknown); a Kerberos/NTLM mechanism offered but not completed is a fact.
///
/// Idempotent: calling it twice adds nothing the first call did not.
pub fn finish_auth(cx: &mut Ctx) {
    let has = |cx: &Ctx, key: &str, value: &str| cx.posture.has_fact(key, value);

    let ntlm_started = has(cx, "ntlmssp.message", "NEGOTIATE")
        || has(cx, "ntlmssp.message", "CHALLENGE")
        || has(cx, "spnego.mech-chosen", "ntlmssp");
    let ntlm_recorded = cx.posture.auth.iter().any(|e| e.mechanism.is_ntlm())
        || has(cx, "ntlmssp.message", "AUTHENTICATE");
    if ntlm_started && !ntlm_recorded {
        let (frame, context) = first_seen(cx, NTLM_FIRST_SEEN)
            .or_else(|| first_seen(cx, SPNEGO_FIRST_SEEN))
            .unwrap_or((cx.frame, "NTLMSSP".to_string()));
        add_unfinished(cx, Mechanism::Ntlm, frame, context);
        cx.posture.fact("auth.incomplete", "ntlm");
    }

    let krb_started = has(cx, "spnego.mech-chosen", "kerberos")
        || has(cx, "spnego.mech-chosen", "ms-kerberos")
        || has(cx, "krb5.msg-type", "AP-REP");
    let krb_recorded = cx
        .posture
        .auth
        .iter()
        .any(|e| e.mechanism == Mechanism::Kerberos);
    if krb_started && !krb_recorded {
        let (frame, context) = first_seen(cx, KRB5_FIRST_SEEN)
            .or_else(|| first_seen(cx, SPNEGO_FIRST_SEEN))
            .unwrap_or((cx.frame, "Kerberos".to_string()));
        add_unfinished(cx, Mechanism::Kerberos, frame, context);
        cx.posture.fact("auth.incomplete", "kerberos");
    }

    let offered_only = cx.posture.facts.contains_key("spnego.mech-offered")
        && !cx.posture.facts.contains_key("spnego.mech-chosen")
        && cx.posture.auth.is_empty();
    if offered_only {
        cx.posture.fact("auth.incomplete", "spnego-offered-only");
    }
}

fn add_unfinished(cx: &mut Ctx, mechanism: Mechanism, frame: u64, context: String) {
    let after_tls = cx.posture.encryption == Encryption::Tls;
    cx.posture.add_auth(AuthEvent {
        mechanism,
        user: None,
        cleartext: false,
        secret: None,
        frame,
        context,
        after_tls,
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::Posture;

    /// Test vectors are written as hex strings; odd trailing digits are ignored.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len() / 2)
            .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
            .collect()
    }

    pub(crate) fn ctx(posture: &mut Posture, frame: u64) -> Ctx<'_> {
        Ctx {
            limits: &crate::limits::ProtoLimits::DEFAULT,
            frame,
            ts_ns: 0,
            client_port: 49152,
            server_port: 445,
            posture,
        }
    }

    #[test]
    fn not_a_token_is_none_and_records_nothing() {
        let mut p = Posture::default();
        let mut cx = ctx(&mut p, 1);
        assert_eq!(
            inspect_token(b"Basic dXNlcjpwYXNz", &mut cx, "HTTP Authorization"),
            None
        );
        assert_eq!(inspect_token(&[], &mut cx, "HTTP Authorization"), None);
        assert!(p.facts.is_empty() && p.anomalies.is_empty() && p.auth.is_empty());
    }

    #[test]
    fn negotiate_and_challenge_without_authenticate_count_as_ntlm() {
        let mut p = Posture::default();
        let neg = ntlmssp::tests::negotiate(0xe208_8297);
        let chal = ntlmssp::tests::challenge(0xe289_8215, b"", &[]);
        inspect_token(&neg, &mut ctx(&mut p, 6), "SMB2 SESSION_SETUP");
        inspect_token(&chal, &mut ctx(&mut p, 7), "SMB2 SESSION_SETUP");
        assert!(p.auth.is_empty());
        finish_auth(&mut ctx(&mut p, 99));
        finish_auth(&mut ctx(&mut p, 99));
        assert_eq!(p.auth.len(), 1, "finish_auth must be idempotent");
        assert_eq!(p.auth[0].mechanism, Mechanism::Ntlm);
        assert_eq!(p.auth[0].frame, 6, "evidence is the first NTLM message");
        assert_eq!(p.auth[0].context, "SMB2 SESSION_SETUP");
        assert!(!p.auth[0].cleartext);
        assert!(p.has_fact("auth.incomplete", "ntlm"));
    }

    #[test]
    fn finish_auth_adds_nothing_after_a_complete_exchange() {
        let mut p = Posture::default();
        let auth = ntlmssp::tests::authenticate_v2("CONTOSO", "alice", "WS1");
        inspect_token(&auth, &mut ctx(&mut p, 8), "HTTP Authorization");
        finish_auth(&mut ctx(&mut p, 99));
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Ntlmv2);
        assert!(!p.facts.contains_key("auth.incomplete"));
    }

    #[test]
    fn kerberos_chosen_without_ap_req_counts_as_kerberos() {
        let mut p = Posture::default();
        // NegTokenResp: negState accept-completed, supportedMech 1.2.840.48018.1.2.2.
        let resp = [
            0xa1, 0x14, 0x30, 0x12, // [1] NegTokenResp, SEQUENCE
            0xa0, 0x03, 0x0a, 0x01, 0x00, // [0] negState ENUMERATED 0
            0xa1, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02,
            0x02, // [1] supportedMech OID
        ];
        let s = inspect_token(&resp, &mut ctx(&mut p, 14), "SMB2 SESSION_SETUP");
        assert_eq!(s.map(|s| s.kind), Some("spnego.resp"));
        finish_auth(&mut ctx(&mut p, 20));
        assert_eq!(p.auth.len(), 1);
        assert_eq!(p.auth[0].mechanism, Mechanism::Kerberos);
        assert_eq!(p.auth[0].frame, 14);
        assert!(p.has_fact("auth.incomplete", "kerberos"));
    }

    #[test]
    fn spnego_offer_alone_is_a_fact_not_an_event() {
        let mut p = Posture::default();
        let tok = [
            0x60, 0x1b, // GSS InitialContextToken [APPLICATION 0]
            0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, // thisMech 1.3.6.1.5.5.2 (SPNEGO)
            0xa0, 0x11, 0x30, 0x0f, // [0] NegTokenInit, SEQUENCE
            0xa0, 0x0d, 0x30, 0x0b, // [0] mechTypes, SEQUENCE OF
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, // Kerberos OID
        ];
        let s = inspect_token(&tok, &mut ctx(&mut p, 3), "SMB2 NEGOTIATE");
        assert_eq!(s.map(|s| s.kind), Some("spnego.init"));
        assert!(p.has_fact("spnego.mech-offered", "kerberos"));
        finish_auth(&mut ctx(&mut p, 4));
        assert!(p.auth.is_empty());
        assert!(p.has_fact("auth.incomplete", "spnego-offered-only"));
    }

    #[test]
    fn depth_limit_is_an_anomaly() {
        let mut p = Posture::default();
        let mut cx = ctx(&mut p, 5);
        assert_eq!(
            inspect_nested(b"NTLMSSP\0", &mut cx, "test", MAX_TOKEN_DEPTH),
            None
        );
        assert_eq!(
            p.anomalies.first().map(|a| a.kind),
            Some("auth.token-depth")
        );
    }
}
