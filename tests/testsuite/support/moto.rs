//! A local S3: `moto_server` on a free loopback port, stopped when dropped, and the
//! [`ObjectOptions`] that reach it (set explicitly: tests run in parallel threads, and must not
//! change the process environment).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hexreg::storage::object::{ObjectOptions, ObjectStorage};

/// A running `moto_server -H 127.0.0.1 -p PORT`, its request log in a temporary file.
pub struct Moto {
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
    sentinels: std::sync::atomic::AtomicUsize,
}

/// One request in moto's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The request target: `/BUCKET/KEY` or `/BUCKET?QUERY`.
    pub target: String,
    pub status: u16,
}

impl Logged {
    /// A LIST request (ListObjectsV2).
    pub fn is_list(&self) -> bool {
        self.method == "GET" && self.target.contains("list-type=2")
    }
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Starts moto with `env` set (e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0`: check credentials).
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}): these tests need a local S3; install it with `pip install 'moto[server]'`"
                )
            });
        let mut moto = Moto {
            child,
            port,
            log,
            sentinels: std::sync::atomic::AtomicUsize::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = moto.child.try_wait().expect("wait for moto_server") {
                panic!(
                    "moto_server exited ({status}) before answering on port {port}; is it installed (`pip install 'moto[server]'`)?"
                );
            }
            if moto.request("GET", "/").is_some() {
                return moto;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every request moto has logged so far, in order. A marker request is sent and awaited
    /// first, so requests answered before this call are in the log.
    pub fn requests(&self) -> Vec<Logged> {
        let n = self
            .sentinels
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("/hexreg-test-marker-{n}");
        let _ = self.request("GET", &marker);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(self.log.path()).expect("read moto's log");
            if text.contains(&format!("\"GET {marker} ")) {
                return text
                    .lines()
                    .filter_map(parse_log_line)
                    .filter(|r| !r.target.starts_with("/hexreg-test-marker-"))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "moto did not log the marker request"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The AWS environment a `hexreg` process needs to reach this server, test credentials.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
    }

    /// Creates bucket `name` (moto does not check signatures).
    pub fn create_bucket(&self, name: &str) {
        let (status, body) = self
            .request("PUT", &format!("/{name}"))
            .expect("moto answers");
        assert_eq!(status, 200, "create bucket {name}: {body}");
    }

    /// Options reaching this server, with test credentials.
    pub fn options(&self) -> ObjectOptions {
        ObjectOptions {
            settings: [
                ("aws_endpoint", self.endpoint().as_str()),
                ("aws_allow_http", "true"),
                ("aws_access_key_id", "test"),
                ("aws_secret_access_key", "test"),
                ("aws_region", "us-east-1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..ObjectOptions::default()
        }
    }

    /// The storage at `s3://BUCKET/PREFIX` on this server.
    pub fn storage(&self, url: &str) -> ObjectStorage {
        ObjectStorage::from_url(url, self.options()).expect("a valid bucket URL")
    }

    /// One raw HTTP/1.1 request (no body): the status and the body, or `None` when the server
    /// does not answer.
    fn request(&self, method: &str, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string());
        Some((status, body))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `127.0.0.1 - - [DATE] "GET /bucket/key HTTP/1.1" 200 -`: the method, target and status.
fn parse_log_line(line: &str) -> Option<Logged> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once('"')?;
    let mut parts = request.split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let status = rest.split_whitespace().next()?.parse().ok()?;
    Some(Logged {
        method,
        target,
        status,
    })
}
