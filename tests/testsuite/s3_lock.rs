//! The lock of a registry in a bucket when things go wrong (issue #21, point 7), on a real S3
//! (moto) behind a relay that injects the faults: a run that cannot renew its lock stops writing
//! before the lock can expire, one whose lock was taken over writes nothing more, and a lock's
//! expiry is judged by the store's clock (its `Last-Modified` and `Date`), not by any machine's.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hexreg::engine::{self, BuildOptions, Registry};
use hexreg::storage::object::{LOCK_NAME, ObjectOptions, ObjectStorage};
use hexreg::storage::{Condition, Storage, StorageError};

use support::faults::{Fault, Relay, Request};
use support::fixtures::{self, signer};
use support::moto::Moto;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Options reaching moto through `relay`, with a lock TTL of `ttl` seconds.
fn through(moto: &Moto, relay: &Relay, ttl: u64) -> ObjectOptions {
    let mut options = moto.options();
    for (key, value) in &mut options.settings {
        if key == "aws_endpoint" {
            *value = relay.endpoint();
        }
    }
    ObjectOptions {
        lock_ttl: Duration::from_secs(ttl),
        ..options
    }
}

/// Copies every fixture tarball into `tarballs/` of `storage`.
fn upload_fixture_tarballs(storage: &dyn Storage) {
    for name in fixtures::all_tarballs() {
        let bytes = std::fs::read(fixtures::fixtures().join("tarballs").join(&name)).unwrap();
        storage
            .write(&format!("tarballs/{name}"), &bytes, Condition::Create)
            .unwrap();
    }
}

/// A renewal of the lock: a PUT of the lock object with `If-Match`.
fn is_renewal(r: &Request) -> bool {
    r.method == "PUT" && r.target.ends_with("/.hexreg-lock") && r.header("if-match").is_some()
}

/// Builds the registry in `storage` under a lock taken now.
fn build(storage: &dyn Storage) -> Result<(), engine::Error> {
    let lock = storage.try_lock().unwrap().expect("the lock is free");
    let signer = signer();
    let mut registry = Registry::open(storage, "acme", &signer, lock);
    registry.build(&BuildOptions::default()).map(|_| ())
}

#[test]
fn a_run_that_cannot_renew_its_lock_stops_writing_before_it_can_expire() {
    let moto = Moto::start();
    moto.create_bucket("registry");
    // The status every renewal gets, when set.
    let refusal = Arc::new(Mutex::new(None::<u16>));
    // Listing the tarballs takes 6 s, longer than the lock lasts (5 s; renewed every 1.7 s):
    // the build only gets through while its renewals do.
    let relay = {
        let refusal = Arc::clone(&refusal);
        Relay::start(moto.port, move |r| match *refusal.lock().unwrap() {
            Some(status) if is_renewal(r) => Fault::Fail(status),
            _ if r.method == "GET"
                && r.target.contains("list-type=2")
                && r.target.contains("tarballs") =>
            {
                Fault::Delay(Duration::from_secs(6))
            }
            _ => Fault::Pass,
        })
    };

    // Renewals working: the slow build completes.
    let renewed =
        ObjectStorage::from_url("s3://registry/renewed", through(&moto, &relay, 5)).unwrap();
    upload_fixture_tarballs(&renewed);
    build(&renewed).expect("a build whose lock is renewed");
    assert!(
        engine::verify(&renewed, "acme", &signer().public)
            .unwrap()
            .is_sound()
    );
    assert!(!relay.seen(is_renewal).is_empty(), "the lock was renewed");

    // Every renewal refused: with 403 (credentials that expired mid-run), and with 503 (a
    // throttled or failing store, which the S3 client retries until the renewal is cut off).
    // The build stops before its first write, a second before the lock can expire, says why,
    // and leaves nothing of the registry behind.
    for (status, why) in [(403, "403"), (503, "no answer within 1000 ms")] {
        let url = format!("s3://registry/cut-off-{status}");
        let cut_off = ObjectStorage::from_url(&url, through(&moto, &relay, 5)).unwrap();
        upload_fixture_tarballs(&cut_off);
        *refusal.lock().unwrap() = Some(status);
        let e = build(&cut_off).expect_err("a build that cannot renew its lock");
        let text = e.to_string();
        assert!(
            matches!(e, engine::Error::Storage(StorageError::LockLost { .. })),
            "{text}"
        );
        assert!(
            text.contains(&format!("stopped before writing {url}/")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "this run's lock {url}/.hexreg-lock could not be renewed ("
            )),
            "{text}"
        );
        assert!(text.contains(why), "the failure is named: {text}");
        let refused = relay
            .seen(is_renewal)
            .into_iter()
            .filter(|(r, f)| {
                *f == Fault::Fail(status) && r.target.contains(&format!("cut-off-{status}"))
            })
            .count();
        assert!(refused > 0, "renewals were attempted and refused");
        let direct = moto.storage(&url);
        for path in ["names", "versions", "public_key"] {
            assert_eq!(direct.read(path).unwrap(), None, "{path} was written");
        }
        assert_eq!(direct.list("packages").unwrap(), None);

        // The lost lock is left to expire (it may be another run's by then): a run that can
        // renew takes it over once it has, and completes the registry.
        *refusal.lock().unwrap() = None;
        assert!(direct.read(LOCK_NAME).unwrap().is_some(), "left to expire");
        std::thread::sleep(Duration::from_secs(6));
        build(&cut_off).expect("the next build");
        assert!(
            engine::verify(&direct, "acme", &signer().public)
                .unwrap()
                .is_sound()
        );
    }
}

#[test]
fn a_run_whose_lock_was_taken_over_writes_and_deletes_nothing_more() {
    let moto = Moto::start();
    moto.create_bucket("locks");
    let options = ObjectOptions {
        lock_ttl: Duration::from_secs(3),
        ..moto.options()
    };
    let storage = ObjectStorage::from_url("s3://locks/acme", options).unwrap();
    let held = storage.try_lock().unwrap().expect("the lock is free");
    storage.write("first", b"1", Condition::Create).unwrap();

    // Another run takes the lock over, as one does after it expired.
    let current = storage.read(LOCK_NAME).unwrap().unwrap();
    let other = b"hexreg lock\nid: other\nhost: elsewhere\npid: 1\nacquired: 0\nttl: 600\n";
    storage
        .write(LOCK_NAME, other, Condition::Replace(current.version))
        .unwrap();
    // The next renewal (within a second) finds it replaced.
    std::thread::sleep(Duration::from_millis(2500));
    let e = storage
        .write("second", b"2", Condition::Create)
        .unwrap_err();
    assert!(matches!(e, StorageError::LockLost { .. }), "{e}");
    assert!(
        e.to_string().contains("was taken over by another run"),
        "{e}"
    );
    let e = storage.delete("first").unwrap_err();
    assert!(matches!(e, StorageError::LockLost { .. }), "{e}");
    assert_eq!(storage.read("second").unwrap(), None);
    assert!(storage.read("first").unwrap().is_some(), "not deleted");

    // Released, the guard leaves the other run's lock alone; writes without a lock go on.
    drop(held);
    assert_eq!(storage.read(LOCK_NAME).unwrap().unwrap().bytes, other);
    storage.write("second", b"2", Condition::Create).unwrap();
}

#[test]
fn a_locks_expiry_is_judged_by_the_stores_clock() {
    let moto = Moto::start();
    moto.create_bucket("locks");
    let url = "s3://locks/acme";
    let direct = moto.storage(url);

    // A live lock of a run on a machine whose clock is an hour behind: by that clock it
    // expired long ago, but the store stamped it just now and it lasts 600 s.
    let behind = format!(
        "hexreg lock\nid: behind\nhost: elsewhere\npid: 1\nacquired: {}\nexpires: {}\nttl: 600\n",
        now() - 3600,
        now() - 3000
    );
    direct
        .write(LOCK_NAME, behind.as_bytes(), Condition::Create)
        .unwrap();
    assert!(
        direct.try_lock().unwrap().is_none(),
        "live by the store's clock"
    );

    // Through a store whose clock (its Date) is an hour ahead of its Last-Modified stamps,
    // the same lock is past its expiry: the Date is what decides, not this machine's clock.
    let relay = Relay::start(moto.port, |_| Fault::ShiftDate(3600));
    let ahead = ObjectStorage::from_url(url, through(&moto, &relay, 600)).unwrap();
    let taken = ahead
        .try_lock()
        .unwrap()
        .expect("expired by the store's Date");
    let text = String::from_utf8(direct.read(LOCK_NAME).unwrap().unwrap().bytes).unwrap();
    assert!(
        text.contains(&format!("pid: {}", std::process::id())),
        "{text}"
    );
    assert!(text.contains("ttl: 600"), "{text}");
    drop(taken);
    assert_eq!(direct.read(LOCK_NAME).unwrap(), None, "released");

    // A lock of a run on a machine whose clock is an hour ahead, lasting 1 s: by that clock
    // it has an hour to go, by the store's it expires a second after it was written.
    let ahead_holder = format!(
        "hexreg lock\nid: ahead\nhost: elsewhere\npid: 1\nacquired: {}\nexpires: {}\nttl: 1\n",
        now() + 3600,
        now() + 4200
    );
    direct
        .write(LOCK_NAME, ahead_holder.as_bytes(), Condition::Create)
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    drop(
        direct
            .try_lock()
            .unwrap()
            .expect("expired by the store's clock"),
    );
}
