//! The citizen's fields as types that can only hold valid values: each is
//! built by parsing the raw input, so code holding one never re-checks it.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Serialize, Serializer};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

/// Longest accepted string, in characters (Unicode scalar values).
pub const MAX_TEXT_CHARS: usize = 256;

/// Why one field's value was refused; the message completes "field …".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("is required")]
    Missing,
    #[error("must not be null")]
    Null,
    #[error("is not a known field")]
    Unknown,
    #[error("must be {0}")]
    WrongType(&'static str),
    #[error("must be an integer from 0 to 2147483647")]
    OutOfRange,
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 256 characters long")]
    TooLong,
    #[error("must not contain NUL characters")]
    Nul,
    #[error("must contain at least one letter or digit")]
    NoLetterOrDigit,
    #[error("must be a real date written DD.MM.YYYY (zero-padded)")]
    BadDate,
    #[error("must not be in the future (today is {0} UTC)")]
    FutureDate(BirthDate),
    #[error("must be \"male\" or \"female\"")]
    BadGender,
}

/// A citizen id, or any other non-negative 32-bit integer of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct CitizenId(i32);

impl CitizenId {
    /// Parses a JSON number: an integer in 0..=2^31-1, nothing else.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, FieldError> {
        non_negative_i32(value).map(Self)
    }

    /// An integer already read from JSON; `None` beyond 2^31-1.
    pub fn from_u64(n: u64) -> Option<Self> {
        i32::try_from(n).ok().map(Self)
    }

    /// A citizen id taken from a URL; out-of-range values name no citizen.
    pub fn from_path(id: i64) -> Option<Self> {
        i32::try_from(id).ok().filter(|id| *id >= 0).map(Self)
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An apartment number: a non-negative 32-bit integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Apartment(i32);

impl Apartment {
    /// An integer already read from JSON; `None` beyond 2^31-1.
    pub fn from_u64(n: u64) -> Option<Self> {
        i32::try_from(n).ok().map(Self)
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self, FieldError> {
        non_negative_i32(value).map(Self)
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

fn non_negative_i32(value: &serde_json::Value) -> Result<i32, FieldError> {
    match value {
        serde_json::Value::Null => Err(FieldError::Null),
        // A number that is not a u64 is negative or has a fraction or exponent
        // (serde_json reads `1.0` and `1e3` as floats).
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(n) => i32::try_from(n).map_err(|_| FieldError::OutOfRange),
            None if n.as_i64().is_some() => Err(FieldError::OutOfRange),
            None => Err(FieldError::WrongType("an integer")),
        },
        _ => Err(FieldError::WrongType("an integer")),
    }
}

/// A non-empty string of at most 256 characters: a name or a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.is_empty() {
            return Err(FieldError::Empty);
        }
        // Bytes bound characters from above, so most strings skip the count.
        if s.len() > MAX_TEXT_CHARS && s.chars().count() > MAX_TEXT_CHARS {
            return Err(FieldError::TooLong);
        }
        // PostgreSQL text cannot hold NUL; refusing it here keeps it a 400.
        if s.contains('\0') {
            return Err(FieldError::Nul);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self, FieldError> {
        Self::parse(string(value)?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A town, street or building: a [`Text`] with at least one letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Place(String);

impl Place {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let text = Text::parse(s)?;
        if !text.0.chars().any(char::is_alphanumeric) {
            return Err(FieldError::NoLetterOrDigit);
        }
        Ok(Self(text.0))
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self, FieldError> {
        Self::parse(string(value)?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn string(value: &serde_json::Value) -> Result<&str, FieldError> {
    match value {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Null => Err(FieldError::Null),
        _ => Err(FieldError::WrongType("a string")),
    }
}

/// A birth date: a real calendar date, written `DD.MM.YYYY`, not after the
/// day it was parsed (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    /// Parses `DD.MM.YYYY` exactly (two, two and four digits), refusing dates
    /// that do not exist, year 0 and dates after `today`.
    pub fn parse(s: &str, today: NaiveDate) -> Result<Self, FieldError> {
        let b = s.as_bytes();
        let digits = |range: std::ops::Range<usize>| -> Option<u32> {
            b[range].iter().try_fold(0u32, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
            })
        };
        if b.len() != 10 || b[2] != b'.' || b[5] != b'.' {
            return Err(FieldError::BadDate);
        }
        let (Some(day), Some(month), Some(year)) = (digits(0..2), digits(3..5), digits(6..10))
        else {
            return Err(FieldError::BadDate);
        };
        let year = i32::try_from(year).map_err(|_| FieldError::BadDate)?;
        let date = NaiveDate::from_ymd_opt(year, month, day)
            .filter(|_| year >= 1)
            .ok_or(FieldError::BadDate)?;
        if date > today {
            return Err(FieldError::FutureDate(Self(today)));
        }
        Ok(Self(date))
    }

    pub fn from_json(value: &serde_json::Value, today: NaiveDate) -> Result<Self, FieldError> {
        Self::parse(string(value)?, today)
    }

    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// Full years lived on `on`.
    pub fn age_on(self, on: NaiveDate) -> i32 {
        let born = self.0;
        let had_birthday = (on.month(), on.day()) >= (born.month(), born.day());
        on.year() - born.year() - i32::from(!had_birthday)
    }
}

impl fmt::Display for BirthDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        write!(f, "{:02}.{:02}.{:04}", d.day(), d.month(), d.year())
    }
}

impl Serialize for BirthDate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `male` or `female`, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Male,
    Female,
}

impl Gender {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s {
            "male" => Ok(Self::Male),
            "female" => Ok(Self::Female),
            _ => Err(FieldError::BadGender),
        }
    }

    pub fn from_json(value: &serde_json::Value) -> Result<Self, FieldError> {
        Self::parse(string(value)?)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Male => "male",
            Self::Female => "female",
        }
    }
}

/// The newtypes go to and come from PostgreSQL as their inner value. Reading
/// trusts the database: only parsed values are ever written to it.
macro_rules! sql_as_inner {
    ($($ty:ty => $inner:ty),* $(,)?) => {$(
        impl ToSql for $ty {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut bytes::BytesMut,
            ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.0.to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <$inner as ToSql>::accepts(ty)
            }

            tokio_postgres::types::to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $ty {
            fn from_sql(
                ty: &Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                <$inner>::from_sql(ty, raw).map(Self)
            }

            fn accepts(ty: &Type) -> bool {
                <$inner as FromSql>::accepts(ty)
            }
        }
    )*};
}

sql_as_inner! {
    CitizenId => i32,
    Apartment => i32,
    Text => String,
    Place => String,
    BirthDate => NaiveDate,
}

impl ToSql for Gender {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Gender {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self::parse(<&str>::from_sql(ty, raw)?)?)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    #[test]
    fn dates_are_exactly_dd_mm_yyyy() {
        let ok = |s: &str| BirthDate::parse(s, today()).map(|d| d.to_string());
        assert_eq!(ok("26.12.1986").unwrap(), "26.12.1986");
        assert_eq!(ok("29.02.2024").unwrap(), "29.02.2024");
        assert_eq!(ok("01.01.0001").unwrap(), "01.01.0001");
        assert_eq!(ok("28.11.2026").unwrap(), "28.11.2026");
        for bad in [
            "1.12.1986",
            "26.1.1986",
            "26.12.86",
            "29.02.2023",
            "31.04.2000",
            "00.01.2000",
            "01.13.2000",
            "01.00.2000",
            "01.01.0000",
            "1986-12-26",
            "26/12/1986",
            "26.12.1986 ",
            "+1.12.1986",
            "٢٦.١٢.١٩٨٦",
            "",
        ] {
            assert_eq!(ok(bad), Err(FieldError::BadDate), "{bad:?}");
        }
        assert!(matches!(ok("29.11.2026"), Err(FieldError::FutureDate(_))));
    }

    #[test]
    fn ages_are_full_years() {
        let born = BirthDate::parse("29.02.2000", today()).unwrap();
        let on = |y, m, d| born.age_on(NaiveDate::from_ymd_opt(y, m, d).unwrap());
        assert_eq!(on(2001, 2, 28), 0);
        assert_eq!(on(2001, 3, 1), 1);
        assert_eq!(on(2004, 2, 29), 4);
        assert_eq!(on(2000, 2, 29), 0);
    }

    #[test]
    fn strings_are_bounded_non_empty_and_nul_free() {
        assert_eq!(Text::parse(""), Err(FieldError::Empty));
        assert!(Text::parse(&"я".repeat(256)).is_ok());
        assert_eq!(Text::parse(&"я".repeat(257)), Err(FieldError::TooLong));
        assert_eq!(Text::parse("a\0b"), Err(FieldError::Nul));
        assert!(Text::parse(" ").is_ok());
        assert_eq!(Place::parse("-- /"), Err(FieldError::NoLetterOrDigit));
        assert!(Place::parse("16к7стр5").is_ok());
        assert!(Place::parse("№ 5").is_ok());
        assert_eq!(Place::parse(""), Err(FieldError::Empty));
    }

    #[test]
    fn integers_are_non_negative_32_bit() {
        assert_eq!(CitizenId::from_json(&json!(0)).unwrap().get(), 0);
        assert_eq!(
            CitizenId::from_json(&json!(2_147_483_647)).unwrap().get(),
            i32::MAX
        );
        assert_eq!(
            CitizenId::from_json(&json!(2_147_483_648u64)),
            Err(FieldError::OutOfRange)
        );
        assert_eq!(
            CitizenId::from_json(&json!(-1)),
            Err(FieldError::OutOfRange)
        );
        assert!(matches!(
            CitizenId::from_json(&json!(1.0)),
            Err(FieldError::WrongType(_))
        ));
        assert!(matches!(
            CitizenId::from_json(&json!("1")),
            Err(FieldError::WrongType(_))
        ));
        assert_eq!(CitizenId::from_json(&json!(null)), Err(FieldError::Null));
        assert_eq!(CitizenId::from_path(-1), None);
        assert_eq!(CitizenId::from_path(1 << 31), None);
    }

    #[test]
    fn gender_is_exact() {
        assert_eq!(Gender::parse("male"), Ok(Gender::Male));
        assert_eq!(Gender::parse("female"), Ok(Gender::Female));
        for bad in ["Male", "FEMALE", "m", "", " male"] {
            assert_eq!(Gender::parse(bad), Err(FieldError::BadGender));
        }
    }

    proptest! {
        #[test]
        fn every_real_date_round_trips(days in 0i64..(2026 * 366)) {
            let date = NaiveDate::from_ymd_opt(1, 1, 1).unwrap() + chrono::Days::new(days as u64);
            prop_assume!(date <= today());
            let written = format!("{:02}.{:02}.{:04}", date.day(), date.month(), date.year());
            let parsed = BirthDate::parse(&written, today()).unwrap();
            prop_assert_eq!(parsed.date(), date);
            prop_assert_eq!(parsed.to_string(), written);
        }

        #[test]
        fn only_real_dates_parse(s in "[0-9]{2}\\.[0-9]{2}\\.[0-9]{4}") {
            let day: u32 = s[0..2].parse().unwrap();
            let month: u32 = s[3..5].parse().unwrap();
            let year: i32 = s[6..10].parse().unwrap();
            let real = year >= 1 && NaiveDate::from_ymd_opt(year, month, day).is_some();
            match BirthDate::parse(&s, today()) {
                Ok(date) => prop_assert!(real && date.date() <= today()),
                Err(FieldError::FutureDate(_)) => {
                    prop_assert!(real && NaiveDate::from_ymd_opt(year, month, day).unwrap() > today())
                }
                Err(e) => prop_assert!(!real, "{} refused: {}", s, e),
            }
        }

        #[test]
        fn date_parsing_never_panics(s in "\\PC{0,12}") {
            let _ = BirthDate::parse(&s, today());
        }

        #[test]
        fn text_accepts_exactly_1_to_256_chars_without_nul(s in "\\PC{0,300}") {
            let n = s.chars().count();
            let expected = if n == 0 {
                Err(FieldError::Empty)
            } else if n > MAX_TEXT_CHARS {
                Err(FieldError::TooLong)
            } else if s.contains('\0') {
                Err(FieldError::Nul)
            } else {
                Ok(Text(s.clone()))
            };
            prop_assert_eq!(Text::parse(&s), expected);
        }

        #[test]
        fn places_need_a_letter_or_digit(s in "[ .,/#№-]{1,5}[a-zа-я0-9]?[ .,/-]{0,5}") {
            let has = s.chars().any(char::is_alphanumeric);
            prop_assert_eq!(Place::parse(&s).is_ok(), has);
        }

        #[test]
        fn integers_in_range_parse_and_others_do_not(n in any::<i64>()) {
            let parsed = CitizenId::from_json(&json!(n));
            if (0..=i64::from(i32::MAX)).contains(&n) {
                prop_assert_eq!(parsed.map(CitizenId::get), Ok(n as i32));
            } else {
                prop_assert_eq!(parsed, Err(FieldError::OutOfRange));
            }
        }
    }
}
