//! hexreg's integration tests: one test binary (`cargo test --release`, or
//! `cargo test --release --test testsuite MODULE::`), which links the library and its
//! dependencies once and runs the `hexreg` binary (`CARGO_BIN_EXE_hexreg`) as users do.
//!
//! - [`support`]: what every module shares: the tarball builder, fixtures, running the
//!   binary, checking a registry, `hexreg serve` and a raw HTTP client, a static server, moto;
//! - [`build_reference`]: `hexreg build` replays the reference scenarios of
//!   `mix hex.registry build` byte for byte;
//! - [`bad_tarballs`]: every kind of malformed tarball is named, explained, and changes
//!   nothing;
//! - [`cache`]: a corrupt, stale or outdated cache never changes what a build writes;
//! - [`crash_safety`]: builds killed at any moment, concurrent builds, the lock, file modes;
//! - [`manage`]: keygen, add, remove, retire, unretire and verify;
//! - [`supply_chain`]: release dates, security advisories and signed policies (Hex 2.5);
//! - [`engine`]: the engine on an in-memory storage, with a failure injected at every write,
//!   for builds, changes and mirror updates;
//! - [`object_storage`]: a registry in an S3 bucket (a local `moto_server`);
//! - [`s3_lock`]: the bucket's lock when renewals fail, when it is taken over, and judged by
//!   the store's clock (moto behind a relay that injects the faults);
//! - [`serve`]: `hexreg serve` as a file server: headers, caching, traversal, auth, signals;
//! - [`service`]: `hexreg serve` as a service: health, readiness, metrics (promtool), clean
//!   shutdown during a publish, `HEXREG_...` variables, JSON access log, remembered choices;
//! - [`ship`]: the static binary and the container image run in a chroot, the systemd unit
//!   and compose file of docs/;
//! - [`keys`]: `hexreg key add|list|revoke`;
//! - [`api`]: the Hex HTTP API of `hexreg serve`, with a raw client and with rebar3's hex_core;
//! - [`api_read`]: the API's reads as hex.pm's (metadata, dates, search), OAuth tokens;
//! - [`pages`]: the web pages of `hexreg serve`, over HTTP and in headless Chromium;
//! - [`mirror`]: `hexreg mirror` from an upstream `hexreg serve`, full and filtered;
//! - [`request_cost`]: what one request costs the server (peak memory for a docs bomb, bytes
//!   read for the pages of 5,000 packages), measured on its process and bounded;
//! - [`proxy`]: `hexreg serve --upstream`, the caching proxy, with rebar3 and moto;
//! - [`rebar3_client`]: rebar3 resolves, downloads and compiles from registries hexreg
//!   writes and serves;
//! - [`fuzz_regressions`]: every crash the fuzzers found, replayed through their harness.
//!
//! The rebar3 tests skip with a notice on stderr when rebar3 is missing, the browser test when
//! Chromium is (outside CI: with `CI=true` it fails); `moto_server` must be installed.

mod support;

mod api;
mod api_read;
mod bad_tarballs;
mod build_reference;
mod cache;
mod crash_safety;
mod engine;
mod fuzz_regressions;
mod keys;
mod manage;
mod mirror;
mod object_storage;
mod pages;
mod proxy;
mod rebar3_client;
mod request_cost;
mod s3_lock;
mod serve;
mod service;
mod ship;
mod supply_chain;
