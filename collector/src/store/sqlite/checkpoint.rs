//! Background checkpoints: the thread that copies the log into the database so the
//! writer does not have to (see "Checkpoints" in the SQLite store's module documentation).

use std::path::Path;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{SqliteStore, BUSY_TIMEOUT};
use crate::store::{StoreError, StoreResult};

impl SqliteStore {
    /// Counts `bytes` as committed and wakes the checkpointer once enough have been.
    pub(super) fn committed(&self, bytes: u64) {
        let total = self
            .uncheckpointed
            .fetch_add(bytes, AtomicOrdering::Relaxed)
            .saturating_add(bytes);
        if total >= self.background_after_bytes {
            self.uncheckpointed.store(0, AtomicOrdering::Relaxed);
            self.checkpointer.wake();
        }
    }

    /// How many checkpoints the background thread has completed.
    pub fn background_checkpoints(&self) -> u64 {
        self.checkpointer.done()
    }

    /// Waits until the background thread has completed at least `n` checkpoints, for at
    /// most `timeout`; returns whether it had.
    pub fn wait_for_background_checkpoints(&self, n: u64, timeout: Duration) -> bool {
        self.checkpointer.wait_done(n, timeout)
    }
}

/// The thread that checkpoints the log in the background, with its own connection.
/// Checkpoints are `PASSIVE`: they copy what no reader still needs and never wait for the
/// writer or readers, so the writer is never held up by them. Stopped and joined on drop.
pub(super) struct Checkpointer {
    shared: Arc<CheckpointShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct CheckpointShared {
    state: Mutex<CheckpointState>,
    /// Signalled when a checkpoint is wanted or the thread must stop.
    wake: Condvar,
    /// Signalled after each checkpoint.
    finished: Condvar,
}

#[derive(Default)]
struct CheckpointState {
    wanted: bool,
    stop: bool,
    /// Checkpoints completed.
    done: u64,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> StoreResult<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let shared = Arc::new(CheckpointShared::default());
        let theirs = Arc::clone(&shared);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&conn, &theirs, &shown))
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CheckpointState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        self.lock().wanted = true;
        self.shared.wake.notify_one();
    }

    fn done(&self) -> u64 {
        self.lock().done
    }

    fn wait_done(&self, n: u64, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .shared
            .finished
            .wait_timeout_while(state, timeout, |s| s.done < n)
            .unwrap_or_else(PoisonError::into_inner);
        state.done >= n
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn checkpoint_loop(conn: &Connection, shared: &CheckpointShared, path: &str) {
    loop {
        {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.wanted && !state.stop {
                state = shared
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if state.stop {
                return;
            }
            state.wanted = false;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((log, copied)) => {
                tracing::debug!(database = path, log, copied, "checkpoint");
                shared
                    .state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .done += 1;
                shared.finished.notify_all();
            }
            // Nothing is lost: the pages stay in the log, and the writer checkpoints
            // itself once the log is large.
            Err(e) => tracing::warn!(database = path, error = %e, "background checkpoint failed"),
        }
    }
}
