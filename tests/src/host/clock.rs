//! Ids and timestamps: a counter/time based GUID generator (no uuid crate)
//! and the ISO-8601 shapes the host writes (`UtcNow` with seven fractional
//! digits, queue times as `2019-10-09T17:58:31+00:00`, functions-facts §3).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static SEED: OnceLock<u64> = OnceLock::new();

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn next_pair() -> (u64, u64) {
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        mix(nanos ^ u64::from(std::process::id()) << 32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // The low half carries the counter, so ids never repeat within a process.
    (
        mix(seed ^ n),
        (mix(seed.rotate_left(17)) & 0xFFFF_FFFF_0000_0000) | (n & 0xFFFF_FFFF),
    )
}

/// A fresh GUID-shaped id (`xxxxxxxx-xxxx-4xxx-8xxx-xxxxxxxxxxxx`).
pub(crate) fn new_guid() -> String {
    let (hi, lo) = next_pair();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0x0FFF,
        0x8000 | ((lo >> 48) & 0x3FFF),
        lo & 0xFFFF_FFFF_FFFF
    )
}

/// An opaque pop receipt, base64 like Azure's (`AgAAAAMAAAAAAAAA...`).
pub(crate) fn pop_receipt() -> String {
    let (hi, lo) = next_pair();
    let mut bytes = hi.to_le_bytes().to_vec();
    bytes.extend_from_slice(&lo.to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parts(t: SystemTime) -> (String, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, day) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let text = format!(
        "{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    (text, d.subsec_nanos())
}

/// `2019-10-09T17:58:32.2205399Z` (.NET round-trip format, UTC).
pub(crate) fn iso_utc(t: SystemTime) -> String {
    let (text, nanos) = parts(t);
    format!("{text}.{:07}Z", nanos / 100)
}

/// `2019-10-09T17:58:31+00:00` (a DateTimeOffset in the queue metadata).
pub(crate) fn iso_offset(t: SystemTime) -> String {
    format!("{}+00:00", parts(t).0)
}

/// A .NET TimeSpan text: `00:30:00`, or `00:00:00.5000000`.
pub(crate) fn timespan(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let base = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    match d.subsec_nanos() {
        0 => base,
        n => format!("{base}.{:07}", n / 100),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_570_643_912_220_539_900);
        assert_eq!(iso_utc(t), "2019-10-09T17:58:32.2205399Z");
        assert_eq!(iso_offset(t), "2019-10-09T17:58:32+00:00");
        assert_eq!(
            iso_offset(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn guids_are_unique_and_shaped() {
        let a = new_guid();
        let b = new_guid();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
