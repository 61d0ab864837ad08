//! The systemd strategy: a transient scope with `Delegate=yes`, asked of
//! the system manager (a root caller) or of the caller's user manager (any
//! other), over D-Bus — what podman and runc do on systemd hosts, and the
//! way an unprivileged user in a login session gets a cgroup subtree at
//! all.
//!
//! A scope is a unit for processes someone else started: systemd moves the
//! PIDs it is given into it. This crate gives it a placeholder process (a
//! child that sleeps on a pipe only this process holds, so it lives as long
//! as the caller's process, or any run it started), moves the placeholder
//! into `<scope>/supervisor` so that the scope holds no process itself, and
//! enables the controllers in the scope: per-run cgroups then go beside the
//! placeholder. One scope serves the whole process; systemd removes it,
//! with whatever is left beneath it, once it is empty.
//!
//! Where the caller cannot move its own processes into the scope (an
//! unprivileged caller whose cgroup is not beneath its user manager's, as
//! in an SSH login session: the migration needs write access to the common
//! ancestor), each run's process is moved by systemd instead
//! (`AttachProcessesToUnit`, which a user manager hands on to the system
//! manager); the probe tries that exact call with a throwaway process.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, Value};

use super::dir::Cg;
use super::types::{CgroupStrategy, SUPERVISOR_LEAF, V2Placement};
use crate::sys::Placeholder;

const DESTINATION: &str = "org.freedesktop.systemd1";
const OBJECT: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long a call to the manager, and the scope's start, may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The scope this process made, shared by every `Sandbox` of it.
struct Scope {
    /// The unit's name (`sandbox-<pid>-<n>.scope`).
    unit: String,
    /// The cgroup v2 mount it is beneath.
    mount: PathBuf,
    /// Its cgroup, relative to the mount.
    path: PathBuf,
    strategy: CgroupStrategy,
    controllers: Vec<String>,
    /// The connection runs are moved through, where the caller cannot move
    /// them itself.
    attach_through: Option<Connection>,
    placeholder: Placeholder,
}

static SCOPE: Mutex<Option<Scope>> = Mutex::new(None);

/// Whether systemd is this host's init (`sd_booted(3)`: the directory it
/// makes at boot).
pub(super) fn host_runs_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The placement in this process's scope, made now if there is none yet
/// (or the one there was is gone).
pub(super) fn place(root: &openat2_root::Root, mount: &Path) -> Result<V2Placement, String> {
    let mut slot = SCOPE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(scope) = slot.as_ref() {
        let leaf = Cg {
            root,
            path: scope.path.join(SUPERVISOR_LEAF),
        };
        if scope.mount == mount
            && leaf
                .procs()
                .is_ok_and(|p| p.contains(&scope.placeholder.pid()))
        {
            return Ok(placement(scope));
        }
        *slot = None;
    }
    let scope = make(root, mount)?;
    let placed = placement(&scope);
    *slot = Some(scope);
    Ok(placed)
}

fn placement(scope: &Scope) -> V2Placement {
    V2Placement {
        strategy: scope.strategy,
        parent: scope.path.clone(),
        controllers: scope.controllers.clone(),
        moved_by_manager: scope.attach_through.is_some(),
    }
}

/// Whether processes reach `cgroup` (relative to `mount`) only through
/// systemd (see [`attach`]).
pub(crate) fn moves_into(mount: &Path, cgroup: &Path) -> bool {
    let slot = SCOPE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    slot.as_ref().is_some_and(|scope| {
        scope.attach_through.is_some() && scope.mount == mount && cgroup.starts_with(&scope.path)
    })
}

/// Moves `pid` into `cgroup` (relative to `mount`) through systemd, where
/// the scope that holds `cgroup` needs that; `None` where it does not (the
/// caller writes `cgroup.procs` itself).
pub(crate) fn attach(mount: &Path, cgroup: &Path, pid: i32) -> Option<Result<(), String>> {
    let slot = SCOPE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let scope = slot.as_ref()?;
    let conn = scope.attach_through.as_ref()?;
    if scope.mount != mount {
        return None;
    }
    let sub = cgroup.strip_prefix(&scope.path).ok()?;
    let sub = format!("/{}", sub.display());
    Some(attach_processes(conn, &scope.unit, &sub, &[pid as u32]))
}

fn attach_processes(conn: &Connection, unit: &str, sub: &str, pids: &[u32]) -> Result<(), String> {
    conn.call_method(
        Some(DESTINATION),
        OBJECT,
        Some(MANAGER),
        "AttachProcessesToUnit",
        &(unit, sub, pids),
    )
    .map(drop)
    .map_err(|e| format!("AttachProcessesToUnit({unit}, {sub}): {e}"))
}

/// `StartTransientUnit` of scope `unit` holding `pid`, with
/// `Delegate=yes` and (where the manager knows it) `OOMPolicy=continue`.
fn start_scope(conn: &Connection, manager: &str, unit: &str, pid: u32) -> Result<(), String> {
    let description = format!("sandbox-core run cgroups of pid {}", std::process::id());
    let start = |oom_policy: bool| {
        let mut properties: Vec<(&str, Value<'_>)> = vec![
            ("Description", Value::from(description.as_str())),
            ("PIDs", Value::from(vec![pid])),
            ("Delegate", Value::from(true)),
            ("CollectMode", Value::from("inactive-or-failed")),
        ];
        if oom_policy {
            // One run's OOM kill (its own cgroup's memory.max) must not
            // make systemd stop the scope, and every other run with it.
            properties.push(("OOMPolicy", Value::from("continue")));
        }
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        conn.call_method(
            Some(DESTINATION),
            OBJECT,
            Some(MANAGER),
            "StartTransientUnit",
            &(unit, "fail", properties, aux),
        )
        .and_then(|reply| reply.body().deserialize::<OwnedObjectPath>().map(drop))
    };
    // A manager too old for OOMPolicy= on scopes refuses the property.
    start(true)
        .or_else(|_| start(false))
        .map_err(|e| format!("StartTransientUnit({unit}) on {manager}: {e}"))
}

/// Waits until the manager has moved `pid` into `unit`: the scope's path
/// relative to the hierarchy's mount.
fn wait_for_move(mount: &Path, manager: &str, unit: &str, pid: u32) -> Result<PathBuf, String> {
    let mount_root = mount_root(mount)?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(path) = cgroup_of(pid)
            .filter(|p| p.file_name() == Some(unit.as_ref()))
            .and_then(|p| super::relative_to_mount(&p, &mount_root))
        {
            return Ok(path);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{manager} did not move the placeholder into {unit} within {TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn make(root: &openat2_root::Root, mount: &Path) -> Result<Scope, String> {
    if !host_runs_systemd() {
        return Err("the host does not run systemd (no /run/systemd/system)".into());
    }
    let user = !rustix::process::geteuid().is_root();
    let (conn, manager) = connect(user)?;
    let placeholder =
        Placeholder::spawn().map_err(|e| format!("start the scope's placeholder process: {e}"))?;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let unit = format!(
        "sandbox-{}-{}.scope",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    start_scope(&conn, manager, &unit, placeholder.pid())?;
    // systemd moves the placeholder when the start job runs, just after
    // the reply.
    let path = wait_for_move(mount, manager, &unit, placeholder.pid())?;
    let scope_cg = Cg {
        root,
        path: path.clone(),
    };
    let leaf = Cg {
        root,
        path: path.join(SUPERVISOR_LEAF),
    };
    root.create_dir(&leaf.path, 0o755)
        .map_err(|e| format!("create {}: {e}", leaf.path.display()))?;
    leaf.write("cgroup.procs", &placeholder.pid().to_string())?;
    let enabled = scope_cg.enable()?;
    if !enabled.refused.is_empty() {
        return Err(format!("{unit}: {}", enabled.refused.join("; ")));
    }
    scope_cg.can_create()?;
    // The exact move a run makes: a process of the caller's, from the
    // caller's cgroup into the scope's subtree.
    let trial = Placeholder::spawn().map_err(|e| format!("start a trial process: {e}"))?;
    let attach_through = match leaf.write("cgroup.procs", &trial.pid().to_string()) {
        Ok(()) => None,
        Err(direct) => {
            match attach_processes(&conn, &unit, &format!("/{SUPERVISOR_LEAF}"), &[trial.pid()]) {
                Ok(()) => Some(conn),
                Err(through) => {
                    return Err(format!(
                        "move a process of the caller's into {unit}: {direct}; through {manager}: {through}"
                    ));
                }
            }
        }
    };
    drop(trial);
    Ok(Scope {
        unit,
        mount: mount.to_path_buf(),
        path,
        strategy: if user {
            CgroupStrategy::SystemdUserScope
        } else {
            CgroupStrategy::SystemdSystemScope
        },
        controllers: enabled.controllers,
        attach_through,
        placeholder,
    })
}

/// Connects to the system manager (`user` false) or the caller's user
/// manager: through the bus, else the manager's private socket.
fn connect(user: bool) -> Result<(Connection, &'static str), String> {
    let manager = if user {
        "the user's systemd manager"
    } else {
        "the systemd system manager"
    };
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!("/run/user/{}", rustix::process::geteuid().as_raw()))
        });
    let bus = if user {
        match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
            Ok(address) => zbus::blocking::connection::Builder::address(address.as_str()),
            Err(_) => zbus::blocking::connection::Builder::address(
                format!("unix:path={}", runtime_dir.join("bus").display()).as_str(),
            ),
        }
    } else {
        zbus::blocking::connection::Builder::system()
    };
    let bus_error = match bus.and_then(|b| b.method_timeout(TIMEOUT).build()) {
        Ok(conn) => return Ok((conn, manager)),
        Err(e) => e,
    };
    let private = if user {
        runtime_dir.join("systemd/private")
    } else {
        PathBuf::from("/run/systemd/private")
    };
    zbus::blocking::connection::Builder::address(
        format!("unix:path={}", private.display()).as_str(),
    )
    .and_then(|b| b.p2p().method_timeout(TIMEOUT).build())
    .map(|conn| (conn, manager))
    .map_err(|private_error| {
        format!(
            "reach {manager}: the bus: {bus_error}; {}: {private_error}",
            private.display()
        )
    })
}

/// The cgroup v2 path of `pid`, as this process's cgroup namespace shows it.
fn cgroup_of(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    super::parse_proc_cgroup(&text)
        .into_iter()
        .find(|c| c.controllers.is_empty() && !c.path.as_os_str().is_empty())
        .map(|c| c.path)
}

/// The cgroup path of the root of the cgroup v2 mount at `mount` (`/`
/// unless a cgroup namespace or a bind shows a subtree).
fn mount_root(mount: &Path) -> Result<PathBuf, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    super::parse_mountinfo(&text)
        .into_iter()
        .find(|m| m.v2 && m.mount_point == mount)
        .map(|m| m.root)
        .ok_or_else(|| format!("{} is not a cgroup v2 mount here", mount.display()))
}
