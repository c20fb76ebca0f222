//! The Control service: operator commands, parsed here, checked and
//! applied by the controller (at a safe point), audited whatever the
//! outcome. The controller's answer comes back through the engine's
//! [`CommandPort`]: its refusals are the only checks of a command against
//! the running definition, so this file does not repeat them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tonic::{Request, Response, Status};

use crate::config;
use crate::core::coord::CorridorTiming;
use crate::core::spec::PlanMode;
use crate::core::{Command, CommandError, FlashReason, Instant, OperatingMode, PhaseSet, Span, UnitState};
use crate::engine::port::{CommandPort, SubmitError};
use crate::engine::{EngineCommand, Refusal, Ticket};

use super::auth::{Identity, Need, identity, permit};
use super::emergency::{Relay, Routes};
use super::versions::{ControllerFile, OperatorSettings, Provenance, SaveError, mode_word};
use super::{Core, EngineHandles, audit, convert, pb};

const SET_MODE: &str = "greenwave.v1.Control/SetMode";
const APPLY_PLAN: &str = "greenwave.v1.Control/ApplyTimingPlan";
const SET_COORDINATION: &str = "greenwave.v1.Control/SetCoordination";
const PREEMPT: &str = "greenwave.v1.Control/RequestPreemption";
const PRIORITY: &str = "greenwave.v1.Control/RequestPriority";
const HOLD: &str = "greenwave.v1.Control/HoldPhases";
const RELEASE: &str = "greenwave.v1.Control/ReleasePhases";
const OMIT: &str = "greenwave.v1.Control/OmitPhases";
const RESET_MONITOR: &str = "greenwave.v1.Control/ResetMonitor";
const LIST_VERSIONS: &str = "greenwave.v1.Control/ListVersions";
const ROLLBACK: &str = "greenwave.v1.Control/RollbackVersion";

/// Largest `controller_toml` accepted; controller files are a few kB.
const MAX_CONTROLLER_TOML: usize = 256 * 1024;

#[derive(Debug)]
pub(super) struct ControlService {
    core: Arc<Core>,
    engine: EngineHandles,
    /// The daemon's emergency routes (`super::emergency`), shared with
    /// the broker's handover.
    routes: Arc<Routes>,
}

impl ControlService {
    pub(super) fn new(core: Arc<Core>, engine: EngineHandles, routes: Arc<Routes>) -> Self {
        ControlService { core, engine, routes }
    }

    /// Runs one control command: finds the intersection, checks the role,
    /// runs `act`, and audits the outcome. `act` returns what was done, in
    /// words, and the reply.
    async fn audited<T>(
        &self,
        caller: &Identity,
        method: &'static str,
        intersection_id: &str,
        request: String,
        act: impl AsyncFnOnce(usize) -> Result<(String, T), Status>,
    ) -> Result<(T, u64), Status> {
        let core = &self.core;
        let refused = |status: Status, i: Option<usize>| {
            core.refusals.note(audit::refusal(caller, method, request.clone(), &status, i), std::time::Instant::now());
            status
        };
        let i = core.index(intersection_id, "intersection_id").map_err(|status| refused(status, None))?;
        if !caller.reaches(intersection_id) {
            return Err(refused(caller.out_of_scope("intersection_id", intersection_id), Some(i)));
        }
        let outcome = match permit(caller, Need::Control, method) {
            Ok(()) => act(i).await,
            Err(status) => Err(status),
        };
        match outcome {
            Ok((detail, value)) => Ok((value, audit::record(&core.journal, i, caller, method, request, detail))),
            Err(status) => Err(refused(status, Some(i))),
        }
    }

    fn port(&self) -> &CommandPort {
        &self.engine.commands
    }

    /// Runs `command` and waits for the controller's answer; a refusal is
    /// the status for the request `field` it is about.
    async fn controller(&self, intersection: usize, command: Command, field: &str) -> Result<(), Status> {
        self.port().submit(intersection, command).await.map_err(|e| status(e, field))
    }

    /// SetCoordination on a running adaptive cycle-style plan: a corridor
    /// timing (cycle, offset, reference) for the optimizer, or with
    /// `cycle_s = 0` none (back to its own cycle). Returns what was done.
    async fn adaptive_coordination(
        &self,
        i: usize,
        number: u8,
        r: &pb::SetCoordinationRequest,
    ) -> Result<String, Status> {
        if !r.splits_s.is_empty() {
            return Err(convert::invalid(
                "splits_s",
                format!("plan {number} runs adaptively: its optimizer sets the splits from the measured flows"),
            ));
        }
        if r.cycle_s == 0.0 && r.offset_s == 0.0 {
            self.controller(i, Command::Corridor(None), "cycle_s").await?;
            return Ok(format!("plan {number} (adaptive): corridor timing cleared, back to its own cycle"));
        }
        let cycle = Span::try_from_secs_f64(r.cycle_s)
            .filter(|c| r.cycle_s > 0.0 && !c.is_zero())
            .ok_or_else(|| convert::invalid("cycle_s", format!("{} is not a cycle length in seconds", r.cycle_s)))?;
        if !(r.offset_s.is_finite() && (0.0..r.cycle_s).contains(&r.offset_s)) {
            return Err(convert::invalid(
                "offset_s",
                format!("{} s is outside 0..{} s (the cycle)", r.offset_s, r.cycle_s),
            ));
        }
        let offset = Span::try_from_secs_f64(r.offset_s).unwrap_or_default();
        let reference = Instant::from_millis(r.reference_unix_ms);
        // The controller refuses a cycle outside what the plan can run
        // adaptively; only then does the reference move.
        self.controller(i, Command::Corridor(Some(CorridorTiming { cycle, offset, reference })), "cycle_s").await?;
        if r.reference_unix_ms != 0 {
            self.controller(i, Command::SetCoordinationReference(reference), "reference_unix_ms").await?;
        }
        Ok(format!(
            "plan {number} (adaptive): corridor timing cycle {} s offset {} s from {} ms; splits stay the optimizer's",
            r.cycle_s, r.offset_s, r.reference_unix_ms
        ))
    }

    fn reply(&self, detail: String, seq: u64) -> Response<pb::ControlReply> {
        Response::new(pb::ControlReply { detail, audit_seq: seq })
    }

    /// The time of day the engine reads intersection `i`'s schedule at:
    /// its newest snapshot's control time plus the engine's wall-clock
    /// offset (the host's clock before the first snapshot). A selection is
    /// stamped with it, so a restart compares the schedule at the same
    /// clock; in a lockstep run the day is the simulation's, not the host's.
    fn time_of_day(&self, i: usize) -> Instant {
        match self.engine.board.get(i) {
            Some(s) => crate::engine::time_of_day(s.at, self.engine.stats.wall_offset_ms.load(Ordering::Relaxed)),
            None => Instant::from_millis(audit::now_unix_ms()),
        }
    }

    /// The plan running now, from the latest snapshot (the spec's default
    /// before the first one).
    fn running_plan(&self, i: usize) -> u8 {
        self.engine.board.get(i).map_or_else(|| self.core.docs.current(i).config.spec.default_plan, |s| s.plan)
    }

    /// Validates `table` as intersection `i`'s controller file with the
    /// `greenwave check` code, saves it (see [`super::versions`]; `text` is
    /// what to save when the caller has it verbatim, with its comments),
    /// stages it, and makes it the document. Returns the new version, the
    /// saved version (0: not saved) and the warnings. What `operator`
    /// sets is saved here and goes to the controller after (a plan:
    /// [`Self::select`]), once the edit lock is let go. Nothing is staged
    /// that could not be saved.
    fn stage(
        &self,
        i: usize,
        edit: &mut super::docs::DocEdit<'_>,
        (table, text): (toml::Table, Option<&str>),
        operator: Selection,
        fields: Option<&convert::PlanFields<'_>>,
        change: &Change<'_>,
    ) -> Result<Staged, Status> {
        let serialized;
        let text = match text {
            Some(text) => text,
            None => {
                serialized = toml::to_string(&table).map_err(|e| Status::internal(format!("plan editor: {e}")))?;
                &serialized
            }
        };
        let file = edit.doc().file_name.clone();
        let (cfg, warnings) =
            config::load_intersection_str(&file, text).map_err(|e| convert::rejected("timing plan", &e, fields))?;
        let id = &self.core.ids[i];
        if cfg.spec.id != *id {
            return Err(convert::invalid(
                "controller_toml",
                format!("intersection.id is \"{}\", but the request is for \"{id}\"", cfg.spec.id),
            ));
        }
        if let Some(n) = operator.plan
            && cfg.spec.plan(n).is_none()
        {
            return Err(convert::invalid("plan_number", format!("plan {n} is not defined")));
        }
        let warnings: Vec<String> = warnings.iter().map(|w| format!("{}: {}", w.key, w.reason)).collect();
        let saved = match edit.doc().file.clone() {
            Some(file) => Some(save_definition(&file, text, operator, self.time_of_day(i), change)?),
            None => None,
        };
        let mut cfg = cfg;
        cfg.spec.version = edit.next_version();
        // No outcome to wait for (a definition that validated is always
        // staged) and the edit lock must not be held across a wait; the
        // engine handles commands in order, so a selection sent after
        // this one sees it staged.
        let command = Command::LoadSpec(Box::new(cfg.spec.clone()));
        if let Err(e) = self.port().send(EngineCommand::Controller { intersection: i, command, ticket: Ticket::NONE }) {
            if let (Some(file), Some(saved)) = (&edit.doc().file, &saved) {
                saved.undo(file);
            }
            return Err(status(e, "controller_toml"));
        }
        self.core.measures.configure(i, &cfg.spec);
        let version = edit.commit(table, cfg);
        Ok(Staged { version, saved: saved.map_or(0, |s| s.number), warnings })
    }

    /// Intersection `i`'s controller file, for the calls about its saved
    /// versions.
    fn saved_file(&self, i: usize) -> Result<ControllerFile, Status> {
        self.core.docs.edit(i).doc().file.clone().ok_or_else(|| {
            Status::failed_precondition(
                "no saved versions: this daemon runs no controllers directory, so changes live in memory",
            )
        })
    }

    /// Selects plan `n` (after [`Self::stage`]); the controller takes a
    /// plan of the staged definition with it at the barrier.
    async fn select(&self, i: usize, n: Option<u8>) -> Result<(), Status> {
        match n {
            Some(n) => self.controller(i, Command::SelectPlan(n), "plan_number").await,
            None => Ok(()),
        }
    }
}

impl ControlService {
    /// Sets the operating mode for `caller`: saved as what operators set,
    /// sent to the controller (in force at the next barrier), audited
    /// under `method` (gRPC SetMode, or another front end's name for it).
    /// Returns what was done, in words, and the audit record.
    pub(super) async fn set_mode_as(
        &self,
        caller: &Identity,
        method: &'static str,
        intersection_id: &str,
        words: String,
        mode: Result<OperatingMode, Status>,
    ) -> Result<(String, u64), Status> {
        let act = async |i| {
            let mode = mode?;
            let was = self.engine.board.get(i).map(|s| s.unit);
            self.operator_command(i, |s| OperatorSettings { mode: Some(mode), ..s }, Command::SetMode(mode), "mode")
                .await?;
            let when = match (mode, was) {
                (m, Some(UnitState::Flash { reason: FlashReason::Operator, .. })) if m != OperatingMode::Flash => {
                    "leaves operator flash now, through all red"
                }
                (OperatingMode::Flash, _) => "orderly flash from the next barrier",
                _ => "applies at the next barrier",
            };
            let detail = format!("mode {}: {when}", mode_word(mode));
            Ok((detail.clone(), detail))
        };
        self.audited(caller, method, intersection_id, format!("mode {words}"), act).await
    }

    /// Selects plan `number` of the running definition for `caller` (a
    /// centre's pattern command): saved, in force at the next barrier,
    /// audited under `method`. The controller refuses a plan it lacks.
    pub(super) async fn select_plan_as(
        &self,
        caller: &Identity,
        method: &'static str,
        intersection_id: &str,
        number: u8,
    ) -> Result<(String, u64), Status> {
        let act = async |i| {
            let now = self.time_of_day(i);
            let select = |s: OperatorSettings| OperatorSettings { selected: Some((number, now)), ..s };
            self.operator_command(i, select, Command::SelectPlan(number), "plan_number").await?;
            let detail = format!("plan {number} selected: in force at the next barrier");
            Ok((detail.clone(), detail))
        };
        self.audited(caller, method, intersection_id, format!("plan {number}"), act).await
    }

    /// Hands the intersection back to its time-of-day schedule for
    /// `caller`: what operators set is cleared (saved), the mode goes back
    /// to the schedule's and the schedule's plan for now is asked for
    /// again, both at the next barrier; audited under `method`.
    pub(super) async fn follow_schedule_as(
        &self,
        caller: &Identity,
        method: &'static str,
        intersection_id: &str,
    ) -> Result<(String, u64), Status> {
        let act = async |i| {
            let cleared = |s: OperatorSettings| OperatorSettings { mode: None, selected: None, ..s };
            let scheduled = Command::SetMode(OperatingMode::Scheduled);
            self.operator_command(i, cleared, scheduled, "mode").await?;
            self.port().follow_schedule(i).await.map_err(|e| status(e, "mode"))?;
            let detail = "back to the time-of-day schedule: its mode and plan from the next barrier".to_owned();
            Ok((detail.clone(), detail))
        };
        self.audited(caller, method, intersection_id, "follow the schedule".into(), act).await
    }

    /// Saves what operators set (`change` of the saved settings), then
    /// sends `command`; if the controller refuses it the saved settings
    /// are put back, so what runs is always what a restart runs. The edit
    /// lock keeps other changes of the saved settings out meanwhile (it is
    /// let go before the wait).
    async fn operator_command(
        &self,
        i: usize,
        change: impl FnOnce(OperatorSettings) -> OperatorSettings,
        command: Command,
        field: &str,
    ) -> Result<(), Status> {
        let (file, before) = {
            let edit = self.core.docs.edit(i);
            match edit.doc().file.clone() {
                Some(file) => {
                    let before = operator_state(&file);
                    file.save_operator(change(before)).map_err(not_saved)?;
                    (Some(file), before)
                }
                None => (None, OperatorSettings::default()),
            }
        };
        if let Err(refused) = self.controller(i, command, field).await {
            if let Some(file) = &file {
                let _edit = self.core.docs.edit(i);
                if let Err(e) = file.save_operator(before) {
                    tracing::error!(error = %e, "operator settings not put back after a refused command");
                }
            }
            return Err(refused);
        }
        Ok(())
    }
}

/// A change as its audit record names it: who, over which method, what.
struct Change<'a> {
    caller: &'a Identity,
    method: &'static str,
    what: &'a str,
}

impl Change<'_> {
    fn provenance(&self) -> Provenance {
        Provenance {
            saved_unix_ms: audit::now_unix_ms(),
            saved_by: format!("{} ({})", self.caller.principal, self.caller.role.name()),
            method: self.method.to_owned(),
            what: self.what.to_owned(),
        }
    }
}

/// A staged definition: its config version, the version it was saved as
/// (0: not saved) and the validator's warnings.
struct Staged {
    version: u64,
    saved: u64,
    warnings: Vec<String>,
}

/// What [`save_definition`] wrote, to undo it if the engine cannot take
/// the change after all.
struct Saved {
    number: u64,
    /// The controller file's text before.
    before: String,
    /// What operators had set before (when a selection was saved).
    operator_before: Option<OperatorSettings>,
}

impl Saved {
    /// Puts the controller file (and what operators set) back as it was:
    /// the change was not staged, so a restart must not run it. The saved
    /// version stays in the history, no longer current.
    fn undo(&self, file: &ControllerFile) {
        if let Err(e) = super::versions::write_atomic(file.path(), &self.before) {
            tracing::error!(file = %file.path().display(), error = %e, "controller file not put back after a change the engine could not take");
        }
        if let Some(state) = self.operator_before
            && let Err(e) = file.save_operator(state)
        {
            tracing::error!(error = %e, "operator settings not put back after a change the engine could not take");
        }
    }
}

/// What a staged change also sets, saved with it: a plan to select, a
/// coordination reference.
#[derive(Clone, Copy, Debug, Default)]
struct Selection {
    plan: Option<u8>,
    reference: Option<Instant>,
}

/// Saves a validated definition `text` (and what it selects) to its
/// controller file, before anything is staged.
fn save_definition(
    file: &ControllerFile,
    text: &str,
    operator: Selection,
    selected_at: Instant,
    change: &Change<'_>,
) -> Result<Saved, Status> {
    let before = std::fs::read_to_string(file.path())
        .map_err(|source| not_saved(SaveError::Io { action: "reading", path: file.path().to_path_buf(), source }))?;
    let operator_before = match operator {
        Selection { plan: None, reference: None } => None,
        Selection { plan, reference } => {
            let was = operator_state(file);
            let settings = OperatorSettings {
                selected: plan.map(|n| (n, selected_at)).or(was.selected),
                coordination_reference: reference.or(was.coordination_reference),
                ..was
            };
            file.save_operator(settings).map_err(not_saved)?;
            Some(was)
        }
    };
    match file.save(text, &change.provenance()) {
        Ok(number) => Ok(Saved { number, before, operator_before }),
        Err(e) => {
            // What was selected with a definition that was not saved is
            // not selected either.
            if let Some(was) = operator_before
                && let Err(put_back) = file.save_operator(was)
            {
                tracing::error!(error = %put_back, "operator settings not put back after a change that was not saved");
            }
            Err(not_saved(e))
        }
    }
}

/// What operators set, as saved; an unreadable file is replaced (said).
fn operator_state(file: &ControllerFile) -> OperatorSettings {
    file.operator().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "saved operator settings unreadable: replaced");
        OperatorSettings::default()
    })
}

/// A change that could not be saved, as the caller's status: it was not
/// applied either.
fn not_saved(e: SaveError) -> Status {
    let message = format!("not applied: the change could not be saved ({e}); what runs is unchanged");
    if e.is_disk_full() { Status::resource_exhausted(message) } else { Status::unavailable(message) }
}

/// The answer to a staged plan change: its versions, plan, the validator's
/// warnings and the audit record.
fn plan_applied(staged: Staged, number: u8, audit_seq: u64) -> Response<pb::ApplyTimingPlanResponse> {
    Response::new(pb::ApplyTimingPlanResponse {
        config_version: staged.version,
        plan_number: number.into(),
        warnings: staged.warnings,
        audit_seq,
        saved_version: staged.saved,
    })
}

fn check_version(expected: u64, edit: &super::docs::DocEdit<'_>) -> Result<(), Status> {
    let actual = edit.doc().version;
    if expected != 0 && expected != actual {
        return Err(Status::failed_precondition(format!(
            "expected_version: the definition is at version {actual}, not {expected} (changed by someone else?)"
        )));
    }
    Ok(())
}

/// The `[[plan]]` array of a controller document.
fn plans_mut(table: &mut toml::Table) -> Result<&mut Vec<toml::Value>, Status> {
    table
        .entry("plan")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| Status::internal("controller document has a `plan` that is not a list"))
}

fn plan_number_of(plan: &toml::Value) -> Option<i64> {
    plan.get("number").and_then(toml::Value::as_integer)
}

/// The engine's answer as the caller's status: a controller refusal is
/// about the request `field` (INVALID_ARGUMENT), or about the state the
/// intersection is in (FAILED_PRECONDITION).
fn status(e: SubmitError, field: &str) -> Status {
    match e {
        SubmitError::Full => Status::resource_exhausted(e.to_string()),
        SubmitError::Stopped | SubmitError::NoAnswer => Status::unavailable(e.to_string()),
        SubmitError::Refused(Refusal::NoMonitorTrip) => Status::failed_precondition(e.to_string()),
        SubmitError::Refused(Refusal::Controller(CommandError::PlanHasNoCycle { .. })) => {
            Status::failed_precondition(format!("{field}: {e}; select a coordinated or fixed plan first"))
        }
        SubmitError::Refused(Refusal::UnknownIntersection(_)) => Status::not_found(e.to_string()),
        SubmitError::Refused(Refusal::Controller(_)) => convert::invalid(field, e.to_string()),
    }
}

/// A list of phase numbers from a request (the controller says whether
/// they are present).
fn phase_set(numbers: &[u32]) -> Result<PhaseSet, Status> {
    if numbers.is_empty() {
        return Err(convert::invalid("phases", "list at least one phase"));
    }
    let mut set = PhaseSet::EMPTY;
    for (k, &n) in numbers.iter().enumerate() {
        let p = convert::phase(n, &format!("phases[{k}]"))?;
        set.insert(p);
    }
    Ok(set)
}

#[tonic::async_trait]
impl pb::control_server::Control for ControlService {
    async fn set_mode(&self, req: Request<pb::SetModeRequest>) -> Result<Response<pb::ControlReply>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let words = pb::Mode::try_from(r.mode).map_or_else(|_| r.mode.to_string(), |m| m.as_str_name().to_owned());
        let (detail, seq) =
            self.set_mode_as(&caller, SET_MODE, &r.intersection_id, words, convert::mode(r.mode)).await?;
        Ok(self.reply(detail, seq))
    }

    async fn apply_timing_plan(
        &self,
        req: Request<pb::ApplyTimingPlanRequest>,
    ) -> Result<Response<pb::ApplyTimingPlanResponse>, Status> {
        use pb::apply_timing_plan_request::Source;
        let caller = identity(&req)?;
        let r = req.into_inner();
        let what = match &r.source {
            Some(Source::Plan(p)) => format!("plan {}{}", p.number, if r.activate { " (activate)" } else { "" }),
            Some(Source::ControllerToml(t)) => format!("controller file ({} bytes)", t.len()),
            None => "nothing".to_owned(),
        };
        let change = Change { caller: &caller, method: APPLY_PLAN, what: &what };
        let act = async |i| {
            let (staged, number, select) = {
                let mut edit = self.core.docs.edit(i);
                check_version(r.expected_version, &edit)?;
                let (table, number, select, fields) = match &r.source {
                    Some(Source::Plan(plan)) => {
                        let plan_table = convert::plan_table(plan)?;
                        let number = i64::from(plan.number);
                        let mut table = edit.doc().table.clone();
                        let plans = plans_mut(&mut table)?;
                        match plans.iter_mut().find(|p| plan_number_of(p) == Some(number)) {
                            Some(slot) => *slot = plan_table.into(),
                            None => plans.push(plan_table.into()),
                        }
                        // plan_table checked 1..=255.
                        let n = plan.number as u8;
                        let fields = convert::PlanFields { prefix: "plan.", number: n, splits: &plan.splits_s };
                        ((table, None), n, r.activate.then_some(n), Some(fields))
                    }
                    Some(Source::ControllerToml(text)) => {
                        if text.len() > MAX_CONTROLLER_TOML {
                            return Err(convert::invalid(
                                "controller_toml",
                                format!("{} bytes: at most {MAX_CONTROLLER_TOML}", text.len()),
                            ));
                        }
                        let table = text.parse::<toml::Table>().map_err(|e| {
                            convert::invalid("controller_toml", format!("not valid TOML: {}", e.message()))
                        })?;
                        ((table, Some(text.as_str())), self.running_plan(i), None, None)
                    }
                    None => return Err(convert::invalid("source", "set plan or controller_toml")),
                };
                let operator = Selection { plan: select, reference: None };
                let staged = self.stage(i, &mut edit, table, operator, fields.as_ref(), &change)?;
                (staged, number, select)
            };
            self.select(i, select).await?;
            let selected = if select.is_some() { ", selected" } else { "" };
            Ok((
                format!(
                    "config version {}{} staged (plan {number}{selected}): in force at the next barrier",
                    staged.version,
                    saved_as(staged.saved)
                ),
                (staged, number),
            ))
        };
        let ((staged, number), seq) = self.audited(&caller, APPLY_PLAN, &r.intersection_id, what.clone(), act).await?;
        Ok(plan_applied(staged, number, seq))
    }

    async fn set_coordination(
        &self,
        req: Request<pb::SetCoordinationRequest>,
    ) -> Result<Response<pb::ApplyTimingPlanResponse>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let what = format!(
            "plan {} cycle {} s offset {} s{}",
            r.plan_number,
            r.cycle_s,
            r.offset_s,
            if r.reference_unix_ms != 0 { format!(" reference {} ms", r.reference_unix_ms) } else { String::new() }
        );
        let change = Change { caller: &caller, method: SET_COORDINATION, what: &what };
        let act = async |i| {
            // A reference is when the cycle starts: any time up to a year
            // ahead (2^64 - 1 ms would be past every calendar).
            let year_ahead = audit::now_unix_ms() + 366 * 86_400_000;
            // Every field's fault at once: the request's own ranges first,
            // then (for a plan that stages) cycle, offset and splits.
            let mut v = convert::Violations::default();
            if r.reference_unix_ms > year_ahead {
                v.add("reference_unix_ms", format!("{} is more than a year from now", r.reference_unix_ms));
            }
            let number = match r.plan_number {
                0 => self.running_plan(i),
                n => u8::try_from(n).unwrap_or_else(|_| {
                    v.add("plan_number", format!("{n} is not a plan number (1..=255)"));
                    0
                }),
            };
            if number == 0 {
                // No plan to look at further.
                return Err(v.status("coordination"));
            }
            // An adaptive cycle-style plan running now: its optimizer
            // re-plans cycle and splits every cycle, so a staged cycle and
            // offset would be overridden at once. The request sets its
            // corridor timing instead (nothing is staged).
            if let Some(snap) = self.engine.board.get(i)
                && snap.adaptive
                && snap.plan == number
                && snap.plan_mode == PlanMode::Coordinated
            {
                let version = {
                    let edit = self.core.docs.edit(i);
                    check_version(r.expected_version, &edit)?;
                    edit.doc().version
                };
                v.check("coordination")?;
                let detail = self.adaptive_coordination(i, number, &r).await?;
                return Ok((detail, (Staged { version, saved: 0, warnings: Vec::new() }, number)));
            }
            if !(r.cycle_s.is_finite() && r.cycle_s > 0.0) {
                v.add("cycle_s", format!("{} is not a cycle length in seconds", r.cycle_s));
            } else if !(r.offset_s.is_finite() && (0.0..r.cycle_s).contains(&r.offset_s)) {
                v.add("offset_s", format!("{} s is outside 0..{} s (the cycle)", r.offset_s, r.cycle_s));
            }
            let splits = convert::splits_table(&r.splits_s, "splits_s", &mut v);
            v.check("coordination")?;
            let staged = {
                let mut edit = self.core.docs.edit(i);
                check_version(r.expected_version, &edit)?;
                let mut table = edit.doc().table.clone();
                coordinate_plan(&mut table, number, &r, splits)?;
                let fields = convert::PlanFields { prefix: "", number, splits: &r.splits_s };
                let operator = Selection {
                    plan: r.activate.then_some(number),
                    reference: (r.reference_unix_ms != 0).then(|| Instant::from_millis(r.reference_unix_ms)),
                };
                self.stage(i, &mut edit, (table, None), operator, Some(&fields), &change)?
            };
            self.select(i, r.activate.then_some(number)).await?;
            if r.reference_unix_ms != 0 {
                let reference = Instant::from_millis(r.reference_unix_ms);
                self.controller(i, Command::SetCoordinationReference(reference), "reference_unix_ms").await?;
            }
            Ok((
                format!(
                    "config version {}{} staged (plan {number}: cycle {} s, offset {} s)",
                    staged.version,
                    saved_as(staged.saved),
                    r.cycle_s,
                    r.offset_s
                ),
                (staged, number),
            ))
        };
        let ((staged, number), seq) =
            self.audited(&caller, SET_COORDINATION, &r.intersection_id, what.clone(), act).await?;
        Ok(plan_applied(staged, number, seq))
    }

    async fn request_preemption(
        &self,
        req: Request<pb::PreemptionRequest>,
    ) -> Result<Response<pb::ControlReply>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let what = format!("preempt {} {}", r.input, if r.active { "call" } else { "release" });
        let act = async |i| {
            let input = u8::try_from(r.input)
                .ok()
                .filter(|n| (1..=8).contains(n))
                .ok_or_else(|| convert::invalid("input", format!("{} is not a preempt input (1..=8)", r.input)))?;
            self.controller(i, Command::Preempt { input, active: r.active }, "input").await?;
            let detail = if r.active {
                format!("preempt {input} called: entry through full clearance, then dwell")
            } else {
                format!("preempt {input} released: exit to normal operation")
            };
            Ok((detail.clone(), detail))
        };
        let (detail, seq) = self.audited(&caller, PREEMPT, &r.intersection_id, what, act).await?;
        Ok(self.reply(detail, seq))
    }

    async fn request_priority(&self, req: Request<pb::PriorityRequest>) -> Result<Response<pb::ControlReply>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let what = format!("priority phase {} {}", r.phase, if r.active { "check-in" } else { "check-out" });
        let act = async |i| {
            let phase = convert::phase(r.phase, "phase")?;
            self.controller(i, Command::Priority { phase, active: r.active }, "phase").await?;
            let detail = if r.active {
                format!("priority checked in on phase {phase}: early green or extension within the plan's bounds")
            } else {
                format!("priority checked out on phase {phase}")
            };
            Ok((detail.clone(), detail))
        };
        let (detail, seq) = self.audited(&caller, PRIORITY, &r.intersection_id, what, act).await?;
        Ok(self.reply(detail, seq))
    }

    async fn hold_phases(&self, req: Request<pb::PhasesRequest>) -> Result<Response<pb::ControlReply>, Status> {
        self.phases(req, HOLD).await
    }

    async fn release_phases(&self, req: Request<pb::PhasesRequest>) -> Result<Response<pb::ControlReply>, Status> {
        self.phases(req, RELEASE).await
    }

    async fn omit_phases(&self, req: Request<pb::OmitPhasesRequest>) -> Result<Response<pb::ControlReply>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let what = format!("omit phases {:?}", r.phases);
        let act = async |i| {
            // Empty is meaningful here (no operator omits), unlike a hold's list.
            let set = if r.phases.is_empty() { PhaseSet::EMPTY } else { phase_set(&r.phases)? };
            self.controller(i, Command::Omit(set), "phases").await?;
            let detail = if set.is_empty() {
                "operator omits cleared".to_owned()
            } else {
                format!("phases {set} omitted (their calls are ignored)")
            };
            Ok((detail.clone(), detail))
        };
        let (detail, seq) = self.audited(&caller, OMIT, &r.intersection_id, what, act).await?;
        Ok(self.reply(detail, seq))
    }

    async fn start_emergency_route(
        &self,
        req: Request<pb::StartEmergencyRouteRequest>,
    ) -> Result<Response<pb::EmergencyRouteReply>, Status> {
        let caller = identity(&req)?;
        self.routes.start(&caller, req.into_inner(), Relay::ToOthers).await
    }

    async fn update_emergency_vehicle(
        &self,
        req: Request<pb::UpdateEmergencyVehicleRequest>,
    ) -> Result<Response<pb::EmergencyRouteReply>, Status> {
        let caller = identity(&req)?;
        self.routes.update(&caller, req.into_inner(), Relay::ToOthers).await
    }

    async fn cancel_emergency_route(
        &self,
        req: Request<pb::EmergencyRouteId>,
    ) -> Result<Response<pb::EmergencyRouteReply>, Status> {
        let caller = identity(&req)?;
        self.routes.cancel(&caller, req.into_inner(), Relay::ToOthers).await
    }

    async fn get_emergency_route(
        &self,
        req: Request<pb::EmergencyRouteId>,
    ) -> Result<Response<pb::EmergencyRouteReply>, Status> {
        let caller = identity(&req)?;
        self.routes.get(&caller, req.into_inner()).await
    }

    async fn reset_monitor(&self, req: Request<pb::ResetMonitorRequest>) -> Result<Response<pb::ControlReply>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let act = async |i| {
            self.port().reset_monitor(i).await.map_err(|e| status(e, "intersection_id"))?;
            Ok(("monitor reset: restarting through the start-up sequence".into(), ()))
        };
        let ((), seq) = self.audited(&caller, RESET_MONITOR, &r.intersection_id, "reset monitor".into(), act).await?;
        Ok(self.reply("monitor reset".into(), seq))
    }

    async fn list_versions(
        &self,
        req: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let act = async |i| {
            let file = self.saved_file(i)?;
            let versions = file.list().map_err(|e| Status::unavailable(format!("saved versions unreadable: {e}")))?;
            let versions: Vec<pb::SavedVersion> = versions
                .into_iter()
                .map(|v| pb::SavedVersion {
                    number: v.number,
                    saved_unix_ms: v.provenance.saved_unix_ms,
                    saved_by: v.provenance.saved_by,
                    method: v.provenance.method,
                    what: v.provenance.what,
                    current: v.current,
                })
                .collect();
            Ok((format!("{} saved versions", versions.len()), versions))
        };
        let (versions, audit_seq) =
            self.audited(&caller, LIST_VERSIONS, &r.intersection_id, "list versions".into(), act).await?;
        Ok(Response::new(pb::ListVersionsResponse { versions, audit_seq }))
    }

    async fn rollback_version(
        &self,
        req: Request<pb::RollbackVersionRequest>,
    ) -> Result<Response<pb::ApplyTimingPlanResponse>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let what = format!("rollback to version {}", r.number);
        let change = Change { caller: &caller, method: ROLLBACK, what: &what };
        let act = async |i| {
            let file = self.saved_file(i)?;
            let mut edit = self.core.docs.edit(i);
            check_version(r.expected_version, &edit)?;
            let body = file.body(r.number).map_err(|e| match e {
                SaveError::NoSuchVersion(_) => {
                    Status::not_found(format!("number: {e} (ListVersions lists those kept)"))
                }
                e => Status::unavailable(format!("number: {e}")),
            })?;
            let table = body.parse::<toml::Table>().map_err(|e| {
                Status::failed_precondition(format!("number: version {} is not valid TOML: {}", r.number, e.message()))
            })?;
            let number = self.running_plan(i);
            let staged = self.stage(i, &mut edit, (table, Some(&body)), Selection::default(), None, &change)?;
            Ok((
                format!(
                    "version {} back as config version {}{}: in force at the next barrier",
                    r.number,
                    staged.version,
                    saved_as(staged.saved)
                ),
                (staged, number),
            ))
        };
        let ((staged, number), seq) = self.audited(&caller, ROLLBACK, &r.intersection_id, what.clone(), act).await?;
        Ok(plan_applied(staged, number, seq))
    }
}

/// ", saved as version N" for an audit detail, when it was saved.
fn saved_as(saved: u64) -> String {
    if saved == 0 { String::new() } else { format!(", saved as version {saved}") }
}

impl ControlService {
    async fn phases(
        &self,
        req: Request<pb::PhasesRequest>,
        method: &'static str,
    ) -> Result<Response<pb::ControlReply>, Status> {
        let caller = identity(&req)?;
        let r = req.into_inner();
        let hold = method == HOLD;
        let what = format!("{} phases {:?}", if hold { "hold" } else { "release" }, r.phases);
        let act = async |i| {
            let set = phase_set(&r.phases)?;
            self.controller(i, if hold { Command::Hold(set) } else { Command::Release(set) }, "phases").await?;
            let detail = if hold { format!("phases {set} held once green") } else { format!("phases {set} released") };
            Ok((detail.clone(), detail))
        };
        let (detail, seq) = self.audited(&caller, method, &r.intersection_id, what, act).await?;
        Ok(self.reply(detail, seq))
    }
}

/// Sets plan `number`'s cycle, offset and splits in a controller document
/// as `r` asks: `given` is `r`'s splits as a table; when it gives none, the
/// plan's splits are scaled to the new cycle.
fn coordinate_plan(
    table: &mut toml::Table,
    number: u8,
    r: &pb::SetCoordinationRequest,
    given: toml::Table,
) -> Result<(), Status> {
    let plans = plans_mut(table)?;
    let plan = plans
        .iter_mut()
        .find(|p| plan_number_of(p) == Some(i64::from(number)))
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| convert::invalid("plan_number", format!("plan {number} is not defined")))?;
    if plan.get("mode").and_then(toml::Value::as_str) == Some("free") {
        return Err(convert::invalid(
            "plan_number",
            format!("plan {number} is free (no cycle): coordination needs a coordinated or fixed plan"),
        ));
    }
    let old_cycle = plan.get("cycle_s").and_then(|v| v.as_float().or_else(|| v.as_integer().map(|n| n as f64)));
    let splits = if r.splits_s.is_empty() {
        let scale = old_cycle.filter(|&c| c > 0.0).map_or(1.0, |c| r.cycle_s / c);
        let mut scaled = toml::Table::new();
        if let Some(old) = plan.get("splits_s").and_then(toml::Value::as_table) {
            for (phase, v) in old {
                let s = v.as_float().or_else(|| v.as_integer().map(|n| n as f64)).unwrap_or(0.0);
                // Milliseconds: ring sums stay within the 50 ms tolerance.
                scaled.insert(phase.clone(), ((s * scale * 1000.0).round() / 1000.0).into());
            }
        }
        scaled
    } else {
        given
    };
    plan.insert("cycle_s".into(), r.cycle_s.into());
    plan.insert("offset_s".into(), r.offset_s.into());
    plan.insert("splits_s".into(), splits.into());
    Ok(())
}
