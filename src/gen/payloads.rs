//! Protocol byte builders for the generator: a tiny DER writer, Kerberos (RFC 4120),
//! GSS-API / SPNEGO (RFC 2743, RFC 4178), NTLMSSP (MS-NLMP), DCE/RPC (C706, MS-RPCE),
//! SMB2/3 (MS-SMB2), LDAP (RFC 4511), TLS 1.0/1.2 (RFC 2246, RFC 5246) and DNS (RFC 1035).
//!
//! Every builder returns bytes whose lengths, offsets and tags agree with the
//! specification, so Wireshark dissects them as the protocol. Cryptographic fields
//! (ciphertexts, MACs, signatures, randoms) are random bytes from the seeded [`Rng`].

use super::Rng;

// ---------------------------------------------------------------------------------
// DER / BER
// ---------------------------------------------------------------------------------

/// Tag-length-value with a definite DER length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(content.len() + 6);
    v.push(tag);
    let n = content.len();
    if n < 0x80 {
        v.push(n as u8);
    } else if n <= 0xff {
        v.extend_from_slice(&[0x81, n as u8]);
    } else if n <= 0xffff {
        v.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    } else {
        v.extend_from_slice(&[0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    v.extend_from_slice(content);
    v
}

pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &cat(parts))
}

pub(crate) fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &cat(parts))
}

/// Context-specific constructed tag `[n]`.
pub(crate) fn ctx(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

fn int_content(v: i64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let mut i = 0;
    while i < 7 {
        let redundant =
            (b[i] == 0x00 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0);
        if !redundant {
            break;
        }
        i += 1;
    }
    b[i..].to_vec()
}

pub(crate) fn int(v: i64) -> Vec<u8> {
    tlv(0x02, &int_content(v))
}

pub(crate) fn enumerated(v: i64) -> Vec<u8> {
    tlv(0x0a, &int_content(v))
}

pub(crate) fn octets(b: &[u8]) -> Vec<u8> {
    tlv(0x04, b)
}

pub(crate) fn boolean(b: bool) -> Vec<u8> {
    tlv(0x01, &[if b { 0xff } else { 0 }])
}

/// BIT STRING with no unused bits.
pub(crate) fn bits(b: &[u8]) -> Vec<u8> {
    let mut c = vec![0u8];
    c.extend_from_slice(b);
    tlv(0x03, &c)
}

/// OBJECT IDENTIFIER from its encoded content bytes.
pub(crate) fn oid(content: &[u8]) -> Vec<u8> {
    tlv(0x06, content)
}

// ---------------------------------------------------------------------------------
// OIDs (content bytes)
// ---------------------------------------------------------------------------------

/// SPNEGO 1.3.6.1.5.5.2.
pub(crate) const OID_SPNEGO: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// Kerberos 5 1.2.840.113554.1.2.2.
pub(crate) const OID_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// Microsoft Kerberos 5 1.2.840.48018.1.2.2.
pub(crate) const OID_MS_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// NTLMSSP 1.3.6.1.4.1.311.2.2.10.
pub(crate) const OID_NTLMSSP: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];
/// sha256WithRSAEncryption 1.2.840.113549.1.1.11.
const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// rsaEncryption 1.2.840.113549.1.1.1.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-at-commonName 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

pub(crate) const REALM: &str = "CONTOSO.COM";

// ---------------------------------------------------------------------------------
// Kerberos (RFC 4120)
// ---------------------------------------------------------------------------------

fn kstr(s: &str) -> Vec<u8> {
    tlv(0x1b, s.as_bytes())
}

fn ktime(s: &str) -> Vec<u8> {
    tlv(0x18, s.as_bytes())
}

/// PrincipalName: name-type [0], name-string [1].
pub(crate) fn principal(name_type: i64, parts: &[&str]) -> Vec<u8> {
    let names: Vec<Vec<u8>> = parts.iter().map(|p| kstr(p)).collect();
    let refs: Vec<&[u8]> = names.iter().map(|v| v.as_slice()).collect();
    seq(&[&ctx(0, &int(name_type)), &ctx(1, &seq(&refs))])
}

/// EncryptedData: etype [0], kvno [1] optional, cipher [2].
pub(crate) fn enc_data(etype: i64, kvno: Option<i64>, cipher: &[u8]) -> Vec<u8> {
    let k = kvno.map(|k| ctx(1, &int(k))).unwrap_or_default();
    seq(&[&ctx(0, &int(etype)), &k, &ctx(2, &octets(cipher))])
}

/// Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno [0], realm [1], sname [2], enc-part [3] }.
pub(crate) fn ticket(rng: &mut Rng, sname: &[&str]) -> Vec<u8> {
    let enc = enc_data(18, Some(3), &rng.bytes(180));
    tlv(
        0x61,
        &seq(&[
            &ctx(0, &int(5)),
            &ctx(1, &kstr(REALM)),
            &ctx(2, &principal(2, sname)),
            &ctx(3, &enc),
        ]),
    )
}

/// AS-REQ (msg-type 10) or TGS-REQ (12): KDC-REQ with pvno [1], msg-type [2], padata [3],
/// req-body [4]. `padata` holds (padata-type, padata-value) pairs.
pub(crate) fn kdc_req(
    msg_type: i64,
    padata: &[(i64, Vec<u8>)],
    cname: Option<&[&str]>,
    sname: &[&str],
    etypes: &[i64],
    nonce: u32,
) -> Vec<u8> {
    let pas: Vec<Vec<u8>> = padata
        .iter()
        .map(|(t, v)| seq(&[&ctx(1, &int(*t)), &ctx(2, &octets(v))]))
        .collect();
    let pa_refs: Vec<&[u8]> = pas.iter().map(|v| v.as_slice()).collect();
    let ets: Vec<Vec<u8>> = etypes.iter().map(|e| int(*e)).collect();
    let et_refs: Vec<&[u8]> = ets.iter().map(|v| v.as_slice()).collect();
    let cname = cname.map(|c| ctx(1, &principal(1, c))).unwrap_or_default();
    let body = seq(&[
        &ctx(0, &bits(&[0x40, 0x81, 0x00, 0x10])), // forwardable, renewable, canonicalize, renewable-ok
        &cname,
        &ctx(2, &kstr(REALM)),
        &ctx(3, &principal(2, sname)),
        &ctx(5, &ktime("20370913024805Z")),
        &ctx(6, &ktime("20370913024805Z")),
        &ctx(7, &int(i64::from(nonce))),
        &ctx(8, &seq(&et_refs)),
    ]);
    let padata = if pas.is_empty() {
        Vec::new()
    } else {
        ctx(3, &seq(&pa_refs))
    };
    let tag = if msg_type == 10 { 0x6a } else { 0x6c };
    tlv(
        tag,
        &seq(&[
            &ctx(1, &int(5)),
            &ctx(2, &int(msg_type)),
            &padata,
            &ctx(4, &body),
        ]),
    )
}

/// AS-REP (11) or TGS-REP (13): KDC-REP with pvno [0], msg-type [1], crealm [3],
/// cname [4], ticket [5], enc-part [6].
pub(crate) fn kdc_rep(
    rng: &mut Rng,
    msg_type: i64,
    cname: &[&str],
    sname: &[&str],
    etype: i64,
) -> Vec<u8> {
    let tag = if msg_type == 11 { 0x6b } else { 0x6d };
    let t = ticket(rng, sname);
    let enc = enc_data(etype, Some(2), &rng.bytes(230));
    tlv(
        tag,
        &seq(&[
            &ctx(0, &int(5)),
            &ctx(1, &int(msg_type)),
            &ctx(3, &kstr(REALM)),
            &ctx(4, &principal(1, cname)),
            &ctx(5, &t),
            &ctx(6, &enc),
        ]),
    )
}

/// AP-REQ [APPLICATION 14] with mutual-required and a ticket for `sname`.
pub(crate) fn ap_req(rng: &mut Rng, sname: &[&str]) -> Vec<u8> {
    let t = ticket(rng, sname);
    let auth = enc_data(18, None, &rng.bytes(150));
    tlv(
        0x6e,
        &seq(&[
            &ctx(0, &int(5)),
            &ctx(1, &int(14)),
            &ctx(2, &bits(&[0x20, 0, 0, 0])),
            &ctx(3, &t),
            &ctx(4, &auth),
        ]),
    )
}

/// AP-REP [APPLICATION 15].
pub(crate) fn ap_rep(rng: &mut Rng) -> Vec<u8> {
    let enc = enc_data(18, None, &rng.bytes(100));
    tlv(
        0x6f,
        &seq(&[&ctx(0, &int(5)), &ctx(1, &int(15)), &ctx(2, &enc)]),
    )
}

/// GSS-API InitialContextToken for Kerberos: [APPLICATION 0] { krb5 OID, TOK_ID, token }.
pub(crate) fn gss_krb5(tok_id: [u8; 2], token: &[u8]) -> Vec<u8> {
    tlv(0x60, &cat(&[&oid(OID_KRB5), &tok_id, token]))
}

/// Kerberos message over TCP: 4-byte big-endian record mark (RFC 4120 7.2.2).
pub(crate) fn krb_tcp(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

// ---------------------------------------------------------------------------------
// SPNEGO (RFC 4178)
// ---------------------------------------------------------------------------------

/// NegTokenInit inside the GSS-API framing, offering `mechs` and carrying `token`.
pub(crate) fn spnego_init(mechs: &[&[u8]], token: &[u8]) -> Vec<u8> {
    let oids: Vec<Vec<u8>> = mechs.iter().map(|m| oid(m)).collect();
    let refs: Vec<&[u8]> = oids.iter().map(|v| v.as_slice()).collect();
    let init = seq(&[&ctx(0, &seq(&refs)), &ctx(2, &octets(token))]);
    tlv(0x60, &cat(&[&oid(OID_SPNEGO), &ctx(0, &init)]))
}

/// NegTokenResp `[1]` with negState (0 accept-completed, 1 accept-incomplete; None for
/// the initiator's follow-up token), supportedMech and responseToken.
pub(crate) fn spnego_resp(
    state: Option<i64>,
    mech: Option<&[u8]>,
    token: Option<&[u8]>,
) -> Vec<u8> {
    let st = state.map(|s| ctx(0, &enumerated(s))).unwrap_or_default();
    let m = mech.map(|m| ctx(1, &oid(m))).unwrap_or_default();
    let t = token.map(|t| ctx(2, &octets(t))).unwrap_or_default();
    ctx(1, &seq(&[&st, &m, &t]))
}

/// SPNEGO NegTokenInit carrying a Kerberos AP-REQ.
pub(crate) fn spnego_krb(rng: &mut Rng, sname: &[&str]) -> Vec<u8> {
    let ap = gss_krb5([0x01, 0x00], &ap_req(rng, sname));
    spnego_init(&[OID_MS_KRB5, OID_KRB5, OID_NTLMSSP], &ap)
}

/// SPNEGO NegTokenResp accept-completed carrying a Kerberos AP-REP.
pub(crate) fn spnego_krb_done(rng: &mut Rng) -> Vec<u8> {
    let rep = gss_krb5([0x02, 0x00], &ap_rep(rng));
    spnego_resp(Some(0), Some(OID_MS_KRB5), Some(&rep))
}

// ---------------------------------------------------------------------------------
// NTLMSSP (MS-NLMP 2.2)
// ---------------------------------------------------------------------------------

const NTLM_SIG: &[u8; 8] = b"NTLMSSP\0";
/// UNICODE | OEM | REQUEST_TARGET | SIGN | SEAL | NTLM | ALWAYS_SIGN | EXTENDED_SESSIONSECURITY
/// | VERSION | 128 | KEY_EXCH | 56.
pub(crate) const NTLM_NEG_FLAGS: u32 = 0xe208_8237;
/// As above plus TARGET_TYPE_DOMAIN and TARGET_INFO, without OEM.
const NTLM_CHAL_FLAGS: u32 = 0xe289_8235;
const NTLM_AUTH_V2_FLAGS: u32 = 0xe288_8235;
/// UNICODE | REQUEST_TARGET | NTLM | ALWAYS_SIGN | 128 | 56: no extended session security.
const NTLM_AUTH_V1_FLAGS: u32 = 0xa000_8205;
/// Windows 6.1 build 7601, NTLM revision 15.
const NTLM_VERSION: [u8; 8] = [6, 1, 0xb1, 0x1d, 0, 0, 0, 0x0f];

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|c| c.to_le_bytes()).collect()
}

fn field(len: usize, off: usize) -> [u8; 8] {
    let mut f = [0u8; 8];
    f[0..2].copy_from_slice(&(len as u16).to_le_bytes());
    f[2..4].copy_from_slice(&(len as u16).to_le_bytes());
    f[4..8].copy_from_slice(&(off as u32).to_le_bytes());
    f
}

/// NEGOTIATE_MESSAGE (type 1), 40 bytes, no domain or workstation supplied.
pub(crate) fn ntlm_negotiate() -> Vec<u8> {
    let mut v = NTLM_SIG.to_vec();
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&NTLM_NEG_FLAGS.to_le_bytes());
    v.extend_from_slice(&field(0, 40));
    v.extend_from_slice(&field(0, 40));
    v.extend_from_slice(&NTLM_VERSION);
    v
}

fn av_pairs(server: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let mut push = |id: u16, val: &[u8]| {
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(&(val.len() as u16).to_le_bytes());
        v.extend_from_slice(val);
    };
    push(2, &utf16("CONTOSO")); // MsvAvNbDomainName
    push(1, &utf16(&server.to_ascii_uppercase())); // MsvAvNbComputerName
    push(4, &utf16("contoso.com")); // MsvAvDnsDomainName
    push(3, &utf16(&format!("{server}.contoso.com"))); // MsvAvDnsComputerName
    push(5, &utf16("contoso.com")); // MsvAvDnsTreeName
    push(7, &0x01dc_7b00_0000_0000u64.to_le_bytes()); // MsvAvTimestamp (FILETIME, 2026)
    push(0, &[]); // MsvAvEOL
    v
}

/// CHALLENGE_MESSAGE (type 2) from `server` with target name CONTOSO and target info.
pub(crate) fn ntlm_challenge(rng: &mut Rng, server: &str) -> Vec<u8> {
    let target = utf16("CONTOSO");
    let info = av_pairs(server);
    let mut v = NTLM_SIG.to_vec();
    v.extend_from_slice(&2u32.to_le_bytes());
    v.extend_from_slice(&field(target.len(), 56));
    v.extend_from_slice(&NTLM_CHAL_FLAGS.to_le_bytes());
    v.extend_from_slice(&rng.bytes(8)); // ServerChallenge
    v.extend_from_slice(&[0u8; 8]); // Reserved
    v.extend_from_slice(&field(info.len(), 56 + target.len()));
    v.extend_from_slice(&NTLM_VERSION);
    v.extend_from_slice(&target);
    v.extend_from_slice(&info);
    v
}

/// AUTHENTICATE_MESSAGE (type 3) for CONTOSO\`user` from workstation WKS01.
/// `v2`: an NTLMv2 response (NTProofStr + blob) with a MIC; otherwise NTLMv1 (24-byte
/// LM and NT responses, no MIC).
pub(crate) fn ntlm_authenticate(rng: &mut Rng, user: &str, v2: bool) -> Vec<u8> {
    let domain = utf16("CONTOSO");
    let user = utf16(user);
    let wks = utf16("WKS01");
    let (lm, nt, flags, hdr) = if v2 {
        let mut nt = rng.bytes(16); // NTProofStr
        nt.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]); // RespType, HiRespType, reserved
        nt.extend_from_slice(&0x01dc_7b00_0000_0000u64.to_le_bytes()); // TimeStamp
        nt.extend_from_slice(&rng.bytes(8)); // ChallengeFromClient
        nt.extend_from_slice(&[0u8; 4]);
        nt.extend_from_slice(&av_pairs("mbx01"));
        nt.extend_from_slice(&[0u8; 4]);
        (rng.bytes(24), nt, NTLM_AUTH_V2_FLAGS, 88)
    } else {
        (rng.bytes(24), rng.bytes(24), NTLM_AUTH_V1_FLAGS, 72)
    };
    let skey = if v2 { rng.bytes(16) } else { Vec::new() };
    let mut off = hdr;
    let mut fields = Vec::new();
    let mut payload = Vec::new();
    for part in [&lm, &nt, &domain, &user, &wks, &skey] {
        fields.push(field(part.len(), off));
        payload.extend_from_slice(part);
        off += part.len();
    }
    let mut v = NTLM_SIG.to_vec();
    v.extend_from_slice(&3u32.to_le_bytes());
    for f in &fields {
        v.extend_from_slice(f);
    }
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&NTLM_VERSION);
    if v2 {
        v.extend_from_slice(&rng.bytes(16)); // MIC
    }
    v.extend_from_slice(&payload);
    v
}

/// NTLMSSP message signature (verifier) for RPC/SMB: version 1, checksum, sequence.
pub(crate) fn ntlm_verifier(rng: &mut Rng, seqno: u32) -> Vec<u8> {
    let mut v = 1u32.to_le_bytes().to_vec();
    v.extend_from_slice(&rng.bytes(8));
    v.extend_from_slice(&seqno.to_le_bytes());
    v
}

// ---------------------------------------------------------------------------------
// DCE/RPC connection-oriented PDUs (C706 12.6, MS-RPCE 2.2.2)
// ---------------------------------------------------------------------------------

/// PDU types.
pub(crate) const RPC_REQUEST: u8 = 0;
pub(crate) const RPC_RESPONSE: u8 = 2;
pub(crate) const RPC_BIND: u8 = 11;
pub(crate) const RPC_BIND_ACK: u8 = 12;
pub(crate) const RPC_AUTH3: u8 = 16;
pub(crate) const RPC_RTS: u8 = 20;
/// auth_type values (MS-RPCE 2.2.1.1.7).
pub(crate) const AUTH_NTLMSSP: u8 = 0x0a;
pub(crate) const AUTH_KERBEROS: u8 = 0x10;
/// auth_level values.
pub(crate) const LEVEL_CONNECT: u8 = 2;
pub(crate) const LEVEL_PRIVACY: u8 = 6;

/// Interface and transfer syntax UUIDs (text form, see wire-signatures.md).
pub(crate) const UUID_EMSMDB: &str = "a4f1db00-ca47-1067-b31f-00dd010662da";
pub(crate) const UUID_DRSUAPI: &str = "e3514235-4b06-11d1-ab04-00c04fc2dcd2";
pub(crate) const UUID_EPM: &str = "e1af8308-5d1f-11c9-91a4-08002b14a0fa";
pub(crate) const UUID_WINREG: &str = "338cd001-2244-31f1-aaaa-900038001003";
const UUID_NDR: &str = "8a885d04-1ceb-11c9-9fe8-08002b104860";

/// Wire form of a UUID: the first three fields little-endian.
pub(crate) fn uuid(s: &str) -> [u8; 16] {
    let hex: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'-')
        .map(|c| match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        })
        .collect();
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = (hex[2 * i] << 4) | hex[2 * i + 1];
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// Security context for the sec_trailer: auth_type, auth_level, auth_value.
pub(crate) struct RpcAuth<'a> {
    pub typ: u8,
    pub level: u8,
    pub value: &'a [u8],
}

/// One PDU: 16-byte common header, `body`, then (if `auth`) padding to 4, sec_trailer
/// and auth_value.
pub(crate) fn rpc_pdu(ptype: u8, call_id: u32, body: &[u8], auth: Option<&RpcAuth>) -> Vec<u8> {
    let mut v = vec![5, 0, ptype, 0x03, 0x10, 0, 0, 0, 0, 0, 0, 0];
    v.extend_from_slice(&call_id.to_le_bytes());
    v.extend_from_slice(body);
    let mut auth_len = 0usize;
    if let Some(a) = auth {
        let pad = (4 - v.len() % 4) % 4;
        v.extend(std::iter::repeat_n(0u8, pad));
        v.extend_from_slice(&[a.typ, a.level, pad as u8, 0]);
        v.extend_from_slice(&79231u32.to_le_bytes()); // auth_context_id
        v.extend_from_slice(a.value);
        auth_len = a.value.len();
    }
    let frag = v.len() as u16;
    v[8..10].copy_from_slice(&frag.to_le_bytes());
    v[10..12].copy_from_slice(&(auth_len as u16).to_le_bytes());
    v
}

/// bind (one presentation context: `iface` version `major.minor` over NDR).
pub(crate) fn rpc_bind(
    call_id: u32,
    iface: &str,
    major: u16,
    minor: u16,
    auth: Option<&RpcAuth>,
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&5840u16.to_le_bytes()); // max_xmit_frag
    b.extend_from_slice(&5840u16.to_le_bytes()); // max_recv_frag
    b.extend_from_slice(&0u32.to_le_bytes()); // assoc_group_id
    b.extend_from_slice(&[1, 0, 0, 0]); // n_context_elem, reserved
    b.extend_from_slice(&0u16.to_le_bytes()); // p_cont_id
    b.extend_from_slice(&[1, 0]); // n_transfer_syn, reserved
    b.extend_from_slice(&uuid(iface));
    b.extend_from_slice(&major.to_le_bytes());
    b.extend_from_slice(&minor.to_le_bytes());
    b.extend_from_slice(&uuid(UUID_NDR));
    b.extend_from_slice(&2u32.to_le_bytes());
    rpc_pdu(RPC_BIND, call_id, &b, auth)
}

/// bind_ack accepting the context, with secondary address `port` (e.g. "135").
pub(crate) fn rpc_bind_ack(call_id: u32, port: &str, auth: Option<&RpcAuth>) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&5840u16.to_le_bytes());
    b.extend_from_slice(&5840u16.to_le_bytes());
    b.extend_from_slice(&0x0001_2a4fu32.to_le_bytes()); // assoc_group_id
    b.extend_from_slice(&((port.len() + 1) as u16).to_le_bytes());
    b.extend_from_slice(port.as_bytes());
    b.push(0);
    while (16 + b.len()) % 4 != 0 {
        b.push(0);
    }
    b.extend_from_slice(&[1, 0, 0, 0]); // n_results
    b.extend_from_slice(&[0, 0, 0, 0]); // result acceptance, reason 0
    b.extend_from_slice(&uuid(UUID_NDR));
    b.extend_from_slice(&2u32.to_le_bytes());
    rpc_pdu(RPC_BIND_ACK, call_id, &b, auth)
}

/// rpc_auth_3 carrying the third leg (e.g. NTLM AUTHENTICATE).
pub(crate) fn rpc_auth3(call_id: u32, auth: &RpcAuth) -> Vec<u8> {
    rpc_pdu(RPC_AUTH3, call_id, &[0, 0, 0, 0], Some(auth))
}

/// request: alloc_hint, p_cont_id 0, opnum, stub.
pub(crate) fn rpc_request(
    call_id: u32,
    opnum: u16,
    stub: &[u8],
    auth: Option<&RpcAuth>,
) -> Vec<u8> {
    let mut b = (stub.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&opnum.to_le_bytes());
    b.extend_from_slice(stub);
    rpc_pdu(RPC_REQUEST, call_id, &b, auth)
}

/// response: alloc_hint, p_cont_id 0, cancel_count 0, stub.
pub(crate) fn rpc_response(call_id: u32, stub: &[u8], auth: Option<&RpcAuth>) -> Vec<u8> {
    let mut b = (stub.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(stub);
    rpc_pdu(RPC_RESPONSE, call_id, &b, auth)
}

/// An EPM tower (C706 appendix L): interface, NDR, RPC connection-oriented, TCP port, IP.
fn epm_tower(iface: &str, major: u16, minor: u16, port: u16, ip: [u8; 4]) -> Vec<u8> {
    let mut t = 5u16.to_le_bytes().to_vec();
    let mut floor = |lhs: &[u8], rhs: &[u8]| {
        t.extend_from_slice(&(lhs.len() as u16).to_le_bytes());
        t.extend_from_slice(lhs);
        t.extend_from_slice(&(rhs.len() as u16).to_le_bytes());
        t.extend_from_slice(rhs);
    };
    let mut l1 = vec![0x0d];
    l1.extend_from_slice(&uuid(iface));
    l1.extend_from_slice(&major.to_le_bytes());
    floor(&l1, &minor.to_le_bytes());
    let mut l2 = vec![0x0d];
    l2.extend_from_slice(&uuid(UUID_NDR));
    l2.extend_from_slice(&2u16.to_le_bytes());
    floor(&l2, &0u16.to_le_bytes());
    floor(&[0x0b], &0u16.to_le_bytes());
    floor(&[0x07], &port.to_be_bytes());
    floor(&[0x09], &ip);
    t
}

fn ndr_tower(t: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(t.len() as u32).to_le_bytes()); // conformance (max count)
    out.extend_from_slice(&(t.len() as u32).to_le_bytes()); // tower_length
    out.extend_from_slice(t);
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// ept_map (opnum 3) request stub asking for `iface`.
pub(crate) fn epm_map_request(iface: &str, major: u16, minor: u16) -> Vec<u8> {
    let mut s = 1u32.to_le_bytes().to_vec(); // object: referent
    s.extend_from_slice(&[0u8; 16]); // nil UUID
    s.extend_from_slice(&2u32.to_le_bytes()); // map_tower referent
    ndr_tower(&epm_tower(iface, major, minor, 0, [0, 0, 0, 0]), &mut s);
    s.extend_from_slice(&[0u8; 20]); // entry_handle
    s.extend_from_slice(&4u32.to_le_bytes()); // max_towers
    s
}

/// ept_map response stub naming `port` on `ip` for `iface`.
pub(crate) fn epm_map_response(
    iface: &str,
    major: u16,
    minor: u16,
    port: u16,
    ip: [u8; 4],
) -> Vec<u8> {
    let mut s = vec![0u8; 20]; // entry_handle
    s.extend_from_slice(&1u32.to_le_bytes()); // num_towers
    s.extend_from_slice(&4u32.to_le_bytes()); // max count
    s.extend_from_slice(&0u32.to_le_bytes()); // offset
    s.extend_from_slice(&1u32.to_le_bytes()); // actual count
    s.extend_from_slice(&3u32.to_le_bytes()); // referent
    ndr_tower(&epm_tower(iface, major, minor, port, ip), &mut s);
    s.extend_from_slice(&0u32.to_le_bytes()); // status
    s
}

/// RTS CONN/A1 PDU (MS-RPCH 2.2.4.2), 76 bytes, the body of RPC_OUT_DATA: version,
/// virtual connection cookie, OUT channel cookie, receive window size.
pub(crate) fn rts_conn_a1(rng: &mut Rng) -> Vec<u8> {
    let mut b = 0u16.to_le_bytes().to_vec();
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&6u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for _ in 0..2 {
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&rng.bytes(16));
    }
    b.extend_from_slice(&0u32.to_le_bytes()); // ReceiveWindowSize
    b.extend_from_slice(&65536u32.to_le_bytes());
    rpc_pdu(RPC_RTS, 0, &b, None)
}

/// RTS CONN/B1 PDU (MS-RPCH 2.2.4.6): version, two cookies, channel lifetime,
/// client keepalive, association group id.
pub(crate) fn rts_conn_b1(rng: &mut Rng) -> Vec<u8> {
    let mut b = 0u16.to_le_bytes().to_vec(); // flags RTS_FLAG_NONE
    b.extend_from_slice(&6u16.to_le_bytes()); // NumberOfCommands
    b.extend_from_slice(&6u32.to_le_bytes()); // Version
    b.extend_from_slice(&1u32.to_le_bytes());
    for _ in 0..2 {
        b.extend_from_slice(&3u32.to_le_bytes()); // Cookie
        b.extend_from_slice(&rng.bytes(16));
    }
    b.extend_from_slice(&4u32.to_le_bytes()); // ChannelLifetime
    b.extend_from_slice(&0x4000_0000u32.to_le_bytes());
    b.extend_from_slice(&5u32.to_le_bytes()); // ClientKeepalive
    b.extend_from_slice(&300_000u32.to_le_bytes());
    b.extend_from_slice(&12u32.to_le_bytes()); // AssociationGroupId
    b.extend_from_slice(&rng.bytes(16));
    rpc_pdu(RPC_RTS, 0, &b, None)
}

// ---------------------------------------------------------------------------------
// SMB2 / SMB3 (MS-SMB2 2.2)
// ---------------------------------------------------------------------------------

pub(crate) const SMB2_NEGOTIATE: u16 = 0;
pub(crate) const SMB2_SESSION_SETUP: u16 = 1;
pub(crate) const SMB2_TREE_CONNECT: u16 = 3;
pub(crate) const SMB2_CREATE: u16 = 5;
pub(crate) const SMB2_READ: u16 = 8;
pub(crate) const SMB2_WRITE: u16 = 9;
/// NT status values.
pub(crate) const STATUS_SUCCESS: u32 = 0;
pub(crate) const STATUS_MORE_PROCESSING: u32 = 0xc000_0016;

/// An SMB2 message in a NetBIOS session frame: 64-byte header then `body`.
pub(crate) fn smb2(
    cmd: u16,
    response: bool,
    status: u32,
    msg_id: u64,
    tree: u32,
    session: u64,
    body: &[u8],
) -> Vec<u8> {
    let len = 64 + body.len();
    let mut v = vec![0, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    v.extend_from_slice(&[0xfe, b'S', b'M', b'B']);
    v.extend_from_slice(&64u16.to_le_bytes()); // StructureSize
    v.extend_from_slice(&1u16.to_le_bytes()); // CreditCharge
    v.extend_from_slice(&status.to_le_bytes());
    v.extend_from_slice(&cmd.to_le_bytes());
    v.extend_from_slice(&(if response { 32u16 } else { 1 }).to_le_bytes()); // credits
    v.extend_from_slice(&(u32::from(response)).to_le_bytes()); // Flags: SERVER_TO_REDIR
    v.extend_from_slice(&0u32.to_le_bytes()); // NextCommand
    v.extend_from_slice(&msg_id.to_le_bytes());
    v.extend_from_slice(&0xfeffu32.to_le_bytes()); // ProcessId
    v.extend_from_slice(&tree.to_le_bytes());
    v.extend_from_slice(&session.to_le_bytes());
    v.extend_from_slice(&[0u8; 16]); // Signature
    v.extend_from_slice(body);
    v
}

/// NEGOTIATE request offering `dialects`.
pub(crate) fn smb2_negotiate_req(rng: &mut Rng, dialects: &[u16]) -> Vec<u8> {
    let mut b = 36u16.to_le_bytes().to_vec();
    b.extend_from_slice(&(dialects.len() as u16).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // SecurityMode: signing enabled
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&0x7fu32.to_le_bytes()); // Capabilities
    b.extend_from_slice(&rng.bytes(16)); // ClientGuid
    b.extend_from_slice(&0u64.to_le_bytes()); // ClientStartTime
    for d in dialects {
        b.extend_from_slice(&d.to_le_bytes());
    }
    b
}

/// NEGOTIATE response choosing `dialect`, with a SPNEGO hint token.
pub(crate) fn smb2_negotiate_resp(rng: &mut Rng, dialect: u16) -> Vec<u8> {
    let hint = spnego_init(&[OID_MS_KRB5, OID_KRB5, OID_NTLMSSP], &[]);
    let mut b = 65u16.to_le_bytes().to_vec();
    b.extend_from_slice(&1u16.to_le_bytes()); // SecurityMode
    b.extend_from_slice(&dialect.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&rng.bytes(16)); // ServerGuid
    b.extend_from_slice(&0x2fu32.to_le_bytes()); // Capabilities (incl. ENCRYPTION 0x40 off)
    for _ in 0..3 {
        b.extend_from_slice(&8_388_608u32.to_le_bytes()); // MaxTransact/Read/WriteSize
    }
    b.extend_from_slice(&0x01dc_7b00_0000_0000u64.to_le_bytes()); // SystemTime
    b.extend_from_slice(&0u64.to_le_bytes()); // ServerStartTime
    b.extend_from_slice(&128u16.to_le_bytes()); // SecurityBufferOffset
    b.extend_from_slice(&(hint.len() as u16).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&hint);
    b
}

pub(crate) fn smb2_session_setup_req(token: &[u8]) -> Vec<u8> {
    let mut b = 25u16.to_le_bytes().to_vec();
    b.push(0); // Flags
    b.push(1); // SecurityMode
    b.extend_from_slice(&1u32.to_le_bytes()); // Capabilities: DFS
    b.extend_from_slice(&0u32.to_le_bytes()); // Channel
    b.extend_from_slice(&88u16.to_le_bytes()); // SecurityBufferOffset
    b.extend_from_slice(&(token.len() as u16).to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // PreviousSessionId
    b.extend_from_slice(token);
    b
}

pub(crate) fn smb2_session_setup_resp(token: &[u8]) -> Vec<u8> {
    let mut b = 9u16.to_le_bytes().to_vec();
    b.extend_from_slice(&0u16.to_le_bytes()); // SessionFlags
    b.extend_from_slice(&72u16.to_le_bytes());
    b.extend_from_slice(&(token.len() as u16).to_le_bytes());
    b.extend_from_slice(token);
    b
}

pub(crate) fn smb2_tree_connect_req(path: &str) -> Vec<u8> {
    let p = utf16(path);
    let mut b = 9u16.to_le_bytes().to_vec();
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&72u16.to_le_bytes());
    b.extend_from_slice(&(p.len() as u16).to_le_bytes());
    b.extend_from_slice(&p);
    b
}

pub(crate) fn smb2_tree_connect_resp(share_type: u8) -> Vec<u8> {
    let mut b = 16u16.to_le_bytes().to_vec();
    b.push(share_type);
    b.push(0);
    b.extend_from_slice(&0u32.to_le_bytes()); // ShareFlags
    b.extend_from_slice(&0u32.to_le_bytes()); // Capabilities
    b.extend_from_slice(&0x001f_01ffu32.to_le_bytes()); // MaximalAccess
    b
}

pub(crate) fn smb2_create_req(name: &str) -> Vec<u8> {
    let n = utf16(name);
    let mut b = 57u16.to_le_bytes().to_vec();
    b.push(0); // SecurityFlags
    b.push(0); // RequestedOplockLevel
    b.extend_from_slice(&2u32.to_le_bytes()); // ImpersonationLevel
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0x0012_019fu32.to_le_bytes()); // DesiredAccess
    b.extend_from_slice(&0u32.to_le_bytes()); // FileAttributes
    b.extend_from_slice(&7u32.to_le_bytes()); // ShareAccess
    b.extend_from_slice(&1u32.to_le_bytes()); // CreateDisposition: open
    b.extend_from_slice(&0x40u32.to_le_bytes()); // CreateOptions: non-directory
    b.extend_from_slice(&120u16.to_le_bytes()); // NameOffset
    b.extend_from_slice(&(n.len() as u16).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&n);
    b
}

pub(crate) const SMB2_FILE_ID: [u8; 16] = [
    0x11, 0, 0, 0, 0, 0, 0, 0, 0x05, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
];

pub(crate) fn smb2_create_resp() -> Vec<u8> {
    let mut b = 89u16.to_le_bytes().to_vec();
    b.push(0); // OplockLevel
    b.push(0); // Flags
    b.extend_from_slice(&1u32.to_le_bytes()); // CreateAction: opened
    b.extend_from_slice(&[0u8; 32]); // times
    b.extend_from_slice(&4096u64.to_le_bytes()); // AllocationSize
    b.extend_from_slice(&0u64.to_le_bytes()); // EndofFile
    b.extend_from_slice(&0x80u32.to_le_bytes()); // FileAttributes normal
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&SMB2_FILE_ID);
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.push(0);
    b
}

pub(crate) fn smb2_write_req(data: &[u8]) -> Vec<u8> {
    let mut b = 49u16.to_le_bytes().to_vec();
    b.extend_from_slice(&112u16.to_le_bytes()); // DataOffset
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // Offset
    b.extend_from_slice(&SMB2_FILE_ID);
    b.extend_from_slice(&0u32.to_le_bytes()); // Channel
    b.extend_from_slice(&0u32.to_le_bytes()); // RemainingBytes
    b.extend_from_slice(&0u32.to_le_bytes()); // WriteChannelInfo offset/length
    b.extend_from_slice(&0u32.to_le_bytes()); // Flags
    b.extend_from_slice(data);
    b
}

pub(crate) fn smb2_write_resp(count: u32) -> Vec<u8> {
    let mut b = 17u16.to_le_bytes().to_vec();
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&count.to_le_bytes());
    b.extend_from_slice(&[0u8; 8]);
    b
}

pub(crate) fn smb2_read_req(len: u32) -> Vec<u8> {
    let mut b = 49u16.to_le_bytes().to_vec();
    b.push(0x50); // Padding
    b.push(0);
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&SMB2_FILE_ID);
    b.extend_from_slice(&0u32.to_le_bytes()); // MinimumCount
    b.extend_from_slice(&0u32.to_le_bytes()); // Channel
    b.extend_from_slice(&0u32.to_le_bytes()); // RemainingBytes
    b.extend_from_slice(&0u32.to_le_bytes());
    b.push(0);
    b
}

pub(crate) fn smb2_read_resp(data: &[u8]) -> Vec<u8> {
    let mut b = 17u16.to_le_bytes().to_vec();
    b.push(80); // DataOffset
    b.push(0);
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(data);
    b
}

/// SMB3 TRANSFORM_HEADER (0xFD 'SMB') around `encrypted_len` bytes of ciphertext,
/// in a NetBIOS session frame.
pub(crate) fn smb3_transform(rng: &mut Rng, session: u64, encrypted_len: usize) -> Vec<u8> {
    let len = 52 + encrypted_len;
    let mut v = vec![0, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    v.extend_from_slice(&[0xfd, b'S', b'M', b'B']);
    v.extend_from_slice(&rng.bytes(16)); // Signature
    let mut nonce = rng.bytes(11);
    nonce.extend_from_slice(&[0u8; 5]);
    v.extend_from_slice(&nonce);
    v.extend_from_slice(&(encrypted_len as u32).to_le_bytes()); // OriginalMessageSize
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // Flags: encrypted
    v.extend_from_slice(&session.to_le_bytes());
    v.extend_from_slice(&rng.bytes(encrypted_len));
    v
}

// ---------------------------------------------------------------------------------
// LDAP (RFC 4511)
// ---------------------------------------------------------------------------------

pub(crate) fn ldap_msg(id: i64, op: &[u8]) -> Vec<u8> {
    seq(&[&int(id), op])
}

pub(crate) fn ldap_bind_simple(id: i64, dn: &str, password: &str) -> Vec<u8> {
    ldap_msg(
        id,
        &tlv(
            0x60,
            &cat(&[
                &int(3),
                &octets(dn.as_bytes()),
                &tlv(0x80, password.as_bytes()),
            ]),
        ),
    )
}

pub(crate) fn ldap_bind_sasl(id: i64, mech: &str, creds: &[u8]) -> Vec<u8> {
    let sasl = tlv(0xa3, &cat(&[&octets(mech.as_bytes()), &octets(creds)]));
    ldap_msg(id, &tlv(0x60, &cat(&[&int(3), &octets(b""), &sasl])))
}

pub(crate) fn ldap_bind_resp(id: i64, code: i64, sasl_creds: Option<&[u8]>) -> Vec<u8> {
    let c = sasl_creds.map(|c| tlv(0x87, c)).unwrap_or_default();
    ldap_msg(
        id,
        &tlv(
            0x61,
            &cat(&[&enumerated(code), &octets(b""), &octets(b""), &c]),
        ),
    )
}

/// searchRequest with an equality filter `attr=value` (or `(objectClass=*)` if None).
pub(crate) fn ldap_search(
    id: i64,
    base: &str,
    scope: i64,
    filter: Option<(&str, &str)>,
    attrs: &[&str],
) -> Vec<u8> {
    let f = match filter {
        Some((a, v)) => tlv(0xa3, &cat(&[&octets(a.as_bytes()), &octets(v.as_bytes())])),
        None => tlv(0x87, b"objectClass"),
    };
    let al: Vec<Vec<u8>> = attrs.iter().map(|a| octets(a.as_bytes())).collect();
    let ar: Vec<&[u8]> = al.iter().map(|v| v.as_slice()).collect();
    ldap_msg(
        id,
        &tlv(
            0x63,
            &cat(&[
                &octets(base.as_bytes()),
                &enumerated(scope),
                &enumerated(0),
                &int(0),
                &int(120),
                &boolean(false),
                &f,
                &seq(&ar),
            ]),
        ),
    )
}

/// CLDAP netlogon ping: (&(DnsDomain=contoso.com)(NtVer=\x06\0\0\0)) for Netlogon.
pub(crate) fn cldap_netlogon_search(id: i64) -> Vec<u8> {
    let eq = |a: &str, v: &[u8]| tlv(0xa3, &cat(&[&octets(a.as_bytes()), &octets(v)]));
    let f = tlv(
        0xa0,
        &cat(&[
            &eq("DnsDomain", b"contoso.com"),
            &eq("NtVer", &[6, 0, 0, 0]),
        ]),
    );
    ldap_msg(
        id,
        &tlv(
            0x63,
            &cat(&[
                &octets(b""),
                &enumerated(0),
                &enumerated(0),
                &int(0),
                &int(0),
                &boolean(false),
                &f,
                &seq(&[&octets(b"Netlogon")]),
            ]),
        ),
    )
}

pub(crate) fn ldap_entry(id: i64, dn: &str, attr: &str, val: &[u8]) -> Vec<u8> {
    let a = seq(&[&octets(attr.as_bytes()), &set(&[&octets(val)])]);
    ldap_msg(id, &tlv(0x64, &cat(&[&octets(dn.as_bytes()), &seq(&[&a])])))
}

pub(crate) fn ldap_done(id: i64) -> Vec<u8> {
    ldap_msg(
        id,
        &tlv(0x65, &cat(&[&enumerated(0), &octets(b""), &octets(b"")])),
    )
}

const OID_STARTTLS: &[u8] = b"1.3.6.1.4.1.1466.20037";

pub(crate) fn ldap_starttls_req(id: i64) -> Vec<u8> {
    ldap_msg(id, &tlv(0x77, &tlv(0x80, OID_STARTTLS)))
}

pub(crate) fn ldap_starttls_resp(id: i64) -> Vec<u8> {
    ldap_msg(
        id,
        &tlv(
            0x78,
            &cat(&[
                &enumerated(0),
                &octets(b""),
                &octets(b""),
                &tlv(0x8a, OID_STARTTLS),
            ]),
        ),
    )
}

/// SASL-wrapped buffer: 4-byte length, then an RFC 4121 Wrap token (TOK_ID 05 04) with
/// the Sealed flag, sent by the initiator or the acceptor.
pub(crate) fn sasl_wrap(
    rng: &mut Rng,
    from_acceptor: bool,
    seqno: u64,
    plain_len: usize,
) -> Vec<u8> {
    // Flags: SentByAcceptor 0x01, Sealed 0x02, AcceptorSubkey 0x04.
    let flags = 0x06 | u8::from(from_acceptor);
    let mut tok = vec![0x05, 0x04, flags, 0xff];
    tok.extend_from_slice(&0u16.to_be_bytes()); // EC
    tok.extend_from_slice(&28u16.to_be_bytes()); // RRC
    tok.extend_from_slice(&seqno.to_be_bytes());
    tok.extend_from_slice(&rng.bytes(plain_len + 16 + 28));
    let mut v = (tok.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&tok);
    v
}

// ---------------------------------------------------------------------------------
// TLS 1.0 / 1.2 (RFC 2246, RFC 5246)
// ---------------------------------------------------------------------------------

pub(crate) const TLS10: u16 = 0x0301;
pub(crate) const TLS12: u16 = 0x0303;
const CT_CCS: u8 = 20;
const CT_HANDSHAKE: u8 = 22;
const CT_APPDATA: u8 = 23;
/// Largest plaintext record (RFC 5246 6.2.1).
const TLS_MAX_RECORD: usize = 1 << 14;

pub(crate) fn tls_record(ct: u8, version: u16, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ct];
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn hs(typ: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut v = vec![typ, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    v.extend_from_slice(body);
    v
}

fn ext(typ: u16, body: &[u8]) -> Vec<u8> {
    let mut v = typ.to_be_bytes().to_vec();
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// ClientHello offering up to `version`, with SNI `sni`.
pub(crate) fn tls_client_hello(rng: &mut Rng, version: u16, sni: Option<&str>) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    b.extend_from_slice(&rng.bytes(32));
    b.push(0); // session id
    let suites: &[u16] = if version >= TLS12 {
        &[
            0xc030, 0xc02f, 0xc028, 0xc027, 0x009f, 0x009e, 0x003d, 0x003c, 0x0035, 0x002f, 0x000a,
        ]
    } else {
        &[0xc014, 0xc013, 0x0035, 0x002f, 0x000a, 0x0005, 0x0004]
    };
    b.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        b.extend_from_slice(&s.to_be_bytes());
    }
    b.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut l = vec![0u8];
        l.extend_from_slice(&(name.len() as u16).to_be_bytes());
        l.extend_from_slice(name.as_bytes());
        let mut sn = (l.len() as u16).to_be_bytes().to_vec();
        sn.extend_from_slice(&l);
        exts.extend_from_slice(&ext(0x0000, &sn));
    }
    exts.extend_from_slice(&ext(0x000a, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18])); // groups
    exts.extend_from_slice(&ext(0x000b, &[1, 0])); // ec_point_formats
    if version >= TLS12 {
        exts.extend_from_slice(&ext(0x000d, &[0, 8, 4, 1, 5, 1, 2, 1, 4, 3])); // sig algs
    }
    exts.extend_from_slice(&ext(0x0017, &[])); // extended_master_secret
    exts.extend_from_slice(&ext(0xff01, &[0])); // renegotiation_info
    b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    b.extend_from_slice(&exts);
    tls_record(CT_HANDSHAKE, TLS10, &hs(1, &b))
}

/// A short self-signed X.509 certificate for `cn` (1024-bit RSA key shape, random values).
pub(crate) fn fake_cert(rng: &mut Rng, cn: &str) -> Vec<u8> {
    let alg = seq(&[&oid(OID_SHA256_RSA), &[0x05, 0x00]]);
    let name = seq(&[&set(&[&seq(&[&oid(OID_CN), &tlv(0x0c, cn.as_bytes())])])]);
    let mut modulus = vec![0u8, 0xc0];
    modulus.extend_from_slice(&rng.bytes(127));
    let rsa = seq(&[&tlv(0x02, &modulus), &int(65537)]);
    let spki = seq(&[&seq(&[&oid(OID_RSA), &[0x05, 0x00]]), &bits(&rsa)]);
    let validity = seq(&[&tlv(0x17, b"260101000000Z"), &tlv(0x17, b"360101000000Z")]);
    let mut serial = rng.bytes(8);
    serial[0] &= 0x7f;
    serial[0] |= 0x10;
    let tbs = seq(&[
        &ctx(0, &int(2)),
        &tlv(0x02, &serial),
        &alg,
        &name,
        &validity,
        &name,
        &spki,
    ]);
    seq(&[&tbs, &alg, &bits(&rng.bytes(128))])
}

/// Server's first flight: ServerHello (TLS_RSA_WITH_AES_128_CBC_SHA), Certificate,
/// optional CertificateRequest, ServerHelloDone, in one handshake record.
pub(crate) fn tls_server_flight(
    rng: &mut Rng,
    version: u16,
    cn: &str,
    request_client_cert: bool,
) -> Vec<u8> {
    let mut sh = version.to_be_bytes().to_vec();
    sh.extend_from_slice(&rng.bytes(32));
    sh.push(32);
    sh.extend_from_slice(&rng.bytes(32));
    sh.extend_from_slice(&0x002fu16.to_be_bytes());
    sh.push(0);
    let exts = cat(&[&ext(0xff01, &[0]), &ext(0x0017, &[])]);
    sh.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    sh.extend_from_slice(&exts);
    let mut msgs = hs(2, &sh);
    msgs.extend_from_slice(&hs(11, &cert_list(&fake_cert(rng, cn))));
    if request_client_cert {
        let mut cr = vec![1, 1]; // certificate_types: rsa_sign
        if version >= TLS12 {
            cr.extend_from_slice(&[0, 4, 4, 1, 2, 1]);
        }
        cr.extend_from_slice(&0u16.to_be_bytes()); // certificate_authorities
        msgs.extend_from_slice(&hs(13, &cr));
    }
    msgs.extend_from_slice(&hs(14, &[]));
    tls_record(CT_HANDSHAKE, version, &msgs)
}

fn cert_list(cert: &[u8]) -> Vec<u8> {
    let n = cert.len();
    let total = n + 3;
    let mut v = vec![(total >> 16) as u8, (total >> 8) as u8, total as u8];
    v.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    v.extend_from_slice(cert);
    v
}

/// Client's second flight: [Certificate, ] ClientKeyExchange (RSA), [CertificateVerify,]
/// ChangeCipherSpec, encrypted Finished.
pub(crate) fn tls_client_finish(
    rng: &mut Rng,
    version: u16,
    client_cert_cn: Option<&str>,
) -> Vec<u8> {
    let mut msgs = Vec::new();
    if let Some(cn) = client_cert_cn {
        msgs.extend_from_slice(&hs(11, &cert_list(&fake_cert(rng, cn))));
    }
    let mut cke = 128u16.to_be_bytes().to_vec();
    cke.extend_from_slice(&rng.bytes(128));
    msgs.extend_from_slice(&hs(16, &cke));
    if client_cert_cn.is_some() {
        let mut cv = Vec::new();
        if version >= TLS12 {
            cv.extend_from_slice(&[4, 1]);
        }
        cv.extend_from_slice(&128u16.to_be_bytes());
        cv.extend_from_slice(&rng.bytes(128));
        msgs.extend_from_slice(&hs(15, &cv));
    }
    let mut v = tls_record(CT_HANDSHAKE, version, &msgs);
    v.extend_from_slice(&tls_ccs_finished(rng, version));
    v
}

/// The client's flight when the server asked for a certificate and the client has none
/// (RFC 5246 7.4.6): an empty Certificate message, ClientKeyExchange, no
/// CertificateVerify, then ChangeCipherSpec and Finished.
pub(crate) fn tls_client_finish_without_cert(rng: &mut Rng, version: u16) -> Vec<u8> {
    let mut msgs = hs(11, &[0, 0, 0]); // certificate_list of length 0
    let mut cke = 128u16.to_be_bytes().to_vec();
    cke.extend_from_slice(&rng.bytes(128));
    msgs.extend_from_slice(&hs(16, &cke));
    let mut v = tls_record(CT_HANDSHAKE, version, &msgs);
    v.extend_from_slice(&tls_ccs_finished(rng, version));
    v
}

/// ChangeCipherSpec and an encrypted Finished (IV + block-padded ciphertext).
pub(crate) fn tls_ccs_finished(rng: &mut Rng, version: u16) -> Vec<u8> {
    let mut v = tls_record(CT_CCS, version, &[1]);
    let n = if version >= TLS12 { 64 } else { 48 };
    let mut fin = rng.bytes(n);
    // Keep the first ciphertext byte out of the handshake-type range so that a dissector
    // without keys does not mistake it for a plaintext HelloRequest (type 0).
    fin[0] |= 0x80;
    v.extend_from_slice(&tls_record(CT_HANDSHAKE, version, &fin));
    v
}

/// `total` bytes of application data as records of at most 16 KiB (plus CBC overhead).
pub(crate) fn tls_app(rng: &mut Rng, version: u16, total: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(total + total / TLS_MAX_RECORD * 5 + 64);
    let mut left = total.max(1);
    while left > 0 {
        let n = left.min(TLS_MAX_RECORD);
        // AES-CBC with SHA-1: IV (TLS 1.1+), MAC 20, padding to 16.
        let body = (n + 20).div_ceil(16) * 16 + if version >= TLS12 { 16 } else { 0 };
        v.push(CT_APPDATA);
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(&(body as u16).to_be_bytes());
        let at = v.len();
        v.resize(at + body, 0);
        rng.fill(&mut v[at..]);
        left -= n;
    }
    v
}

// ---------------------------------------------------------------------------------
// DNS (RFC 1035)
// ---------------------------------------------------------------------------------

fn dns_name(name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    for label in name.split('.') {
        v.push(label.len() as u8);
        v.extend_from_slice(label.as_bytes());
    }
    v.push(0);
    v
}

/// Query for `name`/`qtype` (1 A, 33 SRV).
pub(crate) fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    v.extend_from_slice(&dns_name(name));
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v
}

/// Answer to [`dns_query`]: one A record or one SRV record pointing at `target`.
pub(crate) fn dns_answer(id: u16, name: &str, qtype: u16, ip: [u8; 4], target: &str) -> Vec<u8> {
    let mut v = id.to_be_bytes().to_vec();
    v.extend_from_slice(&[0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    v.extend_from_slice(&dns_name(name));
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&[0xc0, 0x0c]);
    v.extend_from_slice(&qtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&600u32.to_be_bytes());
    let rdata = if qtype == 33 {
        let mut r = vec![0, 0, 0, 100, 0x01, 0x85]; // priority 0, weight 100, port 389
        r.extend_from_slice(&dns_name(target));
        r
    } else {
        ip.to_vec()
    };
    v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    v.extend_from_slice(&rdata);
    v
}

/// DNS over TCP: 2-byte length prefix.
pub(crate) fn dns_tcp(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

/// base64 (standard alphabet, padded).
pub(crate) fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_integers() {
        assert_eq!(int(5), vec![0x02, 0x01, 0x05]);
        assert_eq!(int(128), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(int(-1), vec![0x02, 0x01, 0xff]);
        assert_eq!(int(65537), vec![0x02, 0x03, 0x01, 0x00, 0x01]);
        let long = tlv(0x04, &[0u8; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = tlv(0x04, &[0u8; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn uuid_wire_form_of_emsmdb() {
        assert_eq!(
            uuid(UUID_EMSMDB),
            [
                0x00, 0xdb, 0xf1, 0xa4, 0x47, 0xca, 0x67, 0x10, 0xb3, 0x1f, 0x00, 0xdd, 0x01, 0x06,
                0x62, 0xda
            ]
        );
    }

    #[test]
    fn ntlm_offsets_point_inside_the_message() {
        let mut rng = Rng::new(1);
        for v2 in [true, false] {
            let m = ntlm_authenticate(&mut rng, "jdoe", v2);
            assert_eq!(&m[..8], b"NTLMSSP\0");
            assert_eq!(m[8], 3);
            // NtChallengeResponseFields at 20: length, maxlen, offset.
            let nt_len = u16::from_le_bytes([m[20], m[21]]) as usize;
            let nt_off = u32::from_le_bytes([m[24], m[25], m[26], m[27]]) as usize;
            assert!(nt_off + nt_len <= m.len());
            assert_eq!(nt_len == 24, !v2);
            // UserNameFields at 36 point at UTF-16 "jdoe".
            let u_len = u16::from_le_bytes([m[36], m[37]]) as usize;
            let u_off = u32::from_le_bytes([m[40], m[41], m[42], m[43]]) as usize;
            assert_eq!(&m[u_off..u_off + u_len], &utf16("jdoe")[..]);
        }
    }

    #[test]
    fn rpc_bind_lengths_and_trailer() {
        let neg = ntlm_negotiate();
        let a = RpcAuth {
            typ: AUTH_NTLMSSP,
            level: LEVEL_PRIVACY,
            value: &neg,
        };
        let p = rpc_bind(1, UUID_EMSMDB, 4811, 0, Some(&a));
        assert_eq!(u16::from_le_bytes([p[8], p[9]]) as usize, p.len()); // frag_length
        assert_eq!(u16::from_le_bytes([p[10], p[11]]) as usize, neg.len()); // auth_length
        let trailer = p.len() - neg.len() - 8;
        assert_eq!(&p[trailer..trailer + 2], &[AUTH_NTLMSSP, LEVEL_PRIVACY]);
    }

    #[test]
    fn tls_app_records_are_well_formed() {
        let mut rng = Rng::new(2);
        let v = tls_app(&mut rng, TLS12, 40_000);
        let mut at = 0;
        let mut n = 0;
        while at < v.len() {
            assert_eq!(v[at], CT_APPDATA);
            let len = u16::from_be_bytes([v[at + 3], v[at + 4]]) as usize;
            at += 5 + len;
            n += 1;
        }
        assert_eq!(at, v.len());
        assert_eq!(n, 3);
    }
}
