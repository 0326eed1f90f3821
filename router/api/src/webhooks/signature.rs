//! Signing webhook requests, and the check a receiver does (also used by our tests).
//!
//! The signed text is `<timestamp>.<body>`: the timestamp (Unix seconds, sent beside the
//! signature) is covered so that a captured request cannot be replayed later with a fresh one, and
//! the receiver refuses timestamps too far from its clock. The header is
//! `Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`; a receiver accepts any `v1`
//! that matches, so that several may be sent while a secret is rotated.

use std::time::Duration;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The header carrying the timestamp and signature.
pub const SIGNATURE_HEADER: &str = "Switchboard-Signature";
/// The header carrying the event id (also in the body), for de-duplication without parsing.
pub const EVENT_ID_HEADER: &str = "Switchboard-Event-Id";
/// How far from the receiver's clock a timestamp may be by default (Stripe and Slack use the same).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of every length (longer ones are hashed), so this error cannot happen; were it
    // to, the all-zero key yields signatures every receiver refuses, which is visible and safe.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The lowercase hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`.
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    hex(&mac(secret, timestamp, body).finalize().into_bytes())
}

/// The value of [`SIGNATURE_HEADER`] for a request sent at `timestamp`.
pub fn signature_header(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// Why a receiver refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header is not `t=<unix>,v1=<hex>[,v1=<hex>...]`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance (a replay, or a clock far off).
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// No signature matches the body (tampered, or another secret).
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a request as a receiver should: the header's timestamp is within `tolerance` of
/// `now_unix`, and one of its `v1` signatures is the HMAC of `<t>.<body>` (compared in constant
/// time).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: u64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(t.parse::<u64>().map_err(|_| VerifyError::Malformed)?)
            }
            Some(("v1", s)) => signatures.push(unhex(s).ok_or(VerifyError::Malformed)?),
            // Unknown schemes are skipped, so a later version can add one without breaking receivers.
            Some(_) => {}
            None => return Err(VerifyError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if now_unix.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(VerifyError::Stale);
    }
    let expected = mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|s| expected.clone().verify_slice(s).is_ok())
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret_0123456789";
    const BODY: &[u8] = br#"{"id":"evt_1"}"#;

    #[test]
    fn known_answer() {
        // Computed independently with Python: hmac.new(SECRET, b"1700000000." + BODY, sha256).
        assert_eq!(
            signature_header(SECRET, 1_700_000_000, BODY),
            "t=1700000000,v1=7e9a82a20098cf01f04d9c09f5a7459669bfecf51392ce3adb1445906fceff61"
        );
    }

    #[test]
    fn verification_table() {
        let now = 1_700_000_000;
        let good = signature_header(SECRET, now, BODY);
        let tol = DEFAULT_TOLERANCE;
        // name, header, body, receiver's clock, verdict
        type Case<'a> = (&'a str, String, &'a [u8], u64, Result<(), VerifyError>);
        let cases: &[Case] = &[
            ("genuine", good.clone(), BODY, now, Ok(())),
            (
                "genuine, clocks 299 s apart",
                good.clone(),
                BODY,
                now + 299,
                Ok(()),
            ),
            (
                "replayed 301 s later",
                good.clone(),
                BODY,
                now + 301,
                Err(VerifyError::Stale),
            ),
            (
                "timestamp from the future",
                good.clone(),
                BODY,
                now - 301,
                Err(VerifyError::Stale),
            ),
            (
                "tampered body",
                good.clone(),
                br#"{"id":"evt_2"}"#,
                now,
                Err(VerifyError::Mismatch),
            ),
            (
                "timestamp changed",
                good.replace("t=1700000000", "t=1700000001"),
                BODY,
                now,
                Err(VerifyError::Mismatch),
            ),
            (
                "other secret",
                signature_header(b"another secret entirely", now, BODY),
                BODY,
                now,
                Err(VerifyError::Mismatch),
            ),
            (
                "rotation: one of two matches",
                format!("{good},v1={}", "00".repeat(32)),
                BODY,
                now,
                Ok(()),
            ),
            (
                "no timestamp",
                format!("v1={}", sign(SECRET, now, BODY)),
                BODY,
                now,
                Err(VerifyError::Malformed),
            ),
            (
                "no signature",
                format!("t={now}"),
                BODY,
                now,
                Err(VerifyError::Malformed),
            ),
            (
                "bad hex",
                format!("t={now},v1=zz"),
                BODY,
                now,
                Err(VerifyError::Malformed),
            ),
            (
                "garbage",
                "hello".to_owned(),
                BODY,
                now,
                Err(VerifyError::Malformed),
            ),
        ];
        for (name, header, body, at, want) in cases {
            assert_eq!(&verify(SECRET, header, body, *at, tol), want, "{name}");
        }
    }
}
