//! Protobuf messages of Hex registry v2, generated at build time from `proto/*.proto`.
//!
//! Each schema file is its own module because the files reuse message names.

#![allow(clippy::all, missing_docs)]

/// `signed.proto`: the envelope of every registry resource.
pub mod signed {
    include!(concat!(env!("OUT_DIR"), "/signed/signed.rs"));
}
/// `names.proto`: the `/names` resource.
pub mod names {
    include!(concat!(env!("OUT_DIR"), "/names/names.rs"));
}
/// `versions.proto`: the `/versions` resource.
pub mod versions {
    include!(concat!(env!("OUT_DIR"), "/versions/versions.rs"));
}
/// `package.proto`: the `/packages/NAME` resource.
pub mod package {
    include!(concat!(env!("OUT_DIR"), "/package/package.rs"));
}
/// `policy.proto`: the `/policies/NAME` resource.
pub mod policy {
    include!(concat!(env!("OUT_DIR"), "/policy/policy.rs"));
}
