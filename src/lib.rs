//! hexreg: builds, checks, mirrors and serves signed Hex package registries.
//!
//! The library is layered, from the bottom up; a module uses only those below it, but for the
//! mirror's runs ([`engine::mirror`], and [`engine::lock_mirror`] which reads the pins of
//! [`mirror::lock`]), which share the upstream interface with [`mirror::upstream`]:
//!
//! - [`format`](mod@format): every Hex file format and rule, free of I/O: package tarballs
//!   and their `metadata.config`, versions and requirements, package names, the signed
//!   registry resources, advisories, policies, signing keys, docs tarballs, encodings.
//! - [`storage`]: what a registry needs of where it is kept, a local directory
//!   ([`storage::local::LocalDir`]) or an S3-compatible bucket
//!   ([`storage::object::ObjectStorage`]).
//! - [`engine`]: build, add, remove, retire, unretire, advisories, policies, docs, verify and
//!   mirror, over a storage, for every front end; [`engine::Reader`] to read without the lock.
//! - [`mirror`]: which releases a filtered mirror keeps and the state it keeps between runs
//!   (free of I/O), and [`mirror::upstream`], an upstream repository over HTTP(S).
//! - [`keys`]: API keys and the keys file that holds their hashes.
//! - [`api`]: the Hex HTTP API, free of I/O: routes, request and response bodies in the Erlang
//!   term format and JSON, and ([`api::answer`]) which status and body each outcome gets.
//! - [`web`]: the HTML pages of `hexreg serve` as functions of their data, and reading the
//!   files inside a tarball.
//! - [`server`]: `hexreg serve` as a library: a [`server::Config`] in, a bound
//!   [`server::Server`] out (files, auth, the Hex API, pages, the caching proxy
//!   [`server::proxy`]).
//!
//! The `hexreg` binary on top holds the command line: arguments, output, progress bars and
//! exit codes.

#![deny(missing_docs)]

pub mod api;
pub mod engine;
pub mod format;
pub mod keys;
pub mod mirror;
pub mod server;
pub mod storage;
pub mod web;
