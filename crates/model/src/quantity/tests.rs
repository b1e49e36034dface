//! The quantity tables: upstream's parse cases (apimachinery's
//! `TestQuantityParse`), its canonical forms (`TestQuantityString`,
//! `TestQuantityParseEmit`), comparison, the rounded integer views the
//! scheduler and the cgroups read, errors, and a seeded round trip.

use super::*;
use Format::*;

fn dec(m: i128, e: i32, f: Format) -> Quantity {
    Quantity::normal(m, e, f)
}

fn q(s: &str) -> Quantity {
    Quantity::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

const MAX: i128 = i64::MAX as i128;

#[test]
fn parses_upstream_cases() {
    let cases: &[(&str, Quantity)] = &[
        ("0", dec(0, 0, DecimalSI)),
        ("0n", dec(0, 0, DecimalSI)),
        ("0u", dec(0, 0, DecimalSI)),
        ("0m", dec(0, 0, DecimalSI)),
        ("0Ki", dec(0, 0, BinarySI)),
        ("0k", dec(0, 0, DecimalSI)),
        ("0Mi", dec(0, 0, BinarySI)),
        ("0M", dec(0, 0, DecimalSI)),
        ("0Gi", dec(0, 0, BinarySI)),
        ("0G", dec(0, 0, DecimalSI)),
        ("0Ti", dec(0, 0, BinarySI)),
        ("0T", dec(0, 0, DecimalSI)),
        // Quantity less numbers are allowed
        ("1", dec(1, 0, DecimalSI)),
        // Binary suffixes
        ("1Ki", dec(1024, 0, BinarySI)),
        ("8Ki", dec(8 * 1024, 0, BinarySI)),
        ("7Mi", dec(7 * 1024 * 1024, 0, BinarySI)),
        ("6Gi", dec(6 << 30, 0, BinarySI)),
        ("5Ti", dec(5 << 40, 0, BinarySI)),
        ("4Pi", dec(4 << 50, 0, BinarySI)),
        ("3Ei", dec(3 << 60, 0, BinarySI)),
        ("10Ti", dec(10 << 40, 0, BinarySI)),
        ("100Ti", dec(100 << 40, 0, BinarySI)),
        // Decimal suffixes
        ("5n", dec(5, -9, DecimalSI)),
        ("4u", dec(4, -6, DecimalSI)),
        ("3m", dec(3, -3, DecimalSI)),
        ("9", dec(9, 0, DecimalSI)),
        ("8k", dec(8, 3, DecimalSI)),
        ("50k", dec(5, 4, DecimalSI)),
        ("7M", dec(7, 6, DecimalSI)),
        ("6G", dec(6, 9, DecimalSI)),
        ("5T", dec(5, 12, DecimalSI)),
        ("40T", dec(4, 13, DecimalSI)),
        ("300T", dec(3, 14, DecimalSI)),
        ("2P", dec(2, 15, DecimalSI)),
        ("1E", dec(1, 18, DecimalSI)),
        // Decimal exponents
        ("1E-3", dec(1, -3, DecimalExponent)),
        ("1e3", dec(1, 3, DecimalExponent)),
        ("1E6", dec(1, 6, DecimalExponent)),
        ("1e9", dec(1, 9, DecimalExponent)),
        ("1E12", dec(1, 12, DecimalExponent)),
        ("1e15", dec(1, 15, DecimalExponent)),
        ("1E18", dec(1, 18, DecimalExponent)),
        // Nonstandard but still parsable
        ("1e14", dec(1, 14, DecimalExponent)),
        ("1e13", dec(1, 13, DecimalExponent)),
        ("1e3", dec(1, 3, DecimalExponent)),
        ("100.035k", dec(100035, 0, DecimalSI)),
        // Things that look like floating point
        ("0.001", dec(1, -3, DecimalSI)),
        ("0.0005k", dec(5, -1, DecimalSI)),
        ("0.005", dec(5, -3, DecimalSI)),
        ("0.05", dec(5, -2, DecimalSI)),
        ("0.5", dec(5, -1, DecimalSI)),
        ("0.00050k", dec(5, -1, DecimalSI)),
        ("0.00500", dec(5, -3, DecimalSI)),
        ("0.05000", dec(5, -2, DecimalSI)),
        ("0.50000", dec(5, -1, DecimalSI)),
        ("0.5e0", dec(5, -1, DecimalExponent)),
        ("0.5e-1", dec(5, -2, DecimalExponent)),
        ("0.5e-2", dec(5, -3, DecimalExponent)),
        ("0.5e-3", dec(5, -4, DecimalExponent)),
        ("10.035M", dec(10035, 3, DecimalSI)),
        ("1.2e3", dec(12, 2, DecimalExponent)),
        ("1.3E+6", dec(13, 5, DecimalExponent)),
        ("1.40e9", dec(14, 8, DecimalExponent)),
        ("1.53E12", dec(153, 10, DecimalExponent)),
        ("1.6e15", dec(16, 14, DecimalExponent)),
        ("1.7E18", dec(17, 17, DecimalExponent)),
        ("9.01", dec(901, -2, DecimalSI)),
        ("8.1k", dec(81, 2, DecimalSI)),
        ("7.123456M", dec(7123456, 0, DecimalSI)),
        ("6.987654321G", dec(6987654321, 0, DecimalSI)),
        ("5.444T", dec(5444, 9, DecimalSI)),
        ("40.1T", dec(401, 11, DecimalSI)),
        ("300.2T", dec(3002, 11, DecimalSI)),
        ("2.5P", dec(25, 14, DecimalSI)),
        ("1.01E", dec(101, 16, DecimalSI)),
        // Things that saturate/round
        ("3.001n", dec(4, -9, DecimalSI)),
        ("1.1E-9", dec(2, -9, DecimalExponent)),
        ("0.0000000001", dec(1, -9, DecimalSI)),
        ("0.0000000005", dec(1, -9, DecimalSI)),
        ("0.00000000050", dec(1, -9, DecimalSI)),
        ("0.5e-9", dec(1, -9, DecimalExponent)),
        ("0.9n", dec(1, -9, DecimalSI)),
        ("0.00000012345", dec(124, -9, DecimalSI)),
        ("0.00000012354", dec(124, -9, DecimalSI)),
        ("9Ei", dec(MAX, 0, BinarySI)),
        ("9223372036854775807Ki", dec(MAX, 0, BinarySI)),
        ("12E", dec(12, 18, DecimalSI)),
        // We'll accept fractional binary stuff, too.
        ("100.035Ki", dec(10243584, -2, BinarySI)),
        ("0.5Mi", dec(512 * 1024, 0, BinarySI)),
        ("0.05Gi", dec(536870912, -1, BinarySI)),
        ("0.025Ti", dec(274877906944, -1, BinarySI)),
        // Things written by trolls
        ("0.000000000001Ki", dec(2, -9, DecimalSI)), // rounds up, changes format
        (".001", dec(1, -3, DecimalSI)),
        (".0001k", dec(100, -3, DecimalSI)),
        ("1.", dec(1, 0, DecimalSI)),
        ("1.G", dec(1, 9, DecimalSI)),
        // Signs
        ("+1", dec(1, 0, DecimalSI)),
        ("-1", dec(-1, 0, DecimalSI)),
        ("-3.001n", dec(-4, -9, DecimalSI)),
        ("-9Ei", dec(-MAX, 0, BinarySI)),
    ];
    for (s, want) in cases {
        let got = q(s);
        assert_eq!(got, *want, "{s}: {got:?} want {want:?}");
        assert_eq!(got.format(), want.format(), "{s}: format");
        // The canonical form parses back to the same amount and format.
        let again = q(&got.to_string());
        assert_eq!(again, got, "{s} → {got} does not round-trip");
    }
}

#[test]
fn writes_upstream_canonical_forms() {
    let cases: &[(Quantity, &str)] = &[
        (dec(1024 * 1024 * 1024, 0, BinarySI), "1Gi"),
        (dec(300 * 1024 * 1024, 0, BinarySI), "300Mi"),
        (dec(6 * 1024, 0, BinarySI), "6Ki"),
        (dec(1001 * 1024 * 1024 * 1024, 0, BinarySI), "1001Gi"),
        (dec(1024 * 1024 * 1024 * 1024, 0, BinarySI), "1Ti"),
        (dec(5, 0, BinarySI), "5"),
        (dec(500, -3, BinarySI), "500m"),
        (dec(1, 9, DecimalSI), "1G"),
        (dec(1000, 6, DecimalSI), "1G"),
        (dec(1000000, 3, DecimalSI), "1G"),
        (dec(1000000000, 0, DecimalSI), "1G"),
        (dec(1, -3, DecimalSI), "1m"),
        (dec(80, -3, DecimalSI), "80m"),
        (dec(1080, -3, DecimalSI), "1080m"),
        (dec(108, -2, DecimalSI), "1080m"),
        (dec(10800, -4, DecimalSI), "1080m"),
        (dec(300, 6, DecimalSI), "300M"),
        (dec(1, 12, DecimalSI), "1T"),
        (dec(1234567, 6, DecimalSI), "1234567M"),
        (dec(1234567, -3, BinarySI), "1234567m"),
        (dec(3, 3, DecimalSI), "3k"),
        (dec(1025, 0, BinarySI), "1025"),
        (dec(0, 0, DecimalSI), "0"),
        (dec(0, 0, BinarySI), "0"),
        (dec(1, 9, DecimalExponent), "1e9"),
        (dec(1, -3, DecimalExponent), "1e-3"),
        (dec(1, -9, DecimalExponent), "1e-9"),
        (dec(80, -3, DecimalExponent), "80e-3"),
        (dec(300, 6, DecimalExponent), "300e6"),
        (dec(1, 12, DecimalExponent), "1e12"),
        (dec(1, 3, DecimalExponent), "1e3"),
        (dec(3, 3, DecimalExponent), "3e3"),
        (dec(3, 3, DecimalSI), "3k"),
        (dec(0, 0, DecimalExponent), "0"),
        (dec(1, -9, DecimalSI), "1n"),
        (dec(80, -9, DecimalSI), "80n"),
        (dec(1080, -9, DecimalSI), "1080n"),
        (dec(108, -8, DecimalSI), "1080n"),
        (dec(10800, -10, DecimalSI), "1080n"),
        (dec(1, -6, DecimalSI), "1u"),
        (dec(80, -6, DecimalSI), "80u"),
        (dec(1080, -6, DecimalSI), "1080u"),
        (dec(-1080, -3, DecimalSI), "-1080m"),
        (dec(-1024 * 1024, 0, BinarySI), "-1Mi"),
        (dec(-5, 0, BinarySI), "-5"),
        (dec(-1, 9, DecimalExponent), "-1e9"),
    ];
    for (quantity, want) in cases {
        assert_eq!(quantity.to_string(), *want, "{quantity:?}");
    }
    // Parse, then emit (upstream's TestQuantityParseEmit and friends).
    let emits: &[(&str, &str)] = &[
        ("1Ki", "1Ki"),
        ("1Mi", "1Mi"),
        ("1Gi", "1Gi"),
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000001Ki", "1024u"),
        (".000000001Ki", "1024n"),
        (".000000000001Ki", "2n"),
        ("1.5Gi", "1536Mi"),
        ("0.5", "500m"),
        ("2000m", "2"),
        ("100.035Ki", "102435840m"),
        ("9Ei", "9223372036854775807"),
        ("1000e3", "1e6"),
        ("0.5e-3", "500e-6"),
        ("12E", "12E"),
        ("1000E", "1e21"),
        ("1e100", "10e99"), // exponents are multiples of 3
        ("128974848", "128974848"),
        ("129e6", "129e6"),
        ("123Mi", "123Mi"),
    ];
    for (input, want) in emits {
        assert_eq!(q(input).to_string(), *want, "{input}");
    }
}

#[test]
fn compares_by_amount_whatever_the_format() {
    use std::cmp::Ordering::*;
    let cases: &[(&str, &str, std::cmp::Ordering)] = &[
        ("0", "0", Equal),
        ("0", "0Ki", Equal),
        ("100m", "50m", Greater),
        ("50m", "100m", Less),
        ("10000T", "100Gi", Greater),
        ("100Gi", "10000T", Less),
        ("1Gi", "1073741824", Equal),
        ("1000M", "1G", Equal),
        ("0.5", "500m", Equal),
        ("1e3", "1k", Equal),
        ("1Ki", "1k", Greater),
        ("-1", "0", Less),
        ("-1", "-2", Greater),
        ("1n", "0", Greater),
        ("9Ei", "9223372036854775807", Equal),
        ("12E", "9Ei", Greater),
        ("1e100", "1e99", Greater),
        ("999999999999999999999999999999999999", "1e36", Less),
    ];
    for (a, b, want) in cases {
        assert_eq!(q(a).cmp(&q(b)), *want, "{a} vs {b}");
        assert_eq!(q(b).cmp(&q(a)), want.reverse(), "{b} vs {a}");
    }
}

#[test]
fn integer_views_round_up_and_saturate() {
    // (quantity, Value(), MilliValue())
    let cases: &[(&str, i64, i64)] = &[
        ("500m", 1, 500),
        ("2", 2, 2000),
        ("1Gi", 1 << 30, 1000 << 30),
        ("128974848", 128_974_848, 128_974_848_000),
        ("129e6", 129_000_000, 129_000_000_000),
        ("123Mi", 128_974_848, 128_974_848_000),
        ("1.5", 2, 1500),
        ("0.1", 1, 100),
        ("100n", 1, 1),
        ("1k", 1000, 1_000_000),
        ("1E", 1_000_000_000_000_000_000, i64::MAX),
        ("2E-3", 1, 2),
        ("5e+2", 500, 500_000),
        (".5", 1, 500),
        ("5.", 5, 5000),
        ("+1", 1, 1000),
        ("-1", -1, -1000),
        ("-1.5", -2, -1500),
        ("0", 0, 0),
        ("000", 0, 0),
        ("0.000", 0, 0),
        ("0.0000001", 1, 1),
        ("1.000000000000000000000000000000000000000", 1, 1000),
        ("250u", 1, 1),
        ("1.25Gi", 1_342_177_280, 1_342_177_280_000),
        ("9223372036854775807", i64::MAX, i64::MAX),
        ("9223372036854775808", i64::MAX, i64::MAX),
        ("-1e30", i64::MIN, i64::MIN),
        ("1e-30", 1, 1),
    ];
    for (s, value, milli) in cases {
        assert_eq!(q(s).value(), *value, "{s} value");
        assert_eq!(q(s).milli_value(), *milli, "{s} milli");
    }
    assert_eq!(Quantity::from_milli(2000).to_string(), "2");
    assert_eq!(Quantity::from_milli(1500).to_string(), "1500m");
    assert_eq!(Quantity::from_bytes(8 << 30).to_string(), "8Gi");
    assert_eq!(Quantity::from_int(110).to_string(), "110");
}

#[test]
fn refuses_what_is_not_a_quantity() {
    let cases: &[(&str, QuantityError)] = &[
        ("", QuantityError::Format),
        ("abc", QuantityError::Format),
        ("1K", QuantityError::Suffix),
        ("1Gb", QuantityError::Format),
        ("--1", QuantityError::Format),
        ("1.5.5", QuantityError::Format),
        ("m", QuantityError::Format),
        (".", QuantityError::Format),
        ("1e", QuantityError::Suffix),
        ("1e+", QuantityError::Numeric),
        (" 1", QuantityError::Format),
        ("1 ", QuantityError::Format),
        ("1Gi5", QuantityError::Suffix),
        ("1ki", QuantityError::Suffix),
        ("1e99999999999", QuantityError::Numeric),
        (
            "1234567890123456789012345678901234567890",
            QuantityError::TooPrecise,
        ),
    ];
    for (s, want) in cases {
        assert_eq!(Quantity::parse(s).err().as_ref(), Some(want), "{s:?}");
    }
    assert!(QuantityError::Format
        .to_string()
        .contains("regular expression"));
}

/// Random quantities in every format: the canonical form parses back to
/// the same amount, and comparison agrees with `f64` where that is exact
/// enough to tell. Replay with SHOAL_SEED.
#[test]
fn canonical_form_round_trips_random_quantities() {
    use rand::{RngExt, SeedableRng};
    let seed = shoal_fabric::testing::seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    const SUFFIXES: &[&str] = &[
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e3",
        "e-7", "E+12", "e0",
    ];
    let mut prev: Option<(Quantity, f64)> = None;
    for _ in 0..5000 {
        let int: u64 = rng.random_range(0..1_000_000);
        let frac: u32 = rng.random_range(0..1000);
        let suffix = SUFFIXES[rng.random_range(0..SUFFIXES.len())];
        let sign = if rng.random_bool(0.2) { "-" } else { "" };
        let s = if rng.random_bool(0.5) {
            format!("{sign}{int}.{frac:03}{suffix}")
        } else {
            format!("{sign}{int}{suffix}")
        };
        let parsed = Quantity::parse(&s).unwrap_or_else(|e| panic!("seed {seed}: {s}: {e}"));
        let text = parsed.to_string();
        let again = Quantity::parse(&text).unwrap_or_else(|e| panic!("seed {seed}: {text}: {e}"));
        assert_eq!(again, parsed, "seed {seed}: {s} → {text}");
        assert_eq!(
            again.to_string(),
            text,
            "seed {seed}: {text} is not a fixed point"
        );
        let approx: f64 = text_to_f64(&text);
        if let Some((p, pf)) = prev {
            if (approx - pf).abs() > 1e-6 * approx.abs().max(pf.abs()).max(1e-9) {
                assert_eq!(
                    parsed.cmp(&p),
                    approx.partial_cmp(&pf).unwrap_or(std::cmp::Ordering::Equal),
                    "seed {seed}: {s} vs {p}"
                );
            }
        }
        prev = Some((parsed, approx));
    }
}

/// An approximate float for a canonical quantity (test oracle only).
fn text_to_f64(s: &str) -> f64 {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e => 10f64.powi(e[1..].parse::<i32>().unwrap_or(0)),
    };
    n * factor
}
