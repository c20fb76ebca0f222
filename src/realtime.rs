//! What the daemon asks of the kernel so that ordinary load on the host
//! cannot make it late: real-time scheduling for the threads on the signal
//! path, and memory locked in RAM.
//!
//! On a busy host (other processes at normal priority keeping every core
//! busy) a normal-priority thread waits its turn: writes to the cabinet
//! landed tens of milliseconds late, shortening the yellows and red
//! clearances the heads showed, and gaps of over a second flashed every
//! intersection for a lost link. So, in real time (`clock = "system"`):
//! - the control thread runs at SCHED_FIFO [`CONTROL_PRIORITY`];
//! - the cabinet I/O runtime's threads at SCHED_FIFO [`IO_PRIORITY`], below
//!   it: the engine's tick is never queued behind a cabinet exchange, and
//!   both preempt any normal process. They are async and sleep on timers
//!   (the 1 ms tick pulse included), so they never spin and starve the
//!   rest of the machine;
//! - everything else (the gRPC runtime, event log, view) stays at normal
//!   priority: an API client can never delay a write;
//! - memory is locked (`mlockall(MCL_CURRENT | MCL_FUTURE)`), so a page
//!   fault never waits for swap or a dropped page of the binary. That is
//!   process-wide, so `greenwave run` asks for it ([`lock_memory`]), not
//!   the library's daemon (tests start daemons in-process).
//!
//! Each of these the daemon cannot get is said once at start, with what
//! grants it (the capabilities and limits of `deploy/greenwave.service`,
//! and the container flags in `deploy/Containerfile`).

use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit};
use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// The control thread: above the cabinet I/O, with room above for kernel
/// threads and watchdogs.
pub const CONTROL_PRIORITY: u8 = 50;
/// The cabinet I/O runtime's threads: below the control thread, above
/// every normal process.
pub const IO_PRIORITY: u8 = 40;

/// What grants SCHED_FIFO, for the log line when it is refused.
const FIFO_GRANT: &str = "needs CAP_SYS_NICE or RLIMIT_RTPRIO >= 50: systemd AmbientCapabilities=CAP_SYS_NICE \
     and LimitRTPRIO=50 (deploy/greenwave.service), containers --cap-add SYS_NICE --ulimit rtprio=50";

/// Put the calling thread at SCHED_FIFO `priority` (1..=99) and say so, as
/// `who`: one info line when granted, one warning with what grants it when
/// not.
pub fn raise_current_thread(who: &str, priority: u8) {
    report_priority(who, priority, &set_fifo(priority));
}

/// Put the calling thread at SCHED_FIFO `priority`, saying nothing (for
/// threads that report once for a whole pool, [`report_priority`]).
pub fn set_fifo(priority: u8) -> Result<(), thread_priority::Error> {
    let value = ThreadPriorityValue::try_from(priority)
        .map_err(|_| thread_priority::Error::Priority("SCHED_FIFO priorities are 1..=99"))?;
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Crossplatform(value), policy)
}

/// The one log line for `who`'s scheduling.
pub fn report_priority(who: &str, priority: u8, outcome: &Result<(), thread_priority::Error>) {
    match outcome {
        Ok(()) => tracing::info!("{who} at real-time priority (SCHED_FIFO {priority})"),
        Err(e) => tracing::warn!(
            error = ?e,
            "{who} at normal priority: SCHED_FIFO {priority} not permitted ({FIFO_GRANT}); ordinary load on the host can delay it"
        ),
    }
}

/// Why memory was not locked.
#[derive(Debug, thiserror::Error)]
pub enum MemoryLockError {
    /// Locking under a finite limit would make every allocation past it
    /// fail later (`MCL_FUTURE`), so the daemon does not try.
    #[error("RLIMIT_MEMLOCK is {limit_kib} KiB and CAP_IPC_LOCK is not held")]
    Limited { limit_kib: u64 },
    #[error("reading RLIMIT_MEMLOCK: {0}")]
    Limit(nix::Error),
    #[error("mlockall: {0}")]
    Mlockall(nix::Error),
}

/// Lock the process's memory, present and future, and say so: one info
/// line, or one warning with what grants it.
pub fn lock_memory() {
    match try_lock_memory() {
        Ok(()) => tracing::info!("memory locked (mlockall): no page of the daemon waits for swap"),
        Err(e) => tracing::warn!(
            "memory not locked: {e} (needs CAP_IPC_LOCK or an unlimited RLIMIT_MEMLOCK: systemd LimitMEMLOCK=infinity \
             (deploy/greenwave.service), containers --cap-add IPC_LOCK --ulimit memlock=-1); a page fault can wait for swap"
        ),
    }
}

/// Lock the process's memory, present and future, or say why not.
pub fn try_lock_memory() -> Result<(), MemoryLockError> {
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).map_err(MemoryLockError::Limit)?;
    if soft != RLIM_INFINITY && !holds_cap_ipc_lock() {
        return Err(MemoryLockError::Limited { limit_kib: soft / 1024 });
    }
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).map_err(MemoryLockError::Mlockall)
}

/// CAP_IPC_LOCK (capability 14) in the effective set, from
/// `/proc/self/status`: it lifts RLIMIT_MEMLOCK.
fn holds_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status").ok().is_some_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
    })
}
