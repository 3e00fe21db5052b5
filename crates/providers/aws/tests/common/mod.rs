//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use waav_plugin_api::{Credentials, Secret};
use waav_provider_kit::aws::AwsCredentials;

pub const AKID: &str = "AKIAFAKETEST0001";
pub const SECRET: &str = "fakeSecretKey/+0123456789abcdefghijklmn";
pub const TOKEN: &str = "FwoGZXIvYXdzEFAKETOKEN//abc+def==";
pub const REGION: &str = "eu-west-1";

/// Session credentials as the host resolves them.
pub fn credentials(token: bool) -> Credentials {
    let mut c = Credentials::new();
    c.set("access_key_id", Secret::from(AKID));
    c.set("secret_access_key", Secret::from(SECRET));
    if token {
        c.set("session_token", Secret::from(TOKEN));
    }
    c.set("region", Secret::from(REGION));
    c
}

/// The same credentials for the kit's signer.
pub fn aws_credentials(token: bool) -> AwsCredentials {
    AwsCredentials::new(
        AKID,
        Secret::from(SECRET),
        token.then(|| Secret::from(TOKEN)),
    )
}

/// `YYYYMMDDTHHMMSSZ` as a time (proleptic Gregorian, UTC).
pub fn amz_time(s: &str) -> SystemTime {
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(4, 6), n(6, 8));
    let (hh, mm, ss) = (n(9, 11), n(11, 13), n(13, 15));
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = if y2 >= 0 { y2 } else { y2 - 399 } / 400;
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

#[test]
fn amz_time_parses() {
    assert_eq!(
        amz_time("20150830T123600Z"),
        UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    );
}
