//! The store's clock, as its answers tell it: the `Date` header of the latest response, moved
//! on by this machine's monotonic clock since it arrived.
//!
//! The lock's expiry is judged with it ([`super::lock`]): a lock object expires its TTL after
//! its `Last-Modified`, a time the store stamped, so the "now" it is compared with must be the
//! store's too. Two machines whose clocks disagree then still agree on when a lock expired. A
//! `Date` has whole seconds and is stamped before the answer travels back, so this clock runs
//! up to about a second behind the store's: a waiting run judges a lock expired a little late,
//! never early.
//!
//! The clock is fed by an [`HttpConnector`] wrapping `object_store`'s own (reqwest, with the
//! builder's client options), which reads the header of every answer, whatever the request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

/// The store's time, from the `Date` of its latest answer.
#[derive(Debug, Default)]
pub(super) struct StoreClock {
    /// The latest `Date` (Unix seconds) and when it arrived.
    seen: Mutex<Option<(i64, Instant)>>,
}

impl StoreClock {
    /// Notes an answer's `Date` header, received now.
    fn saw(&self, date: &str) {
        let Some(secs) = parse_date(date) else {
            return;
        };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some((secs, Instant::now()));
    }

    /// The store's time now, in whole Unix seconds; this machine's clock until an answer with a
    /// `Date` has arrived.
    pub(super) fn now(&self) -> i64 {
        match *self.seen.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((date, at)) => {
                date.saturating_add(i64::try_from(at.elapsed().as_secs()).unwrap_or(i64::MAX))
            }
            None => super::now(),
        }
    }
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) in Unix seconds.
fn parse_date(text: &str) -> Option<i64> {
    let time = httpdate::parse_http_date(text).ok()?;
    let secs = time.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// `object_store`'s reqwest connector, with every answer's `Date` noted on a [`StoreClock`].
#[derive(Debug)]
pub(super) struct ClockConnector {
    /// Where the dates go.
    pub(super) clock: Arc<StoreClock>,
}

impl HttpConnector for ClockConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(ClockService {
            inner,
            clock: Arc::clone(&self.clock),
        }))
    }
}

/// The HTTP client of a [`ClockConnector`].
#[derive(Debug)]
struct ClockService {
    inner: HttpClient,
    clock: Arc<StoreClock>,
}

impl HttpService for ClockService {
    // The signature `#[async_trait]` gives the trait's method (the macro is not a dependency).
    fn call<'life0, 'async_trait>(
        &'life0 self,
        request: HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let response = self.inner.execute(request).await?;
            if let Some(date) = response.headers().get("date").and_then(|v| v.to_str().ok()) {
                self.clock.saw(date);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_clock_follows_the_latest_date() {
        let clock = StoreClock::default();
        let local = super::super::now();
        assert!(
            (clock.now() - local).abs() <= 1,
            "no answer yet: the local clock"
        );
        clock.saw("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(clock.now(), 784_111_777);
        clock.saw("not a date");
        assert_eq!(clock.now(), 784_111_777, "a bad header changes nothing");
        clock.saw("Sun, 06 Nov 1994 08:49:40 GMT");
        assert_eq!(clock.now(), 784_111_780);
    }
}
