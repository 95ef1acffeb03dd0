//! The signals that interrupt a run: SIGINT (Ctrl-C), SIGTERM (CI cancelling a job) and SIGHUP (a
//! closed terminal or SSH session), all meaning "stop and clean up".
//!
//! They are installed before anything else happens in `run`, so that no moment of a run can be
//! killed by a signal's default action with machines running. Installing a handler also replaces an
//! inherited "ignore" (a background job in a shell script starts with SIGINT ignored): a run that
//! creates cloud machines must stop cleanly whoever asks it to.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Installs the handlers; must be called inside the runtime.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}
