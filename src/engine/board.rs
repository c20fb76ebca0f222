//! The snapshot board: the latest [`Snapshot`] of every intersection, for
//! readers (terminal view, API) that must never touch the control thread.
//!
//! The engine sends snapshots by value through a bounded channel; one
//! board thread stores them behind `ArcSwap`s, so a reader takes a
//! consistent copy with a wait-free load and the engine never waits on a
//! reader.

use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwapOption;
use crossbeam_channel::Receiver;

use crate::core::Snapshot;

#[derive(Debug)]
pub struct SnapshotBoard {
    slots: Vec<ArcSwapOption<Snapshot>>,
}

impl SnapshotBoard {
    pub fn new(intersections: usize) -> Arc<Self> {
        Arc::new(SnapshotBoard { slots: (0..intersections).map(|_| ArcSwapOption::empty()).collect() })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The latest snapshot of intersection `i`, if one has arrived.
    pub fn get(&self, i: usize) -> Option<Arc<Snapshot>> {
        self.slots.get(i)?.load_full()
    }

    pub fn store(&self, i: usize, s: Snapshot) {
        if let Some(slot) = self.slots.get(i) {
            slot.store(Some(Arc::new(s)));
        }
    }

    /// Feed the board from the engine's snapshot channel until it closes.
    pub fn spawn_feeder(self: &Arc<Self>, rx: Receiver<(usize, Snapshot)>) -> std::io::Result<JoinHandle<()>> {
        let board = self.clone();
        std::thread::Builder::new().name("greenwave-board".into()).spawn(move || {
            while let Ok((i, s)) = rx.recv() {
                board.store(i, s);
            }
        })
    }
}
