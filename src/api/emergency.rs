//! The emergency route green wave over gRPC (StartEmergencyRoute,
//! UpdateEmergencyVehicle, CancelEmergencyRoute, GetEmergencyRoute): the
//! planner ([`crate::emergency::Route`]) carried out on the controllers.
//!
//! Each route has its own task that brings the planner up to the control
//! time every [`POLL_EVERY`] and sends each arm and release to its
//! intersection as a preempt call ([`Command::Preempt`]), the command
//! RequestPreemption sends, so entry, dwell and the exit back to the plan
//! are the controller's own. The control time is the newest snapshot of
//! the route's intersections: in a lockstep simulation the route runs on
//! simulated time, as the controllers do. A vehicle report polls at once,
//! so a stop passed is released without waiting for the task.
//!
//! Across daemons: with `[nats]`, a stop this daemon does not run is
//! handed over through the broker (`daemon::nats::emergency_handover`):
//! the route, each vehicle report and a cancel are published on
//! `<prefix>.emergency.<route_id>.{start,vehicle,cancel}`, and every
//! other daemon that runs one of the stops plans the same route and
//! carries out its own stops' arms and releases.
//!
//! Audit: a start and a cancel are recorded (on the route's first
//! intersection), and so is every arm and release (on its intersection),
//! under the starter's name. Vehicle reports, every second or two, are
//! checked like any control call but not recorded: the arms and releases
//! they cause are.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tonic::{Response, Status};

use super::auth::{Identity, Need, permit};
use super::{Core, EngineHandles, audit, convert, pb};
use crate::core::{Command, Instant, Span};
use crate::emergency::{
    Action, LOST_AFTER, MAX_SPEED_MPS, ReleaseReason, Route, RouteError, StopLine, StopState, WaveSettings,
};

pub(super) const START: &str = "greenwave.v1.Control/StartEmergencyRoute";
pub(super) const UPDATE: &str = "greenwave.v1.Control/UpdateEmergencyVehicle";
pub(super) const CANCEL: &str = "greenwave.v1.Control/CancelEmergencyRoute";
pub(super) const GET: &str = "greenwave.v1.Control/GetEmergencyRoute";

/// Routes kept, running and finished: a finished one is forgotten, oldest
/// first, to make room; when all run, a new one is refused.
const MAX_ROUTES: usize = 64;
/// How often a running route is brought up to the control time: well
/// inside the 1 s a lead time is counted in.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Longest route id: it names the route in logs and audit records.
const MAX_ROUTE_ID: usize = 64;

/// One stop's intersection and preempt.
#[derive(Clone, Debug)]
struct Stop {
    id: String,
    /// This daemon's index of it; `None`: another daemon runs it.
    intersection: Option<usize>,
    input: u8,
}

/// A route and who started it.
#[derive(Debug)]
struct Entry {
    route_id: String,
    route: Route,
    stops: Vec<Stop>,
    caller: Identity,
    /// Per stop: its last arm was refused (logged once until one succeeds).
    refused: Vec<bool>,
}

type Shared = Arc<tokio::sync::Mutex<Entry>>;

/// The broker a route's other stops are handed over through.
#[derive(Debug)]
pub struct Handover {
    pub client: async_nats::Client,
    /// `[nats] subject_prefix`.
    pub prefix: String,
    /// This daemon among the others (its own messages come back to it).
    pub origin: String,
}

/// A route as handed over between daemons (JSON on the broker).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HandoverMessage {
    Start {
        origin: String,
        route_id: String,
        stops: Vec<HandedStop>,
        position_m: f64,
        speed_mps: f64,
        lead_s: f64,
        past_m: f64,
        max_armed_s: f64,
    },
    Vehicle {
        origin: String,
        route_id: String,
        position_m: f64,
        speed_mps: f64,
    },
    Cancel {
        origin: String,
        route_id: String,
    },
}

/// A stop as handed over.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HandedStop {
    pub intersection_id: String,
    pub preempt_input: u8,
    pub link_m: f64,
    pub link_travel_s: f64,
}

impl HandoverMessage {
    /// The daemon that sent it.
    pub fn origin(&self) -> &str {
        match self {
            HandoverMessage::Start { origin, .. }
            | HandoverMessage::Vehicle { origin, .. }
            | HandoverMessage::Cancel { origin, .. } => origin,
        }
    }

    fn route_and_kind(&self) -> (&str, &'static str) {
        match self {
            HandoverMessage::Start { route_id, .. } => (route_id, "start"),
            HandoverMessage::Vehicle { route_id, .. } => (route_id, "vehicle"),
            HandoverMessage::Cancel { route_id, .. } => (route_id, "cancel"),
        }
    }
}

/// The daemon's emergency routes.
#[derive(Debug)]
pub struct Routes {
    core: Arc<Core>,
    engine: EngineHandles,
    /// Set once the broker is configured (`[nats]`): stops of other
    /// daemons are handed over through it.
    handover: std::sync::OnceLock<Handover>,
    /// Routes by id, each with its start number (the oldest finished
    /// one makes room).
    routes: Mutex<BTreeMap<String, (u64, Shared)>>,
    /// Routes started so far: orders them and names unnamed ones.
    started: std::sync::atomic::AtomicU64,
}

impl Routes {
    pub(super) fn new(core: Arc<Core>, engine: EngineHandles) -> Self {
        Routes {
            core,
            engine,
            handover: std::sync::OnceLock::new(),
            routes: Mutex::default(),
            started: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Hands stops of other daemons over through `handover` from now on
    /// (set once; a second broker is ignored).
    pub fn hand_over_through(&self, handover: Handover) {
        let _ = self.handover.set(handover);
    }

    /// Publishes `message` for the other daemons, if the route has stops
    /// they run.
    async fn publish(&self, stops: &[Stop], message: &HandoverMessage) {
        let Some(h) = self.handover.get() else { return };
        if stops.iter().all(|s| s.intersection.is_some()) {
            return;
        }
        let (route_id, kind) = message.route_and_kind();
        let subject = format!("{}.emergency.{route_id}.{kind}", h.prefix);
        let body = match serde_json::to_vec(message) {
            Ok(body) => body,
            Err(e) => return tracing::error!(error = %e, "emergency route handover not encoded"),
        };
        if let Err(e) = h.client.publish(subject, body.into()).await {
            tracing::warn!(route = route_id, kind, error = %e, "emergency route handover not published");
        }
    }

    /// A route, vehicle report or cancel another daemon handed over: this
    /// daemon plans the route too and carries out the stops it runs.
    pub async fn handed_over(self: &Arc<Self>, message: HandoverMessage) {
        let origin = message.origin().to_owned();
        match message {
            HandoverMessage::Start { route_id, stops, position_m, speed_mps, lead_s, past_m, max_armed_s, .. } => {
                let r = pb::StartEmergencyRouteRequest {
                    route_id,
                    stops: stops
                        .into_iter()
                        .map(|s| pb::EmergencyStop {
                            intersection_id: s.intersection_id,
                            preempt_input: s.preempt_input.into(),
                            link_m: s.link_m,
                            link_travel_s: s.link_travel_s,
                        })
                        .collect(),
                    distance_to_first_m: -position_m,
                    speed_mps,
                    lead_s,
                    past_m,
                    max_armed_s,
                };
                // Only routes with a stop this daemon runs are its own.
                if !r.stops.iter().any(|s| self.core.ids.contains(&s.intersection_id)) {
                    return;
                }
                if let Err(status) = self.start(&broker(&origin), r, Relay::No).await {
                    tracing::warn!(%origin, reason = %status.message(), "emergency route handed over, refused");
                }
            }
            HandoverMessage::Vehicle { route_id, position_m, speed_mps, .. } => {
                let r = pb::UpdateEmergencyVehicleRequest { route_id, position_m, speed_mps };
                // A route not planned here (none of its stops is ours) is
                // not found: nothing to do.
                if let Err(status) = self.update(&broker(&origin), r, Relay::No).await
                    && status.code() != tonic::Code::NotFound
                {
                    tracing::warn!(%origin, reason = %status.message(), "emergency vehicle report handed over, refused");
                }
            }
            HandoverMessage::Cancel { route_id, .. } => {
                let _ = self.cancel(&broker(&origin), pb::EmergencyRouteId { route_id }, Relay::No).await;
            }
        }
    }

    /// StartEmergencyRoute (`relay`: hand it over to the daemons that run
    /// its other stops; not for a route handed over here).
    pub(super) async fn start(
        self: &Arc<Self>,
        caller: &Identity,
        r: pb::StartEmergencyRouteRequest,
        relay: Relay,
    ) -> Result<Response<pb::EmergencyRouteReply>, Status> {
        let request = format!(
            "route \"{}\": {} stops, vehicle {} m from the first at {} m/s",
            convert::echo(&r.route_id),
            r.stops.len(),
            r.distance_to_first_m,
            r.speed_mps
        );
        let outcome = self.checked_start(caller, &r).await;
        let (entry, first) = match outcome {
            Ok(ok) => ok,
            Err((status, i)) => return Err(self.refused(caller, START, request, status, i)),
        };
        let (reply, seq) = {
            let mut e = entry.lock().await;
            if let (Relay::ToOthers, Some(h)) = (relay, self.handover.get()) {
                self.publish(&e.stops, &start_message(&h.origin, &e.route_id, &r)).await;
            }
            let detail = format!("route {} started over {}", e.route_id, stop_list(&e.stops));
            let seq = audit::record(&self.core.journal, first, caller, START, request, detail);
            let now = self.control_now(&e.stops);
            self.step(&mut e, now).await;
            (progress(&e, now, seq), seq)
        };
        tracing::debug!(route = %reply.route_id, audit_seq = seq, "emergency route running");
        let routes = self.clone();
        tokio::spawn(async move { routes.drive(entry).await });
        Ok(Response::new(reply))
    }

    /// UpdateEmergencyVehicle.
    pub(super) async fn update(
        &self,
        caller: &Identity,
        r: pb::UpdateEmergencyVehicleRequest,
        relay: Relay,
    ) -> Result<Response<pb::EmergencyRouteReply>, Status> {
        let request =
            format!("route \"{}\": vehicle at {} m, {} m/s", convert::echo(&r.route_id), r.position_m, r.speed_mps);
        let entry = self
            .reach(caller, UPDATE, &r.route_id)
            .await
            .map_err(|s| self.refused(caller, UPDATE, request.clone(), s, None))?;
        let mut e = entry.lock().await;
        let now = self.control_now(&e.stops);
        if let Err(errors) = e.route.handle_vehicle(now, r.position_m, r.speed_mps) {
            let first = e.stops.iter().find_map(|s| s.intersection);
            return Err(self.refused(
                caller,
                UPDATE,
                request,
                route_errors(&errors, "position_m").status("vehicle report"),
                first,
            ));
        }
        self.step(&mut e, now).await;
        if let (Relay::ToOthers, Some(h)) = (relay, self.handover.get()) {
            let report = HandoverMessage::Vehicle {
                origin: h.origin.clone(),
                route_id: e.route_id.clone(),
                position_m: r.position_m,
                speed_mps: r.speed_mps,
            };
            self.publish(&e.stops, &report).await;
        }
        Ok(Response::new(progress(&e, now, 0)))
    }

    /// CancelEmergencyRoute.
    pub(super) async fn cancel(
        &self,
        caller: &Identity,
        r: pb::EmergencyRouteId,
        relay: Relay,
    ) -> Result<Response<pb::EmergencyRouteReply>, Status> {
        let request = format!("cancel route \"{}\"", convert::echo(&r.route_id));
        let entry = self
            .reach(caller, CANCEL, &r.route_id)
            .await
            .map_err(|s| self.refused(caller, CANCEL, request.clone(), s, None))?;
        let mut e = entry.lock().await;
        let now = self.control_now(&e.stops);
        let mut actions = Vec::new();
        e.route.cancel(&mut actions);
        self.carry_out(&mut e, now, &mut actions).await;
        if let (Relay::ToOthers, Some(h)) = (relay, self.handover.get()) {
            let cancel = HandoverMessage::Cancel { origin: h.origin.clone(), route_id: e.route_id.clone() };
            self.publish(&e.stops, &cancel).await;
        }
        let first = e.stops.iter().find_map(|s| s.intersection).unwrap_or_default();
        let detail = format!("route {} cancelled: every armed preempt released", e.route_id);
        let seq = audit::record(&self.core.journal, first, caller, CANCEL, request, detail);
        Ok(Response::new(progress(&e, now, seq)))
    }

    /// GetEmergencyRoute: viewers may watch a route over intersections
    /// they reach.
    pub(super) async fn get(
        &self,
        caller: &Identity,
        r: pb::EmergencyRouteId,
    ) -> Result<Response<pb::EmergencyRouteReply>, Status> {
        let entry = self.find(&r.route_id)?;
        let e = entry.lock().await;
        permit(caller, Need::View, GET)?;
        if let Some(stop) = e.stops.iter().find(|s| s.intersection.is_some() && !caller.reaches(&s.id)) {
            return Err(caller.out_of_scope("route_id", &stop.id));
        }
        Ok(Response::new(progress(&e, self.control_now(&e.stops), 0)))
    }

    /// Every check of a start, then the route registered: its entry and
    /// its first intersection. A refusal comes with the intersection it is
    /// about, when there is one.
    async fn checked_start(
        &self,
        caller: &Identity,
        r: &pb::StartEmergencyRouteRequest,
    ) -> Result<(Shared, usize), (Status, Option<usize>)> {
        permit(caller, Need::Control, START).map_err(|s| (s, None))?;
        let mut v = convert::Violations::default();
        if r.route_id.len() > MAX_ROUTE_ID
            || !r.route_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            v.add("route_id", format!("\"{}\": at most {MAX_ROUTE_ID} of A-Z a-z 0-9 - _", convert::echo(&r.route_id)));
        }
        let stops = self.stops(caller, &r.stops, &mut v)?;
        let settings = settings(r, &mut v);
        let lines: Vec<StopLine> =
            r.stops.iter().map(|s| StopLine { link_m: s.link_m, link_travel: seconds(s.link_travel_s) }).collect();
        for (k, s) in r.stops.iter().enumerate() {
            if seconds(s.link_travel_s).is_none() && s.link_travel_s != 0.0 {
                v.add(
                    format!("stops[{k}].link_travel_s"),
                    format!("{} is not a travel time in seconds", s.link_travel_s),
                );
            }
        }
        let first = stops.iter().find_map(|s| s.intersection);
        if first.is_none() && !stops.is_empty() {
            v.add("stops", "none is an intersection of this daemon: send the route to one that runs one");
        }
        let now = self.control_now(&stops);
        let route = Route::try_new(&lines, settings, now, -r.distance_to_first_m, r.speed_mps);
        if let Err(errors) = &route {
            for (field, reason) in route_fields(errors, "distance_to_first_m") {
                v.add(field, reason);
            }
        }
        v.check("emergency route").map_err(|s| (s, first))?;
        let (Ok(route), Some(first)) = (route, first) else {
            return Err((Status::internal("emergency route: checked, yet not built"), None));
        };
        let entry = self.register(r.route_id.clone(), route, stops, caller).await.map_err(|s| (s, Some(first)))?;
        Ok((entry, first))
    }

    /// The stops of a request, each intersection known, reached by
    /// `caller` and defining the preempt asked for; every problem but a
    /// scope one (that is PERMISSION_DENIED, at once) goes to `v`.
    fn stops(
        &self,
        caller: &Identity,
        requested: &[pb::EmergencyStop],
        v: &mut convert::Violations,
    ) -> Result<Vec<Stop>, (Status, Option<usize>)> {
        if requested.is_empty() {
            v.add("stops", "list at least one intersection, in the order the vehicle meets them");
        }
        let mut stops: Vec<Stop> = Vec::with_capacity(requested.len());
        // Every intersection listed, its preempt good or not.
        let mut seen: Vec<usize> = Vec::with_capacity(requested.len());
        for (k, s) in requested.iter().enumerate() {
            let field = format!("stops[{k}].intersection_id");
            let Some(i) = self.core.ids.iter().position(|id| *id == s.intersection_id) else {
                // Another daemon's, handed over through the broker: it
                // checks the preempt.
                match u8::try_from(s.preempt_input) {
                    Ok(input) if self.handover.get().is_some() && !s.intersection_id.is_empty() => {
                        stops.push(Stop { id: s.intersection_id.clone(), intersection: None, input })
                    }
                    _ => v.add(field, format!("no intersection \"{}\"", convert::echo(&s.intersection_id))),
                }
                continue;
            };
            if !caller.reaches(&s.intersection_id) {
                return Err((caller.out_of_scope(&field, &s.intersection_id), Some(i)));
            }
            if seen.contains(&i) {
                v.add(field, format!("\"{}\" is listed twice", s.intersection_id));
                continue;
            }
            seen.push(i);
            let doc = self.core.docs.current(i);
            let defined: Vec<u8> = doc.config.spec.preempts.iter().map(|p| p.input).collect();
            match u8::try_from(s.preempt_input).ok().filter(|n| defined.contains(n)) {
                Some(input) => stops.push(Stop { id: s.intersection_id.clone(), intersection: Some(i), input }),
                None => v.add(
                    format!("stops[{k}].preempt_input"),
                    format!(
                        "{} defines no preempt {} (its [[preempt]] inputs: {})",
                        s.intersection_id,
                        s.preempt_input,
                        if defined.is_empty() {
                            "none".to_owned()
                        } else {
                            defined.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                        }
                    ),
                ),
            }
        }
        Ok(stops)
    }

    /// Adds a route under `route_id` (or a new name): ALREADY_EXISTS for
    /// a name in use, FAILED_PRECONDITION when a running route holds one of
    /// its preempts, RESOURCE_EXHAUSTED when [`MAX_ROUTES`] run.
    async fn register(
        &self,
        route_id: String,
        route: Route,
        stops: Vec<Stop>,
        caller: &Identity,
    ) -> Result<Shared, Status> {
        let entries: Vec<(String, Shared)> = {
            let map = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            if !route_id.is_empty() && map.contains_key(&route_id) {
                return Err(Status::already_exists(format!("route_id: \"{route_id}\" is in use")));
            }
            map.iter().map(|(id, (_, e))| (id.clone(), e.clone())).collect()
        };
        // Two routes calling one preempt would release each other's call.
        let mut finished = Vec::new();
        for (id, entry) in &entries {
            let e = entry.lock().await;
            if e.route.is_finished() {
                finished.push(id.clone());
                continue;
            }
            let held = e.stops.iter().zip(e.route.states()).find(|(s, state)| {
                matches!(state, StopState::Waiting | StopState::Armed { .. })
                    && stops
                        .iter()
                        .any(|n| n.intersection.is_some() && n.intersection == s.intersection && n.input == s.input)
            });
            if let Some((s, _)) = held {
                return Err(Status::failed_precondition(format!(
                    "stops: route \"{id}\" holds preempt {} of {}; cancel it first",
                    s.input, s.id
                )));
            }
        }
        let n = self.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let route_id = if route_id.is_empty() { format!("route-{n}") } else { route_id };
        let refused = vec![false; stops.len()];
        let entry = Arc::new(tokio::sync::Mutex::new(Entry {
            route_id: route_id.clone(),
            route,
            stops,
            caller: caller.clone(),
            refused,
        }));
        let mut map = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&route_id) {
            return Err(Status::already_exists(format!("route_id: \"{route_id}\" is in use")));
        }
        if map.len() >= MAX_ROUTES {
            // The oldest finished route makes room.
            let oldest = map
                .iter()
                .filter(|(id, _)| finished.contains(id))
                .min_by_key(|(_, (n, _))| *n)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => {
                    map.remove(&id);
                }
                None => {
                    return Err(Status::resource_exhausted(format!(
                        "{MAX_ROUTES} emergency routes run; cancel one first"
                    )));
                }
            }
        }
        map.insert(route_id, (n, entry.clone()));
        Ok(entry)
    }

    /// Route `route_id`, if `caller` may change it: the operator role,
    /// and every stop within reach.
    async fn reach(&self, caller: &Identity, method: &str, route_id: &str) -> Result<Shared, Status> {
        permit(caller, Need::Control, method)?;
        let entry = self.find(route_id)?;
        let out_of_reach = entry
            .lock()
            .await
            .stops
            .iter()
            .find(|s| s.intersection.is_some() && !caller.reaches(&s.id))
            .map(|s| s.id.clone());
        match out_of_reach {
            Some(id) => Err(caller.out_of_scope("route_id", &id)),
            None => Ok(entry),
        }
    }

    fn find(&self, route_id: &str) -> Result<Shared, Status> {
        if route_id.is_empty() {
            return Err(convert::invalid("route_id", "must name a route"));
        }
        let map = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(route_id)
            .map(|(_, e)| e.clone())
            .ok_or_else(|| Status::not_found(format!("route_id: no route \"{}\"", convert::echo(route_id))))
    }

    /// Logs a refused call, once per burst, as every Control refusal is.
    fn refused(
        &self,
        caller: &Identity,
        method: &'static str,
        request: String,
        status: Status,
        i: Option<usize>,
    ) -> Status {
        self.core.refusals.note(audit::refusal(caller, method, request, &status, i), std::time::Instant::now());
        status
    }

    /// Polls the route every [`POLL_EVERY`] until it is finished.
    async fn drive(&self, entry: Shared) {
        let mut every = tokio::time::interval(POLL_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let mut e = entry.lock().await;
            let now = self.control_now(&e.stops);
            self.step(&mut e, now).await;
            if e.route.is_finished() {
                tracing::info!(route = %e.route_id, "emergency route finished");
                break;
            }
        }
    }

    /// Brings the route up to `now` and carries out what it asks.
    async fn step(&self, e: &mut Entry, now: Instant) {
        let mut actions = Vec::new();
        e.route.poll(now, &mut actions);
        self.carry_out(e, now, &mut actions).await;
    }

    /// Sends each action to its controller and audits it; an arm refused
    /// is tried again at the next poll (logged once).
    async fn carry_out(&self, e: &mut Entry, now: Instant, actions: &mut Vec<Action>) {
        for action in actions.drain(..) {
            let (k, active) = match action {
                Action::Arm(k) => (k, true),
                Action::Release(k) => (k, false),
            };
            // Another daemon's stop: that daemon arms and releases it.
            let Some((stop, i)) = e.stops.get(k).and_then(|s| Some((s.clone(), s.intersection?))) else { continue };
            let command = Command::Preempt { input: stop.input, active };
            match self.engine.commands.submit(i, command).await {
                Ok(()) => {
                    e.refused[k] = false;
                    let detail = match (active, e.route.states()[k]) {
                        (true, _) => format!(
                            "route {}: preempt {} called, vehicle expected in {}",
                            e.route_id,
                            stop.input,
                            e.route.eta(now, k).map_or_else(|| "?".to_owned(), |s| s.to_string())
                        ),
                        (false, StopState::Passed) => {
                            format!("route {}: preempt {} released, the vehicle is past", e.route_id, stop.input)
                        }
                        (false, StopState::Released(ReleaseReason::TimedOut)) => format!(
                            "route {}: preempt {} released, the vehicle not seen past in time",
                            e.route_id, stop.input
                        ),
                        (false, StopState::Released(ReleaseReason::VehicleLost)) => format!(
                            "route {}: preempt {} released, no vehicle report for {}",
                            e.route_id, stop.input, LOST_AFTER
                        ),
                        (false, _) => format!("route {}: preempt {} released, route cancelled", e.route_id, stop.input),
                    };
                    let request = format!("route {} stop {k}", e.route_id);
                    audit::record(&self.core.journal, i, &e.caller, START, request, detail);
                }
                Err(err) => {
                    if active {
                        e.route.arm_failed(k);
                    }
                    if !std::mem::replace(&mut e.refused[k], true) || !active {
                        tracing::warn!(route = %e.route_id, intersection = %stop.id, input = stop.input, active, error = %err, "emergency route: preempt command not carried out");
                    }
                }
            }
        }
    }

    /// The control time: the newest snapshot of the route's
    /// intersections (wall clock before the first).
    fn control_now(&self, stops: &[Stop]) -> Instant {
        stops
            .iter()
            .filter_map(|s| self.engine.board.get(s.intersection?).map(|snap| snap.at))
            .max()
            .unwrap_or_else(|| Instant::from_millis(audit::now_unix_ms()))
    }
}

/// Whether a call is handed over to the daemons that run the route's
/// other stops: yes for the caller's, never for what came from the broker
/// (each daemon hands over only its own callers' calls, so nothing loops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    ToOthers,
    No,
}

/// Start request `r`, as route `route_id` (named now), for the other
/// daemons.
fn start_message(origin: &str, route_id: &str, r: &pb::StartEmergencyRouteRequest) -> HandoverMessage {
    let stops = r
        .stops
        .iter()
        .map(|s| HandedStop {
            intersection_id: s.intersection_id.clone(),
            // Checked: a stop's preempt is 1..=8 or the start was refused.
            preempt_input: u8::try_from(s.preempt_input).unwrap_or_default(),
            link_m: s.link_m,
            link_travel_s: s.link_travel_s,
        })
        .collect();
    HandoverMessage::Start {
        origin: origin.to_owned(),
        route_id: route_id.to_owned(),
        stops,
        position_m: -r.distance_to_first_m,
        speed_mps: r.speed_mps,
        lead_s: r.lead_s,
        past_m: r.past_m,
        max_armed_s: r.max_armed_s,
    }
}

/// The caller a handed-over route is audited under.
fn broker(origin: &str) -> Identity {
    Identity {
        principal: format!("nats:{origin}").into(),
        role: crate::config::Role::Operator,
        peer: None,
        scope: None,
    }
}

/// Lead, pass margin and timeout of a request (0: the default).
fn settings(r: &pb::StartEmergencyRouteRequest, v: &mut convert::Violations) -> WaveSettings {
    let d = WaveSettings::default();
    let mut span = |field: &str, value: f64, default: Span| match seconds(value) {
        Some(s) if !s.is_zero() => s,
        _ if value == 0.0 => default,
        _ => {
            v.add(field, format!("{value} is not a time in seconds"));
            default
        }
    };
    let lead = span("lead_s", r.lead_s, d.lead);
    let max_armed = span("max_armed_s", r.max_armed_s, d.max_armed);
    let past_m = match r.past_m {
        0.0 => d.past_m,
        m if m.is_finite() && m > 0.0 && m <= 200.0 => m,
        m => {
            v.add("past_m", format!("{m} is not a distance in metres (0 < m ≤ 200)"));
            d.past_m
        }
    };
    WaveSettings { lead, past_m, max_armed }
}

/// A positive time in seconds, `None` for zero or what is not one.
fn seconds(s: f64) -> Option<Span> {
    Span::try_from_secs_f64(s).filter(|s| !s.is_zero())
}

/// The planner's errors as request fields; `position` names the field
/// the vehicle's position came in.
fn route_fields(errors: &[RouteError], position: &str) -> Vec<(String, String)> {
    errors
        .iter()
        .map(|e| match e {
            RouteError::Empty => ("stops".to_owned(), e.to_string()),
            RouteError::Link { stop, value } => {
                (format!("stops[{stop}].link_m"), format!("{value} is not a distance in metres"))
            }
            RouteError::Speed(value) => {
                ("speed_mps".to_owned(), format!("{value} is not a speed (0 ≤ m/s ≤ {MAX_SPEED_MPS})"))
            }
            RouteError::Position(value) => (position.to_owned(), format!("{value} is not a distance in metres")),
        })
        .collect()
}

fn route_errors(errors: &[RouteError], position: &str) -> convert::Violations {
    let mut v = convert::Violations::default();
    for (field, reason) in route_fields(errors, position) {
        v.add(field, reason);
    }
    v
}

fn stop_list(stops: &[Stop]) -> String {
    let stop = |s: &Stop| {
        let handed = if s.intersection.is_none() { ", handed over" } else { "" };
        format!("{} (preempt {}{handed})", s.id, s.input)
    };
    stops.iter().map(stop).collect::<Vec<_>>().join(", ")
}

/// A route's progress for the caller.
fn progress(e: &Entry, now: Instant, audit_seq: u64) -> pb::EmergencyRouteReply {
    use pb::EmergencyStopState as S;
    let (position_m, speed_mps) = e.route.vehicle();
    let stops = e
        .stops
        .iter()
        .zip(e.route.states())
        .enumerate()
        .map(|(k, (stop, state))| {
            let (state, eta) = match state {
                StopState::Waiting => (S::Waiting, e.route.eta(now, k)),
                StopState::Armed { .. } => (S::Armed, e.route.eta(now, k)),
                StopState::Passed => (S::Passed, None),
                StopState::Released(_) => (S::Released, None),
            };
            pb::EmergencyStopProgress {
                intersection_id: stop.id.clone(),
                preempt_input: stop.input.into(),
                state: state.into(),
                eta_s: eta.map(Span::as_secs_f64),
                at_m: e.route.stop_at_m(k).unwrap_or_default(),
                local: stop.intersection.is_some(),
            }
        })
        .collect();
    pb::EmergencyRouteReply {
        route_id: e.route_id.clone(),
        finished: e.route.is_finished(),
        position_m,
        speed_mps,
        stops,
        audit_seq,
    }
}
