//! Report writers: one module per report, each turning results into text or JSON.

pub mod audit;
pub mod flows;
