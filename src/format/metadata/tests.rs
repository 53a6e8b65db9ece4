//! Unit tests of the `metadata.config` reader: lexing, parsing, normalisation
//! into [`Metadata`], error messages, and [`render`].

use super::*;

/// metadata.config of fixtures/tarballs/acme_edge-0.1.0.tar (mix layout).
const ACME_EDGE: &str = r#"{<<"app">>,<<"acme_edge">>}.
{<<"build_tools">>,[<<"mix">>]}.
{<<"description">>,
 <<"Edge cases: deps from other repos, renamed dep, test-only dep dropped">>}.
{<<"elixir">>,<<"~> 1.14">>}.
{<<"files">>,[<<"lib">>,<<"lib/acme_edge.ex">>,<<"mix.exs">>,<<"README.md">>]}.
{<<"licenses">>,[<<"MIT">>]}.
{<<"links">>,[{<<"Homepage">>,<<"https://example.invalid/acme_edge">>}]}.
{<<"name">>,<<"acme_edge">>}.
{<<"requirements">>,
 [[{<<"app">>,<<"jason">>},
   {<<"name">>,<<"jason">>},
   {<<"optional">>,false},
   {<<"repository">>,<<"hexpm">>},
   {<<"requirement">>,<<"~> 1.4">>}],
  [{<<"app">>,<<"other_pkg">>},
   {<<"name">>,<<"other_pkg">>},
   {<<"optional">>,false},
   {<<"repository">>,<<"other">>},
   {<<"requirement">>,<<"~> 2.0">>}],
  [{<<"app">>,<<"org_pkg">>},
   {<<"name">>,<<"org_pkg">>},
   {<<"optional">>,false},
   {<<"repository">>,<<"myorg">>},
   {<<"requirement">>,<<"== 1.0.0">>}],
  [{<<"app">>,<<"aliased_a">>},
   {<<"name">>,<<"acme_a">>},
   {<<"optional">>,true},
   {<<"repository">>,<<"acme">>},
   {<<"requirement">>,<<"~> 0.1">>}]]}.
{<<"version">>,<<"0.1.0">>}.
"#;

/// metadata.config of fixtures/tarballs/acme_erl-0.2.0.tar (rebar3 layout).
const ACME_ERL: &str = r#"{<<"app">>,<<"acme_erl">>}.
{<<"build_tools">>,[<<"rebar3">>]}.
{<<"description">>,
 <<65,99,109,101,32,69,114,108,97,110,103,32,116,101,115,116,32,112,97,99,107,
   97,103,101,32,97,99,109,101,95,101,114,108,32,226,128,148,32,99,97,102,195,
   169>>}.
{<<"files">>,
 [<<"README.md">>,<<"rebar.config">>,<<"src/acme_erl.app.src">>,
  <<"src/acme_erl.erl">>]}.
{<<"licenses">>,[<<"Apache-2.0">>]}.
{<<"links">>,[{<<"Homepage">>,<<"https://example.invalid/acme_erl">>}]}.
{<<"name">>,<<"acme_erl">>}.
{<<"requirements">>,
 [{<<"acme_erl_base">>,
   [{<<"app">>,<<"acme_erl_base">>},
    {<<"optional">>,false},
    {<<"requirement">>,<<"~> 0.1">>}]}]}.
{<<"version">>,<<"0.2.0">>}.
"#;

/// metadata.config of fixtures/tarballs/acme_b-0.2.0.tar (mix layout,
/// optional dependency, description as a byte list).
const ACME_B: &str = r#"{<<"app">>,<<"acme_b">>}.
{<<"build_tools">>,[<<"mix">>]}.
{<<"description">>,
 <<65,99,109,101,32,66,32,119,105,116,104,32,111,112,116,105,111,110,97,108,
   32,97,99,109,101,95,99,32,226,128,148,32,195,169,109,111,106,105,32,240,
   159,154,128>>}.
{<<"elixir">>,<<"~> 1.14">>}.
{<<"files">>,[<<"lib">>,<<"lib/acme_b.ex">>,<<"mix.exs">>,<<"README.md">>]}.
{<<"licenses">>,[<<"MIT">>]}.
{<<"links">>,[{<<"Homepage">>,<<"https://example.invalid/acme_b">>}]}.
{<<"name">>,<<"acme_b">>}.
{<<"requirements">>,
 [[{<<"app">>,<<"acme_a">>},
   {<<"name">>,<<"acme_a">>},
   {<<"optional">>,false},
   {<<"repository">>,<<"acme">>},
   {<<"requirement">>,<<"~> 0.2">>}],
  [{<<"app">>,<<"acme_c">>},
   {<<"name">>,<<"acme_c">>},
   {<<"optional">>,true},
   {<<"repository">>,<<"acme">>},
   {<<"requirement">>,<<"~> 0.1">>}]]}.
{<<"version">>,<<"0.2.0">>}.
"#;

/// metadata.config of fixtures/tarballs/acme_a-1.0.0-rc.1.tar (no deps).
const ACME_A_RC: &str = r#"{<<"app">>,<<"acme_a">>}.
{<<"build_tools">>,[<<"mix">>]}.
{<<"description">>,<<"Acme A prerelease">>}.
{<<"elixir">>,<<"~> 1.14">>}.
{<<"files">>,[<<"lib">>,<<"lib/acme_a.ex">>,<<"mix.exs">>,<<"README.md">>]}.
{<<"licenses">>,[<<"MIT">>]}.
{<<"links">>,[{<<"Homepage">>,<<"https://example.invalid/acme_a">>}]}.
{<<"name">>,<<"acme_a">>}.
{<<"requirements">>,[]}.
{<<"version">>,<<"1.0.0-rc.1">>}.
"#;

const REAL: [&str; 4] = [ACME_EDGE, ACME_ERL, ACME_B, ACME_A_RC];

fn one(src: &str) -> Term {
    let mut terms = parse_terms(src.as_bytes()).unwrap_or_else(|e| panic!("{src:?}: {e}"));
    assert_eq!(terms.len(), 1, "{src:?}");
    terms.remove(0)
}

/// The second element of the single form `{a, X}.`.
fn value(x: &str) -> Term {
    match one(&format!("{{a,{x}}}.")) {
        Term::Tuple(mut items) if items.len() == 2 => items.remove(1),
        other => panic!("{other:?}"),
    }
}

fn err_terms(src: &[u8]) -> String {
    match parse_terms(src) {
        Ok(t) => panic!("{src:?} parsed as {t:?}"),
        Err(e) => e.to_string(),
    }
}

fn err(src: &str) -> MetadataError {
    match parse(src.as_bytes()) {
        Ok(m) => panic!("{src:?} parsed as {m:?}"),
        Err(e) => e,
    }
}

fn s(text: &str) -> Term {
    Term::String(text.chars().map(u32::from).collect())
}

fn bin(bytes: &[u8]) -> Term {
    Term::Binary(bytes.to_vec())
}

fn atom(a: &str) -> Term {
    Term::Atom(a.to_string())
}

const HEAD: &str = "{<<\"name\">>,<<\"p\">>}.\n{<<\"version\">>,<<\"1.0.0\">>}.\n\
                        {<<\"app\">>,<<\"p\">>}.\n";

fn with_requirements(requirements: &str) -> String {
    format!("{HEAD}{{<<\"requirements\">>,{requirements}}}.\n")
}

fn req(name: &str, app: Option<&str>, requirement: &str) -> Requirement {
    Requirement {
        name: name.to_string(),
        app: app.map(str::to_string),
        requirement: requirement.to_string(),
        optional: false,
        repository: None,
    }
}

// -- lexer: escapes -------------------------------------------------------

#[test]
fn named_escapes() {
    assert_eq!(
        value(r#""\n\r\t\v\b\f\e\s\d""#),
        Term::String(vec![10, 13, 9, 11, 8, 12, 27, 32, 127])
    );
}

#[test]
fn octal_escapes_need_exactly_three_digits() {
    assert_eq!(value(r#""\101\000\777""#), Term::String(vec![65, 0, 511]));
    // Like safe_erl_term (not erl_scan): fewer digits are not an octal escape.
    assert_eq!(value(r#""\1x""#), s("1x"));
    assert_eq!(value(r#""\12""#), s("12"));
    assert_eq!(value(r#""\18""#), s("18"));
    assert_eq!(value(r#""\1234""#), Term::String(vec![83, 52]));
    // In a binary, 0o400 = 256 becomes 0.
    assert_eq!(value(r#"<<"\400\101">>"#), bin(&[0, 65]));
}

#[test]
fn control_escapes() {
    assert_eq!(value(r#""\^A\^a\^[\^?""#), Term::String(vec![1, 1, 27, 31]));
    // `\^` with nothing after it is a plain `^`.
    assert_eq!(value(r#""\^""#), s("^"));
}

#[test]
fn backslash_before_whitespace_is_dropped() {
    assert_eq!(
        value("\"a\\\nb\\ c\\\td\\\r\ne\""),
        Term::String(vec![97, 98, 99, 100, 10, 101])
    );
    assert_eq!(value("\"a\\\u{0}b\""), s("ab"));
}

#[test]
fn other_escapes_are_the_char_itself() {
    assert_eq!(value(r#""\x{41}""#), s("x{41}"));
    assert_eq!(value(r#""\q\"\\\'""#), s("q\"\\'"));
    assert_eq!(value(r#""\é""#), s("é"));
}

#[test]
fn quoted_atoms() {
    assert_eq!(value("'hello world'"), atom("hello world"));
    assert_eq!(value(r#"'it\'s'"#), atom("it's"));
    assert_eq!(value(r#"'a\nb'"#), atom("a\nb"));
    assert_eq!(value("'Foo'"), atom("Foo"));
    assert_eq!(value("'true'"), atom("true"));
    assert_eq!(value("''"), atom(""));
    assert_eq!(value("foo_Bar@1"), atom("foo_Bar@1"));
}

#[test]
fn adjacent_strings_concatenate() {
    assert_eq!(value(r#""ab" "cd"  "e""#), s("abcde"));
    assert_eq!(value(r#"<<"ab" "cd">>"#), bin(b"abcd"));
    assert_eq!(value(r#"<<"é" "ü"/utf8>>"#), bin("éü".as_bytes()));
    assert_eq!(value(r#""""#), s(""));
    // Escaped and plain literals mix; a quoted atom between strings splits them.
    assert_eq!(value(r#""a\n" "b" "\101""#), s("a\nbA"));
    assert_eq!(
        value(r#"{"a" "b", 'c\td', "e\"" "f"}"#),
        Term::Tuple(vec![s("ab"), atom("c\td"), s("e\"f")])
    );
}

#[test]
fn string_extent_is_leex_longest_match() {
    // No later quote: `"a\\"` is the string `a\`.
    assert_eq!(value(r#"<<"a\\">>"#), bin(b"a\\"));
    // With a later quote, hex_core's lexer reaches on to it (so this file is
    // rejected by hex_core too).
    let e = err_terms(b"{a,<<\"a\\\\\">>}.\n{b,<<\"c\">>}.\n");
    assert!(e.contains("line 2, column 8"), "{e}");
    assert!(e.contains("unterminated string"), "{e}");
    // An escaped quote.
    assert_eq!(value(r#""a\"b""#), s("a\"b"));
    // `\^"` is a control escape of the quote character.
    assert_eq!(value(r#""\^"x""#), Term::String(vec![2, 120]));
}

#[test]
fn crlf_line_endings() {
    let src = ACME_ERL.replace('\n', "\r\n");
    assert_eq!(
        parse_terms(src.as_bytes()).unwrap(),
        parse_terms(ACME_ERL.as_bytes()).unwrap()
    );
    assert_eq!(parse(src.as_bytes()).unwrap().requirements.len(), 1);
    let e = err_terms(b"{a,1}.\r\n{b,%}.\r\n");
    assert!(e.contains("line 2, column 4"), "{e}");
}

#[test]
fn whitespace_is_chars_0_to_32() {
    assert_eq!(
        parse_terms(b"\x00\x01{a,\x0b\x0c1}\x1f.\x20").unwrap(),
        vec![Term::Tuple(vec![atom("a"), Term::Integer(1)])]
    );
}

#[test]
fn dot_needs_no_following_whitespace() {
    assert_eq!(parse_terms(b"{a,1}.{b,2}.").unwrap().len(), 2);
    assert_eq!(parse_terms(b"ok.").unwrap(), vec![atom("ok")]);
}

// -- encodings ------------------------------------------------------------

#[test]
fn utf8_input() {
    assert_eq!(value(r#""é日""#), Term::String(vec![0xE9, 0x65E5]));
    // Without /utf8, each char is truncated to its low byte (Latin-1).
    assert_eq!(value(r#"<<"é日">>"#), bin(&[0xE9, 0xE5]));
    assert_eq!(value(r#"<<"é日"/utf8>>"#), bin("é日".as_bytes()));
    assert_eq!(value(r#"<<"x"/utf8>>"#), bin(b"x"));
    assert_eq!(value(r#"'é'"#), atom("é"));
}

#[test]
fn latin1_fallback() {
    // A raw 0xE9 byte is not UTF-8, so the whole file is read as Latin-1 ...
    let src = b"{a,\"caf\xE9\"}.\n{b,<<\"\xC3\xA9\"/utf8>>}.\n";
    let terms = parse_terms(src).unwrap();
    assert_eq!(
        terms,
        vec![
            Term::Tuple(vec![atom("a"), s("café")]),
            // ... including the bytes that were valid UTF-8: two chars here.
            Term::Tuple(vec![atom("b"), bin("Ã©".as_bytes())]),
        ]
    );
    // A Latin-1 binary is not UTF-8 text.
    let e =
        parse(b"{<<\"name\">>,<<\"caf\xE9\">>}.\n{<<\"version\">>,<<\"1.0.0\">>}.\n").unwrap_err();
    assert!(
        matches!(e, MetadataError::InvalidUtf8 { ref key } if key == "name"),
        "{e:?}"
    );
    let e = parse(b"{<<\"name\">>,<<\"caf\xE9\">>}.")
        .unwrap_err()
        .to_string();
    assert_eq!(e, "`name` entry is a binary that is not valid UTF-8");
    // A Latin-1 string is fine: its chars are code points.
    let m = parse(
        b"{<<\"name\">>,\"caf\xE9\"}.{<<\"version\">>,<<\"1.0.0\">>}.{<<\"app\">>,<<\"a\">>}.",
    )
    .unwrap();
    assert_eq!(m.name, "café");
}

// -- binaries, integers, containers ----------------------------------------

#[test]
fn binaries() {
    assert_eq!(value("<<>>"), bin(b""));
    assert_eq!(value("<<1,2,3>>"), bin(&[1, 2, 3]));
    assert_eq!(
        value("<<-1, 256, 257, +7, - 2>>"),
        bin(&[255, 0, 1, 7, 254])
    );
    assert_eq!(value(r#"<<"a", 1, "b"/utf8>>"#), bin(b"a\x01b"));
    assert_eq!(value("<<233/utf8, 65/utf8>>"), bin("éA".as_bytes()));
    assert_eq!(value(r#"<<"é"/utf8-big>>"#), bin("é".as_bytes()));
    // Arbitrarily large integers are taken mod 256, as erlang does.
    assert_eq!(
        value("<<1234567890123456789012345678901234567890>>"),
        bin(&[210])
    );
    assert_eq!(value(r#"<<"">>"#), bin(b""));
}

#[test]
fn binary_errors() {
    let e = err_terms(br#"{a,<<"x"/binary>>}."#);
    assert!(
        e.contains("unsupported binary segment type `binary`"),
        "{e}"
    );
    assert!(e.contains("line 1, column 10"), "{e}");
    let e = err_terms(b"{a,<<a>>}.");
    assert!(
        e.contains("expected an integer or a string in a binary"),
        "{e}"
    );
    let e = err_terms(b"{a,<<-1/utf8>>}.");
    assert!(e.contains("not a Unicode code point"), "{e}");
    let e = err_terms(b"{a,<<1114112/utf8>>}.");
    assert!(e.contains("not a Unicode code point"), "{e}");
    let e = err_terms(b"{a,<<1/big>>}.");
    assert!(e.contains("must contain `utf8`"), "{e}");
    let e = err_terms(b"{a,<<1 2>>}.");
    assert!(
        e.contains("expected `,` or `>>` but found the integer 2"),
        "{e}"
    );
    let e = err_terms(b"{a,<<<<1>>/binary>>}.");
    assert!(e.contains("line 1, column 6"), "{e}");
}

#[test]
fn integers() {
    assert_eq!(value("42"), Term::Integer(42));
    assert_eq!(value("007"), Term::Integer(7));
    assert_eq!(value("-1"), Term::Integer(-1));
    assert_eq!(value("- 12"), Term::Integer(-12));
    assert_eq!(value("+5"), Term::Integer(5));
    assert_eq!(value(&i128::MAX.to_string()), Term::Integer(i128::MAX));
    assert_eq!(value(&i128::MIN.to_string()), Term::Integer(i128::MIN));
    let e = err_terms(format!("{{a,{}}}.", i128::MAX.unsigned_abs() + 1).as_bytes());
    assert_eq!(
        e,
        "integer too large at line 1, column 4 (at most 128 bits are supported)"
    );
    let e = err_terms(b"{a,\n  -99999999999999999999999999999999999999999999}.");
    assert!(
        e.starts_with("integer too large at line 2, column 4"),
        "{e}"
    );
    let e = err_terms(b"{a,- -1}.");
    assert_eq!(
        e,
        "syntax error at line 1, column 6: expected an integer after `-` but found `-`"
    );
    // A file that ends where the integer should be says so, not "found `-`".
    let e = err_terms(b"{a,-");
    assert_eq!(
        e,
        "syntax error at line 1, column 5: expected an integer after `-` but found the end of the file"
    );
    let e = err_terms(b"{<<\"a\">>, <<");
    assert!(
        e.contains("expected an integer or a string in a binary but found the end of the file"),
        "{e}"
    );
    let e = err_terms(b"{a,-b}.");
    assert!(
        e.contains("expected an integer after `-` but found the atom `b`"),
        "{e}"
    );
}

#[test]
fn tuples_lists_maps() {
    assert_eq!(value("{}"), Term::Tuple(vec![]));
    assert_eq!(value("[]"), Term::List(vec![]));
    assert_eq!(value("#{}"), Term::Map(vec![]));
    assert_eq!(
        value(r#"[1, {b, "c"}, [[]], #{<<"k">> => [v], 2 => 3}]"#),
        Term::List(vec![
            Term::Integer(1),
            Term::Tuple(vec![atom("b"), s("c")]),
            Term::List(vec![Term::List(vec![])]),
            Term::Map(vec![
                (bin(b"k"), Term::List(vec![atom("v")])),
                (Term::Integer(2), Term::Integer(3)),
            ]),
        ])
    );
    // Duplicate map keys are kept in source order.
    assert_eq!(
        value("#{a => 1, a => 2}"),
        Term::Map(vec![
            (atom("a"), Term::Integer(1)),
            (atom("a"), Term::Integer(2))
        ])
    );
}

#[test]
fn nesting_is_capped() {
    let ok = format!("{}{}.", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse_terms(ok.as_bytes()).is_ok());
    let deep = format!(
        "{}{}.",
        "[".repeat(MAX_DEPTH + 1),
        "]".repeat(MAX_DEPTH + 1)
    );
    let e = err_terms(deep.as_bytes());
    assert_eq!(
        e,
        format!(
            "terms nested too deeply at line 1, column {} (more than 256 levels)",
            MAX_DEPTH + 1
        )
    );
    // Far deeper input fails fast instead of overflowing the stack.
    let huge = "[{#{".repeat(200_000);
    assert!(matches!(
        parse_terms(huge.as_bytes()),
        Err(MetadataError::TooDeep { .. })
    ));
}

// -- syntax errors --------------------------------------------------------

#[test]
fn syntax_errors_carry_line_and_column() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"{a,\n  {b, c]}.",
            "syntax error at line 2, column 8: expected `,` or `}` but found `]`",
        ),
        (
            b"{a,[1,2}.",
            "syntax error at line 1, column 8: expected `,` or `]` but found `}`",
        ),
        (
            b"{a,1} {b,2}.",
            "syntax error at line 1, column 7: expected `.` (end of the form) but found `{`",
        ),
        (
            b"{a,1}",
            "syntax error at line 1, column 6: expected `.` (end of the form) but found the \
                 end of the file",
        ),
        (
            b"{a,1}.\n{b,",
            "syntax error at line 2, column 4: expected a term but found the end of the file",
        ),
        (
            b"{a,.}.",
            "syntax error at line 1, column 4: expected a term but found `.`",
        ),
        (
            b"#{a}.",
            "syntax error at line 1, column 4: expected `=>` but found `}`",
        ),
        (
            b"#[].",
            "syntax error at line 1, column 2: expected `{` after `#` but found `[`",
        ),
        (
            b"{a, % note\n1}.",
            "syntax error at line 1, column 5: unexpected character `%` (comments are not \
                 allowed in metadata.config)",
        ),
        (
            b"{a, Foo}.",
            "syntax error at line 1, column 5: unexpected character `F` (variables are not \
                 allowed; quote atoms that start with an uppercase letter)",
        ),
        (
            b"{a, $c}.",
            "syntax error at line 1, column 5: unexpected character `$` (character literals are not allowed)",
        ),
        (
            b"{a, 1.5}.",
            "syntax error at line 1, column 6: expected `,` or `}` but found `.`",
        ),
        (
            b"[a|b].",
            "syntax error at line 1, column 3: unexpected character `|`",
        ),
        (
            b"{a, b < c}.",
            "syntax error at line 1, column 7: unexpected character `<`",
        ),
        (
            b"{a, \"abc}.",
            "syntax error at line 1, column 5: unterminated string (no closing `\"`)",
        ),
        (
            b"{a, 'abc}.",
            "syntax error at line 1, column 5: unterminated quoted atom (no closing `'`)",
        ),
        (
            b"{a, \"x\\\"}.",
            "syntax error at line 1, column 5: string ends with a lone backslash before its closing `\"`",
        ),
        (
            "{a, \u{FEFF}1}.".as_bytes(),
            "syntax error at line 1, column 5: unexpected character U+FEFF",
        ),
    ];
    for (src, expected) in cases {
        assert_eq!(
            &err_terms(src),
            expected,
            "{:?}",
            String::from_utf8_lossy(src)
        );
    }
}

#[test]
fn unpaired_trailing_backslash() {
    // The literal `"x\\\"` has no later quote, so it ends at its last quote and
    // its interior `x\\\` unescapes to `x\` and then a lone backslash (hex_core
    // crashes on this).
    let e = err_terms(b"{a, \"x\\\\\\\"}.");
    assert!(e.contains("ends with a lone backslash"), "{e}");
    assert!(e.contains("line 1, column 5"), "{e}");
}

#[test]
fn empty_input() {
    assert_eq!(parse_terms(b"").unwrap(), vec![]);
    assert_eq!(parse_terms(b" \n\t").unwrap(), vec![]);
    assert!(matches!(parse(b"\n"), Err(MetadataError::Empty)));
}

// -- parse: real files ----------------------------------------------------

#[test]
fn mix_layout() {
    let m = parse(ACME_EDGE.as_bytes()).unwrap();
    assert_eq!(m.name, "acme_edge");
    assert_eq!(m.version, "0.1.0");
    assert_eq!(m.app, "acme_edge");
    let dep = |name: &str, app: &str, requirement: &str, optional: bool, repo: &str| Requirement {
        name: name.to_string(),
        app: Some(app.to_string()),
        requirement: requirement.to_string(),
        optional,
        repository: Some(repo.to_string()),
    };
    assert_eq!(
        m.requirements,
        vec![
            dep("acme_a", "aliased_a", "~> 0.1", true, "acme"),
            dep("jason", "jason", "~> 1.4", false, "hexpm"),
            dep("org_pkg", "org_pkg", "== 1.0.0", false, "myorg"),
            dep("other_pkg", "other_pkg", "~> 2.0", false, "other"),
        ]
    );
}

#[test]
fn rebar3_layout() {
    let m = parse(ACME_ERL.as_bytes()).unwrap();
    assert_eq!(
        (m.name.as_str(), m.version.as_str(), m.app.as_str()),
        ("acme_erl", "0.2.0", "acme_erl")
    );
    assert_eq!(
        m.requirements,
        vec![req("acme_erl_base", Some("acme_erl_base"), "~> 0.1")]
    );
}

#[test]
fn real_files() {
    let m = parse(ACME_B.as_bytes()).unwrap();
    assert_eq!(m.requirements.len(), 2);
    assert_eq!(m.requirements[1].name, "acme_c");
    assert!(m.requirements[1].optional);
    assert!(!m.requirements[0].optional);
    let m = parse(ACME_A_RC.as_bytes()).unwrap();
    assert_eq!(m.version, "1.0.0-rc.1");
    assert!(m.requirements.is_empty());
    // The byte-list description is UTF-8.
    let terms = parse_terms(ACME_B.as_bytes()).unwrap();
    let description = terms.iter().find_map(|t| match t {
        Term::Tuple(kv) if kv.first() == Some(&bin(b"description")) => kv.get(1),
        _ => None,
    });
    assert_eq!(
        description,
        Some(&bin("Acme B with optional acme_c — émoji 🚀".as_bytes()))
    );
}

#[test]
fn display_reparses_to_the_same_terms() {
    for src in REAL {
        let terms = parse_terms(src.as_bytes()).unwrap();
        let printed: String = terms.iter().map(|t| format!("{t}.\n")).collect();
        assert_eq!(parse_terms(printed.as_bytes()).unwrap(), terms, "{printed}");
    }
    let odd = value(r#"{'A b', "q\"\n\001", <<0, 255>>, <<"é"/utf8>>, #{-1 => []}}"#);
    assert_eq!(value(&odd.to_string()), odd);
    assert_eq!(
        odd.to_string(),
        r#"{'A b',"q\"\n\001",<<0,255>>,<<"é"/utf8>>,#{-1 => []}}"#
    );
}

// -- parse: normalisation -------------------------------------------------

#[test]
fn duplicate_keys_last_wins() {
    let src = format!(
        "{HEAD}{{<<\"version\">>,<<\"2.0.0\">>}}.\n{{<<\"requirements\">>,[]}}.\n\
             {{<<\"requirements\">>,[[{{<<\"name\">>,<<\"x\">>}},{{<<\"requirement\">>,<<\"1\">>}},\
             {{<<\"requirement\">>,<<\"2\">>}}],[{{<<\"name\">>,<<\"x\">>}},\
             {{<<\"requirement\">>,<<\"3\">>}}]]}}.\n"
    );
    let m = parse(src.as_bytes()).unwrap();
    assert_eq!(m.version, "2.0.0");
    assert_eq!(m.requirements, vec![req("x", None, "3")]);
    let m = parse(
        with_requirements(
            r#"[[{<<"name">>,<<"x">>},{<<"requirement">>,<<"1">>},{<<"requirement">>,<<"2">>}]]"#,
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(m.requirements, vec![req("x", None, "2")]);
}

#[test]
fn requirements_sorted_and_unique() {
    let m = parse(
        with_requirements(
            r#"[{<<"zz">>,[{<<"requirement">>,<<"1">>}]},
                    {<<"Ab">>,[{<<"requirement">>,<<"2">>}]},
                    {<<"aa">>,[{<<"requirement">>,<<"3">>}]},
                    {<<"zz">>,[{<<"requirement">>,<<"4">>}]}]"#,
        )
        .as_bytes(),
    )
    .unwrap();
    let names: Vec<_> = m
        .requirements
        .iter()
        .map(|r| (r.name.as_str(), r.requirement.as_str()))
        .collect();
    assert_eq!(names, vec![("Ab", "2"), ("aa", "3"), ("zz", "4")]);
}

#[test]
fn missing_optional_keys() {
    let m =
        parse(with_requirements(r#"[{<<"dep">>,[{<<"requirement">>,<<"~> 1.0">>}]}]"#).as_bytes())
            .unwrap();
    assert_eq!(m.requirements, vec![req("dep", None, "~> 1.0")]);
    // `undefined` (which hex_core never turns into a binary) counts as absent.
    let m = parse(
        with_requirements(
            r#"[{<<"dep">>,[{<<"requirement">>,<<"1">>},{<<"repository">>,undefined},
                   {<<"app">>,undefined},{<<"optional">>,<<"true">>}]}]"#,
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(m.requirements, vec![req("dep", None, "1")]);
}

#[test]
fn optional_true_only_for_the_atom() {
    for (value, expected) in [
        ("true", true),
        ("false", false),
        ("'true'", true),
        ("1", false),
    ] {
        let m = parse(
            with_requirements(&format!(
                r#"[{{<<"d">>,[{{<<"requirement">>,<<"1">>}},{{<<"optional">>,{value}}}]}}]"#
            ))
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(m.requirements[0].optional, expected, "{value}");
    }
}

#[test]
fn other_requirement_layouts() {
    // rebar3 layout with map properties, and string (charlist) names/values.
    let m = parse(
        with_requirements(
            r#"[{"dep", #{<<"requirement">> => "~> 1.0", <<"app">> => <<"dep_app">>}}]"#,
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(m.requirements, vec![req("dep", Some("dep_app"), "~> 1.0")]);
    // A map keyed by name (the normalised form).
    let m = parse(
        with_requirements(r#"#{<<"b">> => [{<<"requirement">>,<<"1">>}], <<"a">> => #{<<"requirement">> => <<"2">>}}"#)
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        m.requirements,
        vec![req("a", None, "2"), req("b", None, "1")]
    );
    // Empty forms.
    for empty in ["[]", "\"\"", "#{}"] {
        assert!(
            parse(with_requirements(empty).as_bytes())
                .unwrap()
                .requirements
                .is_empty()
        );
    }
    // No `requirements` key at all: no dependencies (as `mix hex.registry build`).
    assert!(parse(HEAD.as_bytes()).unwrap().requirements.is_empty());
}

#[test]
fn text_values() {
    let src = "{<<\"name\">>,\"n\"}.{<<\"version\">>,[49,46,48]}.{<<\"app\">>,<<\"é\"/utf8>>}.\
                   {name,<<\"ignored\">>}.{\"version\",<<\"ignored\">>}.{<<\"unknown\">>,{x}}.";
    let m = parse(src.as_bytes()).unwrap();
    assert_eq!(
        (m.name.as_str(), m.version.as_str(), m.app.as_str()),
        ("n", "1.0", "é")
    );
}

// -- parse: errors --------------------------------------------------------

#[test]
fn missing_keys() {
    let e = err("{<<\"version\">>,<<\"1.0.0\">>}.{<<\"app\">>,<<\"a\">>}.{name,<<\"n\">>}.");
    assert!(matches!(e, MetadataError::MissingKey("name")), "{e:?}");
    assert_eq!(e.to_string(), "missing `name` entry");
    let e = err("{<<\"name\">>,<<\"n\">>}.{<<\"app\">>,<<\"a\">>}.");
    assert_eq!(e.to_string(), "missing `version` entry");
    let e = err("{<<\"name\">>,<<\"n\">>}.{<<\"version\">>,<<\"1\">>}.");
    assert!(matches!(e, MetadataError::MissingKey("app")), "{e:?}");
}

#[test]
fn wrong_types() {
    let e = err("{<<\"name\">>,<<\"n\">>}.{<<\"version\">>,{1,0,0}}.{<<\"app\">>,<<\"a\">>}.");
    match &e {
        MetadataError::WrongType {
            key,
            expected,
            found,
        } => {
            assert_eq!(key, "version");
            assert!(expected.starts_with("text"));
            assert_eq!(found, "a tuple ({1,0,0})");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "`version` entry must be text (a binary such as <<\"...\">> or a string), but it is a \
             tuple ({1,0,0})"
    );
    let e = err("{<<\"name\">>,foo}.");
    assert!(e.to_string().contains("`name` entry must be text"), "{e}");
    assert!(e.to_string().contains("an atom (foo)"), "{e}");
}

#[test]
fn not_key_value() {
    let e = err("{<<\"name\">>,<<\"n\">>}.\n\n{a,b,c}.");
    assert!(
        matches!(e, MetadataError::NotKeyValue { form: 2, line: 3 }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("form 2 is not a {Key, Value} pair"),
        "{e}"
    );
    assert!(e.to_string().contains("line 3"), "{e}");
    let e = err("ok.");
    assert!(
        e.to_string()
            .starts_with("form 1 is not a {Key, Value} pair"),
        "{e}"
    );
}

#[test]
fn requirement_errors() {
    let cases: &[(&str, &str)] = &[
        (
            r#"[[{<<"name">>,<<"jason">>},{<<"app">>,<<"jason">>}]]"#,
            "`requirements` entry for dependency `jason` has no `requirement`",
        ),
        (
            r#"[{<<"jason">>,[{<<"app">>,<<"jason">>}]}]"#,
            "`requirements` entry for dependency `jason` has no `requirement`",
        ),
        (
            r#"[[{<<"app">>,<<"jason">>},{<<"requirement">>,<<"1">>}]]"#,
            "`requirements` element 1 has no `name` entry",
        ),
        (
            r#"[[{<<"name">>,<<"a">>},{<<"requirement">>,<<"1">>}], []]"#,
            "`requirements` element 2 has no `name` entry",
        ),
        (
            r#"[[{<<"name">>,<<"a">>},{<<"requirement">>,<<"1">>}], {<<"b">>, []}]"#,
            "element 2 is a tuple ({<<\"b\">>,[]}), but element 1 is a list (mix layout)",
        ),
        (
            r#"[[{<<"name">>,<<"a">>}, oops]]"#,
            "element 1 is a list ([{<<\"name\">>,<<\"a\">>},oops]), but element 1 is a list",
        ),
        (
            r#"[{<<"a">>,[{<<"requirement">>,<<"1">>}]}, {<<"b">>}]"#,
            "element 2 is a tuple ({<<\"b\">>}), but element 1 is a {Name, Properties} pair",
        ),
        (
            r#"[{<<"a">>, <<"~> 1.0">>}]"#,
            "element 1 (dependency `a`) has properties that are a binary (<<\"~> 1.0\">>)",
        ),
        (
            r#"[5]"#,
            "element 1 is an integer (5), expected a list (mix layout) or a {Name, Properties} pair",
        ),
        (
            r#"<<"jason">>"#,
            "it is a binary (<<\"jason\">>), not a list",
        ),
        (
            r#"[{jason, [{<<"requirement">>,<<"1">>}]}]"#,
            "`requirements` element 1: the dependency name must be text (a binary such as \
                 <<\"...\">> or a string), but it is an atom (jason)",
        ),
        (
            r#"[{<<255>>, [{<<"requirement">>,<<"1">>}]}]"#,
            "`requirements` element 1: the dependency name is a binary that is not valid UTF-8",
        ),
        (
            r#"[{<<"jason">>, [{<<"requirement">>,'~> 1.0'}]}]"#,
            "`requirements` entry for dependency `jason`: `requirement` must be text (a binary \
                 such as <<\"...\">> or a string), but it is an atom ('~> 1.0')",
        ),
        (
            r#"[{<<"jason">>, [{<<"requirement">>,<<"1">>},{<<"repository">>,<<200>>}]}]"#,
            "`requirements` entry for dependency `jason`: `repository` must be text (a binary \
                 such as <<\"...\">> or a string), but it is a binary that is not valid UTF-8",
        ),
    ];
    for (requirements, expected) in cases {
        let e = err(&with_requirements(requirements)).to_string();
        assert!(
            e.contains(expected),
            "{requirements}\n  got: {e}\n  want: {expected}"
        );
    }
    let e = err(&with_requirements("[5]")).to_string();
    assert!(
        e.starts_with("`requirements` entry is in neither the mix layout"),
        "{e}"
    );
}

// -- robustness -----------------------------------------------------------

#[test]
fn never_panics_on_garbage() {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        "#{",
        "<<",
        ">>",
        ",",
        "=>",
        ".",
        " ",
        "\n",
        "-",
        "+",
        "/",
        "utf8",
        "a",
        "\"",
        "'",
        "\\",
        "^",
        "1",
        "99999999999999999999999999999999999999999",
        "é",
        "\u{0}",
        "<",
        ">",
        "=",
        "#",
        "x",
        "\"a\"",
        "<<\"name\">>",
        "<<\"requirements\">>",
        "<<\"requirement\">>",
        "<<\"version\">>",
        "true",
        "\\377",
        "\r\n",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let len = next() % 24;
        let mut src = String::new();
        for _ in 0..len {
            let i = usize::try_from(next() % PIECES.len() as u64).unwrap_or(0);
            src.push_str(PIECES[i]);
        }
        let mut bytes = src.into_bytes();
        if next() % 8 == 0 {
            bytes.push(0xE9);
        }
        let _ = parse(&bytes);
        if let Ok(terms) = parse_terms(&bytes) {
            // Whatever parses prints back to the same terms.
            let printed: String = terms.iter().map(|t| format!("{t}.\n")).collect();
            assert_eq!(parse_terms(printed.as_bytes()).unwrap(), terms, "{printed}");
        }
    }
    // Mutations of a real file.
    let base = ACME_EDGE.as_bytes();
    for _ in 0..5_000 {
        let mut bytes = base.to_vec();
        for _ in 0..(1 + next() % 3) {
            let p = usize::try_from(next() % bytes.len() as u64).unwrap_or(0);
            let b = b"{}[],.\"\\<>/-+#=a1 \n\xE9"[usize::try_from(next() % 19).unwrap_or(0)];
            match next() % 3 {
                0 => {
                    bytes.remove(p);
                }
                1 => bytes.insert(p, b),
                _ => bytes[p] = b,
            }
        }
        let _ = parse(&bytes);
    }
}

mod render_tests {
    use super::*;

    #[test]
    fn rendered_metadata_parses_back() {
        let meta = Metadata {
            name: "foo".into(),
            version: "1.0.0-rc.1".into(),
            app: "foo".into(),
            requirements: vec![
                Requirement {
                    name: "bar".into(),
                    app: Some("bar_app".into()),
                    requirement: "~> 1.0".into(),
                    optional: true,
                    repository: Some("hexpm".into()),
                },
                Requirement {
                    name: "baz".into(),
                    app: None,
                    requirement: ">= 0.0.0 and \"é\"".into(),
                    optional: false,
                    repository: None,
                },
            ],
        };
        assert_eq!(parse(render(&meta).as_bytes()).unwrap(), meta);
    }
}
