//! `dpaudit flows` end to end: the real binary on the shipped fixture and on captures the
//! generator writes, in every output format, with any thread count.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURE: &str = "fixtures/exchange-scenarios.pcapng";

fn dpaudit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dpaudit"))
        .args(args)
        .output()
        .expect("run dpaudit")
}

fn json_of(args: &[&str]) -> Value {
    let out = dpaudit(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("dpaudit-flows-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn flows(doc: &Value) -> &Vec<Value> {
    doc["flows"].as_array().expect("flows array")
}

/// The flow of scenario `i` (client 10.2.0.(i+1)) towards `server_port`.
fn scenario_flow(doc: &Value, i: usize, server_port: u16) -> &Value {
    let client = format!("10.2.0.{}:", i + 1);
    let port = format!(":{server_port}");
    flows(doc)
        .iter()
        .find(|f| {
            f["client"].as_str().unwrap_or("").starts_with(&client)
                && f["server"].as_str().unwrap_or("").ends_with(&port)
        })
        .unwrap_or_else(|| panic!("no flow from {client} to port {server_port}"))
}

fn scenario_index(name: &str) -> usize {
    let out = dpaudit(&["gen", "--list"]);
    assert!(out.status.success(), "--list needs no --output");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .position(|l| l == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

#[test]
fn stream_indices_are_dense_and_ordered_by_first_frame() {
    let doc = json_of(&["flows", "--format", "json", FIXTURE]);
    assert_eq!(doc["schema"], "dpaudit.flows/1");
    assert_eq!(doc["files"][0]["frames"], 818);
    for t in ["tcp", "udp"] {
        let mut seen: Vec<(u64, u64)> = flows(&doc)
            .iter()
            .filter(|f| f["transport"] == t)
            .map(|f| {
                let s = f["stream"].as_u64().expect("stream index");
                assert_eq!(f["filter"], format!("{t}.stream eq {s}"));
                (s, f["first_frame"].as_u64().unwrap())
            })
            .collect();
        assert!(!seen.is_empty(), "{t}");
        seen.sort();
        let streams: Vec<u64> = seen.iter().map(|x| x.0).collect();
        let want: Vec<u64> = (0..streams.len() as u64).collect();
        assert_eq!(streams, want, "{t} streams are dense");
        assert!(
            seen.windows(2).all(|w| w[0].1 < w[1].1),
            "{t} streams numbered in first-frame order"
        );
    }
    // every frame of the fixture is IP traffic that belongs to a flow
    let in_flows: u64 = flows(&doc)
        .iter()
        .map(|f| f["frames"].as_u64().unwrap())
        .sum();
    assert_eq!(in_flows, 818);
}

#[test]
fn scenarios_get_their_protocol_and_encryption() {
    let doc = json_of(&["flows", "--format", "json", FIXTURE]);
    let cases: &[(&str, u16, &str, &str)] = &[
        ("smtp-client-starttls", 587, "smtp", "tls"),
        ("smtp-starttls-refused", 25, "smtp", "none"),
        ("https-owa", 443, "tls", "tls"),
        ("imap-login-clear", 143, "imap", "none"),
        ("pop3-stls", 110, "pop3", "tls"),
        ("ldap-starttls", 389, "ldap", "tls"),
        ("http-ews-basic-clear", 80, "http", "none"),
    ];
    for (name, port, proto, enc) in cases {
        let f = scenario_flow(&doc, scenario_index(name), *port);
        assert_eq!(f["protocol"], *proto, "{name}: {f}");
        assert_eq!(f["encryption"], *enc, "{name}: {f}");
        assert_eq!(f["client_from"], "syn", "{name}");
        assert_eq!(f["detected_by"], "handshake", "{name}");
    }
    // EdgeSync over LDAPS: hub to edge on 50636, TLS recognised by its handshake
    let edgesync = flows(&doc)
        .iter()
        .find(|f| f["server"].as_str().unwrap().ends_with(":50636"))
        .expect("an EdgeSync flow");
    assert_eq!(edgesync["protocol"], "tls");
    assert_eq!(edgesync["encryption"], "tls");
    let tls = &scenario_flow(&doc, scenario_index("https-owa"), 443)["tls"];
    assert_eq!(tls["started_by"], "implicit");
    assert!(tls["server_hello_frame"].as_u64().is_some(), "{tls}");
    let starttls = &scenario_flow(&doc, scenario_index("smtp-client-starttls"), 587)["tls"];
    assert_eq!(starttls["started_by"], "starttls", "{starttls}");
}

#[test]
fn cleartext_logins_are_found_and_redacted() {
    let doc = json_of(&["flows", "--format", "json", FIXTURE]);
    let f = scenario_flow(&doc, scenario_index("imap-login-clear"), 143);
    let a = &f["auth"][0];
    assert_eq!(a["cleartext"], true, "{f}");
    assert_eq!(a["user"], "jdoe");
    assert_eq!(a["secret"], "S***");
    let shown = json_of(&["flows", "--format", "json", "--show-secrets", FIXTURE]);
    let f = scenario_flow(&shown, scenario_index("imap-login-clear"), 143);
    assert_eq!(f["auth"][0]["secret"], "Summer2026!");
}

#[test]
fn ipsec_and_ipv6_and_vlan_flows() {
    let doc = json_of(&["flows", "--format", "json", FIXTURE]);
    let esp = flows(&doc)
        .iter()
        .find(|f| f["transport"] == "esp")
        .expect("an ESP flow");
    assert_eq!(esp["encryption"], "ipsec");
    assert!(esp["stream"].is_null());
    assert!(esp["filter"]
        .as_str()
        .unwrap()
        .starts_with("esp && ip.addr == "));
    let v6 = flows(&doc)
        .iter()
        .find(|f| f["client"].as_str().unwrap().starts_with('['))
        .expect("an IPv6 flow");
    assert!(v6["server"].as_str().unwrap().ends_with("]:443"), "{v6}");
    assert_eq!(v6["encryption"], "tls");
    let vlan = scenario_flow(&doc, scenario_index("vlan-smtp"), 587);
    assert_eq!(vlan["protocol"], "smtp");
}

fn generated(name: &str, bytes: u64) -> PathBuf {
    let path = tmp(name);
    let cfg = dpaudit::gen::Config {
        seed: 7,
        target_bytes: bytes,
        format: dpaudit::gen::Format::Pcap,
        mix: dpaudit::gen::Mix::Full,
        concurrency: 500,
        vlan_percent: 10,
        ipv6_percent: 10,
    };
    let mut f = std::fs::File::create(&path).unwrap();
    dpaudit::gen::generate(&cfg, &mut f).unwrap();
    path
}

#[test]
fn thread_count_never_changes_a_byte() {
    let big = generated("mix.pcap", 3 << 20);
    for file in [Path::new(FIXTURE), big.as_path()] {
        let f = file.to_str().unwrap();
        let one = dpaudit(&["flows", "--format", "json", "-j", "1", f]);
        assert!(one.status.success());
        for j in ["2", "3", "5"] {
            let many = dpaudit(&["flows", "--format", "json", "-j", j, f]);
            assert!(many.status.success());
            assert!(one.stdout == many.stdout, "{f}: -j1 and -j{j} differ");
        }
    }
    // several files at once: same as each alone, in the order given
    let both = json_of(&[
        "flows",
        "--format",
        "json",
        "-j",
        "2",
        FIXTURE,
        big.to_str().unwrap(),
    ]);
    let alone = json_of(&["flows", "--format", "json", FIXTURE]);
    assert_eq!(both["files"][0]["frames"], alone["files"][0]["frames"]);
    let n = flows(&alone).len();
    assert_eq!(&flows(&both)[..n], &flows(&alone)[..]);
}

#[test]
fn jsonl_table_and_stdin_agree() {
    let doc = json_of(&["flows", "--format", "json", FIXTURE]);
    let out = dpaudit(&["flows", "--format", "jsonl", FIXTURE]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(&lines, flows(&doc));

    let data = std::fs::read(FIXTURE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dpaudit"))
        .args(["flows", "--format", "jsonl", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&data).unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    let piped_lines = String::from_utf8_lossy(&piped.stdout).lines().count();
    assert_eq!(piped_lines, lines.len());

    let table = dpaudit(&["flows", FIXTURE]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("STREAM"), "{text}");
    assert!(
        text.contains(&format!("{} flows, 818 frames", lines.len())),
        "{text}"
    );
}

#[test]
fn damaged_tail_warns_and_keeps_what_came_before() {
    let data = std::fs::read(FIXTURE).unwrap();
    let cut = tmp("cut.pcapng");
    std::fs::write(&cut, &data[..data.len() * 2 / 3]).unwrap();
    let out = dpaudit(&["flows", "--format", "json", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning") && err.contains("offset"), "{err}");
    assert!(err.contains("cut.pcapng"), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let frames = doc["files"][0]["frames"].as_u64().unwrap();
    assert!(frames > 100 && frames < 818, "{frames}");
    assert!(!flows(&doc).is_empty());
    assert!(doc["files"][0]["error"]
        .as_str()
        .unwrap()
        .contains("offset"));
}

#[test]
fn unreadable_inputs_exit_2_naming_the_file() {
    let empty = tmp("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let huge = tmp("huge-caplen.pcap");
    // pcap header (LE, usec, snaplen 65535, Ethernet) then a record claiming 4 GiB
    let mut h = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    h.extend_from_slice(&[0xff, 0xff, 0, 0, 1, 0, 0, 0]);
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    std::fs::write(&huge, &h).unwrap();
    let junk = tmp("junk.pcap");
    std::fs::write(&junk, b"GET / HTTP/1.1\r\nHost: not-a-capture\r\n\r\n").unwrap();
    let short = tmp("short-header.pcap");
    std::fs::write(&short, [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0]).unwrap();
    for p in [&empty, &huge, &junk, &short] {
        let out = dpaudit(&["flows", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", p.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&*p.display().to_string()), "{err}");
    }
    let missing = dpaudit(&["flows", "/nonexistent/x.pcap"]);
    assert_eq!(missing.status.code(), Some(2));
    let bad_arg = dpaudit(&["flows", "--format", "xml", FIXTURE]);
    assert_eq!(bad_arg.status.code(), Some(2));
}

/// One row per generated scenario with a client workstation: what `flows` must report.
/// (scenario, server port, protocol, encryption, auth mechanism or "-", cleartext secret)
const POSTURES: &[(&str, u16, &str, &str, &str, bool)] = &[
    (
        "smtp-client-auth-login-clear",
        587,
        "smtp",
        "none",
        "login",
        true,
    ),
    ("smtp-client-starttls", 587, "smtp", "tls", "-", false),
    ("smtp-starttls-refused", 25, "smtp", "none", "-", false),
    ("https-owa", 443, "tls", "tls", "-", false),
    ("https-owa-tls10", 443, "tls", "tls", "-", false),
    ("http-owa-forms-clear", 80, "http", "none", "forms", true),
    ("http-ews-basic-clear", 80, "http", "none", "basic", true),
    (
        "http-activesync-basic-clear",
        80,
        "http",
        "none",
        "basic",
        true,
    ),
    (
        "http-autodiscover-ntlmv2",
        80,
        "http",
        "none",
        "ntlmv2",
        false,
    ),
    ("http-owa-ntlmv1", 80, "http", "none", "ntlmv1", false),
    (
        "http-ews-negotiate-kerberos",
        80,
        "http",
        "none",
        "kerberos",
        false,
    ),
    ("http-oab", 80, "http", "none", "ntlmv2", false),
    ("http-webdav", 80, "http", "none", "basic", true),
    ("imap-login-clear", 143, "imap", "none", "user-pass", true),
    ("imap-starttls", 143, "imap", "tls", "-", false),
    (
        "pop3-user-pass-clear",
        110,
        "pop3",
        "none",
        "user-pass",
        true,
    ),
    ("pop3-stls", 110, "pop3", "tls", "-", false),
];

#[test]
fn exchange_scenarios_report_their_posture() {
    let doc = json_of(&["flows", "--format", "json", FIXTURE]);
    for (name, port, proto, enc, mech, clear) in POSTURES {
        let f = scenario_flow(&doc, scenario_index(name), *port);
        assert_eq!(f["protocol"], *proto, "{name}: {f}");
        assert_eq!(f["encryption"], *enc, "{name}: {f}");
        let auth = f["auth"].as_array().unwrap();
        if *mech == "-" {
            assert!(auth.is_empty(), "{name}: no authentication visible: {f}");
        } else {
            let a = auth
                .iter()
                .find(|a| a["mechanism"] == *mech)
                .unwrap_or_else(|| panic!("{name}: no {mech} in {auth:?}"));
            assert_eq!(a["cleartext"], *clear, "{name}: {a}");
            assert!(a["frame"].as_u64().unwrap() >= f["first_frame"].as_u64().unwrap());
            if *clear {
                // redacted unless --show-secrets
                assert!(
                    a["secret"].as_str().unwrap().ends_with("***"),
                    "{name}: {a}"
                );
            }
        }
    }
    // TLS versions: the downgrade scenario negotiates TLS 1.0
    let old = scenario_flow(&doc, scenario_index("https-owa-tls10"), 443);
    assert_eq!(old["tls"]["version"], "0x0301");
    assert_eq!(old["tls"]["version_name"], "TLS 1.0");
    // STARTTLS refused is visible as a fact
    let refused = scenario_flow(&doc, scenario_index("smtp-starttls-refused"), 25);
    assert!(
        refused["facts"]["smtp.starttls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().starts_with("refused")),
        "{refused}"
    );
    // server to server: X-ANONYMOUSTLS, X-EXPS NTLM, mutual TLS with a client certificate
    let hub = |port: u16, nth: usize| {
        flows(&doc)
            .iter()
            .filter(|f| {
                f["client"].as_str().unwrap().starts_with("10.1.0.10:")
                    && f["server"].as_str().unwrap().ends_with(&format!(":{port}"))
            })
            .nth(nth)
            .cloned()
            .expect("hub flow")
    };
    let mut hub_smtp: Vec<Value> = (0..2).map(|i| hub(25, i)).collect();
    hub_smtp.sort_by_key(|f| f["first_frame"].as_u64());
    assert_eq!(hub_smtp[0]["tls"]["started_by"], "x-anonymoustls");
    assert_eq!(hub_smtp[1]["auth"][0]["mechanism"], "ntlmv2");
    assert_eq!(hub_smtp[1]["auth"][0]["context"], "SMTP X-EXPS");
    let edge = flows(&doc)
        .iter()
        .find(|f| f["client"].as_str().unwrap().starts_with("192.0.2.25:"))
        .expect("edge to hub SMTP");
    assert_eq!(edge["tls"]["client_cert"], true, "{edge}");
    assert_eq!(edge["tls"]["cert_requested"], true);
}

/// Find the flow between two endpoints given as `addr:` prefix and `:port` suffix.
fn between<'a>(doc: &'a Value, client: &str, server_suffix: &str) -> &'a Value {
    flows(doc)
        .iter()
        .find(|f| {
            f["client"].as_str().unwrap().starts_with(client)
                && f["server"].as_str().unwrap().ends_with(server_suffix)
        })
        .unwrap_or_else(|| panic!("no flow {client}* -> *{server_suffix}"))
}

fn has(f: &Value, key: &str, value: &str) -> bool {
    f["facts"][key]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == value))
}

#[test]
fn rpc_smb_ldap_sip_and_cluster_paths_report_their_posture() {
    let doc = json_of(&["flows", "--format", "json", FIXTURE]);
    // MAPI: endpoint mapper lookup on 135, then the bind on the dynamic port it named
    let epm = between(&doc, "10.2.0.22:", ":135");
    assert!(has(
        epm,
        "epm.map",
        "a4f1db00-ca47-1067-b31f-00dd010662da@10.1.0.30:59532"
    ));
    let private = between(&doc, "10.2.0.22:", ":59532");
    assert_eq!(private["encryption"], "rpc-privacy");
    assert!(has(private, "dcerpc.interface", "emsmdb"));
    assert!(has(private, "dcerpc.auth-level", "privacy"));
    let connect = between(&doc, "10.2.0.23:", ":59532");
    assert_eq!(
        connect["encryption"], "none",
        "connect level is not RPC encryption"
    );
    assert!(has(connect, "dcerpc.auth-level", "connect"));
    let drs = between(&doc, "10.1.0.10:", "10.1.0.5:49158");
    assert!(has(drs, "dcerpc.interface", "drsuapi"));
    assert_eq!(drs["auth"][0]["mechanism"], "kerberos");
    assert_eq!(drs["encryption"], "rpc-privacy");
    // SMB: NTLM and Kerberos session setup, remote registry pipe, SMB 3 encryption
    let ntlm = between(&doc, "10.2.0.25:", ":445");
    assert_eq!(ntlm["auth"][0]["mechanism"], "ntlmv2");
    assert!(has(ntlm, "smb.share", "IPC$") && has(ntlm, "smb.pipe", "winreg"));
    assert!(
        has(ntlm, "dcerpc.interface", "winreg"),
        "RPC inside the named pipe"
    );
    let krb = between(&doc, "10.2.0.26:", ":445");
    assert_eq!(krb["auth"][0]["mechanism"], "kerberos");
    let smb3 = between(&doc, "10.2.0.27:", ":445");
    assert_eq!(smb3["encryption"], "smb3");
    assert!(has(smb3, "smb.version", "3"));
    // LDAP: EdgeSync simple bind in clear, SASL sealing to the DC, StartTLS
    let simple = between(&doc, "10.1.0.10:", ":50389");
    assert_eq!(simple["auth"][0]["mechanism"], "simple");
    assert_eq!(simple["auth"][0]["cleartext"], true);
    let sealed = between(&doc, "10.1.0.10:", "10.1.0.5:389");
    assert_eq!(sealed["encryption"], "sasl-seal");
    assert_eq!(sealed["auth"][0]["mechanism"], "kerberos");
    let starttls = between(&doc, "10.2.0.31:", ":389");
    assert_eq!(starttls["encryption"], "tls");
    assert_eq!(starttls["tls"]["started_by"], "ldap-starttls");
    let cldap = flows(&doc)
        .iter()
        .find(|f| f["transport"] == "udp" && f["server"].as_str().unwrap().ends_with(":389"))
        .expect("CLDAP");
    assert_eq!(cldap["protocol"], "ldap");
    // Kerberos on 88 over UDP and TCP
    for t in ["udp", "tcp"] {
        let k = flows(&doc)
            .iter()
            .find(|f| f["transport"] == t && f["server"].as_str().unwrap().ends_with(":88"))
            .expect("Kerberos");
        assert_eq!(k["protocol"], "kerberos", "{t}");
    }
    // SIP in clear from the IP gateway, SIP over TLS, cluster heartbeats
    let sip = between(&doc, "10.9.0.2:", ":5060");
    assert_eq!(sip["protocol"], "sip");
    assert!(has(sip, "sip.method", "INVITE"));
    let sips = between(&doc, "10.9.0.2:", ":5061");
    assert_eq!(sips["encryption"], "tls");
    let cluster = between(&doc, "10.1.0.30:3343", ":3343");
    assert_eq!(cluster["protocol"], "cluster");
}
