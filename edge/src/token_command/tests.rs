#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use clap::{CommandFactory, FromArgMatches};
use switchboard_testkit::TempDir;

use super::*;

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "acme-secret-0123456789abcdefghijklmnop";
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../router/tenants/testdata");
/// An Ed25519 public key whose private half is nowhere in the repository: the tenants file's key
/// that a wrong private key does not match.
const OTHER_ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAhZiR3RAqGd3QMjXtzG/EsrgUHorHkREYQnwaqX9RCKY=
-----END PUBLIC KEY-----";

fn testdata(name: &str) -> String {
    format!("{TESTDATA}/{name}")
}

fn pem(name: &str) -> String {
    std::fs::read_to_string(testdata(name)).unwrap()
}

/// Tenant `acme` with an HS256 key, an EdDSA and an ES256 public key, a revoked key and an EdDSA
/// key the test private key does not match; tenant `other` with one HS256 key.
fn tenants_file() -> (TempDir, String) {
    let dir = TempDir::new("token-command").unwrap();
    let path = dir.path().join("tenants.toml");
    let text = format!(
        r#"
[[tenants.acme.keys]]
id = "acme-hs"
secret = "{SECRET}"

[[tenants.acme.keys]]
id = "acme-old"
secret = "{SECRET}"
revoked = true

[[tenants.acme.keys]]
id = "acme-ed"
algorithm = "EdDSA"
public_key = """
{}"""

[[tenants.acme.keys]]
id = "acme-es"
algorithm = "ES256"
public_key = """
{}"""

[[tenants.acme.keys]]
id = "acme-ed-other"
algorithm = "EdDSA"
public_key = """
{OTHER_ED_PUBLIC}
"""

[[tenants.other.keys]]
id = "other-hs"
secret = "other-secret-0123456789abcdefghijklmnop"
"#,
        pem("ed25519-public.pem"),
        pem("p256-public.pem"),
    );
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

/// The command's arguments, ignoring `SWITCHBOARD_*` variables of the test's environment.
fn args(file: &str, extra: &[&str]) -> TokenArgs {
    let command = TokenArgs::command().mut_args(|arg| arg.env(None::<&str>));
    let argv = [NAME, "--tenants-file", file]
        .into_iter()
        .chain(extra.iter().copied());
    let matches = command.try_get_matches_from(argv).unwrap();
    TokenArgs::from_arg_matches(&matches).unwrap()
}

/// The claims of `token`, checked as an edge with `file` checks them.
fn verified(file: &str, token: &str) -> token::Session {
    let directory = Directory::new();
    directory
        .replace(
            "test",
            switchboard_tenants::file::read(Path::new(file)).unwrap(),
        )
        .unwrap();
    let rules = Rules {
        leeway: 30,
        max_lifetime: 86_400,
    };
    token::verify(&directory.snapshot(), token, rules, NOW).unwrap()
}

#[test]
fn hs256_tokens_carry_the_claims_given() {
    let (_dir, file) = tenants_file();
    let argv = [
        "--key", "acme-hs", "--room", "standup", "--name", "Alice", "--sub", "u-1", "--ttl", "2h",
    ];
    let token = mint(&args(&file, &argv), NOW).unwrap();
    let session = verified(&file, &token);
    assert_eq!(session.tenant.id.as_str(), "acme");
    assert_eq!(session.key_id, "acme-hs");
    assert_eq!(session.room.as_deref(), Some("standup"));
    assert_eq!(session.name.as_deref(), Some("Alice"));
    assert_eq!(session.subject.as_deref(), Some("u-1"));
    assert_eq!(session.expires_at, NOW + 7200);
    assert!(session.may_join && session.may_send);

    let bare = mint(&args(&file, &["--key", "other-hs"]), NOW).unwrap();
    let session = verified(&file, &bare);
    assert_eq!(session.tenant.id.as_str(), "other");
    assert_eq!(session.room, None);
    assert_eq!(session.expires_at, NOW + 3600, "the default ttl is an hour");
}

#[test]
fn grants_limit_what_the_token_allows() {
    let (_dir, file) = tenants_file();
    let token = mint(&args(&file, &["--key", "acme-hs", "--grant", "join"]), NOW).unwrap();
    let session = verified(&file, &token);
    assert!(session.may_join);
    assert!(!session.may_send);
    let both = ["--key", "acme-hs", "--grant", "join", "--grant", "send"];
    let session = verified(&file, &mint(&args(&file, &both), NOW).unwrap());
    assert!(session.may_join && session.may_send);
    assert!(matches!(
        mint(&args(&file, &["--key", "acme-hs", "--grant", "send"]), NOW),
        Err(TokenCommandError::NoJoin)
    ));
}

#[test]
fn public_keys_sign_with_their_private_key() {
    let (_dir, file) = tenants_file();
    for (key, private) in [
        ("acme-ed", "ed25519-private.pem"),
        ("acme-es", "p256-private.pem"),
    ] {
        let private = testdata(private);
        let token = mint(
            &args(&file, &["--key", key, "--private-key-file", &private]),
            NOW,
        )
        .unwrap();
        assert_eq!(verified(&file, &token).key_id, key);
    }
}

/// Every way a token cannot be made, with a message that says what to change.
#[test]
fn errors_say_what_to_change() {
    let (_dir, file) = tenants_file();
    let ed_private = testdata("ed25519-private.pem");
    let p256_private = testdata("p256-private.pem");
    let long_room = "r".repeat(51);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--key", "nobody"], "--key \"nobody\": no such key in"),
        (vec!["--key", "acme-old"], "is revoked"),
        (
            vec!["--key", "acme-ed"],
            "is an EdDSA public key: the tenants file cannot sign with it; give its private key \
             with --private-key-file",
        ),
        (
            vec!["--key", "acme-hs", "--private-key-file", &ed_private],
            "is an HS256 key and signs with its secret",
        ),
        (
            vec!["--key", "acme-ed-other", "--private-key-file", &ed_private],
            "does not match the public key of --key \"acme-ed-other\"",
        ),
        (
            vec!["--key", "acme-ed", "--private-key-file", &p256_private],
            "is not a PKCS#8 PEM private key for --key \"acme-ed\" (EdDSA)",
        ),
        (
            vec!["--key", "acme-ed", "--private-key-file", "/nonexistent.pem"],
            "--private-key-file /nonexistent.pem: cannot read it",
        ),
        (
            vec!["--key", "acme-hs", "--ttl", "25h"],
            "--ttl 1day 1h must be between 1s and --token-max-lifetime (1day)",
        ),
        (vec!["--key", "acme-hs", "--ttl", "0s"], "--ttl 0s must be"),
        (
            vec![
                "--key",
                "acme-hs",
                "--ttl",
                "2h",
                "--token-max-lifetime",
                "1h",
            ],
            "--ttl 2h must be between 1s and --token-max-lifetime (1h)",
        ),
        (
            vec!["--key", "acme-hs", "--room", &long_room],
            "--room must be 1 to 50 characters (got 51)",
        ),
        (vec!["--key", "acme-hs", "--room", ""], "(got 0)"),
        (vec!["--key", "acme-hs", "--name", "  "], "--name must be"),
    ];
    for (argv, expected) in cases {
        let error = mint(&args(&file, &argv), NOW).expect_err(&format!("{argv:?} fails"));
        let text = switchboard_runtime::describe(&error);
        assert!(text.contains(expected), "{argv:?}: {text}");
        assert!(
            !text.contains(SECRET),
            "{argv:?}: the message shows a secret"
        );
    }
    // The unknown key's message lists the keys there are, to pick from.
    let error = mint(&args(&file, &["--key", "nobody"]), NOW).unwrap_err();
    assert!(error.to_string().contains("acme-hs, acme-old, acme-ed"));
}

#[test]
fn a_bad_tenants_file_is_named() {
    let dir = TempDir::new("token-command").unwrap();
    let path = dir.path().join("tenants.toml");
    std::fs::write(
        &path,
        "[tenants.acme]\nkeys = [{ id = \"k\", secret = \"short\" }]\n",
    )
    .unwrap();
    let path = path.display().to_string();
    let error = mint(&args(&path, &["--key", "k"]), NOW).unwrap_err();
    let text = switchboard_runtime::describe(&error);
    assert!(
        text.starts_with(&format!(
            "--tenants-file {path}: tenant \"acme\": key \"k\""
        )),
        "{text}"
    );
    assert!(!text.contains("short\""), "no secret in {text}");
    let missing = mint(&args("/nonexistent/tenants.toml", &["--key", "k"]), NOW).unwrap_err();
    assert!(
        switchboard_runtime::describe(&missing).contains("cannot read /nonexistent/tenants.toml")
    );
}
