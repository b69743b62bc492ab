use super::*;

/// Every row of reference/exchange-2007-data-paths.md, in table order.
const EXPECTED_IDS: [&str; 53] = [
    "T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T9", "T10", "T11", //
    "M1", "M2", "M3", "M4", "M5", "M6", "M7", "M8", "M9", "M10", "M11", "M12", "M13", "M14", "M15",
    "M16", "M17", "M18", "M19", "M20", "M21a", "M21b", "M22", //
    "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "C10", "C11", "C12", "C13", "C14", "U1",
    "U2", "U3", "U4", "U5",
];

fn builtin() -> Catalog {
    match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => panic!("built-in catalog does not load: {e}"),
    }
}

fn path<'a>(c: &'a Catalog, id: &str) -> &'a DataPath {
    match c.get(id) {
        Some(p) => p,
        None => panic!("no path {id}"),
    }
}

/// One valid path; tests break one line of it. Line numbers are noted for the asserts.
const MINIMAL: &str = r#"[catalog]
title = "test"

[[path]]
id = "X1"
section = "transport"
name = "Hub to Hub"
client = ["hub"]
server = ["hub"]
ports = [{ port = 25, transport = "tcp", note = "TLS" }]
protocols = ["smtp", "tls"]
default_auth = ["kerberos"]
supported_auth = ["kerberos"]
encryption = ["tls"]
encrypted_by_default = true
by_default_source = "seed"
"#;

fn load_err(text: &str) -> CatalogError {
    match Catalog::from_toml_str(text, "bad.toml") {
        Ok(_) => panic!("catalog should not load:\n{text}"),
        Err(e) => e,
    }
}

fn assert_at(err: &CatalogError, line: usize, field: &str) {
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("bad.toml:{line}: field `{field}`")),
        "expected line {line} field {field}, got: {msg}"
    );
    let at = err.location();
    assert_eq!(at.and_then(|a| a.line), Some(line), "{msg}");
    assert_eq!(at.and_then(|a| a.field.as_deref()), Some(field), "{msg}");
}

#[test]
fn builtin_has_exactly_the_reference_rows_in_order() {
    let c = builtin();
    let ids: Vec<&str> = c.paths.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, EXPECTED_IDS);
    assert!(c.get("M21").is_none(), "M21 is split into M21a and M21b");
    assert_eq!(c.source, BUILTIN_NAME);
}

#[test]
fn builtin_sections_follow_the_id_letters() {
    for p in &builtin().paths {
        let want = match p.id.chars().next() {
            Some('T') => Section::Transport,
            Some('M') => Section::Mailbox,
            Some('C') => Section::ClientAccess,
            Some('U') => Section::UnifiedMessaging,
            _ => panic!("unexpected id {}", p.id),
        };
        assert_eq!(p.section, want, "{}", p.id);
    }
}

#[test]
fn t1_is_kerberos_and_tls_encrypted_by_default() {
    let c = builtin();
    let t1 = path(&c, "T1");
    assert_eq!(t1.client, [Role::Hub]);
    assert_eq!(t1.server, [Role::Hub]);
    assert_eq!(t1.default_auth, [AuthKind::Kerberos]);
    assert_eq!(t1.supported_auth, [AuthKind::Kerberos]);
    assert_eq!(t1.encryption, [EncKind::Tls]);
    assert!(t1.encrypted_by_default);
    assert_eq!(t1.by_default_source, ByDefaultSource::EnglishEdition);
    assert!(t1.has_port(25, Transport::Tcp));
    assert!(t1.auth_supported(&Mechanism::Kerberos));
    assert!(!t1.auth_supported(&Mechanism::Ntlmv2));
    assert!(t1.encryption_documented(Encryption::Tls));
    assert!(!t1.encryption_documented(Encryption::None));
}

#[test]
fn t2_hub_opens_to_edge_with_direct_trust() {
    let c = builtin();
    let t2 = path(&c, "T2");
    assert!(t2.connects(Role::Hub, Role::Edge));
    assert!(!t2.connects(Role::Edge, Role::Hub), "edge to hub is T3");
    assert_eq!(t2.default_auth, [AuthKind::DirectTrust]);
    assert!(t2.auth_supported(&Mechanism::Certificate));
}

#[test]
fn t5_t6_kerberos_only_on_one_server() {
    let c = builtin();
    for id in ["T5", "T6"] {
        let p = path(&c, id);
        assert!(p.same_server_kerberos, "{id}");
        assert_eq!(p.default_auth, [AuthKind::Ntlm], "{id}");
        assert!(p.auth_supported(&Mechanism::Kerberos), "{id}");
    }
    assert!(path(&c, "T5").connects(Role::Mailbox, Role::Hub));
    assert!(path(&c, "T6").connects(Role::Hub, Role::Mailbox));
}

#[test]
fn t8_edgesync_ports_and_basic() {
    let c = builtin();
    let t8 = path(&c, "T8");
    assert!(t8.has_port(50636, Transport::Tcp));
    assert!(t8.has_port(50389, Transport::Tcp));
    assert_eq!(t8.ports.len(), 2);
    assert_eq!(t8.default_auth, [AuthKind::Basic]);
    assert_eq!(t8.supported_auth, [AuthKind::Basic]);
    assert_eq!(t8.encryption, [EncKind::Ldaps]);
    assert!(
        t8.auth_supported(&Mechanism::Simple),
        "LDAP simple bind is Basic"
    );
}

#[test]
fn t9_and_m7_are_not_encrypted() {
    let c = builtin();
    for id in ["T9", "M3", "M7", "M15"] {
        let p = path(&c, id);
        assert!(p.encryption.is_empty(), "{id}");
        assert!(!p.encrypted_by_default, "{id}");
    }
}

#[test]
fn t10_lists_every_ad_port() {
    let c = builtin();
    let t10 = path(&c, "T10");
    assert!(t10.connects(Role::Hub, Role::Dc));
    for (port, t) in [
        (389, Transport::Tcp),
        (389, Transport::Udp),
        (3268, Transport::Tcp),
        (88, Transport::Tcp),
        (88, Transport::Udp),
        (53, Transport::Tcp),
        (53, Transport::Udp),
        (135, Transport::Tcp),
    ] {
        assert!(t10.has_port(port, t), "{port}/{t}");
    }
    assert_eq!(t10.encryption, [EncKind::KerberosSeal]);
    assert!(t10.encryption_documented(Encryption::SaslSeal));
}

#[test]
fn ipsec_rows_are_not_encrypted_by_default() {
    let c = builtin();
    for id in ["M1", "M2", "M4", "M5", "M11", "M12", "C9"] {
        let p = path(&c, id);
        assert_eq!(p.encryption, [EncKind::Ipsec], "{id}");
        assert!(!p.encrypted_by_default, "{id}");
    }
}

#[test]
fn m5_clustering_has_udp_3343_and_dynamic_tcp() {
    let c = builtin();
    let m5 = path(&c, "M5");
    assert!(m5.has_port(3343, Transport::Udp));
    assert!(m5.has_variable_port(Transport::Tcp));
    assert!(path(&c, "M2").ports.iter().any(|p| p.port == Port::Random));
}

#[test]
fn m21_editions_disagree_and_both_are_kept() {
    let c = builtin();
    let a = path(&c, "M21a");
    assert!(a.has_port(80, Transport::Tcp) && a.has_port(443, Transport::Tcp));
    assert!(!a.encrypted_by_default);
    let b = path(&c, "M21b");
    assert!(b.has_port(135, Transport::Tcp));
    assert!(b.encrypted_by_default);
    assert_eq!(b.encryption, [EncKind::RpcPrivacy]);
}

#[test]
fn c3_supports_ntlmv2_not_ntlm() {
    let c = builtin();
    let c3 = path(&c, "C3");
    assert_eq!(c3.default_auth, [AuthKind::Forms]);
    assert!(c3.supported_auth.contains(&AuthKind::Ntlmv2));
    assert!(!c3.supported_auth.contains(&AuthKind::Ntlm));
    assert!(c3.auth_supported(&Mechanism::Ntlmv2));
    assert!(!c3.auth_supported(&Mechanism::Ntlmv1));
    assert!(
        !c3.auth_supported(&Mechanism::Ntlm),
        "version unknown is not v2"
    );
    assert!(c3.encrypted_by_default);
    assert_eq!(c3.by_default_source, ByDefaultSource::Seed);
}

#[test]
fn c10_rpc_on_dynamic_ports_only() {
    let c = builtin();
    let c10 = path(&c, "C10");
    assert!(c10.ports.iter().all(|p| p.port == Port::Dynamic));
    assert!(c
        .paths_with_variable_ports(Transport::Tcp)
        .iter()
        .any(|p| p.id == "C10"));
    assert!(!c
        .paths_for_port(135, Transport::Tcp)
        .iter()
        .any(|p| p.id == "C10"));
}

#[test]
fn u1_media_unencrypted_and_auth_by_ip() {
    let c = builtin();
    let u1 = path(&c, "U1");
    assert!(u1.media_unencrypted);
    assert!(u1.auth_by_ip);
    assert_eq!(u1.default_auth, [AuthKind::ByIp]);
    assert!(u1.connects(Role::IpGateway, Role::Um));
    let u2 = path(&c, "U2");
    assert!(u2.connects(Role::Um, Role::IpGateway), "UM also dials out");
    assert!(!u2.connects(Role::Um, Role::Um));
}

#[test]
fn negotiate_rows_try_kerberos_first() {
    let c = builtin();
    for id in ["M22", "C1", "C9", "U3"] {
        let p = path(&c, id);
        assert!(p.negotiate_kerberos_first, "{id}");
        assert!(p.auth_supported(&Mechanism::Ntlmv2), "{id}");
    }
}

#[test]
fn paths_for_port_finds_every_smtp_path() {
    let c = builtin();
    let ids: Vec<&str> = c
        .paths_for_port(25, Transport::Tcp)
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, ["T1", "T2", "T3", "T4", "T7", "T11", "U4"]);
    assert!(c.paths_for_port(25, Transport::Udp).is_empty());
    let ids: Vec<&str> = c
        .paths_for_port(587, Transport::Tcp)
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, ["T11"]);
}

#[test]
fn table_has_one_aligned_row_per_path() {
    let c = builtin();
    let table = render_table(&c);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 1 + c.paths.len() + 1, "header, rows, legend");
    assert!(lines[0].starts_with("ID "));
    let t10 = lines
        .iter()
        .find(|l| l.starts_with("T10 "))
        .copied()
        .unwrap_or("");
    assert!(
        t10.contains("hub -> dc") && t10.contains("389/tcp+udp,3268/tcp"),
        "{t10}"
    );
    assert!(t10.ends_with("yes*"), "{t10}");
    let m7 = lines
        .iter()
        .find(|l| l.starts_with("M7 "))
        .copied()
        .unwrap_or("");
    let tail: Vec<&str> = m7.split_whitespace().rev().take(2).collect();
    assert_eq!(tail, ["no", "-"], "{m7}");
    // Column alignment: the section column starts at the same place on every row.
    let col = lines[0].find("SECTION");
    for l in &lines[1..=c.paths.len()] {
        let sec = ["transport", "mailbox", "client-access", "unified-messaging"]
            .iter()
            .filter_map(|s| l.find(s))
            .min();
        assert_eq!(sec, col, "{l}");
    }
}

#[test]
fn json_keeps_field_order_and_names() {
    let c = builtin();
    let json = match render_json(&c) {
        Ok(j) => j,
        Err(e) => panic!("{e}"),
    };
    let title = json.find("\"title\"");
    let paths = json.find("\"paths\"");
    assert!(title < paths);
    let id = json.find("\"id\": \"T1\"");
    let section = json.find("\"section\": \"transport\"");
    assert!(id.is_some() && id < section);
    assert!(json.contains("\"port\": 25,"));
    assert!(json.contains("\"port\": \"dynamic\""));
    assert!(json.contains("\"by_default_source\": \"english-edition\""));
    assert!(json.contains("\"client\": [\n        \"ip_gateway\""));
    let back: serde_json::Value = match serde_json::from_str(&json) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(back["paths"].as_array().map(Vec::len), Some(53));
}

#[test]
fn minimal_catalog_loads() {
    let c = match Catalog::from_toml_str(MINIMAL, "ok.toml") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.paths.len(), 1);
    assert_eq!(c.source, "ok.toml");
}

#[test]
fn bad_toml_syntax_names_line_and_field() {
    // Line 7: the name string is never closed.
    let text = MINIMAL.replace("name = \"Hub to Hub\"", "name = \"Hub to Hub");
    let err = load_err(&text);
    assert!(matches!(err, CatalogError::Toml { .. }), "{err}");
    assert_at(&err, 7, "name");
}

#[test]
fn unknown_auth_name_names_line_and_field() {
    // Line 13: supported_auth holds a name outside the vocabulary.
    let text = MINIMAL.replace(
        "supported_auth = [\"kerberos\"]",
        "supported_auth = [\"kerberos\", \"ntlmv3\"]",
    );
    let err = load_err(&text);
    assert!(matches!(err, CatalogError::Invalid { .. }), "{err}");
    assert_at(&err, 13, "supported_auth");
    assert!(err.to_string().contains("unknown authentication `ntlmv3`"));
}

#[test]
fn duplicate_id_points_at_the_second_row() {
    let second = MINIMAL.replace("[catalog]\ntitle = \"test\"\n", "");
    let text = format!("{MINIMAL}{second}");
    // MINIMAL has 16 lines; the second row (blank, [[path]], id) puts its id on line 19.
    let err = load_err(&text);
    assert_at(&err, 19, "id");
    assert!(err
        .to_string()
        .contains("duplicate id `X1` (first used at line 5)"));
}

#[test]
fn bad_ports_name_line_and_field() {
    for bad in ["0", "65536", "-1", "\"sometimes\""] {
        let text = MINIMAL.replace("port = 25,", &format!("port = {bad},"));
        let err = load_err(&text);
        assert_at(&err, 10, "port");
    }
    // A port of the wrong type is caught by the TOML stage, still with line and field.
    let text = MINIMAL.replace("port = 25,", "port = true,");
    let err = load_err(&text);
    assert!(matches!(err, CatalogError::Toml { .. }), "{err}");
    assert_at(&err, 10, "port");
    let text = MINIMAL.replace("transport = \"tcp\"", "transport = \"sctp\"");
    assert_at(&load_err(&text), 10, "transport");
}

#[test]
fn default_auth_must_be_supported() {
    let text = MINIMAL.replace(
        "default_auth = [\"kerberos\"]",
        "default_auth = [\"kerberos\", \"basic\"]",
    );
    let err = load_err(&text);
    assert_at(&err, 12, "default_auth");
    assert!(err.to_string().contains("`basic` is not in supported_auth"));
}

#[test]
fn unknown_and_missing_keys_are_named() {
    let text = MINIMAL.replace("protocols = ", "protocol = ");
    let err = load_err(&text);
    assert_at(&err, 11, "protocol");
    let text = MINIMAL.replace("name = \"Hub to Hub\"\n", "");
    let err = load_err(&text);
    assert!(err.to_string().contains("missing field `name`"), "{err}");
    assert_eq!(
        err.location().and_then(|a| a.field.as_deref()),
        Some("name")
    );
}

#[test]
fn other_semantic_errors_name_their_field() {
    let cases: [(&str, &str, usize, &str); 8] = [
        ("name = \"Hub to Hub\"", "name = \"  \"", 7, "name"),
        ("client = [\"hub\"]", "client = []", 8, "client"),
        ("server = [\"hub\"]", "server = [\"exchange\"]", 9, "server"),
        ("section = \"transport\"", "section = \"hub\"", 6, "section"),
        (
            "protocols = [\"smtp\", \"tls\"]",
            "protocols = [\"smtp\", \"x400\"]",
            11,
            "protocols",
        ),
        (
            "encryption = [\"tls\"]",
            "encryption = []",
            15,
            "encrypted_by_default",
        ),
        (
            "encryption = [\"tls\"]",
            "encryption = [\"rot13\"]",
            14,
            "encryption",
        ),
        (
            "by_default_source = \"seed\"",
            "by_default_source = \"guess\"",
            16,
            "by_default_source",
        ),
    ];
    for (from, to, line, field) in cases {
        let err = load_err(&MINIMAL.replace(from, to));
        assert_at(&err, line, field);
    }
}

#[test]
fn contradictory_flags_are_rejected() {
    for (flag, needs) in [
        ("same_server_kerberos", None),
        ("negotiate_kerberos_first", Some("`negotiate`")),
        ("auth_by_ip", Some("`by-ip`")),
        ("media_unencrypted", Some("`rtp`")),
    ] {
        let text = format!("{MINIMAL}{flag} = true\n");
        match needs {
            None => assert!(Catalog::from_toml_str(&text, "bad.toml").is_ok(), "{flag}"),
            Some(n) => {
                let err = load_err(&text);
                assert_at(&err, 17, flag);
                assert!(err.to_string().contains(n), "{err}");
            }
        }
    }
}

#[test]
fn empty_catalog_is_an_error() {
    let err = load_err("[catalog]\ntitle = \"empty\"\n");
    assert_at(&err, 1, "path");
}

#[test]
fn error_in_the_builtin_text_reports_its_real_line() {
    let line = BUILTIN_TOML
        .lines()
        .position(|l| l == "id = \"C3\"")
        .map(|i| i + 1)
        .unwrap_or(0);
    assert!(line > 0);
    let text = BUILTIN_TOML.replacen("id = \"C3\"", "id = \"C2\"", 1);
    let err = load_err(&text);
    assert_at(&err, line, "id");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let err = match Catalog::load("/nonexistent/dpaudit-catalog.toml") {
        Ok(_) => panic!("loaded a missing file"),
        Err(e) => e,
    };
    assert!(matches!(err, CatalogError::Io { .. }));
    assert!(err
        .to_string()
        .starts_with("/nonexistent/dpaudit-catalog.toml: cannot read"));
}

#[test]
fn key_before_ignores_strings_and_takes_the_last_key() {
    let text = "a = \"x = y\", b = [1, 2";
    assert_eq!(key_before(text, text.len()), Some("b".into()));
    assert_eq!(key_before("just text", 4), None);
    assert_eq!(
        key_before("x = 1\n", 99),
        None,
        "offset past the line start of an empty line"
    );
    assert_eq!(line_of("a\nb\nc", 4), 3);
    assert_eq!(line_of("a\nb", 1000), 2);
}

#[test]
fn vocabularies_round_trip_their_names() {
    fn check<T: Vocabulary + PartialEq + fmt::Debug>(all: &[T]) {
        assert_eq!(all.len(), T::NAMES.len());
        for (v, n) in all.iter().zip(T::NAMES) {
            assert_eq!(v.as_str(), *n);
            assert_eq!(T::from_name(n), Some(*v));
        }
        assert_eq!(T::from_name("no-such-name"), None);
    }
    check(Role::ALL);
    check(Section::ALL);
    check(Transport::ALL);
    check(Protocol::ALL);
    check(AuthKind::ALL);
    check(EncKind::ALL);
    check(ByDefaultSource::ALL);
}
