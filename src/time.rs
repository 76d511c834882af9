//! The one time type: [`Timestamp`], a UTC instant at millisecond precision,
//! stored and sent everywhere in one text form.
//!
//! Every table stores times as TEXT in RFC 3339, UTC, milliseconds and `Z`
//! (e.g. `2026-11-27T18:00:00.123Z`): the form sorts as text and equals
//! SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`, the default of every
//! `created_at`. The JSON API sends the same text. The request log keeps its
//! time as INTEGER Unix milliseconds ([`Timestamp::unix_ms`]).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, SubsecRound, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Sqlite, Type};

/// A UTC instant, truncated to the millisecond: what a value holds is exactly
/// what is stored, so a time read back equals the time written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(example = "2026-11-27T18:00:00.123Z")]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The Unix epoch, `1970-01-01T00:00:00.000Z`.
    pub const UNIX_EPOCH: Self = Self(DateTime::UNIX_EPOCH);

    /// The current time.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// The instant, with anything below a millisecond dropped.
    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Self(dt.trunc_subsecs(3))
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// Parses RFC 3339 with any offset (the stored form, or a client's).
    pub fn parse(s: &str) -> Option<Self> {
        parse_stored(s).or_else(|| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| Self::from_datetime(d.with_timezone(&Utc)))
        })
    }

    /// The instant `ms` milliseconds after the Unix epoch (the request log's
    /// `at_ms`); `None` out of chrono's range.
    pub fn from_unix_ms(ms: i64) -> Option<Self> {
        DateTime::from_timestamp_millis(ms).map(Self)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(self) -> i64 {
        self.0.timestamp_millis()
    }

    /// The UTC calendar day.
    pub fn date(self) -> NaiveDate {
        self.0.date_naive()
    }

    /// Midnight UTC of the same day.
    pub fn start_of_day(self) -> Self {
        Self(self.date().and_time(chrono::NaiveTime::MIN).and_utc())
    }

    /// The start of the same UTC hour.
    pub fn start_of_hour(self) -> Self {
        let dt = self.0;
        Self(dt - TimeDelta::seconds(i64::from(dt.minute() * 60 + dt.second())) - subsec(dt))
    }

    /// The time `delta` later, or `None` out of chrono's range.
    pub fn checked_add(self, delta: TimeDelta) -> Option<Self> {
        self.0.checked_add_signed(delta).map(Self::from_datetime)
    }

    /// Writes the stored form. By hand: chrono's general formatter costs
    /// several times as much, and this runs for every stored or sent time.
    fn format(self) -> Formatted {
        let dt = self.0;
        let year = dt.year();
        if !(0..=9999).contains(&year) || dt.nanosecond() >= 1_000_000_000 {
            // Out of the four-digit range, or a leap second: the general path.
            return Formatted::General(dt.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, value: u32, digits: usize| {
            let mut v = value;
            for i in (0..digits).rev() {
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, year as u32, 4);
        put(5, dt.month(), 2);
        put(8, dt.day(), 2);
        put(11, dt.hour(), 2);
        put(14, dt.minute(), 2);
        put(17, dt.second(), 2);
        put(20, dt.nanosecond() / 1_000_000, 3);
        Formatted::Fixed(out)
    }
}

fn subsec(dt: DateTime<Utc>) -> TimeDelta {
    TimeDelta::nanoseconds(i64::from(dt.nanosecond()))
}

enum Formatted {
    Fixed([u8; 24]),
    General(String),
}

impl Formatted {
    fn as_str(&self) -> &str {
        match self {
            Self::Fixed(bytes) => std::str::from_utf8(bytes).expect("ASCII digits and separators"),
            Self::General(s) => s,
        }
    }
}

/// Parses exactly the stored form without chrono's general parser (reads
/// decode every stored time); `None` sends anything else to the general path.
fn parse_stored(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    if b.len() != 24 || b[23] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if seps.iter().any(|&(at, sep)| b[at] != sep) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = chrono::NaiveTime::from_hms_milli_opt(
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
        num(20, 23)?,
    )?;
    Some(Timestamp(date.and_time(time).and_utc()))
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(dt: DateTime<Utc>) -> Self {
        Self::from_datetime(dt)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> Self {
        t.0
    }
}

/// The stored form, e.g. `2026-11-27T18:00:00.123Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format().as_str())
    }
}

impl std::ops::Add<TimeDelta> for Timestamp {
    type Output = Self;
    fn add(self, delta: TimeDelta) -> Self {
        Self::from_datetime(self.0 + delta)
    }
}

impl std::ops::Sub<TimeDelta> for Timestamp {
    type Output = Self;
    fn sub(self, delta: TimeDelta) -> Self {
        Self::from_datetime(self.0 - delta)
    }
}

impl std::ops::Sub for Timestamp {
    type Output = TimeDelta;
    fn sub(self, earlier: Self) -> TimeDelta {
        self.0 - earlier.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.format().as_str())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom("expected an RFC 3339 time"))
    }
}

impl Type<Sqlite> for Timestamp {
    fn type_info() -> SqliteTypeInfo {
        <str as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Timestamp {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(self.to_string(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Timestamp {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Self::parse(text).ok_or_else(|| format!("not an RFC 3339 time: {text:?}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn the_stored_form_matches_chrono_with_milliseconds() {
        let mut dt = DateTime::parse_from_rfc3339("1999-12-31T23:59:59.999Z")
            .unwrap()
            .with_timezone(&Utc);
        for _ in 0..5000 {
            let s = Timestamp::from_datetime(dt).to_string();
            assert_eq!(s, dt.to_rfc3339_opts(SecondsFormat::Millis, true));
            assert_eq!(parse_stored(&s), Some(Timestamp::from_datetime(dt)));
            dt += TimeDelta::microseconds(3_722_417_123);
        }
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_string(),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn parsing_accepts_offsets_and_drops_sub_milliseconds() {
        assert_eq!(
            t("2026-11-27T20:00:00.123456+02:00").to_string(),
            "2026-11-27T18:00:00.123Z"
        );
        assert_eq!(t("2026-11-27T18:00:00Z"), t("2026-11-27T18:00:00.000Z"));
        assert_eq!(Timestamp::parse("2026-11-27"), None);
        assert_eq!(Timestamp::parse("2026-13-27T18:00:00.000Z"), None);
        assert_eq!(Timestamp::now().as_datetime().nanosecond() % 1_000_000, 0);
    }

    #[test]
    fn hours_and_days_start_on_the_boundary() {
        let x = t("2026-11-27T18:42:07.123Z");
        assert_eq!(x.start_of_hour().to_string(), "2026-11-27T18:00:00.000Z");
        assert_eq!(x.start_of_day().to_string(), "2026-11-27T00:00:00.000Z");
        assert_eq!(x.date().to_string(), "2026-11-27");
        assert_eq!(x.start_of_hour().start_of_hour(), x.start_of_hour());
    }

    #[test]
    fn unix_milliseconds_round_trip() {
        let x = t("2026-11-27T18:00:00.123Z");
        assert_eq!(x.unix_ms(), 1_795_802_400_123);
        assert_eq!(Timestamp::from_unix_ms(x.unix_ms()), Some(x));
        assert_eq!(Timestamp::from_unix_ms(0), Some(Timestamp::UNIX_EPOCH));
    }

    #[test]
    fn arithmetic_stays_at_millisecond_precision() {
        let x = t("2026-11-27T18:00:00.123Z");
        assert_eq!(
            (x + TimeDelta::microseconds(1500)).to_string(),
            "2026-11-27T18:00:00.124Z"
        );
        assert_eq!(x - (x - TimeDelta::hours(1)), TimeDelta::hours(1));
        assert!(x < x + TimeDelta::milliseconds(1));
    }

    #[test]
    fn json_is_the_stored_text() {
        let x = t("2026-11-27T18:00:00.120Z");
        assert_eq!(
            serde_json::to_string(&x).unwrap(),
            "\"2026-11-27T18:00:00.120Z\""
        );
        assert_eq!(
            serde_json::from_str::<Timestamp>("\"2026-11-27T18:00:00.12Z\"").unwrap(),
            x
        );
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[tokio::test]
    async fn sqlite_stores_the_text_and_reads_it_back() {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        let x = t("2026-11-27T18:00:00.123Z");
        let (text, back): (String, Timestamp) = sqlx::query_as("SELECT ?1, ?1")
            .bind(x)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(text, "2026-11-27T18:00:00.123Z");
        assert_eq!(back, x);
        let default: Timestamp = sqlx::query_scalar("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!((Timestamp::now() - default).num_seconds().abs() < 5);
    }
}
