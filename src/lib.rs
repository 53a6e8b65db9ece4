//! hexreg: builds, checks and serves signed Hex package registries.
//!
//! The formats, free of I/O:
//! - [`tarball`]: package tarballs, read and validated as hex_core does, and written;
//! - [`metadata`]: the `metadata.config` Erlang-term file inside a tarball;
//! - [`version`]: SemVer parsing and Elixir's version order;
//! - [`requirement`]: version requirements in Elixir's syntax (`~> 1.2`);
//! - [`package_name`]: package names and tarball file names;
//! - [`registry`]: the registry model and its signed, gzipped protobuf resources;
//! - [`advisory`]: security advisories of a package (Hex 2.5's `mix hex.audit`);
//! - [`policy`]: dependency policies, `policies/NAME` (Hex 2.5's `HEX_POLICY`);
//! - [`resource_path`]: where each file of a registry lives;
//! - [`signing`]: RSA keys, PKCS#1 v1.5 / SHA-512 signatures, the `public_key` file;
//! - [`proto`]: the protobuf messages generated from `proto/*.proto`;
//! - [`etf`]: the Erlang term format of the Hex HTTP API's `application/vnd.hex+erlang` bodies.
//!
//! The engine, over storage:
//! - [`storage`]: the operations a registry needs of where it is kept,
//!   [`storage::local::LocalDir`], a local directory, and [`storage::object::ObjectStorage`], an
//!   S3-compatible bucket;
//! - [`engine`]: build, add, remove, retire, unretire, advisories, policies, verify and
//!   mirror, for every front end.
//!
//! Mirroring another repository: [`mirror`] (which releases a filtered mirror keeps, the state
//! kept between runs, free of I/O), [`requirement`] (version requirements),
//! [`upstream::HttpUpstream`] (an upstream repository over HTTP) and [`engine::mirror`].
//!
//! The Hex HTTP API, free of I/O: [`api`] (routes, request and response bodies); the HTML
//! pages of `hexreg serve`: [`web`].
//!
//! Access:
//! - [`api_keys`]: API keys for the Hex HTTP API, their keys file (hashes only, mode 0600) and
//!   [`api_keys::KeyStore`], which a server shares between tasks and which reloads the file
//!   when it changes.

pub mod advisory;
pub mod api;
pub mod api_keys;
pub mod engine;
pub mod etf;
pub mod metadata;
pub mod mirror;
pub mod package_name;
pub mod policy;
pub mod proto;
pub mod registry;
pub mod requirement;
pub mod resource_path;
pub mod signing;
pub mod storage;
pub mod tarball;
pub mod upstream;
pub mod version;
pub mod web;
