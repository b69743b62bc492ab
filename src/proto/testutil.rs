//! Test driver: feeds a script of (direction, bytes) chunks through the [`Analyzer`] trait
//! as the engine does, whole and byte by byte, and checks both give the same posture.

use crate::model::{Direction, Posture};
use crate::proto::api::{Analyzer, Ctx, Next};

/// A context for `frame` of a connection from port 40000 to `server_port`, with the
/// default limits.
pub fn ctx(posture: &mut Posture, frame: u64, server_port: u16) -> Ctx<'_> {
    Ctx {
        limits: &crate::limits::ProtoLimits::DEFAULT,
        frame,
        ts_ns: 0,
        client_port: 40000,
        server_port,
        posture,
    }
}

/// Chunk `i` of the script is delivered by frame `i + 1`.
pub fn feed(
    make: fn() -> Box<dyn Analyzer>,
    script: &[(Direction, &[u8])],
    bytewise: bool,
) -> Posture {
    let mut a = make();
    let mut posture = Posture::default();
    let mut done = false;
    for (i, (dir, bytes)) in script.iter().enumerate() {
        let mut cx = ctx(&mut posture, i as u64 + 1, 1);
        let pieces: Vec<&[u8]> = if bytewise {
            bytes.chunks(1).collect()
        } else {
            vec![bytes]
        };
        for p in pieces {
            if !done && a.data(*dir, p, &mut cx) == Next::Done {
                done = true;
            }
        }
    }
    a.finish(&mut ctx(&mut posture, script.len() as u64 + 1, 1));
    posture
}

/// Feed whole and byte by byte; assert the postures agree; return the first.
pub fn run(make: fn() -> Box<dyn Analyzer>, script: &[(Direction, &[u8])]) -> Posture {
    let whole = feed(make, script, false);
    let bytes = feed(make, script, true);
    assert_eq!(whole.protocol, bytes.protocol, "protocol");
    assert_eq!(whole.encryption, bytes.encryption, "encryption");
    assert_eq!(
        whole.encryption_frame, bytes.encryption_frame,
        "encryption frame"
    );
    assert_eq!(whole.tls, bytes.tls, "tls");
    assert_eq!(whole.auth, bytes.auth, "auth");
    assert_eq!(whole.facts, bytes.facts, "facts");
    assert_eq!(whole.anomalies, bytes.anomalies, "anomalies");
    whole
}

/// Kinds of the anomalies recorded.
pub fn kinds(p: &Posture) -> Vec<&'static str> {
    p.anomalies.iter().map(|a| a.kind).collect()
}

/// Values of one fact key.
pub fn facts(p: &Posture, key: &str) -> Vec<String> {
    p.facts
        .get(key)
        .map(|s| s.iter().map(str::to_string).collect())
        .unwrap_or_default()
}

/// An NTLMSSP AUTHENTICATE message (MS-NLMP 2.2.1.3) for CORP\alice with a 48-byte
/// NTLMv2 response.
pub fn ntlm_authenticate() -> Vec<u8> {
    let domain: Vec<u8> = "CORP"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let user: Vec<u8> = "alice"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let lm = [0u8; 24];
    // NTLMv2 response (MS-NLMP 2.2.2.8): NTProofStr, then the client challenge blob.
    let mut nt = vec![0x11u8; 16]; // NTProofStr
    nt.extend_from_slice(&[1, 1]); // RespType, HiRespType
    nt.extend_from_slice(&[0; 6]); // Reserved1, Reserved2
    nt.extend_from_slice(&[0x22; 8]); // TimeStamp
    nt.extend_from_slice(&[0x33; 8]); // ChallengeFromClient
    nt.extend_from_slice(&[0; 4]); // Reserved3
    nt.extend_from_slice(&[0; 4]); // AvPairs: MsvAvEOL
    let base = 88u32;
    let mut m = b"NTLMSSP\0".to_vec();
    m.extend_from_slice(&3u32.to_le_bytes()); // MessageType
    let mut off = base;
    let mut fields = Vec::new();
    for f in [&lm[..], &nt[..], &domain[..], &user[..], &[][..], &[][..]] {
        let len = f.len() as u16;
        fields.push((len, off));
        off += u32::from(len);
    }
    // LmChallengeResponse, NtChallengeResponse, DomainName, UserName, Workstation, SessionKey
    for (len, off) in &fields {
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&off.to_le_bytes());
    }
    m.extend_from_slice(&0xe288_8215u32.to_le_bytes()); // NegotiateFlags
    m.resize(base as usize, 0); // Version (8) + MIC (16)
    for f in [&lm[..], &nt[..], &domain[..], &user[..]] {
        m.extend_from_slice(f);
    }
    m
}

/// A TLS 1.2 handshake as the traffic generator writes it: ClientHello, server flight,
/// client key exchange with ChangeCipherSpec and Finished, server ChangeCipherSpec and
/// Finished. The TLS analyzer records encryption at the last chunk.
pub fn tls12_handshake() -> Vec<(Direction, &'static [u8])> {
    use crate::gen::payloads::{
        tls_ccs_finished, tls_client_finish, tls_client_hello, tls_server_flight, TLS12,
    };
    let mut rng = crate::gen::Rng::new(1);
    vec![
        (
            Direction::ToServer,
            tls_client_hello(&mut rng, TLS12, Some("mail.corp.example")).leak(),
        ),
        (
            Direction::ToClient,
            tls_server_flight(&mut rng, TLS12, "mail", false).leak(),
        ),
        (
            Direction::ToServer,
            tls_client_finish(&mut rng, TLS12, None).leak(),
        ),
        (
            Direction::ToClient,
            tls_ccs_finished(&mut rng, TLS12).leak(),
        ),
    ]
}

/// `body` as one TLS 1.2 application-data record: ciphertext to every parser.
pub fn tls_app_record(body: &[u8]) -> &'static [u8] {
    crate::gen::payloads::tls_record(23, crate::gen::payloads::TLS12, body).leak()
}
