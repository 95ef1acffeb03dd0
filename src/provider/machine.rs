//! The two traits every provider implements: [`Provider`] (one per run: credentials, preflight,
//! launch, the run's own cleanup) and [`Machine`] (one per cell: the engine drives it through launch
//! -> running -> screenshots and probes -> console log -> terminate).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    AccessError, CleanupStep, ConnectMeaning, Endpoint, Health, Identity, ImagePromotion, Ledger, PromotionRequest,
    ProviderError, Resource, RunKey, Unreachable,
};
use crate::cell::Cell;

/// What a provider's preflight found.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub warnings: Vec<String>,
    /// Cells that can't run as asked: (cell id, why), the why a lowercase fragment.
    pub impossible: Vec<(String, String)>,
    /// What no cell can do, one line each (a permission the credentials lack): any refuses the
    /// whole run, `--skip-impossible` or not.
    pub refused: Vec<String>,
    /// What the check resolved that the plan could not know (the image an SSM parameter names), one
    /// line each: `plan --check` shows them.
    pub resolved: Vec<String>,
}

/// What a cell needs to launch its machine.
#[derive(Debug, Clone)]
pub struct LaunchContext {
    pub run_id: String,
    /// Which try of the cell this is (`retries`), from 0: a new try is a new launch, never taken
    /// for a repeat of the last one (EC2's client tokens).
    pub try_number: u32,
    /// The cell's own output directory (screenshots, console log).
    pub cell_dir: PathBuf,
    /// Guest ports the probes will connect to.
    pub probe_ports: Vec<u16>,
    /// Some probe runs commands through the platform's agent: the machine gets its channel.
    pub agent: bool,
    /// Where the probes come from (`run --probe-from`): what a security group made for the run opens
    /// the probed ports to.
    pub probe_from: Vec<ipnet::IpNet>,
    pub ledger: Ledger,
    /// Set when the run is interrupted: a launch finishes the call in flight (never abandons a
    /// create), starts no further one, and removes what it made before returning `Interrupted`.
    pub cancel: tokio_util::sync::CancellationToken,
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Checks the credentials in every place the cells run (EC2: one GetCallerIdentity per
    /// region), before anything else: who they belong to, `None` where the provider has no
    /// accounts (QEMU). On error nothing may have been created.
    async fn identity(&self, cells: &[Cell]) -> Result<Option<Identity>, AccessError> {
        let _ = cells;
        Ok(None)
    }

    /// Checks what can be checked before anything is created: warnings to show, and the cells that
    /// can't run as asked (an image that doesn't exist, an arm64 image on an x86 type...).
    async fn preflight(&self, cells: &[Cell]) -> Result<Checked, ProviderError>;

    /// Creates the cell's machine. On error, whatever was created is already in the ledger.
    async fn launch(&self, cell: &Cell, ctx: &LaunchContext) -> Result<Box<dyn Machine>, ProviderError>;

    /// Removes resources left in the ledger by cells that could not clean up after themselves, taking
    /// each one it removed off the ledger.
    async fn remove_leftovers(&self, leftovers: Vec<Resource>, ledger: &Ledger) -> Vec<CleanupStep>;

    /// The last step of every run, interrupted or not: finds whatever still carries the run's id
    /// (something a cell lost track of) and removes it, taking what it removed off the ledger. Each
    /// step names the resource.
    async fn sweep_run(&self, run_id: &str, ledger: &Ledger) -> Vec<CleanupStep>;

    /// Acts on a finished run's verdict where the spec asks to (EC2: `on_pass`): once per image all
    /// of whose cells passed, unless the request is withheld. `None`: the spec asks for nothing.
    /// What it writes is meant to stay: it is in no ledger, and no cleanup removes it.
    async fn promote(&self, request: &PromotionRequest) -> Option<Vec<ImagePromotion>> {
        let _ = request;
        None
    }
}

#[async_trait]
pub trait Machine: Send + Sync {
    /// What the report shows about the machine (instance id, address, type; or the QEMU command line).
    fn facts(&self) -> serde_json::Value;

    /// Waits until the machine runs; fails when it stops or `timeout` passes.
    async fn wait_running(&mut self, timeout: Duration) -> Result<(), ProviderError>;

    /// Where a guest port can be reached from here, or why it can't.
    fn endpoint(&self, guest_port: u16) -> Result<Endpoint, Unreachable>;

    /// Things worth a line in the timeline that happened during launch (capacity fallbacks).
    fn launch_notes(&self) -> Vec<String> {
        Vec::new()
    }

    /// How long the launch waited for a slot under the provider's rate limits (not the provider's
    /// own time): shown apart in the timeline.
    fn queued(&self) -> Duration {
        Duration::ZERO
    }

    /// The addresses probes may contact unless `--allow-targets` says otherwise.
    fn own_addresses(&self) -> Vec<ipnet::IpNet>;

    /// Whether a completed TCP connection proves the guest listens.
    fn connect_meaning(&self) -> ConnectMeaning;

    /// The platform's agent inside the machine, when the launch asked for it (`LaunchContext::agent`)
    /// and the provider has one.
    fn agent(&self) -> Option<std::sync::Arc<dyn super::Agent>> {
        None
    }

    /// A screenshot of the console (PNG, JPEG or PPM bytes).
    async fn screenshot(&mut self) -> Result<Vec<u8>, ProviderError>;

    /// Refreshes the console log while the machine runs (for providers that only keep the latest part).
    async fn poll_console(&mut self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The whole console log so far.
    async fn console_log(&mut self) -> Result<String, ProviderError>;

    /// For a console that stayed empty: the last thing known to have happened before it should have
    /// spoken (QEMU: the firmware's last boot message), e.g. "`Booting from Hard Disk...` (firmware.log)".
    /// `None` where an empty console proves nothing (EC2 serves console output minutes late).
    async fn before_console(&mut self) -> Option<String> {
        None
    }

    /// How often the engine refreshes and checks the console while the machine runs: the sooner a
    /// fatal sign is seen, the sooner a broken machine stops (and stops billing).
    fn console_poll_interval(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// Whether the machine stopped by itself (powered off, panicked, its process exited), and why, as
    /// a lowercase fragment ("guest panicked", "qemu exited (exit status: 0)"). Checked on every
    /// console poll; `None` while it runs.
    async fn stopped(&mut self) -> Option<String> {
        None
    }

    /// Whether the running machine is unwell (a failed status check) or was ended by its platform
    /// (EC2 terminating it: not the machine stopping by itself), checked on every console poll like
    /// [`Machine::stopped`]; `None` while it is well or its provider can't tell.
    async fn health(&mut self) -> Option<Health> {
        None
    }

    /// The key the machine was given to log in with (the run's own key), for SSH probes; `None` when
    /// the spec named an existing key pair.
    fn login_key(&self) -> Option<Arc<RunKey>> {
        None
    }

    /// Where the machine's Windows administrator password can be fetched (EC2's GetPasswordData).
    fn admin_password(&self) -> Option<Arc<dyn AdminPassword>> {
        None
    }

    /// Reboots the running machine the way its platform does (`reboot: true`): EC2's
    /// RebootInstances, QEMU's system reset.
    async fn reboot(&mut self) -> Result<(), ProviderError> {
        Err(ProviderError::unsupported("this provider can't reboot a machine"))
    }

    /// Leaves the (failed) machine running for someone to look at until `until`, when `amiprobe
    /// sweep` removes it (`--keep-failed`); returns how to reach it.
    async fn keep(&mut self, until: std::time::SystemTime) -> Result<String, ProviderError> {
        let _ = until;
        Err(ProviderError::unsupported("this provider keeps no machine after its run"))
    }

    /// Stops the machine and removes what was created for it; `hurry` skips waiting for confirmation.
    async fn terminate(&mut self, hurry: bool) -> Vec<CleanupStep>;
}

/// A Windows machine's administrator password as its platform keeps it: encrypted to the run's key.
#[async_trait]
pub trait AdminPassword: Send + Sync {
    /// The encrypted password (base64), or `None` while the platform doesn't have it yet.
    async fn encrypted(&self) -> Result<Option<String>, ProviderError>;
}
