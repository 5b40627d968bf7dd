//! Ctrl-C and SIGTERM during `d2v build`: the running step is stopped, nothing
//! is recorded for it, and the build ends as cancelled (exit 130).

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicBool, Ordering};

static CANCEL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_sig: libc::c_int) {
    CANCEL.store(true, Ordering::SeqCst);
}

/// Installs the SIGINT and SIGTERM handlers and returns the flag they set,
/// which the executor polls (`executor::build`'s `cancel`).
pub fn cancel_on_signals() -> &'static AtomicBool {
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe, and it stays valid for the process's life.
        let _ = unsafe { sigaction(sig, &action) };
    }
    &CANCEL
}
