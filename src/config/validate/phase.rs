//! `[[phase]]`: timing, ITE and MUTCD clearance minimums, pedestrian intervals.

use crate::core::ids::MAX_PHASES;
use crate::core::spec::{PhaseTiming, Recall, VolumeDensity};
use crate::core::{PhaseId, Span};

use super::super::clearance::{self, ApproachSpeed};
use super::super::key::KeyPath;
use super::super::raw::{RawPhase, RawRecall};
use super::{
    ITE_GRADE_LIMIT_PERCENT, MUTCD_RED_CLEAR_MAX, MUTCD_WALK, MUTCD_YELLOW_MAX, MUTCD_YELLOW_MIN, PhaseDraft,
    Validator, flash_indication, root, secs,
};

/// NTCIP 1202 `phaseMinimumGreen` is 1..255 s: below 1 s is an error.
const NTCIP_MIN_GREEN: Span = Span::from_millis(1000);
/// Below this a minimum green is warned about (ITE: 4-15 s).
const SHORT_MIN_GREEN: Span = Span::from_millis(4000);
/// The shortest pedestrian clearance without a crossing length to check it
/// against: one 3.2 m lane at 1.07 m/s (MUTCD 4E.06) is 3.0 s.
const SHORTEST_PED_CLEAR: Span = Span::from_millis(3000);
/// MUTCD 4E.06: a leading pedestrian interval lasts at least 3 s.
const MUTCD_LEADING_WALK: Span = Span::from_millis(3000);

impl Validator<'_> {
    pub(super) fn phases(&mut self, raw: &[RawPhase]) {
        let table = root().key("phase");
        if raw.is_empty() && !self.invalid.contains(&table) {
            self.error(&table, "no [[phase]] defined");
        }
        for (i, p) in raw.iter().enumerate() {
            let at = table.index(i);
            let Some(number) = self.required(p.number, &at.key("number")) else { continue };
            let Some(id) = PhaseId::new(number) else {
                self.error(&at.key("number"), format!("{number} is not a phase number (1..={MAX_PHASES})"));
                continue;
            };
            if let Some(first) = self.phases.get(&id) {
                let first = first.at.render(self.tree);
                self.error(&at.key("number"), format!("phase {id} is already defined by {first}"));
                continue;
            }
            let speed = self.approach_speed(p, &at);
            let timing = self.phase_timing(p, &at, speed);
            let name = p.name.clone().unwrap_or_else(|| format!("phase {id}"));
            let flash = flash_indication(p.flash);
            let conditional_service = p.conditional_service;
            let draft = PhaseDraft { at, name, flash, timing, speed, conditional_service, ring: None, group: None };
            self.phases.insert(id, draft);
        }
    }

    fn phase_timing(&mut self, p: &RawPhase, at: &KeyPath, speed: Option<ApproachSpeed>) -> Option<PhaseTiming> {
        let min_green = self.required_seconds(p.min_green_s, &at.key("min_green_s"));
        match min_green {
            Some(m) if m < NTCIP_MIN_GREEN => self.error(
                &at.key("min_green_s"),
                format!(
                    "{} is below 1 s, the shortest minimum green NTCIP 1202 allows (phaseMinimumGreen 1..255 s)",
                    secs(m)
                ),
            ),
            Some(m) if m < SHORT_MIN_GREEN => self.warn(
                &at.key("min_green_s"),
                format!("{} is below 4 s: drivers starting on green expect at least that (ITE: 4-15 s)", secs(m)),
            ),
            _ => {}
        }
        let passage = self.required_seconds(p.passage_s, &at.key("passage_s"));
        let max1 = self.required_seconds(p.max1_s, &at.key("max1_s"));
        // NTCIP phaseMaximum2 is optional in practice; without it a plan
        // selecting max2 runs max1.
        let max2 = match p.max2_s {
            Some(s) => self.seconds(s, &at.key("max2_s")),
            None => max1,
        };
        if let Some(min) = min_green {
            for (key, max, given) in [("max1_s", max1, true), ("max2_s", max2, p.max2_s.is_some())] {
                if let Some(max) = max.filter(|&m| given && m < min) {
                    self.error(&at.key(key), format!("{} is below min_green_s {}", secs(max), secs(min)));
                }
            }
        }
        if let (Some(passage), Some(max1)) = (passage, max1)
            && passage > max1
        {
            self.error(&at.key("passage_s"), format!("{} is longer than max1_s {}", secs(passage), secs(max1)));
        }

        let density = self.volume_density(p, at, min_green, passage, max1, max2);

        let grade = p.grade_percent;
        if !grade.is_finite() {
            self.error(&at.key("grade_percent"), "must be a number");
        } else if grade.abs() > ITE_GRADE_LIMIT_PERCENT {
            self.warn(
                &at.key("grade_percent"),
                format!("{grade}% is beyond the ±10% the ITE yellow formula is used for: check yellow_s by hand"),
            );
        }
        let width = self.required(p.crossing_width_m, &at.key("crossing_width_m"));
        let width = width.filter(|w| {
            let ok = w.is_finite() && *w > 0.0;
            if !ok {
                self.error(&at.key("crossing_width_m"), format!("{w} m: must be greater than 0"));
            }
            ok
        });

        let yellow = self.required_seconds(p.yellow_s, &at.key("yellow_s"));
        if let Some(yellow) = yellow {
            self.check_yellow(yellow, speed, grade, &at.key("yellow_s"));
        }
        let red_clear = self.required_seconds(p.red_clear_s, &at.key("red_clear_s"));
        if let Some(red) = red_clear {
            if let (Some(speed), Some(width)) = (speed, width) {
                let min = clearance::red_clearance_min_s(width, speed);
                let min_ms = clearance::round_to_tenth_ms(min);
                if red.as_millis() < min_ms {
                    self.error(
                        &at.key("red_clear_s"),
                        format!(
                            "{} is below the ITE minimum {} to clear {width} m plus a {} m vehicle at {speed} (R = (W + L)/V)",
                            secs(red),
                            secs(Span::from_millis(min_ms)),
                            clearance::VEHICLE_LENGTH_M
                        ),
                    );
                }
            }
            if red > MUTCD_RED_CLEAR_MAX {
                self.warn(
                    &at.key("red_clear_s"),
                    format!("{} is above the 6 s MUTCD 4D.26 says red clearance should not exceed", secs(red)),
                );
            }
        }

        let walk = self.seconds(p.walk_s, &at.key("walk_s"));
        let ped_clear = self.seconds(p.ped_clear_s, &at.key("ped_clear_s"));
        // `None`: walk and pedestrian clearance contradict each other
        // (reported); the phase then has no timing to build on.
        let has_ped = self.check_pedestrians(p, at, walk, ped_clear, max1)?;
        let leading_walk = self.leading_walk(p, at, has_ped, walk);
        let extended_ped_clear = self.extended_ped_clear(p, at, has_ped, walk, ped_clear, max2);

        let recall = match p.recall {
            RawRecall::None => Recall::None,
            RawRecall::Min => Recall::Min,
            RawRecall::Max => Recall::Max,
            RawRecall::Ped => Recall::Ped,
            RawRecall::Soft => Recall::Soft,
        };
        if recall == Recall::Ped && !has_ped {
            self.error(&at.key("recall"), "\"ped\" needs a pedestrian movement (walk_s and ped_clear_s)");
        }
        for (key, on) in [("rest_in_walk", p.rest_in_walk), ("ped_recycle", p.ped_recycle)] {
            if on && !has_ped {
                self.error(&at.key(key), "needs a pedestrian movement (walk_s and ped_clear_s)");
            }
        }
        let conditional_service = self.conditional_service(p, at, min_green, yellow, red_clear);
        Some(PhaseTiming {
            min_green: min_green?,
            passage: passage?,
            density: density?,
            max1: max1?,
            max2: max2?,
            yellow: yellow?,
            red_clear: red_clear?,
            walk: walk?,
            ped_clear: ped_clear?,
            leading_walk: leading_walk?,
            extended_ped_clear: extended_ped_clear?,
            recall,
            rest_in_walk: p.rest_in_walk,
            ped_recycle: p.ped_recycle,
            dual_entry: p.dual_entry,
            conditional_service: conditional_service?,
            flash: flash_indication(p.flash),
        })
    }

    /// `conditional_service` and its minimum: by default, and at the
    /// least, the phase's min green and clearance (a re-service that
    /// cannot fit those never starts, so a smaller minimum means nothing).
    /// Where the ring allows it is checked with the sequence
    /// ([`Validator::conditional_service_places`]).
    fn conditional_service(
        &mut self,
        p: &RawPhase,
        at: &KeyPath,
        min_green: Option<Span>,
        yellow: Option<Span>,
        red_clear: Option<Span>,
    ) -> Option<Option<Span>> {
        let key = at.key("conditional_service_min_s");
        let given = match p.conditional_service_min_s {
            Some(s) => Some(self.seconds(s, &key)?),
            None => None,
        };
        if !p.conditional_service {
            if given.is_some() {
                self.warn(&key, "has no effect without conditional_service = true");
            }
            return Some(None);
        }
        let least = min_green? + yellow? + red_clear?;
        match given {
            Some(min) if min < least => {
                self.error(
                    &key,
                    format!(
                        "{} is below min_green_s + yellow_s + red_clear_s {}: the re-served phase needs at least that",
                        secs(min),
                        secs(least)
                    ),
                );
                None
            }
            Some(min) => Some(Some(min)),
            None => Some(Some(least)),
        }
    }

    /// Volume-density keys: all optional; each pair checked against the
    /// timing it bends (an added initial within min green..max green, a
    /// minimum gap within the passage, reached over a time to reduce).
    fn volume_density(
        &mut self,
        p: &RawPhase,
        at: &KeyPath,
        min_green: Option<Span>,
        passage: Option<Span>,
        max1: Option<Span>,
        max2: Option<Span>,
    ) -> Option<VolumeDensity> {
        let mut opt = |v: Option<f64>, key: &str| -> Option<Option<Span>> {
            match v {
                None => Some(None),
                Some(s) => self.seconds(s, &at.key(key)).map(Some),
            }
        };
        let added_initial = opt(p.added_initial_s, "added_initial_s")?;
        let max_initial = opt(p.max_initial_s, "max_initial_s")?;
        let before = opt(p.time_before_reduction_s, "time_before_reduction_s")?;
        let to_reduce = opt(p.time_to_reduce_s, "time_to_reduce_s")?;
        let min_gap = opt(p.min_gap_s, "min_gap_s")?;
        let mut d = VolumeDensity::default();

        match (added_initial.filter(|a| !a.is_zero()), max_initial) {
            (Some(_), None) => self.error(
                &at.key("max_initial_s"),
                "missing: added_initial_s needs max_initial_s, the most the initial green can reach",
            ),
            (None, Some(_)) => self.warn(&at.key("max_initial_s"), "has no effect without added_initial_s"),
            (Some(added), Some(max_initial)) => {
                if let Some(min) = min_green.filter(|&m| max_initial < m) {
                    self.error(
                        &at.key("max_initial_s"),
                        format!("{} is below min_green_s {}", secs(max_initial), secs(min)),
                    );
                }
                for (key, max) in [("max1_s", max1), ("max2_s", max2)] {
                    if let Some(max) = max.filter(|&m| max_initial > m) {
                        self.error(
                            &at.key("max_initial_s"),
                            format!(
                                "{} is above {key} {}: the initial green would outlast the maximum",
                                secs(max_initial),
                                secs(max)
                            ),
                        );
                    }
                }
                d.added_initial = added;
                d.max_initial = max_initial;
            }
            (None, None) => {}
        }

        match (min_gap, passage) {
            (Some(gap), Some(passage)) if gap > passage => {
                self.error(&at.key("min_gap_s"), format!("{} is longer than passage_s {}", secs(gap), secs(passage)));
            }
            (Some(gap), Some(passage)) if gap < passage => {
                match to_reduce {
                    Some(t) if !t.is_zero() => d.time_to_reduce = t,
                    _ => self.error(
                        &at.key("time_to_reduce_s"),
                        "missing or 0: min_gap_s below passage_s needs the time over which the gap shrinks",
                    ),
                }
                d.time_before_reduction = before.unwrap_or(Span::ZERO);
                d.min_gap = gap;
            }
            _ => {
                for (key, given) in [("time_before_reduction_s", before), ("time_to_reduce_s", to_reduce)] {
                    if given.is_some() {
                        self.warn(&at.key(key), "has no effect without a min_gap_s below passage_s");
                    }
                }
            }
        }
        Some(d)
    }

    fn approach_speed(&mut self, p: &RawPhase, at: &KeyPath) -> Option<ApproachSpeed> {
        let (kmh, mph) = (at.key("approach_speed_kmh"), at.key("approach_speed_mph"));
        let speed = match (p.approach_speed_kmh, p.approach_speed_mph) {
            (Some(v), None) => ApproachSpeed::Kmh(v),
            (None, Some(v)) => ApproachSpeed::Mph(v),
            (Some(_), Some(_)) => {
                self.error(&mph, "give approach_speed_kmh or approach_speed_mph, not both");
                return None;
            }
            (None, None) => {
                if !self.invalid.contains(&kmh) && !self.invalid.contains(&mph) {
                    self.error(
                        &kmh,
                        "missing (required: approach_speed_kmh or approach_speed_mph, for the ITE clearances)",
                    );
                }
                return None;
            }
        };
        let v = speed.m_per_s();
        if !(v.is_finite() && v > 0.0) {
            let key = if p.approach_speed_kmh.is_some() { kmh } else { mph };
            self.error(&key, format!("{speed}: must be greater than 0"));
            return None;
        }
        Some(speed)
    }

    fn check_yellow(&mut self, yellow: Span, speed: Option<ApproachSpeed>, grade: f64, at: &KeyPath) {
        if yellow > MUTCD_YELLOW_MAX {
            self.warn(at, format!("{} is above the 6 s MUTCD 4D.26 recommends as a maximum", secs(yellow)));
        }
        let Some(speed) = speed.filter(|_| grade.is_finite()) else {
            if yellow < MUTCD_YELLOW_MIN {
                self.error(at, format!("{} is below the MUTCD 4D.26 minimum 3.0 s", secs(yellow)));
            }
            return;
        };
        let on_grade = if grade == 0.0 { "a level approach".to_owned() } else { format!("a {grade:+.1}% grade") };
        let Some(ite) = clearance::yellow_change_min_s(speed, grade) else {
            self.error(
                at,
                format!("the ITE yellow formula has no answer for {speed} on {on_grade}: check grade_percent"),
            );
            return;
        };
        let ite = Span::from_millis(clearance::round_to_tenth_ms(ite));
        if yellow >= ite.max(MUTCD_YELLOW_MIN) {
            return;
        }
        if ite >= MUTCD_YELLOW_MIN {
            self.error(
                at,
                format!(
                    "{} is below the ITE minimum {} for {speed} on {on_grade} (Y = t + V/(2a + 2Gg), t = 1.0 s, a = 10 ft/s², g = 32.2 ft/s²)",
                    secs(yellow),
                    secs(ite)
                ),
            );
        } else {
            self.error(
                at,
                format!(
                    "{} is below the MUTCD 4D.26 minimum 3.0 s (the ITE minimum for {speed} is {})",
                    secs(yellow),
                    secs(ite)
                ),
            );
        }
    }

    /// Walk and pedestrian clearance; returns whether the phase has a
    /// pedestrian movement, `None` if that is not clear (reported).
    fn check_pedestrians(
        &mut self,
        p: &RawPhase,
        at: &KeyPath,
        walk: Option<Span>,
        ped_clear: Option<Span>,
        max1: Option<Span>,
    ) -> Option<bool> {
        let (walk, ped_clear) = (walk?, ped_clear?);
        match (walk.is_zero(), ped_clear.is_zero()) {
            (true, true) => {
                let crossing_keys = [
                    ("ped_crossing_m", p.ped_crossing_m.is_some()),
                    ("ped_crossing_ft", p.ped_crossing_ft.is_some()),
                    ("walking_speed_fps", p.walking_speed_fps.is_some()),
                ];
                for (key, _) in crossing_keys.into_iter().filter(|(_, given)| *given) {
                    self.warn(&at.key(key), "ignored: the phase has no pedestrian movement (walk_s is 0)");
                }
                return Some(false);
            }
            (false, true) => {
                self.error(
                    &at.key("ped_clear_s"),
                    "missing: walk_s is set, so the crosswalk needs a pedestrian clearance too",
                );
                return None;
            }
            (true, false) => {
                self.error(&at.key("walk_s"), "missing: ped_clear_s is set but walk_s is 0; give both or neither");
                return None;
            }
            (false, false) => {}
        }
        if walk < MUTCD_WALK {
            self.warn(
                &at.key("walk_s"),
                format!(
                    "{} is below the 7 s MUTCD 4E.06 recommends (4 s only where pedestrian volumes are low)",
                    secs(walk)
                ),
            );
        }
        let speed = self.walking_speed(p, at);
        match self.ped_crossing(p, at) {
            Some(None) => {
                if p.walking_speed_fps.is_some() {
                    self.warn(
                        &at.key("walking_speed_fps"),
                        "ignored: no ped_crossing_m or ped_crossing_ft to check ped_clear_s against",
                    );
                }
                if ped_clear < SHORTEST_PED_CLEAR {
                    self.error(
                        &at.key("ped_clear_s"),
                        format!(
                            "{} is below {}, what one 3.2 m lane takes at {} ft/s (MUTCD 4E.06); give ped_crossing_m to check it against the crossing",
                            secs(ped_clear),
                            secs(SHORTEST_PED_CLEAR),
                            clearance::PED_WALKING_SPEED_FPS
                        ),
                    );
                } else {
                    self.warn(
                        &at.key("ped_crossing_m"),
                        "not given: ped_clear_s is not checked against the crossing at the MUTCD 4E.06 walking speed",
                    );
                }
            }
            Some(Some(crossing)) => {
                if let Some(speed) = speed {
                    self.check_crossing_times(at, crossing, speed, walk, ped_clear);
                }
            }
            None => {}
        }
        if let Some(max1) = max1
            && walk + ped_clear > max1
        {
            self.warn(
                &at.key("max1_s"),
                format!(
                    "{} is shorter than walk {} + ped clearance {}: a pedestrian call holds green past max1",
                    secs(max1),
                    secs(walk),
                    secs(ped_clear)
                ),
            );
        }
        Some(true)
    }

    /// `leading_walk_s`: the walk's head start on the vehicle green. Needs
    /// pedestrians, and ends inside the walk so that walk runs on into the
    /// green; MUTCD 4E.06 asks for at least 3 s.
    fn leading_walk(&mut self, p: &RawPhase, at: &KeyPath, has_ped: bool, walk: Option<Span>) -> Option<Span> {
        let Some(s) = p.leading_walk_s else { return Some(Span::ZERO) };
        let key = at.key("leading_walk_s");
        let lead = self.seconds(s, &key)?;
        if lead.is_zero() {
            return Some(lead);
        }
        if !has_ped {
            self.error(&key, "needs a pedestrian movement (walk_s and ped_clear_s)");
            return None;
        }
        let walk = walk?;
        if lead >= walk {
            self.error(
                &key,
                format!(
                    "{} is not shorter than walk_s {}: the walk starts with the leading interval and must run on into the vehicle green",
                    secs(lead),
                    secs(walk)
                ),
            );
            return None;
        }
        if lead < MUTCD_LEADING_WALK {
            self.warn(
                &key,
                format!("{} is below the 3 s MUTCD 4E.06 asks of a leading pedestrian interval", secs(lead)),
            );
        }
        Some(lead)
    }

    /// `extended_ped_clear_s`: the clearance an extension request grants,
    /// the most it may get. Longer than `ped_clear_s`, and with the walk
    /// within `max2_s` (the longest green the phase may run).
    fn extended_ped_clear(
        &mut self,
        p: &RawPhase,
        at: &KeyPath,
        has_ped: bool,
        walk: Option<Span>,
        ped_clear: Option<Span>,
        max2: Option<Span>,
    ) -> Option<Span> {
        let Some(s) = p.extended_ped_clear_s else { return Some(Span::ZERO) };
        let key = at.key("extended_ped_clear_s");
        let extended = self.seconds(s, &key)?;
        if extended.is_zero() {
            return Some(extended);
        }
        if !has_ped {
            self.error(&key, "needs a pedestrian movement (walk_s and ped_clear_s)");
            return None;
        }
        let (walk, ped_clear) = (walk?, ped_clear?);
        if extended <= ped_clear {
            self.error(
                &key,
                format!(
                    "{} is not longer than ped_clear_s {}: an extension must lengthen the clearance",
                    secs(extended),
                    secs(ped_clear)
                ),
            );
            return None;
        }
        if let Some(max2) = max2
            && walk + extended > max2
        {
            self.error(
                &key,
                format!(
                    "walk {} + extended clearance {} exceed max2_s {}, the longest green the phase may run",
                    secs(walk),
                    secs(extended),
                    secs(max2)
                ),
            );
            return None;
        }
        Some(extended)
    }

    /// The crosswalk's length from `ped_crossing_m` or `ped_crossing_ft`:
    /// `Some(None)` when neither is given, `None` when it is unusable
    /// (reported).
    fn ped_crossing(&mut self, p: &RawPhase, at: &KeyPath) -> Option<Option<Crossing>> {
        let crossing = match (p.ped_crossing_m, p.ped_crossing_ft) {
            (None, None) => return Some(None),
            (Some(_), Some(_)) => {
                self.error(
                    &at.key("ped_crossing_ft"),
                    "give the crossing in ped_crossing_m or ped_crossing_ft, not both",
                );
                return None;
            }
            (Some(m), None) => Crossing { length: m, unit: "m", key: "ped_crossing_m" },
            (None, Some(ft)) => Crossing { length: ft, unit: "ft", key: "ped_crossing_ft" },
        };
        if !(crossing.length.is_finite() && crossing.length > 0.0) {
            self.error(&at.key(crossing.key), format!("{crossing}: must be greater than 0"));
            return None;
        }
        Some(Some(crossing))
    }

    /// The crossing's design walking speed in ft/s: MUTCD 4E.06's 3.5 ft/s
    /// unless the engineer designs for slower walkers (3.0 where elderly
    /// people cross); `None` if unusable (reported).
    fn walking_speed(&mut self, p: &RawPhase, at: &KeyPath) -> Option<f64> {
        let Some(fps) = p.walking_speed_fps else { return Some(clearance::PED_WALKING_SPEED_FPS) };
        let key = at.key("walking_speed_fps");
        if !(fps.is_finite() && fps > 0.0) {
            self.error(&key, format!("{fps} ft/s: must be greater than 0"));
            return None;
        }
        if fps > clearance::PED_WALKING_SPEED_FPS {
            self.error(
                &key,
                format!(
                    "{fps} ft/s is faster than the {} ft/s MUTCD 4E.06 allows for pedestrian clearance",
                    clearance::PED_WALKING_SPEED_FPS
                ),
            );
            return None;
        }
        Some(fps)
    }

    /// Pedestrian clearance covers the crossing at the design speed (an
    /// error below); walk plus clearance covers it from the push button at
    /// 3 ft/s or the design speed if slower (a warning below).
    fn check_crossing_times(&mut self, at: &KeyPath, crossing: Crossing, fps: f64, walk: Span, ped_clear: Span) {
        let m = crossing.metres();
        let min = Span::from_millis(clearance::round_to_tenth_ms(clearance::ped_clearance_min_s(m, fps)));
        if ped_clear < min {
            self.error(
                &at.key("ped_clear_s"),
                format!(
                    "{} is below {} needed to cross {crossing} at {fps} ft/s (design walking speed, walking_speed_fps; MUTCD 4E.06: 3.5 ft/s at most)",
                    secs(ped_clear),
                    secs(min),
                ),
            );
        }
        let service = Span::from_millis(clearance::round_to_tenth_ms(clearance::ped_service_min_s(m, fps)));
        if walk + ped_clear < service {
            self.warn(
                &at.key("walk_s"),
                format!(
                    "walk {} + ped clearance {} is below the {} MUTCD 4E.06 recommends to walk from the push button to the far curb at {} ft/s",
                    secs(walk),
                    secs(ped_clear),
                    secs(service),
                    fps.min(clearance::PED_SLOW_WALKING_SPEED_FPS)
                ),
            );
        }
    }
}

/// A crosswalk's length as the engineer wrote it, so messages echo the
/// unit and key.
#[derive(Clone, Copy, Debug)]
struct Crossing {
    length: f64,
    unit: &'static str,
    key: &'static str,
}

impl Crossing {
    fn metres(self) -> f64 {
        if self.unit == "ft" { self.length * 0.3048 } else { self.length }
    }
}

impl std::fmt::Display for Crossing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.length, self.unit)
    }
}
