//! Durations (`"30s"`, `"1.5s"`, `"500ms"`, `"2m"`) and sizes (`"64MiB"`,
//! `"1G"`, bytes): small, exact, hand-written parsers and their canonical
//! forms.

use std::fmt;
use std::str::FromStr;

/// A duration written with a unit: `ms`, `s`, `m` or `h`, with an optional
/// decimal fraction (`"1.5s"`), exact to the millisecond.
///
/// # Examples
///
/// ```
/// use sandbox_policy::Duration;
///
/// let d: Duration = "1.5s".parse()?;
/// assert_eq!(d.as_millis(), 1500);
/// assert_eq!(d.to_string(), "1500ms");
/// assert_eq!("2m".parse::<Duration>()?.to_string(), "2m");
/// # Ok::<(), sandbox_policy::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

/// A size in bytes, written as a number of bytes or with a unit: decimal
/// (`K`, `M`, `G`, `T`, also `KB`…: powers of 1000) or binary (`KiB`, `MiB`,
/// `GiB`, `TiB`: powers of 1024), with an optional decimal fraction.
///
/// # Examples
///
/// ```
/// use sandbox_policy::ByteSize;
///
/// assert_eq!("64MiB".parse::<ByteSize>()?.bytes(), 64 << 20);
/// assert_eq!("1G".parse::<ByteSize>()?.bytes(), 1_000_000_000);
/// assert_eq!("1.5KiB".parse::<ByteSize>()?.to_string(), "1536B");
/// # Ok::<(), sandbox_policy::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize {
    bytes: u64,
}

/// Why a duration or size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct UnitError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

impl UnitError {
    fn new(what: &'static str, input: &str, reason: &'static str) -> Self {
        Self {
            what,
            input: input.to_string(),
            reason,
        }
    }
}

impl Duration {
    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs.saturating_mul(1000),
        }
    }

    /// Whole milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// As a [`std::time::Duration`].
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
}

impl ByteSize {
    /// A size of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self { bytes }
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        Self {
            bytes: n.saturating_mul(1 << 20),
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.bytes
    }
}

/// Splits `"1.5KiB"` into the number and the unit, and scales the number by
/// `scale(unit)`, exactly: a fraction must come out whole.
fn parse_scaled(
    what: &'static str,
    input: &str,
    scale: impl Fn(&str) -> Option<u64>,
    no_unit: Option<u64>,
) -> Result<u64, UnitError> {
    let err = |reason| UnitError::new(what, input, reason);
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim_start();
    if number.is_empty() {
        return Err(err("expected a number before the unit"));
    }
    let factor = if unit.is_empty() {
        no_unit.ok_or_else(|| err("a unit is required"))?
    } else {
        scale(unit).ok_or_else(|| err("unknown unit"))?
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() || (number.contains('.') && frac.is_empty()) {
        return Err(err("expected a number before the unit"));
    }
    if frac.contains('.') || frac.len() > 9 {
        return Err(err("expected a number before the unit"));
    }
    let whole: u64 = whole.parse().map_err(|_| err("the number is too large"))?;
    let mut value = whole
        .checked_mul(factor)
        .ok_or_else(|| err("the value is too large"))?;
    if !frac.is_empty() {
        let digits: u64 = frac
            .parse()
            .map_err(|_| err("expected a number before the unit"))?;
        let denom = 10u64.pow(frac.len() as u32);
        let scaled = u128::from(digits) * u128::from(factor);
        if scaled % u128::from(denom) != 0 {
            return Err(err(
                "the fraction does not come out to a whole number of the smallest unit",
            ));
        }
        let extra =
            u64::try_from(scaled / u128::from(denom)).map_err(|_| err("the value is too large"))?;
        value = value
            .checked_add(extra)
            .ok_or_else(|| err("the value is too large"))?;
    }
    Ok(value)
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let scale = |unit: &str| match unit {
            "ms" => Some(1),
            "s" => Some(1000),
            "m" | "min" => Some(60_000),
            "h" => Some(3_600_000),
            _ => None,
        };
        parse_scaled("duration", s, scale, None).map(Duration::from_millis)
    }
}

impl fmt::Display for Duration {
    /// The canonical form: the largest of `h`, `m`, `s`, `ms` that is exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        match ms {
            0 => f.write_str("0s"),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1000) => write!(f, "{}s", ms / 1000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let scale = |unit: &str| {
            Some(match unit {
                "B" | "b" => 1,
                "K" | "k" | "KB" | "kB" => 1000,
                "M" | "MB" => 1000_u64.pow(2),
                "G" | "GB" => 1000_u64.pow(3),
                "T" | "TB" => 1000_u64.pow(4),
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "TiB" => 1 << 40,
                _ => return None,
            })
        };
        parse_scaled("size", s, scale, Some(1)).map(ByteSize::from_bytes)
    }
}

impl fmt::Display for ByteSize {
    /// The canonical form: the largest binary unit that is exact, else
    /// bytes with a `B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.bytes;
        for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if b != 0 && b.is_multiple_of(1u64 << shift) {
                return write!(f, "{}{unit}", b >> shift);
            }
        }
        write!(f, "{b}B")
    }
}

/// Serde support: durations and sizes are strings (sizes may also be plain
/// integers of bytes).
mod serde_impls {
    use super::{ByteSize, Duration};
    use serde::de::{self, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;

    impl Serialize for Duration {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for Duration {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Duration;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a duration such as \"30s\", \"1.5s\", \"500ms\" or \"2m\"")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                    v.parse().map_err(E::custom)
                }
            }
            d.deserialize_str(V)
        }
    }

    impl Serialize for ByteSize {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for ByteSize {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = ByteSize;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a size such as \"64MiB\", \"1G\" or a number of bytes")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                    v.parse().map_err(E::custom)
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                    Ok(ByteSize::from_bytes(v))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                    u64::try_from(v)
                        .map(ByteSize::from_bytes)
                        .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
                }
            }
            d.deserialize_any(V)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<u64, UnitError> {
        s.parse::<Duration>().map(Duration::as_millis)
    }

    fn b(s: &str) -> Result<u64, UnitError> {
        s.parse::<ByteSize>().map(ByteSize::bytes)
    }

    #[test]
    fn durations() {
        assert_eq!(d("30s"), Ok(30_000));
        assert_eq!(d("1.5s"), Ok(1500));
        assert_eq!(d("500ms"), Ok(500));
        assert_eq!(d("2m"), Ok(120_000));
        assert_eq!(d("1h"), Ok(3_600_000));
        assert_eq!(d("0.001s"), Ok(1));
        assert_eq!(d(" 10 s "), Ok(10_000));
        for bad in [
            "",
            "s",
            "10",
            "1.5",
            "1..5s",
            "1.s",
            ".5s",
            "-1s",
            "1.0005s",
            "10x",
            "1e3s",
            "99999999999999999999s",
        ] {
            assert!(d(bad).is_err(), "{bad:?} accepted");
        }
        let e = d("10x").unwrap_err().to_string();
        assert_eq!(e, "invalid duration \"10x\": unknown unit");
    }

    #[test]
    fn duration_canonical_forms() {
        for (ms, s) in [
            (0, "0s"),
            (1, "1ms"),
            (1500, "1500ms"),
            (30_000, "30s"),
            (120_000, "2m"),
            (7_200_000, "2h"),
            (90_000, "90s"),
        ] {
            assert_eq!(Duration::from_millis(ms).to_string(), s);
            assert_eq!(d(s), Ok(ms));
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(b("64MiB"), Ok(64 << 20));
        assert_eq!(b("1G"), Ok(1_000_000_000));
        assert_eq!(b("1GB"), Ok(1_000_000_000));
        assert_eq!(b("2GiB"), Ok(2 << 30));
        assert_eq!(b("4096"), Ok(4096));
        assert_eq!(b("10B"), Ok(10));
        assert_eq!(b("1.5KiB"), Ok(1536));
        assert_eq!(b("0.5k"), Ok(500));
        for bad in [
            "",
            "MiB",
            "1.5",
            "1.0001K",
            "1 XB",
            "-1",
            "99999999999TiB",
            "1.2.3M",
        ] {
            assert!(b(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            b("1.5").unwrap_err().to_string(),
            "invalid size \"1.5\": the fraction does not come out to a whole number of the smallest unit"
        );
    }

    #[test]
    fn size_canonical_forms() {
        for (n, s) in [
            (0, "0B"),
            (1, "1B"),
            (1536, "1536B"),
            (1 << 20, "1MiB"),
            (64 << 20, "64MiB"),
            (1_000_000_000, "1000000000B"),
            (3 << 40, "3TiB"),
        ] {
            assert_eq!(ByteSize::from_bytes(n).to_string(), s);
            assert_eq!(b(s), Ok(n));
        }
    }
}
