//! `GET /v1/tenants/{id}/usage`: a tenant's usage per hour (docs/quotas.md, "usage"), from the
//! hourly statistics the room service keeps.

use serde::Serialize;
use switchboard_proto::TenantId;
use switchboard_rooms::{HourlyStats, TenantUsage};

use crate::error::ApiError;
use crate::service::{BoxFuture, ServiceError};

/// Seconds in an hour: statistics are kept per UTC hour since the epoch.
const HOUR: u64 = 3600;

/// The range a query asks for when it gives no `from`: the last day.
const DEFAULT_RANGE: u64 = 24 * HOUR;

/// Where the hourly statistics come from: standalone the edge's in-process room service, in a
/// cluster the routers' stored aggregates.
pub trait UsageSource: Send + Sync + 'static {
    /// The statistics now.
    fn hourly(&self) -> BoxFuture<'_, Result<HourlyStats, ServiceError>>;
}

/// One hour of a tenant's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourUsage {
    /// Hours since the Unix epoch (UTC).
    pub hour: u64,
    /// The hour's start, RFC 3339.
    pub start: String,
    /// What was counted.
    #[serde(flatten)]
    pub usage: TenantUsage,
}

/// The answer of the usage route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// The tenant.
    pub tenant: TenantId,
    /// Start of the range, seconds since the epoch (inclusive).
    pub from: u64,
    /// End of the range, seconds since the epoch (exclusive).
    pub to: u64,
    /// Hours with usage, oldest first; hours without are left out.
    pub hours: Vec<HourUsage>,
}

/// The hours of `stats` that overlap `[from, to)`, for `tenant`.
pub fn report(stats: &HourlyStats, tenant: &TenantId, from: u64, to: u64) -> UsageReport {
    let first = from / HOUR;
    let hours = stats
        .hours()
        .range(first..)
        .take_while(|(hour, _)| hour.saturating_mul(HOUR) < to)
        .filter_map(|(&hour, stats)| {
            let usage = stats.tenants.get(tenant)?;
            Some(HourUsage {
                hour,
                start: humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(hour * HOUR),
                )
                .to_string(),
                usage: *usage,
            })
        })
        .collect();
    UsageReport {
        tenant: tenant.clone(),
        from,
        to,
        hours,
    }
}

/// The range of a query string (`from`, `to`: RFC 3339 or seconds since the epoch); `to` defaults
/// to `now`, `from` to a day before `to`.
pub fn range(query: Option<&str>, now: u64) -> Result<(u64, u64), ApiError> {
    let (mut from, mut to) = (None, None);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = crate::server::percent_decode(value);
        // An empty value (`to=`) is the default, as if the parameter were left out.
        if value.is_empty() {
            continue;
        }
        match name {
            "from" => from = Some(time(&value, "from")?),
            "to" => to = Some(time(&value, "to")?),
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {name:?} (from, to)"
                )));
            }
        }
    }
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to.saturating_sub(DEFAULT_RANGE));
    if from > to {
        return Err(ApiError::BadRequest("from is after to".into()));
    }
    Ok((from, to))
}

fn time(value: &str, name: &str) -> Result<u64, ApiError> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(seconds);
    }
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}: not RFC 3339 (2026-01-31T12:00:00Z) or seconds since the epoch"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_hours() {
        assert_eq!(range(None, 100_000), Ok((100_000 - 86_400, 100_000)));
        assert_eq!(
            range(Some("from=1970-01-01T01:00:00Z&to=7300"), 0),
            Ok((3600, 7300))
        );
        assert!(range(Some("from=5&to=4"), 0).is_err());
        assert!(range(Some("from=yesterday"), 0).is_err());
        assert!(range(Some("limit=3"), 0).is_err());

        let acme = TenantId::parse("acme").unwrap();
        let mut stats = HourlyStats::new(1000);
        let usage = TenantUsage {
            connection_seconds: 5,
            ..TenantUsage::default()
        };
        for hour in [1, 2, 3] {
            stats.tenant_usage(hour, &acme, &usage);
        }
        let hours: Vec<u64> = report(&stats, &acme, 2 * 3600 + 5, 3 * 3600)
            .hours
            .iter()
            .map(|h| h.hour)
            .collect();
        assert_eq!(
            hours,
            [2],
            "the hour containing from, up to (not including) to"
        );
        let other = TenantId::parse("other").unwrap();
        assert!(report(&stats, &other, 0, 100_000).hours.is_empty());
    }
}
