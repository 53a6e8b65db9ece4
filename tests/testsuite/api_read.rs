//! The read side of the Hex API as hex.pm's (issue #25): package and release bodies with
//! hex.pm's field names and types, in JSON and in the Erlang term format; the package search;
//! the OAuth `client_credentials` exchange and the tokens it gives (replicas accept them, a
//! revoked key's die, a scope beyond the key is `invalid_scope`); `Bearer KEY`; `short_url`;
//! the records' dot-path is never served. Then rebar3's hex_core does the same as a client.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hexreg::api::etf::{self, Term};
use support::fixtures::private_key;
use support::hexreg_serve::{HttpResponse, Server};
use support::json;
use support::package::Package;
use support::rebar3::{isolated, rebar3_or_skip};
use support::run::{build, ok};

const REPO: &str = "acme";
const ERLANG: &str = "application/vnd.hex+erlang";

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    public: PathBuf,
    writer: String,
    reader: String,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let public = dir.join("public");
        fs::create_dir_all(public.join("tarballs")).unwrap();
        build(&dir, &private_key());
        let writer = ok(
            &dir,
            &["key", "add", "--keys", "keys", "publisher", "--write"],
        )
        .trim_end()
        .to_string();
        let reader = ok(&dir, &["key", "add", "--keys", "keys", "reader"])
            .trim_end()
            .to_string();
        Fixture {
            _tmp: tmp,
            dir,
            public,
            writer,
            reader,
        }
    }

    fn serve(&self, extra: &[&str]) -> Server {
        let key = private_key().display().to_string();
        let keys = self.dir.join("keys").display().to_string();
        let mut args = vec!["--name", REPO, "--keys", &keys, "--private-key", &key];
        args.extend(extra);
        Server::start(&self.public, &args, &[])
    }
}

fn described(name: &str, version: &str) -> Vec<u8> {
    Package::new(name, version)
        .metadata_term("description", "<<\"Parses JSON, fast\">>")
        .metadata_term("licenses", "[<<\"MIT\">>]")
        .metadata_term(
            "links",
            "[{<<\"GitHub\">>,<<\"https://github.com/acme/jsonish\">>}]",
        )
        .metadata_term("build_tools", "[<<\"mix\">>]")
        .metadata_term("elixir", "<<\"~> 1.15\">>")
        .tarball()
}

fn publish(server: &Server, auth: &str, tarball: &[u8]) -> HttpResponse {
    server.post(
        "/api/publish",
        &[
            ("authorization", auth),
            ("accept", ERLANG),
            ("content-type", "application/octet-stream"),
        ],
        tarball,
    )
}

/// The body by its content type: the Erlang term format or JSON.
fn term(r: &HttpResponse) -> Term {
    match r.header("content-type") {
        Some(ERLANG) => etf::decode(&r.body).expect("the Erlang term format"),
        Some("application/json") => {
            json::parse(std::str::from_utf8(&r.body).expect("UTF-8")).expect("JSON")
        }
        other => panic!("content-type {other:?}: {:?}", r.body),
    }
}

fn get(server: &Server, path: &str, auth: &str, erlang: bool) -> (u16, Term) {
    let mut headers = vec![("authorization", auth)];
    if erlang {
        headers.push(("accept", ERLANG));
    }
    let r = server.request("GET", path, &headers);
    (r.status, term(&r))
}

fn text<'a>(term: &'a Term, path: &[&str]) -> Option<&'a str> {
    let mut t = term;
    for key in path {
        t = t.get(key)?;
    }
    t.as_str()
}

fn is_nil(term: Option<&Term>) -> bool {
    matches!(term, Some(Term::Atom(a)) if a == "nil" || a == "null" || a == "undefined")
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_rfc3339(text: Option<&str>) -> bool {
    text.is_some_and(|t| {
        t.len() == 20
            && t.as_bytes()[4] == b'-'
            && t.as_bytes()[10] == b'T'
            && t.ends_with('Z')
            && t[..4].parse::<u32>().is_ok_and(|y| y >= 2024)
    })
}

fn exchange(server: &Server, body: &str) -> (u16, Term) {
    let r = server.post(
        "/api/oauth/token",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    (r.status, term(&r))
}

#[test]
fn package_and_release_bodies_carry_hex_pm_fields_in_both_formats() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let bearer = format!("Bearer {}", fx.writer);
    // `Bearer KEY` is the key.
    assert_eq!(
        publish(&server, &bearer, &described("jsonish", "1.0.0")).status,
        201
    );
    assert_eq!(
        publish(&server, &fx.writer, &described("jsonish", "1.1.0-rc.1")).status,
        201
    );
    assert_eq!(
        publish(
            &server,
            &fx.writer,
            &Package::new("other", "0.1.0").tarball()
        )
        .status,
        201
    );
    for erlang in [true, false] {
        let (status, p) = get(&server, "/api/packages/jsonish", &fx.reader, erlang);
        assert_eq!(status, 200);
        assert_eq!(text(&p, &["name"]), Some("jsonish"));
        assert_eq!(text(&p, &["repository"]), Some(REPO));
        assert_eq!(
            text(&p, &["meta", "description"]),
            Some("Parses JSON, fast")
        );
        assert_eq!(
            text(&p, &["meta", "links", "GitHub"]),
            Some("https://github.com/acme/jsonish"),
            "links is a map"
        );
        assert!(
            matches!(p.get("meta").and_then(|m| m.get("licenses")), Some(Term::List(l)) if l.len() == 1)
        );
        assert!(text(&p, &["html_url"]).is_some_and(|u| u.ends_with("/-/packages/jsonish")));
        assert!(is_nil(p.get("docs_html_url")));
        assert_eq!(text(&p, &["latest_stable_version"]), Some("1.0.0"));
        assert!(is_rfc3339(text(&p, &["inserted_at"])));
        assert!(is_rfc3339(text(&p, &["updated_at"])));
        let Some(Term::List(releases)) = p.get("releases") else {
            panic!("releases is a list: {p:?}")
        };
        assert_eq!(releases.len(), 2);
        assert_eq!(text(&releases[0], &["version"]), Some("1.1.0-rc.1"));
        for r in releases {
            assert!(is_rfc3339(text(r, &["inserted_at"])), "{r:?}");
            assert!(is_rfc3339(text(r, &["updated_at"])), "{r:?}");
            assert!(matches!(r.get("has_docs"), Some(Term::Atom(a)) if a == "false"));
            assert!(
                text(r, &["url"]).is_some_and(|u| u.contains("/api/packages/jsonish/releases/"))
            );
        }
        assert!(matches!(p.get("retirements"), Some(Term::Map(m)) if m.is_empty()));

        let (status, r) = get(
            &server,
            "/api/packages/jsonish/releases/1.0.0",
            &fx.reader,
            erlang,
        );
        assert_eq!(status, 200);
        assert_eq!(text(&r, &["meta", "app"]), Some("jsonish"));
        assert_eq!(text(&r, &["meta", "elixir"]), Some("~> 1.15"));
        assert!(
            matches!(r.get("meta").and_then(|m| m.get("build_tools")), Some(Term::List(l)) if l.len() == 1)
        );
        assert_eq!(text(&r, &["publisher", "username"]), Some("publisher"));
        assert!(is_rfc3339(text(&r, &["inserted_at"])));
        assert!(matches!(r.get("requirements"), Some(Term::Map(_))));
        assert!(is_nil(r.get("retirement")));
        // A package published without description has the keys, empty.
        let (_, o) = get(&server, "/api/packages/other", &fx.reader, erlang);
        assert!(is_nil(o.get("meta").and_then(|m| m.get("description"))));
        assert!(
            matches!(o.get("meta").and_then(|m| m.get("links")), Some(Term::Map(m)) if m.is_empty())
        );
    }
    // The record is kept in a dot-path that is never served, with or without a key.
    for path in ["/.hexreg-api/packages/jsonish", "/.hexreg-api/token-secret"] {
        assert!(fx.public.join(&path[1..]).exists(), "{path}");
        let r = server.request("GET", path, &[("authorization", fx.reader.as_str())]);
        assert_eq!(r.status, 404, "{path}");
    }
    // Docs uploaded: has_docs and docs_html_url follow.
    let docs = {
        let mut tar = tar::Builder::new(Vec::new());
        let html = b"<html>docs</html>";
        let mut header = tar::Header::new_gnu();
        header.set_size(html.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "index.html", &html[..])
            .unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    };
    let r = server.post(
        "/api/packages/jsonish/releases/1.0.0/docs",
        &[("authorization", fx.writer.as_str())],
        &docs,
    );
    assert_eq!(r.status, 201);
    let (_, p) = get(&server, "/api/packages/jsonish", &fx.reader, false);
    assert!(text(&p, &["docs_html_url"]).is_some_and(|u| u.ends_with("/-/docs/jsonish/latest/")));
    let (_, r) = get(
        &server,
        "/api/packages/jsonish/releases/1.0.0",
        &fx.reader,
        false,
    );
    assert!(matches!(r.get("has_docs"), Some(Term::Atom(a)) if a == "true"));
}

#[test]
fn search_finds_names_and_descriptions_page_by_page() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_eq!(
        publish(&server, &fx.writer, &described("jsonish", "1.0.0")).status,
        201
    );
    for name in ["json", "plug", "myjson_ext"] {
        let t = Package::new(name, "0.1.0").tarball();
        assert_eq!(publish(&server, &fx.writer, &t).status, 201);
    }
    let names = |query: &str, erlang: bool| {
        let (status, list) = get(
            &server,
            &format!("/api/packages?{query}"),
            &fx.reader,
            erlang,
        );
        assert_eq!(status, 200, "{query}");
        let Term::List(items) = list else {
            panic!("a list: {list:?}")
        };
        items
            .iter()
            .map(|i| text(i, &["name"]).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    for erlang in [true, false] {
        // What `mix hex.package search json` sends.
        assert_eq!(
            names("search=json&sort=downloads&page=1", erlang),
            ["json", "jsonish", "myjson_ext"]
        );
        assert_eq!(names("search=fast", erlang), ["jsonish"]);
        assert_eq!(
            names("search=json&sort=name&page=2", erlang),
            Vec::<String>::new()
        );
        assert_eq!(names("sort=recent_downloads", erlang).len(), 4);
    }
    // Without a key: 401.
    assert_eq!(server.get("/api/packages?search=json").status, 401);
}

#[test]
fn oauth_tokens_carry_the_key_its_scope_and_die_with_it() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let grant = |key: &str, scope: &str| {
        exchange(
            &server,
            &format!(
                "grant_type=client_credentials&client_id=hex&client_secret={key}&scope={scope}"
            ),
        )
    };
    // A read key may not ask for `api`: hex.pm's invalid_scope.
    let (status, e) = grant(&fx.reader, "api");
    assert_eq!(status, 400);
    assert_eq!(text(&e, &["error"]), Some("invalid_scope"));
    let (status, e) = grant("hexreg_nope", "api");
    assert_eq!(status, 401);
    assert_eq!(text(&e, &["error"]), Some("invalid_client"));
    let (status, e) = exchange(&server, "grant_type=password");
    assert_eq!(status, 400);
    assert_eq!(text(&e, &["error"]), Some("unsupported_grant_type"));

    let (status, t) = grant(&fx.reader, "repositories");
    assert_eq!(status, 200);
    assert_eq!(text(&t, &["token_type"]), Some("bearer"));
    assert_eq!(text(&t, &["scope"]), Some("repositories"));
    assert!(matches!(t.get("expires_in"), Some(Term::Integer(n)) if *n > 0));
    let read_token = format!("Bearer {}", text(&t, &["access_token"]).unwrap());
    // It reads the API and the repository's files, and may not publish.
    assert_eq!(get(&server, "/api/users/me", &read_token, true).0, 200);
    let r = server.request("GET", "/names", &[("authorization", read_token.as_str())]);
    assert_eq!(r.status, 200);
    assert_eq!(
        publish(&server, &read_token, &Package::new("a", "1.0.0").tarball()).status,
        403
    );
    // A write key's `repositories` token is read-only; its `api` token publishes.
    let (_, t) = grant(&fx.writer, "repositories");
    let narrow = format!("Bearer {}", text(&t, &["access_token"]).unwrap());
    assert_eq!(
        publish(&server, &narrow, &Package::new("a", "1.0.0").tarball()).status,
        403
    );
    let (_, t) = grant(&fx.writer, "api");
    let write_token = format!("Bearer {}", text(&t, &["access_token"]).unwrap());
    let r = publish(&server, &write_token, &Package::new("a", "1.0.0").tarball());
    assert_eq!(r.status, 201);
    let (_, release) = get(&server, "/api/packages/a/releases/1.0.0", &fx.reader, true);
    assert_eq!(
        text(&release, &["publisher", "username"]),
        Some("publisher")
    );

    // A second server on the same registry (a replica) accepts the first one's token.
    let replica = fx.serve(&[]);
    assert_eq!(get(&replica, "/api/users/me", &write_token, true).0, 200);
    // A tampered token is refused.
    let mut tampered = write_token.clone();
    tampered.insert(20, 'x');
    assert_eq!(get(&replica, "/api/users/me", &tampered, true).0, 401);

    // Revoking the key revokes its tokens, on every server (the keys file is reread).
    ok(&fx.dir, &["key", "revoke", "--keys", "keys", "publisher"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = get(&server, "/api/users/me", &write_token, true).0;
        let b = get(&replica, "/api/users/me", &write_token, true).0;
        if a == 401 && b == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked key's token still works"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&server, "/api/users/me", &read_token, true).0, 200);
}

#[test]
fn short_url_answers_as_hex_pm() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let body = etf::encode(&Term::map([(
        "url",
        Term::bin("https://diff.hex.pm/diff/a/1..2"),
    )]));
    let r = server.post(
        "/api/short_url",
        &[("content-type", ERLANG), ("accept", ERLANG)],
        &body,
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        text(&term(&r), &["url"]),
        Some("https://diff.hex.pm/diff/a/1..2")
    );
    let r = server.post("/api/short_url", &[("accept", ERLANG)], b"junk");
    assert_eq!(r.status, 422);
}

/// hex_core (rebar3's bundled 0.7.1) as the client: reads, searches, exchanges a key for a
/// token with `r3_hex_api:post` (0.7.1 has no OAuth module; the body is what Hex 2.4+'s
/// `client_credentials_token` sends) and publishes with it.
const SCRIPT: &str = r#"#!/usr/bin/env escript
main(_) ->
    true = code:add_path("@BEAMS@"),
    {ok, _} = application:ensure_all_started(inets),
    Config = maps:merge(r3_hex_core:default_config(),
                        #{api_url => <<"@API@">>, api_key => <<"@READER@">>, repo_name => <<"acme">>}),
    Check = fun(Step, Result, Pred) ->
        case catch Pred(Result) of
            true -> io:format("PASS ~s~n", [Step]);
            _ -> io:format("FAIL ~s ~0p~n", [Step, Result])
        end
    end,
    Check("package get", r3_hex_api_package:get(Config, <<"jsonish">>),
        fun({ok, {200, _, #{<<"meta">> := #{<<"description">> := <<"Parses JSON, fast">>,
                                             <<"links">> := #{<<"GitHub">> := _}},
                            <<"releases">> := [#{<<"inserted_at">> := At} | _]}}}) -> is_binary(At) end),
    Check("release get", r3_hex_api_release:get(Config, <<"jsonish">>, <<"1.0.0">>),
        fun({ok, {200, _, #{<<"meta">> := #{<<"app">> := <<"jsonish">>},
                            <<"publisher">> := #{<<"username">> := <<"publisher">>}}}}) -> true end),
    Check("search", r3_hex_api_package:search(Config, <<"json">>, [{sort, downloads}]),
        fun({ok, {200, _, [#{<<"name">> := <<"jsonish">>}]}}) -> true end),
    Exchanged = r3_hex_api:post(Config, [<<"oauth">>, <<"token">>],
                                #{<<"grant_type">> => <<"client_credentials">>, <<"client_id">> => <<"hex">>,
                                  <<"client_secret">> => <<"@WRITER@">>, <<"scope">> => <<"api">>}),
    Check("oauth exchange", Exchanged,
        fun({ok, {200, _, #{<<"token_type">> := <<"bearer">>, <<"expires_in">> := N}}}) -> N > 0 end),
    {ok, {200, _, #{<<"access_token">> := Token}}} = Exchanged,
    WithToken = Config#{api_key => <<"Bearer ", Token/binary>>},
    {ok, Tar} = file:read_file("@TARBALL@"),
    Check("publish with token", r3_hex_api_release:publish(WithToken, Tar),
        fun({ok, {201, _, #{<<"version">> := <<"2.0.0">>}}}) -> true end),
    Check("get with token", r3_hex_api_package:get(WithToken, <<"jsonish">>),
        fun({ok, {200, _, #{<<"latest_version">> := <<"2.0.0">>}}}) -> true end),
    io:format("DONE~n").
"#;

#[test]
fn hex_core_reads_searches_exchanges_and_publishes_with_a_token() {
    let Some(rebar3) =
        rebar3_or_skip("hex_core_reads_searches_exchanges_and_publishes_with_a_token")
    else {
        return;
    };
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    assert_eq!(
        publish(&server, &fx.writer, &described("jsonish", "1.0.0")).status,
        201
    );
    let beams = fx.dir.join("rebar3-beams");
    let extract = format!(
        "{{ok, Sections}} = escript:extract(\"{}\", []),\n\
         {{archive, Archive}} = lists:keyfind(archive, 1, Sections),\n\
         {{ok, _}} = zip:extract(Archive, [{{cwd, \"{}\"}}]),\nhalt().",
        rebar3.display(),
        beams.display()
    );
    let status = Command::new("erl")
        .args(["-noshell", "-eval", &extract])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "unpacking rebar3 failed");
    let tarball = fx.dir.join("jsonish-2.0.0.tar");
    fs::write(&tarball, described("jsonish", "2.0.0")).unwrap();
    let script = SCRIPT
        .replace("@BEAMS@", &beams.join("rebar/ebin").display().to_string())
        .replace("@API@", &format!("{}/api", server.url()))
        .replace("@WRITER@", &fx.writer)
        .replace("@READER@", &fx.reader)
        .replace("@TARBALL@", &tarball.display().to_string());
    let path = fx.dir.join("client.escript");
    fs::write(&path, script).unwrap();
    let out = run(isolated(Path::new("escript"), &fx.dir.join("escript")).arg(&path));
    assert!(out.contains("DONE") && !out.contains("FAIL "), "{out}");
    for step in [
        "package get",
        "release get",
        "search",
        "oauth exchange",
        "publish with token",
        "get with token",
    ] {
        assert!(
            out.lines().any(|l| l == format!("PASS {step}")),
            "{step}: {out}"
        );
    }
}

/// Runs `cmd` (killed after three minutes: a safety net) and returns its output.
fn run(cmd: &mut Command) -> String {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_hostile_metadata_config_costs_a_bounded_answer() {
    let fx = Fixture::new();
    let server = fx.serve(&[]);
    let huge = "x".repeat(900 * 1024);
    let links: Vec<String> = (0..2000)
        .map(|i| format!("{{<<\"l{i}\">>,<<\"https://e/{i}\">>}}"))
        .collect();
    let tarball = Package::new("bloat", "1.0.0")
        .metadata_term("description", &format!("<<\"{huge}\">>"))
        .metadata_term("links", &format!("[{}]", links.join(",")))
        .metadata_term("licenses", "[<<\"a\">>,<<\"b\">>,\"c\",42,{x}]")
        .metadata_term("maintainers", "not_a_list")
        .tarball();
    let r = publish(&server, &fx.writer, &tarball);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let record = fs::metadata(fx.public.join(".hexreg-api/packages/bloat")).unwrap();
    assert!(record.len() < 8 * 1024, "record of {} bytes", record.len());
    for path in ["/api/packages/bloat", "/api/packages?search=bloat"] {
        let r = server.request("GET", path, &[("authorization", fx.reader.as_str())]);
        assert_eq!(r.status, 200);
        assert!(r.body.len() < 12 * 1024, "{path}: {} bytes", r.body.len());
    }
    let (_, p) = get(&server, "/api/packages/bloat", &fx.reader, false);
    assert!(
        matches!(p.get("meta").and_then(|m| m.get("links")), Some(Term::Map(m)) if m.len() == 32)
    );
    assert!(
        matches!(p.get("meta").and_then(|m| m.get("licenses")), Some(Term::List(l)) if l.len() == 3)
    );
}
