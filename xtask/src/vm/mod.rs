//! `cargo xtask vm`: the kernel matrix. Boots Debian's own kernel packages
//! under QEMU with this machine's root shared read-only over 9p (beneath a
//! tmpfs overlay), mounts pure cgroup v2 as systemd does, puts the test
//! shell in a cgroup layout, runs the workspace's test binaries (built here
//! first) and prints kernel × layout × binary → passed / failed.
//!
//! ```text
//! cargo xtask vm [--kernel 6.1|6.12|all] [--layout leaf|delegated-user|root|systemd|systemd-user|systemd-session|all]
//!                [--binaries a,b|ci|default|all] [--kvm] [-- TEST FILTER…]
//! ```

mod initramfs;
mod kernel;
mod select;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{packages, run};

/// The cgroup layouts a guest can put its test shell in.
///
/// `systemd`, `systemd-user` and `systemd-session` boot the host's systemd
/// as the guest's PID 1: the tests run as a system service with
/// `Delegate=yes`, as a service of an unprivileged user's own manager, and
/// as that user in a login session's scope (root's, as logind makes it).
pub(crate) const LAYOUTS: [&str; 6] = [
    "leaf",
    "delegated-user",
    "root",
    "systemd",
    "systemd-user",
    "systemd-session",
];

/// How the matrix is asked to run.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) kernels: Vec<&'static kernel::KernelSeries>,
    pub(crate) layouts: Vec<String>,
    pub(crate) binaries: select::Selection,
    pub(crate) filter: Vec<String>,
    pub(crate) kvm: bool,
    /// Per test binary, seconds.
    pub(crate) timeout: u64,
    /// Layouts booted on the first kernel of `kernels` only.
    pub(crate) first_kernel_only: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let (ours, filter) = match args.iter().position(|a| a == "--") {
            Some(i) => (&args[..i], args[i + 1..].to_vec()),
            None => (args, Vec::new()),
        };
        let value = |name: &str| -> Result<Option<String>, String> {
            match ours.iter().position(|a| a == name) {
                None => Ok(None),
                Some(i) => ours
                    .get(i + 1)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        let kernels = match value("--kernel")?.as_deref() {
            None | Some("all") => kernel::SERIES.iter().collect(),
            Some(k) => vec![kernel::SERIES.iter().find(|s| s.name == k).ok_or_else(|| {
                format!(
                    "--kernel {k}: the matrix has {}",
                    kernel::SERIES.map(|s| s.name).join(", ")
                )
            })?],
        };
        let layouts = match value("--layout")?.as_deref() {
            None | Some("all") => LAYOUTS.iter().map(|l| l.to_string()).collect(),
            Some(l) => l
                .split(',')
                .map(|l| {
                    if LAYOUTS.contains(&l) {
                        Ok(l.to_string())
                    } else {
                        Err(format!(
                            "--layout {l}: the layouts are {} (or all)",
                            LAYOUTS.join(", ")
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let binaries = select::Selection::parse(value("--binaries")?.as_deref())?;
        let timeout = run::flag_value(ours, "--timeout")?.unwrap_or(900);
        for a in ours {
            if a.starts_with("--")
                && !["--kernel", "--layout", "--binaries", "--kvm", "--timeout"]
                    .contains(&a.as_str())
            {
                return Err(format!("unknown option {a}\n{USAGE}"));
            }
        }
        Ok(Options {
            kernels,
            layouts,
            binaries,
            filter,
            kvm: ours.iter().any(|a| a == "--kvm"),
            timeout,
            first_kernel_only: Vec::new(),
        })
    }
}

const USAGE: &str = "usage: cargo xtask vm [--kernel 6.1|6.12|all] [--layout leaf|delegated-user|root|systemd|systemd-user|systemd-session|all] [--binaries NAME,…|ci|default|all] [--timeout SECONDS] [--kvm] [-- TEST FILTER…]";

/// What the matrix needs on this machine.
const FOR_VM: &[packages::Package] = &[
    packages::Package {
        name: "qemu-system-x86",
        provides: "qemu-system-x86_64",
        why: "boots the matrix's kernels",
    },
    packages::Package {
        name: "busybox-static",
        provides: "/bin/busybox",
        why: "the guest initramfs's shell",
    },
    packages::Package {
        name: "kmod",
        provides: "depmod",
        why: "modules.dep for the unpacked kernels, modprobe in the guest",
    },
    packages::Package {
        name: "xz-utils",
        provides: "xz",
        why: "unpacking the kernels' modules",
    },
    packages::Package {
        name: "systemd",
        provides: "/lib/systemd/systemd",
        why: "PID 1 of the systemd layouts",
    },
    packages::Package {
        name: "dbus",
        provides: "/usr/bin/dbus-daemon",
        why: "the system bus of the systemd layouts",
    },
    packages::Package {
        name: "dbus-user-session",
        provides: "/usr/lib/systemd/user/dbus.socket",
        why: "the user's session bus in the systemd-user layout",
    },
];

/// One cell of the matrix.
#[derive(Debug, Clone)]
struct Cell {
    kernel: String,
    layout: String,
    binary: String,
    outcome: Outcome,
    /// Said beside the outcome (a repeated boot).
    note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// `skipped`: tests that said they skipped (not root, say): they count
    /// as passed in libtest, and are shown apart here.
    Passed {
        tests: Option<(u64, u64)>,
        skipped: usize,
        secs: u64,
    },
    Failed {
        detail: String,
        secs: u64,
    },
    NotRun(String),
}

/// The subset `cargo xtask test` (CI) runs: the cgroup and nftables paths
/// (`select::CI`) on every kernel in the layouts without systemd, and on
/// the oldest kernel (6.1, which Debian 12 pairs with the systemd 252 they
/// run) the two systemd layouts whose limits come from a scope: about 10
/// minutes here. (`systemd`, a root service with `Delegate=yes`, takes the
/// path `leaf` does, and runs in the default matrix.)
pub(crate) fn ci() -> Result<(), String> {
    let mut options = Options::parse(&["--binaries".to_string(), "ci".to_string()])?;
    options.layouts.retain(|l| l != "systemd");
    options.first_kernel_only = vec!["systemd-user".into(), "systemd-session".into()];
    let took = matrix(&options)?;
    println!(
        "xtask vm: the CI subset passed in {:.0} s",
        took.as_secs_f64()
    );
    Ok(())
}

/// `cargo xtask vm …`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let options = Options::parse(args)?;
    matrix(&options).map(drop)
}

/// Runs the matrix and prints its table; an error if any cell failed.
pub(crate) fn matrix(options: &Options) -> Result<Duration, String> {
    let started = Instant::now();
    packages::ensure(packages::FOR_TESTS)?;
    packages::ensure(FOR_VM)?;
    let binaries = select::build_and_select(&options.binaries)?;
    let root = run::workspace_root().join("target/vm");
    let busybox = initramfs::find_busybox().ok_or("no static busybox found")?;
    let mut cells = Vec::new();
    let mut times = Vec::new();
    let mut oopses = Vec::new();
    for (i, series) in options.kernels.iter().enumerate() {
        let kernel = kernel::fetch(series, &root.join("kernels"))?;
        let initrd = root.join(format!("initrd-{}.img", kernel.release));
        initramfs::build(&kernel, &busybox, &initrd)?;
        for layout in &options.layouts {
            if i > 0 && options.first_kernel_only.contains(layout) {
                continue;
            }
            let t = Instant::now();
            let mut got = boot(options, &kernel, &initrd, layout, &binaries, &root)?;
            // The guest kernel oopsing is no test's result: emulation has
            // been seen to run a stale int3 of the kernel's own code
            // patching (a static key turned on by a new cgroup controller).
            // Such a boot is repeated once, and the table says so.
            let share = root
                .join("runs")
                .join(format!("{}-{layout}", kernel.series));
            if let Some(oops) = guest_oops(&share)
                && got.iter().any(|c| matches!(c.outcome, Outcome::NotRun(_)))
            {
                println!(
                    "vm: the guest kernel oopsed ({oops}): booting {} × {layout} again",
                    kernel.series
                );
                let _ = std::fs::rename(
                    share.join("console.log"),
                    root.join("runs")
                        .join(format!("{}-{layout}-oops.log", kernel.series)),
                );
                got = boot(options, &kernel, &initrd, layout, &binaries, &root)?;
                for c in &mut got {
                    c.note = Some("2nd boot".into());
                }
                oopses.push(format!("{} × {layout}: the first boot's guest kernel oopsed ({oops}); the table has the second", kernel.series));
            }
            times.push(format!(
                "{} × {layout}: {:.0} s",
                kernel.series,
                t.elapsed().as_secs_f64()
            ));
            cells.append(&mut got);
        }
    }
    let table = render(&cells);
    println!("\n{table}");
    for t in oopses.iter().chain(&times) {
        println!("  {t}");
    }
    println!("matrix took {:.0} s", started.elapsed().as_secs_f64());
    let _ = std::fs::write(root.join("matrix.md"), &table);
    let failed: Vec<&Cell> = cells
        .iter()
        .filter(|c| !matches!(c.outcome, Outcome::Passed { .. }))
        .collect();
    if failed.is_empty() {
        Ok(started.elapsed())
    } else {
        Err(format!(
            "{} of {} cells failed (logs in {}):\n{}",
            failed.len(),
            cells.len(),
            root.join("runs").display(),
            failed
                .iter()
                .map(|c| format!(
                    "  {} × {} × {}: {:?}",
                    c.kernel, c.layout, c.binary, c.outcome
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ))
    }
}

/// Boots `kernel` once in `layout`, runs every binary, reads the results.
fn boot(
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
    let mut plan = String::new();
    for b in binaries {
        let mut args = b.args.clone();
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
        .args(["-append", "console=ttyS0 quiet panic=-1 8250.nr_uarts=1"])
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
    // A guest that hangs is ended: every binary's timeout, and some.
    let limit = Duration::from_secs(options.timeout * binaries.len() as u64 + 120);
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < limit {
            std::thread::sleep(Duration::from_secs(1));
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return false;
            }
        }
        true
    });
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            let text = String::from_utf8_lossy(&line);
            let _ = writeln!(console, "{text}");
            if let Some(i) = text.find("vm: ") {
                println!(
                    "  [{} {layout}] {}",
                    kernel.series,
                    text[i + 4..].trim_end()
                );
            }
            if watchdog.is_finished() {
                break;
            }
        }
    }
    let mut stderr_text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read;
        let _ = stderr.read_to_string(&mut stderr_text);
    }
    let status = child.wait().map_err(|e| format!("wait for qemu: {e}"))?;
    let timed_out = watchdog.join().unwrap_or(false);
    if timed_out {
        let _ = child.kill();
    }
    let stderr_text: String = stderr_text
        .lines()
        .filter(|l| !l.contains("multidevs"))
        .collect::<Vec<_>>()
        .join("\n");
    if !status.success() && !stderr_text.is_empty() {
        return Err(format!("qemu failed ({status}): {stderr_text}"));
    }
    let mut cells = Vec::new();
    for b in binaries {
        let name = b.file_name();
        let rc = std::fs::read_to_string(share.join("out").join(format!("{name}.rc")));
        let log = std::fs::read_to_string(share.join("out").join(format!("{name}.log")))
            .unwrap_or_default();
        let outcome = match rc {
            Err(_) => Outcome::NotRun(if timed_out {
                "the guest hung and was ended".into()
            } else {
                format!("no result (see {})", console_path.display())
            }),
            Ok(rc) => {
                let mut parts = rc.split_whitespace();
                let code: i32 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(-1);
                let secs: u64 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                let tests = select::count_results(&log);
                let skipped = log.matches("skipped: ").count() + log.matches("skipped (").count();
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
    Ok(cells)
}

/// The first line of a guest kernel oops or panic in the boot's console.
fn guest_oops(share: &Path) -> Option<String> {
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

/// The matrix as a markdown table: a row per binary, a column per
/// kernel × layout.
fn render(cells: &[Cell]) -> String {
    let mut columns: Vec<(String, String)> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    for c in cells {
        let col = (c.kernel.clone(), c.layout.clone());
        if !columns.contains(&col) {
            columns.push(col);
        }
        if !rows.contains(&c.binary) {
            rows.push(c.binary.clone());
        }
    }
    let mut out = String::from("| test binary |");
    for (k, l) in &columns {
        out.push_str(&format!(" {k} {l} |"));
    }
    out.push_str("\n|---|");
    for _ in &columns {
        out.push_str("---|");
    }
    out.push('\n');
    for row in &rows {
        out.push_str(&format!("| {row} |"));
        for (k, l) in &columns {
            let cell = cells
                .iter()
                .find(|c| &c.binary == row && &c.kernel == k && &c.layout == l);
            let text = match cell.map(|c| &c.outcome) {
                None => "-".to_string(),
                Some(Outcome::Passed {
                    tests,
                    skipped,
                    secs,
                }) => {
                    let skipped = if *skipped > 0 {
                        format!(", {skipped} skipped")
                    } else {
                        String::new()
                    };
                    match (tests, secs) {
                        (Some((p, _)), _) => format!("passed {p}{skipped} ({secs} s)"),
                        (None, _) if !skipped.is_empty() => format!("skipped ({secs} s)"),
                        (None, 0) => "yes".to_string(),
                        (None, _) => format!("passed{skipped} ({secs} s)"),
                    }
                }
                Some(Outcome::Failed { detail, secs }) => {
                    format!("**FAILED**: {detail} ({secs} s)")
                }
                Some(Outcome::NotRun(why)) => format!("**not run**: {why}"),
            };
            let text = match cell.and_then(|c| c.note.as_deref()) {
                Some(note) => format!("{text} ({note})"),
                None => text,
            };
            out.push_str(&format!(" {text} |"));
        }
        out.push('\n');
    }
    out
}
