use super::*;

fn settings(secrets: &[&str]) -> TurnSettings {
    TurnSettings {
        urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
        secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        ttl: Duration::from_secs(3600),
    }
}

/// Known answers, computed independently of this code:
///
/// ```sh
/// printf '%s' '1700003600:alice' | openssl dgst -sha1 -hmac north -binary | base64
/// python3 -c 'import hmac, hashlib, base64; print(base64.b64encode(hmac.new(
///     b"coturn-rest-secret", b"1700003600:3f0c9a6e-2b1d-4c8e-9f7a-5d4e3c2b1a09",
///     hashlib.sha1).digest()).decode())'
/// ```
#[test]
fn minted_credentials_match_known_answers() {
    let alice = settings(&["north"]).mint("alice", 1_700_000_000).unwrap();
    assert_eq!(alice.username, "1700003600:alice");
    assert_eq!(alice.password, "wjwSXO2ch1B6VaLTLMy2Avn5O9o=");
    assert_eq!((alice.expires_at, alice.ttl_seconds), (1_700_003_600, 3600));

    let conn = "3f0c9a6e-2b1d-4c8e-9f7a-5d4e3c2b1a09";
    let minted = settings(&["coturn-rest-secret"])
        .mint(conn, 1_700_000_000)
        .unwrap();
    assert_eq!(minted.username, format!("1700003600:{conn}"));
    assert_eq!(minted.password, "VO6xwkflZ/g/beS1aVrZlgnaUzc=");
}

#[test]
fn the_first_secret_mints() {
    let rotated = settings(&["new", "old"]).mint("bo", 100).unwrap();
    let fresh = settings(&["new"]).mint("bo", 100).unwrap();
    let old = settings(&["old"]).mint("bo", 100).unwrap();
    assert_eq!(rotated, fresh);
    assert_ne!(rotated.password, old.password);
    assert_eq!(rotated.password, password(&Secret::new("new"), "3700:bo"));
}

#[test]
fn the_expiry_follows_the_time_passed_in() {
    let s = settings(&["k"]);
    let early = s.mint("u", 1_000).unwrap();
    let late = s.mint("u", 1_001).unwrap();
    assert_eq!(early.expires_at, 4_600);
    assert_eq!(late.expires_at, 4_601);
    assert_ne!(early.password, late.password);
    let fraction = TurnSettings {
        ttl: Duration::from_millis(2_999),
        ..settings(&["k"])
    };
    assert_eq!(fraction.mint("u", 10).unwrap().expires_at, 12);
}

#[test]
fn users_coturn_refuses_are_refused() {
    let s = settings(&["k"]);
    for user in [
        "",
        "a b",
        "tab\there",
        "new\nline",
        "it's",
        "say \"hi\"",
        "back\\slash",
        "reUNION-selection",
    ] {
        assert!(
            matches!(s.mint(user, 0), Err(MintError::User(_))),
            "{user:?}"
        );
    }
    assert!(s.mint(&"u".repeat(MAX_USER_BYTES), 0).is_ok());
    assert!(s.mint(&"u".repeat(MAX_USER_BYTES + 1), 0).is_err());
    for user in ["alice@example.org", "tenant:sub", "Zoë", "user_1-2.3"] {
        assert!(s.mint(user, 0).is_ok(), "{user:?}");
    }
    let none = TurnSettings {
        secrets: Vec::new(),
        ..settings(&[])
    };
    assert_eq!(none.mint("u", 0), Err(MintError::NoSecret));
}

#[test]
fn validation_names_what_is_wrong() {
    let check = |f: fn(&mut TurnSettings)| {
        let mut s = settings(&["k1", "k2"]);
        f(&mut s);
        s.validate()
    };
    assert_eq!(check(|_| {}), Ok(()));
    assert_eq!(check(|s| s.urls.clear()), Err(TurnSettingsError::NoUrls));
    assert!(matches!(
        check(|s| s.urls.push("http://x".into())),
        Err(TurnSettingsError::Url(_))
    ));
    assert_eq!(
        check(|s| s.urls = vec!["stun:s.example.org".into()]),
        Err(TurnSettingsError::NoTurnUrl)
    );
    assert_eq!(
        check(|s| s.secrets.clear()),
        Err(TurnSettingsError::NoSecrets)
    );
    assert_eq!(
        check(|s| s.secrets[1] = Secret::new("")),
        Err(TurnSettingsError::EmptySecret(2))
    );
    assert_eq!(
        check(|s| s.secrets[0] = Secret::new("a\nb")),
        Err(TurnSettingsError::ControlCharacter(1))
    );
    assert_eq!(
        check(|s| s.ttl = Duration::ZERO),
        Err(TurnSettingsError::TtlTooShort)
    );
    assert_eq!(
        check(|s| s.ttl = Duration::from_millis(999)),
        Err(TurnSettingsError::TtlTooShort)
    );
    assert_eq!(check(|s| s.ttl = MAX_TTL), Ok(()));
    let long = check(|s| s.ttl = MAX_TTL + Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        long.to_string(),
        "the TURN credential lifetime must be at most 7 days (got 7days 1s)"
    );
}

#[test]
fn secrets_never_show() {
    let s = settings(&["hunter2"]);
    let shown = format!("{s:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let minted = s.mint("u", 0).unwrap();
    let shown = format!("{minted:?}");
    assert!(!shown.contains(&minted.password), "{shown}");
    let refused = settings(&["hunter2\n"]).validate().unwrap_err().to_string();
    assert!(!refused.contains("hunter2"), "{refused}");
}

#[test]
fn a_toml_section_reads() {
    let text = r#"
        urls = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]
        secrets = ["new", "old"]
        ttl = "1h 30m"
    "#;
    let s: TurnSettings = toml::from_str(text).unwrap();
    assert_eq!(s.urls.len(), 2);
    assert_eq!(s.secrets, [Secret::new("new"), Secret::new("old")]);
    assert_eq!(s.ttl, Duration::from_secs(5400));
    assert_eq!(s.validate(), Ok(()));

    let seconds: TurnSettings =
        toml::from_str("urls = [\"turn:t\"]\nsecrets = [\"k\"]\nttl = 90").unwrap();
    assert_eq!(seconds.ttl, Duration::from_secs(90));
    let default: TurnSettings = toml::from_str("urls = [\"turn:t\"]\nsecrets = [\"k\"]").unwrap();
    assert_eq!(default.ttl, DEFAULT_TTL);

    let bad =
        toml::from_str::<TurnSettings>("urls = [\"turn:t\"]\nsecrets = [\"k\"]\nttl = \"soon\"");
    assert!(bad.unwrap_err().to_string().contains("ttl \"soon\""));
    let typo = toml::from_str::<TurnSettings>("url = [\"turn:t\"]\nsecrets = [\"k\"]");
    assert!(
        typo.unwrap_err()
            .to_string()
            .contains("unknown field `url`")
    );
}
