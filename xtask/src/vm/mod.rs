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

mod boot;
mod initramfs;
mod kernel;
mod select;

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

/// Whether a layout's tests run as root (the guest script's choice of
/// user: root in `leaf`, `root` and `systemd`; nobody or a user otherwise).
pub(crate) fn runs_as_root(layout: &str) -> bool {
    matches!(layout, "leaf" | "root" | "systemd")
}

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
    /// Binaries run in the `leaf` layout only (`sandbox-core/lifecycle`).
    pub(crate) leaf_only: Vec<String>,
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
            leaf_only: Vec::new(),
        })
    }
}

const USAGE: &str = "usage: cargo xtask vm [--kernel 6.1|6.12|all] [--layout leaf|delegated-user|root|systemd|systemd-user|systemd-session|all] [--binaries NAME,…|ci|default|all] [--timeout SECONDS] [--kvm] [-- TEST FILTER…] | cargo xtask vm --ci";

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
/// run) the two systemd layouts whose limits come from a scope; the escape
/// suite in `leaf` only. About 5 minutes on a quiet machine of two cores,
/// twice that on a busy one. (`systemd`, a root service with
/// `Delegate=yes`, takes the path `leaf` does, and runs in the default
/// matrix.)
pub(crate) fn ci() -> Result<(), String> {
    let mut options = Options::parse(&["--binaries".to_string(), "ci".to_string()])?;
    // The slowest binary of the subset takes about a minute under
    // emulation on CI's two cores: five is a hang, and ends sooner than 15.
    options.timeout = 300;
    options.layouts.retain(|l| l != "systemd");
    options.first_kernel_only = vec!["systemd-user".into(), "systemd-session".into()];
    // The attacks in the layout most hosts have; the root layout takes the
    // same path for them, and runs them in the default matrix.
    options.leaf_only = vec!["integration-tests/escape".into()];
    let took = matrix(&options)?;
    println!(
        "xtask vm: the CI subset passed in {:.0} s",
        took.as_secs_f64()
    );
    Ok(())
}

/// `cargo xtask vm …`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if args == ["--ci"] {
        return ci();
    }
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
    let mut repeated = Vec::new();
    for (i, series) in options.kernels.iter().enumerate() {
        let kernel = kernel::fetch(series, &root.join("kernels"))?;
        let initrd = root.join(format!("initrd-{}.img", kernel.release));
        initramfs::build(&kernel, &busybox, &initrd)?;
        for layout in &options.layouts {
            if i > 0 && options.first_kernel_only.contains(layout) {
                continue;
            }
            let t = Instant::now();
            let binaries: Vec<select::TestBinary> = binaries
                .iter()
                .filter(|b| layout == "leaf" || !options.leaf_only.contains(&b.display))
                .cloned()
                .collect();
            let mut got = boot::boot(options, &kernel, &initrd, layout, &binaries, &root)?;
            // A guest that oopsed or hung is no test's result: emulation
            // has been seen to run a stale int3 of the kernel's own code
            // patching (a static key turned on by a new cgroup controller),
            // and a guest to stop answering once in a CI run. Such a boot
            // is repeated once; the table says so, the first boot's console
            // is kept and what it printed was shown above.
            let share = root
                .join("runs")
                .join(format!("{}-{layout}", kernel.series));
            let unfinished = got.iter().find_map(|c| match &c.outcome {
                Outcome::NotRun(why) => Some(why.clone()),
                _ => None,
            });
            if let Some(unfinished) = unfinished {
                let why = boot::guest_oops(&share).map_or(unfinished, |oops| {
                    format!("the guest kernel oopsed: {oops}")
                });
                println!(
                    "vm: {} × {layout} did not finish ({why}): booting it again",
                    kernel.series
                );
                let _ = std::fs::rename(
                    share.join("console.log"),
                    root.join("runs")
                        .join(format!("{}-{layout}-first-boot.log", kernel.series)),
                );
                got = boot::boot(options, &kernel, &initrd, layout, &binaries, &root)?;
                for c in &mut got {
                    c.note = Some("2nd boot".into());
                }
                repeated.push(format!(
                    "{} × {layout}: the first boot did not finish ({why}); the table has the second",
                    kernel.series
                ));
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
    for t in repeated.iter().chain(&times) {
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
                        // The checks after the binaries (rows in brackets)
                        // pass or fail; a binary that took under a second
                        // still passed.
                        (None, 0) if row.starts_with('(') => "yes".to_string(),
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
