//! hexreg: builds, checks and serves signed Hex package registries.
//!
//! The library holds the formats, free of file-system and process concerns:
//! - [`tarball`]: package tarballs, read and validated as hex_core does, and written;
//! - [`metadata`]: the `metadata.config` Erlang-term file inside a tarball;
//! - [`version`]: SemVer parsing and Elixir's version order;
//! - [`registry`]: the registry model and its signed, gzipped protobuf resources;
//! - [`signing`]: RSA keys, PKCS#1 v1.5 / SHA-512 signatures, the `public_key` file;
//! - [`proto`]: the protobuf messages generated from `proto/*.proto`.

pub mod metadata;
pub mod proto;
pub mod registry;
pub mod signing;
pub mod tarball;
pub mod version;
