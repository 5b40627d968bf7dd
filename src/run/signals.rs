//! The signals `d2v run` handles itself while a VM runs: SIGINT, SIGTERM and
//! SIGHUP ask for a stop (the image's STOPSIGNAL, then SIGKILL after
//! `--stop-timeout`), SIGWINCH resizes the guest's terminal. The VMM runs in
//! its own session, so a terminal's Ctrl-C reaches only d2v.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::sync::atomic::{AtomicUsize, Ordering};

static STOPS: AtomicUsize = AtomicUsize::new(0);
static WINCH: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_stop(_sig: libc::c_int) {
    STOPS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_winch(_sig: libc::c_int) {
    WINCH.fetch_add(1, Ordering::SeqCst);
}

/// Installs the handlers (idempotent).
pub fn install() {
    let stop = SigAction::new(
        SigHandler::Handler(on_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    let winch = SigAction::new(
        SigHandler::Handler(on_winch),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only increments an atomic counter.
        let _ = unsafe { sigaction(sig, &stop) };
    }
    // SAFETY: as above.
    let _ = unsafe { sigaction(Signal::SIGWINCH, &winch) };
}

/// Stop requests received so far.
pub fn stops() -> usize {
    STOPS.load(Ordering::SeqCst)
}

/// Terminal resizes received so far.
pub fn resizes() -> usize {
    WINCH.load(Ordering::SeqCst)
}
