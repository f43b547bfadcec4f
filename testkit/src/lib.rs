//! What the tests of the workspace's crates share, as a crate of its own rather than
//! files included by path: the property-test strategies and checks of the servers'
//! request paths ([`chain_props`]) and configuration loaders ([`config_props`]), byte
//! comparisons that name the first difference ([`bytes`]), TLS credentials for NBD tests
//! ([`tls_certs`]), and the check of the tools' journal-style error lines
//! ([`journal_stream`]). A dev-dependency only: not published, and never in a binary.

pub mod bytes;
pub mod chain_props;
pub mod config_props;
pub mod journal_stream;
pub mod tls_certs;
