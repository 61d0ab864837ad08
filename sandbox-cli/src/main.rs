//! `sbx`: run a command in a native Linux sandbox (`sbx run`), see what this
//! host can enforce (`sbx check`), and validate, explain, merge or describe
//! policies (`sbx policy`). A thin front end over `sandbox-core` and
//! `sandbox-policy`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sandbox_core::{CgroupPlacement, Sandbox, Stdio};
use sandbox_policy::{PROFILE_NAMES, Policy};

#[derive(Parser)]
#[command(
    name = "sbx",
    version,
    about = "Run commands in a native Linux sandbox"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in the sandbox; the exit code mirrors the command's
    /// (128 + signal if it was killed), and the report goes to stderr after
    /// the command's (or to --report / --report-fd).
    Run(RunArgs),
    /// Show what this host can enforce, and what each profile gets here.
    Check {
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
        /// As for `sbx run`: what runs placed so get.
        #[command(flatten)]
        placement: PlacementArgs,
    },
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Args)]
struct PolicySource {
    /// A policy file (TOML, or JSON if it ends in .json); unset fields come
    /// from the default profile.
    #[arg(long, conflicts_with = "profile")]
    policy: Option<PathBuf>,
    /// A built-in profile: default, strict or networked.
    #[arg(long)]
    profile: Option<String>,
}

impl PolicySource {
    fn load(&self) -> Result<Policy, String> {
        match (&self.policy, &self.profile) {
            (Some(path), _) => Policy::load(path).map_err(|e| e.to_string()),
            (None, Some(name)) => Policy::profile(name).map_err(|e| e.to_string()),
            (None, None) => Ok(Policy::default()),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    source: PolicySource,
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
    #[command(flatten)]
    placement: PlacementArgs,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Where a run's cgroup v2 goes.
#[derive(Args)]
struct PlacementArgs {
    /// Make the run's cgroup v2 beneath this delegated cgroup (absolute,
    /// or relative to the cgroup v2 mount), which must hold no process,
    /// instead of finding a place automatically.
    #[arg(long, value_name = "PATH", conflicts_with = "cgroup_placement")]
    cgroup_parent: Option<PathBuf>,
    /// How to find the run's cgroup v2 parent: auto (the strategies in
    /// order), systemd-scope (a transient scope with Delegate=yes from the
    /// caller's systemd manager), move-cgroup (move every process of the
    /// caller's cgroup into `<own>/supervisor`), disabled.
    #[arg(long, value_enum, value_name = "HOW")]
    cgroup_placement: Option<PlacementChoice>,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlacementChoice {
    Auto,
    SystemdScope,
    MoveCgroup,
    Disabled,
}

impl PlacementArgs {
    fn apply(&self, sandbox: Sandbox) -> Result<Sandbox, String> {
        let placement = match (&self.cgroup_parent, self.cgroup_placement) {
            (Some(parent), _) => CgroupPlacement::Parent(parent.clone()),
            (None, None | Some(PlacementChoice::Auto)) => return Ok(sandbox),
            (None, Some(PlacementChoice::SystemdScope)) => CgroupPlacement::SystemdScope,
            (None, Some(PlacementChoice::MoveCgroup)) => CgroupPlacement::MoveCgroupToLeaf,
            (None, Some(PlacementChoice::Disabled)) => CgroupPlacement::Disabled,
        };
        sandbox
            .with_cgroup_placement(placement)
            .map_err(|e| e.to_string())
    }
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check policy files; print each problem with its location.
    Validate {
        /// Policy files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Describe a policy in words, completed with the default profile.
    Explain {
        #[command(flatten)]
        source: PolicySource,
    },
    /// Merge policies onto a base (later files override earlier ones);
    /// with --tighten-only, refuse an override that loosens the base.
    Merge {
        /// The base policy file.
        base: PathBuf,
        /// Overrides, applied in order.
        #[arg(required = true)]
        overrides: Vec<PathBuf>,
        /// Refuse any override that loosens what it overrides.
        #[arg(long)]
        tighten_only: bool,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of policy files.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Check { json, placement } => check(json, &placement),
        Command::Policy(cmd) => policy(cmd),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("sbx: {message}");
            ExitCode::from(125)
        }
    }
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
fn human_report(outcome: &sandbox_core::RunOutcome) -> String {
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
    }
    text.push_str(&outcome.report.to_string());
    text
}

fn run(args: RunArgs) -> Result<ExitCode, String> {
    let sink = ReportSink::open(&args)?;
    let mut sandbox = Sandbox::new(args.source.load()?).map_err(|e| e.to_string())?;
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
    let (program, rest) = args
        .command
        .split_first()
        .ok_or("no command given (usage: sbx run [--policy FILE | --profile NAME] -- CMD ARGS…)")?;
    // stdout is relayed to ours as it comes (a pipeline reading our stdout
    // gets only the command's); stderr is relayed here, counted, so the
    // report can say where the command's stderr ended. The report never
    // shares a stream with the command unmarked: see `--json`, `--report`.
    let json_on_stderr = args.json && matches!(sink, ReportSink::Stderr);
    let mut child = sandbox
        .command(program)
        .args(rest)
        .stdin(Stdio::Inherit)
        .stdout(Stdio::Inherit)
        .stderr(Stdio::Piped)
        .spawn()
        .map_err(|e| e.to_string())?;
    let relayed = match child.stderr.take() {
        // JSON alone on stderr: the command's stderr goes inside it.
        Some(reader) if !json_on_stderr => relay_stderr(reader),
        Some(reader) => {
            child.stderr = Some(reader);
            Relayed::default()
        }
        None => Relayed::default(),
    };
    let outcome = child.wait().map_err(|e| e.to_string())?;
    let report = if args.json {
        serde_json::to_string_pretty(&outcome).map_err(|e| e.to_string())? + "\n"
    } else {
        human_report(&outcome)
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

fn check(json: bool, placement: &PlacementArgs) -> Result<ExitCode, String> {
    let mut profiles = Vec::new();
    for name in PROFILE_NAMES {
        let sandbox = Sandbox::from_profile(name).map_err(|e| e.to_string())?;
        profiles.push((name, placement.apply(sandbox)?));
    }
    let host = match profiles.first() {
        Some((_, s)) => s.report().host.clone(),
        None => sandbox_core::probe().clone(),
    };
    if json {
        let value = serde_json::json!({
            "host": host,
            "profiles": profiles.iter().map(|(name, s)| {
                let r = s.report();
                serde_json::json!({
                    "name": name,
                    "runs": r.fully_enforced() || !fails_closed(s),
                    "filesystem": r.filesystem, "network": r.network,
                    "privilege": r.privilege, "resources": r.resources,
                    "downgrades": r.downgrades, "notes": r.notes,
                })
            }).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("host: Linux {}, uid {}", host.kernel, host.euid);
    let show = |name: &str, c: &sandbox_core::Capability| {
        println!(
            "  {name:<22} {}",
            match c {
                sandbox_core::Capability::Available => "yes".to_string(),
                sandbox_core::Capability::Unavailable { reason } => format!("no: {reason}"),
                sandbox_core::Capability::Unknown { reason } => format!("unknown: {reason}"),
            }
        )
    };
    show("user namespaces", &host.user_namespaces);
    show("openat2", &host.openat2);
    show("landlock", &host.landlock);
    if let Some(abi) = host.landlock_abi {
        println!("  {:<22} {abi}", "landlock ABI");
    }
    show("seccomp filters", &host.seccomp_filter);
    show("/dev/net/tun", &host.tun);
    show("nftables in a userns", &host.nftables_in_userns);
    if let Some(u) = &host.cgroups.unified {
        println!(
            "  {:<22} {}",
            "cgroup v2 placement",
            match (&u.placement, &u.placement_failure) {
                (Some(p), _) => format!(
                    "run cgroups beneath {} get [{}] ({})",
                    if p.parent == std::path::Path::new(".") {
                        u.mount.clone()
                    } else {
                        u.mount.join(&p.parent)
                    }
                    .display(),
                    p.controllers.join(" "),
                    p.strategy
                ),
                (None, why) => format!("none: {}", why.as_deref().unwrap_or("not tried")),
            }
        );
    }
    for controller in ["memory", "pids", "cpu"] {
        println!(
            "  {:<22} {}",
            format!("cgroup {controller}"),
            if host.cgroups.can_limit(controller) {
                "yes (a run's cgroup gets it)"
            } else {
                "no"
            }
        );
    }
    for (name, sandbox) in &profiles {
        let r = sandbox.report();
        let verdict = if r.fully_enforced() {
            "fully enforced"
        } else if fails_closed(sandbox) {
            "REFUSED here (on_unavailable = \"fail\")"
        } else {
            "runs degraded"
        };
        println!("profile {name}: {verdict}");
        for d in &r.downgrades {
            println!("  downgrade: {d}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fails_closed(sandbox: &Sandbox) -> bool {
    sandbox.policy().on_unavailable != Some(sandbox_policy::OnUnavailable::Degrade)
}

fn policy(cmd: PolicyCommand) -> Result<ExitCode, String> {
    match cmd {
        PolicyCommand::Validate { files } => {
            let mut ok = true;
            for file in files {
                match Policy::load(&file) {
                    Ok(_) => println!("{}: ok", file.display()),
                    Err(e) => {
                        ok = false;
                        eprintln!("{e}");
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PolicyCommand::Explain { source } => {
            let policy = source.load()?.resolved();
            let text = policy.to_string();
            println!("{}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Merge {
            base,
            overrides,
            tighten_only,
            json,
        } => {
            let mut merged = Policy::load(&base).map_err(|e| e.to_string())?;
            for file in overrides {
                let over = Policy::load(&file).map_err(|e| e.to_string())?;
                merged = if tighten_only {
                    merged
                        .merge_tighten_only(&over)
                        .map_err(|e| format!("{}: {e}", file.display()))?
                } else {
                    merged.merge(&over)
                };
            }
            if json {
                println!("{}", merged.to_json_string().map_err(|e| e.to_string())?);
            } else {
                print!("{}", merged.to_toml_string().map_err(|e| e.to_string())?);
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Schema => {
            println!("{}", Policy::json_schema());
            Ok(ExitCode::SUCCESS)
        }
    }
}
