//! The probe's result kept across processes, for short-lived callers such
//! as the `sbx` CLI that would otherwise probe on every invocation: valid
//! for one boot, one kernel, one effective uid, one cgroup placement and
//! one version of this library, in a file only the caller can write.
//!
//! A stale entry can only make a run fail, never run weaker than its
//! report: every facility the report claims is still used by the exact
//! operation the run performs (a user namespace the sysctl now forbids
//! fails the clone, and the run says so). The cgroup placements a probe
//! makes for its own process (moving the caller into a leaf, a systemd
//! scope) are made again by each process: with those, the cgroups are
//! probed again and only the rest is taken from the file.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupStrategy;
use crate::host::HostCapabilities;

/// The cache file's name in its directory.
const FILE: &str = "host-probe.json";

/// Bumped when the file's meaning changes in a way the version does not
/// say (the version changes with every release anyway).
const FORMAT: u32 = 1;

/// A cache file larger than this is not ours.
const MAX_BYTES: u64 = 1 << 20;

/// What the cached result depends on: if any of it differs, the file is
/// ignored and the host probed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Key {
    format: u32,
    version: String,
    boot_id: String,
    kernel: String,
    euid: u32,
    /// `/proc/self/cgroup`, whole.
    cgroup: String,
}

impl Key {
    fn now() -> Option<Self> {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Some(Self {
            format: FORMAT,
            version: env!("CARGO_PKG_VERSION").into(),
            boot_id: read("/proc/sys/kernel/random/boot_id")?.trim().into(),
            kernel: rustix::system::uname()
                .release()
                .to_string_lossy()
                .into_owned(),
            euid: rustix::process::geteuid().as_raw(),
            cgroup: read("/proc/self/cgroup")?,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: Key,
    host: HostCapabilities,
}

/// Where [`probe_cached`] keeps its file by default: `$XDG_RUNTIME_DIR/sbx`
/// (a directory only the user can write, emptied at logout and at boot),
/// or `/run/sbx` for root; `None` for a caller with neither (no cache: a
/// shared directory such as `/tmp` would let another user plant one).
pub fn default_probe_cache_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => Some(Path::new(&dir).join("sbx")),
        _ if rustix::process::geteuid().is_root() => Some(PathBuf::from("/run/sbx")),
        _ => None,
    }
}

/// Where the probe's result came from (see [`probe_cached`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeSource {
    /// The cache file: nothing was probed but what a cached cgroup
    /// placement makes per process.
    Cache,
    /// Probed now (and written to the cache file where possible).
    Probed,
    /// This process had probed already ([`probe`](crate::probe()) or an
    /// earlier call): the cache was not read.
    Process,
}

/// As [`probe`](crate::probe()), but valid across processes: the result is
/// read from `dir/host-probe.json` if that file is the caller's (owned by
/// its euid, not writable by group or others, in a directory of the same
/// kind) and was written on this boot, kernel, euid and cgroup placement by
/// this version; otherwise the host is probed and the file written
/// (atomically, mode 0600, `dir` made with mode 0700 if missing). A cache
/// that cannot be read or written is ignored: the host is probed, as
/// without it.
///
/// Call it before the first [`Sandbox::new`](crate::Sandbox::new) of the
/// process: the result is the process's probe from then on.
///
/// # Examples
///
/// ```no_run
/// // (Not run as a doctest: as root it would write the host's /run/sbx.)
/// if let Some(dir) = sandbox_core::default_probe_cache_dir() {
///     let (host, source) = sandbox_core::probe_cached(&dir);
///     println!("kernel {} ({source:?})", host.kernel);
/// }
/// ```
pub fn probe_cached(dir: &Path) -> (&'static HostCapabilities, ProbeSource) {
    cached(dir, false)
}

/// Probes the host now and writes the result to `dir`'s cache file, as
/// [`probe_cached`] does when the file is stale: for a caller that wants
/// the host as it is (`sbx check`), and leaves the next short-lived
/// process a fresh entry.
///
/// Call it before the first [`Sandbox::new`](crate::Sandbox::new) of the
/// process: the result is the process's probe from then on (a process that
/// has probed already gets that result, and [`ProbeSource::Process`]).
pub fn reprobe_into_cache(dir: &Path) -> (&'static HostCapabilities, ProbeSource) {
    cached(dir, true)
}

fn cached(dir: &Path, refresh: bool) -> (&'static HostCapabilities, ProbeSource) {
    let mut source = ProbeSource::Process;
    let host = crate::probe::host_cell().get_or_init(|| {
        let key = Key::now();
        if !refresh && let Some(host) = key.as_ref().and_then(|key| load(dir, key)) {
            source = ProbeSource::Cache;
            return host;
        }
        source = ProbeSource::Probed;
        let host = crate::probe_now();
        if let Some(key) = key
            && let Err(e) = store(dir, key, &host)
        {
            tracing::debug!(dir = %dir.display(), error = %e, "probe cache not written");
        }
        host
    });
    (host, source)
}

/// Whether the cgroup v2 placement was made for the probing process alone.
fn placement_is_per_process(host: &HostCapabilities) -> bool {
    host.cgroups
        .unified
        .as_ref()
        .and_then(|u| u.placement.as_ref())
        .is_some_and(|p| {
            matches!(
                p.strategy,
                CgroupStrategy::MovedToLeaf
                    | CgroupStrategy::MovedCgroupToLeaf
                    | CgroupStrategy::SystemdSystemScope
                    | CgroupStrategy::SystemdUserScope
            )
        })
}

/// `dir`, if it is the caller's alone.
fn own_dir(dir: &Path) -> Option<openat2_root::Root> {
    let root = openat2_root::Root::open(dir).ok()?;
    let meta = root.metadata(".").ok()?;
    owned_by_caller(&meta).then_some(root)
}

fn owned_by_caller(meta: &openat2_root::Metadata) -> bool {
    meta.is_dir() && meta.uid() == rustix::process::geteuid().as_raw() && meta.mode() & 0o022 == 0
}

fn load(dir: &Path, key: &Key) -> Option<HostCapabilities> {
    let root = own_dir(dir)?;
    let file = root
        .open_file(FILE, openat2_root::OpenOptions::new().read(true))
        .ok()?;
    let meta = file.metadata().ok()?;
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !meta.is_file()
            || meta.uid() != key.euid
            || meta.permissions().mode() & 0o022 != 0
            || meta.len() > MAX_BYTES
        {
            return None;
        }
    }
    let mut text = String::new();
    file.take(MAX_BYTES).read_to_string(&mut text).ok()?;
    let entry: Entry = serde_json::from_str(&text).ok()?;
    if entry.key != *key || entry.host.euid != key.euid {
        return None;
    }
    let mut host = entry.host;
    if placement_is_per_process(&host) {
        host.cgroups = crate::probe::probe_cgroups();
    }
    Some(host)
}

fn store(dir: &Path, key: Key, host: &HostCapabilities) -> Result<(), String> {
    let parent = dir.parent().ok_or("no parent directory")?;
    let name = dir.file_name().ok_or("no directory name")?;
    let up = openat2_root::Root::open(parent).map_err(|e| e.to_string())?;
    match up.create_dir(name, 0o700) {
        Ok(()) => {}
        Err(e) if e.kind() == openat2_root::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.to_string()),
    }
    let root = own_dir(dir).ok_or("the directory is not the caller's alone")?;
    let entry = Entry {
        key,
        host: host.clone(),
    };
    let text = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
    root.write_atomic_with(FILE, text, openat2_root::DurableWrite::NoSync)
        .map_err(|e| e.to_string())?;
    root.set_permissions(FILE, 0o600).map_err(|e| e.to_string())
}
