//! `[schedule]`: default plan, week, day plans, holidays.

use std::collections::BTreeMap;

use crate::core::spec::{DayPlan, DayPlanEvent, Holiday, Schedule};

use super::super::key::KeyPath;
use super::super::raw::{RawDayPlanEvent, RawSchedule};
use super::{Validator, root};

impl Validator<'_> {
    pub(super) fn schedule(&mut self, raw: Option<&RawSchedule>) -> Option<(u8, Schedule)> {
        let at = root().key("schedule");
        let raw = self.required_table(raw, &at, "schedule")?;
        let default_plan = self.required(raw.default_plan, &at.key("default_plan"));
        let default_plan = default_plan.filter(|&n| self.plan_ref(n, &at.key("default_plan")));

        let table = at.key("day_plan");
        let mut day_plans: Vec<DayPlan> = Vec::new();
        // Where each kept day plan is in the file, for warnings about it.
        let mut day_plan_at: Vec<KeyPath> = Vec::new();
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        let mut complete = true;
        for (i, d) in raw.day_plan.iter().enumerate() {
            let dp_at = table.index(i);
            let events = self.day_plan_events(d.events.as_deref(), &dp_at.key("events"));
            complete &= events.is_some();
            let Some(name) = self.required(d.name.clone(), &dp_at.key("name")) else {
                complete = false;
                continue;
            };
            if names.contains_key(&name) {
                self.error(&dp_at.key("name"), format!("another day plan is already named \"{name}\""));
                complete = false;
                continue;
            }
            names.insert(name.clone(), day_plans.len());
            day_plans.push(DayPlan { name, events: events.unwrap_or_default() });
            day_plan_at.push(dp_at);
        }
        let mut used = vec![false; day_plans.len()];
        let mut day_plan_ref = |v: &mut Self, name: &str, at: &KeyPath| -> Option<usize> {
            let index = names.get(name).copied();
            match index {
                Some(i) => used[i] = true,
                None => v.error(at, format!("no [[schedule.day_plan]] is named \"{name}\"")),
            }
            index
        };

        let mut weekdays = [None; 7];
        if let Some(week) = &raw.week {
            let week_at = at.key("week");
            if week.len() != 7 {
                self.error(&week_at, format!("has {} entries; it needs 7, Monday first", week.len()));
                complete = false;
            }
            for (d, name) in week.iter().enumerate().take(7) {
                weekdays[d] = day_plan_ref(self, name, &week_at.index(d));
                complete &= weekdays[d].is_some();
            }
        }
        let mut holidays: Vec<Holiday> = Vec::new();
        let mut seen_dates: BTreeMap<(Option<i32>, u8, u8), String> = BTreeMap::new();
        for (i, h) in raw.holiday.iter().enumerate() {
            let h_at = at.key("holiday").index(i);
            let date = self.required(h.date.as_deref(), &h_at.key("date")).and_then(|text| match parse_date(text) {
                Ok(date) => Some(date),
                Err(reason) => {
                    self.error(&h_at.key("date"), format!("\"{text}\" {reason}"));
                    None
                }
            });
            let day_plan = self
                .required(h.day_plan.as_deref(), &h_at.key("day_plan"))
                .and_then(|n| day_plan_ref(self, n, &h_at.key("day_plan")));
            let (Some((year, month, day)), Some(day_plan)) = (date, day_plan) else {
                complete = false;
                continue;
            };
            if let Some(first) = seen_dates.get(&(year, month, day)) {
                self.error(&h_at.key("date"), format!("the same date as {first}"));
                complete = false;
                continue;
            }
            seen_dates.insert((year, month, day), h_at.render(self.tree));
            holidays.push(Holiday { year, month, day, day_plan });
        }

        for ((dp, dp_at), used) in day_plans.iter().zip(&day_plan_at).zip(&used) {
            if !used {
                self.warn(dp_at, format!("day plan \"{}\" is not used by week or any holiday", dp.name));
            }
        }
        let schedule = Schedule { day_plans, weekdays, holidays };
        match (default_plan, complete) {
            (Some(default_plan), true) => Some((default_plan, schedule)),
            _ => None,
        }
    }

    fn day_plan_events(&mut self, raw: Option<&[RawDayPlanEvent]>, at: &KeyPath) -> Option<Vec<DayPlanEvent>> {
        let raw = self.required(raw, at)?;
        if raw.is_empty() {
            self.error(at, "a day plan needs at least one event");
            return None;
        }
        let mut events = Vec::new();
        let mut complete = true;
        for (i, e) in raw.iter().enumerate() {
            let e_at = at.index(i);
            let minute = self.required(e.at.as_deref(), &e_at.key("at")).and_then(|text| match parse_hhmm(text) {
                Ok(m) => Some(m),
                Err(reason) => {
                    self.error(&e_at.key("at"), format!("\"{text}\" {reason}"));
                    None
                }
            });
            let plan = self.required(e.plan, &e_at.key("plan")).filter(|&n| self.plan_ref(n, &e_at.key("plan")));
            match (minute, plan) {
                (Some(minute_of_day), Some(plan)) => {
                    if let Some(prev) = events.last().map(|p: &DayPlanEvent| p.minute_of_day)
                        && minute_of_day <= prev
                    {
                        self.error(
                            &e_at.key("at"),
                            format!(
                                "{} does not come after {}: list events in time order",
                                hhmm(minute_of_day),
                                hhmm(prev)
                            ),
                        );
                        complete = false;
                    }
                    events.push(DayPlanEvent { minute_of_day, plan });
                }
                _ => complete = false,
            }
        }
        if complete && let Some(first) = events.first().filter(|e| e.minute_of_day != 0) {
            let last_plan = events.last().map_or(first.plan, |e| e.plan);
            self.warn(
                &at.index(0).key("at"),
                format!(
                    "the first event is at {}: before it the day runs this day plan's last plan ({last_plan})",
                    hhmm(first.minute_of_day)
                ),
            );
        }
        complete.then_some(events)
    }

    /// Whether a `[[plan]]` declares plan `n`; reports it if not.
    fn plan_ref(&mut self, n: u8, at: &KeyPath) -> bool {
        let declared = self.declared_plans.contains_key(&n);
        if !declared {
            self.error(at, format!("plan {n} is not defined by any [[plan]]"));
        }
        declared
    }
}

/// "HH:MM" → minutes since midnight.
fn parse_hhmm(s: &str) -> Result<u16, &'static str> {
    let bad = "is not a time of day \"HH:MM\" (00:00 to 23:59)";
    let (h, m) = s.split_once(':').ok_or(bad)?;
    let digits = |t: &str, max_len: usize| !t.is_empty() && t.len() <= max_len && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
        return Err(bad);
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad)?, m.parse().map_err(|_| bad)?);
    if h > 23 || m > 59 {
        return Err(bad);
    }
    Ok(h * 60 + m)
}

fn hhmm(minute_of_day: u16) -> String {
    format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60)
}

/// "MM-DD" (every year) or "YYYY-MM-DD" (once).
fn parse_date(s: &str) -> Result<(Option<i32>, u8, u8), &'static str> {
    let bad = "is not a date \"MM-DD\" (every year) or \"YYYY-MM-DD\" (once)";
    let parts: Vec<&str> = s.split('-').collect();
    let num = |t: &str, len: usize| {
        if t.len() == len && t.bytes().all(|b| b.is_ascii_digit()) { t.parse::<i32>().ok() } else { None }
    };
    let (year, month, day) = match parts.as_slice() {
        [m, d] => (None, num(m, 2).ok_or(bad)?, num(d, 2).ok_or(bad)?),
        [y, m, d] => (Some(num(y, 4).ok_or(bad)?), num(m, 2).ok_or(bad)?, num(d, 2).ok_or(bad)?),
        _ => return Err(bad),
    };
    let leap = year.is_none_or(|y| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err("has no such month"),
    };
    if !(1..=days).contains(&day) {
        return Err("has no such day in that month");
    }
    Ok((year, month as u8, day as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_parse_strictly() {
        assert_eq!(parse_hhmm("00:00"), Ok(0));
        assert_eq!(parse_hhmm("7:05"), Ok(425));
        assert_eq!(parse_hhmm("23:59"), Ok(1439));
        for bad in ["24:00", "12:60", "12:5", "noon", "12:00:00", ":30", "-1:00"] {
            assert!(parse_hhmm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_parse_with_and_without_year() {
        assert_eq!(parse_date("12-25"), Ok((None, 12, 25)));
        assert_eq!(parse_date("02-29"), Ok((None, 2, 29)));
        assert_eq!(parse_date("2026-11-26"), Ok((Some(2026), 11, 26)));
        assert!(parse_date("2026-02-29").is_err());
        assert!(parse_date("2028-02-29").is_ok());
        for bad in ["13-01", "04-31", "12/25", "2026-1-5", "christmas"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
