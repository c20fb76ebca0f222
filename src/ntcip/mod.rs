//! The NTCIP 1202 agent: actuated signal controller objects over SNMP
//! (v1, v2c, v3 with USM authentication and privacy) for central systems,
//! off unless `[ntcip]` turns it on (`src/config/ntcip.rs`;
//! `docs/standards.md`, "NTCIP 1202", maps every object).
//!
//! # Layout
//! - [`mib`]: the objects served, GENERATED from the NTCIP 1202 v02 and
//!   NTCIP 1201 v02 MIB texts by `tools/ntcip_mib.py`: OID, writability,
//!   range, wire type.
//! - [`objects`]: what each object reads as, from a definition and a
//!   snapshot (pure).
//! - [`timing`]: timing SETs as edits of the controller file (pure).
//! - this module: the UDP agent (the `async-snmp` crate does BER, USM and
//!   VACM), one handler for the `asc` subtree and one for the NTCIP 1201
//!   time base (`global` 3.3), which pick the intersection, read, and turn
//!   SETs into the gRPC Control service's commands ([`Gateway`]: same
//!   checks, staging at the barrier, saving, audit); and the
//!   `unitBackupTime` timer.
//!
//! # Intersections
//! One daemon, several intersections, one UDP port: a v1/v2c community
//! reaches one intersection (`[[ntcip.community]]`), and an SNMPv3 request
//! names its intersection as the context name (`snmpget -n elm-and-oak`);
//! a user that reaches a single intersection may leave the context empty.
//!
//! # Loss of the centre
//! `unitBackupTime` (seconds, 0 = off) runs from the centre's last SET of
//! `systemPatternControl` (or of `unitBackupTime`). When it runs out while
//! the centre commands a pattern, the centre's command is dropped
//! (`systemPatternControl` reads 0) and the intersection goes back to its
//! time-of-day schedule, mode and plan, at the next barrier: Greenwave's
//! backup mode. `unitControlStatus` reads backupMode(4) until the centre
//! sets something again.
//!
//! # Isolation from the control thread
//! Reads take the latest snapshot from the board (wait-free) and the
//! definition in force from the API's documents; SETs go through the
//! engine's bounded command channel, as gRPC's do. The agent runs on the
//! API's runtime.

// Generated: kept byte for byte as tools/ntcip_mib.py writes it.
#[rustfmt::skip]
pub mod mib;
pub mod objects;
pub mod timing;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_snmp::agent::{Agent, SecurityModel};
use async_snmp::handler::{
    BoxFuture, GetNextResult, GetResult, HandlerResult, MibHandler, PreparedSet, RequestContext, SetCommitError,
    SetCommitResult, SetTestError, SetTestResult, SetUndoResult,
};
use async_snmp::message::SecurityLevel;
use async_snmp::v3::{AuthoritativeEngine, PersistedAuthoritativeEngine};
use async_snmp::{AuthProtocol, Oid, PrivProtocol, Value, VarBind};
use tokio::time::Instant as TokioInstant;

use crate::api::auth::Identity;
use crate::api::docs::Docs;
use crate::api::gateway::Gateway;
use crate::config::Role;
use crate::config::ntcip::{self, NtcipConfig};
use crate::core::OperatingMode;
use crate::engine::board::SnapshotBoard;

use mib::{DEVICES, Entry, OBJECTS, Object};
use objects::{CentreState, MAX_PATTERN, PATTERN_FLASH, PATTERN_FREE, View};
use timing::TimingSet;

/// `asc` (devices.1): NTCIP 1202's actuated signal controller objects.
const ASC: [u32; 10] = [1, 3, 6, 1, 4, 1, 1206, 4, 2, 1];
/// `timebase` (devices.6.3.3, `global.globalTimeManagement.timebase`):
/// NTCIP 1201's time base schedule and day plans.
const TIMEBASE: [u32; 12] = [1, 3, 6, 1, 4, 1, 1206, 4, 2, 6, 3, 3];
/// `timebaseAscActionNumber` (asc.5.3.1.1): a day plan event's action
/// names the time-base action of this column with the action's number.
const TIMEBASE_ASC_ACTION: [u32; 15] = [1, 3, 6, 1, 4, 1, 1206, 4, 2, 1, 5, 3, 1, 1, 0];

/// The audit log's name for the agent's commands.
const SYSTEM_PATTERN_CONTROL: &str = "NTCIP 1202 systemPatternControl";
const BACKUP_TIMER: &str = "NTCIP 1202 unitBackupTime expired";
/// How often the backup timers are checked.
const BACKUP_CHECK: Duration = Duration::from_secs(1);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum NtcipError {
    #[error("ntcip.{key}: no intersection \"{id}\" in this daemon")]
    UnknownIntersection { key: String, id: String },
    #[error("ntcip.engine_file {path}: {reason}")]
    EngineFile { path: String, reason: String },
    #[error("ntcip.user \"{user}\": {reason}")]
    User { user: String, reason: String },
    #[error("starting the SNMP agent on {addr}: {reason}")]
    Agent { addr: SocketAddr, reason: String },
}

/// What the agent reads from and commands.
#[derive(Clone, Debug)]
pub struct Sources {
    /// Intersection ids, in the engine's order.
    pub ids: Vec<String>,
    pub docs: Arc<Docs>,
    pub board: Arc<SnapshotBoard>,
    pub control: Gateway,
}

/// A running agent.
pub struct NtcipServer {
    /// The UDP address bound (the real port when the config said port 0).
    pub addr: SocketAddr,
    agent: Arc<Agent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for NtcipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtcipServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl NtcipServer {
    /// Stops answering and ends the backup timers.
    pub async fn shutdown(self) {
        self.agent.cancel();
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Who a request comes from, once its community or user is known.
#[derive(Clone, Debug)]
struct Caller {
    principal: Arc<str>,
    role: Role,
    /// A community's one intersection; `None`: the context name says.
    intersection: Option<usize>,
    /// A user's intersections; `None`: all.
    scope: Option<Arc<[String]>>,
}

/// One intersection's centre-facing state and its backup timer.
#[derive(Clone, Copy, Debug, Default)]
struct Centre {
    state: CentreState,
    /// The centre's last SET that restarts the backup timer.
    last_set: Option<TokioInstant>,
}

/// The handler registered for one subtree (`asc`, or the time base);
/// SETs it prepares hold the state.
#[derive(Clone, Debug)]
struct Subtree {
    state: Arc<State>,
    /// The subtree's OID.
    root: &'static [u32],
}

/// A SET request, as the agent's context tells one from another.
type RequestKey = (SocketAddr, i32, TokioInstant);

/// The timing SETs of the request being tested: the agent runs one SET
/// request at a time, tests every binding, then commits them in order.
#[derive(Debug)]
struct RequestEdit {
    key: RequestKey,
    i: usize,
    sets: Vec<TimingSet>,
}

#[derive(Debug)]
struct State {
    sources: Sources,
    communities: HashMap<Vec<u8>, Caller>,
    users: HashMap<Vec<u8>, Caller>,
    centres: Mutex<Vec<Centre>>,
    request: Mutex<Option<RequestEdit>>,
}

/// Binds `cfg.listen` and serves the agent on the current tokio runtime.
///
/// # Errors
/// A community or user names an intersection this daemon does not run,
/// the engine file cannot be read or written, or the address cannot be
/// bound.
pub async fn serve(cfg: &NtcipConfig, sources: Sources) -> Result<NtcipServer, NtcipError> {
    let index = |key: String, id: &str| {
        sources.ids.iter().position(|x| x == id).ok_or_else(|| NtcipError::UnknownIntersection { key, id: id.into() })
    };
    let mut communities = HashMap::new();
    for (k, c) in cfg.communities.iter().enumerate() {
        let i = index(format!("community[{}].intersection", k + 1), &c.intersection)?;
        let caller = Caller {
            principal: format!("ntcip community {} ({})", k + 1, c.intersection).into(),
            role: c.role,
            intersection: Some(i),
            scope: Some(Arc::from([c.intersection.clone()])),
        };
        communities.insert(c.community.as_bytes().to_vec(), caller);
    }
    let mut users = HashMap::new();
    for (k, u) in cfg.users.iter().enumerate() {
        if let Some(ids) = &u.intersections {
            for id in ids {
                index(format!("user[{}].intersections", k + 1), id)?;
            }
        }
        let only = match u.intersections.as_deref() {
            Some([one]) => Some(index(String::new(), one)?),
            Some(_) => None,
            None if sources.ids.len() == 1 => Some(0),
            None => None,
        };
        let caller = Caller {
            principal: format!("ntcip user {}", u.name).into(),
            role: u.role,
            intersection: only,
            scope: u.intersections.clone().map(Arc::from),
        };
        users.insert(u.name.as_bytes().to_vec(), caller);
    }
    let centres = Mutex::new(vec![Centre::default(); sources.ids.len()]);
    let state = Arc::new(State { sources, communities, users, centres, request: Mutex::default() });
    let asc = Arc::new(Subtree { state: state.clone(), root: &ASC });
    let timebase = Arc::new(Subtree { state: state.clone(), root: &TIMEBASE });

    let mut builder = Agent::builder()
        .bind(cfg.listen.to_string())
        .handler(Oid::from_slice(&ASC), asc)
        .handler(Oid::from_slice(&TIMEBASE), timebase);
    for c in &cfg.communities {
        builder = builder.community(c.community.as_bytes());
    }
    if !cfg.users.is_empty() {
        builder = builder.authoritative_engine(engine(cfg.engine_file.as_deref())?);
    }
    for u in &cfg.users {
        builder = builder
            .usm_user(u.name.clone(), |user| {
                let auth = match u.auth {
                    ntcip::AuthProtocol::Sha1 => AuthProtocol::Sha1,
                    ntcip::AuthProtocol::Sha256 => AuthProtocol::Sha256,
                };
                match &u.privacy {
                    Some((ntcip::PrivacyProtocol::Aes128, text)) => {
                        user.auth_priv(auth, &u.auth_passphrase, PrivProtocol::Aes128, text)
                    }
                    None => user.auth(auth, &u.auth_passphrase),
                }
            })
            .map_err(|e| NtcipError::User { user: u.name.clone(), reason: e.to_string() })?;
    }
    // VACM: every community and user reads the whole tree (the system
    // group and `asc`); operators also write `asc` (the handler takes only
    // the objects the MIB table marks writable). A user is held to the
    // security level it is configured for: no unauthenticated or clear
    // request passes under its name.
    let asc_oid = Oid::from_slice(&ASC);
    let everything = Oid::from_slice(&[1, 3, 6, 1]);
    builder = builder.vacm(|mut v| {
        v = v.view("all", |view| view.include(everything.clone())).view("asc", |view| view.include(asc_oid.clone()));
        for (k, c) in cfg.communities.iter().enumerate() {
            let group = format!("community-{k}");
            for model in [SecurityModel::V1, SecurityModel::V2c] {
                v = v.group(c.community.as_bytes().to_vec(), model, group.clone()).access(
                    group.clone(),
                    model,
                    SecurityLevel::NoAuthNoPriv,
                    |a| {
                        if c.role == Role::Operator { a.read_view("all").write_view("asc") } else { a.read_view("all") }
                    },
                );
            }
        }
        for (k, u) in cfg.users.iter().enumerate() {
            let group = format!("user-{k}");
            let level = if u.privacy.is_some() { SecurityLevel::AuthPriv } else { SecurityLevel::AuthNoPriv };
            v = v.group(u.name.as_bytes().to_vec(), SecurityModel::Usm, group.clone()).access(
                group,
                SecurityModel::Usm,
                level,
                |a| {
                    let a = a.context_prefix("").context_match_prefix().read_view("all");
                    if u.role == Role::Operator { a.write_view("asc") } else { a }
                },
            );
        }
        v
    });
    let agent = builder.build().await.map_err(|e| NtcipError::Agent { addr: cfg.listen, reason: e.to_string() })?;
    let agent = Arc::new(agent);
    let addr = agent.local_addr();
    let serving = agent.clone();
    let run = tokio::spawn(async move {
        if let Err(e) = serving.run().await {
            tracing::error!(error = %e, "NTCIP agent stopped");
        }
    });
    let backup = tokio::spawn(backup_timers(state));
    let versions = if cfg.users.is_empty() { "v1/v2c" } else { "v1/v2c/v3" };
    tracing::info!("NTCIP 1202 agent on udp {addr} (SNMP {versions})");
    Ok(NtcipServer { addr, agent, tasks: vec![run, backup] })
}

/// The SNMPv3 engine: from `file` (`<engine id hex> <boots>`, boots + 1
/// written back before use, as RFC 3414 asks), or installed there; without
/// a file a new engine id each start.
fn engine(file: Option<&std::path::Path>) -> Result<AuthoritativeEngine, NtcipError> {
    let shown = file.map_or_else(|| "(none)".to_owned(), |p| p.display().to_string());
    let failed = |reason: String| NtcipError::EngineFile { path: shown.clone(), reason };
    let new_id = || async_snmp::v3::generate_engine_id().map_err(|e| failed(e.to_string()));
    let Some(path) = file else {
        return AuthoritativeEngine::install(new_id()?, |_| Ok::<(), std::io::Error>(()))
            .map_err(|e| failed(e.to_string()));
    };
    let target = path.to_path_buf();
    let persist = move |e: &PersistedAuthoritativeEngine| {
        std::fs::write(&target, format!("{} {}\n", hex(e.engine_id()), e.engine_boots()))
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut words = text.split_whitespace();
            let id = words.next().and_then(unhex).ok_or_else(|| failed("no engine id (hex) first".into()))?;
            let boots = words
                .next()
                .and_then(|b| b.parse::<u32>().ok())
                .ok_or_else(|| failed("no boots counter after the engine id".into()))?;
            let previous = PersistedAuthoritativeEngine::new(id, boots).map_err(|e| failed(e.to_string()))?;
            AuthoritativeEngine::restart(previous, persist).map_err(|e| failed(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            AuthoritativeEngine::install(new_id()?, persist).map_err(|e| failed(e.to_string()))
        }
        Err(e) => Err(failed(e.to_string())),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|k| u8::from_str_radix(text.get(k..k + 2)?, 16).ok()).collect()
}

/// Every second: an intersection whose centre commands a pattern and has
/// set nothing for `unitBackupTime` goes back to its schedule (backup mode).
async fn backup_timers(asc: Arc<State>) {
    let mut every = tokio::time::interval(BACKUP_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timer = Identity { principal: "ntcip backup timer".into(), role: Role::Operator, peer: None, scope: None };
    loop {
        every.tick().await;
        let now = TokioInstant::now();
        let expired: Vec<usize> = {
            let mut centres = asc.lock_centres();
            centres
                .iter_mut()
                .enumerate()
                .filter_map(|(i, c)| {
                    let limit = Duration::from_secs(c.state.backup_time_s.into());
                    let due = c.state.backup_time_s > 0
                        && c.state.pattern_control != 0
                        && c.last_set.is_some_and(|t| now.duration_since(t) >= limit);
                    due.then(|| {
                        c.state = CentreState { pattern_control: 0, in_backup: true, ..c.state };
                        c.last_set = None;
                        i
                    })
                })
                .collect()
        };
        for i in expired {
            let id = &asc.sources.ids[i];
            match asc.sources.control.follow_schedule(&timer, BACKUP_TIMER, id).await {
                Ok(detail) => tracing::warn!(intersection = %id, "NTCIP centre silent past unitBackupTime: {detail}"),
                Err(status) => {
                    tracing::error!(intersection = %id, error = %status.message(), "NTCIP backup mode not entered")
                }
            }
        }
    }
}

impl State {
    /// Tests timing SET `set` of the request in `ctx` for intersection
    /// `i`: its row must be in the controller file (else noCreation), and
    /// the file with the request's phase times so far and this one must
    /// pass the file validator (else inconsistentValue, the reason in the
    /// log). Split times are judged at commit, with the request's other
    /// splits: a split table only adds up to its cycle as a whole.
    fn test_timing(&self, ctx: &RequestContext, i: usize, set: TimingSet) -> Result<RequestKey, SetTestError> {
        let key = (ctx.source(), ctx.request_id(), ctx.received_at());
        let mut request = self.request.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let sets = match request.take() {
            Some(r) if r.key == key && r.i == i => r.sets,
            _ => Vec::new(),
        };
        let control = &self.sources.control;
        let id = &self.sources.ids[i];
        let phase_times: Vec<TimingSet> =
            sets.iter().copied().chain([set]).filter(|s| s.object != Object::SplitTime).collect();
        let no_row = |status: tonic::Status| {
            tracing::warn!(intersection = %id, error = %status.message(), "NTCIP timing SET: no such row");
            SetTestError::NoCreation
        };
        control.edited(i, |table| edit_all(table, &[set])).map_err(no_row)?;
        let checked = if phase_times.is_empty() {
            Ok(())
        } else {
            let (text, _) = control.edited(i, |table| edit_all(table, &phase_times)).map_err(no_row)?;
            control.check(i, &text).map_err(|status| {
                tracing::warn!(intersection = %id, error = %status.message(), "NTCIP timing SET inconsistent");
                SetTestError::InconsistentValue
            })
        };
        if checked.is_ok() {
            let mut sets = sets;
            sets.push(set);
            *request = Some(RequestEdit { key, i, sets });
        }
        checked.map(|()| key)
    }

    /// The timing SETs of request `key`, once (the first commit takes them).
    fn take_request(&self, key: RequestKey) -> Option<RequestEdit> {
        let mut request = self.request.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if request.as_ref().is_some_and(|r| r.key == key) { request.take() } else { None }
    }

    fn lock_centres(&self) -> std::sync::MutexGuard<'_, Vec<Centre>> {
        // Every change is a whole-value write: a poisoned lock holds whole values.
        self.centres.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The caller and the intersection a request is about; `None` when
    /// its community or user is unknown (VACM let it through only if
    /// configured) or its context names no intersection it reaches.
    fn resolve(&self, ctx: &RequestContext) -> Option<(usize, Caller)> {
        let name = ctx.security_name().as_bytes();
        let caller = match ctx.security_model() {
            SecurityModel::Usm => self.users.get(name)?,
            _ => self.communities.get(name)?,
        };
        let context = ctx.context_name();
        let i = if context.is_empty() {
            caller.intersection?
        } else {
            let id = std::str::from_utf8(context).ok()?;
            let i = self.sources.ids.iter().position(|x| x == id)?;
            if caller.scope.as_ref().is_some_and(|s| !s.iter().any(|x| x == id)) {
                return None;
            }
            i
        };
        Some((i, caller.clone()))
    }

    fn identity(caller: &Caller, ctx: &RequestContext) -> Identity {
        Identity {
            principal: caller.principal.clone(),
            role: caller.role,
            peer: Some(ctx.source()),
            scope: caller.scope.clone(),
        }
    }

    /// Reads intersection `i` through `read`.
    fn with_view<T>(&self, i: usize, read: impl FnOnce(&View<'_>) -> T) -> T {
        let current = self.sources.docs.current(i);
        let snap = self.sources.board.get(i);
        let centre = self.lock_centres()[i].state;
        read(&View { spec: &current.config.spec, snap: snap.as_deref(), centre })
    }
}

/// The served object `oid` is an instance of, and its index arcs.
fn locate(oid: &Oid) -> Option<(&'static Entry, &[u32])> {
    let rest = oid.arcs().strip_prefix(&DEVICES[..])?;
    OBJECTS.iter().find_map(|e| rest.strip_prefix(e.arcs).map(|index| (e, index)))
}

/// An instance's index as the table names it: `.0` for a scalar.
fn instance<'a>(entry: &Entry, index: &'a [u32]) -> Option<&'a [u32]> {
    if entry.columnar {
        Some(index)
    } else if index == [0] {
        Some(&[])
    } else {
        None
    }
}

fn full_oid(entry: &Entry, row: &[u32]) -> Oid {
    let mut arcs: Vec<u32> = DEVICES.iter().chain(entry.arcs).copied().collect();
    if entry.columnar {
        arcs.extend_from_slice(row);
    } else {
        arcs.push(0);
    }
    Oid::from_slice(&arcs)
}

/// A value as the MIB types `entry`: INTEGER; Gauge32 for a range past
/// INTEGER's (the SMIv2 Unsigned32 encoding); for an OBJECT IDENTIFIER
/// (`dayPlanActionNumberOID`) the time-base action numbered `v`, or the
/// null OID 0.0 for none.
fn wire(entry: &Entry, v: i64) -> Value {
    if entry.oid {
        let mut action = TIMEBASE_ASC_ACTION;
        return match u32::try_from(v) {
            Ok(n) if n > 0 => {
                action[action.len() - 1] = n;
                Value::ObjectIdentifier(Oid::from_slice(&action))
            }
            _ => Value::ObjectIdentifier(Oid::from_slice(&[0, 0])),
        };
    }
    if entry.unsigned {
        return Value::Gauge32(u32::try_from(v).unwrap_or(u32::MAX));
    }
    Value::Integer(i32::try_from(v).unwrap_or(i32::MAX))
}

impl Subtree {
    /// Whether `entry` is in this handler's subtree.
    fn holds(&self, entry: &Entry) -> bool {
        entry.arcs.starts_with(&self.root[DEVICES.len()..])
    }
}

impl MibHandler for Subtree {
    fn get<'a>(&'a self, ctx: &'a RequestContext, oid: &'a Oid) -> BoxFuture<'a, HandlerResult<GetResult>> {
        Box::pin(async move {
            let Some((i, _)) = self.state.resolve(ctx) else { return Ok(GetResult::NoSuchObject) };
            let Some((entry, index)) = locate(oid).filter(|(e, _)| self.holds(e)) else {
                return Ok(GetResult::NoSuchObject);
            };
            let value = instance(entry, index).and_then(|row| self.state.with_view(i, |v| v.value(entry.object, row)));
            Ok(value.map_or(GetResult::NoSuchInstance, |v| GetResult::Value(wire(entry, v))))
        })
    }

    fn get_next<'a>(&'a self, ctx: &'a RequestContext, oid: &'a Oid) -> BoxFuture<'a, HandlerResult<GetNextResult>> {
        Box::pin(async move {
            let Some((i, _)) = self.state.resolve(ctx) else { return Ok(GetNextResult::EndOfMibView) };
            let next = self.state.with_view(i, |v| {
                OBJECTS.iter().filter(|e| self.holds(e)).find_map(|entry| {
                    v.rows(entry.object).into_iter().find_map(|row| {
                        let candidate = full_oid(entry, &row);
                        if &candidate <= oid {
                            return None;
                        }
                        v.value(entry.object, &row).map(|value| VarBind::new(candidate, wire(entry, value)))
                    })
                })
            });
            Ok(next.map_or(GetNextResult::EndOfMibView, GetNextResult::Value))
        })
    }

    fn test_set<'a>(&'a self, ctx: &'a RequestContext, oid: &'a Oid, value: &'a Value) -> BoxFuture<'a, SetTestResult> {
        Box::pin(async move {
            let (i, caller) = self.state.resolve(ctx).ok_or(SetTestError::NoAccess)?;
            let (entry, index) = locate(oid).filter(|(e, _)| self.holds(e)).ok_or(SetTestError::NoAccess)?;
            let Some(row) = instance(entry, index) else { return Err(SetTestError::NoCreation) };
            if self.state.with_view(i, |v| v.value(entry.object, row)).is_none() {
                return Err(SetTestError::NoCreation);
            }
            if !entry.writable {
                return Err(SetTestError::NotWritable);
            }
            if caller.role != Role::Operator {
                return Err(SetTestError::NoAccess);
            }
            let Value::Integer(n) = *value else { return Err(SetTestError::WrongType) };
            let n = i64::from(n);
            if !(entry.range.0..=entry.range.1).contains(&n) {
                return Err(SetTestError::WrongValue);
            }
            let change = match entry.object {
                object if timing::is_timing(object) => {
                    let set = TimingSet { object, row: [row[0], row.get(1).copied().unwrap_or(0)], value: n };
                    Change::Timing(self.state.test_timing(ctx, i, set)?)
                }
                Object::UnitBackupTime => Change::BackupTime(n as u16),
                Object::SystemPatternControl => {
                    let pattern = n as u8;
                    // A pattern the running definition lacks is refused
                    // here (wrongValue) rather than run free as the MIB
                    // allows: the centre learns at once that it was not taken.
                    if (1..=MAX_PATTERN).contains(&pattern)
                        && self.state.sources.docs.current(i).config.spec.plan(pattern).is_none()
                    {
                        return Err(SetTestError::WrongValue);
                    }
                    Change::Pattern(pattern)
                }
                _ => return Err(SetTestError::NotWritable),
            };
            Ok(Box::new(Prepared {
                asc: self.state.clone(),
                i,
                identity: State::identity(&caller, ctx),
                change,
                before: None,
                file_before: None,
            }) as Box<dyn PreparedSet>)
        })
    }
}

/// What a SET changes.
#[derive(Clone, Copy, Debug)]
enum Change {
    BackupTime(u16),
    Pattern(u8),
    /// One of the timing SETs of this request (see [`RequestEdit`]).
    Timing(RequestKey),
}

/// A SET tested and ready: committed through the Control service.
struct Prepared {
    asc: Arc<State>,
    i: usize,
    identity: Identity,
    change: Change,
    /// The centre state before the commit, for undo.
    before: Option<Centre>,
    /// The controller file before this binding's commit applied the
    /// request's timing SETs, for undo.
    file_before: Option<String>,
}

impl PreparedSet for Prepared {
    fn commit<'a>(
        &'a mut self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
        _value: &'a Value,
    ) -> BoxFuture<'a, SetCommitResult> {
        Box::pin(async move {
            let id = &self.asc.sources.ids[self.i];
            let control = &self.asc.sources.control;
            let caller = &self.identity;
            let outcome = match self.change {
                // Not a system control object: the centre state and the
                // backup timer stay as they are.
                Change::Timing(key) => return self.commit_timing(key).await,
                Change::BackupTime(_) => Ok(String::new()),
                Change::Pattern(0) => control.follow_schedule(caller, SYSTEM_PATTERN_CONTROL, id).await,
                Change::Pattern(PATTERN_FREE) => {
                    control.set_mode_as(caller, SYSTEM_PATTERN_CONTROL, id, OperatingMode::Actuated).await
                }
                Change::Pattern(PATTERN_FLASH) => {
                    control.set_mode_as(caller, SYSTEM_PATTERN_CONTROL, id, OperatingMode::Flash).await
                }
                // The pattern with its own mode (coordinated, fixed or
                // free, as the plan says): the plan first, so a refused
                // plan changes nothing.
                Change::Pattern(n) => match control.select_plan(caller, SYSTEM_PATTERN_CONTROL, id, n).await {
                    Ok(_) => control.set_mode_as(caller, SYSTEM_PATTERN_CONTROL, id, OperatingMode::Scheduled).await,
                    Err(refused) => Err(refused),
                },
            };
            if let Err(status) = outcome {
                tracing::warn!(intersection = %id, error = %status.message(), "NTCIP SET refused at commit");
                return Err(SetCommitError::Failed);
            }
            let mut centres = self.asc.lock_centres();
            let centre = &mut centres[self.i];
            self.before = Some(*centre);
            match self.change {
                Change::BackupTime(s) => centre.state.backup_time_s = s,
                Change::Pattern(n) => centre.state.pattern_control = n,
                Change::Timing(_) => {}
            }
            centre.state.in_backup = false;
            centre.last_set = Some(TokioInstant::now());
            Ok(())
        })
    }

    /// Puts the agent's own state back, and the controller file the
    /// request's timing SETs replaced (staged again, so the barrier takes
    /// the file as it was); a command the controller already took stays
    /// (it is audited), as a later SET would replace it.
    fn undo<'a>(
        &'a mut self,
        _ctx: &'a RequestContext,
        _oid: &'a Oid,
        _value: &'a Value,
    ) -> BoxFuture<'a, SetUndoResult> {
        Box::pin(async move {
            if let Some(before) = self.before.take() {
                self.asc.lock_centres()[self.i] = before;
            }
            if let Some(text) = self.file_before.take() {
                let id = &self.asc.sources.ids[self.i];
                if let Err(status) = self.asc.sources.control.apply_controller(&self.identity, id, text, 0).await {
                    tracing::error!(intersection = %id, error = %status.message(), "NTCIP timing SET not undone");
                    return Err(async_snmp::handler::SetUndoError::Failed);
                }
            }
            Ok(())
        })
    }
}

impl Prepared {
    /// The request's timing SETs, all of them at the first timing
    /// binding's commit: one edit of the controller file, validated as a
    /// whole and staged to the next barrier through ApplyTimingPlan (over
    /// the version it was edited from), saved, audited. Later bindings of
    /// the request find it done.
    async fn commit_timing(&mut self, key: RequestKey) -> SetCommitResult {
        let Some(edit) = self.asc.take_request(key) else { return Ok(()) };
        let id = &self.asc.sources.ids[edit.i];
        let control = &self.asc.sources.control;
        let before = control.current(edit.i).config.text.clone();
        let applied = match control.edited(edit.i, |table| edit_all(table, &edit.sets)) {
            Ok((text, version)) => control.apply_controller(&self.identity, id, text, version).await,
            Err(status) => Err(status),
        };
        match applied {
            Ok(detail) => {
                tracing::info!(intersection = %id, sets = edit.sets.len(), %detail, "NTCIP timing SET");
                self.file_before = Some(before.to_string());
                Ok(())
            }
            Err(status) => {
                tracing::warn!(intersection = %id, error = %status.message(), "NTCIP timing SET refused at commit");
                Err(SetCommitError::Failed)
            }
        }
    }
}

/// `sets` written into the controller file `table`.
fn edit_all(table: &mut toml::Table, sets: &[TimingSet]) -> Result<(), tonic::Status> {
    sets.iter().try_for_each(|&set| timing::apply(table, set).map_err(|e| tonic::Status::not_found(e.to_string())))
}
