//! Every Hex file format and rule, free of I/O.
//!
//! What belongs here: parsing, validating and writing what a Hex repository holds (tarballs,
//! `metadata.config`, the signed protobuf resources, `public_key`), and the rules clients
//! apply to it (version order, requirements, package names, where each file lives). What must
//! not: files, sockets, clocks or threads; every function here is a function of its input, so
//! the engine, the server and the fuzzers share it.
//!
//! - [`tarball`]: package tarballs, read and validated as hex_core does, and written;
//! - [`metadata`]: the `metadata.config` Erlang-term file inside a tarball;
//! - [`version`]: SemVer parsing and Elixir's version order;
//! - [`requirement`]: version requirements in Elixir's syntax (`~> 1.2`);
//! - [`package_name`]: package names and tarball file names;
//! - [`registry`]: the registry model and its signed, gzipped protobuf resources;
//! - [`release_info`]: what the Hex API tells of each release beyond the registry files;
//! - [`advisory`]: security advisories of a package (Hex 2.5's `mix hex.audit`);
//! - [`policy`]: dependency policies, `policies/NAME` (Hex 2.5's `HEX_POLICY`);
//! - [`resource_path`]: where each file of a registry lives;
//! - [`signing`]: RSA keys, PKCS#1 v1.5 / SHA-512 signatures, the `public_key` file;
//! - [`docs`]: documentation tarballs, their limits and checks;
//! - [`encoding`]: hexadecimal and URL percent-encoding;
//! - [`time`]: calendar dates of Unix seconds, UTC;
//! - [`proto`]: the protobuf messages generated from `proto/*.proto`.

pub mod advisory;
pub mod docs;
pub mod encoding;
pub mod metadata;
pub mod package_name;
pub mod policy;
pub mod proto;
pub mod registry;
pub mod release_info;
pub mod requirement;
pub mod resource_path;
pub mod signing;
pub mod tarball;
pub mod time;
pub mod version;
