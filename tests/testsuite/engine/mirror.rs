//! The mirror engine in memory: an upstream registry in one [`MemoryStorage`], served by an
//! [`Upstream`] that answers ETags and 304s as a web server does, mirrored into another. A
//! failure injected at any write of a mirror run leaves a mirror clients accept (every file
//! verifies, every recorded release has its tarball), and the next run completes it exactly as
//! an uninterrupted run does.

use std::collections::BTreeMap;

use hexreg::engine::mirror::{
    FetchError, MirrorOptions, Mode, Report, Upstream, UpstreamResponse, mirror,
};
use hexreg::engine::{self, Registry, Signer};
use hexreg::format::registry::{Retirement, RetirementReason};
use hexreg::format::signing::{PrivateKey, PublicKeyFormat};
use hexreg::mirror::Only;
use hexreg::storage::Storage;

use super::memory_storage::MemoryStorage;
use super::{REPO, built, check_consistent, new_tarball};
use crate::support::fixtures::signer;

/// Serves the files of a storage, with the version token as ETag.
struct StorageUpstream<'a>(&'a MemoryStorage);

impl Upstream for StorageUpstream<'_> {
    fn get(
        &self,
        path: &str,
        etag: Option<&str>,
        _limit: u64,
    ) -> Result<UpstreamResponse, FetchError> {
        match self.0.read(path).unwrap() {
            None => Err(FetchError::Status {
                url: self.url(path),
                status: 404,
            }),
            Some(object) => {
                let tag = format!("\"{:?}\"", object.version);
                if etag == Some(tag.as_str()) {
                    Ok(UpstreamResponse::NotModified)
                } else {
                    Ok(UpstreamResponse::Body {
                        bytes: object.bytes,
                        etag: Some(tag),
                    })
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("memory://upstream/{path}")
    }
}

fn mirror_signer() -> Signer {
    let key =
        PrivateKey::from_pem(include_bytes!("../../../fixtures/other_private_key.pem")).unwrap();
    Signer::new(key, "fixtures/other_private_key.pem")
}

/// The upstream after a while: alpha 1.2.0 and delta 1.0.0 published, alpha 1.0.0 retired,
/// gamma removed.
fn upstream_later() -> MemoryStorage {
    let storage = built();
    let signer = signer();
    let lock = storage.try_lock().unwrap().unwrap();
    let mut registry = Registry::open(&storage, REPO, &signer, lock);
    registry
        .add(
            vec![new_tarball("alpha", "1.2.0"), new_tarball("delta", "1.0.0")],
            false,
        )
        .unwrap();
    let retirement = Retirement {
        reason: RetirementReason::RetiredSecurity,
        message: Some("use 1.2.0".into()),
    };
    registry.retire("alpha", "1.0.0", retirement).unwrap();
    registry.remove("gamma", None).unwrap();
    drop(registry);
    storage
}

/// Mirrors `upstream` into `dest`: full, or filtered to `beta` and signed by the mirror key.
fn run(dest: &MemoryStorage, upstream: &MemoryStorage, filtered: bool) -> Result<Report, String> {
    let upstream_signer = signer();
    let mirror_signer = mirror_signer();
    let mode = if filtered {
        Mode::Filtered {
            only: vec![Only::parse("beta").unwrap()],
            name: REPO.into(),
            signer: &mirror_signer,
        }
    } else {
        Mode::Full
    };
    let options = MirrorOptions {
        repository: REPO.into(),
        key: upstream_signer.public.clone(),
        key_pem: upstream_signer.public.to_pem(PublicKeyFormat::Spki),
        origin: "memory://upstream".into(),
        mode,
        jobs: 1,
        progress: &engine::Silent,
        // The later upstream removes `gamma`: a removal the operator accepts.
        allow_rollback: true,
    };
    let lock = dest.try_lock().unwrap().expect("the lock is free");
    mirror(dest, lock, &StorageUpstream(upstream), &options).map_err(|e| e.to_string())
}

/// A snapshot without the state file, whose tarball version tokens depend on the order of
/// writes.
fn files(storage: &MemoryStorage) -> BTreeMap<String, Vec<u8>> {
    let mut files = storage.snapshot();
    files.remove(hexreg::mirror::STATE_PATH);
    files
}

#[test]
fn a_full_mirror_in_memory_is_upstream_byte_for_byte_and_a_rerun_writes_nothing() {
    let upstream = built();
    let dest = MemoryStorage::new();
    let report = run(&dest, &upstream, false).unwrap();
    assert_eq!(report.tarballs_downloaded, 5);
    let mut expected = upstream.snapshot();
    let mut got = files(&dest);
    // The upstream's API records are its own, not part of the repository.
    expected.retain(|path, _| !path.starts_with(".hexreg-api/"));
    expected.remove("public_key");
    got.remove("public_key");
    assert_eq!(got, expected);

    dest.fail_from(None);
    let report = run(&dest, &upstream, false).unwrap();
    assert_eq!(dest.writes(), 0, "a no-op rerun wrote something");
    assert_eq!(report.resources_fetched, 0);
    assert_eq!(report.tarballs_downloaded, 0);
    assert_eq!(report.resources_not_modified, 5);
}

#[test]
fn a_filtered_mirror_in_memory_holds_the_closure() {
    let upstream = upstream_later();
    let dest = MemoryStorage::new();
    run(&dest, &upstream, true).unwrap();
    let index = check_consistent(&dest, &mirror_signer(), true);
    // beta needs alpha ~> 1.0, which is `>= 1.0.0 and < 2.0.0-0` as Elixir reads it: not
    // 2.0.0-rc.1.
    assert_eq!(
        index,
        BTreeMap::from([
            (
                "alpha".to_string(),
                vec!["1.0.0".to_string(), "1.1.0".into(), "1.2.0".into()]
            ),
            ("beta".to_string(), vec!["0.1.0".to_string()]),
        ])
    );
}

/// Mirrors the first upstream, then, with a failure injected at each write of the run that
/// follows the later upstream in turn: the mirror stays consistent, and the next run completes
/// it as an uninterrupted run does.
fn fails_safely_at_every_write(filtered: bool) {
    let (first, later) = (built(), upstream_later());
    let files_key = if filtered { mirror_signer() } else { signer() };
    let start = || {
        let dest = MemoryStorage::new();
        run(&dest, &first, filtered).unwrap();
        dest
    };
    let clean = start();
    clean.fail_from(None);
    run(&clean, &later, filtered).unwrap();
    let writes = clean.writes();
    assert!(writes > 3, "the update writes something ({writes})");
    let wanted = files(&clean);
    let wanted_index = check_consistent(&clean, &files_key, true);
    for n in 0..writes {
        let dest = start();
        dest.fail_from(Some(n));
        let e = run(&dest, &later, filtered).expect_err("the injected failure stops the run");
        assert!(e.contains("injected failure"), "write {n}: {e}");
        check_consistent(&dest, &files_key, true);
        dest.fail_from(None);
        run(&dest, &later, filtered)
            .unwrap_or_else(|e| panic!("after a failure at write {n}: {e}"));
        assert_eq!(
            check_consistent(&dest, &files_key, true),
            wanted_index,
            "write {n}"
        );
        assert_eq!(files(&dest), wanted, "after a failure at write {n}");
    }
}

#[test]
fn a_full_mirror_update_fails_safely_at_every_write() {
    fails_safely_at_every_write(false);
}

#[test]
fn a_filtered_mirror_update_fails_safely_at_every_write() {
    fails_safely_at_every_write(true);
}
