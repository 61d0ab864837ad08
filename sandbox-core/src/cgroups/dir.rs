//! One cgroup v2 directory beneath the hierarchy's mount, reached through
//! `openat2-root`: what the placement strategies read and write.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::types::WANTED;

/// What [`Cg::enable`] got.
pub(crate) struct Enabled {
    /// Enabled for the children now (wanted ones only).
    pub(crate) controllers: Vec<String>,
    /// The writes the kernel refused (a domain controller in a cgroup that
    /// holds processes: EBUSY; threaded ones such as pids and cpu pass).
    pub(crate) refused: Vec<String>,
    /// Enabled by this call.
    pub(crate) newly: Vec<&'static str>,
}

/// A cgroup v2 directory reached beneath the mount.
pub(crate) struct Cg<'a> {
    pub(crate) root: &'a openat2_root::Root,
    pub(crate) path: PathBuf,
}

impl Cg<'_> {
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        if self.path == Path::new(".") {
            PathBuf::from(name)
        } else {
            self.path.join(name)
        }
    }

    pub(crate) fn read(&self, name: &str) -> Result<String, String> {
        let mut text = String::new();
        self.root
            .open_file(self.file(name), openat2_root::OpenOptions::new().read(true))
            .map_err(|e| e.to_string())?
            .read_to_string(&mut text)
            .map_err(|e| format!("read {}: {e}", self.file(name).display()))?;
        Ok(text)
    }

    pub(crate) fn write(&self, name: &str, value: &str) -> Result<(), String> {
        let what = || format!("write {value:?} to {}", self.file(name).display());
        self.root
            .open_file(
                self.file(name),
                openat2_root::OpenOptions::new().write(true),
            )
            .map_err(|e| format!("{}: {e}", what()))?
            .write_all(value.as_bytes())
            .map_err(|e| format!("{}: {e}", what()))
    }

    pub(crate) fn words(&self, name: &str) -> Vec<String> {
        self.read(name)
            .map(|t| t.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    }

    pub(crate) fn procs(&self) -> Result<Vec<u32>, String> {
        Ok(self
            .read("cgroup.procs")?
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// Enables each wanted controller the cgroup has (one write each: one
    /// refused controller must not cost the others), then reads back what
    /// its children get.
    pub(crate) fn enable(&self) -> Result<Enabled, String> {
        let available = self.words("cgroup.controllers");
        let mut refused = Vec::new();
        let mut newly = Vec::new();
        for c in WANTED {
            if !available.iter().any(|a| a == c) {
                continue;
            }
            if self.words("cgroup.subtree_control").iter().any(|e| e == c) {
                continue;
            }
            match self.write("cgroup.subtree_control", &format!("+{c}")) {
                Ok(()) => newly.push(c),
                Err(e) => refused.push(e),
            }
        }
        let enabled: Vec<String> = self
            .words("cgroup.subtree_control")
            .into_iter()
            .filter(|c| WANTED.contains(&c.as_str()))
            .collect();
        if enabled.is_empty() && !refused.is_empty() {
            return Err(refused.join("; "));
        }
        Ok(Enabled {
            controllers: enabled,
            refused,
            newly,
        })
    }

    /// Takes back controllers [`enable`](Cg::enable) turned on.
    pub(crate) fn disable(&self, controllers: &[&str]) {
        for c in controllers {
            let _ = self.write("cgroup.subtree_control", &format!("-{c}"));
        }
    }

    /// A cgroup can be made (and removed) beneath this one.
    pub(crate) fn can_create(&self) -> Result<(), String> {
        let probe = self.file(&format!("sandbox-probe-{}", std::process::id()));
        self.root
            .create_dir(&probe, 0o755)
            .map_err(|e| format!("create a cgroup in {}: {e}", self.path.display()))?;
        self.root
            .remove_dir(&probe)
            .map_err(|e| format!("remove {}: {e}", probe.display()))
    }

    pub(crate) fn has_delegate_xattr(&self) -> bool {
        let Ok(dir) = self.root.open_dir(&self.path) else {
            return false;
        };
        // The handle is O_PATH, which fgetxattr(2) refuses before 6.x:
        // read through its /proc/self/fd link (the same inode).
        use std::os::fd::{AsFd, AsRawFd};
        let link = format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd());
        ["trusted.delegate", "user.delegate"].iter().any(|name| {
            let mut value = [0u8; 8];
            rustix::fs::getxattr(link.as_str(), *name, &mut value)
                .is_ok_and(|n| &value[..n] == b"1")
        })
    }
}
