//! `sbx run`: the run, its live output, and its report.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use sandbox_core::{Sandbox, Stdio};

use crate::flags::PolicyFlags;
use crate::terminal;
use crate::{PlacementArgs, PolicySource};

#[derive(Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    source: PolicySource,
    #[command(flatten)]
    flags: PolicyFlags,
    /// Print the policy the run would get (the base with the flags
    /// applied, as TOML) and exit without running anything.
    #[arg(long)]
    print_policy: bool,
    /// Give the command a terminal of its own, relayed to ours in raw mode
    /// (its stdout and stderr arrive merged, on stdout). The default when
    /// stdin and stdout are terminals.
    #[arg(long, conflicts_with = "no_tty")]
    tty: bool,
    /// No terminal for the command even when ours is one: pipes.
    #[arg(long)]
    no_tty: bool,
    /// Say on stderr what the decision cost and how long each phase of
    /// the run took (plan, clone, each setup phase, the command, teardown).
    #[arg(short, long)]
    verbose: bool,
    /// Write the outcome and report as JSON. Without --report or
    /// --report-fd it goes to stderr, which then carries nothing else: the
    /// command's stderr is inside it (the "stderr" field), so the command
    /// cannot print a report of its own before it. The command's stdout
    /// goes to stdout as it comes either way (the "stdout" field is empty).
    #[arg(long)]
    json: bool,
    /// Write the outcome and report to this file (JSON with --json, else
    /// text) instead of stderr; the command's output goes to stdout and
    /// stderr as it is.
    #[arg(long, value_name = "FILE", conflicts_with = "report_fd")]
    report: Option<PathBuf>,
    /// Write the outcome and report to this inherited file descriptor
    /// (3 or more, e.g. `3>report.json`); the sandbox never gets it.
    #[arg(long, value_name = "N")]
    report_fd: Option<i32>,
    /// Host ids for the run when sbx runs as root: each run's user
    /// namespace is owned by, and its user is, a uid and gid of its own
    /// from FIRST (count COUNT), not host root or nobody (default:
    /// 1073741824:1073741824).
    #[arg(long, value_name = "FIRST:COUNT")]
    run_ids: Option<String>,
    /// Send the sandbox's DNS queries (network.dns = true) to this
    /// resolver instead of the host's (from /etc/resolv.conf).
    #[arg(long, value_name = "IP:PORT")]
    dns: Option<std::net::SocketAddr>,
    /// List every path the command changed through each overlay (without
    /// it, a count per kind).
    #[arg(long)]
    changes: bool,
    #[command(flatten)]
    placement: PlacementArgs,
    /// The command and its arguments.
    #[arg(
        required_unless_present_any = ["print_policy", "image"],
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<String>,
}

/// Where the outcome and report of `sbx run` go.
enum ReportSink {
    /// Stderr, after the command's (text), or alone (JSON).
    Stderr,
    /// A file or an inherited descriptor of the caller's.
    File(std::fs::File),
}

impl ReportSink {
    /// Opens the destination before anything else runs (an inherited fd is
    /// taken before this process opens any of its own).
    fn open(args: &RunArgs) -> Result<Self, String> {
        match (&args.report, args.report_fd) {
            (Some(path), _) => std::fs::File::create(path)
                .map(ReportSink::File)
                .map_err(|e| format!("--report {}: {e}", path.display())),
            (None, Some(fd)) => inherited_fd(fd).map(ReportSink::File),
            (None, None) => Ok(ReportSink::Stderr),
        }
    }
}

/// Takes ownership of inherited fd `fd` (3 or more, open).
#[allow(unsafe_code)]
fn inherited_fd(fd: i32) -> Result<std::fs::File, String> {
    use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
    if fd <= 2 {
        return Err(format!(
            "--report-fd {fd}: the report would share a stream with the command (use 3 or more)"
        ));
    }
    // SAFETY: the borrow is used only for fcntl(F_GETFD), which fails with
    // EBADF on a number that is not open and touches nothing else.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(borrowed)
        .map_err(|e| format!("--report-fd {fd}: not an open file descriptor ({e})"))?;
    rustix::io::fcntl_setfd(borrowed, rustix::io::FdFlags::CLOEXEC)
        .map_err(|e| format!("--report-fd {fd}: {e}"))?;
    // SAFETY: the fd is open (checked above) and was inherited: this runs
    // first in `run`, before sbx opens any descriptor of its own, so no
    // other owner of this number exists in the process.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The human-readable outcome: status, times, notes, egress, the report.
fn human_report(outcome: &sandbox_core::RunOutcome, changes: bool) -> String {
    let mut notes = Vec::new();
    if outcome.stdout_truncated {
        notes.push("stdout truncated: max_output_bytes, or its reader went away".to_string());
    }
    if outcome.stderr_truncated {
        notes.push("stderr truncated: max_output_bytes, or its reader went away".to_string());
    }
    if outcome.timed_out {
        notes.push("killed at the wall_time limit".to_string());
    }
    if outcome.oom_killed {
        notes.push("a process was killed for exceeding the memory limit".to_string());
    }
    if outcome.pids_limit_hit {
        notes.push("a fork failed at the process limit".to_string());
    }
    let mut text = format!(
        "sbx: {} after {:.3}s wall, {:.3}s CPU{}{}\n",
        outcome.status,
        outcome.wall_time.as_secs_f64(),
        outcome.cpu_time.as_secs_f64(),
        outcome
            .peak_memory
            .map(|m| format!(", peak memory {:.1} MiB", m as f64 / 1048576.0))
            .unwrap_or_default(),
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        }
    );
    if let Some(egress) = &outcome.egress {
        text.push_str(&format!("sbx: {egress}\n"));
        // One line per reason, with its first instance.
        for (reason, count) in &egress.refusals_by_reason {
            let first = egress.refusals.iter().find(|r| r.reason == *reason);
            let example = first.map(|r| {
                let at = match (&r.addr, r.port) {
                    (Some(a), Some(p)) if a.contains(':') => format!(" [{a}]:{p}"),
                    (Some(a), Some(p)) => format!(" {a}:{p}"),
                    (Some(a), None) => format!(" {a}"),
                    _ => String::new(),
                };
                let name = r.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default();
                let by = if r.kernel { ", by the kernel" } else { "" };
                format!(" (first: {}{name}{at}{by})", r.protocol)
            });
            text.push_str(&format!(
                "sbx: egress refused {count}× {reason}{}\n",
                example.unwrap_or_default()
            ));
        }
    }
    for overlay in &outcome.changes {
        text.push_str(&changes_lines(overlay, changes));
    }
    text.push_str(&outcome.report.to_string());
    text
}

/// An overlay's changes: a count per kind, and with `all` one line per
/// path.
pub(crate) fn changes_lines(overlay: &sandbox_core::OverlayChanges, all: bool) -> String {
    use sandbox_core::ChangeKind;
    let target = overlay.target.display();
    if let Some(error) = &overlay.error {
        return format!(
            "sbx: {target}: changes not read from {}: {error}\n",
            overlay.upper.display()
        );
    }
    let count = |kind: ChangeKind| overlay.changes.iter().filter(|c| c.kind == kind).count();
    let upper = match overlay.upper.to_str() {
        Some("tmpfs") => "a tmpfs upper, discarded".to_string(),
        Some("tmpfs (a copy)") => "a copy in a tmpfs, discarded".to_string(),
        _ => format!("kept in {}", overlay.upper.display()),
    };
    let mut text = format!(
        "sbx: {target}: {} added, {} modified, {} deleted, {} replaced{} ({upper})\n",
        count(ChangeKind::Added),
        count(ChangeKind::Modified),
        count(ChangeKind::Deleted),
        count(ChangeKind::Replaced),
        if overlay.truncated { ", and more" } else { "" },
    );
    if all {
        for c in &overlay.changes {
            let kind = match c.kind {
                ChangeKind::Added => "added",
                ChangeKind::Modified => "modified",
                ChangeKind::Deleted => "deleted",
                ChangeKind::Replaced => "replaced",
                _ => "changed",
            };
            text.push_str(&format!(
                "sbx:   {kind:<8} {} ({} B)\n",
                overlay.target.join(&c.path).display(),
                c.size
            ));
        }
    }
    text
}

pub(crate) fn run(args: RunArgs) -> Result<ExitCode, String> {
    let policy = args.flags.apply(&args.source.load()?)?;
    if args.print_policy {
        print!("{}", policy.to_toml_string().map_err(|e| e.to_string())?);
        return Ok(ExitCode::SUCCESS);
    }
    let sink = ReportSink::open(&args)?;
    if args.verbose {
        crate::verbose::install()?;
    }
    let mut sandbox = Sandbox::new(policy).map_err(|e| e.to_string())?;
    if let Some(upstream) = args.dns {
        sandbox = sandbox.with_dns_upstream(upstream);
    }
    sandbox = args.placement.apply(sandbox)?;
    if let Some(range) = &args.run_ids {
        let (first, count) = range
            .split_once(':')
            .and_then(|(f, c)| Some((f.parse().ok()?, c.parse().ok()?)))
            .ok_or_else(|| format!("--run-ids {range}: expected FIRST:COUNT, two numbers"))?;
        let ids = sandbox_core::RunIds::new(first, count)
            .map_err(|e| format!("--run-ids {range}: {e}"))?;
        sandbox = sandbox
            .with_run_ids(ids)
            .map_err(|e| format!("--run-ids {range}: {e}"))?;
    }
    let command = match (&args.flags.image, args.command.is_empty()) {
        (Some(dir), true) => {
            let image = sandbox_image::read_unpacked(dir)
                .map_err(|e| format!("--image {}: {e}", dir.display()))?;
            [image.config.entrypoint, image.config.cmd].concat()
        }
        _ => args.command.clone(),
    };
    let (program, rest) = command.split_first().ok_or(
        "no command given (usage: sbx run [--policy FILE | --profile NAME | --image DIR] -- CMD ARGS…)",
    )?;
    // stdout is relayed to ours as it comes (a pipeline reading our stdout
    // gets only the command's); stderr is relayed here, counted, so the
    // report can say where the command's stderr ended. The report never
    // shares a stream with the command unmarked: see `--json`, `--report`.
    let json_on_stderr = args.json && matches!(sink, ReportSink::Stderr);
    let tty = terminal::wanted(args.tty, args.no_tty);
    let target = terminal::Target::default();
    terminal::watch_signals(target.clone())?;
    // Raw before the command can print: its terminal's output is already
    // cooked once, inside.
    let raw = if tty {
        terminal::RawMode::enter()
    } else {
        None
    };
    let restore = terminal::Restore(raw.clone());
    let jobs = terminal::job_control(target.clone(), raw)?;
    let mut child = sandbox
        .command(program)
        .args(rest)
        .pty(tty)
        .stdin(Stdio::Inherit)
        .stdout(Stdio::Inherit)
        .stderr(Stdio::Piped)
        .on_job_control(move |event| {
            let _ = jobs.send(event);
        })
        .spawn()
        .map_err(|e| e.to_string())?;
    target.set(child.control());
    let relayed = match child.stderr.take() {
        // JSON alone on stderr: the command's stderr goes inside it.
        Some(reader) if !json_on_stderr => relay_stderr(reader),
        Some(reader) => {
            child.stderr = Some(reader);
            Relayed::default()
        }
        None => Relayed::default(),
    };
    let waited = child.wait();
    drop(restore);
    let outcome = waited.map_err(|e| e.to_string())?;
    let report = if args.json {
        serde_json::to_string_pretty(&outcome).map_err(|e| e.to_string())? + "\n"
    } else {
        human_report(&outcome, args.changes)
    };
    match sink {
        ReportSink::File(mut file) => {
            file.write_all(report.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|e| format!("write the report: {e}"))?;
        }
        ReportSink::Stderr if args.json => {
            let _ = std::io::stderr().write_all(report.as_bytes());
        }
        // Text after a line saying how long the command's stderr was (for a
        // person: a machine takes --json or --report).
        ReportSink::Stderr => {
            let mut err = Vec::new();
            if relayed.bytes > 0 {
                if relayed.last != Some(b'\n') {
                    err.push(b'\n');
                }
                err.extend_from_slice(
                    format!(
                        "sbx: ---- the command's stderr ends here ({} bytes); the report follows ----\n",
                        relayed.bytes
                    )
                    .as_bytes(),
                );
            }
            err.extend_from_slice(report.as_bytes());
            let _ = std::io::stderr().write_all(&err);
        }
    }
    let code = outcome.status.shell_code();
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)))
}

/// What was relayed of the command's stderr.
#[derive(Default)]
struct Relayed {
    bytes: u64,
    last: Option<u8>,
}

/// Copies the command's stderr to ours as it comes, until it ends.
fn relay_stderr(mut reader: sandbox_core::OutputReader) -> Relayed {
    let mut relayed = Relayed::default();
    let mut buf = [0u8; 16 * 1024];
    let mut stderr = std::io::stderr();
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // A closed stderr of ours does not stop the run: the rest
                // is read and dropped.
                let _ = stderr.write_all(&buf[..n]);
                relayed.bytes += n as u64;
                relayed.last = Some(buf[n - 1]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    relayed
}
