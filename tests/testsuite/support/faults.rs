//! A loopback HTTP/1.1 relay in front of a real server (moto), which passes every request on
//! unchanged unless the test's rule says to fail it, hold it back, or shift the `Date` of its
//! answer: the store's faults (a network cut, a throttled bucket, a store whose clock differs)
//! reproduced in front of the real thing, not imitated by a fake.
//!
//! One request per connection: each answer is sent with `Connection: close`, so the client opens
//! a new connection for the next request, and the relay never has to frame bodies it passes
//! back (it reads the server's answer to its end).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// `/BUCKET/KEY?QUERY`.
    pub target: String,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Pass it on.
    Pass,
    /// Answer it with this status and an S3 error body, without passing it on.
    Fail(u16),
    /// Pass it on after this long.
    Delay(Duration),
    /// Pass it on, and move the `Date` of the answer by this many seconds.
    ShiftDate(i64),
}

/// The rule: called for every request.
pub type Rule = dyn Fn(&Request) -> Fault + Send + Sync;

/// A relay on a free loopback port, stopped when dropped.
pub struct Relay {
    /// Its port.
    pub port: u16,
    /// Every request seen, with what was done to it.
    pub seen: Arc<Mutex<Vec<(Request, Fault)>>>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Starts a relay to `127.0.0.1:upstream` applying `rule`.
    pub fn start(upstream: u16, rule: impl Fn(&Request) -> Fault + Send + Sync + 'static) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rule: Arc<Rule> = Arc::new(rule);
        {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let (rule, seen) = (Arc::clone(&rule), Arc::clone(&seen));
                    std::thread::spawn(move || {
                        let _ = relay(client, upstream, &*rule, &seen);
                    });
                }
            });
        }
        Relay { port, seen, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests seen so far that `which` selects, with what was done to them.
    pub fn seen(&self, which: impl Fn(&Request) -> bool) -> Vec<(Request, Fault)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| which(r))
            .cloned()
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Relays one request of `client`.
fn relay(
    client: TcpStream,
    upstream: u16,
    rule: &Rule,
    seen: &Mutex<Vec<(Request, Fault)>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let mut parts = head.first().map(String::as_str).unwrap_or("").split(' ');
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let headers: Vec<(String, String)> = head
        .iter()
        .skip(1)
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let request = Request {
        method,
        target,
        headers,
    };
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        request.header("transfer-encoding").is_none(),
        "the relay passes on bodies with a Content-Length only"
    );
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let fault = rule(&request);
    seen.lock().unwrap().push((request.clone(), fault.clone()));
    let mut client = client;
    match &fault {
        Fault::Fail(status) => {
            let text = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InjectedFault</Code><Message>the test's relay refused this request</Message></Error>";
            write!(
                client,
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )?;
            return client.shutdown(Shutdown::Both);
        }
        Fault::Delay(d) => std::thread::sleep(*d),
        Fault::Pass | Fault::ShiftDate(_) => {}
    }
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut out = Vec::new();
    out.extend_from_slice(head[0].as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in head.iter().skip(1) {
        if !h.to_ascii_lowercase().starts_with("connection:") {
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    server.write_all(&out)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(answer.len());
    let (answer_head, rest) = answer.split_at(split);
    let mut new_head = String::new();
    for (i, h) in String::from_utf8_lossy(answer_head)
        .split("\r\n")
        .enumerate()
    {
        let lower = h.to_ascii_lowercase();
        if i > 0 && lower.starts_with("connection:") {
            continue;
        }
        match (&fault, lower.starts_with("date:")) {
            (Fault::ShiftDate(secs), true) => {
                let date = httpdate::parse_http_date(h[5..].trim()).expect("moto's Date");
                let shifted = if *secs >= 0 {
                    date + Duration::from_secs(secs.unsigned_abs())
                } else {
                    date - Duration::from_secs(secs.unsigned_abs())
                };
                new_head.push_str(&format!("Date: {}", httpdate::fmt_http_date(shifted)));
            }
            _ => new_head.push_str(h),
        }
        new_head.push_str("\r\n");
    }
    new_head.push_str("Connection: close");
    client.write_all(new_head.as_bytes())?;
    client.write_all(rest)?;
    client.shutdown(Shutdown::Both)
}
