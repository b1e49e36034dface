//! Kubernetes resource quantities ("500m", "1.5Gi", "129e6"): one exact
//! parser for every reader (the scheduler's fit and scores, the kubelet's
//! cgroup limits, defaulting, the Node objects), comparison by value, and
//! upstream's canonical form.
//!
//! The rules are apimachinery's `resource.Quantity`: the grammar
//! `^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$`; an amount is rounded
//! up (away from zero) to the nearest 1n, so a positive request never
//! becomes zero; a binary amount (`Ki` … `Ei`) is capped at 2^63-1; an
//! amount below 1 loses the binary format. The canonical form keeps the
//! client's format (binary, decimal SI, or `e<N>`) with the largest suffix
//! that loses nothing: "1024Mi" is "1Gi", "0.5" is "500m", "1.5Gi" is
//! "1536Mi", "100.035Ki" is "102435840m".
//!
//! One deviation: the amount is held exactly in an `i128` mantissa with a
//! base-10 exponent, so an input needing more than 36 significant digits
//! is refused (upstream carries it as an arbitrary-precision decimal).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The most significant digits a quantity may carry (see the module note).
const MAX_DIGITS: usize = 36;
/// The smallest unit: every amount is rounded up to a multiple of 10^-9.
const NANO: i32 = -9;

/// How a quantity was written, which its canonical form keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `12e6`, `3e-3`.
    DecimalExponent,
    /// `Ki`, `Mi`, … `Ei` (powers of 1024).
    BinarySI,
    /// `n`, `u`, `m`, none, `k`, `M`, … `E` (powers of 1000).
    DecimalSI,
}

/// Why a string is not a quantity. The messages are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
    #[error("quantity needs more than {MAX_DIGITS} significant digits")]
    TooPrecise,
}

/// An exact amount: `mantissa × 10^exp`, with no trailing zeros in the
/// mantissa (zero is `0 × 10^0`), and `exp >= -9`.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    mantissa: i128,
    exp: i32,
    format: Format,
}

impl Quantity {
    /// Parses `s` exactly (see the module note for the rules).
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let b = s.as_bytes();
        let mut pos = 0;
        let negative = match b.first() {
            None => return Err(QuantityError::Format),
            Some(b'-') => {
                pos = 1;
                true
            }
            Some(b'+') => {
                pos = 1;
                false
            }
            Some(_) => false,
        };
        let int_start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_part = &s[int_start..pos];
        let mut frac_part = "";
        if pos < b.len() && b[pos] == b'.' {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_part = &s[start..pos];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(QuantityError::Format);
        }
        let suffix = &s[pos..];
        let letters = suffix
            .bytes()
            .take_while(|c| b"eEinumkKMGTP".contains(c))
            .count();
        let rest = &suffix[letters..];
        let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
        if !rest.bytes().all(|c| c.is_ascii_digit()) {
            return Err(QuantityError::Format);
        }
        let (pow2, pow10, format) = interpret(suffix)?;

        // The digits without leading or trailing zeros, and their scale.
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        let trimmed = digits.trim_end_matches('0');
        if trimmed.is_empty() {
            return Ok(Quantity::zero(format));
        }
        if trimmed.len() > MAX_DIGITS {
            return Err(QuantityError::TooPrecise);
        }
        let m: i128 = trimmed.parse().map_err(|_| QuantityError::Numeric)?;
        let trailing = (digits.len() - trimmed.len()) as i64;
        let scale = trailing - frac_part.len() as i64;

        let (m, e) = if pow2 == 0 {
            round_nano(m, scale + pow10)?
        } else {
            binary(m, scale, pow2)?
        };
        let mut q = Quantity::normal(if negative { -m } else { m }, e, format);
        if format == Format::BinarySI
            && q.mantissa != 0
            && cmp_magnitude(&q, &Quantity::from_int(1)) == Ordering::Less
        {
            q.format = Format::DecimalSI;
        }
        Ok(q)
    }

    /// Zero in `format`.
    pub fn zero(format: Format) -> Quantity {
        Quantity {
            mantissa: 0,
            exp: 0,
            format,
        }
    }

    /// `n` units, decimal SI (`2` is "2", `2000` is "2k").
    pub fn from_int(n: i64) -> Quantity {
        Quantity::normal(i128::from(n), 0, Format::DecimalSI)
    }

    /// `n` thousandths, decimal SI (`500` is "500m", `2000` is "2").
    pub fn from_milli(n: i64) -> Quantity {
        Quantity::normal(i128::from(n), -3, Format::DecimalSI)
    }

    /// `n` units written in binary SI (`1 << 30` is "1Gi").
    pub fn from_bytes(n: i64) -> Quantity {
        Quantity::normal(i128::from(n), 0, Format::BinarySI)
    }

    fn normal(mut mantissa: i128, mut exp: i32, format: Format) -> Quantity {
        if mantissa == 0 {
            return Quantity::zero(format);
        }
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exp += 1;
        }
        Quantity {
            mantissa,
            exp,
            format,
        }
    }

    /// How the quantity was written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The amount in units, rounded up (away from zero) and saturated to
    /// `i64`, as upstream's `Value()`.
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// The amount in thousandths, rounded up (away from zero) and
    /// saturated to `i64`, as upstream's `MilliValue()`.
    pub fn milli_value(&self) -> i64 {
        self.scaled(-3)
    }

    /// The amount in units of 10^`scale`, rounded up and saturated.
    fn scaled(&self, scale: i32) -> i64 {
        let saturate = if self.mantissa < 0 {
            i64::MIN
        } else {
            i64::MAX
        };
        let shift = i64::from(self.exp) - i64::from(scale);
        let magnitude = self.mantissa.unsigned_abs();
        let m = if shift >= 0 {
            match pow10(shift).and_then(|p| magnitude.checked_mul(p)) {
                Some(m) => m,
                None => return saturate,
            }
        } else {
            match pow10(-shift) {
                Some(p) => magnitude.div_ceil(p),
                None => 1, // far below one unit: rounds up to one
            }
        };
        let Ok(m) = i64::try_from(m) else {
            return saturate;
        };
        if self.mantissa < 0 {
            -m
        } else {
            m
        }
    }
}

/// `10^n` as a `u128`, if it fits.
fn pow10(n: i64) -> Option<u128> {
    u32::try_from(n).ok().and_then(|n| 10u128.checked_pow(n))
}

/// A suffix as (power of two, power of ten, format).
fn interpret(suffix: &str) -> Result<(u32, i64, Format), QuantityError> {
    use Format::*;
    Ok(match suffix {
        "" => (0, 0, DecimalSI),
        "n" => (0, -9, DecimalSI),
        "u" => (0, -6, DecimalSI),
        "m" => (0, -3, DecimalSI),
        "k" => (0, 3, DecimalSI),
        "M" => (0, 6, DecimalSI),
        "G" => (0, 9, DecimalSI),
        "T" => (0, 12, DecimalSI),
        "P" => (0, 15, DecimalSI),
        "E" => (0, 18, DecimalSI),
        "Ki" => (10, 0, BinarySI),
        "Mi" => (20, 0, BinarySI),
        "Gi" => (30, 0, BinarySI),
        "Ti" => (40, 0, BinarySI),
        "Pi" => (50, 0, BinarySI),
        "Ei" => (60, 0, BinarySI),
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let e: i32 = s[1..].parse().map_err(|_| QuantityError::Numeric)?;
            (0, i64::from(e), DecimalExponent)
        }
        _ => return Err(QuantityError::Suffix),
    })
}

/// `m × 10^e` (m positive) rounded up to a multiple of 10^-9.
fn round_nano(m: i128, e: i64) -> Result<(i128, i32), QuantityError> {
    let nano = i64::from(NANO);
    if e >= nano {
        let e = i32::try_from(e).map_err(|_| QuantityError::Numeric)?;
        return Ok((m, e));
    }
    let m = match pow10(nano - e) {
        Some(p) => m.unsigned_abs().div_ceil(p) as i128,
        None => 1,
    };
    Ok((m, NANO))
}

/// `m × 10^scale × 2^pow2` (m positive), rounded to 1n and capped at 2^63-1.
fn binary(m: i128, scale: i64, pow2: u32) -> Result<(i128, i32), QuantityError> {
    let cap = Ok((i128::from(i64::MAX), 0));
    let factor = 1i128 << pow2;
    if scale >= 0 {
        let exact = pow10(scale)
            .and_then(|p| i128::try_from(p).ok())
            .and_then(|p| m.checked_mul(p))
            .and_then(|v| v.checked_mul(factor));
        return match exact {
            Some(v) if v <= i128::from(i64::MAX) => Ok((v, 0)),
            _ => cap,
        };
    }
    let Some(v) = m.checked_mul(factor) else {
        // At least 2^127 / 10^-scale: above the cap unless the fraction is
        // longer than this representation can round exactly.
        return if scale >= -19 {
            cap
        } else {
            Err(QuantityError::TooPrecise)
        };
    };
    let (v, e) = round_nano(v, scale)?;
    let q = Quantity::normal(v, e, Format::BinarySI);
    if cmp_magnitude(&q, &Quantity::from_int(i64::MAX)) == Ordering::Greater {
        return cap;
    }
    Ok((q.mantissa, q.exp))
}

/// Number of decimal digits of `n` (at least 1).
fn digits(n: u128) -> i64 {
    n.checked_ilog10().map_or(1, |d| i64::from(d) + 1)
}

/// Compares `|a|` and `|b|`.
fn cmp_magnitude(a: &Quantity, b: &Quantity) -> Ordering {
    let (ma, mb) = (a.mantissa.unsigned_abs(), b.mantissa.unsigned_abs());
    match (ma == 0, mb == 0) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    let (ea, eb) = (i64::from(a.exp), i64::from(b.exp));
    let order = (digits(ma) + ea).cmp(&(digits(mb) + eb));
    if order != Ordering::Equal {
        return order;
    }
    // Same order of magnitude: align to the smaller exponent. The shifted
    // mantissa has as many digits as the other one, so it fits.
    let shift = |m: u128, by: i64| {
        pow10(by)
            .and_then(|p| m.checked_mul(p))
            .unwrap_or(u128::MAX)
    };
    if ea >= eb {
        shift(ma, ea - eb).cmp(&mb)
    } else {
        ma.cmp(&shift(mb, eb - ea))
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    /// By amount, whatever the format: "1Gi" == "1073741824", "0.5" == "500m".
    fn cmp(&self, other: &Self) -> Ordering {
        let (sa, sb) = (self.mantissa.signum(), other.mantissa.signum());
        if sa != sb {
            return sa.cmp(&sb);
        }
        let magnitude = cmp_magnitude(self, other);
        if sa < 0 {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl fmt::Display for Quantity {
    /// Upstream's canonical form (see the module note).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mantissa == 0 {
            return f.write_str("0");
        }
        let mut format = self.format;
        if format == Format::BinarySI
            && (self.exp < 0 || cmp_magnitude(self, &Quantity::from_int(1024)) == Ordering::Less)
        {
            format = Format::DecimalSI;
        }
        if format == Format::BinarySI {
            // Binary amounts are capped at 2^63-1, so the integer fits.
            let mut v = self.mantissa * 10i128.pow(self.exp.unsigned_abs());
            let mut k = 0;
            while v % 1024 == 0 && k < 6 {
                v /= 1024;
                k += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
            return write!(f, "{v}{suffix}");
        }
        let (mut m, mut e) = (self.mantissa, self.exp);
        while e % 3 != 0 {
            m *= 10;
            e -= 1;
        }
        let si = match e {
            -9 => Some("n"),
            -6 => Some("u"),
            -3 => Some("m"),
            0 => Some(""),
            3 => Some("k"),
            6 => Some("M"),
            9 => Some("G"),
            12 => Some("T"),
            15 => Some("P"),
            18 => Some("E"),
            _ => None,
        };
        match (format, si) {
            (_, Some("")) => write!(f, "{m}"),
            (Format::DecimalSI, Some(s)) => write!(f, "{m}{s}"),
            _ => write!(f, "{m}e{e}"),
        }
    }
}

/// Parses `s` and writes it back canonically; `None` if it is not a quantity.
pub fn canonical(s: &str) -> Option<String> {
    Quantity::parse(s).ok().map(|q| q.to_string())
}

#[cfg(test)]
mod tests;
