//! `hexreg serve` as a child process on a free loopback port (`--bind 127.0.0.1:0`, the port
//! read from its first stderr line), killed when dropped, and a tiny raw HTTP/1.1 client to
//! speak to it, so that request lines such as `GET /%2e%2e/secret` go out exactly as written.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Socket read/write timeout: a safety net so that a broken server fails a test instead of
/// hanging it, never a performance assertion.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `hexreg serve PUBLIC_DIR --bind 127.0.0.1:0`.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
    drain: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `hexreg serve public --bind 127.0.0.1:0 ARGS...` with `env` set (and
    /// HEXREG_AUTH unset unless `env` sets it) and waits for its first line.
    pub fn start(public: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hexreg"));
        cmd.arg("serve")
            .arg(public)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .env_remove("HEXREG_AUTH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hexreg serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut reader = BufReader::new(stderr);
        let mut first = String::new();
        let n = reader.read_line(&mut first).expect("read stderr");
        if n == 0 {
            let status = child.wait().expect("wait");
            panic!("hexreg serve exited ({status}) before printing its address");
        }
        let port = first
            .trim_end()
            .strip_prefix("serving ")
            .and_then(|rest| rest.rsplit_once("on http://127.0.0.1:"))
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first:?}"));
        let lines = Arc::new(Mutex::new(vec![first.trim_end().to_string()]));
        // Keep reading stderr so the server never blocks on a full pipe.
        let drain = {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            })
        };
        Server {
            child: Some(child),
            port,
            stderr: lines,
            drain: Some(drain),
        }
    }

    /// The server's process id (to read its /proc/PID/status and /proc/PID/io).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The lines the server has written on stderr so far (its request log among them).
    pub fn lines(&self) -> Vec<String> {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[])
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let mut raw =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        self.raw(&raw)
    }

    /// `POST path` with `headers` and `body`, on a fresh connection.
    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let mut raw = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let mut stream = connect(self.port);
        stream.write_all(raw.as_bytes()).expect("send request");
        stream.write_all(body).expect("send body");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read response");
        HttpResponse::parse_whole(&bytes)
    }

    /// Sends `raw` on a fresh connection and reads the response to EOF.
    pub fn raw(&self, raw: &str) -> HttpResponse {
        let mut stream = connect(self.port);
        stream.write_all(raw.as_bytes()).expect("send request");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read response");
        HttpResponse::parse_whole(&bytes)
    }

    /// Sends `signal` (TERM, INT) and waits for the exit; returns the status and every line
    /// the server wrote on stderr.
    pub fn stop(self, signal: &str) -> (ExitStatus, Vec<String>) {
        self.signal(signal);
        self.wait()
    }

    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running server");
        let signal = match signal {
            "TERM" => rustix::process::Signal::TERM,
            "INT" => rustix::process::Signal::INT,
            other => panic!("unexpected signal {other}"),
        };
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("child pid");
        rustix::process::kill_process(pid, signal).expect("send signal");
    }

    /// Waits for the server to exit; returns the status and every line it wrote on stderr.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running server");
        // Bounded wait, a safety net against a hung server (not a timing assertion).
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hexreg serve did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
        let lines = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (status, lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A connection to 127.0.0.1:`port`, with [`IO_TIMEOUT`] for reads and writes.
pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to hexreg serve");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

// ---------------------------------------------------------------------------------------------
// HTTP client

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lowercased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A whole `Connection: close` response: everything after the head is the body.
    pub fn parse_whole(bytes: &[u8]) -> HttpResponse {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(bytes)));
        let (status, headers) = parse_head(&bytes[..end]);
        HttpResponse {
            status,
            headers,
            body: bytes[end + 4..].to_vec(),
        }
    }

    /// One response from a keep-alive connection; the body length comes from Content-Length
    /// (none for HEAD, 304).
    pub fn read_one(reader: &mut BufReader<TcpStream>, head_request: bool) -> HttpResponse {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            let n = reader.read_until(b'\n', &mut line).expect("read head");
            assert!(n > 0, "connection closed mid-response");
            if line == b"\r\n" {
                break;
            }
            head.extend_from_slice(&line);
        }
        let (status, headers) = parse_head(&head);
        let mut response = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if !head_request && status != 304 {
            let len: usize = response
                .header("content-length")
                .expect("content-length")
                .parse()
                .expect("numeric content-length");
            response.body = vec![0; len];
            reader.read_exact(&mut response.body).expect("read body");
        }
        response
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = std::str::from_utf8(head).expect("ASCII head");
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .map(|line| {
            let (k, v) = line.split_once(':').expect("header line");
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers)
}
