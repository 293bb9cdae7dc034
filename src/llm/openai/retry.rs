//! When a failed completion request is worth sending again, and after how long.
//!
//! The rules are the official SDK's: retry connection failures, 408, 409, 429 and 5xx (never a
//! 429 that means "out of quota"); `x-should-retry` overrides; wait what `retry-after-ms` or
//! `retry-after` asks when it is reasonable, else an exponential backoff with jitter. The caller
//! adds the voice rule on top: only before the first token, and only within the first-token
//! budget.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// Longest server-requested wait we honour; longer ones fall back to our own backoff.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often and how patiently to resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Resends after the first attempt (the SDK's default is 2).
    pub max_retries: u32,
    /// Backoff before the first resend; doubles each time.
    pub initial_backoff: Duration,
    /// Cap of the doubled backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// Our own wait before resend number `retry` (0-based): `initial × 2^retry`, capped, then
    /// shortened by up to a quarter (`jitter` in `0..1`) so that calls rate-limited together do
    /// not come back together.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let doubled = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX));
        doubled
            .min(self.max_backoff)
            .mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
    }
}

/// Whether an HTTP failure is worth resending.
pub fn retryable_status(status: u16, headers: &HeaderMap, code: Option<&str>) -> bool {
    match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    if code == Some("insufficient_quota") {
        return false;
    }
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// The wait the server asks for: `retry-after-ms`, else `retry-after` in seconds or as an
/// HTTP date, if positive and at most a minute.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let wait = if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        seconds(ms / 1000.0)
    } else {
        let value = header("retry-after")?;
        match value.parse::<f64>() {
            Ok(secs) => seconds(secs),
            Err(_) => http_date(value)?.duration_since(now).ok(),
        }
    }?;
    (!wait.is_zero() && wait <= MAX_RETRY_AFTER).then_some(wait)
}

fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, the RFC 2822 subset HTTP uses).
fn http_date(value: &str) -> Option<SystemTime> {
    let parsed =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some(SystemTime::from(parsed))
}

/// A number in `0..1` for backoff jitter; 0 (no jitter) if the OS refuses randomness.
pub fn jitter() -> f64 {
    getrandom::u32().map_or(0.0, |n| f64::from(n) / (f64::from(u32::MAX) + 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn statuses_follow_the_sdk() {
        let none = HeaderMap::new();
        for status in [408, 409, 429, 500, 502, 503, 529] {
            assert!(retryable_status(status, &none, None), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!retryable_status(status, &none, None), "{status}");
        }
        assert!(!retryable_status(429, &none, Some("insufficient_quota")));
    }

    #[test]
    fn x_should_retry_overrides() {
        assert!(!retryable_status(
            500,
            &headers(&[("x-should-retry", "false")]),
            None
        ));
        assert!(retryable_status(
            400,
            &headers(&[("x-should-retry", "true")]),
            None
        ));
    }

    #[test]
    fn retry_after_in_ms_seconds_or_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 06 Nov 1994 08:49:37
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "120")]), now),
            Some(Duration::from_millis(120))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")]), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:40 GMT")]),
                now
            ),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn unreasonable_retry_after_is_ignored() {
        let now = SystemTime::now();
        for value in ["0", "-1", "3600", "soon", "NaN"] {
            let map = HeaderMap::from_iter([(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_static(value),
            )]);
            assert_eq!(retry_after(&map, now), None, "{value}");
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered_down() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(0, 0.0), Duration::from_millis(500));
        assert_eq!(policy.backoff(1, 0.0), Duration::from_secs(1));
        assert_eq!(policy.backoff(10, 0.0), Duration::from_secs(8));
        assert_eq!(policy.backoff(40, 0.0), Duration::from_secs(8));
        assert_eq!(policy.backoff(0, 1.0), Duration::from_millis(375));
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
