//! Protocol analyzers: one module per protocol, each with a cheap probe and a streaming
//! parser behind the [`api::Analyzer`] trait, writing into the flow's posture.

pub mod api;
pub mod auth;
pub mod cluster;
pub mod dcerpc;
pub mod dns;
pub mod http;
pub mod imap;
pub mod kerberos;
pub mod ldap;
pub mod pop3;
pub mod sip;
pub mod smb;
pub mod smtp;
pub mod text;
pub mod tls;
pub mod uuids;

#[cfg(test)]
pub mod testutil;

/// Every TCP and UDP analyzer the engine can choose from, in probe order.
/// TLS comes first: its probe is certain only on a hello record, which no other protocol
/// starts with.
pub const REGISTRY: &[api::Registration] = &[
    tls::REGISTRATION,
    smtp::REGISTRATION,
    pop3::REGISTRATION,
    imap::REGISTRATION,
    http::REGISTRATION,
    dcerpc::REGISTRATION,
    smb::REGISTRATION,
    ldap::REGISTRATION,
    ldap::REGISTRATION_UDP,
    kerberos::REGISTRATION_TCP,
    kerberos::REGISTRATION_UDP,
    dns::REGISTRATION,
    dns::REGISTRATION_UDP,
    sip::REGISTRATION,
    sip::REGISTRATION_UDP,
    cluster::REGISTRATION,
];
