//! Release history an operator can trust: the replace window, replaces that keep retirements,
//! identical re-publishes, URL and tarball agreement, names checked before storage, scoped
//! keys, keys that fail closed, the audit trail and bounded lock waits; with a raw client and
//! with rebar3's hex_core.

use super::*;

/// Makes release `name`-`version` look published `age_secs` ago: the time hexreg recorded when
/// it first indexed it is set back (what an hour of waiting would do).
fn age(fx: &Fixture, name: &str, version: &str, age_secs: i64) {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let path = fx.public.join(format!(".hexreg/released/{name}-{version}"));
    assert!(path.is_file(), "no first-indexed record {}", path.display());
    fs::write(&path, format!("{}\n", now - age_secs)).unwrap();
}

/// `hexreg audit public ARGS...`, its stdout lines.
fn audit(fx: &Fixture, args: &[&str]) -> Vec<String> {
    let mut all = vec!["audit", "public"];
    all.extend(args);
    ok(&fx.dir, &all).lines().map(str::to_string).collect()
}

fn scoped_key(fx: &Fixture, label: &str, patterns: &str) -> String {
    ok(
        &fx.dir,
        &[
            "key",
            "add",
            "--keys",
            "keys",
            label,
            "--write",
            "--packages",
            patterns,
        ],
    )
    .trim_end()
    .to_string()
}

#[test]
fn replace_window_retirements_identical_republish_and_the_audit_trail() {
    let fx = Fixture::new();
    let server = fx.serve(&["--replace-window", "1h"]);
    let v1 = Package::new("acme_a", "1.0.0").tarball();
    let v1b = Package::new("acme_a", "1.0.0")
        .file("src/b.erl", "-module(b).\n")
        .tarball();
    let v1c = Package::new("acme_a", "1.0.0")
        .file("src/c.erl", "-module(c).\n")
        .tarball();
    assert_eq!(publish(&server, &fx.writer, v1.clone()).status, 201);
    // The same bytes: 200 (a retry after a timeout), nothing changes.
    let before = fx.snapshot();
    assert_eq!(publish(&server, &fx.writer, v1.clone()).status, 200);
    assert_eq!(fx.snapshot(), before);

    // Retired as security, then replaced within the window: 200, still retired, and dated
    // again (a cooldown starts again).
    let r = req("POST", "/api/packages/acme_a/releases/1.0.0/retire")
        .key(&fx.writer)
        .erlang()
        .body(retire_body("security", "CVE-2026-9"))
        .send(&server);
    assert_eq!(r.status, 204);
    let r = req("POST", "/api/packages/acme_a/releases?replace=true")
        .key(&fx.writer)
        .erlang()
        .tarball(v1b.clone())
        .send(&server);
    assert_eq!(r.status, 200, "{:?}", term(&r));
    let got = term(
        &req("GET", "/api/packages/acme_a/releases/1.0.0")
            .key(&fx.reader)
            .erlang()
            .send(&server),
    );
    assert_eq!(text(&got, &["retirement", "reason"]), Some("security"));
    assert_eq!(text(&got, &["retirement", "message"]), Some("CVE-2026-9"));
    fx.assert_sound(1);

    // Two hours later: replace and revert are refused with hex.pm's words; nothing changes.
    age(&fx, "acme_a", "1.0.0", 7200);
    let before = fx.snapshot();
    let r = req("POST", "/api/packages/acme_a/releases?replace=true")
        .key(&fx.writer)
        .erlang()
        .tarball(v1c.clone())
        .send(&server);
    let body = assert_error(&r, 422, "late replace");
    assert_eq!(
        text(&body, &["errors", "inserted_at"]),
        Some("can only modify a release up to one hour after publication")
    );
    let r = req("DELETE", "/api/packages/acme_a/releases/1.0.0")
        .key(&fx.writer)
        .erlang()
        .send(&server);
    let body = assert_error(&r, 422, "late revert");
    assert!(
        text(&body, &["message"]).is_some_and(|m| m.contains("up to one hour after publication")),
        "{body:?}"
    );
    assert_eq!(fx.snapshot(), before);

    // The command line is the operator's: allowed, and audited as cli:USER@HOST.
    let file = fx.dir.join("acme_a-1.0.0.tar");
    fs::write(&file, &v1c).unwrap();
    ok(
        &fx.dir,
        &[
            "add",
            "public",
            file.to_str().unwrap(),
            "--replace",
            "--name",
            REPO,
            &private_key_arg(),
        ],
    );

    // The access log names the key and keeps the query string.
    let log = server.lines();
    assert!(
        log.iter().any(
            |l| l.starts_with("POST /api/packages/acme_a/releases?replace=true 200")
                && l.ends_with(" key=publisher")
        ),
        "{}",
        log.join("\n")
    );

    // The audit trail, oldest first: the fixture's `hexreg build`, then the changes.
    let lines = audit(&fx, &[]);
    assert!(lines[0].contains(" build "), "{lines:#?}");
    let lines = lines[1..].to_vec();
    let actions: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[1], f[3])
        })
        .collect();
    assert_eq!(
        actions[..3],
        [
            ("publisher", "publish"),
            ("publisher", "retire"),
            ("publisher", "replace")
        ],
        "{lines:#?}"
    );
    assert!(
        actions[3].0.starts_with("cli:") && actions[3].1 == "replace",
        "{lines:#?}"
    );
    assert_eq!(
        lines.len(),
        4,
        "refused changes leave no record: {lines:#?}"
    );
    let replace: Vec<&str> = lines[2].split(' ').collect();
    assert!(replace[2].starts_with("127.0.0.1:"), "peer: {}", lines[2]);
    assert_eq!(replace[4..6], ["acme_a", "1.0.0"]);
    assert_eq!(replace[6], hex_upper(&outer_checksum(&v1)));
    assert_eq!(replace[7], hex_upper(&outer_checksum(&v1b)));
    let json = audit(
        &fx,
        &["--json", "--package", "acme_a", "--since", "2000-01-01"],
    );
    assert_eq!(json.len(), 4);
    assert!(
        json[0].contains("\"action\":\"publish\"") && json[0].contains("\"actor\":\"publisher\"")
    );
    assert!(audit(&fx, &["--package", "other"]).is_empty());
    assert!(audit(&fx, &["--since", "2999-01-01"]).is_empty());

    // The trail is never served, on any spelling of its path.
    for path in [
        "/.hexreg/audit",
        "/.hexreg/released/acme_a-1.0.0",
        "/%2ehexreg/released/acme_a-1.0.0",
    ] {
        let r = req("GET", path).key(&fx.reader).send(&server);
        assert_eq!(r.status, 404, "{path}");
    }
}

#[test]
fn a_zero_window_refuses_every_replace_and_revert_unlimited_allows_any() {
    let fx = Fixture::new();
    let v1 = Package::new("acme_z", "1.0.0").tarball();
    let v1b = Package::new("acme_z", "1.0.0")
        .file("src/b.erl", "-module(b).\n")
        .tarball();
    let server = fx.serve(&["--replace-window", "0"]);
    assert_eq!(publish(&server, &fx.writer, v1.clone()).status, 201);
    let r = req("POST", "/api/publish?replace=true")
        .key(&fx.writer)
        .erlang()
        .tarball(v1b.clone())
        .send(&server);
    let body = assert_error(&r, 422, "replace with window 0");
    assert!(text(&body, &["message"]).is_some_and(|m| m.contains("--replace-window 0")));
    let r = req("DELETE", "/api/packages/acme_z/releases/1.0.0")
        .key(&fx.writer)
        .send(&server);
    assert_eq!(r.status, 422);
    drop(server);
    let server = fx.serve(&["--replace-window", "unlimited"]);
    age(&fx, "acme_z", "1.0.0", 10 * 365 * 86_400);
    let r = req("POST", "/api/publish?replace=true")
        .key(&fx.writer)
        .tarball(v1b)
        .send(&server);
    assert_eq!(r.status, 200);
    let r = req("DELETE", "/api/packages/acme_z/releases/1.0.0")
        .key(&fx.writer)
        .send(&server);
    assert_eq!(r.status, 204);
    // A bad window is a usage error naming the flag.
    let out = hexreg(
        &fx.dir,
        &[
            "serve",
            "public",
            "--name",
            REPO,
            "--keys",
            "keys",
            "--replace-window",
            "soon",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replace-window"));
}

#[test]
fn url_and_tarball_must_agree_and_bad_names_are_400_before_storage() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let before = fx.snapshot();
    let r = req("POST", "/api/packages/acme_a/releases")
        .key(&fx.writer)
        .erlang()
        .tarball(Package::new("acme_b", "1.0.0").tarball())
        .send(&server);
    let body = assert_error(&r, 422, "other package");
    let message = text(&body, &["message"]).unwrap();
    assert!(
        message.contains("`acme_a`") && message.contains("`acme_b`"),
        "{message}"
    );
    assert_eq!(fx.snapshot(), before);
    let long = "a".repeat(256);
    let long_version = format!("1.0.0-{}", "b".repeat(250));
    // A tarball whose name or version is too long for a file name is refused as such.
    for (tarball, what) in [
        (
            Package::new(&"a".repeat(201), "1.0.0").tarball(),
            "200 bytes",
        ),
        (Package::new("acme_v", &long_version).tarball(), "too long"),
    ] {
        let r = req("POST", "/api/publish")
            .key(&fx.writer)
            .erlang()
            .tarball(tarball)
            .send(&server);
        let body = assert_error(&r, 422, what);
        let message = text(&body, &["message"]).unwrap();
        assert!(message.contains(what), "{message}");
    }
    assert_eq!(fx.snapshot(), before);
    for (method, path, status) in [
        ("GET", "/api/packages/%2e%2e", 400),
        ("GET", "/api/packages/..", 400),
        ("GET", "/api/packages/Acme", 400),
        ("GET", "/api/packages/acme_a/releases/%2e%2e", 400),
        ("GET", "/api/packages/acme_a/releases/1.0", 400),
        ("DELETE", "/api/packages/%2e/releases/1.0.0", 400),
        ("POST", "/api/packages/%2e%2e/releases/1.0.0/retire", 400),
        ("POST", "/api/packages/.hexreg/releases", 400),
        ("GET", "/api/packages/acme_nope", 404),
        // Names and versions no file system can hold: 400, not the disk's ENAMETOOLONG.
        ("GET", &format!("/api/packages/{long}"), 400),
        (
            "DELETE",
            &format!("/api/packages/{long}/releases/1.0.0"),
            400,
        ),
        (
            "GET",
            &format!("/api/packages/acme_a/releases/{long_version}"),
            400,
        ),
        (
            "POST",
            &format!("/api/packages/acme_a/releases/{long_version}/retire"),
            400,
        ),
    ] {
        let r = req(method, path)
            .key(&fx.writer)
            .erlang()
            .body(Vec::new())
            .send(&server);
        assert_error(&r, status, &format!("{method} {path}"));
    }
    assert_eq!(fx.snapshot(), before);
}

#[test]
fn a_scoped_key_writes_only_its_packages() {
    let fx = Fixture::new();
    let scoped = scoped_key(&fx, "acme-ci", "acme_*,tool");
    let listing = ok(&fx.dir, &["key", "list", "--keys", "keys"]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("acme-ci") && l.ends_with("packages=acme_*,tool")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("publisher") && l.ends_with("packages=*"))
    );
    let out = hexreg(
        &fx.dir,
        &[
            "key",
            "add",
            "--keys",
            "keys",
            "bad",
            "--write",
            "--packages",
            "Acme/*",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--packages"));

    let server = fx.serve(&[]);
    assert_eq!(
        publish(&server, &scoped, Package::new("acme_x", "1.0.0").tarball()).status,
        201
    );
    assert_eq!(
        publish(&server, &scoped, Package::new("tool", "1.0.0").tarball()).status,
        201
    );
    let before = fx.snapshot();
    let r = publish(&server, &scoped, Package::new("other", "1.0.0").tarball());
    let body = assert_error(&r, 403, "out of scope");
    let message = text(&body, &["message"]).unwrap();
    assert!(
        message.contains("`other`") && message.contains("`acme-ci`"),
        "{message}"
    );
    // By the URL too, and for every write route.
    assert_eq!(
        publish(
            &server,
            &fx.writer,
            Package::new("other", "1.0.0").tarball()
        )
        .status,
        201
    );
    let before_other = fx.snapshot();
    for (method, path) in [
        ("POST", "/api/packages/other/releases"),
        ("DELETE", "/api/packages/other/releases/1.0.0"),
        ("POST", "/api/packages/other/releases/1.0.0/retire"),
        ("DELETE", "/api/packages/other/releases/1.0.0/retire"),
        ("POST", "/api/packages/other/releases/1.0.0/docs"),
    ] {
        let r = req(method, path)
            .key(&scoped)
            .erlang()
            .body(Vec::new())
            .send(&server);
        assert_eq!(r.status, 403, "{method} {path}");
    }
    assert_eq!(fx.snapshot(), before_other);
    drop(before);
    // Reads are not limited.
    let r = req("GET", "/api/packages/other").key(&scoped).send(&server);
    assert_eq!(r.status, 200);
}

#[test]
fn keys_fail_closed_and_a_key_works_as_the_basic_password() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let basic = |key: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("browser:{key}"))
        )
    };
    let names = |auth: &str| {
        req("GET", "/names")
            .header("authorization", auth)
            .send(&server)
    };
    assert_eq!(names(&basic(&fx.reader)).status, 200);
    assert_eq!(names(&basic("hexreg_nope")).status, 401);
    let me = req("GET", "/api/users/me")
        .header("authorization", &basic(&fx.writer))
        .send(&server);
    assert_eq!(me.status, 200);

    // A token made from the write key before the file breaks.
    let form = |key: &str| {
        format!("grant_type=client_credentials&client_id=hex&client_secret={key}&scope=api")
    };
    let t = server.post(
        "/api/oauth/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        form(&fx.writer).as_bytes(),
    );
    assert_eq!(t.status, 200);
    let token = format!("Bearer {}", text(&term(&t), &["access_token"]).unwrap());
    assert_eq!(names(&token).status, 200);

    // A typo while revoking: every request that needs a key gets 503 until it is fixed.
    let good = fs::read_to_string(&fx.keys).unwrap();
    let bad_line = good.lines().count() + 1;
    fs::write(&fx.keys, format!("{good}this line is wrong\n")).unwrap();
    let r = until(&server, &req("GET", "/api/users/me").key(&fx.writer), |r| {
        r.status == 503
    });
    let body = assert_error(&r, 503, "broken keys file");
    assert!(text(&body, &["message"]).is_some_and(|m| m.contains("keys file")));
    assert_eq!(names(&fx.reader).status, 503);
    // The file's problem is named to whoever reads the files, too.
    let r = names(&fx.reader);
    let said = String::from_utf8_lossy(&r.body).to_string();
    assert!(said.contains(&format!("line {bad_line}")), "{said}");
    // Tokens die with the file (their key may be the one being revoked), and none is made.
    assert_eq!(names(&token).status, 503);
    let r = req("GET", "/api/users/me")
        .header("authorization", &token)
        .send(&server);
    assert_eq!(r.status, 503);
    let t = server.post(
        "/api/oauth/token",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", ERLANG),
        ],
        form(&fx.writer).as_bytes(),
    );
    assert_error(&t, 503, "token while the keys file is broken");
    assert_eq!(
        publish(
            &server,
            &fx.writer,
            Package::new("acme_k", "1.0.0").tarball()
        )
        .status,
        503
    );
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("the API keys file is broken"))
    );
    // Fixed: keys work again, and so does the token.
    fs::write(&fx.keys, &good).unwrap();
    until(&server, &req("GET", "/api/users/me").key(&fx.writer), |r| {
        r.status == 200
    });
    assert_eq!(names(&token).status, 200);
    // Unreadable: 503 as well.
    fs::set_permissions(
        &fx.keys,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let unreadable = fs::read(&fx.keys).is_err(); // root reads anything
    if unreadable {
        until(&server, &req("GET", "/api/users/me").key(&fx.writer), |r| {
            r.status == 503
        });
    }
    fs::set_permissions(
        &fx.keys,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    until(&server, &req("GET", "/api/users/me").key(&fx.writer), |r| {
        r.status == 200
    });
    // Deleted: no keys at all.
    fs::remove_file(&fx.keys).unwrap();
    until(&server, &req("GET", "/api/users/me").key(&fx.writer), |r| {
        r.status == 401
    });
    assert_eq!(names(&fx.reader).status, 401);

    // --auth with --public-reads is a usage error.
    let out = hexreg(
        &fx.dir,
        &[
            "serve",
            "public",
            "--auth",
            "u:p",
            "--public-reads",
            "--name",
            REPO,
            "--keys",
            "keys",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-reads"));
}

#[test]
fn a_publish_behind_a_held_lock_gets_503_with_retry_after_then_lands() {
    let fx = Fixture::new();
    let server = fx.serve(&["--lock-timeout", "1"]);
    // Another run holds the registry's lock (the directory's flock).
    let held = fs::File::open(&fx.public).unwrap();
    held.lock().unwrap();
    let before = fx.snapshot();
    let r = publish(
        &server,
        &fx.writer,
        Package::new("acme_l", "1.0.0").tarball(),
    );
    let body = assert_error(&r, 503, "behind the lock");
    assert!(text(&body, &["message"]).is_some_and(|m| m.contains("try again")));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(fx.snapshot(), before);
    held.unlock().unwrap();
    let r = publish(
        &server,
        &fx.writer,
        Package::new("acme_l", "1.0.0").tarball(),
    );
    assert_eq!(r.status, 201);
}

const HEX_CORE_TRUST: &str = r#"#!/usr/bin/env escript
main(_) ->
    true = code:add_path("@BEAMS@"),
    {ok, _} = application:ensure_all_started(inets),
    Config = maps:merge(r3_hex_core:default_config(),
                        #{api_url => <<"@API@">>, api_key => <<"@WRITER@">>,
                          repo_name => <<"acme">>}),
    Scoped = Config#{api_key => <<"@SCOPED@">>},
    Tar = fun(File) -> {ok, Bytes} = file:read_file(filename:join("@TARBALLS@", File)), Bytes end,
    Check = fun(Step, Result, Pred) ->
        case catch Pred(Result) of
            true -> io:format("PASS ~s~n", [Step]);
            _ -> io:format("FAIL ~s ~0p~n", [Step, Result])
        end
    end,
    Step = fun(Name) -> io:format("STEP ~s~n", [Name]), io:get_line("") end,
    Check("publish", r3_hex_api_release:publish(Config, Tar("v1.tar")),
        fun({ok, {201, _, _}}) -> true end),
    Check("same bytes", r3_hex_api_release:publish(Config, Tar("v1.tar")),
        fun({ok, {200, _, _}}) -> true end),
    Check("replace within the window", r3_hex_api_release:publish(Config, Tar("v2.tar"), [{replace, true}]),
        fun({ok, {200, _, _}}) -> true end),
    Check("scoped key refused", r3_hex_api_release:publish(Scoped, Tar("other.tar")),
        fun({ok, {403, _, #{<<"message">> := M}}}) ->
            binary:match(M, <<"`other`">>) =/= nomatch andalso binary:match(M, <<"`acme-ci`">>) =/= nomatch end),
    Step("age"),
    Check("replace past the window", r3_hex_api_release:publish(Config, Tar("v3.tar"), [{replace, true}]),
        fun({ok, {422, _, #{<<"errors">> := #{<<"inserted_at">> := <<"can only modify a release up to one hour after publication">>}}}}) -> true end),
    Check("revert past the window", r3_hex_api_release:delete(Config, <<"acme_t">>, <<"1.0.0">>),
        fun({ok, {422, _, _}}) -> true end),
    io:format("DONE~n").
"#;

#[test]
fn hex_core_replaces_within_the_window_is_refused_past_it_and_outside_its_scope() {
    let Some(rebar3) = rebar3_or_skip("hex_core_replaces_within_the_window") else {
        return;
    };
    let fx = Fixture::new();
    let scoped = scoped_key(&fx, "acme-ci", "acme_*");
    let server = fx.serve(&[]);
    let beams = fx.dir.join("rebar3-beams");
    let extract = format!(
        "{{ok, Sections}} = escript:extract(\"{}\", []),\n\
         {{archive, Archive}} = lists:keyfind(archive, 1, Sections),\n\
         {{ok, _}} = zip:extract(Archive, [{{cwd, \"{}\"}}]),\nhalt().",
        rebar3.display(),
        beams.display()
    );
    let mut cmd = Command::new("erl");
    cmd.args(["-noshell", "-eval", &extract]);
    let (status, out, err) = run_bounded(cmd, &fx.dir, "extract");
    assert!(
        status.is_some_and(|s| s.success()),
        "unpacking rebar3 failed: {out}{err}"
    );
    let tarballs = fx.dir.join("client-tarballs");
    fs::create_dir_all(&tarballs).unwrap();
    let versions = [
        ("v1.tar", Package::new("acme_t", "1.0.0").tarball()),
        (
            "v2.tar",
            Package::new("acme_t", "1.0.0")
                .file("src/b.erl", "-module(b).\n")
                .tarball(),
        ),
        (
            "v3.tar",
            Package::new("acme_t", "1.0.0")
                .file("src/c.erl", "-module(c).\n")
                .tarball(),
        ),
        ("other.tar", Package::new("other", "1.0.0").tarball()),
    ];
    for (file, bytes) in &versions {
        fs::write(tarballs.join(file), bytes).unwrap();
    }
    let script = HEX_CORE_TRUST
        .replace("@BEAMS@", &beams.join("rebar/ebin").display().to_string())
        .replace("@API@", &format!("{}/api", server.url()))
        .replace("@WRITER@", &fx.writer)
        .replace("@SCOPED@", &scoped)
        .replace("@TARBALLS@", &tarballs.display().to_string());
    let script_path = fx.dir.join("trust.escript");
    fs::write(&script_path, script).unwrap();
    // The script stops at `STEP age` until the release is aged.
    let mut child = isolated(Path::new("escript"), &fx.dir.join("escript"))
        .arg(&script_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        out.push_str(&line);
        out.push('\n');
        if line == "STEP age" {
            age(&fx, "acme_t", "1.0.0", 7200);
            writeln!(stdin, "go").unwrap();
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{out}");
    assert!(!out.contains("FAIL "), "{out}");
    for step in [
        "publish",
        "same bytes",
        "replace within the window",
        "scoped key refused",
        "replace past the window",
        "revert past the window",
    ] {
        assert!(
            out.lines().any(|l| l == format!("PASS {step}")),
            "{step}: {out}"
        );
    }
    assert!(out.lines().any(|l| l == "DONE"), "{out}");
    // What hex_core did is in the audit trail: publish and replace, nothing else.
    let lines = audit(&fx, &["--package", "acme_t"]);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains(" publisher ") && lines[0].contains(" publish acme_t 1.0.0 - "));
    assert!(lines[1].contains(" replace acme_t 1.0.0 "));
    assert!(audit(&fx, &["--package", "other"]).is_empty());
}

#[test]
fn a_replace_dates_a_dated_release_again_and_keeps_its_retirement() {
    let fx = Fixture::new();
    // A release from 2020, dated by `hexreg build --published-at`, retired as security.
    let old = Package::new("acme_d", "1.0.0").tarball();
    let path = fx.public.join("tarballs/acme_d-1.0.0.tar");
    fs::write(&path, &old).unwrap();
    support::fixtures::set_mtime(&path, 1_600_000_000);
    ok(
        &fx.dir,
        &[
            "build",
            "public",
            "--name",
            REPO,
            &private_key_arg(),
            "--published-at",
        ],
    );
    ok(
        &fx.dir,
        &[
            "retire",
            "public",
            "acme_d",
            "1.0.0",
            "--reason",
            "security",
            "--name",
            REPO,
            &private_key_arg(),
        ],
    );
    let release = |fx: &Fixture| {
        let bytes = fs::read(fx.public.join("packages/acme_d")).unwrap();
        let package = registry::open_package(&bytes, &public_key(), REPO, "acme_d").unwrap();
        package.releases.into_iter().next().unwrap()
    };
    assert_eq!(
        release(&fx).published_at.map(|t| t.seconds),
        Some(1_600_000_000)
    );
    // Six years old: the default window refuses; an unlimited one allows.
    let new = Package::new("acme_d", "1.0.0")
        .file("src/n.erl", "-module(n).\n")
        .tarball();
    let server = fx.serve(&[]);
    let r = req("POST", "/api/publish?replace=true")
        .key(&fx.writer)
        .tarball(new.clone())
        .send(&server);
    assert_eq!(r.status, 422);
    drop(server);
    let server = fx.serve(&["--replace-window", "unlimited"]);
    let started = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let r = req("POST", "/api/publish?replace=true")
        .key(&fx.writer)
        .tarball(new)
        .send(&server);
    assert_eq!(r.status, 200);
    let replaced = release(&fx);
    assert!(
        replaced.published_at.is_some_and(|t| t.seconds >= started),
        "dated again: {:?}",
        replaced.published_at
    );
    assert_eq!(
        replaced.retired.map(|r| r.reason),
        Some(hexreg::format::proto::package::RetirementReason::RetiredSecurity as i32)
    );
}

/// Every change is in the audit trail, whoever makes it: a build records each release it adds,
/// replaces or removes with the checksums before and after; the command line's remove, retire,
/// unretire, advisory and policy changes; the API's revert, unretire and docs. A replace keeps
/// the release's advisories.
#[test]
fn every_change_is_audited_and_a_replace_keeps_advisories() {
    let fx = Fixture::new();
    let key = private_key_arg();
    let cli = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--name", REPO, key.as_str()]);
        ok(&fx.dir, &all);
    };
    let tarballs = fx.public.join("tarballs");
    let b1 = Package::new("acme_b", "1.0.0").tarball();
    let b1x = Package::new("acme_b", "1.0.0")
        .file("src/x.erl", "-module(x).\n")
        .tarball();
    let b2 = Package::new("acme_b", "2.0.0").tarball();
    fs::write(tarballs.join("acme_b-1.0.0.tar"), &b1).unwrap();
    cli(&["build", "public"]);
    // A build over a registry that has packages: each release added, replaced, removed.
    fs::write(tarballs.join("acme_b-1.0.0.tar"), &b1x).unwrap();
    fs::write(tarballs.join("acme_b-2.0.0.tar"), &b2).unwrap();
    cli(&["build", "public"]);
    let builds: Vec<Vec<String>> = audit(&fx, &["--package", "acme_b"])
        .iter()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    let sum = |t: &[u8]| hex_upper(&outer_checksum(t));
    let find = |version: &str, records: &[Vec<String>]| -> Vec<String> {
        records
            .iter()
            .find(|f| f[5] == version)
            .unwrap_or_else(|| panic!("no record of {version}: {records:#?}"))
            .clone()
    };
    let replaced = find("1.0.0", &builds);
    assert_eq!(replaced[3], "build");
    assert!(replaced[1].starts_with("cli:"), "{replaced:?}");
    assert_eq!(replaced[6..8], [sum(&b1), sum(&b1x)]);
    let added = find("2.0.0", &builds);
    assert_eq!(added[6..8], ["-".to_string(), sum(&b2)]);
    assert_eq!(builds.len(), 2, "{builds:#?}");
    fs::remove_file(tarballs.join("acme_b-2.0.0.tar")).unwrap();
    cli(&["build", "public"]);
    let records: Vec<Vec<String>> = audit(&fx, &["--package", "acme_b"])
        .iter()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect();
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_eq!(
        records[2][5..8],
        ["2.0.0".to_string(), sum(&b2), "-".to_string()]
    );

    // The command line's changes.
    cli(&[
        "retire",
        "public",
        "acme_b",
        "1.0.0",
        "--reason",
        "deprecated",
    ]);
    cli(&["unretire", "public", "acme_b", "1.0.0"]);
    cli(&[
        "advisory",
        "add",
        "public",
        "acme_b",
        "--id",
        "GHSA-aaaa-bbbb-cccc",
        "--summary",
        "bad",
        "--url",
        "https://example.com/a",
        "--severity",
        "high",
        "--affects",
        "< 2.0.0",
    ]);
    cli(&["policy", "set", "public", "strict", "--cooldown", "7d"]);
    cli(&["policy", "remove", "public", "strict"]);

    // The API's changes, and a replace that keeps the advisory.
    let server = fx.serve(&["--replace-window", "unlimited"]);
    let c1 = Package::new("acme_c", "1.0.0").tarball();
    assert_eq!(publish(&server, &fx.writer, c1).status, 201);
    let r = req("POST", "/api/packages/acme_b/releases?replace=true")
        .key(&fx.writer)
        .erlang()
        .tarball(b1.clone())
        .send(&server);
    assert_eq!(r.status, 200, "{:?}", term(&r));
    let package = registry::open_package(
        &fs::read(fx.public.join("packages/acme_b")).unwrap(),
        &public_key(),
        REPO,
        "acme_b",
    )
    .unwrap();
    assert_eq!(
        package.advisories.len(),
        1,
        "the advisory survives the replace"
    );
    assert_eq!(package.advisories[0].id, "GHSA-aaaa-bbbb-cccc");
    assert_eq!(package.releases[0].advisory_indexes, vec![0]);
    for (method, path, body, status) in [
        (
            "POST",
            "/api/packages/acme_c/releases/1.0.0/retire",
            retire_body("other", "x"),
            204,
        ),
        (
            "DELETE",
            "/api/packages/acme_c/releases/1.0.0/retire",
            Vec::new(),
            204,
        ),
        (
            "POST",
            "/api/packages/acme_c/releases/1.0.0/docs",
            docs_tarball("x"),
            201,
        ),
        (
            "DELETE",
            "/api/packages/acme_c/releases/1.0.0/docs",
            Vec::new(),
            204,
        ),
        (
            "DELETE",
            "/api/packages/acme_c/releases/1.0.0",
            Vec::new(),
            204,
        ),
    ] {
        let r = req(method, path)
            .key(&fx.writer)
            .erlang()
            .body(body)
            .send(&server);
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    cli(&["remove", "public", "acme_b", "1.0.0"]);

    let actions = |package: &str| -> Vec<(String, String, String)> {
        audit(&fx, &["--package", package])
            .iter()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let who = if f[1].starts_with("cli:") {
                    "cli"
                } else {
                    f[1]
                };
                (who.to_string(), f[3].to_string(), f[5].to_string())
            })
            .collect()
    };
    let t = |who: &str, action: &str, version: &str| {
        (who.to_string(), action.to_string(), version.to_string())
    };
    assert_eq!(
        actions("acme_b")[3..],
        [
            t("cli", "retire", "1.0.0"),
            t("cli", "unretire", "1.0.0"),
            t("cli", "advisory-add", "-"),
            t("publisher", "replace", "1.0.0"),
            t("cli", "revert", "1.0.0"),
        ]
    );
    assert_eq!(
        actions("acme_c"),
        [
            t("publisher", "publish", "1.0.0"),
            t("publisher", "retire", "1.0.0"),
            t("publisher", "unretire", "1.0.0"),
            t("publisher", "docs-publish", "1.0.0"),
            t("publisher", "docs-remove", "1.0.0"),
            t("publisher", "revert", "1.0.0"),
        ]
    );
    assert_eq!(
        actions("strict"),
        [t("cli", "policy-set", "-"), t("cli", "policy-remove", "-")]
    );
}
