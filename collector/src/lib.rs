//! nodeproof-collector: receives signed reports from enrolled nodes, verifies them, keeps
//! them as evidence and answers fleet questions.
//!
//! `store` is the storage trait and its backends; `accept` is the pure decision whether a
//! verified statement extends its node's chain; `server` is the HTTP edge; the binary only
//! wires them.
#![forbid(unsafe_code)]

pub mod accept;
pub mod audit;
pub mod digest;
pub mod evidence;
pub mod server;
pub mod store;
pub mod text;
