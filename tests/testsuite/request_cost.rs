//! What one request costs `hexreg serve`, measured on the server process itself and bounded:
//! its peak memory (`VmHWM` of /proc/PID/status) while 16 clients fetch files and missing files
//! of a docs archive that inflates to 120 MiB, and the bytes it reads (`rchar` of
//! /proc/PID/io) for the package list, a search and a package page of a registry of 5,000
//! packages. The bounds are those a regression to "inflate the archive per request" or "read
//! every tarball for the list" breaks by far (2 GB and tens of MB were measured before), not
//! timings.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use support::hexreg_serve::{Server, connect};
use support::package::Package;
use support::run::build_with;

/// A field (`VmHWM:`, `rchar:`) of a /proc file of `pid`, in the file's unit.
fn proc_field(pid: u32, file: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).expect("/proc file");
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/{file}"))
}

/// The server's peak resident memory, in bytes.
fn peak_memory(server: &Server) -> u64 {
    proc_field(server.pid(), "status", "VmHWM:") * 1024
}

/// Bytes the server has read (files and sockets alike).
fn bytes_read(server: &Server) -> u64 {
    proc_field(server.pid(), "io", "rchar:")
}

/// GETs `path` on a connection of its own, reading the body in small pieces without keeping
/// it; returns the status and the body's length.
fn get_counting(port: u16, path: &str) -> (u16, u64) {
    let mut stream = connect(port);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        if line.trim_end().is_empty() {
            break;
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut buf).expect("body");
        if n == 0 {
            break;
        }
        len += n as u64;
    }
    (status, len)
}

const BOMB_FILE: u64 = 120 * 1024 * 1024;

/// A docs tarball of ~120 KB holding `index.html` and `big.bin`, 120 MiB of zeros once
/// inflated (written through the encoder: the test never holds it either).
fn docs_bomb(path: &Path) {
    let file = std::fs::File::create(path).expect("create");
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut builder = tar::Builder::new(gz);
    let index = b"<h1>bomb</h1>";
    let mut header = tar::Header::new_gnu();
    header.set_size(index.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "index.html", &index[..])
        .expect("append");
    let mut header = tar::Header::new_gnu();
    header.set_size(BOMB_FILE);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "big.bin", std::io::repeat(0).take(BOMB_FILE))
        .expect("append");
    builder
        .into_inner()
        .expect("tar")
        .finish()
        .expect("gzip")
        .sync_all()
        .expect("sync");
}

#[test]
fn a_docs_bomb_costs_16_clients_bounded_memory() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let public = tmp.path().join("public");
    Package::new("acme_bomb", "1.0.0").publish(&public);
    build_with(tmp.path(), &[]);
    std::fs::create_dir_all(public.join("docs")).expect("mkdir");
    let bomb = public.join("docs/acme_bomb-1.0.0.tar.gz");
    docs_bomb(&bomb);
    assert!(std::fs::metadata(&bomb).expect("bomb").len() < 1024 * 1024);
    let server = Server::start(&public, &[], &[]);
    let before = peak_memory(&server);

    let port = server.port;
    let clients: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for path in [
                    "/-/docs/acme_bomb/1.0.0/big.bin",
                    "/-/docs/acme_bomb/latest/missing.html",
                    "/-/docs/acme_bomb/1.0.0/",
                ] {
                    got.push((path, get_counting(port, path)));
                }
                (i, got)
            })
        })
        .collect();
    for client in clients {
        let (i, got) = client.join().expect("client");
        for (path, (status, len)) in got {
            match path {
                "/-/docs/acme_bomb/1.0.0/big.bin" => {
                    assert_eq!((status, len), (200, BOMB_FILE), "client {i}: {path}")
                }
                "/-/docs/acme_bomb/latest/missing.html" => {
                    assert_eq!(status, 404, "client {i}: {path}")
                }
                _ => assert_eq!((status, len), (200, 13), "client {i}: {path}"),
            }
        }
    }
    let peak = peak_memory(&server);
    eprintln!(
        "docs bomb: server peak memory {} MB before, {} MB after 16 clients × 120 MiB",
        before / 1_000_000,
        peak / 1_000_000
    );
    // Inflating per request took 265 MB for one request and 2.12 GB for 16.
    assert!(
        peak < 150 * 1_000_000,
        "peak memory {peak} bytes serving a 120 MiB docs archive to 16 clients"
    );
}

#[test]
fn links_inside_docs_on_disk_are_never_served() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let public = tmp.path().join("public");
    Package::new("acme_link", "1.0.0").publish(&public);
    build_with(tmp.path(), &[]);
    std::fs::create_dir_all(public.join("docs")).expect("mkdir");
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "SECRET").expect("secret");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "index.html", &b"ok"[..])
        .expect("append");
    for (kind, name) in [
        (tar::EntryType::Symlink, "soft.html"),
        (tar::EntryType::Link, "hard.html"),
    ] {
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(kind);
        link.set_size(0);
        builder.append_link(&mut link, name, &secret).expect("link");
    }
    std::fs::write(
        public.join("docs/acme_link-1.0.0.tar.gz"),
        support::bytes::gzip(&builder.into_inner().expect("tar")),
    )
    .expect("docs");
    let server = Server::start(&public, &[], &[]);
    assert_eq!(server.get("/-/docs/acme_link/1.0.0/").status, 200);
    for path in ["soft.html", "hard.html"] {
        let response = server.get(&format!("/-/docs/acme_link/1.0.0/{path}"));
        assert_eq!(response.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&response.body).contains("SECRET"));
    }
}

const PACKAGES: usize = 5000;

#[test]
fn pages_of_5000_packages_read_no_tarball() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let public = tmp.path().join("public");
    // Each tarball carries 4 KiB that does not compress: 20 MB of tarballs in all.
    let mut tarball_bytes = 0u64;
    for i in 0..PACKAGES {
        let noise: Vec<u8> = (0..4096u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i as u32 * 7919) >> 13) as u8)
            .collect();
        let path = Package::new(&format!("acme_{i:04}"), "1.0.0")
            .metadata_term("description", &format!("<<\"package number {i}\">>"))
            .file("priv/noise.bin", &noise)
            .publish(&public);
        tarball_bytes += std::fs::metadata(path).expect("tarball").len();
    }
    build_with(tmp.path(), &[]);
    let versions_size = std::fs::metadata(public.join("versions"))
        .expect("versions")
        .len();
    let server = Server::start(&public, &[], &[]);
    // The first list reads and verifies `versions` once.
    let before = bytes_read(&server);
    let first = server.get("/");
    assert_eq!(first.status, 200);
    let first_read = bytes_read(&server) - before;
    assert!(
        first_read < versions_size + 256 * 1024,
        "the first list read {first_read} bytes (versions is {versions_size})"
    );
    let body = String::from_utf8_lossy(&first.body).into_owned();
    assert!(body.contains(&format!("{PACKAGES} packages")));
    assert!(body.contains("page 1 of 50"), "not paged");
    assert_eq!(body.matches("<li>").count(), 100);

    // Then the list, its pages and a search read nothing but the requests.
    let mut list_read = 0;
    for path in ["/", "/?page=50", "/?q=acme_499", "/?q=nothing+at+all"] {
        let before = bytes_read(&server);
        let response = server.get(path);
        let read = bytes_read(&server) - before;
        assert_eq!(response.status, 200, "{path}");
        assert!(read < 16 * 1024, "{path} read {read} bytes");
        list_read = list_read.max(read);
    }
    let searched = String::from_utf8_lossy(&server.get("/?q=acme_499").body).into_owned();
    assert!(searched.contains("/-/packages/acme_4999"));
    assert!(searched.contains("10 of 5000 packages"), "{searched}");

    // A package page reads its own record and its latest tarball once, then neither.
    let one_tarball = tarball_bytes / PACKAGES as u64;
    let before = bytes_read(&server);
    let package = server.get("/-/packages/acme_1234");
    let package_read = bytes_read(&server) - before;
    assert_eq!(package.status, 200);
    assert!(String::from_utf8_lossy(&package.body).contains("package number 1234"));
    assert!(
        package_read < 2 * one_tarball + 64 * 1024,
        "a package page read {package_read} bytes (a tarball is {one_tarball})"
    );
    let before = bytes_read(&server);
    assert_eq!(server.get("/-/packages/acme_1234/1.0.0").status, 200);
    let read = bytes_read(&server) - before;
    assert!(
        read < one_tarball,
        "a cached version page read {read} bytes"
    );
    eprintln!(
        "{PACKAGES} packages ({tarball_bytes} bytes of tarballs): bytes read by the server: first list {first_read}, list and search after {list_read} at most, first package page {package_read}, cached version page {read}"
    );

    // HTML pages carry an ETag and answer 304 to it.
    let etag = first.header("etag").expect("an ETag").to_string();
    let again = server.request("GET", "/", &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let other = server.request("GET", "/?page=2", &[("If-None-Match", &etag)]);
    assert_eq!(other.status, 200);
}

/// The figures of `docs/performance.md` at 100 and 20,000 packages (issue #22's point 5): what
/// the server reads for the list and a package page does not grow with the registry (the
/// first list reads the signed `versions` once). Prints them with `--nocapture`.
#[test]
fn page_costs_at_100_and_20000_packages() {
    let mut figures = Vec::new();
    for packages in [100usize, 20_000] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let public = tmp.path().join("public");
        for i in 0..packages {
            Package::new(&format!("acme_{i:05}"), "1.0.0")
                .metadata_term("description", &format!("<<\"package number {i}\">>"))
                .publish(&public);
        }
        build_with(tmp.path(), &[]);
        let server = Server::start(&public, &[], &[]);
        let read = |path: &str| {
            let before = bytes_read(&server);
            assert_eq!(server.get(path).status, 200, "{path}");
            bytes_read(&server) - before
        };
        let first_list = read("/");
        let list = read("/");
        let search = read("/?q=acme_00042");
        let package = read("/-/packages/acme_00042");
        let version = read("/-/packages/acme_00042/1.0.0");
        // The list after its first read, and a package page, cost the same at any size.
        assert!(
            first_list < 1024 * 1024,
            "{packages}: first list {first_list}"
        );
        assert!(
            list < 16 * 1024 && search < 16 * 1024,
            "{packages}: {list} {search}"
        );
        figures.push((packages, first_list, list, search, package, version));
    }
    let (small, large) = (&figures[0], &figures[1]);
    assert!(
        large.4 <= 2 * small.4 && large.5 <= 2 * small.5.max(1024),
        "a package page costs the same at 100 and 20,000 packages: {figures:?}"
    );
    for (n, first, list, search, package, version) in &figures {
        eprintln!(
            "{n} packages: first GET / {first} bytes, GET / after {list}, search {search}, first package page {package}, version page {version}"
        );
    }
}
