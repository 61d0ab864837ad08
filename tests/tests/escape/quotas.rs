//! Quota storms: a run takes every inotify instance, queued signal or pipe
//! buffer page the kernel lets it, holds them, and meanwhile the suite
//! probes the same counter where the run must not reach: host root's (the
//! caller's), or another run's. The controls run the same storm where it
//! is charged to the prober: as a throwaway uid outside, or in two runs
//! made to share one host uid.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_core::{RunIds, Sandbox, Stdio};
use sandbox_policy::Policy;

use crate::attacks::{Attempt, errno_text};
use crate::{ControlResult, Observed, Suite};

/// How long a storm holds what it took.
const HOLD: Duration = Duration::from_secs(6);

/// Blocks the first real-time signal and queues one to this process.
///
/// # Safety
///
/// Plain signal calls on this process; the signal stays pending (blocked).
unsafe fn queue_blocked_signal() -> libc::c_int {
    // SAFETY: see the function's contract.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGRTMIN());
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let value = libc::sigval {
            sival_ptr: std::ptr::null_mut(),
        };
        libc::sigqueue(libc::getpid(), libc::SIGRTMIN(), value)
    }
}

/// Takes `kind`'s counter until the kernel refuses, writes
/// `<marks>/<kind>` with the count, holds for [`HOLD`].
fn storm(kind: &str, marks: &str) -> Attempt {
    let mut held: Vec<i32> = Vec::new();
    let mut count = 0u64;
    let mut why = String::new();
    // SAFETY: inotify_init1, pipe2/fcntl, sigprocmask/sigqueue on this
    // process only, with live locals; fds are closed by the exit.
    unsafe {
        match kind {
            "inotify" => {
                while count < 100_000 {
                    let fd = libc::inotify_init1(libc::IN_CLOEXEC);
                    if fd < 0 {
                        why = errno_text();
                        break;
                    }
                    held.push(fd);
                    count += 1;
                }
            }
            "sigqueue" => {
                while count < 1_000_000 {
                    if queue_blocked_signal() < 0 {
                        why = errno_text();
                        break;
                    }
                    count += 1;
                }
            }
            "pipe" => {
                while count < 4096 {
                    let mut fds = [0; 2];
                    if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
                        why = errno_text();
                        break;
                    }
                    held.extend(fds);
                    if libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20) < 0 {
                        why = errno_text();
                        break;
                    }
                    count += 1;
                }
            }
            other => return Err(format!("no storm {other}")),
        }
    }
    let report = format!("{count} taken, then: {why}");
    std::fs::write(Path::new(marks).join(kind), &report).map_err(|e| e.to_string())?;
    std::thread::sleep(HOLD);
    drop(held);
    Ok(report)
}

/// One of what `kind`'s storm takes: works, or the kernel's answer.
fn probe(kind: &str) -> Attempt {
    // SAFETY: as in `storm`, one object; the fds are closed at once.
    unsafe {
        match kind {
            "inotify" => {
                let fd = libc::inotify_init1(libc::IN_CLOEXEC);
                if fd < 0 {
                    return Err(format!("inotify_init1: {}", errno_text()));
                }
                libc::close(fd);
                Ok("inotify_init1 worked".into())
            }
            "sigqueue" => {
                if queue_blocked_signal() < 0 {
                    return Err(format!("sigqueue: {}", errno_text()));
                }
                Ok("sigqueue worked".into())
            }
            "pipe" => {
                let mut fds = [0; 2];
                if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
                    return Err(format!("pipe2: {}", errno_text()));
                }
                let size = libc::fcntl(fds[1], libc::F_GETPIPE_SZ);
                libc::close(fds[0]);
                libc::close(fds[1]);
                if size >= 65536 {
                    Ok(format!("a new pipe got {size} bytes"))
                } else {
                    Err(format!("a new pipe got only {size} bytes"))
                }
            }
            other => Err(format!("no probe {other}")),
        }
    }
}

/// The attacks of this file, by name (`inotify-storm MARKS`,
/// `pipe-probe`, …).
pub(crate) fn attack(name: &str, arg: Option<&str>) -> Option<Attempt> {
    let (kind, what) = name.rsplit_once('-')?;
    match what {
        "storm" => Some(storm(kind, arg.unwrap_or("/marks"))),
        "probe" => Some(probe(kind)),
        _ => None,
    }
}

/// Waits for a storm's mark; its text, or why not.
fn wait_for_mark(marks: &Path, kind: &str) -> Result<String, String> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(text) = std::fs::read_to_string(marks.join(kind))
            && !text.is_empty()
        {
            return Ok(text);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("no {kind} storm mark within 60 s"))
}

/// A directory anyone may write: the runs' host uids differ from ours.
fn marks_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn storm_sandbox(exe_dir: &str, marks: &Path, ids: Option<RunIds>) -> Sandbox {
    let sandbox = Sandbox::new(
        Policy::from_toml_str(&format!(
            "[filesystem]\nbinds = [{{ source = \"{exe_dir}\", target = \"{exe_dir}\" }}, \
             {{ source = \"{}\", target = \"/marks\", writable = true }}]\n\
             [resources]\nopen_files = 1024\n",
            marks.display()
        ))
        .unwrap(),
    )
    .unwrap();
    match ids {
        Some(ids) => sandbox.with_run_ids(ids).unwrap(),
        None => sandbox,
    }
}

fn run_attack(exe: &str, args: &[&str], uid: Option<u32>) -> Observed {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(exe);
    cmd.arg("--attack").args(args);
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid).current_dir("/");
        // SAFETY: setrlimit(2) in the child before exec, on plain values.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 4096,
                    rlim_max: 4096,
                };
                libc::setrlimit(libc::RLIMIT_SIGPENDING, &limit);
                Ok(())
            });
        }
    }
    match cmd.output() {
        Ok(out) => crate::parse(&out.stdout, &out.stderr),
        Err(e) => Observed::NoReport(e.to_string()),
    }
}

/// A throwaway host uid for the controls: in no range a run or an account
/// uses.
fn throwaway_uid() -> u32 {
    3_000_000_000 + std::process::id() % 1_000_000
}

/// The storm in a run; the probe on the host as root (inotify, queued
/// signals), or in a second run (pipe buffers: root is exempt from their
/// limits, other runs are not).
fn storm_case(suite: &mut Suite, exe_dir: &str, kind: &str) {
    let exe = suite.exe.clone();
    let marks = marks_dir();
    let sandbox = storm_sandbox(exe_dir, marks.path(), None);
    let storm_name = format!("{kind}-storm");
    let probe_name = format!("{kind}-probe");
    let running = sandbox
        .command(&exe)
        .args(["--attack", &storm_name, "/marks"])
        .stdin(Stdio::Null)
        .spawn();
    let observed = match running.map_err(|e| e.to_string()).and_then(|mut child| {
        let mark = wait_for_mark(marks.path(), kind);
        let probed = if kind == "pipe" {
            let other = storm_sandbox(exe_dir, marks.path(), None);
            let out = other.command(&exe).args(["--attack", &probe_name]).output();
            match out {
                Ok(out) => crate::parse(&out.stdout, &out.stderr),
                Err(e) => Observed::NoReport(e.to_string()),
            }
        } else {
            run_attack(&exe, &[&probe_name], None)
        };
        let _ = child.wait();
        Ok((mark?, probed))
    }) {
        Err(e) => Observed::NoReport(e),
        Ok((mark, Observed::Worked(evidence))) => Observed::Refused(format!(
            "the run's storm: {mark}; meanwhile {}: {evidence}",
            if kind == "pipe" {
                "another run"
            } else {
                "host root"
            }
        )),
        Ok((mark, Observed::Refused(why))) => {
            Observed::Worked(format!("the run's storm ({mark}) starved the probe: {why}"))
        }
        Ok((_, no_report)) => no_report,
    };

    // The control: the same storm where it is charged to the prober.
    let uid = throwaway_uid();
    let control_marks = marks_dir();
    let control = if kind == "pipe" {
        match RunIds::new(uid, 1) {
            Err(e) => ControlResult::Failed(e),
            Ok(one_id) => {
                let shared = storm_sandbox(exe_dir, control_marks.path(), Some(one_id));
                let running = shared
                    .command(&exe)
                    .args(["--attack", &storm_name, "/marks"])
                    .stdin(Stdio::Null)
                    .spawn();
                match running {
                    Err(e) => ControlResult::Failed(e.to_string()),
                    Ok(mut child) => {
                        let _ = wait_for_mark(control_marks.path(), kind);
                        let out = shared
                            .command(&exe)
                            .args(["--attack", &probe_name])
                            .output();
                        let _ = child.wait();
                        match out.map(|o| crate::parse(&o.stdout, &o.stderr)) {
                            Ok(Observed::Refused(why)) => ControlResult::Worked(format!(
                                "two runs sharing host uid {uid}: the probe run {why}"
                            )),
                            Ok(other) => ControlResult::Failed(format!(
                                "two runs sharing a uid, the probe was not starved: {}",
                                describe(other)
                            )),
                            Err(e) => ControlResult::Failed(e.to_string()),
                        }
                    }
                }
            }
        }
    } else {
        let marks_path = control_marks.path().display().to_string();
        let exe_storm = exe.clone();
        let storm_thread = std::thread::spawn(move || {
            run_attack(&exe_storm, &[&storm_name, &marks_path], Some(uid))
        });
        let _ = wait_for_mark(control_marks.path(), kind);
        let probed = run_attack(&exe, &[&probe_name], Some(uid));
        let _ = storm_thread.join();
        match probed {
            Observed::Refused(why) => ControlResult::Worked(format!(
                "the same storm as throwaway uid {uid} starved that uid's probe: {why}"
            )),
            other => ControlResult::Failed(format!(
                "the storm outside did not starve its uid: {}",
                describe(other)
            )),
        }
    };
    suite.push(
        format!("{kind} storm, held while probing"),
        "held",
        observed,
        control,
    );
}

fn describe(observed: Observed) -> String {
    match observed {
        Observed::Worked(e) => format!("worked: {e}"),
        Observed::Refused(e) => format!("refused: {e}"),
        Observed::NoReport(e) => format!("no report: {e}"),
    }
}

pub(crate) fn quota_cases(suite: &mut Suite, exe_dir: &str) {
    for kind in ["inotify", "sigqueue", "pipe"] {
        storm_case(suite, exe_dir, kind);
    }
}
