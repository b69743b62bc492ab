//! The named scenarios: one documented case per Exchange 2007 data-path family, in
//! compliant and violating variants. Each builder returns the flows of its case as
//! [`Template`]s (most cases have one flow; RPC cases add the endpoint-mapper flow,
//! Kerberos and DNS cases a UDP and a TCP flow). The doc comment of each builder says
//! what dpaudit must report for it. Addresses follow the plan in [`super`].

use super::packet::{Session, Template};
use super::payloads::*;
use super::Rng;

/// Hosts of the addressing plan (see the module doc of `gen`).
pub(crate) const HUB1: [u8; 4] = [10, 1, 0, 10];
pub(crate) const HUB2: [u8; 4] = [10, 1, 0, 11];
pub(crate) const EDGE: [u8; 4] = [192, 0, 2, 25];
pub(crate) const CAS: [u8; 4] = [10, 1, 0, 20];
pub(crate) const MBX: [u8; 4] = [10, 1, 0, 30];
pub(crate) const MBX2: [u8; 4] = [10, 1, 0, 31];
pub(crate) const UM: [u8; 4] = [10, 1, 0, 40];
pub(crate) const DC: [u8; 4] = [10, 1, 0, 5];
pub(crate) const GATEWAY: [u8; 4] = [10, 9, 0, 2];

/// The dynamic port the endpoint mapper names for EMSMDB and DRSUAPI.
const MAPI_DYNAMIC_PORT: u16 = 59532;
const DRS_DYNAMIC_PORT: u16 = 49158;
/// EMSMDB interface version 4811.0 (MS-OXCRPC 1.9).
const EMSMDB_MAJOR: u16 = 4811;

const USER: &str = "jdoe";
const PASSWORD: &str = "Summer2026!";

/// What a builder may vary: the random stream for its bytes, the TCP segment size and
/// how much application data its bulk part carries.
pub(crate) struct Ctx {
    pub rng: Rng,
    pub mss: usize,
    /// Bytes of the main transfer (0 = handshake only, one small record).
    pub bulk: usize,
}

/// One entry of the registry.
pub(crate) struct Scenario {
    pub name: &'static str,
    pub build: fn(&mut Ctx) -> Vec<Template>,
    /// Always played over IPv6 / inside an 802.1Q tag.
    pub ipv6: bool,
    pub vlan: Option<u16>,
    /// Relative weights in the Full, Handshake and Bulk mixes (0 = not in that mix).
    pub weights: [u32; 3],
}

macro_rules! sc {
    ($name:expr, $f:ident, $w:expr) => {
        Scenario {
            name: $name,
            build: $f,
            ipv6: false,
            vlan: None,
            weights: $w,
        }
    };
}

/// Every scenario, in registry order.
pub(crate) fn registry() -> Vec<Scenario> {
    let mut v = vec![
        sc!(
            "smtp-hub-hub-anonymoustls",
            smtp_hub_hub_anonymoustls,
            [6, 0, 3]
        ),
        sc!("smtp-hub-hub-cleartext", smtp_hub_hub_cleartext, [2, 0, 0]),
        sc!(
            "smtp-edge-hub-mutualtls",
            smtp_edge_hub_mutualtls,
            [4, 0, 1]
        ),
        sc!(
            "smtp-client-auth-login-clear",
            smtp_client_auth_login_clear,
            [2, 5, 0]
        ),
        sc!("smtp-client-starttls", smtp_client_starttls, [3, 0, 0]),
        sc!("smtp-starttls-refused", smtp_starttls_refused, [1, 5, 0]),
        sc!("https-owa", https_owa, [10, 0, 6]),
        sc!("https-owa-tls10", https_owa_tls10, [2, 0, 1]),
        sc!("http-owa-forms-clear", http_owa_forms_clear, [2, 1, 0]),
        sc!("http-ews-basic-clear", http_ews_basic_clear, [2, 1, 0]),
        sc!(
            "http-activesync-basic-clear",
            http_activesync_basic_clear,
            [3, 3, 0]
        ),
        sc!(
            "http-autodiscover-ntlmv2",
            http_autodiscover_ntlmv2,
            [2, 1, 0]
        ),
        sc!("http-owa-ntlmv1", http_owa_ntlmv1, [1, 1, 0]),
        sc!(
            "http-ews-negotiate-kerberos",
            http_ews_negotiate_kerberos,
            [2, 1, 0]
        ),
        sc!("http-outlook-anywhere", http_outlook_anywhere, [2, 1, 0]),
        sc!("http-oab", http_oab, [1, 1, 0]),
        sc!("http-webdav", http_webdav, [1, 1, 0]),
        sc!("imap-login-clear", imap_login_clear, [1, 6, 0]),
        sc!("imap-starttls", imap_starttls, [1, 0, 0]),
        sc!("pop3-user-pass-clear", pop3_user_pass_clear, [1, 10, 0]),
        sc!("pop3-stls", pop3_stls, [1, 0, 0]),
        sc!("mapi-rpc-privacy", mapi_rpc_privacy, [6, 2, 0]),
        sc!("mapi-rpc-connect", mapi_rpc_connect, [1, 1, 0]),
        sc!(
            "drsuapi-kerberos-privacy",
            drsuapi_kerberos_privacy,
            [2, 2, 0]
        ),
        sc!("smb2-ntlm", smb2_ntlm, [2, 1, 0]),
        sc!("smb2-kerberos", smb2_kerberos, [2, 1, 0]),
        sc!("smb3-encrypted", smb3_encrypted, [3, 0, 4]),
        sc!("ldap-simple-bind-clear", ldap_simple_bind_clear, [1, 5, 0]),
        sc!("ldaps-edgesync", ldaps_edgesync, [2, 0, 1]),
        sc!("ldap-sasl-sealed", ldap_sasl_sealed, [6, 1, 0]),
        sc!("ldap-starttls", ldap_starttls, [1, 0, 0]),
        sc!("cldap", cldap, [4, 2, 0]),
        sc!("kerberos-as-tgs", kerberos_as_tgs, [6, 2, 0]),
        sc!("kerberos-rc4-des", kerberos_rc4_des, [1, 1, 0]),
        sc!("dns", dns, [8, 14, 0]),
        sc!("sip-clear", sip_clear, [1, 1, 0]),
        sc!("sip-tls", sip_tls, [1, 0, 0]),
        sc!("cluster-heartbeat", cluster_heartbeat, [3, 8, 0]),
        sc!("esp", esp, [2, 0, 1]),
    ];
    // ipv6-https: https-owa from an IPv6 client (2001:db8:2::/48) to cas.
    // dpaudit must report: path C3, encryption tls, compliant, over IPv6.
    v.push(Scenario {
        ipv6: true,
        ..sc!("ipv6-https", https_owa, [2, 0, 1])
    });
    // vlan-smtp: smtp-client-starttls inside an 802.1Q tag (VLAN 100).
    // dpaudit must report: the same as smtp-client-starttls; the tag is decoded.
    v.push(Scenario {
        vlan: Some(100),
        ..sc!("vlan-smtp", smtp_client_starttls, [1, 0, 0])
    });
    // Later additions go last, so the flows of the shipped fixture before them keep
    // their stream indices and frame numbers.
    v.extend([
        sc!("https-owa-midstream", https_owa_midstream, [0, 0, 0]),
        sc!(
            "smtp-edge-hub-no-client-cert",
            smtp_edge_hub_no_client_cert,
            [0, 0, 0]
        ),
        sc!(
            "ldap-dc-simple-bind-clear",
            ldap_dc_simple_bind_clear,
            [0, 0, 0]
        ),
    ]);
    v
}

/// The data-path families of `fixtures/families`: per family, the scenarios of its
/// compliant capture and of its violating capture (`dpaudit gen --family NAME`).
pub(crate) const FAMILIES: &[(&str, &[&str])] = &[
    (
        "transport-compliant",
        &[
            "smtp-hub-hub-anonymoustls",
            "smtp-edge-hub-mutualtls",
            "ldaps-edgesync",
            "smtp-client-starttls",
        ],
    ),
    (
        "transport-violating",
        &[
            "smtp-hub-hub-cleartext",
            "smtp-edge-hub-no-client-cert",
            "ldap-simple-bind-clear",
            "smtp-starttls-refused",
            "smtp-client-auth-login-clear",
        ],
    ),
    (
        "client-access-compliant",
        &["https-owa", "imap-starttls", "pop3-stls"],
    ),
    (
        "client-access-violating",
        &[
            "http-owa-forms-clear",
            "http-ews-basic-clear",
            "http-activesync-basic-clear",
            "http-autodiscover-ntlmv2",
            "https-owa-tls10",
            "imap-login-clear",
            "pop3-user-pass-clear",
        ],
    ),
    (
        "mailbox-compliant",
        &["mapi-rpc-privacy", "smb3-encrypted", "esp"],
    ),
    (
        "mailbox-violating",
        &["mapi-rpc-connect", "smb2-ntlm", "cluster-heartbeat"],
    ),
    ("unified-messaging-compliant", &["sip-tls"]),
    ("unified-messaging-violating", &["sip-clear"]),
    (
        "directory-compliant",
        &[
            "ldap-sasl-sealed",
            "ldap-starttls",
            "kerberos-as-tgs",
            "dns",
        ],
    ),
    (
        "directory-violating",
        &["ldap-dc-simple-bind-clear", "kerberos-rc4-des"],
    ),
];

// ---------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------

/// Readable filler for cleartext bodies (HTML/XML-like text).
fn filler(n: usize) -> Vec<u8> {
    const LINE: &[u8] =
        b"<div class=\"item\">Quarterly planning notes for the contoso mail team</div>\r\n";
    LINE.iter().copied().cycle().take(n).collect()
}

fn http_req(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: mail.contoso.com\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    s.push_str("\r\n");
    let mut v = s.into_bytes();
    v.extend_from_slice(body);
    v
}

fn http_resp(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut s =
        format!("HTTP/1.1 {status}\r\nServer: Microsoft-IIS/7.0\r\nX-Powered-By: ASP.NET\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut v = s.into_bytes();
    v.extend_from_slice(body);
    v
}

fn h(k: &'static str, v: impl Into<String>) -> (&'static str, String) {
    (k, v.into())
}

/// Full TLS handshake (RSA key exchange) on an open session.
fn tls_handshake(
    s: &mut Session,
    c: &mut Ctx,
    version: u16,
    sni: Option<&str>,
    cn: &str,
    client_cn: Option<&str>,
) {
    let ch = tls_client_hello(&mut c.rng, version, sni);
    s.client(&ch);
    let sf = tls_server_flight(&mut c.rng, version, cn, client_cn.is_some());
    s.server(&sf);
    let cf = tls_client_finish(&mut c.rng, version, client_cn);
    s.client(&cf);
    let fin = tls_ccs_finished(&mut c.rng, version);
    s.server(&fin);
}

/// One request/response pair of encrypted application data.
fn tls_exchange(s: &mut Session, c: &mut Ctx, version: u16, req: usize, resp: usize) {
    let a = tls_app(&mut c.rng, version, req);
    s.client(&a);
    let b = tls_app(&mut c.rng, version, resp);
    s.server(&b);
}

/// Size of a response body: `base` plus the context's bulk bytes.
fn sized(c: &Ctx, base: usize) -> usize {
    base + c.bulk
}

fn tcp(c: &Ctx) -> Session {
    Session::tcp(c.mss)
}

// ---------------------------------------------------------------------------------
// SMTP
// ---------------------------------------------------------------------------------

const SMTP_BANNER_HUB2: &[u8] =
    b"220 hub02.contoso.com Microsoft ESMTP MAIL Service ready at Thu, 1 Jan 2026 00:00:00 +0000\r\n";
const SMTP_BANNER_HUB1: &[u8] =
    b"220 hub01.contoso.com Microsoft ESMTP MAIL Service ready at Thu, 1 Jan 2026 00:00:00 +0000\r\n";

fn ehlo_reply(host: &str, peer: &str, keywords: &[&str]) -> Vec<u8> {
    let mut s = format!("250-{host} Hello [{peer}]\r\n250-SIZE 10485760\r\n250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n");
    for k in keywords {
        s.push_str(&format!("250-{k}\r\n"));
    }
    s.push_str("250-8BITMIME\r\n250-BINARYMIME\r\n250 CHUNKING\r\n");
    s.into_bytes()
}

/// MAIL, RCPT, DATA, the message and QUIT, in clear.
fn smtp_transaction(s: &mut Session, c: &Ctx) {
    s.client(b"MAIL FROM:<jdoe@contoso.com> SIZE=2048\r\n");
    s.server(b"250 2.1.0 Sender OK\r\n");
    s.client(b"RCPT TO:<asmith@contoso.com>\r\n");
    s.server(b"250 2.1.5 Recipient OK\r\n");
    s.client(b"DATA\r\n");
    s.server(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
    let mut m =
        b"From: jdoe@contoso.com\r\nTo: asmith@contoso.com\r\nSubject: Planning\r\n\r\n".to_vec();
    m.extend_from_slice(&filler(sized(c, 300)));
    m.extend_from_slice(b"\r\n.\r\n");
    s.client(&m);
    s.server(b"250 2.6.0 <1@hub01.contoso.com> Queued mail for delivery\r\n");
    s.client(b"QUIT\r\n");
    s.server(b"221 2.0.0 Service closing transmission channel\r\n");
}

/// Hub Transport to Hub Transport on 25 (T1) with X-ANONYMOUSTLS, then a TLS 1.2
/// handshake and encrypted records (where X-EXPS GSSAPI and the mail travel).
/// dpaudit must report: path T1, encryption tls started by X-ANONYMOUSTLS, compliant;
/// the EHLO offered X-EXPS GSSAPI NTLM.
fn smtp_hub_hub_anonymoustls(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(SMTP_BANNER_HUB2);
    s.client(b"EHLO hub01.contoso.com\r\n");
    s.server(&ehlo_reply(
        "hub02.contoso.com",
        "10.1.0.10",
        &[
            "STARTTLS",
            "X-ANONYMOUSTLS",
            "AUTH NTLM",
            "X-EXPS GSSAPI NTLM",
            "XEXCH50",
        ],
    ));
    s.client(b"X-ANONYMOUSTLS\r\n");
    s.server(b"220 2.0.0 SMTP server ready\r\n");
    tls_handshake(&mut s, c, TLS12, None, "hub02", None);
    tls_exchange(&mut s, c, TLS12, 40, 400);
    tls_exchange(&mut s, c, TLS12, 1200, 60);
    tls_exchange(&mut s, c, TLS12, sized(c, 2000), 80);
    s.close();
    vec![s.finish(Some(HUB1), HUB2, None, 25)]
}

/// Hub to Hub on 25 with no TLS: X-EXPS NTLM in clear, then the message in clear.
/// dpaudit must report: path T1 unencrypted (violation), NTLM (v2) where Kerberos is
/// the default, STARTTLS not offered.
fn smtp_hub_hub_cleartext(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(SMTP_BANNER_HUB2);
    s.client(b"EHLO hub01.contoso.com\r\n");
    s.server(&ehlo_reply(
        "hub02.contoso.com",
        "10.1.0.10",
        &["AUTH NTLM", "X-EXPS NTLM", "XEXCH50"],
    ));
    s.client(format!("X-EXPS NTLM {}\r\n", b64(&ntlm_negotiate())).as_bytes());
    let ch = ntlm_challenge(&mut c.rng, "hub02");
    s.server(format!("334 {}\r\n", b64(&ch)).as_bytes());
    let au = ntlm_authenticate(&mut c.rng, "HUB01$", true);
    s.client(format!("{}\r\n", b64(&au)).as_bytes());
    s.server(b"235 2.7.0 Authentication successful\r\n");
    smtp_transaction(&mut s, c);
    s.close();
    vec![s.finish(Some(HUB1), HUB2, None, 25)]
}

/// The Edge's SMTP session to the first hub up to the hub's "ready" for STARTTLS.
fn edge_starttls(c: &mut Ctx) -> Session {
    let mut s = tcp(c);
    s.server(SMTP_BANNER_HUB1);
    s.client(b"EHLO edge.contoso.com\r\n");
    s.server(&ehlo_reply(
        "hub01.contoso.com",
        "192.0.2.25",
        &[
            "STARTTLS",
            "X-ANONYMOUSTLS",
            "AUTH NTLM",
            "X-EXPS GSSAPI NTLM",
        ],
    ));
    s.client(b"STARTTLS\r\n");
    s.server(b"220 2.0.0 SMTP server ready\r\n");
    s
}

/// Edge Transport to Hub Transport on 25 (T3): STARTTLS, then TLS 1.2 where the server
/// asks for and the Edge sends a client certificate (direct trust / mutual TLS).
/// dpaudit must report: path T3, encryption tls started by STARTTLS, client certificate
/// seen, compliant.
fn smtp_edge_hub_mutualtls(c: &mut Ctx) -> Vec<Template> {
    let mut s = edge_starttls(c);
    tls_handshake(
        &mut s,
        c,
        TLS12,
        Some("hub01.contoso.com"),
        "hub01.contoso.com",
        Some("edge.contoso.com"),
    );
    tls_exchange(&mut s, c, TLS12, 60, 300);
    tls_exchange(&mut s, c, TLS12, sized(c, 1500), 80);
    s.close();
    vec![s.finish(Some(EDGE), HUB1, None, 25)]
}

/// Edge Transport to Hub Transport on 25 (T3) with STARTTLS and TLS 1.2, where the hub
/// asks for a client certificate and the Edge sends an empty one: no mutual TLS.
/// dpaudit must report: path T3, encryption tls, no client certificate where direct
/// trust needs one (unsupported-auth, high).
fn smtp_edge_hub_no_client_cert(c: &mut Ctx) -> Vec<Template> {
    let mut s = edge_starttls(c);
    let ch = tls_client_hello(&mut c.rng, TLS12, Some("hub01.contoso.com"));
    s.client(&ch);
    let sf = tls_server_flight(&mut c.rng, TLS12, "hub01.contoso.com", true);
    s.server(&sf);
    let cf = tls_client_finish_without_cert(&mut c.rng, TLS12);
    s.client(&cf);
    let fin = tls_ccs_finished(&mut c.rng, TLS12);
    s.server(&fin);
    tls_exchange(&mut s, c, TLS12, 60, 300);
    tls_exchange(&mut s, c, TLS12, sized(c, 1500), 80);
    s.close();
    vec![s.finish(Some(EDGE), HUB1, None, 25)]
}

/// A client on 587 authenticating with AUTH LOGIN in clear although STARTTLS is offered.
/// dpaudit must report: path T11, cleartext credential (user jdoe@contoso.com and its
/// password, redacted), STARTTLS offered but not used, mechanism Login.
fn smtp_client_auth_login_clear(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(SMTP_BANNER_HUB1);
    s.client(b"EHLO WKS01\r\n");
    s.server(&ehlo_reply(
        "hub01.contoso.com",
        "10.2.0.1",
        &["STARTTLS", "AUTH GSSAPI NTLM LOGIN"],
    ));
    s.client(b"AUTH LOGIN\r\n");
    s.server(b"334 VXNlcm5hbWU6\r\n");
    s.client(format!("{}\r\n", b64(b"jdoe@contoso.com")).as_bytes());
    s.server(b"334 UGFzc3dvcmQ6\r\n");
    s.client(format!("{}\r\n", b64(PASSWORD.as_bytes())).as_bytes());
    s.server(b"235 2.7.0 Authentication successful\r\n");
    smtp_transaction(&mut s, c);
    s.close();
    vec![s.finish(None, HUB1, None, 587)]
}

/// A client on 587 that issues STARTTLS (accepted) and continues in TLS 1.2.
/// dpaudit must report: path T11, encryption tls started by STARTTLS, compliant.
fn smtp_client_starttls(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(SMTP_BANNER_HUB1);
    s.client(b"EHLO WKS01\r\n");
    s.server(&ehlo_reply(
        "hub01.contoso.com",
        "10.2.0.1",
        &["STARTTLS", "AUTH GSSAPI NTLM"],
    ));
    s.client(b"STARTTLS\r\n");
    s.server(b"220 2.0.0 SMTP server ready\r\n");
    tls_handshake(
        &mut s,
        c,
        TLS12,
        Some("hub01.contoso.com"),
        "hub01.contoso.com",
        None,
    );
    tls_exchange(&mut s, c, TLS12, 40, 300);
    tls_exchange(&mut s, c, TLS12, sized(c, 900), 80);
    s.close();
    vec![s.finish(None, HUB1, None, 587)]
}

/// A client on 25 whose STARTTLS is refused with 454; the session goes on in clear.
/// dpaudit must report: path T11, STARTTLS refused (454), unencrypted (violation).
fn smtp_starttls_refused(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(SMTP_BANNER_HUB1);
    s.client(b"EHLO WKS01\r\n");
    s.server(&ehlo_reply("hub01.contoso.com", "10.2.0.1", &["STARTTLS"]));
    s.client(b"STARTTLS\r\n");
    s.server(b"454 4.7.0 TLS not available due to temporary reason\r\n");
    smtp_transaction(&mut s, c);
    s.close();
    vec![s.finish(None, HUB1, None, 25)]
}

// ---------------------------------------------------------------------------------
// HTTPS / HTTP
// ---------------------------------------------------------------------------------

/// Outlook Web Access over HTTPS: TLS 1.2 ClientHello with SNI mail.contoso.com to
/// cas:443, then encrypted requests and responses.
/// dpaudit must report: path C3, encryption tls (TLS 1.2, SNI mail.contoso.com), compliant.
fn https_owa(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    tls_handshake(
        &mut s,
        c,
        TLS12,
        Some("mail.contoso.com"),
        "mail.contoso.com",
        None,
    );
    tls_exchange(&mut s, c, TLS12, 700, sized(c, 1100));
    s.close();
    vec![s.finish(None, CAS, None, 443)]
}

/// OWA over HTTPS picked up mid-stream: the capture starts after the TLS handshake, so
/// only application-data records (and the close) are seen; no SYN.
/// dpaudit must report: encryption tls, version and cipher suite unknown, so the verdict
/// is unknown (`unknown-visibility`, low), never a clean bill.
fn https_owa_midstream(c: &mut Ctx) -> Vec<Template> {
    let mut s = Session::tcp_midstream(c.mss);
    tls_exchange(&mut s, c, TLS12, 700, sized(c, 1100));
    tls_exchange(&mut s, c, TLS12, 500, 900);
    s.close();
    vec![s.finish(None, CAS, None, 443)]
}

/// OWA over HTTPS where TLS 1.0 is negotiated.
/// dpaudit must report: path C3, encryption tls, old TLS version 1.0 (downgrade finding).
fn https_owa_tls10(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    tls_handshake(
        &mut s,
        c,
        TLS10,
        Some("mail.contoso.com"),
        "mail.contoso.com",
        None,
    );
    tls_exchange(&mut s, c, TLS10, 700, sized(c, 1100));
    s.close();
    vec![s.finish(None, CAS, None, 443)]
}

/// OWA forms login POST /owa/auth/owaauth.dll on port 80 with username and password.
/// dpaudit must report: path C3, unencrypted, cleartext credential (Forms, contoso\jdoe).
fn http_owa_forms_clear(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    let body = b"destination=http%3A%2F%2Fmail.contoso.com%2Fowa%2F&flags=0&forcedownlevel=0&trusted=0&username=contoso%5Cjdoe&password=Summer2026%21&isUtf8=1";
    s.client(&http_req(
        "POST",
        "/owa/auth/owaauth.dll",
        &[
            h("Content-Type", "application/x-www-form-urlencoded"),
            h("User-Agent", "Mozilla/5.0 (Windows NT 6.1)"),
        ],
        body,
    ));
    s.server(&http_resp(
        "302 Moved Temporarily",
        &[
            h("Location", "http://mail.contoso.com/owa/"),
            h("Set-Cookie", "sessionid=8c1f0e2a; path=/"),
        ],
        b"",
    ));
    s.client(&http_req(
        "GET",
        "/owa/",
        &[h("Cookie", "sessionid=8c1f0e2a")],
        b"",
    ));
    s.server(&http_resp(
        "200 OK",
        &[h("Content-Type", "text/html; charset=utf-8")],
        &filler(sized(c, 600)),
    ));
    s.close();
    vec![s.finish(None, CAS, None, 80)]
}

fn basic(user: &str) -> String {
    format!(
        "Basic {}",
        b64(format!("contoso\\{user}:{PASSWORD}").as_bytes())
    )
}

const SOAP_FIND: &[u8] = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><FindItem xmlns=\"http://schemas.microsoft.com/exchange/services/2006/messages\" Traversal=\"Shallow\"><ItemShape><BaseShape xmlns=\"http://schemas.microsoft.com/exchange/services/2006/types\">IdOnly</BaseShape></ItemShape><ParentFolderIds><DistinguishedFolderId xmlns=\"http://schemas.microsoft.com/exchange/services/2006/types\" Id=\"inbox\"/></ParentFolderIds></FindItem></soap:Body></soap:Envelope>";

/// EWS on port 80 with HTTP Basic.
/// dpaudit must report: path C2 (EWS), unencrypted, cleartext credential (Basic,
/// contoso\jdoe).
fn http_ews_basic_clear(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.client(&http_req(
        "POST",
        "/EWS/Exchange.asmx",
        &[
            h("Content-Type", "text/xml; charset=utf-8"),
            h("Authorization", basic(USER)),
        ],
        SOAP_FIND,
    ));
    s.server(&http_resp(
        "200 OK",
        &[h("Content-Type", "text/xml; charset=utf-8")],
        &filler(sized(c, 500)),
    ));
    s.close();
    vec![s.finish(None, CAS, None, 80)]
}

/// Exchange ActiveSync Sync on port 80 with HTTP Basic.
/// dpaudit must report: path C7, unencrypted, cleartext credential (Basic, contoso\jdoe).
fn http_activesync_basic_clear(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.client(&http_req(
        "POST",
        "/Microsoft-Server-ActiveSync?Cmd=Sync&User=jdoe&DeviceId=Appl7A1C3B9F&DeviceType=iPhone",
        &[
            h("Authorization", basic(USER)),
            h("MS-ASProtocolVersion", "12.1"),
            h("Content-Type", "application/vnd.ms-sync.wbxml"),
            h("User-Agent", "Apple-iPhone/705.18"),
        ],
        &[
            0x03, 0x01, 0x6a, 0x00, 0x45, 0x5c, 0x4f, 0x4b, 0x03, 0x30, 0x00, 0x01, 0x52, 0x03,
            0x31, 0x00, 0x01, 0x01, 0x01, 0x01,
        ],
    ));
    s.server(&http_resp(
        "200 OK",
        &[
            h("Content-Type", "application/vnd.ms-sync.wbxml"),
            h("MS-Server-ActiveSync", "8.1"),
        ],
        &c.rng.bytes(sized(c, 200)),
    ));
    s.close();
    vec![s.finish(None, CAS, None, 80)]
}

/// Three-leg NTLM over HTTP on one connection: anonymous request, 401, NEGOTIATE,
/// CHALLENGE, AUTHENTICATE, 200.
fn http_ntlm(
    c: &mut Ctx,
    s: &mut Session,
    method: &str,
    path: &str,
    scheme: &str,
    body: &[u8],
    v2: bool,
) {
    s.client(&http_req(
        method,
        path,
        &[h("User-Agent", "Microsoft Office/12.0")],
        body,
    ));
    s.server(&http_resp(
        "401 Unauthorized",
        &[
            h("WWW-Authenticate", "Negotiate"),
            h("WWW-Authenticate", "NTLM"),
        ],
        b"",
    ));
    s.client(&http_req(
        method,
        path,
        &[h(
            "Authorization",
            format!("{scheme} {}", b64(&ntlm_negotiate())),
        )],
        b"",
    ));
    let ch = ntlm_challenge(&mut c.rng, "cas01");
    s.server(&http_resp(
        "401 Unauthorized",
        &[h("WWW-Authenticate", format!("{scheme} {}", b64(&ch)))],
        b"",
    ));
    let au = ntlm_authenticate(&mut c.rng, USER, v2);
    s.client(&http_req(
        method,
        path,
        &[h("Authorization", format!("{scheme} {}", b64(&au)))],
        body,
    ));
}

/// Autodiscover on port 80 with NTLMv2 (NEGOTIATE / CHALLENGE / AUTHENTICATE).
/// dpaudit must report: path C1, unencrypted, NTLMv2 (user CONTOSO\jdoe).
fn http_autodiscover_ntlmv2(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    let body = b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request><EMailAddress>jdoe@contoso.com</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>";
    http_ntlm(
        c,
        &mut s,
        "POST",
        "/Autodiscover/Autodiscover.xml",
        "NTLM",
        body,
        true,
    );
    s.server(&http_resp(
        "200 OK",
        &[h("Content-Type", "text/xml; charset=utf-8")],
        &filler(sized(c, 900)),
    ));
    s.close();
    vec![s.finish(None, CAS, None, 80)]
}

/// OWA on port 80 with NTLMv1 (24-byte NT response).
/// dpaudit must report: path C3, unencrypted, NTLMv1 (downgrade: OWA supports NTLMv2
/// only).
fn http_owa_ntlmv1(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    http_ntlm(c, &mut s, "GET", "/owa/", "NTLM", b"", false);
    s.server(&http_resp(
        "200 OK",
        &[h("Content-Type", "text/html; charset=utf-8")],
        &filler(sized(c, 700)),
    ));
    s.close();
    vec![s.finish(None, CAS, None, 80)]
}

/// EWS on port 80 with Negotiate carrying a SPNEGO NegTokenInit with a Kerberos AP-REQ
/// for HTTP/mail.contoso.com; the 200 carries the AP-REP.
/// dpaudit must report: path C2, Kerberos authentication, unencrypted HTTP.
fn http_ews_negotiate_kerberos(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    let tok = spnego_krb(&mut c.rng, &["HTTP", "mail.contoso.com"]);
    s.client(&http_req(
        "POST",
        "/EWS/Exchange.asmx",
        &[
            h("Content-Type", "text/xml; charset=utf-8"),
            h("Authorization", format!("Negotiate {}", b64(&tok))),
        ],
        SOAP_FIND,
    ));
    let done = spnego_krb_done(&mut c.rng);
    s.server(&http_resp(
        "200 OK",
        &[
            h("WWW-Authenticate", format!("Negotiate {}", b64(&done))),
            h("Content-Type", "text/xml; charset=utf-8"),
        ],
        &filler(sized(c, 500)),
    ));
    s.close();
    vec![s.finish(None, CAS, None, 80)]
}

/// Outlook Anywhere on port 80: RPC_IN_DATA and RPC_OUT_DATA to
/// /rpc/rpcproxy.dll?mbx.contoso.com:6001 with Basic; the IN channel carries an RTS
/// CONN/B1 PDU and a DCE/RPC bind to EMSMDB (NTLMSSP, privacy), the OUT channel the
/// bind_ack.
/// dpaudit must report: path C6, unencrypted HTTP, cleartext credential (Basic,
/// contoso\jdoe), RPC inside with EMSMDB and auth level 6.
fn http_outlook_anywhere(c: &mut Ctx) -> Vec<Template> {
    let path = "/rpc/rpcproxy.dll?mbx.contoso.com:6001";
    let hdrs = |len: &str| {
        vec![
            h("Accept", "application/rpc"),
            h("User-Agent", "MSRPC"),
            h("Authorization", basic(USER)),
            h("Content-Length", len.to_string()),
            h("Connection", "Keep-Alive"),
            h("Cache-Control", "no-cache"),
        ]
    };
    let mut out = tcp(c);
    let mut req = http_req("RPC_OUT_DATA", path, &hdrs("76"), b"");
    req.extend_from_slice(&rts_conn_a1(&mut c.rng));
    out.client(&req);
    let neg = ntlm_negotiate();
    let ch = ntlm_challenge(&mut c.rng, "mbx01");
    let ack = rpc_bind_ack(
        1,
        "6001",
        Some(&RpcAuth {
            typ: AUTH_NTLMSSP,
            level: LEVEL_PRIVACY,
            value: &ch,
        }),
    );
    let mut resp = b"HTTP/1.1 200 Success\r\nContent-Type:application/rpc\r\nContent-Length:1073741824\r\n\r\n".to_vec();
    resp.extend_from_slice(&ack);
    out.server(&resp);
    out.close();
    let mut inn = tcp(c);
    let mut req = http_req("RPC_IN_DATA", path, &hdrs("1073741824"), b"");
    req.extend_from_slice(&rts_conn_b1(&mut c.rng));
    req.extend_from_slice(&rpc_bind(
        1,
        UUID_EMSMDB,
        EMSMDB_MAJOR,
        0,
        Some(&RpcAuth {
            typ: AUTH_NTLMSSP,
            level: LEVEL_PRIVACY,
            value: &neg,
        }),
    ));
    inn.client(&req);
    inn.ack(false);
    inn.close();
    vec![
        out.finish(None, CAS, None, 80),
        inn.finish(None, CAS, None, 80),
    ]
}

/// Offline Address Book download GET /OAB/<guid>/oab.xml on port 80 with NTLMv2.
/// dpaudit must report: path C14 (M21a), unencrypted (not encrypted by default, so a
/// note, not a violation), NTLMv2.
fn http_oab(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    http_ntlm(
        c,
        &mut s,
        "GET",
        "/OAB/3f1c2e7a-5b8d-4c9e-a1f0-7d6b2c4e8a90/oab.xml",
        "NTLM",
        b"",
        true,
    );
    s.server(&http_resp(
        "200 OK",
        &[h("Content-Type", "text/xml")],
        &filler(sized(c, 800)),
    ));
    s.close();
    vec![s.finish(None, CAS, None, 80)]
}

/// WebDAV PROPFIND /exchange/jdoe/ on port 80 with Basic.
/// dpaudit must report: path C13 (WebDAV), unencrypted, cleartext credential (Basic).
fn http_webdav(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.client(&http_req(
        "PROPFIND",
        "/exchange/jdoe/",
        &[h("Depth", "1"), h("Content-Type", "text/xml"), h("Authorization", basic(USER))],
        b"<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop><D:displayname/></D:prop></D:propfind>",
    ));
    s.server(&http_resp(
        "207 Multi-Status",
        &[h("Content-Type", "text/xml")],
        &filler(sized(c, 600)),
    ));
    s.close();
    vec![s.finish(None, CAS, None, 80)]
}

// ---------------------------------------------------------------------------------
// IMAP4 / POP3
// ---------------------------------------------------------------------------------

const IMAP_BANNER: &[u8] = b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n";
const IMAP_CAPS: &[u8] = b"* CAPABILITY IMAP4 IMAP4rev1 AUTH=NTLM AUTH=GSSAPI STARTTLS UIDPLUS IDLE NAMESPACE LITERAL+\r\na1 OK CAPABILITY completed.\r\n";

/// IMAP4 LOGIN with a quoted password on 143.
/// dpaudit must report: path C5, unencrypted, cleartext credential (jdoe), STARTTLS
/// offered but not used.
fn imap_login_clear(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(IMAP_BANNER);
    s.client(b"a1 CAPABILITY\r\n");
    s.server(IMAP_CAPS);
    s.client(format!("a2 LOGIN \"{USER}\" \"{PASSWORD}\"\r\n").as_bytes());
    s.server(b"a2 OK LOGIN completed.\r\n");
    s.client(b"a3 SELECT INBOX\r\n");
    s.server(b"* 12 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\na3 OK [READ-WRITE] SELECT completed.\r\n");
    if c.bulk > 0 {
        s.client(b"a4 FETCH 1 BODY[]\r\n");
        let mut b = format!("* 1 FETCH (BODY[] {{{}}}\r\n", c.bulk).into_bytes();
        b.extend_from_slice(&filler(c.bulk));
        b.extend_from_slice(b")\r\na4 OK FETCH completed.\r\n");
        s.server(&b);
    }
    s.client(b"a5 LOGOUT\r\n");
    s.server(b"* BYE Microsoft Exchange Server 2007 IMAP4 server signing off.\r\na5 OK LOGOUT completed.\r\n");
    s.close();
    vec![s.finish(None, CAS, None, 143)]
}

/// IMAP4 STARTTLS (OK) then TLS 1.2.
/// dpaudit must report: path C5, encryption tls started by STARTTLS, compliant.
fn imap_starttls(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(IMAP_BANNER);
    s.client(b"a1 CAPABILITY\r\n");
    s.server(IMAP_CAPS);
    s.client(b"a2 STARTTLS\r\n");
    s.server(b"a2 OK Begin TLS negotiation now.\r\n");
    tls_handshake(
        &mut s,
        c,
        TLS12,
        Some("mail.contoso.com"),
        "mail.contoso.com",
        None,
    );
    tls_exchange(&mut s, c, TLS12, 60, sized(c, 200));
    s.close();
    vec![s.finish(None, CAS, None, 143)]
}

const POP_BANNER: &[u8] = b"+OK The Microsoft Exchange POP3 service is ready.\r\n";

/// POP3 USER/PASS in clear on 110.
/// dpaudit must report: path C4, unencrypted, cleartext credential (jdoe).
fn pop3_user_pass_clear(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(POP_BANNER);
    s.client(format!("USER {USER}\r\n").as_bytes());
    s.server(b"+OK\r\n");
    s.client(format!("PASS {PASSWORD}\r\n").as_bytes());
    s.server(b"+OK User successfully logged on.\r\n");
    s.client(b"STAT\r\n");
    s.server(b"+OK 2 4096\r\n");
    if c.bulk > 0 {
        s.client(b"RETR 1\r\n");
        let mut b = b"+OK\r\n".to_vec();
        b.extend_from_slice(&filler(c.bulk));
        b.extend_from_slice(b"\r\n.\r\n");
        s.server(&b);
    }
    s.client(b"QUIT\r\n");
    s.server(b"+OK Microsoft Exchange Server 2007 POP3 server signing off.\r\n");
    s.close();
    vec![s.finish(None, CAS, None, 110)]
}

/// POP3 STLS (+OK) then TLS 1.2.
/// dpaudit must report: path C4, encryption tls started by STLS, compliant.
fn pop3_stls(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.server(POP_BANNER);
    s.client(b"STLS\r\n");
    s.server(b"+OK Begin TLS negotiation.\r\n");
    tls_handshake(
        &mut s,
        c,
        TLS12,
        Some("mail.contoso.com"),
        "mail.contoso.com",
        None,
    );
    tls_exchange(&mut s, c, TLS12, 40, sized(c, 100));
    s.close();
    vec![s.finish(None, CAS, None, 110)]
}

// ---------------------------------------------------------------------------------
// DCE/RPC
// ---------------------------------------------------------------------------------

/// Endpoint mapper flow on 135: bind EPM, ept_map for `iface`, answer naming `port`.
fn epm_flow(
    c: &Ctx,
    client: Option<[u8; 4]>,
    server: [u8; 4],
    iface: &str,
    major: u16,
    port: u16,
) -> Template {
    let mut s = tcp(c);
    s.client(&rpc_bind(1, UUID_EPM, 3, 0, None));
    s.server(&rpc_bind_ack(1, "135", None));
    s.client(&rpc_request(2, 3, &epm_map_request(iface, major, 0), None));
    s.server(&rpc_response(
        2,
        &epm_map_response(iface, major, 0, port, server),
        None,
    ));
    s.close();
    s.finish(client, server, None, 135)
}

/// EMSMDB on the dynamic port with NTLMSSP at `level`: bind (NEGOTIATE), bind_ack
/// (CHALLENGE), AUTH3 (AUTHENTICATE v2), EcDoConnectEx request and response.
fn mapi_flows(c: &mut Ctx, level: u8) -> Vec<Template> {
    let epm = epm_flow(c, None, MBX, UUID_EMSMDB, EMSMDB_MAJOR, MAPI_DYNAMIC_PORT);
    let mut s = tcp(c);
    let neg = ntlm_negotiate();
    s.client(&rpc_bind(
        1,
        UUID_EMSMDB,
        EMSMDB_MAJOR,
        0,
        Some(&RpcAuth {
            typ: AUTH_NTLMSSP,
            level,
            value: &neg,
        }),
    ));
    let ch = ntlm_challenge(&mut c.rng, "mbx01");
    s.server(&rpc_bind_ack(
        1,
        "59532",
        Some(&RpcAuth {
            typ: AUTH_NTLMSSP,
            level,
            value: &ch,
        }),
    ));
    let au = ntlm_authenticate(&mut c.rng, USER, true);
    s.client(&rpc_auth3(
        1,
        &RpcAuth {
            typ: AUTH_NTLMSSP,
            level,
            value: &au,
        },
    ));
    let calls = 1 + c.bulk / 8192;
    for i in 0..calls as u32 {
        let stub = if level == LEVEL_PRIVACY {
            c.rng.bytes(240)
        } else {
            filler(240)
        };
        let v = ntlm_verifier(&mut c.rng, 2 * i);
        s.client(&rpc_request(
            2 + i,
            0x0a,
            &stub,
            Some(&RpcAuth {
                typ: AUTH_NTLMSSP,
                level,
                value: &v,
            }),
        ));
        let stub = if level == LEVEL_PRIVACY {
            c.rng.bytes(320)
        } else {
            filler(320)
        };
        let v = ntlm_verifier(&mut c.rng, 2 * i + 1);
        s.server(&rpc_response(
            2 + i,
            &stub,
            Some(&RpcAuth {
                typ: AUTH_NTLMSSP,
                level,
                value: &v,
            }),
        ));
    }
    s.close();
    vec![epm, s.finish(None, MBX, None, MAPI_DYNAMIC_PORT)]
}

/// Outlook (MAPI) to the mailbox: ept_map on 135 names port 59532, then a bind to EMSMDB
/// with NTLMSSP at level 6 (packet privacy), bind_ack, AUTH3 and an encrypted request.
/// dpaudit must report: path M6, encryption rpc-privacy, NTLMv2, compliant; the dynamic
/// port 59532 learnt from the endpoint mapper.
fn mapi_rpc_privacy(c: &mut Ctx) -> Vec<Template> {
    mapi_flows(c, LEVEL_PRIVACY)
}

/// As mapi-rpc-privacy but at auth level 2 (connect): the RPC payload travels in clear.
/// dpaudit must report: path M6, unencrypted (violation: RPC encryption expected),
/// auth level connect, NTLMv2.
fn mapi_rpc_connect(c: &mut Ctx) -> Vec<Template> {
    mapi_flows(c, LEVEL_CONNECT)
}

/// Hub to domain controller: ept_map for DRSUAPI on 135, then a bind to DRSUAPI with
/// Kerberos (auth type 16) at level 6, bind_ack with the AP-REP, DRSBind request.
/// dpaudit must report: path T10, encryption rpc-privacy, Kerberos, compliant.
fn drsuapi_kerberos_privacy(c: &mut Ctx) -> Vec<Template> {
    let epm = epm_flow(c, Some(HUB1), DC, UUID_DRSUAPI, 4, DRS_DYNAMIC_PORT);
    let mut s = tcp(c);
    let ap = gss_krb5(
        [0x01, 0x00],
        &ap_req(
            &mut c.rng,
            &["E3514235-4B06-11D1-AB04-00C04FC2DCD2", "dc01.contoso.com"],
        ),
    );
    s.client(&rpc_bind(
        1,
        UUID_DRSUAPI,
        4,
        0,
        Some(&RpcAuth {
            typ: AUTH_KERBEROS,
            level: LEVEL_PRIVACY,
            value: &ap,
        }),
    ));
    let rep = gss_krb5([0x02, 0x00], &ap_rep(&mut c.rng));
    s.server(&rpc_bind_ack(
        1,
        "49158",
        Some(&RpcAuth {
            typ: AUTH_KERBEROS,
            level: LEVEL_PRIVACY,
            value: &rep,
        }),
    ));
    let mut wrap = vec![0x05, 0x04, 0x06, 0xff, 0, 0, 0, 0x1c];
    wrap.extend_from_slice(&c.rng.bytes(52));
    let stub = c.rng.bytes(96);
    s.client(&rpc_request(
        2,
        0,
        &stub,
        Some(&RpcAuth {
            typ: AUTH_KERBEROS,
            level: LEVEL_PRIVACY,
            value: &wrap,
        }),
    ));
    let stub = c.rng.bytes(64);
    s.server(&rpc_response(
        2,
        &stub,
        Some(&RpcAuth {
            typ: AUTH_KERBEROS,
            level: LEVEL_PRIVACY,
            value: &wrap,
        }),
    ));
    s.close();
    vec![epm, s.finish(Some(HUB1), DC, None, DRS_DYNAMIC_PORT)]
}

// ---------------------------------------------------------------------------------
// SMB2 / SMB3
// ---------------------------------------------------------------------------------

const SESSION_ID: u64 = 0x0000_0400_0000_0011;

/// Negotiate and NTLM session setup via SPNEGO; returns the next message id.
fn smb_ntlm_setup(c: &mut Ctx, s: &mut Session, dialects: &[u16], dialect: u16) -> u64 {
    let nr = smb2_negotiate_req(&mut c.rng, dialects);
    s.client(&smb2(SMB2_NEGOTIATE, false, 0, 0, 0, 0, &nr));
    let np = smb2_negotiate_resp(&mut c.rng, dialect);
    s.server(&smb2(SMB2_NEGOTIATE, true, 0, 0, 0, 0, &np));
    let t1 = spnego_init(&[OID_NTLMSSP], &ntlm_negotiate());
    s.client(&smb2(
        SMB2_SESSION_SETUP,
        false,
        0,
        1,
        0,
        0,
        &smb2_session_setup_req(&t1),
    ));
    let ch = ntlm_challenge(&mut c.rng, "mbx01");
    let t2 = spnego_resp(Some(1), Some(OID_NTLMSSP), Some(&ch));
    s.server(&smb2(
        SMB2_SESSION_SETUP,
        true,
        STATUS_MORE_PROCESSING,
        1,
        0,
        SESSION_ID,
        &smb2_session_setup_resp(&t2),
    ));
    let au = ntlm_authenticate(&mut c.rng, USER, true);
    let t3 = spnego_resp(None, None, Some(&au));
    s.client(&smb2(
        SMB2_SESSION_SETUP,
        false,
        0,
        2,
        0,
        SESSION_ID,
        &smb2_session_setup_req(&t3),
    ));
    let t4 = spnego_resp(Some(0), None, None);
    s.server(&smb2(
        SMB2_SESSION_SETUP,
        true,
        STATUS_SUCCESS,
        2,
        0,
        SESSION_ID,
        &smb2_session_setup_resp(&t4),
    ));
    3
}

/// Tree connect to \\mbx\IPC$, open winreg, bind winreg in a WRITE, READ the bind_ack.
fn smb_winreg(s: &mut Session, mut mid: u64) {
    let tree = 1u32;
    s.client(&smb2(
        SMB2_TREE_CONNECT,
        false,
        0,
        mid,
        0,
        SESSION_ID,
        &smb2_tree_connect_req("\\\\mbx\\IPC$"),
    ));
    s.server(&smb2(
        SMB2_TREE_CONNECT,
        true,
        0,
        mid,
        tree,
        SESSION_ID,
        &smb2_tree_connect_resp(2),
    ));
    mid += 1;
    s.client(&smb2(
        SMB2_CREATE,
        false,
        0,
        mid,
        tree,
        SESSION_ID,
        &smb2_create_req("winreg"),
    ));
    s.server(&smb2(
        SMB2_CREATE,
        true,
        0,
        mid,
        tree,
        SESSION_ID,
        &smb2_create_resp(),
    ));
    mid += 1;
    let bind = rpc_bind(2, UUID_WINREG, 1, 0, None);
    s.client(&smb2(
        SMB2_WRITE,
        false,
        0,
        mid,
        tree,
        SESSION_ID,
        &smb2_write_req(&bind),
    ));
    s.server(&smb2(
        SMB2_WRITE,
        true,
        0,
        mid,
        tree,
        SESSION_ID,
        &smb2_write_resp(bind.len() as u32),
    ));
    mid += 1;
    let ack = rpc_bind_ack(2, "\\PIPE\\winreg", None);
    s.client(&smb2(
        SMB2_READ,
        false,
        0,
        mid,
        tree,
        SESSION_ID,
        &smb2_read_req(1024),
    ));
    s.server(&smb2(
        SMB2_READ,
        true,
        0,
        mid,
        tree,
        SESSION_ID,
        &smb2_read_resp(&ack),
    ));
}

/// Admin access to the mailbox over SMB 2.1 on 445: NTLMv2 via SPNEGO, tree connect to
/// IPC$, winreg opened and bound in a WRITE.
/// dpaudit must report: path M12 (or M11 via the winreg pipe), unencrypted (IPsec not
/// seen), NTLMv2.
fn smb2_ntlm(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    let mid = smb_ntlm_setup(c, &mut s, &[0x0202, 0x0210], 0x0210);
    smb_winreg(&mut s, mid);
    s.close();
    vec![s.finish(None, MBX, None, 445)]
}

/// SMB 2.1 on 445 with Kerberos (SPNEGO NegTokenInit with an AP-REQ for cifs/mbx01).
/// dpaudit must report: path M12, unencrypted, Kerberos.
fn smb2_kerberos(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    let nr = smb2_negotiate_req(&mut c.rng, &[0x0202, 0x0210]);
    s.client(&smb2(SMB2_NEGOTIATE, false, 0, 0, 0, 0, &nr));
    let np = smb2_negotiate_resp(&mut c.rng, 0x0210);
    s.server(&smb2(SMB2_NEGOTIATE, true, 0, 0, 0, 0, &np));
    let tok = spnego_krb(&mut c.rng, &["cifs", "mbx01.contoso.com"]);
    s.client(&smb2(
        SMB2_SESSION_SETUP,
        false,
        0,
        1,
        0,
        0,
        &smb2_session_setup_req(&tok),
    ));
    let done = spnego_krb_done(&mut c.rng);
    s.server(&smb2(
        SMB2_SESSION_SETUP,
        true,
        0,
        1,
        0,
        SESSION_ID,
        &smb2_session_setup_resp(&done),
    ));
    smb_winreg(&mut s, 2);
    s.close();
    vec![s.finish(None, MBX, None, 445)]
}

/// SMB 3.0.2 on 445: negotiate, NTLMv2 session setup, then every message inside an
/// SMB3 TRANSFORM header (tree connect, create, large reads).
/// dpaudit must report: path M12 (or M1 log shipping), encryption smb3, NTLMv2, compliant.
fn smb3_encrypted(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    smb_ntlm_setup(c, &mut s, &[0x0202, 0x0210, 0x0300, 0x0302], 0x0302);
    for (req, resp) in [(90, 80), (130, 160)] {
        let a = smb3_transform(&mut c.rng, SESSION_ID, req);
        s.client(&a);
        let b = smb3_transform(&mut c.rng, SESSION_ID, resp);
        s.server(&b);
    }
    let mut left = c.bulk.max(4096);
    while left > 0 {
        let n = left.min(65536);
        let a = smb3_transform(&mut c.rng, SESSION_ID, 113);
        s.client(&a);
        let b = smb3_transform(&mut c.rng, SESSION_ID, 80 + n);
        s.server(&b);
        left -= n;
    }
    s.close();
    vec![s.finish(None, MBX, None, 445)]
}

// ---------------------------------------------------------------------------------
// LDAP
// ---------------------------------------------------------------------------------

/// EdgeSync from a Hub to the Edge's ADAM on 50389 with an LDAP simple bind.
/// dpaudit must report: path T8, unencrypted (violation: 50636 LDAPS expected),
/// cleartext credential (simple bind, password redacted).
fn ldap_simple_bind_clear(c: &mut Ctx) -> Vec<Template> {
    vec![simple_bind_and_search(
        c,
        "CN=ESRA.hub01.Default-First-Site-Name.edge,CN=Services,CN=Configuration,CN={3F1C2E7A}",
        (
            "CN=Recipients,OU=MSExchangeGateway",
            ("objectClass", "user"),
        ),
        (
            "CN=jdoe,CN=Recipients,OU=MSExchangeGateway",
            "proxyAddresses",
            b"SMTP:jdoe@contoso.com",
        ),
        (HUB1, EDGE, 50389),
    )]
}

/// An LDAP session in clear: simple bind as `bind_dn`, one search under `base` for
/// `filter`, one entry back with attribute `attr`, unbind.
fn simple_bind_and_search(
    c: &mut Ctx,
    bind_dn: &str,
    (base, filter): (&str, (&str, &str)),
    (entry_dn, attr, value): (&str, &str, &[u8]),
    (client, server, port): ([u8; 4], [u8; 4], u16),
) -> Template {
    let mut s = tcp(c);
    s.client(&ldap_bind_simple(1, bind_dn, PASSWORD));
    s.server(&ldap_bind_resp(1, 0, None));
    s.client(&ldap_search(2, base, 2, Some(filter), &[attr]));
    let mut r = ldap_entry(2, entry_dn, attr, value);
    r.extend_from_slice(&ldap_done(2));
    s.server(&r);
    s.client(&ldap_msg(3, &[0x42, 0x00])); // unbindRequest
    s.close();
    s.finish(Some(client), server, None, port)
}

/// The second Hub to the domain controller on 389 (T10) with an LDAP simple bind: the service account's
/// password in clear, then a search in clear.
/// dpaudit must report: path T10 (AD access), cleartext credential (simple bind),
/// unencrypted (Kerberos sealing expected).
fn ldap_dc_simple_bind_clear(c: &mut Ctx) -> Vec<Template> {
    vec![simple_bind_and_search(
        c,
        "CN=svc-exchange,CN=Users,DC=contoso,DC=com",
        (
            "CN=Configuration,DC=contoso,DC=com",
            ("objectClass", "msExchExchangeServer"),
        ),
        (
            "CN=HUB01,CN=Servers,CN=Configuration,DC=contoso,DC=com",
            "networkAddress",
            b"ncacn_ip_tcp:hub01.contoso.com",
        ),
        (HUB2, DC, 389),
    )]
}

/// EdgeSync over LDAPS on 50636 (TLS from the first byte).
/// dpaudit must report: path T8, encryption tls, compliant.
fn ldaps_edgesync(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    tls_handshake(
        &mut s,
        c,
        TLS12,
        Some("edge.contoso.com"),
        "edge.contoso.com",
        None,
    );
    tls_exchange(&mut s, c, TLS12, 300, sized(c, 900));
    s.close();
    vec![s.finish(Some(HUB1), EDGE, None, 50636)]
}

/// Hub to DC on 389: SASL GSS-SPNEGO bind with a Kerberos AP-REQ, success with the
/// AP-REP, then LDAP messages wrapped in 4-byte-length-prefixed RFC 4121 Wrap tokens
/// with the Sealed flag.
/// dpaudit must report: path T10, encryption sasl-seal, Kerberos, compliant.
fn ldap_sasl_sealed(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    let tok = spnego_krb(&mut c.rng, &["ldap", "dc01.contoso.com"]);
    s.client(&ldap_bind_sasl(1, "GSS-SPNEGO", &tok));
    let done = spnego_krb_done(&mut c.rng);
    s.server(&ldap_bind_resp(1, 0, Some(&done)));
    let rounds = 1 + c.bulk / 4096;
    for i in 0..rounds as u64 {
        let a = sasl_wrap(&mut c.rng, false, i, 120);
        s.client(&a);
        let b = sasl_wrap(&mut c.rng, true, i, 400);
        s.server(&b);
    }
    s.close();
    vec![s.finish(Some(HUB1), DC, None, 389)]
}

/// A client on 389 sending the StartTLS extended operation, then TLS 1.2.
/// dpaudit must report: path T10/M9 (AD access), encryption tls started by LDAP StartTLS.
fn ldap_starttls(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    s.client(&ldap_starttls_req(1));
    s.server(&ldap_starttls_resp(1));
    tls_handshake(
        &mut s,
        c,
        TLS12,
        Some("dc01.contoso.com"),
        "dc01.contoso.com",
        None,
    );
    tls_exchange(&mut s, c, TLS12, 200, sized(c, 500));
    s.close();
    vec![s.finish(None, DC, None, 389)]
}

/// CLDAP netlogon ping on UDP 389 and its answer.
/// dpaudit must report: path T10/M9 (AD access), UDP, no credentials.
fn cldap(c: &mut Ctx) -> Vec<Template> {
    let mut s = Session::udp();
    s.client(&cldap_netlogon_search(1));
    let mut blob = vec![0x17, 0x00, 0x00, 0x00, 0xfd, 0xf3, 0x00, 0x00];
    blob.extend_from_slice(&c.rng.bytes(120));
    let mut r = ldap_entry(1, "", "Netlogon", &blob);
    r.extend_from_slice(&ldap_done(1));
    s.server(&r);
    vec![s.finish(Some(HUB1), DC, None, 389)]
}

// ---------------------------------------------------------------------------------
// Kerberos, DNS
// ---------------------------------------------------------------------------------

fn as_exchange(c: &mut Ctx, etypes: &[i64], pa_etype: i64) -> (Vec<u8>, Vec<u8>) {
    let ts = enc_data(pa_etype, None, &c.rng.bytes(56));
    let pac = seq(&[&ctx(0, &boolean(true))]);
    let req = kdc_req(
        10,
        &[(2, ts), (128, pac)],
        Some(&[USER]),
        &["krbtgt", REALM],
        etypes,
        0x5a1c_3e77,
    );
    let rep = kdc_rep(&mut c.rng, 11, &[USER], &["krbtgt", REALM], pa_etype);
    (req, rep)
}

/// AS-REQ with PA-ENC-TIMESTAMP offering etypes 18, 17, 23 and its AS-REP on UDP 88,
/// then TGS-REQ / TGS-REP for HTTP/mail.contoso.com on TCP 88.
/// dpaudit must report: path T10/M9 (AD access), Kerberos with AES, compliant.
fn kerberos_as_tgs(c: &mut Ctx) -> Vec<Template> {
    let (req, rep) = as_exchange(c, &[18, 17, 23], 18);
    let mut u = Session::udp();
    u.client(&req);
    u.server(&rep);
    let mut t = tcp(c);
    let ap = ap_req(&mut c.rng, &["krbtgt", REALM]);
    let tgs = kdc_req(
        12,
        &[(1, ap)],
        None,
        &["HTTP", "mail.contoso.com"],
        &[18, 17, 23],
        0x1b2c_3d4e,
    );
    t.client(&krb_tcp(&tgs));
    let tgs_rep = kdc_rep(&mut c.rng, 13, &[USER], &["HTTP", "mail.contoso.com"], 18);
    t.server(&krb_tcp(&tgs_rep));
    t.close();
    vec![u.finish(None, DC, None, 88), t.finish(None, DC, None, 88)]
}

/// AS-REQ offering only RC4-HMAC (23) and DES-CBC-MD5 (3); the KDC answers with RC4.
/// dpaudit must report: Kerberos with weak encryption types (RC4, DES) offered and RC4
/// chosen.
fn kerberos_rc4_des(c: &mut Ctx) -> Vec<Template> {
    let (req, rep) = as_exchange(c, &[23, 3], 23);
    let mut u = Session::udp();
    u.client(&req);
    u.server(&rep);
    vec![u.finish(None, DC, None, 88)]
}

/// DNS over UDP (SRV for _ldap._tcp.dc._msdcs.contoso.com) and over TCP (A for
/// dc01.contoso.com).
/// dpaudit must report: path T10/M9 (AD access, DNS), no credentials.
fn dns(c: &mut Ctx) -> Vec<Template> {
    let srv = "_ldap._tcp.dc._msdcs.contoso.com";
    let id = (c.rng.next_u64() & 0xffff) as u16;
    let mut u = Session::udp();
    u.client(&dns_query(id, srv, 33));
    u.server(&dns_answer(id, srv, 33, DC, "dc01.contoso.com"));
    let mut t = tcp(c);
    t.client(&dns_tcp(&dns_query(id ^ 0x5555, "dc01.contoso.com", 1)));
    t.server(&dns_tcp(&dns_answer(
        id ^ 0x5555,
        "dc01.contoso.com",
        1,
        DC,
        "",
    )));
    t.close();
    vec![u.finish(None, DC, None, 53), t.finish(None, DC, None, 53)]
}

// ---------------------------------------------------------------------------------
// SIP, cluster, IPsec
// ---------------------------------------------------------------------------------

fn sdp(ip: &str, port: u16) -> String {
    format!("v=0\r\no=- 0 0 IN IP4 {ip}\r\ns=session\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n")
}

fn sip_msg(start: &str, cseq: &str, body: &str) -> Vec<u8> {
    let mut s = format!("{start}\r\nVia: SIP/2.0/TCP 10.9.0.2:5060;branch=z9hG4bK776asdhds\r\nFrom: <sip:+14255550100@10.9.0.2>;tag=1928301774\r\nTo: <sip:+14255550199@10.1.0.40>\r\nCall-ID: a84b4c76e66710@10.9.0.2\r\nCSeq: {cseq}\r\nContact: <sip:+14255550100@10.9.0.2:5060;transport=tcp>\r\nMax-Forwards: 70\r\n");
    if !body.is_empty() {
        s.push_str("Content-Type: application/sdp\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.into_bytes()
}

/// IP gateway to Unified Messaging on 5060: INVITE with SDP (m=audio), 100, 200 with
/// SDP, ACK, BYE, 200, all in clear.
/// dpaudit must report: path U2 (gateway 10.9.0.2, authenticated by IP address),
/// unencrypted SIP (violation: SIP over TLS is the default), RTP port announced.
fn sip_clear(_c: &mut Ctx) -> Vec<Template> {
    let mut s = Session::tcp(_c.mss);
    s.client(&sip_msg(
        "INVITE sip:+14255550199@10.1.0.40:5060;transport=tcp SIP/2.0",
        "1 INVITE",
        &sdp("10.9.0.2", 20000),
    ));
    s.server(&sip_msg("SIP/2.0 100 Trying", "1 INVITE", ""));
    s.server(&sip_msg(
        "SIP/2.0 200 OK",
        "1 INVITE",
        &sdp("10.1.0.40", 31000),
    ));
    s.client(&sip_msg(
        "ACK sip:+14255550199@10.1.0.40:5060;transport=tcp SIP/2.0",
        "1 ACK",
        "",
    ));
    s.client(&sip_msg(
        "BYE sip:+14255550199@10.1.0.40:5060;transport=tcp SIP/2.0",
        "2 BYE",
        "",
    ));
    s.server(&sip_msg("SIP/2.0 200 OK", "2 BYE", ""));
    s.close();
    vec![s.finish(Some(GATEWAY), UM, None, 5060)]
}

/// IP gateway to Unified Messaging on 5061: mutual TLS 1.2 (both certificates).
/// dpaudit must report: path U2, encryption tls, client certificate, compliant.
fn sip_tls(c: &mut Ctx) -> Vec<Template> {
    let mut s = tcp(c);
    tls_handshake(
        &mut s,
        c,
        TLS12,
        None,
        "um01.contoso.com",
        Some("gw01.contoso.com"),
    );
    tls_exchange(&mut s, c, TLS12, 900, 700);
    tls_exchange(&mut s, c, TLS12, 400, 300);
    s.close();
    vec![s.finish(Some(GATEWAY), UM, None, 5061)]
}

/// Cluster heartbeats: sequenced unicast UDP datagrams on 3343 between two mailbox nodes.
/// dpaudit must report: path M5 (clustering), unencrypted (IPsec supported, not default).
fn cluster_heartbeat(c: &mut Ctx) -> Vec<Template> {
    let mut s = Session::udp();
    for i in 0..6u32 {
        for from_client in [true, false] {
            let mut d = vec![0x02, 0x00, 0x00, 0x00];
            d.extend_from_slice(&i.to_le_bytes());
            d.extend_from_slice(&c.rng.bytes(36));
            s.send(from_client, &d);
        }
    }
    vec![s.finish(Some(MBX), MBX2, Some(3343), 3343)]
}

/// ESP (IP protocol 50) between the two mailbox nodes with several SPIs (a rekey half
/// way through).
/// dpaudit must report: path M1/M5 protected by IPsec, encryption ipsec, compliant.
fn esp(c: &mut Ctx) -> Vec<Template> {
    let mut s = Session::esp();
    let n = 12 + c.bulk / 1400;
    for i in 0..n as u32 {
        let (spi_c, spi_s) = if i < n as u32 / 2 {
            (0x1000_a001, 0x2000_b001)
        } else {
            (0x1000_a002, 0x2000_b002)
        };
        let seqno = i % (n as u32 / 2) + 1;
        let big = 1200 + (c.rng.next_u64() % 200) as usize;
        let body = c.rng.bytes(big);
        s.esp_packet(true, spi_c, seqno, &body);
        let body = c.rng.bytes(80);
        s.esp_packet(false, spi_s, seqno, &body);
    }
    vec![s.finish(Some(MBX), MBX2, None, 0)]
}
