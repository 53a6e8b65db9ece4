//! End-to-end tests with a real client: rebar3 resolves, downloads and compiles packages from
//! a registry served over loopback HTTP.
//!
//! rebar3 is the client that checks the most: it verifies the registry signature and the
//! repository/package names, requires `outer_checksum` on every release, verifies downloaded
//! tarballs against it, unpacks them with hex_core and compiles them.
//!
//! The tests are skipped (with a message on stderr) only when `rebar3` is not on PATH; CI
//! (`.ci/run`) installs it. rebar3 runs fully isolated from the user's home and caches: every
//! directory it reads or writes lives in a per-test temporary directory.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::fixtures::{fixtures, private_key};
use support::hexreg_serve::Server;
use support::rebar3::{isolated, rebar3_or_skip};
use support::run::{hexreg, key_arg, private_key_arg, run_build};
use support::static_server::StaticServer;

/// A hung rebar3 is killed after this long so the test fails instead of blocking CI.
const REBAR3_TIMEOUT: Duration = Duration::from_secs(120);

/// The rebar3-built packages of the fixture corpus: acme_erl depends on `acme_erl_base ~> 0.1`.
const TARBALLS: [&str; 3] = [
    "acme_erl-0.1.0.tar",
    "acme_erl-0.2.0.tar",
    "acme_erl_base-0.1.0.tar",
];

/// What `rebar.lock` must pin: name, version, inner checksum (the tarball's `CHECKSUM` entry)
/// and outer checksum (SHA-256 of the fixture tarball file).
const LOCKED: [(&str, &str, &str, &str); 2] = [
    (
        "acme_erl",
        "0.2.0",
        "FB45559110CF085E0E074FBAE28206FAC97DA70F42750C1D253C2EAA5E93A741",
        "06D18CBA7F8A11262A823533F289084C1D68366827C81A877A0935C381C2BF99",
    ),
    (
        "acme_erl_base",
        "0.1.0",
        "B2B9EAFF48A3CA2434C42E583DF1296E75E12482A1F03AEBC2B6A644382E55E9",
        "F1C252663B9EBB4305154AA05343F25CBDB51E303EC9E0038A04C0332B95CB20",
    ),
];

fn copy_dir_all(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
    for entry in fs::read_dir(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display())) {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir_all(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

fn copy_tarballs(public: &Path) {
    support::fixtures::copy_tarballs(public, &TARBALLS);
}

/// PUBLIC_DIR as the real `mix hex.registry build` left it (all 14 packages' resources; only the
/// three rebar3 tarballs are present, which is all this client will ask for).
fn genuine_registry(public: &Path) {
    copy_dir_all(&fixtures().join("full/expected"), public);
    copy_tarballs(public);
}

/// PUBLIC_DIR (named `public`: hexreg runs in its parent) built by this project's binary from
/// the three rebar3 tarballs.
fn hexreg_registry(public: &Path) {
    copy_tarballs(public);
    let out = run_build(public.parent().unwrap(), &private_key(), &[]);
    assert!(
        out.status.success(),
        "hexreg build failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for resource in ["public_key", "names", "versions", "packages/acme_erl"] {
        assert!(
            public.join(resource).is_file(),
            "hexreg build did not write {resource}"
        );
    }
}

/// Erlang string literal body: escape backslash and double quote.
fn erl_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Writes a throwaway rebar3 application depending on `acme_erl ~> 0.2` from repo `acme` only.
fn write_project(dir: &Path, repo_url: &str, public_key_pem: &str) {
    fs::create_dir_all(dir.join("src")).unwrap();
    let config = format!(
        "{{deps, [{{acme_erl, \"~> 0.2\"}}]}}.\n\
         {{hex, [{{repos, replace, [#{{name => <<\"acme\">>,\n\
         \x20                              repo_url => <<\"{url}\">>,\n\
         \x20                              repo_public_key => <<\"{key}\">>}}]}}]}}.\n",
        url = erl_string(repo_url),
        key = erl_string(public_key_pem),
    );
    fs::write(dir.join("rebar.config"), config).unwrap();
    fs::write(
        dir.join("src/myapp.app.src"),
        "{application, myapp,\n [{description, \"hexreg rebar3 client test\"},\n  \
         {vsn, \"0.1.0\"},\n  {registered, []},\n  \
         {applications, [kernel, stdlib, acme_erl]},\n  {env, []},\n  {modules, []}]}.\n",
    )
    .unwrap();
    fs::write(
        dir.join("src/myapp.erl"),
        "-module(myapp).\n-export([hello/0]).\n\nhello() -> ok.\n",
    )
    .unwrap();
}

struct Rebar3Run {
    /// `None` when rebar3 was killed after [`REBAR3_TIMEOUT`].
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Rebar3Run {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn report(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {REBAR3_TIMEOUT:?} (hung)"),
        };
        format!(
            "rebar3 compile: {status}\n--- rebar3 stdout\n{}\n--- rebar3 stderr\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `rebar3 compile` in `project` with an environment that contains nothing of the
/// caller's: HOME, caches, global config and TMPDIR all point into `sandbox`.
fn rebar3_compile(rebar3: &Path, sandbox: &Path, project: &Path) -> Rebar3Run {
    let stdout_path = sandbox.join("rebar3.stdout");
    let stderr_path = sandbox.join("rebar3.stderr");

    let mut cmd = isolated(rebar3, sandbox);
    cmd.arg("compile")
        .current_dir(project)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(&stderr_path).unwrap());
    let mut child = cmd.spawn().expect("spawn rebar3");

    let deadline = Instant::now() + REBAR3_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for rebar3") {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    Rebar3Run {
        status,
        stdout: fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

fn beams(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "beam"))
                .collect()
        })
        .unwrap_or_default()
}

/// Serves `public`, points a fresh rebar3 project at it with `public_key_pem` and compiles.
/// Returns the run, the server (for its request log) and the project dir.
fn compile_against(
    rebar3: &Path,
    sandbox: &Path,
    public: &Path,
    public_key_pem: &str,
) -> (Rebar3Run, StaticServer, PathBuf) {
    let server = StaticServer::start(public);
    let project = sandbox.join("myapp");
    write_project(&project, &server.url, public_key_pem);
    let run = rebar3_compile(rebar3, sandbox, &project);
    (run, server, project)
}

/// Full success check: compiled deps, lock file, and what the server was asked for.
fn assert_rebar3_accepts(rebar3: &Path, sandbox: &Path, public: &Path) {
    let public_key = fs::read_to_string(public.join("public_key")).expect("read public_key");
    let (run, server, project) = compile_against(rebar3, sandbox, public, &public_key);
    let report = || {
        format!(
            "{}\n--- requests served\n{:#?}",
            run.report(),
            server.requested_paths()
        )
    };

    assert!(run.succeeded(), "rebar3 compile failed\n{}", report());

    let lib = project.join("_build/default/lib");
    assert!(
        lib.join("acme_erl/ebin/acme_erl.beam").is_file(),
        "acme_erl.beam not built\n{}",
        report()
    );
    assert!(
        !beams(&lib.join("acme_erl_base/ebin")).is_empty(),
        "no acme_erl_base beam built\n{}",
        report()
    );
    assert!(
        lib.join("acme_erl/ebin/acme_erl.app").is_file(),
        "acme_erl.app not built\n{}",
        report()
    );

    // rebar 3.19 writes e.g. `{<<"acme_erl">>,{pkg,<<"acme_erl">>,<<"0.2.0">>},0}` (no repo in
    // the lock; other versions may append `<<"acme">>`), then `pkg_hash` (inner checksums) and
    // `pkg_hash_ext` (outer checksums) as uppercase hex, both taken from the registry.
    let lock = fs::read_to_string(project.join("rebar.lock")).expect("read rebar.lock");
    let lock_flat = lock
        .split_whitespace()
        .collect::<String>()
        .to_ascii_uppercase();
    for (name, version, inner, outer) in LOCKED {
        let entry = format!("{{PKG,<<\"{name}\">>,<<\"{version}\">>").to_ascii_uppercase();
        assert!(
            lock_flat.contains(&entry),
            "rebar.lock does not lock {name} {version}:\n{lock}\n{}",
            report()
        );
        for (what, hash) in [("inner (pkg_hash)", inner), ("outer (pkg_hash_ext)", outer)] {
            let entry = format!("{{<<\"{name}\">>,<<\"{hash}\">>}}").to_ascii_uppercase();
            assert!(
                lock_flat.contains(&entry),
                "rebar.lock lacks the {what} checksum {hash} of {name}:\n{lock}\n{}",
                report()
            );
        }
    }

    let requested = server.requested_paths();
    for path in [
        "/packages/acme_erl",
        "/packages/acme_erl_base",
        "/tarballs/acme_erl-0.2.0.tar",
        "/tarballs/acme_erl_base-0.1.0.tar",
    ] {
        assert!(
            requested.iter().any(|p| p == path),
            "rebar3 never requested {path}\n{}",
            report()
        );
    }
}

#[test]
fn rebar3_accepts_genuine_task_output() {
    let Some(rebar3) = rebar3_or_skip("rebar3_accepts_genuine_task_output") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    genuine_registry(&public);
    assert_rebar3_accepts(&rebar3, tmp.path(), &public);
}

#[test]
fn rebar3_accepts_hexreg_registry() {
    let Some(rebar3) = rebar3_or_skip("rebar3_accepts_hexreg_registry") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    hexreg_registry(&public);
    assert_rebar3_accepts(&rebar3, tmp.path(), &public);
}

/// rebar3 configured with the public key of `other_private_key.pem` must refuse `public`
/// (signed with `private_key.pem`): compile fails, nothing downloaded, nothing compiled.
fn assert_rebar3_refuses_other_key(rebar3: &Path, sandbox: &Path, public: &Path) {
    let other_key = fs::read_to_string(fixtures().join("other_public_key.pem"))
        .expect("read fixtures/other_public_key.pem");
    let (run, server, project) = compile_against(rebar3, sandbox, public, &other_key);
    let requested = server.requested_paths();
    let report = format!("{}\n--- requests served\n{requested:#?}", run.report());

    assert!(
        run.status.is_some(),
        "rebar3 hung instead of failing\n{report}"
    );
    assert!(
        !run.succeeded(),
        "rebar3 accepted a registry signed by another key\n{report}"
    );
    assert!(
        !project
            .join("_build/default/lib/acme_erl/ebin/acme_erl.beam")
            .exists(),
        "acme_erl was compiled despite the bad signature\n{report}"
    );
    // It did get the package resource (so it failed on verification, not on a 404) and never
    // went on to download a tarball.
    assert!(
        requested.iter().any(|p| p == "/packages/acme_erl"),
        "rebar3 never requested /packages/acme_erl\n{report}"
    );
    assert!(
        !requested.iter().any(|p| p.starts_with("/tarballs/")),
        "rebar3 downloaded a tarball from an unverified registry\n{report}"
    );
}

/// Proves the negative harness on the genuine task output.
#[test]
fn rebar3_refuses_genuine_output_with_another_key() {
    let Some(rebar3) = rebar3_or_skip("rebar3_refuses_genuine_output_with_another_key") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    genuine_registry(&public);
    assert_rebar3_refuses_other_key(&rebar3, tmp.path(), &public);
}

#[test]
fn rebar3_refuses_registry_signed_by_another_key() {
    let Some(rebar3) = rebar3_or_skip("rebar3_refuses_registry_signed_by_another_key") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    hexreg_registry(&public);
    assert_rebar3_refuses_other_key(&rebar3, tmp.path(), &public);
}

#[test]
fn rebar3_compiles_through_hexreg_serve_with_credentials() {
    let Some(rebar3) = rebar3_or_skip("rebar3_compiles_through_hexreg_serve_with_credentials")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    hexreg_registry(&public);
    let public_key = fs::read_to_string(public.join("public_key")).unwrap();
    // Basic auth `ci:s3cret` from HEXREG_AUTH.
    let server = Server::start(&public, &["--quiet"], &[("HEXREG_AUTH", "ci:s3cret")]);
    let with_credentials = server.url().replace("http://", "http://ci:s3cret@");

    let project = tmp.path().join("myapp");
    write_project(&project, &with_credentials, &public_key);
    let run = rebar3_compile(&rebar3, tmp.path(), &project);
    assert!(
        run.succeeded(),
        "rebar3 compile through hexreg serve failed\n{}",
        run.report()
    );
    let lib = project.join("_build/default/lib");
    assert!(
        lib.join("acme_erl/ebin/acme_erl.beam").is_file(),
        "{}",
        run.report()
    );
    assert!(
        !beams(&lib.join("acme_erl_base/ebin")).is_empty(),
        "{}",
        run.report()
    );

    // Wrong credentials: the server answers 401 and rebar3 gets nothing.
    let sandbox = tmp.path().join("wrong");
    fs::create_dir_all(&sandbox).unwrap();
    let project = sandbox.join("myapp");
    write_project(
        &project,
        &server.url().replace("http://", "http://ci:wrong@"),
        &public_key,
    );
    let run = rebar3_compile(&rebar3, &sandbox, &project);
    assert!(
        !run.succeeded(),
        "rebar3 must fail with wrong credentials\n{}",
        run.report()
    );
    assert!(
        !project
            .join("_build/default/lib/acme_erl/ebin/acme_erl.beam")
            .exists()
    );
}

/// hex_core, the registry client inside rebar3 and (as `mix_hex_*`) inside mix, reads back a
/// retirement written by `hexreg retire`: rebar3's own copy (`r3_hex_registry`) verifies the
/// signature and decodes `packages/NAME` and `versions`, run in Erlang.
#[test]
fn hex_core_decodes_retirements_hexreg_writes() {
    let Some(rebar3) = rebar3_or_skip("hex_core_decodes_retirements_hexreg_writes") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    hexreg_registry(&public);
    let out = hexreg(
        tmp.path(),
        &[
            "retire",
            "public",
            "acme_erl",
            "0.1.0",
            "--reason=security",
            "--message=CVE-2026-1: use 0.2.0",
            "--name=acme",
            &private_key_arg(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stdout = hex_core_decode(&rebar3, tmp.path(), &public);
    assert!(
        stdout.contains("retired=>#{message=><<\"CVE-2026-1:use0.2.0\">>,reason=>'RETIRED_SECURITY'},version=><<\"0.1.0\">>"),
        "{stdout}"
    );
    assert!(stdout.contains("retired=>[0]"), "{stdout}");
}

/// What rebar3's own copy of hex_core (`r3_hex_registry`, run in Erlang) makes of
/// `packages/acme_erl` and `versions` in `public`, signatures verified: the two decoded terms,
/// printed with `~p`, whitespace removed. Fails unless both decode.
fn hex_core_decode(rebar3: &Path, dir: &Path, public: &Path) -> String {
    let beams = dir.join("rebar3-beams");
    let script = format!(
        r#"
{{ok, Sections}} = escript:extract("{rebar3}", []),
{{archive, Archive}} = lists:keyfind(archive, 1, Sections),
{{ok, _}} = zip:extract(Archive, [{{cwd, "{beams}"}}]),
true = code:add_path("{beams}/rebar/ebin"),
{{ok, Pem}} = file:read_file("{public}/public_key"),
Open = fun(Rel) ->
    {{ok, Gz}} = file:read_file("{public}/" ++ Rel),
    {{ok, Payload}} = r3_hex_registry:decode_and_verify_signed(zlib:gunzip(Gz), Pem),
    Payload
end,
io:format("~p~n", [r3_hex_registry:decode_package(Open("packages/acme_erl"), <<"acme">>, <<"acme_erl">>)]),
io:format("~p~n", [r3_hex_registry:decode_versions(Open("versions"), <<"acme">>)]),
halt().
"#,
        rebar3 = rebar3.display(),
        beams = beams.display(),
        public = public.display(),
    );
    let out = Command::new("erl")
        .args(["-noshell", "-eval", &script])
        .output()
        .expect("run erl (installed with rebar3)");
    let stdout = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<String>();
    assert!(
        out.status.success() && stdout.starts_with("{ok,") && stdout.contains("}{ok,"),
        "erl failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A registry with Hex 2.5's fields (release dates, an advisory, a policy): rebar3 3.19's
/// hex_core 0.7.1 predates them. It still verifies and decodes `packages/NAME` and `versions`
/// (its gpb decoder skips the fields it does not know: the test shows which it knows), and
/// resolves, downloads and compiles from the registry.
#[test]
fn rebar3_accepts_registry_with_hex_2_5_fields() {
    let Some(rebar3) = rebar3_or_skip("rebar3_accepts_registry_with_hex_2_5_fields") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    copy_tarballs(&public);
    let key = private_key_arg();
    for args in [
        vec!["build", "public", "--published-at"],
        vec![
            "advisory",
            "add",
            "public",
            "acme_erl",
            "--id=GHSA-test",
            "--summary=test advisory",
            "--url=https://example.com/GHSA-test",
            "--severity=medium",
            "--affects=< 0.2.0",
        ],
        vec!["policy", "set", "public", "strict", "--cooldown=7d"],
    ] {
        let mut args = args;
        args.extend(["--name=acme", key.as_str()]);
        let out = hexreg(tmp.path(), &args);
        assert!(
            out.status.success(),
            "hexreg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = hex_core_decode(&rebar3, tmp.path(), &public);
    assert!(stdout.contains("version=><<\"0.1.0\">>"), "{stdout}");
    assert!(stdout.contains("version=><<\"0.2.0\">>"), "{stdout}");
    // 0.7.1 knows none of the new fields: they are skipped, not misread.
    for field in [
        "published_at",
        "advisories",
        "advisory_indexes",
        "with_advisories",
    ] {
        assert!(
            !stdout.contains(field),
            "hex_core 0.7.1 decoded {field}: {stdout}"
        );
    }
    assert_rebar3_accepts(&rebar3, tmp.path(), &public);
}

/// `hexreg mirror --only acme_erl:~> 0.2` of an upstream served by `hexreg serve` (its key
/// given in SPKI form, as hex.pm's is), re-signed with another key: rebar3 resolves, checks
/// and compiles acme_erl and its dependency from the mirror alone.
#[test]
fn rebar3_compiles_through_a_filtered_mirror() {
    let Some(rebar3) = rebar3_or_skip("rebar3_compiles_through_a_filtered_mirror") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let public = tmp.path().join("public");
    // A package outside the selection, which the mirror must leave out.
    support::fixtures::copy_tarballs(&public, &["acme_a-1.0.0.tar"]);
    hexreg_registry(&public);
    let spki = tmp.path().join("upstream.pem");
    fs::write(
        &spki,
        support::fixtures::public_key().to_pem(hexreg::format::signing::PublicKeyFormat::Spki),
    )
    .unwrap();
    let upstream = Server::start(&public, &["--quiet"], &[]);
    let out = hexreg(
        tmp.path(),
        &[
            "mirror",
            "mirror",
            "--from",
            &upstream.url(),
            "--upstream-name=acme",
            &format!("--upstream-key={}", spki.display()),
            "--only=acme_erl:~> 0.2",
            "--name=acme",
            &key_arg(&support::fixtures::other_private_key()),
        ],
    );
    assert!(
        out.status.success(),
        "hexreg mirror failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mirror = tmp.path().join("mirror");
    assert!(mirror.join("tarballs/acme_erl-0.2.0.tar").is_file());
    assert!(mirror.join("tarballs/acme_erl_base-0.1.0.tar").is_file());
    assert!(!mirror.join("tarballs/acme_erl-0.1.0.tar").exists());
    assert!(!mirror.join("packages/acme_a").exists());
    assert_ne!(
        fs::read(mirror.join("public_key")).unwrap(),
        fs::read(public.join("public_key")).unwrap(),
        "the mirror is signed with its own key"
    );
    let sandbox = tmp.path().join("client");
    fs::create_dir_all(&sandbox).unwrap();
    assert_rebar3_accepts(&rebar3, &sandbox, &mirror);
}
