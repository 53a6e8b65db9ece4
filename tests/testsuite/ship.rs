//! What hexreg ships as (issue #26): the static binary of `scripts/static.sh` run in an empty
//! chroot (`--version`, `build`, `verify`, `serve`, `mirror` over plain HTTP and over TLS), the
//! image of `scripts/container.sh` exported and its file system run in a chroot, and the
//! systemd unit and compose file of docs/ parsed.
//!
//! The chroot tests need root and target/static/hexreg (CI runs scripts/static.sh first); they
//! skip with a notice outside CI and fail under CI (`CI` set) when either is missing.

use crate::support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use support::fixtures::private_key;
use support::hexreg_serve::connect;
use support::package::Package;

fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Skips (outside CI) or fails (under CI) with `why`.
fn skip_or_fail(why: &str) {
    assert!(std::env::var("CI").is_err(), "{why}");
    eprintln!("SKIPPED: {why}");
}

/// target/static/hexreg, when it exists and this process may chroot.
fn static_binary() -> Option<PathBuf> {
    let binary = top().join("target/static/hexreg");
    if !binary.is_file() {
        skip_or_fail("target/static/hexreg is missing: run scripts/static.sh");
        return None;
    }
    if !rustix::process::geteuid().is_root() {
        skip_or_fail("the chroot tests need root");
        return None;
    }
    Some(binary)
}

/// `chroot ROOT ARGS...` with an empty environment but `env`.
fn chroot(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("chroot");
    // PATH finds chroot itself; the root has no directory it names.
    cmd.arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/work");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn succeeded(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A server started in a chroot; its port read from its first line, killed when dropped.
struct Chrooted {
    child: Child,
    port: u16,
}

impl Chrooted {
    fn start(mut cmd: Command) -> Chrooted {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let port = first
            .trim_end()
            .rsplit_once("127.0.0.1:")
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || for _ in reader.lines() {});
        Chrooted { child, port }
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        use std::io::{Read, Write};
        let mut stream = connect(self.port);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        let r = support::hexreg_serve::HttpResponse::parse_whole(&bytes);
        (r.status, r.body)
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Chrooted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a certificate for 127.0.0.1 it signs, made with openssl in `dir`: returns the
/// CA's PEM path, the leaf's certificate and key.
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian package openssl)");
        succeeded(out, "openssl");
    };
    fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=hexreg test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

/// Python's HTTPS file server on `dir`, on a free loopback port; killed when dropped.
struct HttpsServer {
    child: Child,
    port: u16,
}

impl HttpsServer {
    fn start(dir: &Path, cert: &Path, key: &Path) -> HttpsServer {
        let script = "import functools, http.server, ssl, sys\n\
            d, cert, key = sys.argv[1:4]\n\
            h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=d)\n\
            h.log_message = lambda *a: None\n\
            s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
            c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
            c.load_cert_chain(cert, key)\n\
            s.socket = c.wrap_socket(s.socket, server_side=True)\n\
            print(s.server_address[1], flush=True)\n\
            s.serve_forever()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(dir)
            .arg(cert)
            .arg(key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("{line:?}"));
        HttpsServer { child, port }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_static_binary_runs_in_an_empty_chroot() {
    let Some(binary) = static_binary() else {
        return;
    };
    let ldd = Command::new("ldd").arg(&binary).output().unwrap();
    let said =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    // No dynamic section at all (not static-pie): ldd's own words for that.
    assert!(said.contains("not a dynamic executable"), "ldd: {said}");
    let elf = Command::new("readelf")
        .args(["-l"])
        .arg(&binary)
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&elf.stdout);
    assert!(
        !headers.contains("INTERP") && !headers.contains("DYNAMIC"),
        "program headers: {headers}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let work = root.join("work");
    fs::create_dir_all(&work).unwrap();
    fs::copy(&binary, root.join("hexreg")).unwrap();
    fs::copy(private_key(), work.join("key.pem")).unwrap();
    let public = work.join("public");
    Package::new("chrooted", "1.0.0").publish(&public);
    // Nothing else in the root: no /etc, no /lib, no /etc/ssl.
    assert_eq!(fs::read_dir(&root).unwrap().count(), 2);

    let version = succeeded(
        chroot(&root, &["/hexreg", "--version"], &[])
            .output()
            .unwrap(),
        "--version",
    );
    assert_eq!(
        version.trim(),
        concat!("hexreg ", env!("CARGO_PKG_VERSION"))
    );
    let key = "--private-key=/work/key.pem";
    let built = succeeded(
        chroot(
            &root,
            &["/hexreg", "build", "/work/public", "--name=acme", key],
            &[],
        )
        .output()
        .unwrap(),
        "build",
    );
    assert!(built.contains("creating /work/public/names"), "{built}");
    let verified = succeeded(
        chroot(
            &root,
            &["/hexreg", "verify", "/work/public", "--name=acme"],
            &[],
        )
        .output()
        .unwrap(),
        "verify",
    );
    assert!(
        verified.starts_with("ok: 1 packages, 1 releases"),
        "{verified}"
    );

    // serve, answering its health route and the registry's files.
    let server = Chrooted::start(chroot(
        &root,
        &["/hexreg", "serve", "/work/public", "--bind", "127.0.0.1:0"],
        &[],
    ));
    assert_eq!(server.get("/-/health"), (200, b"ok\n".to_vec()));
    assert_eq!(server.get("/-/ready").0, 200);
    assert_eq!(server.get("/names").0, 200);

    // mirror over plain HTTP from the chrooted server.
    let from = format!("http://127.0.0.1:{}", server.port);
    let upstream_key = "--upstream-key=/work/public/public_key";
    let mirrored = chroot(
        &root,
        &[
            "/hexreg",
            "mirror",
            "/work/mirror",
            "--from",
            &from,
            "--upstream-name=acme",
            upstream_key,
        ],
        &[],
    )
    .output()
    .unwrap();
    succeeded(mirrored, "mirror over http");
    assert!(work.join("mirror/tarballs/chrooted-1.0.0.tar").is_file());
    assert!(server.stop().success());

    // mirror over TLS, from an HTTPS server whose certificate a test CA signs.
    let certs = tmp.path().join("certs");
    fs::create_dir(&certs).unwrap();
    let (ca, cert, cert_key) = test_ca(&certs);
    fs::copy(&ca, work.join("ca.pem")).unwrap();
    let https = HttpsServer::start(&public, &cert, &cert_key);
    let from = format!("https://127.0.0.1:{}", https.port);
    let mirror_tls = |dest: &str, env: &[(&str, &str)]| {
        chroot(
            &root,
            &[
                "/hexreg",
                "mirror",
                dest,
                "--from",
                &from,
                "--upstream-name=acme",
                upstream_key,
                "--retries=0",
            ],
            env,
        )
        .output()
        .unwrap()
    };
    // With the CA given the way the system's roots are (SSL_CERT_FILE): verified and mirrored.
    succeeded(
        mirror_tls("/work/mirror-tls", &[("SSL_CERT_FILE", "/work/ca.pem")]),
        "mirror over https",
    );
    assert!(
        work.join("mirror-tls/tarballs/chrooted-1.0.0.tar")
            .is_file()
    );
    // Without it, in a root without /etc/ssl, the roots in use are the bundled ones: the
    // connection is refused for its unknown issuer, not for an empty root store (which is
    // what rustls-platform-verifier says when the system has no roots and none are bundled).
    // This proves the bundled roots are loaded, not that hex.pm itself is reachable (no
    // network here).
    let refused = mirror_tls("/work/mirror-refused", &[]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !err.contains("No CA certificates were loaded"),
        "no roots in the static binary: {err}"
    );
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[test]
fn the_container_image_runs_from_its_exported_file_system() {
    let Some(_binary) = static_binary() else {
        return;
    };
    let podman_found = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !podman_found {
        skip_or_fail("podman is missing (Debian package podman; .ci/run installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let podman_root = tmp.path().join("podman");
    let tag = "localhost/hexreg-test:latest";
    let built = Command::new(top().join("scripts/container.sh"))
        .arg(tag)
        .env("PODMAN_ROOT", &podman_root)
        .output()
        .unwrap();
    succeeded(built, "scripts/container.sh");
    let podman = |args: &[&str]| {
        let out = Command::new("podman")
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "file", "--root"])
            .arg(podman_root.join("storage"))
            .arg("--runroot")
            .arg(podman_root.join("run"))
            .args(args)
            .output()
            .unwrap();
        succeeded(out, &format!("podman {args:?}"))
    };
    let config = podman(&["image", "inspect", tag]);
    for wanted in [
        "\"User\": \"10001:10001\"",
        "\"8000/tcp\"",
        "\"/data\"",
        "\"/hexreg\"",
    ] {
        assert!(config.contains(wanted), "{wanted} not in {config}");
    }
    let id = podman(&["create", tag]).trim().to_string();
    let tar = tmp.path().join("image.tar");
    podman(&["export", "--output", tar.to_str().unwrap(), &id]);
    podman(&["rm", &id]);
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    succeeded(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&root)
            .output()
            .unwrap(),
        "tar",
    );
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("hexreg:x:10001:10001"), "{passwd}");
    // The registry in the volume, owned by the image's user, built and served as that user.
    let public = root.join("data/public");
    Package::new("imaged", "1.0.0").publish(&public);
    fs::copy(private_key(), root.join("key.pem")).unwrap();
    succeeded(
        Command::new("chown")
            .args(["-R", "10001:10001"])
            .arg(root.join("data"))
            .arg(root.join("key.pem"))
            .output()
            .unwrap(),
        "chown",
    );
    let as_user = |args: &[&str]| {
        let mut cmd = Command::new("chroot");
        cmd.arg("--userspec=10001:10001")
            .arg(&root)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/data");
        cmd
    };
    succeeded(
        as_user(&[
            "/hexreg",
            "build",
            "/data/public",
            "--name=acme",
            "--private-key=/key.pem",
        ])
        .output()
        .unwrap(),
        "build in the image",
    );
    let server = Chrooted::start(as_user(&[
        "/hexreg",
        "serve",
        "/data/public",
        "--bind",
        "127.0.0.1:0",
    ]));
    assert_eq!(server.get("/-/health"), (200, b"ok\n".to_vec()));
    assert_eq!(server.get("/-/ready").0, 200);
    assert_eq!(server.get("/names").0, 200);
    assert!(server.stop().success());
}

#[test]
fn the_systemd_unit_and_the_compose_file_parse() {
    let unit = top().join("docs/hexreg.service");
    let text = fs::read_to_string(&unit).unwrap();
    // INI sections and keys, with what a service needs.
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, _) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE in {}: {line}", unit.display()));
        keys.push(format!("{section}.{}", key.trim()));
    }
    for wanted in [
        "Unit.Description",
        "Service.ExecStart",
        "Service.User",
        "Service.KillSignal",
        "Service.Environment",
        "Install.WantedBy",
    ] {
        assert!(
            keys.iter().any(|k| k == wanted),
            "{wanted} missing: {keys:?}"
        );
    }
    // systemd's own check, when it is here (it needs the binary at ExecStart's path, so only
    // the syntax warnings are looked at).
    if let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
    {
        let err = String::from_utf8_lossy(&out.stderr);
        for line in err.lines() {
            assert!(
                !line.contains("Unknown key")
                    && !line.contains("Unknown section")
                    && !line.contains("Invalid"),
                "systemd-analyze: {err}"
            );
        }
    }

    let compose = top().join("docs/compose.yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml\n\
             c = yaml.safe_load(open(sys.argv[1]))\n\
             s = c['services']\n\
             assert 'hexreg' in s, s\n\
             h = s['hexreg']\n\
             assert h['command'][0] == 'serve', h\n\
             assert any('8000' in str(p) for p in h['ports']), h\n\
             assert any('/data' in str(v) for v in h['volumes']), h\n\
             print('ok')\n",
        ])
        .arg(&compose)
        .output()
        .unwrap();
    let stdout = succeeded(out, "python3 yaml");
    assert_eq!(stdout.trim(), "ok");
}
