//! dpaudit: audit packet captures against the Exchange Server 2007 data-path security
//! reference.
//!
//! ```text
//! capture (pcap/pcapng/gzip/zstd) -> decode -> flow -> proto analyzers -> posture
//!                                                 catalog + roles -> classify -> findings -> report
//! ```
//! Stages hand plain data types to the next: [`capture::Frame`], [`model::Posture`],
//! [`catalog::Catalog`]. [`gen`] writes synthetic Exchange traffic for tests and benches.
#![forbid(unsafe_code)]

pub mod capture;
pub mod cat;
pub mod catalog;
pub mod classify;
pub mod decode;
pub mod error;
pub mod findings;
pub mod flow;
#[doc(hidden)]
pub mod fuzz_api;
pub mod gen;
pub mod limits;
pub mod model;
pub mod proto;
pub mod report;
