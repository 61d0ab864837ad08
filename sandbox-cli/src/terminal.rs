//! `sbx run --tty`: the caller's terminal in raw mode while the command's
//! own terminal is relayed to it (restored on every way out: return,
//! error, panic, a signal to sbx), its window size passed on, and the
//! signals that would end sbx ending the sandbox first.

use std::sync::{Arc, Mutex, PoisonError};

use rustix::termios::{OptionalActions, Termios};
use sandbox_core::ChildControl;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};

/// Whether a run gets a terminal: `--tty`, `--no-tty`, or (neither) when
/// both stdin and stdout are terminals.
pub(crate) fn wanted(tty: bool, no_tty: bool) -> bool {
    if tty || no_tty {
        return tty;
    }
    rustix::termios::isatty(std::io::stdin()) && rustix::termios::isatty(std::io::stdout())
}

/// The caller's terminal (stdin) in raw mode until dropped.
pub(crate) struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode (keys go to the command's
    /// terminal as they are typed; its line discipline handles ^C, ^Z and
    /// echo). `None` if stdin is no terminal.
    pub(crate) fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// The sandbox, once spawned, for the signal thread.
#[derive(Clone, Default)]
pub(crate) struct Target(Arc<Mutex<TargetState>>);

#[derive(Default)]
struct TargetState {
    control: Option<ChildControl>,
    /// A signal to end sbx came before the sandbox existed.
    doomed: bool,
}

impl Target {
    /// The sandbox is running: a signal that came first kills it now.
    pub(crate) fn set(&self, control: ChildControl) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if state.doomed {
            let _ = control.kill();
        }
        state.control = Some(control);
    }

    fn with(&self, f: impl FnOnce(&mut TargetState)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Handles sbx's signals in a thread for the rest of the process: a window
/// size change is passed to the command's terminal; SIGINT, SIGTERM,
/// SIGHUP and SIGQUIT kill the sandbox (the run then ends as usual, the
/// terminal restored and the report printed, instead of sbx dying with the
/// terminal raw).
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
                    (SIGWINCH, Some(control)) => {
                        if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout()) {
                            let _ = control.resize(size.ws_row, size.ws_col);
                        }
                    }
                    (SIGWINCH, None) => {}
                    (_, Some(control)) => {
                        let _ = control.kill();
                    }
                    (_, None) => state.doomed = true,
                });
            }
        })
        .map_err(|e| format!("start the signal thread: {e}"))?;
    Ok(())
}
