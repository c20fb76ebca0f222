//! The emergency route green wave: an ambulance or fire engine's route
//! through signalised intersections, each preempted a lead time ahead of
//! the vehicle and released behind it.
//!
//! A [`Route`] is the planner, pure like the core: it is told the
//! vehicle's position and speed ([`Route::handle_vehicle`]) and the time
//! ([`Route::poll`], called with `now`), and answers with [`Action`]s: arm
//! stop `k`'s preempt, release it. Who carries them out (the gRPC Control
//! service, `src/api/emergency.rs`) owns the clock and the controllers, so
//! the same route plans alike in real time, in a lockstep simulation and
//! in a test.
//!
//! Positions are metres **along the route** from the first stop's stop
//! line: negative before it (a vehicle 400 m short of it is at −400),
//! stop `k` at the sum of the links before it. For each stop:
//! - **Waiting** until the vehicle's ETA there is at most the route's
//!   `lead` (the entry's clearance and the queue's discharge must fit in
//!   it), then **Armed**: its preempt is called;
//! - **Passed** once a reported position is `past` beyond its stop line
//!   (its preempt released, so the controller leaves through its preempt
//!   exit back to its plan and coordination, `src/core/controller.rs`);
//! - **Released** without the vehicle seen past: armed for longer than
//!   `max_armed` (a vehicle that turned off, stopped or lost its radio),
//!   no report for [`LOST_AFTER`] (every stop left is released then, so
//!   a route whose reports stopped ends), or the route cancelled.
//!
//! The ETA extrapolates the last report at its speed, never beyond the
//! next stop line not yet passed (the vehicle may stop there), and is the
//! time to cover the rest at the reported speed. A stopped vehicle
//! (below [`MOVING_MPS`]) is expected at the links' travel times where
//! the route gives them (scaled to the part of a link left), and has no
//! ETA where it gives none: nothing more is armed until it moves.

use crate::core::{Instant, Span};

/// Below this a vehicle counts as stopped (m/s): its ETA follows the link
/// travel times.
pub const MOVING_MPS: f64 = 0.5;
/// Fastest speed accepted (m/s, 250 km/h): beyond it the report is wrong.
pub const MAX_SPEED_MPS: f64 = 70.0;
/// No report for this long: the vehicle is lost (its AVL or the link to
/// the dispatcher is dead) and the route ends.
pub const LOST_AFTER: Span = Span::from_secs(300);
/// Longest link accepted between two stops (m).
pub const MAX_LINK_M: f64 = 50_000.0;

/// How a route arms and releases, the same for each of its stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WaveSettings {
    /// Arm a stop's preempt when the vehicle's ETA there is this or less.
    pub lead: Span,
    /// Released once a reported position is this far past the stop line (m).
    pub past_m: f64,
    /// Released after this long armed, the vehicle not seen past.
    pub max_armed: Span,
}

impl Default for WaveSettings {
    /// 20 s lead: a full yellow and red clearance (about 6 s), a walk cut
    /// to its legal minimum and its pedestrian clearance, and the queue's
    /// discharge before the vehicle arrives; 10 m past the stop line: the
    /// vehicle is in the box; 120 s armed: a long approach at crawl speed.
    fn default() -> Self {
        WaveSettings { lead: Span::from_secs(20), past_m: 10.0, max_armed: Span::from_secs(120) }
    }
}

/// One intersection on the route, as the planner sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StopLine {
    /// Metres from the previous stop's stop line (for the first stop:
    /// ignored, it is the origin).
    pub link_m: f64,
    /// The vehicle's usual travel time over that link, if known (used
    /// while it is stopped).
    pub link_travel: Option<Span>,
}

/// Where a stop stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopState {
    /// Not yet armed: the vehicle is further than the lead time away.
    Waiting,
    /// Its preempt called, since then.
    Armed { since: Instant },
    /// The vehicle went past; its preempt released (if it was armed).
    Passed,
    /// Released without the vehicle seen past.
    Released(ReleaseReason),
}

/// Why a stop was released before the vehicle was seen past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Armed for longer than the route's `max_armed`.
    TimedOut,
    /// No vehicle report for [`LOST_AFTER`].
    VehicleLost,
    /// The route was cancelled.
    Cancelled,
}

/// What the planner asks for: call or release stop `k`'s preempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Arm(usize),
    Release(usize),
}

/// A route the planner refuses, field by field.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RouteError {
    #[error("a route needs at least one intersection")]
    Empty,
    #[error("stop {stop}: link_m {value} is not a distance in metres (0 < m ≤ {MAX_LINK_M})")]
    Link { stop: usize, value: f64 },
    #[error("speed_mps {0} is not a speed (0 ≤ m/s ≤ {MAX_SPEED_MPS})")]
    Speed(f64),
    #[error("position_m {0} is not a position in metres along the route")]
    Position(f64),
}

/// The vehicle as last reported.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Report {
    at: Instant,
    position_m: f64,
    speed_mps: f64,
}

/// One emergency vehicle's route and where each of its stops stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    settings: WaveSettings,
    /// Metres from the first stop line to each stop line.
    at_m: Vec<f64>,
    /// Travel time of the link ending at each stop (the first's: none).
    link_travel: Vec<Option<Span>>,
    states: Vec<StopState>,
    vehicle: Report,
}

impl Route {
    /// A route over `stops`, the vehicle at `position_m` with `speed_mps`
    /// at `now`; every stop waiting.
    ///
    /// # Errors
    /// Every problem at once: no stops, a link that is not a distance, a
    /// bad speed or position.
    pub fn try_new(
        stops: &[StopLine],
        settings: WaveSettings,
        now: Instant,
        position_m: f64,
        speed_mps: f64,
    ) -> Result<Route, Vec<RouteError>> {
        let mut errors = Vec::new();
        if stops.is_empty() {
            errors.push(RouteError::Empty);
        }
        let mut at_m = Vec::with_capacity(stops.len());
        let mut total = 0.0;
        for (k, stop) in stops.iter().enumerate() {
            if k > 0 {
                if !(stop.link_m.is_finite() && stop.link_m > 0.0 && stop.link_m <= MAX_LINK_M) {
                    errors.push(RouteError::Link { stop: k, value: stop.link_m });
                }
                total += stop.link_m;
            }
            at_m.push(total);
        }
        errors.extend(check_vehicle(position_m, speed_mps));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Route {
            settings,
            at_m,
            link_travel: stops.iter().enumerate().map(|(k, s)| s.link_travel.filter(|_| k > 0)).collect(),
            states: vec![StopState::Waiting; stops.len()],
            vehicle: Report { at: now, position_m, speed_mps },
        })
    }

    /// A new report of the vehicle, taken at `now`. Stops it is `past`
    /// beyond are passed at the next [`Self::poll`].
    ///
    /// # Errors
    /// A speed or position that cannot be; the last report stays.
    pub fn handle_vehicle(&mut self, now: Instant, position_m: f64, speed_mps: f64) -> Result<(), Vec<RouteError>> {
        let errors = check_vehicle(position_m, speed_mps);
        if !errors.is_empty() {
            return Err(errors);
        }
        self.vehicle = Report { at: now, position_m, speed_mps };
        Ok(())
    }

    /// Brings every stop up to `now`, pushing what to do onto `actions`.
    pub fn poll(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if now.since(self.vehicle.at) >= LOST_AFTER {
            return self.end(ReleaseReason::VehicleLost, actions);
        }
        for k in 0..self.states.len() {
            let state = self.states[k];
            let past = self.vehicle.position_m >= self.at_m[k] + self.settings.past_m;
            let next = match state {
                StopState::Waiting if past => StopState::Passed,
                StopState::Waiting if self.eta(now, k).is_some_and(|eta| eta <= self.settings.lead) => {
                    StopState::Armed { since: now }
                }
                StopState::Armed { .. } if past => StopState::Passed,
                StopState::Armed { since } if now.since(since) >= self.settings.max_armed => {
                    StopState::Released(ReleaseReason::TimedOut)
                }
                s => s,
            };
            match (state, next) {
                (StopState::Waiting, StopState::Armed { .. }) => actions.push(Action::Arm(k)),
                (StopState::Armed { .. }, StopState::Passed | StopState::Released(_)) => {
                    actions.push(Action::Release(k))
                }
                _ => {}
            }
            self.states[k] = next;
        }
    }

    /// Releases every armed stop and ends the route: no stop waits any
    /// more.
    pub fn cancel(&mut self, actions: &mut Vec<Action>) {
        self.end(ReleaseReason::Cancelled, actions);
    }

    /// Releases every armed stop and ends every waiting one, for `why`.
    fn end(&mut self, why: ReleaseReason, actions: &mut Vec<Action>) {
        for (k, state) in self.states.iter_mut().enumerate() {
            match *state {
                StopState::Armed { .. } => {
                    actions.push(Action::Release(k));
                    *state = StopState::Released(why);
                }
                StopState::Waiting => *state = StopState::Released(why),
                StopState::Passed | StopState::Released(_) => {}
            }
        }
    }

    /// Stop `k`'s arm could not be carried out (the controller refused it,
    /// its channel was full): it waits again, so the next poll tries anew.
    pub fn arm_failed(&mut self, k: usize) {
        if let Some(state @ StopState::Armed { .. }) = self.states.get_mut(k) {
            *state = StopState::Waiting;
        }
    }

    /// Every stop passed or released: nothing more will happen.
    pub fn is_finished(&self) -> bool {
        self.states.iter().all(|s| matches!(s, StopState::Passed | StopState::Released(_)))
    }

    /// Each stop's state.
    pub fn states(&self) -> &[StopState] {
        &self.states
    }

    /// Metres from the first stop line to stop `k`'s.
    pub fn stop_at_m(&self, k: usize) -> Option<f64> {
        self.at_m.get(k).copied()
    }

    /// The vehicle's last reported position (m) and speed (m/s).
    pub fn vehicle(&self) -> (f64, f64) {
        (self.vehicle.position_m, self.vehicle.speed_mps)
    }

    /// The vehicle's expected time to stop `k`'s stop line from `now`:
    /// zero once it is there, `None` when it is stopped where the route
    /// gives no link travel time (or `k` is not a stop).
    pub fn eta(&self, now: Instant, k: usize) -> Option<Span> {
        let target = *self.at_m.get(k)?;
        let Report { at, position_m, speed_mps } = self.vehicle;
        let moving = speed_mps >= MOVING_MPS;
        // Extrapolated, but never past the next stop line not yet passed.
        let next_line = self
            .at_m
            .iter()
            .zip(&self.states)
            .find(|(_, s)| matches!(s, StopState::Waiting | StopState::Armed { .. }))
            .map_or(target, |(&m, _)| m);
        let travelled = if moving { speed_mps * now.since(at).as_secs_f64() } else { 0.0 };
        let from = (position_m + travelled).min(next_line.max(position_m));
        if from >= target {
            return Some(Span::ZERO);
        }
        if moving {
            return Span::try_from_secs_f64((target - from) / speed_mps);
        }
        // Stopped: the links' travel times, pro rata for the part of each
        // still ahead; the approach to the first stop has none.
        let mut secs = 0.0;
        for j in 0..=k {
            let start = if j == 0 { f64::NEG_INFINITY } else { self.at_m[j - 1] };
            let (lo, hi) = (from.max(start), self.at_m[j]);
            if hi <= lo {
                continue;
            }
            let travel = self.link_travel[j]?;
            secs += travel.as_secs_f64() * (hi - lo) / (self.at_m[j] - start);
        }
        Span::try_from_secs_f64(secs)
    }
}

fn check_vehicle(position_m: f64, speed_mps: f64) -> Vec<RouteError> {
    let mut errors = Vec::new();
    if !(speed_mps.is_finite() && (0.0..=MAX_SPEED_MPS).contains(&speed_mps)) {
        errors.push(RouteError::Speed(speed_mps));
    }
    if !(position_m.is_finite() && position_m.abs() <= MAX_LINK_M * 100.0) {
        errors.push(RouteError::Position(position_m));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three stops 300 m apart, 30 s each at normal traffic speed.
    fn three() -> Vec<StopLine> {
        let link = StopLine { link_m: 300.0, link_travel: Some(Span::from_secs(30)) };
        vec![StopLine { link_m: 0.0, link_travel: None }, link, link]
    }

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    /// A vehicle at 15 m/s from 600 m short of the first stop: each stop
    /// is armed when its ETA falls to the 20 s lead (300 m ahead), and
    /// released when the vehicle is reported 10 m past it, in route order.
    #[test]
    fn arms_a_lead_time_ahead_and_releases_behind() {
        let mut route = Route::try_new(&three(), WaveSettings::default(), at(0), -600.0, 15.0).unwrap();
        let mut log = Vec::new();
        let mut actions = Vec::new();
        for s in 0..=100 {
            // A report every 2 s, where a vehicle at 15 m/s is.
            if s % 2 == 0 {
                route.handle_vehicle(at(s), -600.0 + 15.0 * s as f64, 15.0).unwrap();
            }
            route.poll(at(s), &mut actions);
            log.extend(actions.drain(..).map(|a| (s, a)));
        }
        assert_eq!(
            log,
            [
                (20, Action::Arm(0)),
                (40, Action::Arm(1)),
                (42, Action::Release(0)),
                (60, Action::Arm(2)),
                (62, Action::Release(1)),
                (82, Action::Release(2)),
            ]
        );
        assert!(route.is_finished());
        assert_eq!(route.states(), [StopState::Passed; 3]);
    }

    /// Between reports the ETA runs down at the reported speed, but the
    /// vehicle is not assumed past a stop line it was not reported past.
    #[test]
    fn eta_extrapolates_up_to_the_next_stop_line() {
        let route = Route::try_new(&three(), WaveSettings::default(), at(0), -300.0, 10.0).unwrap();
        assert_eq!(route.eta(at(0), 0), Some(Span::from_secs(30)));
        assert_eq!(route.eta(at(10), 0), Some(Span::from_secs(20)));
        assert_eq!(route.eta(at(10), 1), Some(Span::from_secs(50)));
        // 60 s on, it would be 300 m past stop 0, but no report says so.
        assert_eq!(route.eta(at(60), 0), Some(Span::ZERO));
        assert_eq!(route.eta(at(60), 1), Some(Span::from_secs(30)));
    }

    /// A stopped vehicle is expected at the links' travel times (pro rata
    /// on the link it is on); short of the first stop, where the route
    /// gives no travel time, it has no ETA and nothing is armed.
    #[test]
    fn a_stopped_vehicle_follows_the_link_travel_times() {
        let mut route = Route::try_new(&three(), WaveSettings::default(), at(0), -100.0, 0.0).unwrap();
        assert_eq!(route.eta(at(5), 0), None);
        let mut actions = Vec::new();
        route.poll(at(5), &mut actions);
        assert!(actions.is_empty());
        route.handle_vehicle(at(6), 150.0, 0.0).unwrap();
        route.poll(at(6), &mut actions);
        assert_eq!(actions, [Action::Arm(1)]);
        assert_eq!(route.states()[0], StopState::Passed);
        assert_eq!(route.eta(at(6), 1), Some(Span::from_secs(15)));
        assert_eq!(route.eta(at(6), 2), Some(Span::from_secs(45)));
    }

    /// An armed stop the vehicle is never seen past is released after
    /// `max_armed`; a cancel releases the armed ones and ends the rest.
    #[test]
    fn times_out_and_cancels() {
        let settings = WaveSettings { max_armed: Span::from_secs(60), ..WaveSettings::default() };
        let mut route = Route::try_new(&three(), settings, at(0), -100.0, 10.0).unwrap();
        let mut actions = Vec::new();
        route.poll(at(0), &mut actions);
        assert_eq!(actions, [Action::Arm(0)]);
        actions.clear();
        // The vehicle stops at the stop line and says nothing more.
        route.handle_vehicle(at(10), 0.0, 0.0).unwrap();
        route.poll(at(59), &mut actions);
        assert!(actions.is_empty());
        route.poll(at(60), &mut actions);
        assert_eq!(actions, [Action::Release(0)]);
        assert_eq!(route.states()[0], StopState::Released(ReleaseReason::TimedOut));
        actions.clear();
        route.handle_vehicle(at(61), 295.0, 10.0).unwrap();
        route.poll(at(61), &mut actions);
        assert_eq!(actions, [Action::Arm(1)]);
        actions.clear();
        route.cancel(&mut actions);
        assert_eq!(actions, [Action::Release(1)]);
        assert!(route.is_finished());
    }

    /// A vehicle not heard of for five minutes is lost: its armed stop is
    /// released and the stops still waiting end, so the route finishes
    /// even where nothing would ever arm them (stopped, no travel times).
    #[test]
    fn a_vehicle_not_heard_of_is_lost_and_the_route_ends() {
        let settings = WaveSettings { max_armed: Span::from_secs(600), ..WaveSettings::default() };
        let mut route = Route::try_new(&three(), settings, at(0), -50.0, 10.0).unwrap();
        let mut actions = Vec::new();
        route.poll(at(0), &mut actions);
        route.handle_vehicle(at(10), 0.0, 0.0).unwrap();
        route.poll(at(309), &mut actions);
        assert_eq!(actions, [Action::Arm(0)]);
        assert!(!route.is_finished());
        route.poll(at(310), &mut actions);
        assert_eq!(actions, [Action::Arm(0), Action::Release(0)]);
        assert_eq!(route.states(), [StopState::Released(ReleaseReason::VehicleLost); 3]);
        assert!(route.is_finished());
    }

    /// An arm the controller could not take is tried again at the next poll.
    #[test]
    fn a_failed_arm_is_tried_again() {
        let mut route = Route::try_new(&three(), WaveSettings::default(), at(0), -50.0, 10.0).unwrap();
        let mut actions = Vec::new();
        route.poll(at(0), &mut actions);
        assert_eq!(actions, [Action::Arm(0)]);
        route.arm_failed(0);
        assert_eq!(route.states()[0], StopState::Waiting);
        route.poll(at(1), &mut actions);
        assert_eq!(actions, [Action::Arm(0), Action::Arm(0)]);
    }

    /// Every problem of a route at once.
    #[test]
    fn rejects_every_bad_field_at_once() {
        let bad = [StopLine { link_m: 0.0, link_travel: None }, StopLine { link_m: -5.0, link_travel: None }];
        let errors = Route::try_new(&bad, WaveSettings::default(), at(0), f64::NAN, 120.0).unwrap_err();
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "stop 1: link_m -5 is not a distance in metres (0 < m ≤ 50000)",
                "speed_mps 120 is not a speed (0 ≤ m/s ≤ 70)",
                "position_m NaN is not a position in metres along the route",
            ]
        );
        assert_eq!(Route::try_new(&[], WaveSettings::default(), at(0), 0.0, 1.0).unwrap_err(), [RouteError::Empty]);
    }
}
