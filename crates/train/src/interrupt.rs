//! A request to stop training now, made from outside the training loop: a
//! signal (Slurm's warning before a time limit or a preemption, SIGTERM)
//! sets the flag, and the trainer stops after its current round, keeping
//! the checkpoint of the last finished epoch, so that `--resume` repeats
//! the interrupted epoch from its start, bit for bit as if it had not been
//! interrupted. The work of the unfinished epoch is the price.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// The flag itself, for a signal handler to set (`signal_hook::flag`).
pub fn stop_flag() -> Arc<AtomicBool> {
    STOP.clone()
}

/// Asks the running training to stop after its current round.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Forgets a stop asked for earlier (before training again in the same
/// process).
pub fn clear_stop() {
    STOP.store(false, Ordering::SeqCst);
}
