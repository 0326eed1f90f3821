//! docs/hosting.md stays true: its tenants file is the example file that checks and signs, its code
//! excerpts come from the examples the browser tests run (edge/tests/browser/examples.test.mjs), and
//! its table of refusals names every reason the edge gives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use switchboard_edge::hosted::Refusal;
use switchboard_edge::token_command::{self, TokenArgs};
use switchboard_proto::ProtocolError;
use switchboard_tenants::OriginRefused;
use switchboard_tenants::token::TokenError;

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(docs().join(relative)).unwrap()
}

/// The fenced code blocks of `markdown` in `language`, without their indentation (list items indent
/// them), each as its text.
fn code_blocks(markdown: &str, language: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed == format!("```{language}") => {
                current = Some((line.len() - trimmed.len(), String::new()));
            }
            Some((_, text)) if trimmed == "```" => {
                blocks.push(std::mem::take(text));
                current = None;
            }
            Some((indent, text)) => {
                text.push_str(line.get(*indent..).unwrap_or(""));
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn the_documented_tenants_file_is_the_example_file_and_it_checks() {
    let example = read("examples/tenants.toml");
    let hosting = read("hosting.md");
    assert!(
        code_blocks(&hosting, "toml").contains(&example),
        "docs/hosting.md must show docs/examples/tenants.toml verbatim in a ```toml block"
    );
    let tenants = switchboard_tenants::file::read(&docs().join("examples/tenants.toml")).unwrap();
    let ids: Vec<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["acme", "globex"]);
    let acme = &tenants[0];
    assert_eq!(acme.limits.max_room_size, 8);
    assert!(!acme.origins.allow_missing);
    assert_eq!(acme.turn.as_ref().map(|turn| turn.urls.len()), Some(2));
    assert!(acme.key("acme-2026-05").unwrap().revoked);
    assert!(acme.key("acme-2026-11").unwrap().encoding().is_some());
    assert!(
        tenants[1].keys[0].encoding().is_none(),
        "globex's key is public"
    );

    // The token command signs with the documented current key, and refuses the revoked one.
    let args = |key: &str| {
        let path = docs().join("examples/tenants.toml");
        let argv = ["switchboard-edge token", "--tenants-file"]
            .map(String::from)
            .into_iter()
            .chain([path.display().to_string(), "--key".into(), key.into()]);
        let command =
            <TokenArgs as clap::CommandFactory>::command().mut_args(|a| a.env(None::<&str>));
        let matches = command.try_get_matches_from(argv).unwrap();
        <TokenArgs as clap::FromArgMatches>::from_arg_matches(&matches).unwrap()
    };
    assert!(token_command::mint(&args("acme-2026-11"), 1_800_000_000).is_ok());
    assert!(token_command::mint(&args("acme-2026-05"), 1_800_000_000).is_err());
}

/// Every line of each excerpt, in order, is a line of the example file it comes from (the excerpt
/// may leave lines out, never change them).
#[test]
fn the_code_excerpts_come_from_the_tested_examples() {
    let hosting = read("hosting.md");
    for (language, file) in [
        ("js", "examples/mint-token.mjs"),
        ("python", "examples/mint_token.py"),
    ] {
        let source = read(file);
        let excerpts: Vec<String> = code_blocks(&hosting, language)
            .into_iter()
            .filter(|block| block.contains("jwt"))
            .collect();
        assert_eq!(excerpts.len(), 1, "one {language} excerpt of {file}");
        let mut lines = source.lines();
        for wanted in excerpts[0].lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                lines.any(|line| line == wanted),
                "{file} has no line {wanted:?} (after the excerpt's previous lines)"
            );
        }
    }
}

#[test]
fn the_refusal_table_names_every_reason() {
    let hosting = read("hosting.md");
    let token_errors = [
        TokenError::Missing,
        TokenError::Invalid,
        TokenError::UnknownKey,
        TokenError::KeyRevoked,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::LifetimeTooLong,
    ];
    let refusals = token_errors
        .into_iter()
        .map(Refusal::from)
        .chain([OriginRefused::NotAllowed, OriginRefused::Missing].map(Refusal::from));
    for refusal in refusals {
        let row = format!("| {} | `{}` |", refusal.status.as_u16(), refusal.reason);
        assert!(hosting.contains(&row), "docs/hosting.md has no row {row}");
        assert!(
            hosting.contains(&format!("`{}`", refusal.label())),
            "docs/hosting.md does not name the metric label {}",
            refusal.label()
        );
    }
    let protocol = read("protocol.md");
    for error in ProtocolError::ALL {
        let hosted = matches!(
            error,
            ProtocolError::RoomNotAllowed
                | ProtocolError::JoinNotAllowed
                | ProtocolError::SendNotAllowed
                | ProtocolError::RoomQuotaExceeded
                | ProtocolError::TenantRateLimited
        );
        if hosted {
            let text = format!("`{error}`");
            assert!(
                hosting.contains(&format!("| {text} |")),
                "hosting.md: {text}"
            );
            assert!(protocol.contains(&text), "protocol.md: {text}");
        }
    }
}
