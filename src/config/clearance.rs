//! Minimum clearance intervals: ITE kinematic yellow change, ITE red
//! clearance, MUTCD pedestrian clearance. Plain functions of the geometry an
//! engineer writes in the controller file, so `validate` can say exactly
//! which inputs gave which minimum.

use std::fmt;

/// ITE perception-reaction time `t`, seconds.
pub const PERCEPTION_REACTION_S: f64 = 1.0;
/// ITE comfortable deceleration `a`, ft/s².
pub const DECELERATION_FT_S2: f64 = 10.0;
/// Gravity `g`, ft/s².
pub const GRAVITY_FT_S2: f64 = 32.2;
/// ITE design vehicle length `L` for red clearance: 20 ft.
pub const VEHICLE_LENGTH_M: f64 = 6.1;
/// MUTCD 4E.06 walking speed for pedestrian clearance, and the fastest
/// design speed a crossing may use: 3.5 ft/s.
pub const PED_WALKING_SPEED_FPS: f64 = 3.5;
/// MUTCD 4E.06 slower speed for walk plus clearance, from the push button,
/// and the usual design speed of an elderly-friendly crossing: 3 ft/s.
pub const PED_SLOW_WALKING_SPEED_FPS: f64 = 3.0;
/// MUTCD 4E.06: the push button is taken to be 6 ft before the curb.
pub const PED_BUTTON_SETBACK_M: f64 = 1.83;

const FT_PER_M: f64 = 1.0 / 0.3048;

/// The approach speed as the engineer wrote it, so messages echo their units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ApproachSpeed {
    Kmh(f64),
    Mph(f64),
}

impl ApproachSpeed {
    pub fn m_per_s(self) -> f64 {
        match self {
            ApproachSpeed::Kmh(v) => v / 3.6,
            ApproachSpeed::Mph(v) => v * 0.44704,
        }
    }

    pub fn ft_per_s(self) -> f64 {
        self.m_per_s() * FT_PER_M
    }
}

impl fmt::Display for ApproachSpeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApproachSpeed::Kmh(v) => write!(f, "{v} km/h"),
            ApproachSpeed::Mph(v) => write!(f, "{v} mph"),
        }
    }
}

/// ITE kinematic yellow change interval, Y = t + V / (2a + 2Gg), seconds.
/// `None` when the downgrade is so steep that the formula breaks down
/// (2a + 2Gg ≤ 0: the car cannot stop at `a` at all).
pub fn yellow_change_min_s(speed: ApproachSpeed, grade_percent: f64) -> Option<f64> {
    let braking = 2.0 * DECELERATION_FT_S2 + 2.0 * (grade_percent / 100.0) * GRAVITY_FT_S2;
    (braking > 0.0).then(|| PERCEPTION_REACTION_S + speed.ft_per_s() / braking)
}

/// ITE red clearance interval, R = (W + L) / V, seconds: the time for a car
/// that entered at the end of yellow to clear the far conflict point.
pub fn red_clearance_min_s(crossing_width_m: f64, speed: ApproachSpeed) -> f64 {
    (crossing_width_m + VEHICLE_LENGTH_M) / speed.m_per_s()
}

/// Pedestrian clearance (flashing don't walk): the crosswalk at the
/// crossing's design walking speed (MUTCD 4E.06: 3.5 ft/s at most).
pub fn ped_clearance_min_s(crossing_m: f64, walking_speed_fps: f64) -> f64 {
    crossing_m * FT_PER_M / walking_speed_fps
}

/// MUTCD walk plus pedestrian clearance: from the push button (6 ft before
/// the curb) to the far curb at 3 ft/s, or at the design speed where that
/// is slower.
pub fn ped_service_min_s(crossing_m: f64, walking_speed_fps: f64) -> f64 {
    (crossing_m + PED_BUTTON_SETBACK_M) * FT_PER_M / walking_speed_fps.min(PED_SLOW_WALKING_SPEED_FPS)
}

/// A computed minimum rounded to the 0.1 s that controllers time in, in
/// milliseconds, so it compares exactly with a configured interval.
pub fn round_to_tenth_ms(seconds: f64) -> u64 {
    ((seconds * 10.0).round().max(0.0) as u64) * 100
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenth(s: f64) -> f64 {
        round_to_tenth_ms(s) as f64 / 1000.0
    }

    #[test]
    fn yellow_matches_the_ite_worked_examples() {
        // The formula's usual worked examples (t = 1 s, a = 10 ft/s², level):
        // 45 mph → 4.3 s; 30 mph → 3.2 s.
        let y45 = yellow_change_min_s(ApproachSpeed::Mph(45.0), 0.0).unwrap();
        assert!((y45 - 4.3).abs() < 0.01, "{y45}");
        assert_eq!(tenth(y45), 4.3);
        assert_eq!(tenth(yellow_change_min_s(ApproachSpeed::Mph(30.0), 0.0).unwrap()), 3.2);
        // 50 km/h = 45.6 ft/s → 1 + 45.6/20 = 3.28 s.
        assert_eq!(tenth(yellow_change_min_s(ApproachSpeed::Kmh(50.0), 0.0).unwrap()), 3.3);
    }

    #[test]
    fn downgrades_lengthen_yellow_and_absurd_grades_are_refused() {
        let level = yellow_change_min_s(ApproachSpeed::Kmh(60.0), 0.0).unwrap();
        let down = yellow_change_min_s(ApproachSpeed::Kmh(60.0), -4.0).unwrap();
        let up = yellow_change_min_s(ApproachSpeed::Kmh(60.0), 4.0).unwrap();
        assert!(down > level && level > up);
        assert_eq!(yellow_change_min_s(ApproachSpeed::Kmh(60.0), -40.0), None);
    }

    #[test]
    fn red_clearance_matches_the_ite_worked_example() {
        // W = 80 ft, L = 20 ft, 45 mph → (100 ft)/(66 ft/s) ≈ 1.5 s.
        let r = red_clearance_min_s(80.0 * 0.3048, ApproachSpeed::Mph(45.0));
        assert!((r - 1.515).abs() < 0.01, "{r}");
        assert_eq!(tenth(r), 1.5);
    }

    #[test]
    fn ped_clearance_uses_mutcd_walking_speeds() {
        // 18 m = 59.1 ft at 3.5 ft/s.
        assert_eq!(tenth(ped_clearance_min_s(18.0, PED_WALKING_SPEED_FPS)), 16.9);
        // 15 m + 1.83 m = 55.2 ft at 3 ft/s ≈ 18.4 s of walk plus clearance.
        assert_eq!(tenth(ped_service_min_s(15.0, PED_WALKING_SPEED_FPS)), 18.4);
    }

    #[test]
    fn an_elderly_design_speed_lengthens_both_minimums() {
        // 18 m at 3 ft/s; from the button at 2.8 ft/s, slower than MUTCD's 3.
        assert_eq!(tenth(ped_clearance_min_s(18.0, PED_SLOW_WALKING_SPEED_FPS)), 19.7);
        assert_eq!(tenth(ped_service_min_s(15.0, 2.8)), 19.7);
    }
}
