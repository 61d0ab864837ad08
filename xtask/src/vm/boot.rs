//! One boot of the matrix: QEMU with the run's share, the guest's console
//! read line by line, a watchdog for a guest that stops answering, and the
//! cells read back from what the guest left in the share.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Cell, Options, Outcome, kernel, select};
/// Boots `kernel` once in `layout`, runs every binary, reads the results.
pub(super) fn boot(
    options: &Options,
    kernel: &kernel::Kernel,
    initrd: &Path,
    layout: &str,
    binaries: &[select::TestBinary],
    root: &Path,
) -> Result<Vec<Cell>, String> {
    let share = root
        .join("runs")
        .join(format!("{}-{layout}", kernel.series));
    let _ = std::fs::remove_dir_all(&share);
    std::fs::create_dir_all(&share).map_err(|e| format!("create {}: {e}", share.display()))?;
    let write = |name: &str, text: &str| {
        std::fs::write(share.join(name), text).map_err(|e| format!("write {name}: {e}"))
    };
    write("guest.sh", include_str!("guest.sh"))?;
    write("layout", layout)?;
    write("timeout", &options.timeout.to_string())?;
    let as_root = super::runs_as_root(layout);
    // A harness-less binary (the escape suite, the tamper test) is root-only
    // and fails as anyone else: not run where the tests are not root.
    let (binaries, root_only): (Vec<_>, Vec<_>) =
        binaries.iter().partition(|b| b.harness || as_root);
    let mut plan = String::new();
    for b in &binaries {
        let mut args = b.args.clone();
        if b.harness {
            args.extend(select::libtest_args(as_root));
        }
        args.extend(options.filter.iter().cloned());
        plan.push_str(&format!(
            "{}\t{}\t{}\n",
            b.file_name(),
            b.executable.display(),
            args.join(" ")
        ));
    }
    write("plan", &plan)?;
    let fsdev = |id: &str, path: &Path, readonly: bool| {
        format!(
            "local,id={id},path={},security_model=none,multidevs=remap{}",
            path.display(),
            if readonly { ",readonly=on" } else { "" }
        )
    };
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", if options.kvm { "kvm" } else { "tcg" }])
        .args(["-cpu", "max", "-m", "4G", "-smp", "2"])
        .args(["-nographic", "-nic", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // Warnings reach the console (`loglevel=5`, not `quiet`): a soft
        // lockup's or a hung task's backtrace is the only account of a
        // guest stuck in the kernel.
        .args([
            "-append",
            "console=ttyS0 loglevel=5 panic=-1 8250.nr_uarts=1 softlockup_all_cpu_backtrace=1",
        ])
        .arg("-fsdev")
        .arg(fsdev("hostroot", Path::new("/"), true))
        .args(["-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"])
        .arg("-fsdev")
        .arg(fsdev("modules", &kernel.modules, true))
        .args(["-device", "virtio-9p-pci,fsdev=modules,mount_tag=modules"])
        .arg("-fsdev")
        .arg(fsdev("run", &share, false))
        .args(["-device", "virtio-9p-pci,fsdev=run,mount_tag=run"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "vm: booting {} ({}) in layout {layout}: {} test binaries",
        kernel.release,
        kernel.package,
        binaries.len()
    );
    let mut child = qemu
        .spawn()
        .map_err(|e| format!("start qemu-system-x86_64: {e}"))?;
    let console_path = share.join("console.log");
    let mut console = std::fs::File::create(&console_path)
        .map_err(|e| format!("create {}: {e}", console_path.display()))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let child = Arc::new(Mutex::new(child));
    let started = Instant::now();
    let heard = Arc::new(AtomicU64::new(0));
    let watchdog = {
        let (child, heard) = (Arc::clone(&child), Arc::clone(&heard));
        let limits = Limits::of(options, binaries.len());
        std::thread::spawn(move || watch(&child, &heard, started, limits))
    };
    if let Some(stdout) = stdout {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let text = String::from_utf8_lossy(&line);
            let _ = writeln!(console, "{text}");
            if let Some(i) = text.find("vm: ") {
                heard.store(started.elapsed().as_secs(), Ordering::Relaxed);
                println!(
                    "  [{} {layout}] {}",
                    kernel.series,
                    text[i + 4..].trim_end()
                );
            }
        }
    }
    let mut stderr_text = String::new();
    if let Some(mut stderr) = stderr {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut stderr_text);
    }
    let hung = watchdog.join().unwrap_or(None);
    let status = child
        .lock()
        .map_err(|_| "the watchdog panicked".to_string())?
        .wait()
        .map_err(|e| format!("wait for qemu: {e}"))?;
    if let Some(why) = &hung {
        println!(
            "vm: {} × {layout}: {why}: the guest was ended",
            kernel.series
        );
    }
    let stderr_text: String = stderr_text
        .lines()
        .filter(|l| !l.contains("multidevs"))
        .collect::<Vec<_>>()
        .join("\n");
    if !status.success() && !stderr_text.is_empty() {
        return Err(format!("qemu failed ({status}): {stderr_text}"));
    }
    let not_run_here: Vec<Cell> = root_only
        .iter()
        .map(|b| Cell {
            kernel: kernel.series.to_string(),
            layout: layout.to_string(),
            binary: b.display.clone(),
            outcome: Outcome::Passed {
                tests: None,
                skipped: 1,
                secs: 0,
            },
            note: Some("needs root: not run as this layout's user".into()),
        })
        .collect();
    let mut cells = Vec::new();
    for b in &binaries {
        let name = b.file_name();
        let rc = std::fs::read_to_string(share.join("out").join(format!("{name}.rc")));
        let log = std::fs::read_to_string(share.join("out").join(format!("{name}.log")))
            .unwrap_or_default();
        let outcome = match rc {
            Err(_) => Outcome::NotRun(if let Some(why) = &hung {
                format!("the guest hung ({why})")
            } else {
                format!("no result (see {})", console_path.display())
            }),
            Ok(rc) => {
                let mut parts = rc.split_whitespace();
                let code: i32 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(-1);
                let secs: u64 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                let tests = select::count_results(&log);
                let skipped = log.matches("skipped: ").count()
                    + log.matches("skipped (").count()
                    + select::count_ignored(&log);
                if code == 0 {
                    Outcome::Passed {
                        tests,
                        skipped,
                        secs,
                    }
                } else {
                    Outcome::Failed {
                        detail: match (code, tests) {
                            (124, _) => format!("timed out after {} s", options.timeout),
                            (_, Some((p, f))) => format!("{f} failed, {p} passed"),
                            _ => format!("exit {code}"),
                        },
                        secs,
                    }
                }
            }
        };
        cells.push(Cell {
            kernel: kernel.series.to_string(),
            layout: layout.to_string(),
            binary: b.display.clone(),
            outcome,
            note: None,
        });
    }
    let leftovers = std::fs::read_to_string(share.join("out/leftover-cgroups")).unwrap_or_default();
    cells.push(Cell {
        kernel: kernel.series.to_string(),
        layout: layout.to_string(),
        binary: "(no run cgroup left behind)".into(),
        note: None,
        outcome: if leftovers.trim().is_empty() && share.join("out/leftover-cgroups").exists() {
            Outcome::Passed {
                tests: None,
                skipped: 0,
                secs: 0,
            }
        } else if leftovers.trim().is_empty() {
            Outcome::NotRun("the guest did not finish".into())
        } else {
            Outcome::Failed {
                detail: format!(
                    "left: {}",
                    leftovers.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
                secs: 0,
            }
        },
    });
    tell_why(&share, &cells, &binaries);
    cells.extend(not_run_here);
    Ok(cells)
}

/// What a failed or hung boot printed, where CI's log shows it: the tail
/// of each failed binary's output, and the guest kernel's last messages
/// (an oops, a hung task's stack, the blocked tasks the guest asked for
/// before it ended a binary).
fn tell_why(share: &Path, cells: &[Cell], binaries: &[&select::TestBinary]) {
    let tail = |text: &str, n: usize| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n    ")
    };
    let mut any = false;
    for (cell, b) in cells.iter().zip(binaries) {
        if matches!(cell.outcome, Outcome::Passed { .. }) {
            continue;
        }
        any = true;
        let log = share.join("out").join(format!("{}.log", b.file_name()));
        if let Ok(text) = std::fs::read_to_string(&log) {
            println!(
                "vm: the end of {} ({}):\n    {}",
                b.display,
                log.display(),
                tail(&text, 30)
            );
        }
    }
    if !any {
        return;
    }
    let console = std::fs::read_to_string(share.join("console.log")).unwrap_or_default();
    let kernel: Vec<&str> = console.lines().filter(|l| !l.contains("vm: ")).collect();
    // From the first oops, hung task or blocked-task dump on, where there
    // is one (the tail is often a test's own OOM kills).
    let from = kernel
        .iter()
        .position(|l| {
            [
                "Oops:",
                "BUG: ",
                "Kernel panic",
                "blocked for more than",
                "Show Blocked State",
            ]
            .iter()
            .any(|m| l.contains(m))
        })
        .unwrap_or(kernel.len().saturating_sub(40));
    let shown = &kernel[from..kernel.len().min(from + 80)];
    if !shown.is_empty() {
        println!(
            "vm: the guest kernel's messages ({}):\n    {}",
            share.join("console.log").display(),
            shown.join("\n    ")
        );
    }
}

/// The first line of a guest kernel oops or panic in the boot's console.
pub(super) fn guest_oops(share: &Path) -> Option<String> {
    let console = std::fs::read_to_string(share.join("console.log")).ok()?;
    console
        .lines()
        .find(|l| l.contains("Oops:") || l.contains("Kernel panic") || l.contains("BUG: "))
        .map(|l| {
            l.split_once("] ")
                .map_or(l, |(_, rest)| rest)
                .trim()
                .to_string()
        })
}

/// When a guest counts as hung.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Since the guest last said anything (`vm: …`): a binary's timeout,
    /// which the guest enforces itself, and some.
    quiet: Duration,
    /// The whole boot: every binary's timeout, and some.
    total: Duration,
}

impl Limits {
    fn of(options: &Options, binaries: usize) -> Self {
        Limits {
            quiet: Duration::from_secs(options.timeout + 90),
            total: Duration::from_secs(options.timeout * binaries as u64 + 300),
        }
    }
}

/// Ends a guest that has stopped saying anything, or is over its time:
/// a guest kernel that deadlocked or oopsed prints nothing more, and
/// reading its console would wait for ever. Returns why it was ended, or
/// `None` once QEMU has exited by itself.
fn watch(
    child: &Mutex<Child>,
    heard: &AtomicU64,
    started: Instant,
    limits: Limits,
) -> Option<String> {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Ok(mut qemu) = child.lock() else {
            return None;
        };
        if !matches!(qemu.try_wait(), Ok(None)) {
            return None;
        }
        let now = started.elapsed();
        let quiet = now.saturating_sub(Duration::from_secs(heard.load(Ordering::Relaxed)));
        let why = if quiet > limits.quiet {
            format!("nothing from it for {} s", quiet.as_secs())
        } else if now > limits.total {
            format!("still running after {} s", now.as_secs())
        } else {
            continue;
        };
        let _ = qemu.kill();
        return Some(why);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn watched(command: &str, quiet: u64) -> (Option<String>, Duration) {
        let child = Mutex::new(Command::new("sh").args(["-c", command]).spawn().unwrap());
        let t = Instant::now();
        let limits = Limits {
            quiet: Duration::from_secs(quiet),
            total: Duration::from_secs(60),
        };
        let why = watch(&child, &AtomicU64::new(0), t, limits);
        let status = child.lock().unwrap().wait().unwrap();
        assert!(why.is_none() || !status.success(), "a hung child is killed");
        (why, t.elapsed())
    }

    #[test]
    fn a_silent_guest_is_ended() {
        let (why, took) = watched("sleep 30", 2);
        assert!(why.unwrap().starts_with("nothing from it for "));
        assert!(took < Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn a_guest_that_exits_is_not_reported() {
        let (why, took) = watched("exit 0", 20);
        assert_eq!(why, None);
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}
