//! CronJob schedules as upstream reads them: five fields (minute, hour,
//! day of month, month, day of week) in Vixie cron's syntax, or a
//! descriptor (`@hourly`, `@daily`, …), evaluated in an IANA time zone
//! (`spec.timeZone`, UTC when unset). Parsing and evaluation are croner's;
//! the zones are chrono-tz's bundled database, so a node's own tzdata does
//! not change when a Job runs.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

/// Parses `schedule` in `zone` (None: UTC); Err says why, in upstream's
/// words where it has them.
pub fn parse(schedule: &str, zone: Option<&str>) -> Result<Schedule, String> {
    let s = schedule.trim();
    if s.contains("TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".to_string());
    }
    let zone = match zone {
        None | Some("") => Tz::UTC,
        Some(z) => Tz::from_str(z).map_err(|_| format!("unknown time zone {z}"))?,
    };
    if s.starts_with('@') {
        if !matches!(
            s,
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight" | "@hourly"
        ) {
            return Err(format!("unrecognized descriptor: {s}"));
        }
    } else if s.split_whitespace().count() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {s}",
            s.split_whitespace().count()
        ));
    }
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let cron = parser.parse(s).map_err(|e| e.to_string())?;
    Ok(Schedule { cron, zone })
}

fn to_chrono(t: jiff::Timestamp) -> DateTime<Utc> {
    Utc.timestamp_opt(t.as_second(), 0)
        .single()
        .unwrap_or_default()
}

fn to_jiff(t: DateTime<Utc>) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.timestamp()).unwrap_or_default()
}

impl Schedule {
    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let at = to_chrono(t).with_timezone(&self.zone);
        let next = self.cron.find_next_occurrence(&at, false).ok()?;
        Some(to_jiff(next.with_timezone(&Utc)))
    }

    /// The last scheduled time at or before `t`.
    pub fn last_at_or_before(&self, t: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let at = to_chrono(t).with_timezone(&self.zone);
        let prev = self.cron.find_previous_occurrence(&at, true).ok()?;
        Some(to_jiff(prev.with_timezone(&Utc)))
    }

    /// `t` written in the schedule's zone, RFC 3339 (upstream's
    /// `batch.kubernetes.io/cronjob-scheduled-timestamp`).
    pub fn local(&self, t: jiff::Timestamp) -> String {
        to_chrono(t)
            .with_timezone(&self.zone)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn schedules_follow_vixie_cron_in_their_zone() {
        let every = parse("*/1 * * * *", None).unwrap();
        assert_eq!(
            every.next_after(at("2026-12-07T10:00:00Z")),
            Some(at("2026-12-07T10:01:00Z"))
        );
        assert_eq!(
            every.last_at_or_before(at("2026-12-07T10:00:30Z")),
            Some(at("2026-12-07T10:00:00Z"))
        );
        // 09:00 in Tokyo is 00:00 UTC.
        let tokyo = parse("0 9 * * *", Some("Asia/Tokyo")).unwrap();
        assert_eq!(
            tokyo.next_after(at("2026-12-07T10:00:00Z")),
            Some(at("2026-12-08T00:00:00Z"))
        );
        assert_eq!(
            tokyo.local(at("2026-12-08T00:00:00Z")),
            "2026-12-08T09:00:00+09:00"
        );
        let hourly = parse("@hourly", None).unwrap();
        assert_eq!(
            hourly.next_after(at("2026-12-07T10:20:00Z")),
            Some(at("2026-12-07T11:00:00Z"))
        );
        for bad in [
            "* * * *",
            "61 * * * *",
            "TZ=UTC * * * * *",
            "@sometimes",
            "* * * * * *",
        ] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
        assert!(parse("* * * * *", Some("Mars/Olympus")).is_err());
    }
}
