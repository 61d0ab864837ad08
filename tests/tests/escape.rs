//! The escape suite: real attacks from inside a sandbox, each expected to
//! fail, most with a control showing the same attack works outside (where
//! that is safe to do on the host). It prints a table: case, expected,
//! observed in the sandbox, the control.
//!
//! One binary, `harness = false`: without arguments it is the suite (run
//! by `cargo test` and `cargo xtask escape`); with `--attack NAME [ARG]`
//! it is the attacker, run inside the sandbox (its directory is bound
//! read-only) and, for the controls, outside. Needs root, as CI has.
#![allow(unsafe_code)] // the attacker makes raw syscalls on purpose
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "escape/attacks.rs"]
mod attacks;
#[path = "escape/cases.rs"]
mod cases;
#[path = "escape/hardening.rs"]
mod hardening;
#[path = "escape/quotas.rs"]
mod quotas;
#[path = "../../sandbox-core/tests/common/world.rs"]
mod world;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Instant;

use sandbox_core::{Sandbox, Stdio};
use sandbox_policy::Policy;

use attacks::{Attempt, attack, errno_text, tiocsti};

/// One row of the table.
struct Row {
    case: String,
    expected: &'static str,
    observed: String,
    control: String,
    /// Why the row fails the suite: an escape, an attack that sent no
    /// report, a control that did not work outside.
    failure: Option<String>,
}

/// What an attack inside the sandbox did.
pub(crate) enum Observed {
    /// It worked: an escape.
    Worked(String),
    /// It was refused (or held), with the evidence.
    Refused(String),
    /// Nothing to judge by: the sandbox did not start, or the attacker
    /// sent no report. A failure of the suite, never a refusal.
    NoReport(String),
}

impl From<Attempt> for Observed {
    fn from(attempt: Attempt) -> Self {
        match attempt {
            Ok(evidence) => Observed::Worked(evidence),
            Err(why) => Observed::Refused(why),
        }
    }
}

/// What the control outside showed.
pub(crate) enum ControlResult {
    /// The attack works outside: it is real.
    Worked(String),
    /// It failed outside too, so the refusal inside shows nothing.
    Failed(String),
    /// No control, and why (said in the table).
    None(String),
}

pub(crate) struct Suite {
    pub(crate) exe: String,
    pub(crate) sandbox: Sandbox,
    rows: Vec<Row>,
}

/// A pseudo-terminal pair (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: posix_openpt/grantpt/unlockpt/ptsname on the fd just made;
    // ptsname's static buffer is copied before anything else runs.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt: {}", errno_text());
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(master)).to_owned();
        let slave = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(slave >= 0, "open the pty: {}", errno_text());
        (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave))
    }
}

/// Runs `f` with fd 0 replaced by `fd` (this binary is single-threaded).
fn with_stdin<T>(fd: &OwnedFd, f: impl FnOnce() -> T) -> T {
    // SAFETY: dup/dup2 on fds this process owns; fd 0 is restored.
    unsafe {
        let saved = libc::dup(0);
        libc::dup2(fd.as_raw_fd(), 0);
        let result = f();
        libc::dup2(saved, 0);
        libc::close(saved);
        result
    }
}

impl Suite {
    pub(crate) fn inside(&self, name: &str, arg: Option<&str>, stdin: Stdio) -> Observed {
        let mut cmd = self.sandbox.command(&self.exe);
        cmd.args(["--attack", name]).stdin(stdin);
        if let Some(arg) = arg {
            cmd.arg(arg);
        }
        match cmd.output() {
            Ok(out) => parse(&out.stdout, &out.stderr),
            Err(e) => Observed::NoReport(format!("the sandbox failed: {e}")),
        }
    }

    fn outside(&self, name: &str, arg: Option<&str>) -> ControlResult {
        let mut cmd = Command::new(&self.exe);
        cmd.args(["--attack", name]);
        if let Some(arg) = arg {
            cmd.arg(arg);
        }
        match cmd.output() {
            Err(e) => ControlResult::Failed(format!("could not start: {e}")),
            Ok(out) => match parse(&out.stdout, &out.stderr) {
                Observed::Worked(evidence) => ControlResult::Worked(evidence),
                Observed::Refused(why) | Observed::NoReport(why) => ControlResult::Failed(why),
            },
        }
    }

    /// A case: the attack inside must fail; the control (if any) outside
    /// should work, showing the attack is real.
    pub(crate) fn case(&mut self, name: &str, arg: Option<&str>, control: Control, stdin: Stdio) {
        let case = match arg {
            Some(arg) => format!("{name} {arg}"),
            None => name.to_string(),
        };
        self.case_labelled(&case, name, arg, control, stdin);
    }

    /// [`case`](Self::case) with a row label of its own.
    pub(crate) fn case_labelled(
        &mut self,
        label: &str,
        name: &str,
        arg: Option<&str>,
        control: Control,
        stdin: Stdio,
    ) {
        let observed = self.inside(name, arg, stdin);
        let control = match control {
            Control::Same => self.outside(name, arg),
            Control::SameIfPresent => hardening::unless_missing(self.outside(name, arg)),
            Control::Other(arg) => self.outside(name, Some(&arg)),
            Control::None(why) => ControlResult::None(why.to_string()),
        };
        self.push(label.to_string(), "refused", observed, control);
    }

    pub(crate) fn push(
        &mut self,
        case: String,
        expected: &'static str,
        observed: impl Into<Observed>,
        control: ControlResult,
    ) {
        let (mut failure, observed) = match observed.into() {
            Observed::Worked(evidence) => (Some("ESCAPED"), format!("ESCAPED: {evidence}")),
            Observed::Refused(why) => (None, format!("{expected}: {why}")),
            Observed::NoReport(why) => (Some("NO REPORT"), format!("NO REPORT: {why}")),
        };
        let control = match control {
            ControlResult::Worked(evidence) => format!("works outside: {evidence}"),
            ControlResult::Failed(why) => {
                failure = failure.or(Some("CONTROL FAILED"));
                format!("CONTROL FAILED outside: {why}")
            }
            ControlResult::None(why) => format!("no control: {why}"),
        };
        self.rows.push(Row {
            case,
            expected,
            observed,
            control,
            failure: failure.map(String::from),
        });
    }
}

pub(crate) enum Control {
    /// The same attack, outside.
    Same,
    /// The same attack outside, where this kernel has the feature (else
    /// "no control", with the kernel's answer).
    SameIfPresent,
    /// The attack outside with this argument instead (another target).
    Other(String),
    /// None, and why.
    None(&'static str),
}

pub(crate) fn parse(stdout: &[u8], stderr: &[u8]) -> Observed {
    let text = String::from_utf8_lossy(stdout).trim().to_string();
    if let Some(evidence) = text.strip_prefix("WORKED ") {
        Observed::Worked(evidence.to_string())
    } else if let Some(why) = text.strip_prefix("REFUSED ") {
        Observed::Refused(why.to_string())
    } else {
        // The attacker could not even report: nothing shows a refusal.
        Observed::NoReport(format!(
            "stdout {:?}, stderr {}",
            text.chars().take(80).collect::<String>(),
            String::from_utf8_lossy(stderr)
                .trim()
                .chars()
                .take(120)
                .collect::<String>()
        ))
    }
}

#[allow(clippy::unnecessary_cast)]
fn tiocsti_control(master: &OwnedFd, slave: &OwnedFd) -> ControlResult {
    // Root outside the sandbox pushing a byte into its own pty, then
    // reading it back from the master: the attack is real.
    let result = with_stdin(slave, || tiocsti(libc::TIOCSTI as u64));
    match result {
        Ok(_) => {
            rustix::fs::fcntl_setfl(master, rustix::fs::OFlags::NONBLOCK).ok();
            let mut buf = [0u8; 16];
            let echoed = rustix::io::read(master, &mut buf).unwrap_or(0);
            ControlResult::Worked(format!("the pty echoed {echoed} byte(s)"))
        }
        Err(e) => ControlResult::Failed(e),
    }
}

/// The suite's network namespace: loopback up with 198.18.1.1 and
/// 169.254.169.254 on it, an HTTP server on port 80 of each.
/// The suite's network namespace: loopback up with 198.18.1.1 and
/// 169.254.169.254 on it, an HTTP server on port 80 of each.
fn make_world() {
    world::enter_world(&["198.18.1.1", "169.254.169.254"]);
    world::serve_http("198.18.1.1:80", "served by 198.18.1.1:80");
    world::serve_http("169.254.169.254:80", "served by 169.254.169.254:80");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--attack") {
        let name = args.get(2).map_or("", String::as_str);
        match attack(name, args.get(3).map(String::as_str)) {
            Ok(evidence) => println!("WORKED {evidence}"),
            Err(why) => println!("REFUSED {why}"),
        }
        return;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("escape suite: needs root (as CI has): nothing was tested");
        std::process::exit(1);
    }
    let started = Instant::now();
    // Everything runs in a network namespace of the suite's own: web
    // servers on 198.18.1.1 and on the metadata address, on its loopback.
    make_world();
    let exe = std::env::current_exe().unwrap().display().to_string();
    let dir = std::path::Path::new(&exe)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let policy = Policy::from_toml_str(&format!(
        "[filesystem]\nbinds = [{{ source = \"{dir}\", target = \"{dir}\" }}]\n\
         [resources]\nmax_file_size = \"4MiB\"\n"
    ))
    .unwrap();
    let sandbox = Sandbox::new(policy).unwrap();
    assert!(sandbox.report().fully_enforced(), "{}", sandbox.report());
    let mut suite = Suite {
        exe,
        sandbox,
        rows: Vec::new(),
    };

    // The terminal: a pty as the sandbox's stdin.
    let (master, slave) = pty();
    for name in ["tiocsti", "tiocsti-high-bits", "tioclinux"] {
        let observed = with_stdin(&slave, || suite.inside(name, None, Stdio::Inherit));
        let control = if name == "tiocsti" {
            tiocsti_control(&master, &slave)
        } else {
            ControlResult::None("same request as tiocsti".into())
        };
        suite.push(
            format!("{name} (stdin is a pty)"),
            "refused",
            observed,
            control,
        );
    }
    suite.case(
        "dev-tty",
        None,
        Control::None("the suite has no controlling tty either"),
        Stdio::Null,
    );

    // What the sandbox inherits.
    suite.case(
        "leaked-fds",
        None,
        Control::None("cargo's test runner leaks fds by design"),
        Stdio::Null,
    );
    suite.case(
        "cwd-outside-root",
        None,
        Control::None("outside, / is the host's"),
        Stdio::Null,
    );
    // SAFETY: setting a variable before any thread starts.
    unsafe { std::env::set_var("ESCAPE_SUITE_SECRET", "hunter2") };
    suite.case(
        "environ",
        Some("ESCAPE_SUITE_SECRET"),
        Control::Same,
        Stdio::Null,
    );

    // The supervisor's own binary (PID 1 is a fork of it: runc's
    // CVE-2019-5736 class).
    let mut victim = Command::new("sleep").arg("30").spawn().unwrap();
    let victim_pid = victim.id().to_string();
    suite.case(
        "read",
        Some("/proc/1/exe"),
        Control::Other(format!("/proc/{victim_pid}/exe")),
        Stdio::Null,
    );
    cases::setup_cases(&mut suite);

    // Writes that would change the host.
    for path in [
        "/proc/1/exe",
        "/proc/sys/kernel/core_pattern",
        "/proc/sysrq-trigger",
        "/sys/kernel/uevent_helper",
        "/sys/fs/cgroup/cgroup.procs",
        "/etc/passwd",
        "/usr/bin/sh",
    ] {
        suite.case(
            "write",
            Some(path),
            Control::None("it would change the host"),
            Stdio::Null,
        );
    }

    // Privilege.
    let scratch = tempfile::tempdir().unwrap();
    let scratch_path = scratch.path().display().to_string();
    suite.case(
        "mount",
        Some("/tmp"),
        Control::Other(scratch_path),
        Stdio::Null,
    );
    suite.case("unshare-user", None, Control::Same, Stdio::Null);
    suite.case("unshare-mount", None, Control::Same, Stdio::Null);
    suite.case(
        "setuid",
        None,
        Control::None("root outside is already privileged"),
        Stdio::Null,
    );
    suite.case(
        "ptrace",
        Some("1"),
        Control::Other(victim_pid.clone()),
        Stdio::Null,
    );
    suite.case(
        "process_vm_readv",
        Some("1"),
        Control::Other(victim_pid),
        Stdio::Null,
    );
    let _ = victim.kill();
    let _ = victim.wait();
    for name in [
        "keyctl",
        "add_key",
        "bpf",
        "userfaultfd",
        "perf_event_open",
        "io_uring_setup",
    ] {
        suite.case(name, None, Control::Same, Stdio::Null);
    }
    suite.case("af_packet", None, Control::Same, Stdio::Null);
    suite.case("raw_ip", None, Control::Same, Stdio::Null);
    hardening::hardening_cases(&mut suite, &dir);
    quotas::quota_cases(&mut suite, &dir);

    // The network, with allowlisted egress to port 80 anywhere (metadata
    // stays blocked, as the policy's default), and a host-name rule (so
    // the ruleset has pin sets for the sandbox to try to write).
    let networked = Sandbox::new(
        Policy::from_toml_str(&format!(
            "[filesystem]\nbinds = [{{ source = \"{dir}\", target = \"{dir}\" }}]\n\
             [network]\nmode = \"allowlist\"\nallow = [\"0.0.0.0/0:80/tcp\", \"[::/0]:80/tcp\", \"pinned.test:443/tcp\"]\n"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(
        networked.report().network.enforced,
        "{}",
        networked.report()
    );
    let offline = std::mem::replace(&mut suite.sandbox, networked);
    let reached = suite.inside("http", Some("198.18.1.1"), Stdio::Null);
    let (observed, failure) = match reached {
        Observed::Worked(evidence) => (format!("reached: {evidence}"), None),
        Observed::Refused(why) | Observed::NoReport(why) => (
            format!("NOT REACHED: {why}"),
            Some("NOT REACHED".to_string()),
        ),
    };
    suite.rows.push(Row {
        case: "http 198.18.1.1 (allowed: the control)".into(),
        expected: "reached",
        observed,
        control: "-".into(),
        failure,
    });
    for form in [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "169.254.43518",
    ] {
        suite.case("http", Some(form), Control::Same, Stdio::Null);
    }
    suite.case(
        "nft-replace",
        None,
        Control::Other("own-netns".into()),
        Stdio::Null,
    );
    suite.case(
        "pin-add",
        None,
        Control::Other("own-netns".into()),
        Stdio::Null,
    );
    suite.case(
        "link-down",
        None,
        Control::Other("own-netns".into()),
        Stdio::Null,
    );
    suite.case("af_packet", None, Control::Same, Stdio::Null);
    suite.sandbox = offline;

    // Resources.
    suite.case(
        "big-file",
        Some("8388608"),
        Control::None("no limit outside"),
        Stdio::Null,
    );
    cases::resource_cases(&mut suite);

    // The table.
    println!(
        "\nescape suite: {} cases in {:.1} s\n",
        suite.rows.len(),
        started.elapsed().as_secs_f64()
    );
    println!("| case | expected | observed in the sandbox | control |");
    println!("|---|---|---|---|");
    for row in &suite.rows {
        println!(
            "| {} | {} | {} | {} |",
            row.case,
            row.expected,
            row.observed.replace('|', "/"),
            row.control.replace('|', "/")
        );
    }
    let failed: Vec<&Row> = suite.rows.iter().filter(|r| r.failure.is_some()).collect();
    let controls = suite
        .rows
        .iter()
        .filter(|r| r.control.starts_with("works outside"))
        .count();
    println!(
        "\n{} cases: {} refused or held, {} failed; {} with a control that worked outside, {} without a control (reason given)",
        suite.rows.len(),
        suite.rows.len() - failed.len(),
        failed.len(),
        controls,
        suite
            .rows
            .iter()
            .filter(|r| r.control.starts_with("no control"))
            .count()
    );
    if !failed.is_empty() {
        for row in failed {
            eprintln!(
                "{}: {}: {} / {}",
                row.failure.as_deref().unwrap_or("FAILED"),
                row.case,
                row.observed,
                row.control
            );
        }
        std::process::exit(1);
    }
    println!("every attack refused or held, every control worked");
}
