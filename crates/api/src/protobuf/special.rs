//! The special upstream types: Time and MicroTime, Duration, IntOrString, Quantity, RawExtension and FieldsV1.

use super::*;

// ---------------------------------------------------------------------------------------
// Special types

/// meta.v1.Time / MicroTime `{seconds = 1, nanos = 2}`.
pub(super) fn decode_time(buf: &[u8], micro: bool) -> Res<Value> {
    let mut seconds = None;
    let mut nanos = None;
    for_each_field(buf, |tag, wt, b| {
        match tag {
            1 => seconds = Some(read_varint_field(wt, b)? as i64),
            2 => nanos = Some(read_varint_field(wt, b)? as i32),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if seconds.is_none() && nanos.is_none() {
        // Go's zero time is written as an empty message and is `null` in JSON.
        return Ok(Value::Null);
    }
    let total = i128::from(seconds.unwrap_or(0)) * 1_000_000_000 + i128::from(nanos.unwrap_or(0));
    let out_of_range = || err("timestamp out of range");
    let secs = i64::try_from(total.div_euclid(1_000_000_000)).map_err(|_| out_of_range())?;
    let subsec = total.rem_euclid(1_000_000_000);
    let ts = jiff::Timestamp::from_second(secs).map_err(|_| out_of_range())?;
    let dt = jiff::tz::Offset::UTC.to_datetime(ts);
    if dt.year() < 0 {
        return Err(out_of_range());
    }
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    if micro {
        s.push_str(&format!(".{:06}", subsec / 1000));
    }
    s.push('Z');
    Ok(Value::String(s))
}

/// meta.v1.Duration `{duration = 1}` (nanoseconds), as Go's `time.Duration.String()`.
pub(super) fn decode_duration(buf: &[u8]) -> Res<Value> {
    let mut nanos = 0i64;
    for_each_field(buf, |tag, wt, b| {
        if tag != 1 {
            return Ok(false);
        }
        nanos = read_varint_field(wt, b)? as i64;
        Ok(true)
    })?;
    Ok(Value::String(go_duration(nanos)))
}

pub(super) fn go_duration(d: i64) -> String {
    fn frac(v: u64, prec: u32) -> String {
        if v == 0 {
            return String::new();
        }
        let digits = format!("{v:0width$}", width = prec as usize);
        format!(".{}", digits.trim_end_matches('0'))
    }
    if d == 0 {
        return "0s".to_string();
    }
    let u = d.unsigned_abs();
    let body = if u < 1_000_000_000 {
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let p = 10u64.pow(prec);
        format!("{}{}{unit}", u / p, frac(u % p, prec))
    } else {
        let f = frac(u % 1_000_000_000, 9);
        let secs = u / 1_000_000_000;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            format!("{h}h{m}m{s}{f}s")
        } else if m > 0 {
            format!("{m}m{s}{f}s")
        } else {
            format!("{s}{f}s")
        }
    };
    if d < 0 {
        format!("-{body}")
    } else {
        body
    }
}

/// util.intstr.IntOrString `{type = 1, intVal = 2, strVal = 3}`.
pub(super) fn decode_int_or_string(buf: &[u8]) -> Res<Value> {
    let mut ty = None;
    let mut int_val = 0i32;
    let mut str_val = None;
    for_each_field(buf, |tag, wt, b| {
        match tag {
            1 => ty = Some(read_varint_field(wt, b)?),
            2 => int_val = read_varint_field(wt, b)? as i32,
            3 => str_val = Some(read_string_field(wt, b)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(match (ty, str_val) {
        (Some(1), s) => Value::String(s.unwrap_or_default()),
        (Some(0), _) | (None, None) => Value::from(int_val),
        (None, Some(s)) => Value::String(s),
        (Some(t), _) => return Err(err(format!("bad IntOrString type {t}"))),
    })
}

/// api.resource.Quantity `{string = 1}`.
pub(super) fn decode_quantity(buf: &[u8]) -> Res<Value> {
    let mut s = None;
    for_each_field(buf, |tag, wt, b| {
        if tag != 1 {
            return Ok(false);
        }
        s = Some(read_string_field(wt, b)?);
        Ok(true)
    })?;
    Ok(Value::String(s.unwrap_or_else(|| "0".to_string())))
}

/// runtime.RawExtension / meta.v1.FieldsV1 `{raw = 1}`.
pub(super) fn decode_raw_json(buf: &[u8], depth: usize) -> Res<Value> {
    let mut raw: Option<&[u8]> = None;
    for_each_field(buf, |tag, wt, b| {
        if tag != 1 {
            return Ok(false);
        }
        raw = Some(read_bytes_field(wt, b)?);
        Ok(true)
    })?;
    let raw = match raw {
        None | Some([]) => return Ok(Value::Null),
        Some(raw) => raw,
    };
    if let Ok(v) = serde_json::from_slice::<Value>(raw) {
        return Ok(v);
    }
    if raw.starts_with(MAGIC) {
        if depth >= MAX_DEPTH {
            return Err(err(format!("nested more than {MAX_DEPTH} levels deep")));
        }
        return decode_envelope(raw, depth + 1).map_err(err);
    }
    Ok(Value::String(String::from_utf8_lossy(raw).into_owned()))
}
