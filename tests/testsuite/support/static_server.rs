//! A tiny static HTTP/1.1 file server for tests (std only).
//!
//! Serves `GET`/`HEAD` of regular files under a root directory on `127.0.0.1` with
//! `Content-Length`, `ETag` and `Content-Type: application/octet-stream`, one thread per
//! connection, `Connection: close` after every response. Missing files, directories and
//! paths with `..` segments get a 404. Every request path is recorded so tests can check
//! what a client actually fetched. Dropping the server stops it.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request head (request line plus headers) accepted, in bytes.
const MAX_HEAD: usize = 64 * 1024;
/// A client that sends nothing for this long is dropped, so no thread lingers forever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct StaticServer {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    /// Requests still to answer `503 Service Unavailable` ([`StaticServer::fail_next`]).
    failures: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    /// Binds a free port on 127.0.0.1 and serves the files under `root` until dropped.
    pub fn start(root: &Path) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let root = root.to_path_buf();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = Arc::clone(&requests);
            let failures = Arc::clone(&failures);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("static-server-{}", addr.port()))
                .spawn(move || accept_loop(listener, root, requests, failures, stop))
                .expect("spawn server thread")
        };
        StaticServer {
            url: format!("http://{addr}"),
            addr,
            requests,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers the next `n` requests (whatever they ask) with `503 Service Unavailable`, as an
    /// overloaded server does.
    pub fn fail_next(&self, n: usize) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// Paths (without query string) of every request received so far, in arrival order.
    pub fn requested_paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock `accept`; the loop sees the flag and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    root: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    failures: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let root = Arc::new(root);
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        let root = Arc::clone(&root);
        let requests = Arc::clone(&requests);
        let failures = Arc::clone(&failures);
        workers.retain(|w| !w.is_finished());
        if let Ok(w) = std::thread::Builder::new()
            .name("static-server-conn".into())
            .spawn(move || {
                let _ = handle_connection(stream, &root, &requests, &failures);
            })
        {
            workers.push(w);
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

fn handle_connection(
    stream: TcpStream,
    root: &Path,
    requests: &Mutex<Vec<String>>,
    failures: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;

    // Request line and headers.
    let mut head_len = 0usize;
    let mut request_line = String::new();
    head_len += reader.read_line(&mut request_line)?;
    if request_line.is_empty() {
        return Ok(()); // connection opened and closed (e.g. the shutdown poke)
    }
    let mut if_none_match: Option<String> = None;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        head_len += n;
        if n == 0 || head_len > MAX_HEAD {
            return respond(&mut out, "400 Bad Request", &[], None);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("if-none-match")
        {
            if_none_match = Some(value.trim().to_string());
        }
    }

    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return respond(&mut out, "400 Bad Request", &[], None);
    };
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(path.clone());
    if failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return respond(&mut out, "503 Service Unavailable", &[], None);
    }

    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return respond(
                &mut out,
                "405 Method Not Allowed",
                &[("Allow", "GET, HEAD".into())],
                None,
            );
        }
    };

    let Some(file) = resolve(root, &path) else {
        return respond(&mut out, "404 Not Found", &[], None);
    };
    let bytes = match std::fs::metadata(&file) {
        Ok(m) if m.is_file() => match std::fs::read(&file) {
            Ok(b) => b,
            Err(_) => return respond(&mut out, "404 Not Found", &[], None),
        },
        _ => return respond(&mut out, "404 Not Found", &[], None),
    };
    let etag = etag(&bytes);
    if if_none_match
        .as_deref()
        .is_some_and(|v| v == "*" || v.split(',').any(|t| t.trim() == etag))
    {
        return respond(&mut out, "304 Not Modified", &[("ETag", etag)], None);
    }
    let headers = [
        ("Content-Type", "application/octet-stream".to_string()),
        ("Content-Length", bytes.len().to_string()),
        ("ETag", etag),
    ];
    respond(
        &mut out,
        "200 OK",
        &headers,
        if head_only { None } else { Some(&bytes) },
    )
}

/// Maps a URL path to a file under `root`; `None` for anything that could escape it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(url_path)?;
    if !decoded.starts_with('/') || decoded.contains('\\') || decoded.contains('\0') {
        return None;
    }
    let rel = Path::new(&decoded[1..]);
    let mut file = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(part) => file.push(part),
            Component::CurDir => {}
            // `..`, a second root, a prefix: refuse.
            _ => return None,
        }
    }
    Some(file)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Strong ETag: quoted hex of a (fixed-key SipHash) hash of the bytes plus their length.
fn etag(bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    format!("\"{:016x}-{:x}\"", h.finish(), bytes.len())
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: Option<&[u8]>,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    let has_length = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has_length && !status.starts_with("304") {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    out.write_all(head.as_bytes())?;
    if let Some(body) = body {
        out.write_all(body)?;
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Write);
    // Drain whatever the client still sends so closing does not reset the connection
    // before it has read the response.
    let _ = out.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = std::io::copy(&mut (&*out).take(MAX_HEAD as u64), &mut std::io::sink());
    Ok(())
}
