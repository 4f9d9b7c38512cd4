//! Field types that can only hold valid values: parsing is the validation.

use std::error::Error;
use std::fmt;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// An input value in a message: quoted, and cut when long.
fn shown(text: &str) -> String {
    crate::limits::excerpt(text, crate::limits::ECHO_CHARS)
}

/// Why a text field cannot be stored: PostgreSQL text has no NUL character.
pub const NUL: &str = "must not contain NUL characters";

/// A non-empty airport name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.is_empty() || value == "\\N" {
            Err("name is required".to_owned())
        } else if value.contains('\0') {
            Err(format!("name {NUL}"))
        } else {
            Ok(Self(value))
        }
    }
}

impl From<Name> for String {
    fn from(name: Name) -> Self {
        name.0
    }
}

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! bounded_degrees {
    ($name:ident, $what:literal, $bound:literal) => {
        #[doc = concat!("A ", $what, " in degrees, within ±", stringify!($bound), " (WGS84).")]
        #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
        #[serde(try_from = "f64", into = "f64")]
        pub struct $name(f64);

        impl TryFrom<f64> for $name {
            type Error = String;
            fn try_from(value: f64) -> Result<Self, String> {
                if (-$bound..=$bound).contains(&value) {
                    Ok(Self(value))
                } else {
                    Err(format!(
                        "{} {value} is outside [-{}, {}]",
                        $what, $bound, $bound
                    ))
                }
            }
        }

        impl From<$name> for f64 {
            fn from(value: $name) -> f64 {
                value.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                let value: f64 = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("{} {} is not a number", $what, shown(text)))?;
                Self::try_from(value)
            }
        }

        impl $name {
            pub fn get(self) -> f64 {
                self.0
            }
        }
    };
}

bounded_degrees!(Latitude, "latitude", 90.0);
bounded_degrees!(Longitude, "longitude", 180.0);

/// Offset from UTC in hours, in hundredths (5.75 exists), within [-12, 14].
/// Stored as `numeric(4,2)`, so it is kept exact rather than as a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Timezone(i32);

impl Timezone {
    pub fn hundredths(self) -> i32 {
        self.0
    }

    fn from_hundredths(value: i64, shown: &dyn fmt::Display) -> Result<Self, String> {
        if (-1200..=1400).contains(&value) {
            Ok(Self(value as i32))
        } else {
            Err(format!("timezone {shown} is outside [-12, 14] hours"))
        }
    }
}

impl TryFrom<f64> for Timezone {
    type Error = String;
    fn try_from(value: f64) -> Result<Self, String> {
        let scaled = value * 100.0;
        if !scaled.is_finite() || (scaled - scaled.round()).abs() > 1e-6 {
            return Err(format!(
                "timezone {value} has more than two decimals or is not a number"
            ));
        }
        Self::from_hundredths(scaled.round().clamp(-1e9, 1e9) as i64, &value)
    }
}

impl From<Timezone> for f64 {
    fn from(value: Timezone) -> f64 {
        f64::from(value.0) / 100.0
    }
}

impl std::str::FromStr for Timezone {
    type Err = String;
    /// Exact decimal parsing (`5.75`, `-3.5`, `10`), no float rounding.
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "timezone {} is not a number of hours with up to two decimals",
                shown(text)
            )
        };
        let trimmed = text.trim();
        let (negative, digits) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !all_digits(whole)
            || !all_digits(fraction)
            || whole.len() > 4
        {
            return Err(invalid());
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > 2 {
            return Err(invalid());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| invalid())?;
        let value = whole * 100 + cents;
        Self::from_hundredths(if negative { -value } else { value }, &trimmed)
    }
}

impl ToSql for Timezone {
    /// PostgreSQL's binary NUMERIC: digit count, weight, sign, display scale,
    /// then base-10000 digits (here at most the hours and the hundredths).
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let magnitude = self.0.unsigned_abs();
        let (hours, hundredths) = ((magnitude / 100) as i16, (magnitude % 100) as i16);
        let mut digits = Vec::with_capacity(2);
        let weight: i16 = if hours > 0 {
            digits.push(hours);
            0
        } else {
            -1
        };
        if hundredths > 0 {
            digits.push(hundredths * 100);
        }
        out.put_i16(digits.len() as i16);
        out.put_i16(if digits.is_empty() { 0 } else { weight });
        out.put_u16(if self.0 < 0 { 0x4000 } else { 0 });
        out.put_u16(2);
        for digit in digits {
            out.put_i16(digit);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    to_sql_checked!();
}

/// Daylight-saving rule: one character (OpenFlights uses E, A, S, O, Z, N, U).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Dst(char);

impl TryFrom<String> for Dst {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        value.parse()
    }
}

impl std::str::FromStr for Dst {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            // PostgreSQL text cannot hold NUL; refusing it here keeps it a 400.
            (Some('\0'), None) => Err(format!("dst {NUL}")),
            (Some(c), None) => Ok(Self(c)),
            _ => Err(format!("dst {} is not a single character", shown(text))),
        }
    }
}

impl From<Dst> for String {
    fn from(value: Dst) -> Self {
        value.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degrees_are_bounded() {
        assert_eq!("40.5".parse::<Latitude>().unwrap().get(), 40.5);
        assert!("123".parse::<Latitude>().is_err());
        assert!("-180".parse::<Longitude>().is_ok());
        assert!("180.0001".parse::<Longitude>().is_err());
        assert!("NaN".parse::<Latitude>().is_err());
        assert!("abc".parse::<Longitude>().is_err());
    }

    #[test]
    fn timezones_parse_exactly() {
        for (text, hundredths) in [
            ("5.75", 575),
            ("-3.5", -350),
            ("10", 1000),
            ("0", 0),
            ("-0.5", -50),
            ("5.450", 545),
            ("14", 1400),
            ("-12", -1200),
        ] {
            assert_eq!(
                text.parse::<Timezone>().unwrap().hundredths(),
                hundredths,
                "{text}"
            );
        }
        for bad in ["", "-", "5.755", "15", "-12.5", "x", "1e2", "5,5", "."] {
            assert!(bad.parse::<Timezone>().is_err(), "{bad:?}");
        }
        assert_eq!(Timezone::try_from(5.75).unwrap().hundredths(), 575);
        assert!(Timezone::try_from(5.755).is_err());
        assert!(Timezone::try_from(f64::NAN).is_err());
    }

    #[test]
    fn numeric_encoding_is_postgres_binary() {
        let encode = |text: &str| {
            let mut out = BytesMut::new();
            text.parse::<Timezone>()
                .unwrap()
                .to_sql(&Type::NUMERIC, &mut out)
                .unwrap();
            out.to_vec()
        };
        // 5.75 = digits [5, 7500], weight 0, positive, scale 2.
        assert_eq!(encode("5.75"), [0, 2, 0, 0, 0, 0, 0, 2, 0, 5, 0x1d, 0x4c]);
        // -0.5 = digits [5000], weight -1, negative.
        assert_eq!(
            encode("-0.5"),
            [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x13, 0x88]
        );
        assert_eq!(encode("0"), [0, 0, 0, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn dst_is_one_character_and_names_are_not_empty() {
        assert!("E".parse::<Dst>().is_ok());
        assert!("EE".parse::<Dst>().is_err());
        assert!("".parse::<Dst>().is_err());
        assert!("\0".parse::<Dst>().is_err());
        assert!(Name::try_from(String::new()).is_err());
        assert!(Name::try_from("Goroka".to_owned()).is_ok());
    }
}
