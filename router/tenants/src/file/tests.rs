use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn ed25519_public() -> &'static str {
    include_str!("../../testdata/ed25519-public.pem")
}

#[test]
fn a_full_file() {
    let text = format!(
        r#"
[tenants.acme]
allowed_origins = ["https://app.acme.example"]
allow_missing_origin = false

[tenants.acme.limits]
max_connections = 10
max_rooms = 2
max_room_size = 3
messages_per_second = 5

[[tenants.acme.keys]]
id = "acme-1"
secret = "{SECRET}"

[[tenants.acme.keys]]
id = "acme-ed"
algorithm = "EdDSA"
public_key = """
{}"""
revoked = true

[tenants.acme.turn]
urls = ["turn:turn.acme.example:3478"]
secrets = ["acme-turn-secret-1", "acme-turn-secret-0"]
ttl = "2h"

[tenants.acme.webhook]
url = "http://hooks.acme.internal:8080/sb"
secret = "acme-webhook-secret-0123"

[tenants.globex]
"#,
        ed25519_public()
    );
    let tenants = parse(&text).unwrap();
    assert_eq!(tenants.len(), 2);
    let acme = &tenants[0];
    assert_eq!(acme.id.as_str(), "acme");
    assert_eq!(acme.limits.max_connections, 10);
    assert_eq!(acme.limits.max_rooms, 2);
    assert!(!acme.origins.allow_missing);
    assert_eq!(acme.keys.len(), 2);
    assert_eq!(acme.keys[0].algorithm, Algorithm::HS256);
    assert_eq!(acme.keys[1].algorithm, Algorithm::EdDSA);
    assert!(acme.keys[1].revoked);
    let turn = acme.turn.as_ref().unwrap();
    assert_eq!(turn.urls, ["turn:turn.acme.example:3478"]);
    assert_eq!(turn.secrets.len(), 2);
    assert_eq!(turn.ttl, std::time::Duration::from_secs(7200));
    let webhook = acme.webhook.as_ref().unwrap();
    assert_eq!(webhook.url, "http://hooks.acme.internal:8080/sb");
    assert_eq!(webhook.secret, "acme-webhook-secret-0123");
    let globex = &tenants[1];
    assert!(globex.turn.is_none());
    assert!(globex.webhook.is_none());
    assert!(globex.keys.is_empty());
    assert_eq!(globex.limits, Limits::default());
    assert!(globex.origins.allow_missing);
}

#[test]
fn errors_name_the_place_and_never_the_secret() {
    let cases = [
        (
            "[tenants.acme]\nkeys = [{ id = \"k\", secret = \"short-secret\" }]\n".to_owned(),
            "tenant \"acme\": key \"k\": the secret is shorter than 32 bytes",
        ),
        (
            "[tenants.\"a b\"]\n".to_owned(),
            "tenant \"a b\": tenant id \"a b\" is not 1 to 64 ASCII letters, digits, '-' or '_'",
        ),
        (
            format!(
                "[tenants.a]\nkeys = [{{ id = \"k\", secret = \"{SECRET}\" }}]\n\
                 [tenants.b]\nkeys = [{{ id = \"k\", secret = \"{SECRET}\" }}]\n"
            ),
            "tenant \"b\": key id \"k\" is used twice",
        ),
        (
            format!(
                "[tenants.a]\nkeys = [{{ id = \"k\", secret = \"{SECRET}\", algorithm = \"ES256\" }}]\n"
            ),
            "tenant \"a\": key \"k\": a secret is an HS256 key, not \"ES256\"",
        ),
        (
            format!(
                "[tenants.a]\nkeys = [{{ id = \"k\", public_key = \"{SECRET}\", algorithm = \"EdDSA\" }}]\n"
            ),
            "tenant \"a\": key \"k\": public_key is not a EdDSA public key in PEM",
        ),
        (
            "[tenants.a]\nkeys = [{ id = \"k\", public_key = \"x\" }]\n".to_owned(),
            "public_key needs algorithm",
        ),
        (
            "[tenants.a]\nallowed_origins = [\"https://x.test/path\"]\n".to_owned(),
            "allowed origin \"https://x.test/path\" is not",
        ),
        (
            format!("[tenants.a]\n\n[tenants.a.limits]\nmax_connections = \"{SECRET}\"\n"),
            "line 4, column 19: invalid type: string, expected u32",
        ),
        (
            "[tenants.a]\nkeys = [{ id = \"k\", secret = 12345678 }]\n".to_owned(),
            "invalid type: integer, expected a string",
        ),
        (
            format!(
                "[tenants.a]\nturn = {{ urls = [\"stun:x.test\"], secrets = [\"{SECRET}\"] }}\n"
            ),
            "tenant \"a\": turn: no turn: or turns: URL",
        ),
        (
            format!("[tenants.a.webhook]\nurl = \"ftp://x.test/h\"\nsecret = \"{SECRET}\"\n"),
            "tenant \"a\": webhook url must start with https:// or http://",
        ),
        (
            "[tenants.a.webhook]\nurl = \"http://x.test/h\"\nsecret = \"short\"\n".to_owned(),
            "tenant \"a\": webhook secret must be at least 16 bytes",
        ),
        (
            format!(
                "[tenants.a.webhook]\nurl = \"http://x.test/h\"\nsecret = \"{SECRET}\"\nsecrt = 1\n"
            ),
            "unknown field `secrt`",
        ),
        (
            "[tenants.a]\nmax_conections = 3\n".to_owned(),
            "line 2, column 1: unknown field `max_conections`",
        ),
        (
            format!("[tenants.a]\nkeys = [{{ id = \"k\", secret = \"{SECRET}\n"),
            "line 2, column",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(&text).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{error:?} should contain {expected:?}"
        );
        assert!(!error.contains(SECRET), "{error:?} shows the secret");
        assert!(!error.contains("12345678"), "{error:?} shows the secret");
    }
}

#[test]
fn an_empty_file_has_no_tenants() {
    assert!(parse("").unwrap().is_empty());
}

#[test]
fn a_webhook_over_https_is_accepted() {
    let text =
        format!("[tenants.a.webhook]\nurl = \"https://hooks.a.test/sb\"\nsecret = \"{SECRET}\"\n");
    let tenants = parse(&text).unwrap();
    let webhook = tenants[0].webhook.as_ref().unwrap();
    let endpoint = webhook.validate().unwrap();
    assert!(endpoint.tls);
    assert_eq!(endpoint.port, 443);
}
