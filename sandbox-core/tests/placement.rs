#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Where a run's cgroup v2 goes: a parent the caller gives
//! (`Sandbox::with_cgroup_parent`), refused when it holds processes, and
//! the probe's own placement, seen from the cgroup tree. Needs root (it
//! makes cgroups beside this process's run cgroups); on a pure cgroup v2
//! host (the kernel matrix) the given parent also carries the limits.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sandbox_core::{CgroupStrategy, Error};

mod common;
use common::*;

/// A fresh, empty cgroup where this process's runs make theirs (beside
/// them), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Option<Self> {
        let u = sandbox_core::probe().cgroups.unified.as_ref()?;
        let parent = u.placement.as_ref().map_or(&u.own, |p| &p.parent);
        let base = if parent == Path::new(".") {
            u.mount.clone()
        } else {
            u.mount.join(parent)
        };
        let dir = base.join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn children(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn a_given_parent_holds_the_runs_and_the_report_names_it() {
    common::require_root();
    let Some(given) = Scratch::new("given") else {
        eprintln!("skipped: no writable cgroup v2 hierarchy here");
        return;
    };
    let sb = sandbox("[resources]\npids = 32\nmemory = \"64MiB\"\n")
        .with_cgroup_parent(&given.0)
        .unwrap();
    let u = sb.report().host.cgroups.unified.clone().unwrap();
    let placement = u.placement.unwrap();
    assert_eq!(placement.strategy, CgroupStrategy::GivenParent);
    assert!(
        sb.report().fully_enforced(),
        "limits still enforced: {}",
        sb.report()
    );
    let shown = given.0.display().to_string();
    assert!(
        sb.report()
            .resources
            .mechanisms
            .iter()
            .any(|m| m.contains(&shown)),
        "the report names {shown}: {}",
        sb.report()
    );
    // Where the v2 controllers are (a pure v2 host), the limits come from
    // the given parent.
    if placement.controllers.iter().any(|c| c == "memory") {
        assert!(
            sb.report()
                .resources
                .mechanisms
                .iter()
                .any(|m| m.starts_with("memory 64MiB: cgroup v2")
                    && m.contains("a delegated parent the caller gave")),
            "{}",
            sb.report()
        );
    }
    // A run's cgroup appears beneath it, holding the run, and goes after.
    let mut child = sb.command("sleep").arg("30").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let run = loop {
        if let Some(name) = children(&given.0)
            .into_iter()
            .find(|n| n.starts_with(&format!("sandbox-{}-", std::process::id())))
        {
            break given.0.join(name);
        }
        assert!(Instant::now() < deadline, "no run cgroup beneath {shown}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let procs = std::fs::read_to_string(run.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|p| p == child.id().to_string()),
        "{procs}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(children(&given.0), Vec::<String>::new(), "torn down");
}

#[test]
#[ignore = "needs root"]
fn a_parent_that_holds_processes_is_refused_by_name() {
    common::require_root();
    let Some(busy) = Scratch::new("busy") else {
        eprintln!("skipped: no writable cgroup v2 hierarchy here");
        return;
    };
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(busy.0.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
    let err = sandbox("").with_cgroup_parent(&busy.0).unwrap_err();
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(
        matches!(&err, Error::Prepare { .. }) && err.to_string().contains("holds processes"),
        "{err}"
    );
    // Control: empty again, the same parent is accepted.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(busy.0.join("cgroup.procs"))
        .unwrap()
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the sleeper left");
        std::thread::sleep(Duration::from_millis(10));
    }
    sandbox("").with_cgroup_parent(&busy.0).unwrap();
    // A path that is no cgroup at all.
    let err = sandbox("")
        .with_cgroup_parent("/sys/fs/cgroup/no-such-cgroup-here")
        .unwrap_err();
    assert!(err.to_string().contains("no-such-cgroup-here"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn the_probe_placement_is_where_runs_go() {
    common::require_root();
    let host = sandbox_core::probe();
    let Some(u) = &host.cgroups.unified else {
        eprintln!("skipped: no cgroup v2 hierarchy here");
        return;
    };
    let Some(p) = &u.placement else {
        panic!("root gets a cgroup v2 placement: {:?}", u.placement_failure);
    };
    // What the placement says children get is what the parent enables.
    let dir = u.mount.join(&p.parent);
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap();
    for c in &p.controllers {
        assert!(
            enabled.split_whitespace().any(|e| e == c),
            "{c} in {enabled}"
        );
    }
    // A moved caller is in <parent>/supervisor, and alone with its own.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    if p.strategy == CgroupStrategy::MovedToLeaf {
        assert!(own.trim_end().ends_with("/supervisor"), "{own}");
    }
}

/// On a host whose init is systemd (the kernel matrix's `systemd` layout
/// sets `SANDBOX_EXPECT_SYSTEMD=1`, which makes a missing systemd a
/// failure), a transient scope from the caller's manager holds the runs:
/// the system manager's for root, the user's own for anyone else.
#[test]
fn a_systemd_scope_holds_the_runs_where_systemd_runs() {
    if !Path::new("/run/systemd/system").is_dir() {
        assert!(
            std::env::var_os("SANDBOX_EXPECT_SYSTEMD").is_none(),
            "SANDBOX_EXPECT_SYSTEMD is set but the host does not run systemd"
        );
        eprintln!("skipped: the host does not run systemd");
        return;
    }
    let sb = sandbox("[resources]\npids = 32\nmemory = \"64MiB\"\n")
        .with_cgroup_placement(sandbox_core::CgroupPlacement::SystemdScope)
        .unwrap();
    let u = sb.report().host.cgroups.unified.clone().unwrap();
    let placement = u.placement.unwrap();
    let expected = if is_root() {
        CgroupStrategy::SystemdSystemScope
    } else {
        CgroupStrategy::SystemdUserScope
    };
    assert_eq!(placement.strategy, expected);
    let scope = u.mount.join(&placement.parent);
    assert!(
        placement.parent.extension() == Some("scope".as_ref()),
        "{}",
        scope.display()
    );
    // The caller moves its runs' processes in itself where it may write
    // the cgroup.procs of the common ancestor of its cgroup and the scope
    // (the kernel's rule); else systemd moves each (a login session).
    let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mine = Path::new(mine.lines().find_map(|l| l.strip_prefix("0::")).unwrap());
    let mut ancestor = placement.parent.clone();
    while !Path::new("/").join(&ancestor).starts_with(mine)
        && !mine.starts_with(Path::new("/").join(&ancestor))
    {
        if !ancestor.pop() {
            break;
        }
    }
    let ancestor_procs = u.mount.join(&ancestor).join("cgroup.procs");
    let may_move = rustix::fs::access(&ancestor_procs, rustix::fs::Access::WRITE_OK).is_ok();
    assert_eq!(
        placement.moved_by_manager,
        !may_move,
        "{} writable: {may_move}",
        ancestor_procs.display()
    );
    if placement.moved_by_manager {
        assert!(
            sb.report()
                .resources
                .mechanisms
                .iter()
                .any(|m| m.contains("systemd moves each run's process")),
            "{}",
            sb.report()
        );
    }
    // The scope holds no process itself: its placeholder is in supervisor.
    assert_eq!(
        std::fs::read_to_string(scope.join("cgroup.procs")).unwrap(),
        ""
    );
    let held = std::fs::read_to_string(scope.join("supervisor/cgroup.procs")).unwrap();
    let placeholder = held.trim().parse::<u32>().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{placeholder}/comm")).unwrap(),
        "sandbox-scope\n"
    );
    assert!(
        sb.report().fully_enforced(),
        "limits enforced in the scope: {}",
        sb.report()
    );
    assert!(
        sb.report()
            .resources
            .mechanisms
            .iter()
            .any(|m| m.starts_with("memory 64MiB: cgroup v2") && m.contains("transient scope")),
        "{}",
        sb.report()
    );
    // A run's cgroup appears beneath the scope, holding the run and its
    // limit, and goes after.
    let mut child = sb.command("sleep").arg("30").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let run = loop {
        if let Some(name) = children(&scope)
            .into_iter()
            .find(|n| n.starts_with(&format!("sandbox-{}-", std::process::id())))
        {
            break scope.join(name);
        }
        assert!(
            Instant::now() < deadline,
            "no run cgroup beneath {}",
            scope.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let procs = std::fs::read_to_string(run.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|p| p == child.id().to_string()),
        "{procs}"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("memory.max")).unwrap(),
        "67108864\n"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!run.exists(), "{} torn down", run.display());
    // One scope serves the process.
    let again = sandbox("[resources]\npids = 32\n")
        .with_cgroup_placement(sandbox_core::CgroupPlacement::SystemdScope)
        .unwrap();
    let parent = again
        .report()
        .host
        .cgroups
        .unified
        .clone()
        .unwrap()
        .placement
        .unwrap()
        .parent;
    assert_eq!(parent, placement.parent);
}

/// Under systemd (the matrix's systemd layouts), a caller in a cgroup
/// systemd delegated to it (`Delegate=yes`: the `trusted.delegate` or
/// `user.delegate` xattr) moves into `<own>/supervisor`; any other asks its
/// manager for a scope rather than rearranging a cgroup systemd owns.
#[test]
fn under_systemd_the_strategy_follows_delegation() {
    if std::env::var_os("SANDBOX_EXPECT_SYSTEMD").is_none() {
        eprintln!("skipped: not the kernel matrix's systemd layouts");
        return;
    }
    let u = sandbox_core::probe().cgroups.unified.as_ref().unwrap();
    let p = u
        .placement
        .as_ref()
        .unwrap_or_else(|| panic!("a placement under systemd: {:?}", u.placement_failure));
    let own = u.mount.join(&u.own);
    let delegated = ["trusted.delegate", "user.delegate"].iter().any(|name| {
        let mut value = [0u8; 8];
        rustix::fs::getxattr(&own, *name, &mut value).is_ok_and(|n| &value[..n] == b"1")
    });
    if delegated {
        assert_eq!(p.strategy, CgroupStrategy::MovedToLeaf, "{}", own.display());
    } else {
        assert!(
            matches!(
                p.strategy,
                CgroupStrategy::SystemdSystemScope | CgroupStrategy::SystemdUserScope
            ),
            "{:?} for {}",
            p.strategy,
            own.display()
        );
    }
}
