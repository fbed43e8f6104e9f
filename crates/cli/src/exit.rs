//! Exit codes (documented in the README; unknown codes must be treated as failure) and the
//! mapping of errors to them.

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// Any failure not listed below.
pub const FAILURE: u8 = 1;
/// Usage error (bad flags or arguments).
pub const USAGE: u8 = 2;
/// The command completed but with findings (e.g. a backup of a damaged source written with
/// `--allow-inconsistent`, or `inspect` finding consistency errors).
pub const FINDINGS: u8 = 3;
/// Repository missing, foreign, or of a newer format.
pub const REPOSITORY: u8 = 10;
/// The repository is locked by another process (see `unlock`).
pub const LOCKED: u8 = 11;
/// Verification failed: a blob is missing or corrupt, or a backup breaks a consistency rule.
pub const VERIFY_FAILED: u8 = 12;
/// The source is not an InfluxDB 3 node (wrong node id, empty or foreign directory).
pub const NOT_A_NODE: u8 = 13;
/// No consistent backup could be captured (the source is damaged, or changes too fast).
pub const INCONSISTENT: u8 = 14;
/// Restore refused: the target is not empty, holds an incomplete restore, or a server runs on it.
pub const TARGET_REFUSED: u8 = 15;
/// An object store could not be used: missing bucket, refused credentials, unreachable endpoint.
pub const STORE_ACCESS: u8 = 16;
/// The repository key is missing or wrong (encrypted repositories).
pub const KEY: u8 = 17;
/// The source is an Enterprise cluster on the PachaTree storage engine, whose files cannot be
/// copied consistently: use the server's own backup (and `create --builtin-backup`).
pub const PACHA_TREE: u8 = 18;
/// Interrupted (Ctrl-C, SIGINT); nothing was committed.
pub const INTERRUPTED: u8 = 130;
/// Stopped by SIGTERM (systemd, Kubernetes, `kill`), handled as an interrupt.
pub const TERMINATED: u8 = 143;

/// An error that carries its exit code and, optionally, the fix.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What went wrong (names the object and the cause).
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Failure {
    /// A failure with an exit code and a message.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Attach the fix.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error chain: the first error in the chain that has a known class.
pub fn code_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.code;
        }
        if let Some(e) = cause.downcast_ref::<ib3_repo::Error>() {
            return match e {
                ib3_repo::Error::NotFound { .. }
                | ib3_repo::Error::Foreign { .. }
                | ib3_repo::Error::UnsupportedVersion { .. }
                | ib3_repo::Error::NoSuchBackup { .. }
                | ib3_repo::Error::NoBackups { .. } => REPOSITORY,
                ib3_repo::Error::Corrupt { .. } => VERIFY_FAILED,
                ib3_repo::Error::Locked { .. } => LOCKED,
                ib3_repo::Error::Key { .. } => KEY,
                _ => FAILURE,
            };
        }
        if let Some(e) = cause.downcast_ref::<ib3_influx::Error>() {
            return match e {
                ib3_influx::Error::NotANode { .. } => NOT_A_NODE,
                ib3_influx::Error::Inconsistent { .. } => INCONSISTENT,
                _ => FAILURE,
            };
        }
    }
    FAILURE
}

/// The hint attached to an error chain, if any.
pub fn hint_of(error: &anyhow::Error) -> Option<&str> {
    error
        .chain()
        .find_map(|c| c.downcast_ref::<Failure>())
        .and_then(|f| f.hint.as_deref())
}
