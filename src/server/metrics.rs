//! What `GET /-/metrics` reports, in the Prometheus text exposition format (version 0.0.4):
//! requests by route class and status, response bytes, a latency histogram, and named counters
//! any part of the server increments (publishes and their failures, lock waits, upstream
//! fetches and cache hits of the proxy, docs archives prepared).
//!
//! Everything is a process-wide atomic, so counting costs one relaxed add and no lock, and
//! nothing needs passing around. The exposition is written by hand ([`render`], a pure
//! function of a [`Snapshot`]): the format is a few lines of text and a crate would add a
//! registry and a dependency tree for it.
//!
//! **Adding a counter**: declare a `pub static NAME: Counter = Counter::new();` below, with a doc
//! comment saying what it counts; add a row `("hexreg_..._total", "help text", &NAME)` to
//! [`COUNTERS`]; call `metrics::NAME.inc()` (or `.add(n)`) where the event happens. Names end in
//! `_total` and use Prometheus' base units (bytes, seconds); keep labels out of plain counters
//! (a label is a new dimension here: a new array, as [`Requests`] has).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic counter.
#[derive(Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

/// Publishes (`POST /api/publish`) that stored a release.
pub static PUBLISHES: Counter = Counter::new();
/// Publishes answered with an error (refused, invalid, or failed).
pub static PUBLISH_FAILURES: Counter = Counter::new();
/// Changes through the API that found the registry's lock held and waited for it.
pub static LOCK_WAITS: Counter = Counter::new();
/// Files the caching proxy fetched from its upstream.
pub static UPSTREAM_FETCHES: Counter = Counter::new();
/// Files the caching proxy answered from what it had stored.
pub static CACHE_HITS: Counter = Counter::new();
/// Docs tarballs read and indexed for the docs pages (each read, not each page served).
pub static DOCS_ARCHIVES_PREPARED: Counter = Counter::new();

/// Every plain counter: its metric name, its help text, the counter.
pub static COUNTERS: &[(&str, &str, &Counter)] = &[
    (
        "hexreg_publishes_total",
        "Publishes that stored a release.",
        &PUBLISHES,
    ),
    (
        "hexreg_publish_failures_total",
        "Publishes answered with an error.",
        &PUBLISH_FAILURES,
    ),
    (
        "hexreg_lock_waits_total",
        "API changes that waited for the registry's lock.",
        &LOCK_WAITS,
    ),
    (
        "hexreg_upstream_fetches_total",
        "Files the caching proxy fetched from its upstream.",
        &UPSTREAM_FETCHES,
    ),
    (
        "hexreg_cache_hits_total",
        "Files the caching proxy answered from its store.",
        &CACHE_HITS,
    ),
    (
        "hexreg_docs_archives_prepared_total",
        "Docs tarballs read and indexed for the docs pages.",
        &DOCS_ARCHIVES_PREPARED,
    ),
];

/// What a request was for, the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// The Hex API under `/api`.
    Api,
    /// The registry's files (`names`, `packages/NAME`, `tarballs/...`).
    Files,
    /// The web pages (`/`, `/-/packages/...`).
    Pages,
    /// Hosted docs (`/-/docs/...`).
    Docs,
    /// `/-/health`, `/-/ready` and `/-/metrics`.
    Service,
}

impl RouteClass {
    const ALL: [RouteClass; 5] = [
        RouteClass::Api,
        RouteClass::Files,
        RouteClass::Pages,
        RouteClass::Docs,
        RouteClass::Service,
    ];

    /// The class of a request path.
    pub fn of(path: &str) -> RouteClass {
        if path == "/api" || path.starts_with("/api/") {
            RouteClass::Api
        } else if path.starts_with("/-/docs/") || path == "/-/docs" {
            RouteClass::Docs
        } else if matches!(path, "/-/health" | "/-/ready" | "/-/metrics") {
            RouteClass::Service
        } else if super::pages::is_page(path) {
            RouteClass::Pages
        } else {
            RouteClass::Files
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            RouteClass::Api => "api",
            RouteClass::Files => "files",
            RouteClass::Pages => "pages",
            RouteClass::Docs => "docs",
            RouteClass::Service => "service",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the latency histogram's buckets, in seconds (`+Inf` comes after).
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// Status codes 100 to 599, one slot each.
const STATUSES: usize = 500;
const CLASSES: usize = RouteClass::ALL.len();

/// Requests by route class: counts by status, bytes sent, and the latency histogram.
pub struct Requests {
    by_status: [[AtomicU64; STATUSES]; CLASSES],
    bytes: [AtomicU64; CLASSES],
    buckets: [[AtomicU64; LATENCY_BUCKETS.len()]; CLASSES],
    latency_micros: [AtomicU64; CLASSES],
    count: [AtomicU64; CLASSES],
}

/// The server's request counters.
pub static REQUESTS: Requests = Requests::new();

impl Requests {
    // Constants only as repeat operands, each use a fresh zero.
    #[allow(clippy::declare_interior_mutable_const)]
    const ZERO: AtomicU64 = AtomicU64::new(0);
    #[allow(clippy::declare_interior_mutable_const)]
    const STATUS_ROW: [AtomicU64; STATUSES] = [Self::ZERO; STATUSES];
    #[allow(clippy::declare_interior_mutable_const)]
    const BUCKET_ROW: [AtomicU64; LATENCY_BUCKETS.len()] = [Self::ZERO; LATENCY_BUCKETS.len()];

    const fn new() -> Requests {
        Requests {
            by_status: [Self::STATUS_ROW; CLASSES],
            bytes: [Self::ZERO; CLASSES],
            buckets: [Self::BUCKET_ROW; CLASSES],
            latency_micros: [Self::ZERO; CLASSES],
            count: [Self::ZERO; CLASSES],
        }
    }

    /// Counts one finished request: its class, status, the bytes of body sent, and the time
    /// from its head to its last byte.
    pub fn record(&self, class: RouteClass, status: u16, bytes: u64, took: Duration) {
        let c = class.index();
        if let Some(slot) = usize::from(status)
            .checked_sub(100)
            .and_then(|i| self.by_status[c].get(i))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes[c].fetch_add(bytes, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        // Buckets are stored non-cumulative; the exposition sums them.
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[c][i].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros[c].fetch_add(micros, Ordering::Relaxed);
        self.count[c].fetch_add(1, Ordering::Relaxed);
    }
}

/// The numbers of one route class, read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassSnapshot {
    /// The class.
    pub route: &'static str,
    /// (status, count), counts above zero only, by status.
    pub statuses: Vec<(u16, u64)>,
    /// Response body bytes sent.
    pub bytes: u64,
    /// Requests per latency bucket, not cumulative, one per [`LATENCY_BUCKETS`] entry.
    pub buckets: Vec<u64>,
    /// Total latency, seconds.
    pub latency_sum: f64,
    /// Requests timed.
    pub count: u64,
}

/// Every number [`render`] writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// One per route class.
    pub classes: Vec<ClassSnapshot>,
    /// (name, help, value) of each plain counter.
    pub counters: Vec<(&'static str, &'static str, u64)>,
    /// Seconds since the server started.
    pub uptime_secs: f64,
}

/// The numbers now.
pub fn snapshot(uptime: Duration) -> Snapshot {
    let r = &REQUESTS;
    let classes = RouteClass::ALL
        .iter()
        .map(|class| {
            let c = class.index();
            ClassSnapshot {
                route: class.label(),
                statuses: r.by_status[c]
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| {
                        let n = n.load(Ordering::Relaxed);
                        let status = u16::try_from(i + 100).ok()?;
                        (n > 0).then_some((status, n))
                    })
                    .collect(),
                bytes: r.bytes[c].load(Ordering::Relaxed),
                buckets: r.buckets[c]
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect(),
                latency_sum: r.latency_micros[c].load(Ordering::Relaxed) as f64 / 1e6,
                count: r.count[c].load(Ordering::Relaxed),
            }
        })
        .collect();
    Snapshot {
        classes,
        counters: COUNTERS
            .iter()
            .map(|(name, help, counter)| (*name, *help, counter.get()))
            .collect(),
        uptime_secs: uptime.as_secs_f64(),
    }
}

/// The Prometheus text exposition of `snapshot`.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP hexreg_requests_total HTTP requests answered, by route class and status.\n\
         # TYPE hexreg_requests_total counter"
    );
    for class in &snapshot.classes {
        for (status, n) in &class.statuses {
            let _ = writeln!(
                out,
                "hexreg_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                class.route
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP hexreg_response_bytes_total Response body bytes sent, by route class.\n\
         # TYPE hexreg_response_bytes_total counter"
    );
    for class in &snapshot.classes {
        let _ = writeln!(
            out,
            "hexreg_response_bytes_total{{route=\"{}\"}} {}",
            class.route, class.bytes
        );
    }
    let _ = writeln!(
        out,
        "# HELP hexreg_request_duration_seconds Time from a request's head to its response's last byte, by route class.\n\
         # TYPE hexreg_request_duration_seconds histogram"
    );
    for class in &snapshot.classes {
        let mut cumulative = 0;
        for (le, n) in LATENCY_BUCKETS.iter().zip(&class.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "hexreg_request_duration_seconds_bucket{{route=\"{}\",le=\"{le}\"}} {cumulative}",
                class.route
            );
        }
        let _ = writeln!(
            out,
            "hexreg_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n\
             hexreg_request_duration_seconds_sum{{route=\"{}\"}} {}\n\
             hexreg_request_duration_seconds_count{{route=\"{}\"}} {}",
            class.route, class.count, class.route, class.latency_sum, class.route, class.count
        );
    }
    for (name, help, value) in &snapshot.counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP hexreg_uptime_seconds Seconds since the server started.\n\
         # TYPE hexreg_uptime_seconds gauge\n\
         hexreg_uptime_seconds {}",
        snapshot.uptime_secs
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_in_their_class() {
        assert_eq!(RouteClass::of("/api/publish"), RouteClass::Api);
        assert_eq!(RouteClass::of("/api"), RouteClass::Api);
        assert_eq!(RouteClass::of("/apix"), RouteClass::Files);
        assert_eq!(RouteClass::of("/names"), RouteClass::Files);
        assert_eq!(RouteClass::of("/-/docs/a/1.0.0/"), RouteClass::Docs);
        assert_eq!(RouteClass::of("/-/metrics"), RouteClass::Service);
        assert_eq!(RouteClass::of("/"), RouteClass::Pages);
        assert_eq!(RouteClass::of("/-/packages/a"), RouteClass::Pages);
    }

    #[test]
    fn the_histogram_is_cumulative_and_counts_match() {
        let snapshot = Snapshot {
            classes: vec![ClassSnapshot {
                route: "files",
                statuses: vec![(200, 2), (404, 1)],
                bytes: 10,
                buckets: vec![1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                latency_sum: 0.006,
                count: 3,
            }],
            counters: vec![("hexreg_x_total", "X.", 4)],
            uptime_secs: 1.5,
        };
        let text = render(&snapshot);
        assert!(
            text.contains("hexreg_requests_total{route=\"files\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("le=\"30\"} 2\n"), "{text}");
        // One request slower than the last bucket: only +Inf has it.
        assert!(text.contains("le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("# TYPE hexreg_x_total counter\nhexreg_x_total 4\n"));
        assert!(text.ends_with("hexreg_uptime_seconds 1.5\n"), "{text}");
    }

    #[test]
    fn out_of_range_statuses_are_not_counted_and_do_not_panic() {
        let requests = Requests::new();
        requests.record(RouteClass::Api, 99, 1, Duration::from_secs(100));
        requests.record(RouteClass::Api, 600, 1, Duration::ZERO);
        requests.record(RouteClass::Api, 201, 5, Duration::from_millis(2));
        let c = RouteClass::Api.index();
        assert_eq!(requests.by_status[c][101].load(Ordering::Relaxed), 1);
        assert_eq!(requests.count[c].load(Ordering::Relaxed), 3);
        assert_eq!(requests.bytes[c].load(Ordering::Relaxed), 7);
    }
}
