//! Unit tests of the TLS analyzer. Byte vectors are built layer by layer (record,
//! handshake message, extension) with the field layouts of RFC 5246, RFC 8446 and the
//! SSL 2.0 draft; the server and client flights of TLS 1.0 / 1.2 come from the
//! project's traffic generator, so the analyzer is checked against what `gen` writes.

use super::*;
use crate::gen::payloads::{
    fake_cert, tls_app, tls_ccs_finished, tls_client_finish, tls_client_hello, tls_record,
    tls_server_flight, TLS10, TLS12,
};
use crate::gen::Rng;
use crate::model::Posture;
use crate::proto::testutil::{facts, feed, kinds, run};
use proptest::prelude::*;
use Direction::{ToClient as S, ToServer as C};

const CT_CCS: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APP: u8 = 23;
const TLS11: u16 = 0x0302;

fn make() -> Box<dyn Analyzer> {
    (REGISTRATION.make)()
}

fn make_starttls() -> Box<dyn Analyzer> {
    Box::new(TlsAnalyzer::new("starttls"))
}

/// Handshake message: type, 24-bit length, body (RFC 5246 7.4).
fn hs(typ: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut v = vec![typ, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    v.extend_from_slice(body);
    v
}

/// `body` behind a 16-bit length.
fn vec16(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Extension: type, 16-bit length, data (RFC 5246 7.4.1.4).
fn ext(typ: u16, body: &[u8]) -> Vec<u8> {
    let mut v = typ.to_be_bytes().to_vec();
    v.extend_from_slice(&vec16(body));
    v
}

/// server_name with one host_name entry (RFC 6066 3).
fn sni(name: &str) -> Vec<u8> {
    let mut entry = vec![0u8]; // NameType host_name
    entry.extend_from_slice(&vec16(name.as_bytes()));
    ext(0x0000, &vec16(&entry))
}

/// application_layer_protocol_negotiation (RFC 7301 3.1).
fn alpn(names: &[&str]) -> Vec<u8> {
    let mut list = Vec::new();
    for n in names {
        list.push(n.len() as u8);
        list.extend_from_slice(n.as_bytes());
    }
    ext(0x0010, &vec16(&list))
}

/// supported_versions in a ClientHello: 8-bit length, versions (RFC 8446 4.2.1).
fn versions(vs: &[u16]) -> Vec<u8> {
    let mut b = vec![(vs.len() * 2) as u8];
    for v in vs {
        b.extend_from_slice(&v.to_be_bytes());
    }
    ext(0x002b, &b)
}

/// key_share with one x25519 entry (RFC 8446 4.2.8), client form.
fn key_share_client() -> Vec<u8> {
    let mut entry = 0x001du16.to_be_bytes().to_vec();
    entry.extend_from_slice(&vec16(&[0x42; 32]));
    ext(0x0033, &vec16(&entry))
}

/// ClientHello body (RFC 5246 7.4.1.2), wrapped as a handshake message.
fn client_hello(legacy: u16, exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = legacy.to_be_bytes().to_vec();
    b.extend_from_slice(&[0x11; 32]); // random
    b.push(32); // session id
    b.extend_from_slice(&[0x22; 32]);
    b.extend_from_slice(&vec16(&[0x13, 0x01, 0xc0, 0x2f, 0x00, 0x2f])); // cipher suites
    b.extend_from_slice(&[1, 0]); // compression: null
    b.extend_from_slice(&vec16(&exts.concat()));
    hs(1, &b)
}

/// ServerHello body (RFC 5246 7.4.1.3 / RFC 8446 4.1.3), wrapped as a handshake message.
fn server_hello(legacy: u16, random: [u8; 32], cipher: u16, exts: &[Vec<u8>]) -> Vec<u8> {
    let mut b = legacy.to_be_bytes().to_vec();
    b.extend_from_slice(&random);
    b.push(32);
    b.extend_from_slice(&[0x22; 32]); // echoed session id
    b.extend_from_slice(&cipher.to_be_bytes());
    b.push(0);
    b.extend_from_slice(&vec16(&exts.concat()));
    hs(2, &b)
}

/// TLS 1.3 ServerHello: supported_versions 0x0304, key_share x25519.
fn server_hello_13(random: [u8; 32]) -> Vec<u8> {
    let mut ks = 0x001du16.to_be_bytes().to_vec();
    ks.extend_from_slice(&vec16(&[0x43; 32]));
    server_hello(
        TLS12,
        random,
        0x1301,
        &[ext(0x002b, &[3, 4]), ext(0x0033, &ks)],
    )
}

/// Certificate message body: 24-bit list length, then 24-bit length + DER per cert.
fn certificate(certs: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for c in certs {
        let n = c.len();
        list.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        list.extend_from_slice(c);
    }
    let n = list.len();
    let mut b = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8];
    b.extend_from_slice(&list);
    hs(11, &b)
}

/// CertificateRequest (TLS 1.2): rsa_sign, rsa_pkcs1_sha256, no CA names.
fn certificate_request() -> Vec<u8> {
    hs(13, &[1, 1, 0, 2, 4, 1, 0, 0])
}

/// ClientKeyExchange with a 128-byte RSA-encrypted premaster secret.
fn client_key_exchange() -> Vec<u8> {
    let mut b = 128u16.to_be_bytes().to_vec();
    b.extend_from_slice(&[0x5a; 128]);
    hs(16, &b)
}

fn rec(ct: u8, version: u16, body: &[u8]) -> Vec<u8> {
    tls_record(ct, version, body)
}

fn slices(script: &[(Direction, Vec<u8>)]) -> Vec<(Direction, &[u8])> {
    script.iter().map(|(d, b)| (*d, b.as_slice())).collect()
}

/// Run whole and byte by byte (asserting both agree).
fn go(script: &[(Direction, Vec<u8>)]) -> Posture {
    run(make, &slices(script))
}

/// Feed whole chunks to one analyzer; the `Next` of each chunk and the analyzer.
fn drive(script: &[(Direction, Vec<u8>)]) -> (Posture, Vec<Next>, TlsAnalyzer) {
    let mut a = TlsAnalyzer::new("implicit");
    let mut posture = Posture::default();
    let mut nexts = Vec::new();
    for (i, (dir, bytes)) in script.iter().enumerate() {
        let mut cx = Ctx {
            limits: &crate::limits::ProtoLimits::DEFAULT,
            frame: i as u64 + 1,
            ts_ns: 0,
            client_port: 40000,
            server_port: 443,
            posture: &mut posture,
        };
        nexts.push(a.data(*dir, bytes, &mut cx));
    }
    (posture, nexts, a)
}

fn tls12_conversation(rng: &mut Rng) -> Vec<(Direction, Vec<u8>)> {
    let ch = client_hello(
        TLS12,
        &[
            sni("mail.corp.example"),
            alpn(&["h2", "http/1.1"]),
            ext(0x000a, &[0, 4, 0, 0x1d, 0, 0x17]),
            ext(0x0017, &[]),
        ],
    );
    vec![
        (C, rec(CT_HANDSHAKE, TLS10, &ch)),
        (S, tls_server_flight(rng, TLS12, "mail", false)),
        (C, tls_client_finish(rng, TLS12, None)),
        (S, tls_ccs_finished(rng, TLS12)),
        (C, tls_app(rng, TLS12, 300)),
        (S, tls_app(rng, TLS12, 3000)),
    ]
}

fn tls13_conversation() -> Vec<(Direction, Vec<u8>)> {
    let ch = client_hello(
        TLS12,
        &[
            sni("autodiscover.corp.example"),
            versions(&[0x7a7a, TLS13, TLS12, TLS11]),
            key_share_client(),
            alpn(&["http/1.1"]),
        ],
    );
    let mut flight = rec(CT_HANDSHAKE, TLS12, &server_hello_13([0x33; 32]));
    flight.extend_from_slice(&rec(CT_CCS, TLS12, &[1]));
    flight.extend_from_slice(&rec(CT_APP, TLS12, &[0x99; 90])); // EncryptedExtensions...
    let mut fin = rec(CT_CCS, TLS12, &[1]);
    fin.extend_from_slice(&rec(CT_APP, TLS12, &[0x98; 53])); // client Finished
    vec![
        (C, rec(CT_HANDSHAKE, TLS10, &ch)),
        (S, flight),
        (C, fin),
        (S, rec(CT_APP, TLS12, &[0x97; 200])),
    ]
}

/// SSLv2 CLIENT-HELLO (RFC 5246 E.2) offering `version`.
fn sslv2_client_hello(version: u16) -> Vec<u8> {
    let specs = [0x01, 0x00, 0x80, 0x00, 0x00, 0x2f, 0x00, 0x00, 0x0a];
    let challenge = [0x44; 16];
    let mut body = vec![SSL2_CLIENT_HELLO];
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&(specs.len() as u16).to_be_bytes());
    body.extend_from_slice(&0u16.to_be_bytes()); // session id length
    body.extend_from_slice(&(challenge.len() as u16).to_be_bytes());
    body.extend_from_slice(&specs);
    body.extend_from_slice(&challenge);
    let mut v = (body.len() as u16 | 0x8000).to_be_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}

/// SSLv2 SERVER-HELLO: no session hit, X.509 certificate, one cipher, 16-byte conn id.
fn sslv2_server_hello(cert: &[u8]) -> Vec<u8> {
    let mut body = vec![SSL2_SERVER_HELLO, 0, 1];
    body.extend_from_slice(&SSL2.to_be_bytes());
    body.extend_from_slice(&(cert.len() as u16).to_be_bytes());
    body.extend_from_slice(&3u16.to_be_bytes());
    body.extend_from_slice(&16u16.to_be_bytes());
    body.extend_from_slice(cert);
    body.extend_from_slice(&[0x01, 0x00, 0x80]);
    body.extend_from_slice(&[0x55; 16]);
    let mut v = (body.len() as u16 | 0x8000).to_be_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}

#[test]
fn tls12_full_handshake_with_sni_and_alpn() {
    let mut rng = Rng::new(1);
    let script = tls12_conversation(&mut rng);
    let p = go(&script);
    assert_eq!(
        p.tls.as_deref(),
        Some(&TlsInfo {
            offered_version: Some(TLS12),
            version: Some(TLS12),
            cipher: Some(0x002f),
            sni: Some("mail.corp.example".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            cert_requested: false,
            client_cert: false,
            client_hello_frame: Some(1),
            server_hello_frame: Some(2),
            started_by: "implicit".into(),
        })
    );
    // Encryption begins with the server's ChangeCipherSpec (frame 4).
    assert_eq!(p.encryption, Encryption::Tls);
    assert_eq!(p.encryption_frame, Some(4));
    assert_eq!(facts(&p, "tls.client-versions"), ["0x0303"]);
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);

    let (_, nexts, a) = drive(&script);
    use Next::{Continue as Go, Done};
    assert_eq!(nexts, [Go, Go, Go, Done, Done, Done]);
    let sent = |d: Direction| -> u64 {
        script
            .iter()
            .filter(|(x, _)| *x == d)
            .map(|(_, b)| b.len() as u64)
            .sum()
    };
    // Bytes after Done are still counted.
    assert_eq!(a.bytes, [sent(C), sent(S)]);
}

#[test]
fn generator_tls10_handshake() {
    let mut rng = Rng::new(2);
    let p = go(&[
        (
            C,
            tls_client_hello(&mut rng, TLS10, Some("hub02.corp.example")),
        ),
        (S, tls_server_flight(&mut rng, TLS10, "hub02", false)),
        (C, tls_client_finish(&mut rng, TLS10, None)),
        (S, tls_ccs_finished(&mut rng, TLS10)),
    ]);
    let t = p.tls.clone().expect("tls");
    assert_eq!(t.offered_version, Some(TLS10));
    assert_eq!(t.version, Some(TLS10));
    assert_eq!(t.sni.as_deref(), Some("hub02.corp.example"));
    assert!(t.alpn.is_empty());
    assert_eq!(p.encryption_frame, Some(4));
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
}

#[test]
fn tls13_via_supported_versions() {
    let script = tls13_conversation();
    let p = go(&script);
    let t = p.tls.clone().expect("tls");
    assert_eq!(t.offered_version, Some(TLS13));
    assert_eq!(t.version, Some(TLS13));
    assert_eq!(t.cipher, Some(0x1301));
    assert_eq!(t.sni.as_deref(), Some("autodiscover.corp.example"));
    assert_eq!(t.alpn, ["http/1.1"]);
    assert_eq!(t.server_hello_frame, Some(2));
    // GREASE (0x7a7a) is not a version.
    assert_eq!(
        facts(&p, "tls.client-versions"),
        ["0x0302", "0x0303", "0x0304"]
    );
    // The encrypted records follow the ServerHello in the same frame.
    assert_eq!(p.encryption, Encryption::Tls);
    assert_eq!(p.encryption_frame, Some(2));
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    let (_, nexts, _) = drive(&script);
    assert_eq!(
        nexts,
        [Next::Continue, Next::Continue, Next::Done, Next::Done]
    );
}

#[test]
fn tls13_encryption_frame_is_the_first_encrypted_record() {
    let ch = client_hello(TLS12, &[versions(&[TLS13]), key_share_client()]);
    let p = go(&[
        (C, rec(CT_HANDSHAKE, TLS10, &ch)),
        (S, rec(CT_HANDSHAKE, TLS12, &server_hello_13([0x33; 32]))),
        (S, rec(CT_APP, TLS12, &[0x99; 90])),
    ]);
    assert_eq!(p.tls.as_ref().and_then(|t| t.server_hello_frame), Some(2));
    assert_eq!(p.encryption_frame, Some(3));
}

#[test]
fn tls13_byte_at_a_time() {
    let script = tls13_conversation();
    let p = feed(make, &slices(&script), true);
    let t = p.tls.clone().expect("tls");
    assert_eq!((t.offered_version, t.version), (Some(TLS13), Some(TLS13)));
    assert_eq!(t.client_hello_frame, Some(1));
    assert_eq!(p.encryption_frame, Some(2));
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
}

#[test]
fn hello_retry_request_is_not_the_final_server_hello() {
    let ch1 = client_hello(TLS12, &[versions(&[TLS13, TLS12]), key_share_client()]);
    let mut hrr = rec(CT_HANDSHAKE, TLS12, &server_hello_13(HRR_RANDOM));
    hrr.extend_from_slice(&rec(CT_CCS, TLS12, &[1])); // compatibility CCS (RFC 8446 D.4)
    let mut ch2 = rec(CT_CCS, TLS12, &[1]);
    ch2.extend_from_slice(&rec(CT_HANDSHAKE, TLS12, &ch1));
    let p = go(&[
        (C, rec(CT_HANDSHAKE, TLS10, &ch1)),
        (S, hrr),
        (C, ch2),
        (S, rec(CT_HANDSHAKE, TLS12, &server_hello_13([0x33; 32]))),
        (S, rec(CT_APP, TLS12, &[0x99; 90])),
    ]);
    assert_eq!(facts(&p, "tls.hello-retry-request"), ["0x1301"]);
    let t = p.tls.clone().expect("tls");
    assert_eq!(t.version, Some(TLS13));
    assert_eq!(t.client_hello_frame, Some(1));
    assert_eq!(t.server_hello_frame, Some(4));
    assert_eq!(p.encryption_frame, Some(5));
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
}

#[test]
fn server_flight_in_one_record_with_certificate_request() {
    let mut rng = Rng::new(3);
    // ServerHello, Certificate, CertificateRequest, ServerHelloDone in one record.
    let p = go(&[
        (C, tls_client_hello(&mut rng, TLS12, None)),
        (S, tls_server_flight(&mut rng, TLS12, "cas01", true)),
        (C, tls_client_finish(&mut rng, TLS12, Some("alice"))),
        (S, tls_ccs_finished(&mut rng, TLS12)),
    ]);
    let t = p.tls.clone().expect("tls");
    assert!(t.cert_requested);
    assert!(t.client_cert);
    assert_eq!(facts(&p, "tls.client-certificate"), ["present"]);
    assert_eq!(p.encryption_frame, Some(4));
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
}

#[test]
fn certificate_split_across_three_records() {
    let mut rng = Rng::new(4);
    let srv_cert = fake_cert(&mut rng, "cas01.corp.example");
    let cli_cert = fake_cert(&mut rng, "alice");
    let sh = server_hello(TLS12, [0x33; 32], 0x002f, &[]);
    let mut msgs = sh.clone();
    msgs.extend_from_slice(&certificate(&[&srv_cert]));
    msgs.extend_from_slice(&certificate_request());
    msgs.extend_from_slice(&hs(14, &[])); // ServerHelloDone
                                          // Cut inside the Certificate: SH + first part, middle, rest + CR + SHD.
    let a = sh.len() + 100;
    let b = sh.len() + 300;
    let mut cmsgs = certificate(&[&cli_cert]);
    cmsgs.extend_from_slice(&client_key_exchange());
    let (x, y) = (2, 250); // the first cut inside the 4-byte handshake header
    let mut client_tail = rec(CT_HANDSHAKE, TLS12, &cmsgs[y..]);
    client_tail.extend_from_slice(&tls_ccs_finished(&mut rng, TLS12));
    let p = go(&[
        (C, tls_client_hello(&mut rng, TLS12, None)),
        (S, rec(CT_HANDSHAKE, TLS12, &msgs[..a])),
        (S, rec(CT_HANDSHAKE, TLS12, &msgs[a..b])),
        (S, rec(CT_HANDSHAKE, TLS12, &msgs[b..])),
        (C, rec(CT_HANDSHAKE, TLS12, &cmsgs[..x])),
        (C, rec(CT_HANDSHAKE, TLS12, &cmsgs[x..y])),
        (C, client_tail),
        (S, tls_ccs_finished(&mut rng, TLS12)),
    ]);
    let t = p.tls.clone().expect("tls");
    assert_eq!(t.version, Some(TLS12));
    assert!(t.cert_requested);
    assert!(t.client_cert);
    assert_eq!(p.encryption_frame, Some(8));
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
}

#[test]
fn empty_client_certificate() {
    let mut rng = Rng::new(5);
    let mut cmsgs = certificate(&[]);
    cmsgs.extend_from_slice(&client_key_exchange());
    let mut flight = rec(CT_HANDSHAKE, TLS12, &cmsgs);
    flight.extend_from_slice(&tls_ccs_finished(&mut rng, TLS12));
    let p = go(&[
        (C, tls_client_hello(&mut rng, TLS12, None)),
        (S, tls_server_flight(&mut rng, TLS12, "cas01", true)),
        (C, flight),
        (S, tls_ccs_finished(&mut rng, TLS12)),
    ]);
    let t = p.tls.clone().expect("tls");
    assert!(t.cert_requested);
    assert!(!t.client_cert);
    assert_eq!(facts(&p, "tls.client-certificate"), ["empty"]);
    assert_eq!(p.encryption, Encryption::Tls);
}

#[test]
fn oversized_certificate_is_passed_over_and_the_flight_still_read() {
    let mut rng = Rng::new(6);
    let big = vec![0x30u8; MAX_HANDSHAKE_MSG + 10];
    let mut msgs = server_hello(TLS12, [0x33; 32], 0x002f, &[]);
    msgs.extend_from_slice(&certificate(&[&big]));
    msgs.extend_from_slice(&certificate_request());
    msgs.extend_from_slice(&hs(14, &[]));
    let mut script = vec![(C, tls_client_hello(&mut rng, TLS12, None))];
    let mut flight = Vec::new();
    for chunk in msgs.chunks(1 << 14) {
        flight.extend_from_slice(&rec(CT_HANDSHAKE, TLS12, chunk));
    }
    script.push((S, flight));
    let mut cmsgs = certificate(&[&big]);
    cmsgs.extend_from_slice(&client_key_exchange());
    let mut cflight = Vec::new();
    for chunk in cmsgs.chunks(1 << 14) {
        cflight.extend_from_slice(&rec(CT_HANDSHAKE, TLS12, chunk));
    }
    cflight.extend_from_slice(&tls_ccs_finished(&mut rng, TLS12));
    script.push((C, cflight));
    let p = go(&script);
    assert_eq!(
        kinds(&p),
        ["tls.handshake-too-long", "tls.handshake-too-long"]
    );
    let t = p.tls.clone().expect("tls");
    assert!(t.cert_requested);
    assert!(t.client_cert);
    assert_eq!(t.version, Some(TLS12));
}

#[test]
fn sslv2_only_hello() {
    let mut rng = Rng::new(7);
    let cert = fake_cert(&mut rng, "legacy");
    let p = go(&[
        (C, sslv2_client_hello(SSL2)),
        (S, sslv2_server_hello(&cert)),
    ]);
    let t = p.tls.clone().expect("tls");
    assert_eq!(t.offered_version, Some(SSL2));
    assert_eq!(t.version, Some(SSL2));
    assert_eq!(t.client_hello_frame, Some(1));
    assert_eq!(t.server_hello_frame, Some(2));
    assert_eq!(facts(&p, "tls.sslv2-hello"), ["0x0002", "server"]);
    assert_eq!(p.encryption_frame, Some(2));
}

#[test]
fn tls10_client_hello_in_sslv2_format() {
    let mut rng = Rng::new(8);
    let p = go(&[
        (C, sslv2_client_hello(TLS10)),
        (S, tls_server_flight(&mut rng, TLS10, "cas01", false)),
        (C, tls_client_finish(&mut rng, TLS10, None)),
        (S, tls_ccs_finished(&mut rng, TLS10)),
    ]);
    let t = p.tls.clone().expect("tls");
    assert_eq!(t.offered_version, Some(TLS10));
    assert_eq!(t.version, Some(TLS10));
    assert_eq!(facts(&p, "tls.sslv2-hello"), ["0x0301"]);
    assert_eq!(p.encryption_frame, Some(4));
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
}

#[test]
fn fatal_alert_before_server_hello_leaves_no_encryption() {
    let mut rng = Rng::new(9);
    let script = [
        (C, tls_client_hello(&mut rng, TLS10, None)),
        // fatal handshake_failure (40)
        (S, rec(CT_ALERT, TLS10, &[2, 40])),
        (C, tls_app(&mut rng, TLS10, 50)),
    ];
    let p = go(&script);
    assert_eq!(facts(&p, "tls.alert"), ["fatal:40"]);
    assert_eq!(p.encryption, Encryption::Unknown);
    assert_eq!(p.encryption_frame, None);
    let t = p.tls.clone().expect("tls");
    assert_eq!((t.offered_version, t.version), (Some(TLS10), None));
    let (_, nexts, _) = drive(&script);
    assert_eq!(nexts, [Next::Continue, Next::Done, Next::Done]);
}

#[test]
fn warning_alert_does_not_stop() {
    let mut rng = Rng::new(10);
    let mut flight = rec(CT_ALERT, TLS12, &[1, 112]); // warning unrecognized_name
    flight.extend_from_slice(&tls_server_flight(&mut rng, TLS12, "cas01", false));
    let p = go(&[
        (
            C,
            tls_client_hello(&mut rng, TLS12, Some("unknown.example")),
        ),
        (S, flight),
        (C, tls_client_finish(&mut rng, TLS12, None)),
        (S, tls_ccs_finished(&mut rng, TLS12)),
    ]);
    assert_eq!(facts(&p, "tls.alert"), ["warning:112"]);
    assert_eq!(p.encryption_frame, Some(4));
}

#[test]
fn mid_stream_application_data() {
    let mut rng = Rng::new(11);
    let script = [
        (C, tls_app(&mut rng, TLS12, 300)),
        (S, tls_app(&mut rng, TLS12, 3000)),
    ];
    let p = go(&script);
    assert_eq!(kinds(&p), ["tls.handshake-not-seen"]);
    assert_eq!(
        p.tls.as_deref(),
        Some(&TlsInfo {
            started_by: "implicit".into(),
            ..TlsInfo::default()
        })
    );
    assert_eq!(p.encryption, Encryption::Tls);
    assert_eq!(p.encryption_frame, Some(1));
    let (_, nexts, _) = drive(&script);
    assert_eq!(nexts, [Next::Continue, Next::Done]);
}

#[test]
fn largest_record_is_accepted() {
    let body = vec![0x61; MAX_RECORD_LEN];
    let mut v = rec(CT_APP, TLS12, &body);
    v.extend_from_slice(&rec(CT_APP, TLS12, &body));
    let p = go(&[(C, v)]);
    assert_eq!(kinds(&p), ["tls.handshake-not-seen"]);
}

#[test]
fn not_tls_after_starttls() {
    let p = run(
        make_starttls,
        &[(
            S,
            b"454 4.7.0 TLS not available due to temporary reason\r\n",
        )],
    );
    assert_eq!(kinds(&p), ["tls.not-tls"]);
    assert_eq!(p.encryption, Encryption::Unknown);
    assert!(p.tls.is_none());

    // The client's hello was TLS, the server answered in clear text.
    let mut rng = Rng::new(12);
    let ch = tls_client_hello(&mut rng, TLS12, None);
    let p = run(make_starttls, &[(C, &ch), (S, b"500 what?\r\n")]);
    assert_eq!(kinds(&p), ["tls.not-tls"]);
    assert_eq!(p.encryption, Encryption::Unknown);
    let t = p.tls.clone().expect("tls");
    assert_eq!(t.started_by, "starttls");
    assert_eq!(t.offered_version, Some(TLS12));
}

#[test]
fn record_length_too_big() {
    // 0x4801 = 2^14 + 2048 + 1
    let (p, nexts, _) = drive(&[(C, vec![22, 3, 1, 0x48, 0x01, 1, 0, 0])]);
    assert_eq!(kinds(&p), ["tls.record-too-long"]);
    assert_eq!(nexts, [Next::Done]);
    assert_eq!(p.encryption, Encryption::Unknown);
    let p = go(&[(C, vec![22, 3, 1, 0x48, 0x01, 1, 0, 0])]);
    assert_eq!(kinds(&p), ["tls.record-too-long"]);
}

#[test]
fn record_too_long_after_server_ccs_keeps_encryption() {
    let mut rng = Rng::new(13);
    // Session resumption: the server's ChangeCipherSpec comes first.
    let mut flight = rec(
        CT_HANDSHAKE,
        TLS12,
        &server_hello(TLS12, [0x33; 32], 0x002f, &[]),
    );
    flight.extend_from_slice(&tls_ccs_finished(&mut rng, TLS12));
    let p = go(&[
        (C, tls_client_hello(&mut rng, TLS12, None)),
        (S, flight),
        (C, vec![23, 3, 3, 0xff, 0xff]),
    ]);
    assert_eq!(kinds(&p), ["tls.record-too-long"]);
    assert_eq!(p.encryption, Encryption::Tls);
    assert_eq!(p.encryption_frame, Some(2));
}

#[test]
fn garbage_after_a_record_is_a_lost_stream() {
    let mut rng = Rng::new(14);
    let p = go(&[
        (C, tls_client_hello(&mut rng, TLS12, None)),
        (S, b"\x16\x03\x03\x00\x02ab235 ok\r\n".to_vec()),
    ]);
    assert_eq!(kinds(&p), ["tls.bad-record"]);
    assert_eq!(p.encryption, Encryption::Unknown);
}

#[test]
fn partial_header_already_makes_tls_info() {
    let p = run(make_starttls, &[(C, b"\x16\x03\x01")]);
    assert_eq!(
        p.tls.as_ref().map(|t| t.started_by.as_str()),
        Some("starttls")
    );
    assert!(p.anomalies.is_empty());
}

#[test]
fn gap_before_encryption_stops() {
    let mut rng = Rng::new(15);
    let (mut p, _, mut a) = drive(&[(C, tls_client_hello(&mut rng, TLS12, None))]);
    let mut cx = Ctx {
        limits: &crate::limits::ProtoLimits::DEFAULT,
        frame: 2,
        ts_ns: 0,
        client_port: 40000,
        server_port: 443,
        posture: &mut p,
    };
    assert_eq!(a.gap(S, 100, &mut cx), Next::Done);
    assert_eq!(kinds(&p), ["stream.gap"]);
}

#[test]
fn gap_after_encryption_continues() {
    let mut rng = Rng::new(16);
    let mut flight = rec(
        CT_HANDSHAKE,
        TLS12,
        &server_hello(TLS12, [0x33; 32], 0x002f, &[]),
    );
    flight.extend_from_slice(&tls_ccs_finished(&mut rng, TLS12));
    let (mut p, _, mut a) = drive(&[(C, tls_client_hello(&mut rng, TLS12, None)), (S, flight)]);
    let mut cx = Ctx {
        limits: &crate::limits::ProtoLimits::DEFAULT,
        frame: 3,
        ts_ns: 0,
        client_port: 40000,
        server_port: 443,
        posture: &mut p,
    };
    assert_eq!(a.gap(S, 100, &mut cx), Next::Continue);
    // The client's CCS completes the pair.
    assert_eq!(
        a.data(C, &tls_ccs_finished(&mut rng, TLS12), &mut cx),
        Next::Done
    );
    assert!(p.anomalies.is_empty(), "{:?}", p.anomalies);
    assert_eq!(p.encryption_frame, Some(2));
}

#[test]
fn probe_cases() {
    let mut rng = Rng::new(17);
    let ch = tls_client_hello(&mut rng, TLS12, None);
    let sf = tls_server_flight(&mut rng, TLS12, "cas01", false);
    let p = |dir, b: &[u8]| probe(dir, b, 40000, 443);
    assert_eq!(p(C, &ch), Probe::Certain);
    assert_eq!(p(S, &sf), Probe::Certain);
    assert_eq!(p(S, &ch), Probe::No); // a ClientHello from the server
    assert_eq!(p(C, &sf), Probe::No);
    assert_eq!(p(C, &[]), Probe::Unsure);
    assert_eq!(p(C, &[0x16]), Probe::Unsure);
    assert_eq!(p(C, &[0x16, 3, 1]), Probe::Unsure);
    assert_eq!(p(C, &[0x16, 3, 1, 0, 0x80]), Probe::Unsure);
    assert_eq!(p(C, &[0x16, 3, 1, 0, 0]), Probe::No); // empty record
    assert_eq!(p(C, &[0x16, 3, 1, 0x48, 0x01]), Probe::No); // too long
    assert_eq!(p(C, &[0x16, 3, 5]), Probe::No);
    assert_eq!(p(C, &[0x16, 2]), Probe::No);
    // Mid-stream records: the port decides.
    assert_eq!(p(C, &[23, 3, 3, 0, 64, 0xaa]), Probe::Unsure);
    assert_eq!(p(S, &[21, 3, 3, 0, 26]), Probe::Unsure);
    assert_eq!(p(S, &[20, 3, 1, 0, 1, 1]), Probe::Unsure);
    assert_eq!(p(C, &[24, 3, 3, 0, 3]), Probe::No);
    // SSLv2 format.
    assert_eq!(p(C, &sslv2_client_hello(SSL2)), Probe::Certain);
    assert_eq!(p(C, &sslv2_client_hello(TLS10)), Probe::Certain);
    assert_eq!(p(C, &sslv2_client_hello(TLS10)[..3]), Probe::Unsure);
    assert_eq!(p(S, &sslv2_server_hello(&[0x30; 40])), Probe::Certain);
    assert_eq!(p(C, &[0x80, 0x2e, 2, 0, 2]), Probe::No);
    // Other protocols.
    assert_eq!(p(C, b"GET / HTTP/1.1\r\n"), Probe::No);
    assert_eq!(p(S, b"220 mail ready\r\n"), Probe::No);
    assert_eq!(p(C, &[0x30, 0x84, 0, 0, 0, 0x20]), Probe::No); // LDAP
    assert_eq!(p(C, &[5, 0, 0x0b, 3, 0x10, 0]), Probe::No); // DCE/RPC bind
}

#[test]
fn registration() {
    assert_eq!(REGISTRATION.name, "tls");
    const { assert!(REGISTRATION.tcp) };
    assert!(REGISTRATION.ports.contains(&443) && REGISTRATION.ports.contains(&3269));
    let p = run(REGISTRATION.make, &[(C, b"\x16\x03\x01")]);
    assert_eq!(p.tls.map(|t| t.started_by), Some("implicit".to_string()));
}

/// Feed `script` with each chunk cut at `cuts` (fractions of its length).
fn feed_cut(script: &[(Direction, Vec<u8>)], cuts: &[f64]) -> Posture {
    let mut a = TlsAnalyzer::new("implicit");
    let mut posture = Posture::default();
    for (i, (dir, bytes)) in script.iter().enumerate() {
        let mut cx = Ctx {
            limits: &crate::limits::ProtoLimits::DEFAULT,
            frame: i as u64 + 1,
            ts_ns: 0,
            client_port: 40000,
            server_port: 443,
            posture: &mut posture,
        };
        let mut at = 0;
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|f| ((bytes.len() as f64) * f) as usize)
            .collect();
        points.sort_unstable();
        for p in points.into_iter().chain([bytes.len()]) {
            let p = p.clamp(at, bytes.len());
            a.data(*dir, &bytes[at..p], &mut cx);
            at = p;
        }
    }
    posture
}

proptest! {
    #[test]
    fn random_bytes_never_panic(chunks in prop::collection::vec(
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)), 0..8)) {
        let script: Vec<(Direction, Vec<u8>)> = chunks
            .into_iter()
            .map(|(c, b)| (if c { C } else { S }, b))
            .collect();
        // `run` also checks that whole and byte-by-byte feeding agree.
        go(&script);
    }

    #[test]
    fn tls_looking_random_records_never_panic(
        recs in prop::collection::vec(
            (any::<bool>(), 20u8..25, 0u8..5, prop::collection::vec(any::<u8>(), 0..200)),
            0..10)
    ) {
        let script: Vec<(Direction, Vec<u8>)> = recs
            .into_iter()
            .map(|(c, ct, minor, body)| {
                (if c { C } else { S }, rec(ct, 0x0300 | u16::from(minor), &body))
            })
            .collect();
        go(&script);
    }

    #[test]
    fn mutated_handshake_never_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        which in 0usize..2,
    ) {
        let mut rng = Rng::new(18);
        let mut script = if which == 0 { tls13_conversation() } else { tls12_conversation(&mut rng) };
        for (idx, value) in flips {
            let frame = idx.index(script.len());
            if let Some((_, bytes)) = script.get_mut(frame) {
                let at = idx.index(bytes.len().max(1));
                if let Some(b) = bytes.get_mut(at) {
                    *b = value;
                }
            }
        }
        go(&script);
    }

    #[test]
    fn chunking_does_not_change_the_result(
        cuts in prop::collection::vec(0.0f64..1.0, 0..6),
    ) {
        let mut rng = Rng::new(19);
        let script = tls12_conversation(&mut rng);
        let whole = feed(make, &slices(&script), false);
        let cut = feed_cut(&script, &cuts);
        prop_assert_eq!(whole.tls, cut.tls);
        prop_assert_eq!(whole.encryption_frame, cut.encryption_frame);
        prop_assert_eq!(whole.facts, cut.facts);
        prop_assert_eq!(whole.anomalies, cut.anomalies);
    }
}
