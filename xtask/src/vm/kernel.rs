//! Debian's kernel packages for the matrix: found with `apt-cache`,
//! fetched with `apt-get download`, unpacked with `dpkg-deb -x`, and given
//! a `modules.dep` with `depmod` (the package's own install script would).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// One kernel of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KernelSeries {
    /// What `--kernel` takes: `6.1`, `6.12`.
    pub(crate) name: &'static str,
    /// The package names of the series (the newest one is taken).
    pattern: &'static str,
}

/// The kernels of the matrix: Debian 12's own (6.1) and its LTS
/// alternative (6.12).
pub(crate) const SERIES: [KernelSeries; 2] = [
    KernelSeries {
        name: "6.1",
        pattern: r"^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$",
    },
    KernelSeries {
        name: "6.12",
        pattern: r"^linux-image-6\.12\.[0-9]+\+deb[0-9]+-amd64-unsigned$",
    },
];

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    pub(crate) series: &'static str,
    /// The release (`uname -r` in the guest).
    pub(crate) release: String,
    /// The package it came from.
    pub(crate) package: String,
    pub(crate) vmlinuz: PathBuf,
    /// `lib/modules` of the package (holds `<release>/`).
    pub(crate) modules: PathBuf,
}

impl Kernel {
    /// The module tree of this release.
    pub(crate) fn module_dir(&self) -> PathBuf {
        self.modules.join(&self.release)
    }
}

/// The newest package of `series`, unpacked beneath `cache` (fetched only
/// the first time).
pub(crate) fn fetch(series: &KernelSeries, cache: &Path) -> Result<Kernel, String> {
    let package = newest_package(series)?;
    let dir = cache.join(&package);
    let done = dir.join(".unpacked");
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let download = cache.join("download");
        std::fs::create_dir_all(&download)
            .map_err(|e| format!("create {}: {e}", download.display()))?;
        run::status(
            Command::new("apt-get")
                .args(["download", &package])
                .current_dir(&download),
        )?;
        let deb = std::fs::read_dir(&download)
            .map_err(|e| format!("read {}: {e}", download.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
            .ok_or_else(|| format!("apt-get download {package} left no .deb"))?;
        run::status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
        let _ = std::fs::remove_file(&deb);
        let release = only_entry(&dir.join("lib/modules"))?;
        run::status(Command::new("depmod").arg("-b").arg(&dir).arg(&release))?;
        std::fs::write(&done, &release).map_err(|e| format!("write {}: {e}", done.display()))?;
    }
    let release = only_entry(&dir.join("lib/modules"))?;
    Ok(Kernel {
        series: series.name,
        vmlinuz: dir.join("boot").join(format!("vmlinuz-{release}")),
        modules: dir.join("lib/modules"),
        release,
        package,
    })
}

/// The newest package name matching the series, by Debian's version order.
fn newest_package(series: &KernelSeries) -> Result<String, String> {
    let search = || -> Result<Vec<String>, String> {
        let out = Command::new("apt-cache")
            .args(["search", "--names-only", series.pattern])
            .output()
            .map_err(|e| format!("apt-cache search: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(' ').next().map(String::from))
            .collect())
    };
    let mut names = search()?;
    if names.is_empty() {
        // A machine whose package lists were never fetched (or were
        // cleaned): fetch them once.
        run::status(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        names = search()?;
    }
    if names.is_empty() {
        return Err(format!(
            "no Debian kernel package for {} (apt-cache search '{}' found none: run apt-get update?)",
            series.name, series.pattern
        ));
    }
    names.sort_by_key(|n| version_key(n));
    names
        .pop()
        .ok_or_else(|| format!("no package for kernel {}", series.name))
}

/// The numbers in a package name, in order (`6.1.0-54` → [6, 1, 0, 54]).
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

fn only_entry(dir: &Path) -> Result<String, String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(format!(
            "{} holds {} entries, expected one kernel release",
            dir.display(),
            names.len()
        )),
    }
}

/// The modules the initramfs loads to reach the host's root (virtio PCI,
/// 9p, overlayfs), each after its dependencies, decompressed: the paths
/// in the package and the names they get.
pub(crate) fn boot_modules(kernel: &Kernel) -> Result<Vec<PathBuf>, String> {
    let dep_file = kernel.module_dir().join("modules.dep");
    let deps = std::fs::read_to_string(&dep_file)
        .map_err(|e| format!("read {}: {e}", dep_file.display()))?;
    let builtin =
        std::fs::read_to_string(kernel.module_dir().join("modules.builtin")).unwrap_or_default();
    let mut order: Vec<String> = Vec::new();
    for wanted in ["virtio_pci", "9pnet_virtio", "9p", "overlay"] {
        let stem = |path: &str| {
            Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.split(".ko").next().unwrap_or(n).replace('-', "_"))
                .unwrap_or_default()
        };
        if builtin.lines().any(|l| stem(l) == wanted) {
            continue;
        }
        let line = deps
            .lines()
            .find(|l| l.split(':').next().is_some_and(|m| stem(m) == wanted))
            .ok_or_else(|| {
                format!(
                    "{wanted} is neither a module nor built into {}",
                    kernel.release
                )
            })?;
        let (module, needs) = line.split_once(':').unwrap_or((line, ""));
        // modules.dep lists what a module needs, the last to be loaded first.
        for m in needs.split_whitespace().rev().chain([module]) {
            if !order.iter().any(|o| o == m) {
                order.push(m.to_string());
            }
        }
    }
    Ok(order.iter().map(|m| kernel.module_dir().join(m)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        let mut names = [
            "linux-image-6.1.0-9-amd64-unsigned",
            "linux-image-6.1.0-54-amd64-unsigned",
            "linux-image-6.1.0-47-amd64-unsigned",
        ];
        names.sort_by_key(|n| version_key(n));
        assert_eq!(names.last(), Some(&"linux-image-6.1.0-54-amd64-unsigned"));
    }
}
