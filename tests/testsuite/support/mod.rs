//! What the modules of the test suite share (`use crate::support;`).
//!
//! - [`package`]: [`package::Package`], the one builder of package tarballs, valid or broken;
//! - [`fixtures`]: the bundled keys and genuine tarballs, temporary registry directories;
//! - [`run`]: running the hexreg binary (`build`, `ok`, `fails`, ...);
//! - [`files`]: what a directory holds, to compare before and after a run;
//! - [`registry_check`]: whether a registry directory is whole, signed and consistent;
//! - [`bytes`]: gzip, gunzip, deterministic random bytes;
//! - [`hexreg_serve`]: `hexreg serve` as a child process, and a raw HTTP/1.1 client;
//! - [`json`]: a strict JSON reader into `hexreg::api::etf::Term`, to check API bodies;
//! - [`static_server`]: a tiny static file server, to serve a registry to a real client;
//! - [`moto`]: a local S3 (`moto_server`) for registries in a bucket;
//! - [`faults`]: a relay in front of moto that fails, holds back or re-dates chosen requests;
//! - [`rebar3`]: rebar3 found on PATH or the test skipped, run in a sandbox.

pub mod bytes;
pub mod faults;
pub mod files;
pub mod fixtures;
pub mod hexreg_serve;
pub mod json;
pub mod moto;
pub mod package;
pub mod rebar3;
pub mod registry_check;
pub mod run;
pub mod static_server;
