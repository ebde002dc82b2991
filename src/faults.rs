//! The fault seam of the crash-consistency tests.
//!
//! Every durable write of the gateway (the audit write-ahead file and the
//! store behind it, key files, policy files, the stops' stores) passes a
//! named point before each of its steps. In test builds (the
//! `fault-injection` feature, which the crate's own tests turn on) a test can
//! make a step fail, as a full disk would, or stop the process right before
//! it, as a crash would; in every other build [`point`] is an empty inline
//! function.
//!
//! - In the test process: [`arm`] a plan for one directory (each test
//!   gateway has its own), which says for each point reached under it
//!   whether to go on, fail the step, or stop.
//! - In a `tongban` process: `TONGBAN_FAULT_EXIT=NAME#N` stops the process
//!   (exit status [`EXIT_STATUS`]) on the `N`th time point `NAME` is reached,
//!   before its step; `TONGBAN_FAULT_TRACE=FILE` appends the name of every
//!   point reached to FILE, so a test can list the steps an operation takes.

use std::io;
use std::path::Path;

/// The exit status of a process stopped at a point.
pub const EXIT_STATUS: i32 = 86;

/// What a plan makes of a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The step fails with an I/O error.
    Fail,
    /// The process stops before the step.
    Exit,
}

/// Passes point `name` of a durable write under `dir`: `Ok` to go on with
/// the step, an error if a test makes it fail.
#[inline]
pub fn point(dir: &Path, name: &'static str) -> io::Result<()> {
    #[cfg(feature = "fault-injection")]
    {
        armed::point(dir, name)
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = (dir, name);
        Ok(())
    }
}

#[cfg(feature = "fault-injection")]
pub use armed::{Armed, arm};

#[cfg(feature = "fault-injection")]
mod armed {
    use std::io::{self, Write as _};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};

    use super::{EXIT_STATUS, Fault};

    type Plan = Arc<dyn Fn(&str) -> Option<Fault> + Send + Sync>;

    /// Plans armed in this process, by directory.
    fn plans() -> &'static Mutex<Vec<(u64, PathBuf, Plan)>> {
        static PLANS: OnceLock<Mutex<Vec<(u64, PathBuf, Plan)>>> = OnceLock::new();
        PLANS.get_or_init(Mutex::default)
    }

    /// A plan in force until dropped.
    #[derive(Debug)]
    pub struct Armed(u64);

    impl Drop for Armed {
        fn drop(&mut self) {
            if let Ok(mut p) = plans().lock() {
                p.retain(|(id, _, _)| *id != self.0);
            }
        }
    }

    /// Arms `plan` for the points reached under `dir`, until the guard drops.
    pub fn arm(dir: &Path, plan: impl Fn(&str) -> Option<Fault> + Send + Sync + 'static) -> Armed {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
        if let Ok(mut p) = plans().lock() {
            p.push((id, dir, Arc::new(plan)));
        }
        Armed(id)
    }

    /// `TONGBAN_FAULT_EXIT=NAME#N`, read once.
    fn exit_at() -> Option<&'static (String, u64, AtomicU64)> {
        static EXIT: OnceLock<Option<(String, u64, AtomicU64)>> = OnceLock::new();
        EXIT.get_or_init(|| {
            let v = std::env::var("TONGBAN_FAULT_EXIT").ok()?;
            let (name, n) = v.split_once('#').unwrap_or((&v, "1"));
            Some((name.to_owned(), n.parse().ok()?, AtomicU64::new(0)))
        })
        .as_ref()
    }

    pub(super) fn point(dir: &Path, name: &'static str) -> io::Result<()> {
        static TRACE: OnceLock<Option<std::ffi::OsString>> = OnceLock::new();
        if let Some(path) = TRACE.get_or_init(|| std::env::var_os("TONGBAN_FAULT_TRACE")) {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                // One write per line (O_APPEND): points reached on two
                // threads at once (the writer's and the applier's) never
                // interleave within a line.
                let _ = f.write_all(format!("{name}\n").as_bytes());
            }
        }
        if let Some((at, n, seen)) = exit_at() {
            if at == name && seen.fetch_add(1, Ordering::SeqCst) + 1 == *n {
                std::process::exit(EXIT_STATUS);
            }
        }
        let plan = plans().lock().ok().and_then(|p| {
            if p.is_empty() {
                return None;
            }
            let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
            p.iter()
                .find(|(_, d, _)| dir.starts_with(d))
                .map(|(_, _, plan)| plan.clone())
        });
        match plan.and_then(|plan| plan(name)) {
            None => Ok(()),
            Some(Fault::Fail) => Err(io::Error::other(format!("injected fault at {name}"))),
            Some(Fault::Exit) => std::process::exit(EXIT_STATUS),
        }
    }
}
