//! The time-of-day schedule, evaluated by the engine from its own clock.
//!
//! Every control time is an [`Instant`] of the engine's clock (ms since the
//! Unix epoch). The schedule speaks civil time: a day plan runs plan 3 from
//! 07:00 on weekdays. [`TimeOfDay`] turns one into the other in the
//! intersection's IANA time zone, so a real-time daemon, `greenwave
//! simulate`, `replay` and a lockstep SUMO run all pick plans from the same
//! clock, whatever the host's zone is.
//!
//! Daylight-saving transitions:
//! - **Skipped hour** (spring forward, 02:00 → 03:00): local time jumps past
//!   the entries inside the gap; the first evaluation after the jump sees the
//!   latest entry at or before 03:00, so an entry at 02:30 takes effect at
//!   the jump, never later and never twice.
//! - **Repeated hour** (fall back, 02:00 → 01:00): local time runs backwards
//!   once. The schedule is then read at the latest local time already seen
//!   (a high-water mark) until local time passes it again, so the plan in
//!   force holds through the repeated hour and no entry runs twice.
//!
//! All of it is arithmetic on `chrono` values with the zone tables compiled
//! in: no allocation, no clock read, no I/O (it runs on the control thread).

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use chrono_tz::Tz;

use crate::core::Instant;
use crate::core::spec::{CivilTime, Schedule};

/// How far back local time may run and still be a repeated hour (or a
/// backwards clock correction) held at the high-water mark. Larger steps
/// back (a clock set a day wrong and corrected) are followed at once.
const MAX_HOLD_MS: i64 = 2 * 3_600_000;

/// One intersection's schedule clock: its zone, and what it last asked for.
#[derive(Clone, Copy, Debug)]
pub struct TimeOfDay {
    zone: Tz,
    /// The latest local time seen (see the module docs, repeated hour).
    high_water: Option<NaiveDateTime>,
    /// The plan the schedule last asked for, so each change is asked once.
    asked: Option<u8>,
}

impl TimeOfDay {
    pub fn new(zone: Tz) -> Self {
        TimeOfDay { zone, high_water: None, asked: None }
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Forget what the schedule last asked for, so the next [`Self::due`]
    /// asks again (the controller refused the plan for now).
    pub fn forget(&mut self) {
        self.asked = None;
    }

    /// Local civil time at wall-clock instant `wall` (ms since the Unix
    /// epoch), held at the high-water mark through a repeated hour.
    pub fn civil(&mut self, wall: Instant) -> CivilTime {
        let local = local_time(self.zone, wall);
        let held = match self.high_water {
            Some(mark) if local < mark && (mark - local).num_milliseconds() <= MAX_HOLD_MS => mark,
            _ => local,
        };
        self.high_water = Some(held);
        civil_of(held)
    }

    /// The plan to select at `wall`, when the schedule asks for a different
    /// one than it last did (`None`: nothing to do). The controller applies
    /// a selection at its next barrier.
    pub fn due(&mut self, schedule: &Schedule, wall: Instant) -> Option<u8> {
        let want = schedule.plan_at(self.civil(wall))?;
        if self.asked == Some(want) {
            return None;
        }
        self.asked = Some(want);
        Some(want)
    }
}

/// The local date and time in `zone` at `wall`.
pub fn local_time(zone: Tz, wall: Instant) -> NaiveDateTime {
    let ms = i64::try_from(wall.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&zone).naive_local()
}

fn civil_of(t: NaiveDateTime) -> CivilTime {
    CivilTime {
        year: t.year(),
        month: t.month() as u8,
        day: t.day() as u8,
        weekday: t.weekday().num_days_from_monday() as u8,
        minute_of_day: (t.hour() * 60 + t.minute()) as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::spec::{DayPlan, DayPlanEvent};

    /// Plan 1 from midnight, plan 2 from 01:30, plan 3 from 02:30, plan 4
    /// from 07:00, every day.
    fn schedule() -> Schedule {
        let events = [(0, 1), (90, 2), (150, 3), (420, 4)]
            .into_iter()
            .map(|(minute_of_day, plan)| DayPlanEvent { minute_of_day, plan })
            .collect();
        Schedule { day_plans: vec![DayPlan { name: "all".into(), events }], weekdays: [Some(0); 7], holidays: vec![] }
    }

    fn utc(s: &str) -> Instant {
        let t = DateTime::parse_from_rfc3339(s).expect("rfc3339");
        Instant::from_millis(t.timestamp_millis() as u64)
    }

    /// Every selection the schedule asks for, minute by minute over
    /// `[from, from + minutes)`, with the UTC instant it was asked at.
    fn asked(zone: Tz, from: &str, minutes: u64) -> Vec<(String, u8)> {
        let mut tod = TimeOfDay::new(zone);
        let s = schedule();
        let start = utc(from);
        (0..minutes)
            .filter_map(|m| {
                let t = Instant::from_millis(start.as_millis() + m * 60_000);
                let plan = tod.due(&s, t)?;
                let at = DateTime::from_timestamp_millis(t.as_millis() as i64).expect("valid").to_rfc3339();
                Some((at, plan))
            })
            .collect()
    }

    #[test]
    fn plans_change_at_local_times_in_the_configured_zone() {
        // Shanghai is UTC+8 all year: 07:00 local is 23:00 UTC the day before.
        let got = asked(chrono_tz::Asia::Shanghai, "2026-12-06T22:50:00Z", 20);
        assert_eq!(got, vec![("2026-12-06T22:50:00+00:00".into(), 3), ("2026-12-06T23:00:00+00:00".into(), 4)]);
    }

    /// Spring forward in New York, 2026-03-08: 02:00 EST becomes 03:00 EDT
    /// (07:00 UTC). The 02:30 entry lies in the skipped hour: it takes
    /// effect at the jump, once.
    #[test]
    fn an_entry_in_the_skipped_hour_takes_effect_at_the_jump() {
        let got = asked(chrono_tz::America::New_York, "2026-03-08T06:00:00Z", 120);
        assert_eq!(
            got,
            vec![
                ("2026-03-08T06:00:00+00:00".into(), 1), // 01:00 EST
                ("2026-03-08T06:30:00+00:00".into(), 2), // 01:30 EST
                ("2026-03-08T07:00:00+00:00".into(), 3), // 03:00 EDT: the jump
            ]
        );
    }

    /// Fall back in New York, 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00
    /// UTC), so 01:00–01:59 happens twice. The 01:30 entry runs once, and
    /// plan 2 holds through the repeated hour instead of going back to 1.
    #[test]
    fn the_repeated_hour_runs_no_entry_twice() {
        let got = asked(chrono_tz::America::New_York, "2026-11-01T04:00:00Z", 240);
        assert_eq!(
            got,
            vec![
                ("2026-11-01T04:00:00+00:00".into(), 1), // 00:00 EDT
                ("2026-11-01T05:30:00+00:00".into(), 2), // 01:30 EDT, the first time
                ("2026-11-01T07:30:00+00:00".into(), 3), // 02:30 EST, after the repeat
            ]
        );
    }

    #[test]
    fn a_large_step_back_is_followed_at_once() {
        let mut tod = TimeOfDay::new(chrono_tz::UTC);
        let s = schedule();
        assert_eq!(tod.due(&s, utc("2026-12-07T08:00:00Z")), Some(4));
        // Set back a whole day: 00:10 the same day is plan 1 again.
        assert_eq!(tod.due(&s, utc("2026-12-07T00:10:00Z")), Some(1));
    }
}
