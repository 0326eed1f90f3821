//! `switchboard-edge token`: prints a join token signed with a key of the tenants file.
//!
//! For operators: trying a hosted endpoint, smoke tests after a deploy, a token for a support case.
//! Customers' backends mint their own tokens with any JWT library (docs/hosting.md); this command
//! makes the same tokens from the same tenants file the edges read, and checks the result against
//! it, so a token it prints is one an edge with that file accepts (until it expires or its key is
//! revoked).
//!
//! It is dispatched on the first argument in `main.rs` rather than as a clap subcommand of
//! [`Config`](crate::Config): the server's command line stays exactly as it was (no positional
//! argument, no subcommand to skip), and this command's flags are not mixed into the server's
//! validation.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use switchboard_proto::limits::{MAX_NAME_CHARS, MAX_ROOM_ID_CHARS};
use switchboard_runtime::cli::EX_USAGE;
use switchboard_runtime::config::parse_duration;
use switchboard_runtime::config_sources::Sources;
use switchboard_tenants::file::FileError;
use switchboard_tenants::token::{self, Claims, Grant, MintError, Rules, TokenError};
use switchboard_tenants::{Directory, Key};

/// The first argument that selects this command: `switchboard-edge token …`.
pub const COMMAND: &str = "token";

/// The command's name in usage and error messages.
pub const NAME: &str = "switchboard-edge token";

/// Print a join token for hosted mode, signed with a key of the tenants file.
///
/// The token goes to stdout, alone on its line. Its tenant is the key's. An HS256 key signs with
/// the secret in the tenants file; an EdDSA or ES256 key is a public key there, so the token is
/// signed with its private key (--private-key-file), as the tenant's backend would. The token is
/// checked against the tenants file before it is printed. docs/hosting.md has the details.
#[derive(Debug, Clone, clap::Args)]
#[command(
    version,
    after_help = "Example:\n  switchboard-edge token --tenants-file tenants.toml --key acme-2026-11 \
                  --room standup --name Alice --ttl 2h\n\nExit status: 0 with a token on stdout, \
                  64 when no token can be made (the reason on stderr)."
)]
pub struct TokenArgs {
    /// The tenants file, the one the edges read with --tenants-file.
    #[arg(long, env = "SWITCHBOARD_TENANTS_FILE", value_name = "FILE")]
    pub tenants_file: PathBuf,

    /// The id of the key to sign with (its `id` in the tenants file); the token is for its tenant.
    #[arg(long, value_name = "KEY_ID")]
    pub key: String,

    /// The only room the token may join (`room` claim). Without it, any room of the tenant.
    #[arg(long)]
    pub room: Option<String>,

    /// How long the token is valid (`exp` = now + ttl). At most --token-max-lifetime.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,

    /// The user, your own id for them (`sub` claim).
    #[arg(long)]
    pub sub: Option<String>,

    /// The peer's name others see (`name` claim): it replaces any name the client sends.
    #[arg(long)]
    pub name: Option<String>,

    /// What the token allows, repeatable: `join` (rooms), `send` (messages to peers). Without
    /// it, both.
    #[arg(long = "grant", value_enum, value_name = "GRANT")]
    pub grants: Vec<GrantArg>,

    /// The private key (PEM, PKCS#8) of an EdDSA or ES256 key, whose public half is in the tenants
    /// file. Not for HS256 keys, which sign with their secret.
    #[arg(long, value_name = "PEM_FILE")]
    pub private_key_file: Option<PathBuf>,

    /// The edges' --token-max-lifetime: a longer --ttl is refused here, as the edges would refuse
    /// the token (`token lifetime too long`).
    #[arg(long, env = "SWITCHBOARD_TOKEN_MAX_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub token_max_lifetime: Duration,

    /// Which settings came from environment variables (not a flag).
    #[arg(skip)]
    pub sources: Sources,
}

switchboard_runtime::parse_with_sources!(TokenArgs, NAME);

/// A grant on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GrantArg {
    /// Join rooms.
    Join,
    /// Send messages to peers.
    Send,
    /// Use the control API for the key's tenant (docs/api.md).
    Admin,
}

impl From<GrantArg> for Grant {
    fn from(grant: GrantArg) -> Grant {
        match grant {
            GrantArg::Join => Grant::Join,
            GrantArg::Send => Grant::Send,
            GrantArg::Admin => Grant::Admin,
        }
    }
}

/// Why no token was printed. Each text says what to change; none shows a secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenCommandError {
    /// The tenants file cannot be read or does not check.
    #[error("--tenants-file {path}")]
    TenantsFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        #[source]
        error: FileError,
    },
    /// No tenant has a key of that id.
    #[error("--key {key:?}: no such key in {path} (its keys: {known})")]
    UnknownKey {
        /// The key id given.
        key: String,
        /// The tenants file.
        path: String,
        /// The key ids the file has, comma-separated.
        known: String,
    },
    /// The key is revoked: edges refuse its tokens.
    #[error("--key {0:?} is revoked in the tenants file: edges refuse its tokens (key revoked)")]
    Revoked(String),
    /// A public key without its private key.
    #[error(
        "--key {key:?} is an {algorithm} public key: the tenants file cannot sign with it; give \
         its private key with --private-key-file (the tenant's backend holds it)"
    )]
    NeedsPrivateKey {
        /// The key id.
        key: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// A private key for an HS256 key, which signs with its secret.
    #[error(
        "--private-key-file is for EdDSA and ES256 keys; --key {0:?} is an HS256 key and signs \
         with its secret from the tenants file"
    )]
    PrivateKeyNotNeeded(String),
    /// The private key file cannot be read.
    #[error("--private-key-file {path}: cannot read it")]
    ReadPrivateKey {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The private key file is not a PEM private key of the key's algorithm.
    #[error(
        "--private-key-file {path} is not a PKCS#8 PEM private key for --key {key:?} ({algorithm})"
    )]
    BadPrivateKey {
        /// The file.
        path: String,
        /// The key id.
        key: String,
        /// Its algorithm.
        algorithm: String,
        /// What the signer said.
        #[source]
        error: MintError,
    },
    /// Signing with an HS256 secret failed.
    #[error("cannot sign with --key {key:?}")]
    Sign {
        /// The key id.
        key: String,
        /// What the signer said.
        #[source]
        error: MintError,
    },
    /// The private key is not the one whose public half the tenants file has.
    #[error(
        "--private-key-file does not match the public key of --key {0:?} in the tenants file: \
         edges would refuse the token (invalid token)"
    )]
    KeyMismatch(String),
    /// The signed token does not pass the edges' checks (should not happen once the above pass).
    #[error("the token would be refused by the edges: {0}")]
    Refused(TokenError),
    /// The lifetime is zero or longer than the edges accept.
    #[error(
        "--ttl {ttl} must be between 1s and --token-max-lifetime ({max}): edges refuse tokens that \
         live longer (token lifetime too long)"
    )]
    Ttl {
        /// The --ttl given.
        ttl: String,
        /// The maximum.
        max: String,
    },
    /// A room the edges would refuse.
    #[error("--room must be 1 to {MAX_ROOM_ID_CHARS} characters (got {0})")]
    Room(usize),
    /// A name the edges would refuse at the join.
    #[error(
        "--name must be 1 to {MAX_NAME_CHARS} characters and not blank: edges would refuse the join"
    )]
    Name,
    /// `--grant` given, but not `join`: a token that cannot join is of no use.
    #[error("--grant: without `join` the token cannot join any room; add --grant join")]
    NoJoin,
}

/// Makes the token `args` describe, at `now` (seconds since the Unix epoch).
pub fn mint(args: &TokenArgs, now: u64) -> Result<String, TokenCommandError> {
    check_claims(args)?;
    let path = args.tenants_file.display().to_string();
    let tenants = switchboard_tenants::file::read(&args.tenants_file).map_err(|error| {
        TokenCommandError::TenantsFile {
            path: path.clone(),
            error,
        }
    })?;
    let directory = Directory::new();
    // One source, whose key ids the file check already made unique: no conflict is possible.
    let known = tenants
        .iter()
        .flat_map(|tenant| tenant.keys.iter().map(|key| key.id.clone()))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = directory.replace("file", tenants);
    let snapshot = directory.snapshot();
    let (tenant, key) = snapshot
        .key(&args.key)
        .ok_or_else(|| TokenCommandError::UnknownKey {
            key: args.key.clone(),
            path,
            known,
        })?;
    if key.revoked {
        return Err(TokenCommandError::Revoked(key.id.clone()));
    }
    let claims = Claims {
        exp: now.saturating_add(args.ttl.as_secs()),
        nbf: None,
        iat: Some(now),
        sub: args.sub.clone(),
        room: args.room.clone(),
        name: args.name.clone(),
        grants: (!args.grants.is_empty())
            .then(|| args.grants.iter().copied().map(Grant::from).collect()),
        tenant: Some(tenant.id.as_str().to_owned()),
    };
    let token = sign(args, key, &claims)?;
    let rules = Rules {
        leeway: 0,
        max_lifetime: args.token_max_lifetime.as_secs(),
    };
    // The edges' own check: catches a private key that is not the tenants file's public key.
    match token::verify(&snapshot, &token, rules, now) {
        Ok(_) => Ok(token),
        Err(TokenError::Invalid) if args.private_key_file.is_some() => {
            Err(TokenCommandError::KeyMismatch(key.id.clone()))
        }
        Err(error) => Err(TokenCommandError::Refused(error)),
    }
}

/// The checks that need no file, in the order of the flags.
fn check_claims(args: &TokenArgs) -> Result<(), TokenCommandError> {
    if args.ttl < Duration::from_secs(1) || args.ttl > args.token_max_lifetime {
        return Err(TokenCommandError::Ttl {
            ttl: humantime::format_duration(args.ttl).to_string(),
            max: humantime::format_duration(args.token_max_lifetime).to_string(),
        });
    }
    if let Some(room) = &args.room {
        let chars = room.chars().count();
        if chars == 0 || chars > MAX_ROOM_ID_CHARS {
            return Err(TokenCommandError::Room(chars));
        }
    }
    if let Some(name) = &args.name
        && (name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS)
    {
        return Err(TokenCommandError::Name);
    }
    if !args.grants.is_empty() && !args.grants.contains(&GrantArg::Join) {
        return Err(TokenCommandError::NoJoin);
    }
    Ok(())
}

fn sign(args: &TokenArgs, key: &Key, claims: &Claims) -> Result<String, TokenCommandError> {
    let algorithm = format!("{:?}", key.algorithm);
    match (&args.private_key_file, key.encoding().is_some()) {
        (None, true) => token::mint(key, claims).map_err(|error| TokenCommandError::Sign {
            key: key.id.clone(),
            error,
        }),
        (Some(_), true) => Err(TokenCommandError::PrivateKeyNotNeeded(key.id.clone())),
        (None, false) => Err(TokenCommandError::NeedsPrivateKey {
            key: key.id.clone(),
            algorithm,
        }),
        (Some(path), false) => {
            let pem = std::fs::read_to_string(path).map_err(|error| {
                TokenCommandError::ReadPrivateKey {
                    path: path.display().to_string(),
                    error,
                }
            })?;
            token::mint_with_private_key(key, &pem, claims).map_err(|error| {
                TokenCommandError::BadPrivateKey {
                    path: path.display().to_string(),
                    key: key.id.clone(),
                    algorithm,
                    error,
                }
            })
        }
    }
}

/// Runs the command with `args` (what follows `token` on the command line): prints the token, or
/// why there is none (exit 64). `--help` and `--version` exit 0.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let argv = std::iter::once(OsString::from(NAME)).chain(args);
    let parsed = match <TokenArgs as clap::Parser>::try_parse_from(argv) {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match mint(&parsed, crate::hosted::unix_now()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let message = parsed.sources.annotate(&switchboard_runtime::describe(&e));
            eprintln!("{NAME}: {message}");
            ExitCode::from(EX_USAGE)
        }
    }
}

#[cfg(test)]
mod tests;
