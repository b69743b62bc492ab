use super::*;
use crate::classify::infer::RoleMap;
use crate::classify::paths::classify;
use crate::model::{Posture, Secret, TlsInfo};
use std::net::IpAddr;

use crate::classify::fixture::fix;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Findings of a flow, with inferred roles; checks that stated roles give the same.
fn judge(f: &Flow) -> Vec<Finding> {
    let x = fix();
    let a = evaluate(f, &classify(f, &x.catalog, &x.inferred), &x.catalog);
    let b = evaluate(f, &classify(f, &x.catalog, &x.stated), &x.catalog);
    assert_eq!(a, b, "inferred and stated roles judge {:?} alike", f.server);
    a
}

/// The fixture flows from `client` to server port `port` (one scenario).
fn flows(client: &str, port: u16) -> Vec<&'static Flow> {
    let c = ip(client);
    let v: Vec<&Flow> = fix()
        .flows
        .iter()
        .filter(|f| f.client.ip() == c && f.server.port() == port)
        .collect();
    assert!(!v.is_empty(), "{client} -> :{port}");
    v
}

fn the(client: &str, port: u16) -> &'static Flow {
    let v = flows(client, port);
    assert_eq!(v.len(), 1, "{client} -> :{port}");
    v[0]
}

/// (rule, severity, data path) of each finding.
fn summary(v: &[Finding]) -> Vec<(&'static str, Severity, Option<&str>)> {
    v.iter()
        .map(|f| (f.rule, f.severity, f.data_path.as_deref()))
        .collect()
}

fn rule_of<'a>(v: &'a [Finding], rule: &str) -> &'a Finding {
    v.iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} in {:?}", summary(v)))
}

use rule::*;
use Severity::*;

#[test]
fn http_ews_basic_clear_is_a_critical_cleartext_credential_on_c2() {
    let f = the("10.2.0.10", 80);
    let v = judge(f);
    assert_eq!(
        summary(&v),
        [
            (CLEARTEXT_CREDENTIAL, Critical, Some("C2")),
            (UNENCRYPTED_PATH, High, Some("C2")),
            (UNSUPPORTED_AUTH, High, Some("C2")),
        ]
    );
    let c = &v[0];
    assert_eq!(c.user.as_deref(), Some("contoso\\jdoe"));
    assert_eq!(c.frames, [231]);
    assert_eq!(c.filter, "tcp.stream eq 9");
    assert_eq!(c.stream, Some(9));
    assert_eq!(
        (c.client.as_str(), c.server.as_str()),
        ("10.2.0.10:63161", "10.1.0.20:80")
    );
    assert_eq!(c.transport, "tcp");
    assert_eq!(c.ts_ns, f.first_ts_ns);
    assert!(
        c.observed.contains("basic") && c.observed.contains("S***"),
        "{}",
        c.observed
    );
    assert!(
        c.message.contains("C2 (Availability service)"),
        "{}",
        c.message
    );
    assert_eq!(c.fingerprint.len(), 32);
}

#[test]
fn smtp_hub_hub_cleartext_is_unencrypted_on_t1() {
    let v = flows("10.1.0.10", 25);
    assert_eq!(v.len(), 2);
    // smtp-hub-hub-anonymoustls: compliant.
    assert_eq!(judge(v[0]), []);
    // smtp-hub-hub-cleartext.
    let w = judge(v[1]);
    assert_eq!(
        summary(&w),
        [
            (UNENCRYPTED_PATH, High, Some("T1")),
            (UNSUPPORTED_AUTH, High, Some("T1")),
        ]
    );
    assert!(
        w[0].observed.contains("STARTTLS was not offered"),
        "{}",
        w[0].observed
    );
    assert!(w[1].observed.starts_with("ntlmv2"), "{}", w[1].observed);
    assert_eq!(w[1].user.as_deref(), Some("CONTOSO\\HUB01$"));
}

#[test]
fn https_owa_tls10_is_weak_tls() {
    let v = judge(the("10.2.0.8", 443));
    assert_eq!(summary(&v), [(WEAK_TLS, Medium, Some("C1"))]);
    assert_eq!(v[0].observed, "TLS 1.0 negotiated");
    assert_eq!(v[0].frames, [195, 196], "ClientHello and ServerHello");
    assert!(
        v[0].message.contains("also possible: C2, C3"),
        "{}",
        v[0].message
    );
}

#[test]
fn compliant_scenarios_have_no_finding_above_info() {
    let compliant = [
        ("10.2.0.7", 443),       // https-owa
        ("10.2.0.5", 587),       // smtp-client-starttls
        ("10.2.0.41", 587),      // vlan-smtp
        ("10.2.0.19", 143),      // imap-starttls
        ("10.2.0.21", 110),      // pop3-stls
        ("10.2.0.22", 135),      // mapi-rpc-privacy (endpoint mapper)
        ("10.2.0.22", 59532),    // mapi-rpc-privacy
        ("10.1.0.10", 135),      // drsuapi-kerberos-privacy (endpoint mapper)
        ("10.1.0.10", 49158),    // drsuapi-kerberos-privacy
        ("10.2.0.27", 445),      // smb3-encrypted
        ("10.1.0.10", 50636),    // ldaps-edgesync
        ("10.2.0.31", 389),      // ldap-starttls
        ("10.9.0.2", 5061),      // sip-tls
        ("10.2.0.35", 53),       // dns (tcp)
        ("10.2.0.33", 88),       // kerberos-as-tgs (tcp)
        ("2001:db8:2::40", 443), // ipv6-https
    ];
    for (client, port) in compliant {
        for f in flows(client, port) {
            let v = judge(f);
            assert!(
                v.iter().all(|g| g.severity == Info),
                "{client}:{port} {:?}",
                summary(&v)
            );
        }
    }
    // The fully clean ones have no finding at all.
    for (client, port) in [
        ("10.2.0.7", 443),
        ("10.2.0.22", 59532),
        ("10.2.0.22", 135),
        ("10.9.0.2", 5061),
    ] {
        assert_eq!(judge(the(client, port)), [], "{client}:{port}");
    }
    // ldap-sasl-sealed and cldap: the Hub's AD access.
    for f in fix()
        .flows
        .iter()
        .filter(|f| f.server.port() == 389 && f.client.ip() == ip("10.1.0.10"))
    {
        assert_eq!(judge(f), [], "{:?}", f.transport);
    }
    // esp between the mailbox nodes.
    let esp = fix().flows.iter().find(|f| f.transport == Transport::Esp);
    assert_eq!(esp.map(judge), Some(vec![]));
}

/// smtp-edge-hub-mutualtls is clean; smtp-edge-hub-no-client-cert (the hub asked for a
/// certificate, the Edge sent an empty one) is direct trust without mutual TLS.
#[test]
fn edge_to_hub_needs_the_client_certificate() {
    let edge = flows("192.0.2.25", 25);
    assert_eq!(edge.len(), 2);
    for f in edge {
        let v = judge(f);
        let t = f.posture.tls.as_ref().expect("TLS after STARTTLS");
        assert!(t.cert_requested);
        if t.client_cert {
            assert_eq!(v, [], "mutual TLS");
        } else {
            assert_eq!(summary(&v), [(UNSUPPORTED_AUTH, High, Some("T3"))]);
            assert!(
                v[0].observed.contains("although the server asked"),
                "{}",
                v[0].observed
            );
        }
    }
}

#[test]
fn http_owa_ntlmv1_is_weak_and_unsupported() {
    let v = judge(the("10.2.0.13", 80));
    assert_eq!(
        summary(&v),
        [
            (UNENCRYPTED_PATH, High, Some("C3")),
            (UNSUPPORTED_AUTH, High, Some("C3")),
            (WEAK_AUTH, High, Some("C3")),
        ]
    );
    let u = rule_of(&v, UNSUPPORTED_AUTH);
    assert!(u.expected.contains("NTLM version 2 only"), "{}", u.expected);
    assert_eq!(u.user.as_deref(), Some("CONTOSO\\jdoe"));
    assert_eq!(u.frames, [284]);
    assert!(rule_of(&v, WEAK_AUTH).observed.contains("LM response"));
}

#[test]
fn smtp_starttls_refused_is_starttls_not_used_high() {
    let v = judge(the("10.2.0.6", 25));
    assert_eq!(
        summary(&v),
        [
            (STARTTLS_NOT_USED, High, Some("T11")),
            (UNENCRYPTED_PATH, High, Some("T11")),
        ]
    );
    assert!(v[0].observed.contains("(454)"), "{}", v[0].observed);
}

#[test]
fn mapi_rpc_connect_is_unencrypted_on_m6_and_its_lookup_is_clean() {
    assert_eq!(judge(the("10.2.0.23", 135)), []);
    let v = judge(the("10.2.0.23", 59532));
    assert_eq!(summary(&v), [(UNENCRYPTED_PATH, High, Some("M6"))]);
    assert!(
        v[0].observed.contains("auth level connect"),
        "{}",
        v[0].observed
    );
    assert!(
        v[0].message.contains("also possible: M21b"),
        "{}",
        v[0].message
    );
    assert_eq!(v[0].frames, [478, 483], "first frame and the AUTH3");
}

#[test]
fn every_violating_client_scenario_gets_its_rules() {
    type Want = &'static [(&'static str, Severity, Option<&'static str>)];
    let cases: &[(&str, u16, Want)] = &[
        // smtp-client-auth-login-clear
        (
            "10.2.0.4",
            587,
            &[
                (CLEARTEXT_CREDENTIAL, Critical, Some("T11")),
                (UNENCRYPTED_PATH, High, Some("T11")),
                (UNSUPPORTED_AUTH, High, Some("T11")),
                (STARTTLS_NOT_USED, Medium, Some("T11")),
            ],
        ),
        // http-owa-forms-clear
        (
            "10.2.0.9",
            80,
            &[
                (CLEARTEXT_CREDENTIAL, Critical, Some("C3")),
                (UNENCRYPTED_PATH, High, Some("C3")),
            ],
        ),
        // http-activesync-basic-clear
        (
            "10.2.0.11",
            80,
            &[
                (CLEARTEXT_CREDENTIAL, Critical, Some("C7")),
                (UNENCRYPTED_PATH, High, Some("C7")),
            ],
        ),
        // http-autodiscover-ntlmv2
        (
            "10.2.0.12",
            80,
            &[
                (UNENCRYPTED_PATH, High, Some("C1")),
                (NON_DEFAULT_AUTH, Info, Some("C1")),
            ],
        ),
        // http-ews-negotiate-kerberos
        ("10.2.0.14", 80, &[(UNENCRYPTED_PATH, High, Some("C2"))]),
        // http-oab: not encrypted by default.
        (
            "10.2.0.16",
            80,
            &[(ENCRYPTION_AVAILABLE_UNUSED, Info, Some("C14"))],
        ),
        // http-webdav
        (
            "10.2.0.17",
            80,
            &[
                (CLEARTEXT_CREDENTIAL, Critical, Some("C13")),
                (UNENCRYPTED_PATH, High, Some("C13")),
            ],
        ),
        // imap-login-clear
        (
            "10.2.0.18",
            143,
            &[
                (CLEARTEXT_CREDENTIAL, Critical, Some("C5")),
                (UNENCRYPTED_PATH, High, Some("C5")),
                (STARTTLS_NOT_USED, Medium, Some("C5")),
            ],
        ),
        // pop3-user-pass-clear
        (
            "10.2.0.20",
            110,
            &[
                (CLEARTEXT_CREDENTIAL, Critical, Some("C4")),
                (UNENCRYPTED_PATH, High, Some("C4")),
            ],
        ),
        // smb2-ntlm, smb2-kerberos: IPsec supported, not used.
        (
            "10.2.0.25",
            445,
            &[(ENCRYPTION_AVAILABLE_UNUSED, Info, Some("M11"))],
        ),
        (
            "10.2.0.26",
            445,
            &[(ENCRYPTION_AVAILABLE_UNUSED, Info, Some("M11"))],
        ),
        // ldap-simple-bind-clear: EdgeSync without SSL.
        (
            "10.1.0.10",
            50389,
            &[
                (CLEARTEXT_CREDENTIAL, Critical, Some("T8")),
                (UNENCRYPTED_PATH, High, Some("T8")),
            ],
        ),
        // sip-clear
        ("10.9.0.2", 5060, &[(UNENCRYPTED_PATH, High, Some("U2"))]),
        // cluster-heartbeat
        (
            "10.1.0.30",
            3343,
            &[(ENCRYPTION_AVAILABLE_UNUSED, Info, Some("M5"))],
        ),
        // kerberos-rc4-des: no documented path from a workstation, still weak.
        ("10.2.0.34", 88, &[(WEAK_AUTH, Medium, None)]),
    ];
    for (client, port, want) in cases {
        let v = judge(the(client, *port));
        assert_eq!(summary(&v), *want, "{client}:{port}");
    }
    // http-outlook-anywhere: both channels; the inner RPC NTLM is not judged on C6.
    for f in flows("10.2.0.15", 80) {
        assert_eq!(
            summary(&judge(f)),
            [
                (CLEARTEXT_CREDENTIAL, Critical, Some("C6")),
                (UNENCRYPTED_PATH, High, Some("C6")),
            ]
        );
    }
}

#[test]
fn the_fixture_has_exactly_eleven_cleartext_credentials_and_no_secret() {
    let mut all = Vec::new();
    for f in &fix().flows {
        all.extend(judge(f));
    }
    let clear: Vec<&Finding> = all
        .iter()
        .filter(|f| f.rule == CLEARTEXT_CREDENTIAL)
        .collect();
    assert_eq!(clear.len(), 11);
    let json = serde_json::to_string(&all).unwrap_or_default();
    assert!(!json.contains("Summer2026!"), "a secret leaked");
    assert!(json.contains("\"severity\":\"critical\"") && json.contains("\"rule\":\"weak-tls\""));
    // Every finding names evidence and a filter that selects its flow.
    for f in &all {
        assert!(!f.frames.is_empty(), "{f:?}");
        assert!(f.frames.windows(2).all(|w| w[0] < w[1]));
        assert!(!f.filter.is_empty() && !f.expected.is_empty() && !f.observed.is_empty());
        assert!(
            RULES
                .iter()
                .any(|r| r.id == f.rule && r.severities.contains(&f.severity)),
            "{f:?}"
        );
    }
    // Fingerprints are unique across the fixture (distinct flows, users, rules).
    let mut fps: Vec<&str> = all.iter().map(|f| f.fingerprint.as_str()).collect();
    let n = fps.len();
    fps.sort_unstable();
    fps.dedup();
    assert!(
        fps.len() < n,
        "same violation from two clients shares a fingerprint"
    );
}

#[test]
fn fingerprints_survive_recapture_but_not_a_new_user() {
    let x = fix();
    let orig = the("10.2.0.10", 80);
    let fp = |f: &Flow| -> Vec<String> {
        judge_with(f, &x.stated)
            .iter()
            .map(|g| g.fingerprint.clone())
            .collect()
    };
    let before = fp(orig);
    // Re-captured: other frames, times, stream index, client port, and another client
    // workstation.
    let mut again = orig.clone();
    again.client = "10.2.200.9:51000".parse().unwrap_or(orig.client);
    again.stream = Some(77);
    again.first_frame += 1000;
    again.first_ts_ns += 86_400_000_000_000;
    for a in &mut again.posture.auth {
        a.frame += 1000;
    }
    assert_eq!(fp(&again), before);
    // Another user: another cleartext finding.
    let mut other = orig.clone();
    for a in &mut other.posture.auth {
        a.user = Some("contoso\\asmith".into());
    }
    let after = fp(&other);
    assert_ne!(after[0], before[0], "cleartext-credential carries the user");
    assert_eq!(after[1], before[1], "unencrypted-path does not");
    // A dynamic RPC port named by the endpoint mapper is not part of it.
    let mapi = the("10.2.0.23", 59532);
    let mut moved = mapi.clone();
    moved.server.set_port(60111);
    assert_eq!(fp(&moved), fp(mapi));
}

fn judge_with(f: &Flow, roles: &RoleMap) -> Vec<Finding> {
    let x = fix();
    evaluate(f, &classify(f, &x.catalog, roles), &x.catalog)
}

#[test]
fn severity_orders_and_names() {
    assert!(Critical > High && High > Medium && Medium > Low && Low > Info);
    let mut v = vec![Info, Critical, Low, High, Medium];
    v.sort();
    assert_eq!(v, [Info, Low, Medium, High, Critical]);
    assert_eq!(
        serde_json::to_string(&Critical).unwrap_or_default(),
        "\"critical\""
    );
    assert_eq!("HIGH".parse::<Severity>(), Ok(High));
    assert!("severe".parse::<Severity>().is_err());
    for s in Severity::ALL {
        assert_eq!(Severity::from_name(s.as_str()), Some(*s));
    }
    let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        [
            "cleartext-credential",
            "unencrypted-path",
            "unsupported-auth",
            "weak-auth",
            "weak-tls",
            "starttls-not-used",
            "encryption-available-unused",
            "non-default-auth",
            "undocumented-port",
            "unknown-visibility",
        ]
    );
}

#[test]
fn fingerprint_is_fnv1a_128() {
    // FNV-1a 128 of the empty input is its offset basis; the parts are length-prefixed,
    // so ["ab", ""] and ["a", "b"] differ.
    assert_eq!(fingerprint(&[]), "6c62272e07bb014262b821756295c58d");
    assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
}

// ------------------------------------------------------------------ hand-built flows

fn flow(client: &str, server: &str, transport: Transport, protocol: &'static str) -> Flow {
    let posture = Posture {
        protocol: Some(protocol),
        detected_by: Some("handshake"),
        ..Default::default()
    };
    let mut f = Flow::sample(transport, client, server);
    f.conversation_frame = 10;
    f.stream = Some(3);
    f.first_frame = 10;
    f.last_frame = 20;
    f.first_ts_ns = 5;
    f.last_ts_ns = 9;
    f.frames = [6, 5];
    f.bytes = [900, 800];
    f.payload = [500, 400];
    f.posture = posture;
    f
}

fn auth(m: Mechanism, user: Option<&str>, cleartext: bool, frame: u64, context: &str) -> AuthEvent {
    AuthEvent {
        mechanism: m,
        user: user.map(str::to_string),
        cleartext,
        secret: cleartext.then(|| Secret("hunter2".into())),
        frame,
        context: context.into(),
        after_tls: false,
    }
}

fn stated(f: &Flow) -> Vec<Finding> {
    judge_with(f, &fix().stated)
}

#[test]
fn kerberos_on_88_is_no_unencrypted_path_on_ad_rows() {
    for t in [Transport::Udp, Transport::Tcp] {
        let mut f = flow("10.1.0.10:50000", "10.1.0.5:88", t, "kerberos");
        f.posture.encryption = Encryption::None;
        f.posture
            .fact("krb5.etype-offered", "aes256-cts-hmac-sha1-96");
        f.posture.fact("krb5.etype-offered", "rc4-hmac");
        f.posture.fact("krb5.etype-used", "aes256-cts-hmac-sha1-96");
        f.posture.add_auth(auth(
            Mechanism::Kerberos,
            Some("HUB01$@CONTOSO.COM"),
            false,
            11,
            "Kerberos AS-REQ",
        ));
        let c = classify(&f, &fix().catalog, &fix().stated);
        assert_eq!(c.best().map(|p| p.id.as_str()), Some("T10"));
        assert_eq!(stated(&f), [], "{t:?}");
    }
    // DNS and the endpoint mapper on the same path are clear by design too; LDAP is not.
    let mut dns = flow("10.1.0.10:50001", "10.1.0.5:53", Transport::Udp, "dns");
    dns.posture.encryption = Encryption::None;
    assert_eq!(stated(&dns), []);
    let mut ldap = flow("10.1.0.10:50002", "10.1.0.5:389", Transport::Tcp, "ldap");
    ldap.posture.encryption = Encryption::None;
    assert_eq!(
        summary(&stated(&ldap)),
        [(UNENCRYPTED_PATH, High, Some("T10"))]
    );
}

#[test]
fn kerberos_etypes_des_chosen_is_high_rc4_beside_aes_is_nothing() {
    let mk = |offered: &[&str], used: &[&str]| {
        let mut f = flow("10.1.0.10:50000", "10.1.0.5:88", Transport::Udp, "kerberos");
        f.posture.encryption = Encryption::None;
        for e in offered {
            f.posture.fact("krb5.etype-offered", *e);
        }
        for e in used {
            f.posture.fact("krb5.etype-used", *e);
        }
        f.posture.add_auth(auth(
            Mechanism::Kerberos,
            None,
            false,
            12,
            "Kerberos AS-REQ",
        ));
        summary(&stated(&f))
            .into_iter()
            .map(|(r, s, _)| (r, s))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        mk(
            &["des-cbc-md5", "aes256-cts-hmac-sha1-96"],
            &["des-cbc-md5"]
        ),
        [(WEAK_AUTH, High)]
    );
    assert_eq!(
        mk(
            &["des-cbc-crc", "aes256-cts-hmac-sha1-96"],
            &["aes256-cts-hmac-sha1-96"]
        ),
        [(WEAK_AUTH, Medium)]
    );
    assert_eq!(mk(&["rc4-hmac"], &[]), [(WEAK_AUTH, Medium)]);
    assert_eq!(
        mk(
            &["aes128-cts-hmac-sha1-96", "rc4-hmac"],
            &["aes128-cts-hmac-sha1-96"]
        ),
        []
    );
}

#[test]
fn capture_limits_make_the_verdict_unknown() {
    // No payload at all: encryption unknown on an encrypted-by-default path.
    let mut f = flow("10.2.0.9:50000", "10.1.0.20:443", Transport::Tcp, "tls");
    f.posture.protocol = None;
    f.posture.detected_by = None;
    f.payload = [0, 0];
    let v = stated(&f);
    assert_eq!(v.len(), 1, "{:?}", summary(&v));
    assert_eq!((v[0].rule, v[0].severity), (UNKNOWN_VISIBILITY, Low));
    assert!(
        v[0].observed.contains("no payload captured"),
        "{}",
        v[0].observed
    );

    // TLS picked up mid-stream: no handshake, so no version to judge.
    let mut g = flow("10.2.0.9:50001", "10.1.0.20:443", Transport::Tcp, "tls");
    g.syn_seen = false;
    g.posture.set_encryption(Encryption::Tls, 12);
    g.posture.tls = Some(Box::default());
    let v = stated(&g);
    assert_eq!(summary(&v).first().map(|s| s.0), Some(UNKNOWN_VISIBILITY));
    assert!(v[0].observed.contains("TLS handshake not captured"));

    // SMTP in clear with a reassembly gap and cut frames: the violation stands, and the
    // verdict says the capture may have hidden a STARTTLS.
    let mut h = flow("10.1.0.10:50002", "10.1.0.11:25", Transport::Tcp, "smtp");
    h.posture.set_cleartext();
    h.reassembly[0].gaps = 1;
    h.reassembly[0].gap_bytes = 1460;
    h.truncated_frames = 3;
    let v = stated(&h);
    let u = rule_of(&v, UNKNOWN_VISIBILITY);
    assert!(
        u.observed.contains("1460 bytes missing") && u.observed.contains("3 frame(s) cut"),
        "{}",
        u.observed
    );
    rule_of(&v, UNENCRYPTED_PATH);

    // A start not captured and nothing recognised.
    let mut k = flow("10.2.0.9:50003", "10.1.0.30:135", Transport::Tcp, "dcerpc");
    k.syn_seen = false;
    k.posture.protocol = None;
    k.posture.detected_by = None;
    let v = stated(&k);
    assert!(rule_of(&v, UNKNOWN_VISIBILITY)
        .observed
        .contains("start was not captured"));
}

#[test]
fn undocumented_port_between_exchange_roles() {
    let mut f = flow("10.1.0.10:50000", "10.1.0.30:8080", Transport::Tcp, "http");
    f.posture.set_cleartext();
    let v = stated(&f);
    assert_eq!(summary(&v), [(UNDOCUMENTED_PORT, Info, None)]);
    assert!(
        v[0].observed
            .contains("(hub) to 10.1.0.30 (mailbox) on 8080/tcp"),
        "{}",
        v[0].observed
    );
    // SMTP between Hubs on 2525: placed on T1, still an undocumented port.
    let mut g = flow("10.1.0.10:50001", "10.1.0.11:2525", Transport::Tcp, "smtp");
    g.posture.set_encryption(Encryption::Tls, 12);
    g.posture.tls = Some(Box::new(TlsInfo {
        version: Some(0x0303),
        server_hello_frame: Some(12),
        ..Default::default()
    }));
    assert_eq!(
        summary(&stated(&g)),
        [(UNDOCUMENTED_PORT, Info, Some("T1"))]
    );
    // A client to the CAS on an odd port is no traffic between Exchange roles.
    let mut h = flow("10.2.0.9:50002", "10.1.0.20:8443", Transport::Tcp, "tls");
    h.posture.set_encryption(Encryption::Tls, 12);
    assert_eq!(stated(&h), []);
}

#[test]
fn direct_trust_needs_a_client_certificate() {
    let mut f = flow("192.0.2.25:50000", "10.1.0.10:25", Transport::Tcp, "smtp");
    f.posture.fact("smtp.starttls", "offered");
    f.posture.fact("smtp.starttls", "requested");
    f.posture.fact("smtp.starttls", "accepted");
    f.posture.set_encryption(Encryption::Tls, 14);
    f.posture.tls = Some(Box::new(TlsInfo {
        version: Some(0x0303),
        server_hello_frame: Some(14),
        cert_requested: true,
        client_cert: false,
        started_by: "starttls".into(),
        ..Default::default()
    }));
    let v = stated(&f);
    assert_eq!(summary(&v), [(UNSUPPORTED_AUTH, High, Some("T3"))]);
    assert!(
        v[0].observed.contains("although the server asked"),
        "{}",
        v[0].observed
    );
    assert_eq!(v[0].frames, [14]);
    // With the certificate: compliant. In TLS 1.3 the certificate is encrypted: not judged.
    let mut g = f.clone();
    if let Some(t) = g.posture.tls.as_mut() {
        t.client_cert = true;
    }
    assert_eq!(stated(&g), []);
    let mut h = f.clone();
    if let Some(t) = h.posture.tls.as_mut() {
        t.version = Some(0x0304);
    }
    assert_eq!(stated(&h), []);
}

#[test]
fn kerberos_between_two_servers_is_non_default_on_same_server_rows() {
    let mut f = flow(
        "10.1.0.10:50000",
        "10.1.0.30:60000",
        Transport::Tcp,
        "dcerpc",
    );
    f.posture.fact("dcerpc.interface", "emsmdb");
    f.posture.fact("dcerpc.auth-level", "privacy");
    f.posture.set_encryption(Encryption::RpcPrivacy, 13);
    f.posture
        .add_auth(auth(Mechanism::Kerberos, None, false, 12, "DCE/RPC bind"));
    let v = stated(&f);
    assert_eq!(summary(&v), [(NON_DEFAULT_AUTH, Info, Some("T6"))]);
    assert!(
        v[0].message.contains("share one server"),
        "{}",
        v[0].message
    );
}

#[test]
fn path_independent_rules_apply_to_unmatched_flows() {
    // A cleartext login to a host with no role, on a port no row lists.
    let mut f = flow(
        "10.2.0.9:50000",
        "198.51.100.8:2110",
        Transport::Tcp,
        "pop3",
    );
    f.posture.set_cleartext();
    f.posture.add_auth(auth(
        Mechanism::UserPass,
        Some("jdoe"),
        true,
        15,
        "POP3 USER/PASS",
    ));
    f.posture.tls = Some(Box::new(TlsInfo {
        version: Some(0x0300),
        cipher: Some(0x0005),
        server_hello_frame: Some(11),
        ..Default::default()
    }));
    let v = stated(&f);
    assert_eq!(
        summary(&v),
        [
            (CLEARTEXT_CREDENTIAL, Critical, None),
            (WEAK_TLS, Medium, None)
        ]
    );
    assert!(v[0].message.contains("no documented path"));
    assert!(!format!("{v:?}").contains("hunter2"));
    assert!(v[0].observed.contains("h***"));
    assert_eq!(v[1].observed, "SSL 3.0 negotiated; RC4 cipher suite 0x0005");
}

#[test]
fn ntlm_of_unseen_version_on_an_ntlmv2_only_row_is_not_judged() {
    let mut f = flow("10.2.0.9:50000", "10.1.0.20:80", Transport::Tcp, "http");
    f.posture.fact("http.endpoint", "owa");
    f.posture.set_cleartext();
    f.posture
        .add_auth(auth(Mechanism::Ntlm, None, false, 12, "HTTP Authorization"));
    assert_eq!(summary(&stated(&f)), [(UNENCRYPTED_PATH, High, Some("C3"))]);
    // NTLMv2 there is supported, not the default (forms).
    if let Some(a) = f.posture.auth.first_mut() {
        a.mechanism = Mechanism::Ntlmv2;
    }
    assert_eq!(
        summary(&stated(&f)),
        [
            (UNENCRYPTED_PATH, High, Some("C3")),
            (NON_DEFAULT_AUTH, Info, Some("C3"))
        ]
    );
}

#[test]
fn findings_are_deterministic_and_merged_per_fingerprint() {
    let mut f = flow("10.2.0.9:50000", "10.1.0.20:80", Transport::Tcp, "http");
    f.posture.fact("http.endpoint", "ews");
    f.posture.set_cleartext();
    // The same user twice on one keep-alive connection: one finding, both frames.
    f.posture.add_auth(auth(
        Mechanism::Basic,
        Some("contoso\\jdoe"),
        true,
        12,
        "HTTP Authorization",
    ));
    f.posture.add_auth(auth(
        Mechanism::Basic,
        Some("contoso\\jdoe"),
        true,
        18,
        "HTTP Authorization",
    ));
    let v = stated(&f);
    let c: Vec<&Finding> = v
        .iter()
        .filter(|g| g.rule == CLEARTEXT_CREDENTIAL)
        .collect();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].frames, [12, 18]);
    assert_eq!(stated(&f), v);
    let mut sorted = v.clone();
    sorted.reverse();
    sort_findings(&mut sorted);
    assert_eq!(sorted, v);
}

/// A hub's Kerberos-sealed LDAP bind to a DC seen without any role: the port ties T4
/// (Edge to Edge, certificate only) with T10 and M9, which support Kerberos. The capture
/// cannot tell them apart, so no row may call Kerberos unsupported (a false high).
#[test]
fn tied_rows_never_make_a_supported_mechanism_unsupported() {
    let f = flows("10.1.0.10", 389)
        .into_iter()
        .find(|f| f.transport == crate::flow::Transport::Tcp)
        .expect("the LDAP bind");
    let no_roles = RoleMap::inferred_only(crate::classify::infer::infer_roles(&[]));
    let x = fix();
    let class = classify(f, &x.catalog, &no_roles);
    assert!(class.is_ambiguous(), "{:?}", class.paths);
    let found = judge_with(f, &no_roles);
    assert!(
        found.iter().all(|x| x.rule != rule::UNSUPPORTED_AUTH),
        "{:?}",
        summary(&found)
    );
}
