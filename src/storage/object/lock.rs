//! The registry's lock in a bucket: the object `PREFIX/.hexreg-lock`.
//!
//! **Taking it.** The lock is created with `If-None-Match: *`. It names its owner (host,
//! process id, a random id) and how long it lasts without renewal (`ttl`: seconds,
//! [`ObjectOptions::lock_ttl`](super::ObjectOptions::lock_ttl), 10 minutes by default).
//!
//! **Expiry is judged by the store's clock.** A lock expires `ttl` after its `Last-Modified`,
//! a time the store stamped, compared with the store's own `Date` ([`super::clock`]): the
//! clocks of the machines running hexreg do not enter, so one whose clock is an hour ahead
//! neither takes a live lock nor keeps a dead one. A lock past its expiry (its holder was
//! killed, or cut off from the store) is taken over with `If-Match` on its ETag, so of two runs
//! that find it expired only one wins; so is, before its expiry, a lock whose holder was a
//! process of this machine (same boot id and process namespace) that no longer exists.
//!
//! **Holding it.** A background thread renews the lock (rewrites it with `If-Match`) every
//! TTL/3. Each write of the lock that succeeds lets this run write until TTL − margin after
//! that write was *sent*, by this machine's monotonic clock: the store stamped it later, so by
//! the store's clock it expires later still. The margin, max(1 s, TTL/5) but at most TTL/2,
//! covers `Last-Modified` and `Date` having whole seconds. A renewal that fails is retried
//! every TTL/10 (each attempt is cut off after that long, at least 1 s).
//!
//! **Stopping in time.** Before every write batch, every upload of a batch and every delete,
//! the storage asks [`Shared::check_lock`]: once the deadline has passed without a renewal, or
//! the lock was taken over or deleted by someone else, the run gets
//! [`StorageError::LockLost`] and writes nothing more (for good: a renewal that succeeds later
//! does not reopen it). What no check can stop is an upload already sent when the deadline
//! passes; the engine's writes are conditional (create-only, or `If-Match` on what it read
//! under the lock), so such a late write cannot overwrite a newer run's changes: it fails as a
//! conflict.
//!
//! **Releasing it.** Dropping the guard stops the renewals and deletes the object if it still
//! holds our id, unless the lock was lost (then it may be another run's, and it expires by
//! itself). A stuck lock (from a run killed with a long TTL) is broken by deleting the object:
//! `aws s3 rm s3://BUCKET/PREFIX/.hexreg-lock` (only when no run is going on).

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::{
    LOCK_NAME, ObjectError, ObjectStorage, Precondition, PutError, Shared, e_tag_of, now, put_if,
    summary,
};
use crate::storage::{Lock, Object, Storage, StorageError, Version};

/// How long before its expiry a run stops writing under a lock it could not renew.
fn margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_secs(1)).min(ttl / 2)
}

/// How a held lock stands: shared by its guard, its renewer and the storage's writes.
#[derive(Debug)]
pub(super) struct Standing {
    /// Until when this run may write, by this machine's monotonic clock.
    until: Mutex<Instant>,
    /// The latest renewal's failure, while renewals fail.
    failure: Mutex<Option<String>>,
    /// Why the lock is not ours to write under any more, once it is not (for good).
    lost: Mutex<Option<String>>,
}

impl Standing {
    /// The standing of a lock whose latest write was sent at `sent`.
    fn new(sent: Instant, ttl: Duration) -> Standing {
        Standing {
            until: Mutex::new(sent + ttl - margin(ttl)),
            failure: Mutex::new(None),
            lost: Mutex::new(None),
        }
    }

    /// A renewal sent at `sent` succeeded.
    fn renewed(&self, sent: Instant, ttl: Duration) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = sent + ttl - margin(ttl);
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A renewal failed with `why`.
    fn failed(&self, why: String) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// The lock is not ours any more, because `why`.
    fn lose(&self, why: String) {
        self.lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why);
    }

    /// `None` while this run may write under the lock; otherwise why it may not.
    fn check(&self) -> Option<String> {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &*lost {
            return Some(why.clone());
        }
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        if Instant::now() < until {
            return None;
        }
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let why = match &*failure {
            Some(failure) => format!("could not be renewed ({failure}) and may expire"),
            None => "was not renewed in time and may expire".to_string(),
        };
        *lost = Some(why.clone());
        Some(why)
    }
}

impl Shared {
    /// Refuses a write of `rel` once this storage's lock is held but can no longer be trusted
    /// (see the module documentation); passes when no lock is held.
    pub(super) fn check_lock(&self, rel: &str) -> Result<(), StorageError> {
        let standing = self
            .standing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match standing.and_then(|s| s.check()) {
            None => Ok(()),
            Some(reason) => Err(StorageError::LockLost {
                lock: self.display(LOCK_NAME),
                path: self.display(rel),
                reason,
            }),
        }
    }
}

impl ObjectStorage {
    /// Takes the lock if it is free or expired.
    pub(super) fn acquire(&self) -> Result<Option<Lock>, StorageError> {
        let shared = &self.shared;
        let ttl = shared.options.lock_ttl;
        let location = shared.location(LOCK_NAME)?;
        let owner = Owner::new(&shared.display(LOCK_NAME))?;
        // The lock released or expired between two requests: try again, a few times.
        for _ in 0..3 {
            let sent = Instant::now();
            let created = shared.block_on(put_if(
                shared.store.as_ref(),
                &location,
                Bytes::from(owner.body(ttl)),
                Precondition::Create,
                shared.attributes(LOCK_NAME),
            ));
            match created {
                Ok(version) => return Ok(Some(self.held(owner, location, version, sent))),
                Err(PutError::Conflict) => {}
                Err(e) => return Err(shared.put_failed("lock", LOCK_NAME, e)),
            }
            let Some(current) = self.read(LOCK_NAME)? else {
                continue;
            };
            // The read's answer has just set the store's clock.
            if !expired(&current, ttl, shared.clock.now()) && !owner.holder_is_gone(&current) {
                return Ok(None);
            }
            let Some(e_tag) = e_tag_of(&current.version) else {
                return Ok(None);
            };
            let sent = Instant::now();
            let taken = shared.block_on(put_if(
                shared.store.as_ref(),
                &location,
                Bytes::from(owner.body(ttl)),
                Precondition::Match(e_tag),
                shared.attributes(LOCK_NAME),
            ));
            return match taken {
                Ok(version) => Ok(Some(self.held(owner, location, version, sent))),
                // Another run took it over, or its holder renewed it, first.
                Err(PutError::Conflict) => Ok(None),
                Err(e) => Err(shared.put_failed("lock", LOCK_NAME, e)),
            };
        }
        Ok(None)
    }

    /// The guard of a lock just written (the write sent at `sent`), renewing it in the
    /// background.
    fn held(&self, owner: Owner, location: Path, version: Version, sent: Instant) -> Lock {
        let standing = Arc::new(Standing::new(sent, self.shared.options.lock_ttl));
        *self
            .shared
            .standing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&standing));
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = {
            let shared = Arc::clone(&self.shared);
            let (owner, location, standing) =
                (owner.clone(), location.clone(), Arc::clone(&standing));
            std::thread::Builder::new()
                .name("hexreg-s3-lock".to_string())
                .spawn(move || renew(&shared, &owner, &location, version, &stopped, &standing))
                .ok()
        };
        if renewer.is_none() {
            standing.lose("could not be renewed (no thread to renew it)".to_string());
        }
        Lock::new(Held {
            shared: Arc::clone(&self.shared),
            owner,
            location,
            stop: Some(stop),
            renewer,
            standing,
        })
    }
}

/// Whether a lock object is past its expiry at `store_now` (the store's time): `ttl` seconds
/// (its own `ttl` line, or `default_ttl` for a lock without one) after its `Last-Modified`.
fn expired(lock: &Object, default_ttl: Duration, store_now: i64) -> bool {
    let ttl = std::str::from_utf8(&lock.bytes)
        .ok()
        .and_then(|text| field(text, "ttl"))
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or_else(|| i64::try_from(default_ttl.as_secs()).unwrap_or(i64::MAX));
    store_now >= lock.modified.saturating_add(ttl)
}

/// The boot id of the running kernel and the process namespace of this process, which
/// together say where a process id means the same process; "" when /proc does not tell.
fn process_namespace() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap_or_default();
    let (boot, namespace) = (boot.trim(), namespace.to_string_lossy());
    if boot.is_empty() || namespace.is_empty() {
        return String::new();
    }
    format!("{boot} {namespace}")
}

/// The value of `name: value` in a lock's text.
fn field<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == name).then(|| value.trim())
    })
}

/// Who holds a lock.
#[derive(Clone)]
struct Owner {
    id: String,
    host: String,
    pid: u32,
    /// This kernel's boot id and process namespace: where `pid` means this process ("" when
    /// unknown).
    processes: String,
    acquired: i64,
}

impl Owner {
    /// A new owner of the lock object `shown`.
    fn new(shown: &str) -> Result<Owner, StorageError> {
        let mut random = [0u8; 16];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| StorageError::Io {
            action: "take the lock",
            path: shown.to_string(),
            source: std::io::Error::other(ObjectError::NoRandom),
        })?;
        let id = random.iter().map(|b| format!("{b:02x}")).collect();
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        Ok(Owner {
            id,
            host,
            pid: std::process::id(),
            processes: process_namespace(),
            acquired: now(),
        })
    }

    /// Whether the lock object `lock` was left by a process of this machine that is gone (it
    /// was killed before it could delete it): same boot and process namespace, and no process
    /// with its id.
    fn holder_is_gone(&self, lock: &Object) -> bool {
        let Ok(text) = std::str::from_utf8(&lock.bytes) else {
            return false;
        };
        let (Some(processes), Some(pid)) = (field(text, "processes"), field(text, "pid")) else {
            return false;
        };
        if self.processes.is_empty() || processes != self.processes {
            return false;
        }
        let Some(pid) = pid
            .parse::<i32>()
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return false;
        };
        rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
    }

    /// The lock object's content, lasting `ttl` after the store stamps it.
    fn body(&self, ttl: Duration) -> Vec<u8> {
        format!(
            "hexreg lock: it expires ttl seconds after its Last-Modified time; delete this object to break it, when no hexreg run is going on\nid: {}\nhost: {}\npid: {}\nprocesses: {}\nacquired: {}\nttl: {}\n",
            self.id,
            self.host,
            self.pid,
            self.processes,
            self.acquired,
            ttl.as_secs().max(1)
        )
        .into_bytes()
    }

    /// Whether a lock object's content is ours.
    fn owns(&self, bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| field(text, "id"))
            == Some(self.id.as_str())
    }
}

/// Renews the lock every TTL/3 (every TTL/10 after a failure) until told to stop, the lock is
/// lost, or its deadline has passed.
fn renew(
    shared: &Shared,
    owner: &Owner,
    location: &Path,
    mut version: Version,
    stop: &mpsc::Receiver<()>,
    standing: &Standing,
) {
    let ttl = shared.options.lock_ttl;
    let every = (ttl / 3).max(Duration::from_millis(100));
    let retry = (ttl / 10).max(Duration::from_millis(100));
    let cut_off = (ttl / 10).max(Duration::from_secs(1));
    let mut wait = every;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        if standing.check().is_some() {
            // Past its deadline: the run has stopped writing, and another may take it over.
            return;
        }
        let Some(e_tag) = e_tag_of(&version) else {
            standing.lose("has no ETag to renew it by".to_string());
            return;
        };
        let sent = Instant::now();
        let renewal = put_if(
            shared.store.as_ref(),
            location,
            Bytes::from(owner.body(ttl)),
            Precondition::Match(e_tag),
            shared.attributes(LOCK_NAME),
        );
        // The timer is made inside the runtime, which it needs.
        let renewed = shared.block_on(async { tokio::time::timeout(cut_off, renewal).await });
        let failure = match renewed {
            Ok(Ok(new)) => {
                version = new;
                standing.renewed(sent, ttl);
                wait = every;
                continue;
            }
            Ok(Err(PutError::Conflict)) => {
                standing.lose(
                    "was taken over by another run or deleted (this run was cut off past its expiry)"
                        .to_string(),
                );
                eprintln!(
                    "warning: the lock {} was taken over by another run or deleted: this run writes nothing more",
                    shared.display(LOCK_NAME)
                );
                return;
            }
            Ok(Err(PutError::Store(e))) => summary(&e),
            Ok(Err(PutError::NoETag)) => "the store gave no ETag".to_string(),
            Err(_) => format!("no answer within {} ms", cut_off.as_millis()),
        };
        eprintln!(
            "warning: could not renew the lock {}: {failure}; retrying",
            shared.display(LOCK_NAME)
        );
        standing.failed(failure);
        wait = retry;
    }
}

/// A held lock: renewed while alive, deleted when dropped.
struct Held {
    shared: Arc<Shared>,
    owner: Owner,
    location: Path,
    stop: Option<mpsc::Sender<()>>,
    renewer: Option<JoinHandle<()>>,
    standing: Arc<Standing>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Dropping the sender stops the renewals.
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        {
            let mut current = self
                .shared
                .standing
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if current
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &self.standing))
            {
                *current = None;
            }
        }
        if self.standing.check().is_some() {
            // It may be another run's by now: left to expire.
            return;
        }
        let store = Arc::clone(&self.shared.store);
        let location = self.location.clone();
        let owner = self.owner.clone();
        let released = self.shared.run_detached(
            async move {
                let current = match store.get(&location).await {
                    Ok(got) => got.bytes().await?,
                    Err(object_store::Error::NotFound { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                };
                // Deleted only while it is ours: one that expired may have been taken over.
                if owner.owns(&current) {
                    store.delete(&location).await?;
                }
                Ok(())
            },
            Duration::from_secs(60),
        );
        if !matches!(released, Some(Ok(()))) {
            eprintln!(
                "warning: could not release the lock {}: the next run waits until it expires ({} s), or delete it",
                self.shared.display(LOCK_NAME),
                self.shared.options.lock_ttl.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(bytes: Vec<u8>, modified: i64) -> Object {
        Object {
            bytes,
            modified,
            version: Version(b"x".to_vec()),
        }
    }

    #[test]
    fn a_lock_expires_its_ttl_after_the_store_stamped_it() {
        let owner = Owner::new("lock").unwrap();
        let body = owner.body(Duration::from_secs(60));
        let written = 1_000_000;
        assert!(!expired(
            &lock(body.clone(), written),
            Duration::ZERO,
            written + 59
        ));
        assert!(expired(
            &lock(body.clone(), written),
            Duration::ZERO,
            written + 60
        ));
        // Whatever any machine's clock says: only the store's times enter.
        assert!(!expired(
            &lock(body.clone(), written),
            Duration::ZERO,
            written
        ));
        assert!(owner.owns(&body));
        assert!(!Owner::new("lock").unwrap().owns(&body));
        // A lock without a readable ttl lasts the reader's own TTL.
        let unreadable = lock(b"?".to_vec(), written);
        assert!(!expired(&unreadable, Duration::from_secs(60), written + 59));
        assert!(expired(&unreadable, Duration::from_secs(60), written + 60));
        // An older hexreg's `expires:` line (by its holder's clock) is not trusted.
        let old = lock(b"id: x\nexpires: 0\n".to_vec(), written);
        assert!(!expired(&old, Duration::from_secs(60), written + 1));
    }

    #[test]
    fn a_run_stops_writing_before_its_lock_can_expire() {
        assert_eq!(margin(Duration::from_secs(600)), Duration::from_secs(120));
        assert_eq!(margin(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(margin(Duration::from_secs(1)), Duration::from_millis(500));
        let ttl = Duration::from_secs(600);
        let fresh = Standing::new(Instant::now(), ttl);
        assert_eq!(fresh.check(), None);
        // Renewed long ago and never since: past its deadline, for good.
        let Some(long_ago) = Instant::now().checked_sub(Duration::from_secs(481)) else {
            return; // a machine up for less than 8 minutes
        };
        let stale = Standing::new(long_ago, ttl);
        stale.failed("503 Slow Down".to_string());
        let why = stale.check().expect("past the deadline");
        assert!(
            why.contains("could not be renewed (503 Slow Down)"),
            "{why}"
        );
        stale.renewed(Instant::now(), ttl);
        assert_eq!(
            stale.check(),
            Some(why),
            "a late renewal does not reopen it"
        );
        // Taken over: refused at once.
        fresh.lose("was taken over".to_string());
        assert_eq!(fresh.check().as_deref(), Some("was taken over"));
    }
}
