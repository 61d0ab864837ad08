//! `sbx`: run a command in a native Linux sandbox (`sbx run`), see what this
//! host can enforce (`sbx check`), and validate, explain, merge or describe
//! policies (`sbx policy`). A thin front end over `sandbox-core` and
//! `sandbox-policy`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod changes;
mod flags;
mod run;
mod terminal;
mod verbose;
use sandbox_core::{CgroupPlacement, Sandbox};
use sandbox_policy::{PROFILE_NAMES, Policy};

/// `sbx --help` and `sbx run --help` end with these.
const EXAMPLES: &str = "\
Examples:
  sbx run -- sh -c 'id; ls /'                     the default profile
  sbx run --bind \"$PWD\":/src:rw --workdir /src --memory 512MiB --timeout 10m -- make test
  sbx run --allow 192.0.2.10:443 -- curl https://192.0.2.10/   egress to one address
  sbx run --profile strict --tighten-only --pids 16 -- ./job
  sbx run --print-policy --profile networked --deny 10.0.0.0/8
  sbx check                                       what this host enforces
  sbx policy explain --policy job.toml";

#[derive(Parser)]
#[command(
    name = "sbx",
    version,
    about = "Run commands in a native Linux sandbox",
    after_help = EXAMPLES
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
    #[command(after_help = EXAMPLES)]
    Run(Box<run::RunArgs>),
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
    /// Work with OCI images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// What a kept overlay upper changed: list, apply onto a tree, export.
    #[command(subcommand)]
    Changes(changes::ChangesCommand),
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Unpack an image from an OCI image layout (what `skopeo copy
    /// docker://… oci:DIR:TAG` writes), every layer through openat2-root:
    /// into DEST, or once into the image cache (~/.cache/sbx/images).
    Unpack {
        /// The layout directory, with `:TAG` for one image of several.
        layout: String,
        /// Where the image goes (it must not exist); the cache without it.
        dest: Option<PathBuf>,
        /// The cache directory, instead of ~/.cache/sbx/images.
        #[arg(long, conflicts_with = "dest")]
        cache: Option<PathBuf>,
        /// Print the image's record as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `DIR[:TAG]`: the tag is what follows the last `:`, if no `/` does.
fn layout_and_tag(arg: &str) -> (&str, Option<&str>) {
    match arg.rsplit_once(':') {
        Some((dir, tag)) if !dir.is_empty() && !tag.is_empty() && !tag.contains('/') => {
            (dir, Some(tag))
        }
        _ => (arg, None),
    }
}

fn image(cmd: ImageCommand) -> Result<ExitCode, String> {
    match cmd {
        ImageCommand::Unpack {
            layout,
            dest,
            cache,
            json,
        } => {
            let (dir, tag) = layout_and_tag(&layout);
            let options = sandbox_image::UnpackOptions::default();
            let (path, image) = match dest {
                Some(dest) => sandbox_image::unpack(Path::new(dir), tag, &dest, &options)
                    .map(|image| (dest, image)),
                None => {
                    let cache = cache
                        .or_else(sandbox_image::default_cache_dir)
                        .ok_or("no cache directory: set HOME or XDG_CACHE_HOME, or give DEST")?;
                    sandbox_image::unpack_cached(Path::new(dir), tag, &cache, &options)
                }
            }
            .map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&image).map_err(|e| e.to_string())?
                );
            } else {
                println!(
                    "{}: {} layers, manifest {}",
                    path.display(),
                    image.layers.len(),
                    image.manifest
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Args)]
pub(crate) struct PolicySource {
    /// A policy file (TOML, or JSON if it ends in .json); unset fields come
    /// from the default profile.
    #[arg(long, conflicts_with = "profile")]
    policy: Option<PathBuf>,
    /// A built-in profile: default, strict or networked.
    #[arg(long)]
    profile: Option<String>,
}

impl PolicySource {
    pub(crate) fn load(&self) -> Result<Policy, String> {
        match (&self.policy, &self.profile) {
            (Some(path), _) => Policy::load(path).map_err(|e| e.to_string()),
            (None, Some(name)) => Policy::profile(name).map_err(|e| e.to_string()),
            (None, None) => Ok(Policy::default()),
        }
    }
}

/// Where a run's cgroup v2 goes.
#[derive(Args)]
pub(crate) struct PlacementArgs {
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
    pub(crate) fn apply(&self, sandbox: Sandbox) -> Result<Sandbox, String> {
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
        Command::Run(args) => {
            use_probe_cache(false);
            run::run(*args)
        }
        Command::Check { json, placement } => {
            use_probe_cache(true);
            check(json, &placement)
        }
        Command::Policy(cmd) => policy(cmd),
        Command::Image(cmd) => image(cmd),
        Command::Changes(cmd) => changes::changes(cmd),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("sbx: {message}");
            ExitCode::from(125)
        }
    }
}

/// The host probe through its per-boot cache (`sandbox_core::probe_cached`):
/// `sbx run` reads it, `sbx check` probes afresh and rewrites it.
/// `SBX_PROBE_CACHE` names another directory for it, or with `0` turns it
/// off.
fn use_probe_cache(refresh: bool) {
    let dir = match std::env::var_os("SBX_PROBE_CACHE") {
        Some(v) if v == "0" => None,
        Some(v) if Path::new(&v).is_absolute() => Some(PathBuf::from(v)),
        _ => sandbox_core::default_probe_cache_dir(),
    };
    if let Some(dir) = dir {
        if refresh {
            sandbox_core::reprobe_into_cache(&dir);
        } else {
            sandbox_core::probe_cached(&dir);
        }
    }
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
    show("overlay, tmpfs upper", &host.overlay_tmpfs_upper);
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
