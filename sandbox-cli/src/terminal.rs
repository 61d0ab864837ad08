//! `sbx run --tty`: the caller's terminal in raw mode while the command's
//! own terminal is relayed to it (restored on every way out: return,
//! error, panic, a signal to sbx, and while sbx is suspended), its window
//! size passed on, signals to sbx passed on to the command, and job
//! control: a command stopped from its terminal (^Z) suspends sbx, and
//! `fg` continues both.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use rustix::termios::{OptionalActions, Termios};
use sandbox_core::{ChildControl, JobControl};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};

/// Whether a run gets a terminal: `--tty`, `--no-tty`, or (neither) when
/// both stdin and stdout are terminals.
pub(crate) fn wanted(tty: bool, no_tty: bool) -> bool {
    if tty || no_tty {
        return tty;
    }
    rustix::termios::isatty(std::io::stdin()) && rustix::termios::isatty(std::io::stdout())
}

/// The caller's terminal (stdin): its modes as they were, and whether it
/// is raw now.
struct Modes {
    saved: Termios,
    raw: bool,
}

/// The caller's terminal in raw mode until dropped (shared with the
/// threads that suspend and resume it).
#[derive(Clone)]
pub(crate) struct RawMode(Arc<Mutex<Modes>>);

impl RawMode {
    /// Puts stdin's terminal in raw mode (keys go to the command's
    /// terminal as they are typed; its line discipline handles ^C, ^Z and
    /// echo). `None` if stdin is no terminal.
    pub(crate) fn enter() -> Option<RawMode> {
        let saved = rustix::termios::tcgetattr(std::io::stdin()).ok()?;
        let mode = RawMode(Arc::new(Mutex::new(Modes { saved, raw: false })));
        mode.resume();
        Some(mode)
    }

    /// Raw again (after a suspension).
    fn resume(&self) {
        let mut modes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut raw = modes.saved.clone();
        raw.make_raw();
        if rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &raw).is_ok() {
            modes.raw = true;
        }
    }

    /// The caller's modes back (before sbx suspends, and at the end).
    fn restore(&self) {
        let mut modes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if modes.raw {
            let _ =
                rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &modes.saved);
            modes.raw = false;
        }
    }
}

/// Restores the caller's terminal when the run's guard goes.
pub(crate) struct Restore(pub(crate) Option<RawMode>);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(mode) = &self.0 {
            mode.restore();
        }
    }
}

/// The sandbox, once spawned, for the signal and job-control threads.
#[derive(Clone, Default)]
pub(crate) struct Target(Arc<Mutex<TargetState>>);

#[derive(Default)]
struct TargetState {
    control: Option<ChildControl>,
    /// Signals to end sbx so far (the second kills the sandbox).
    ending: u32,
    /// One that came before the sandbox existed (passed on once it does).
    pending: Option<i32>,
}

impl Target {
    /// The sandbox is running: signals that came first reach it now.
    pub(crate) fn set(&self, control: ChildControl) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match (state.pending.take(), state.ending) {
            (Some(signal), 1) => {
                let _ = control.signal(signal);
            }
            (Some(_), _) => {
                let _ = control.kill();
            }
            (None, _) => {}
        }
        state.control = Some(control);
    }

    fn with<T>(&self, f: impl FnOnce(&mut TargetState) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Passes our window size to the command's terminal.
fn pass_size(control: &ChildControl) {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout()) {
        let _ = control.resize(size.ws_row, size.ws_col);
    }
}

/// Handles sbx's signals in a thread for the rest of the process: a window
/// size change is passed to the command's terminal; SIGINT, SIGTERM,
/// SIGHUP and SIGQUIT are passed on to the command (the run then ends as
/// usual, the terminal restored and the report printed), and a second one
/// kills the sandbox.
///
/// # Errors
///
/// If the handlers could not be installed.
pub(crate) fn watch_signals(target: Target) -> Result<(), String> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT])
            .map_err(|e| format!("install the signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("sbx-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                target.with(|state| match (signal, &state.control) {
                    (SIGWINCH, Some(control)) => pass_size(control),
                    (SIGWINCH, None) => {}
                    (_, Some(control)) => {
                        state.ending += 1;
                        let _ = if state.ending == 1 {
                            control.signal(signal)
                        } else {
                            control.kill()
                        };
                    }
                    (_, None) => {
                        state.ending += 1;
                        state.pending = Some(signal);
                    }
                });
            }
        })
        .map_err(|e| format!("start the signal thread: {e}"))?;
    Ok(())
}

/// Stops this whole process until a SIGCONT. `raise` directs the signal
/// at this thread, so it stops before its next instruction (a signal to
/// the process could be taken by another thread, and this one go on to
/// make the terminal raw again first); SIGSTOP, since a SIGTSTP to an
/// orphaned process group is dropped.
#[allow(unsafe_code)]
fn stop_self() {
    // SAFETY: raise(3) only sends a signal to the calling thread.
    unsafe {
        libc::raise(libc::SIGSTOP);
    }
}

/// A channel for the run's job-control changes, and a thread that acts on
/// them: when the command is stopped, sbx gives the caller's terminal back
/// and stops itself (as the shell's job it is); when continued (`fg`), it
/// takes the terminal raw again and continues the command.
pub(crate) fn job_control(
    target: Target,
    raw: Option<RawMode>,
) -> Result<Sender<JobControl>, String> {
    let (tx, rx): (Sender<JobControl>, Receiver<JobControl>) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sbx-jobs".into())
        .spawn(move || {
            for event in rx {
                if let JobControl::Stopped(_) = event {
                    if let Some(raw) = &raw {
                        raw.restore();
                    }
                    stop_self();
                    if let Some(raw) = &raw {
                        raw.resume();
                    }
                    target.with(|state| {
                        if let Some(control) = &state.control {
                            pass_size(control);
                            let _ = control.signal(libc::SIGCONT);
                        }
                    });
                }
            }
        })
        .map_err(|e| format!("start the job-control thread: {e}"))?;
    Ok(tx)
}
