//! The plan's builder: steps with their descriptions and the fd
//! registers they use, and the C strings they are made of. Every
//! facility's plan code builds on this.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use crate::error::{Error, Result};
use sandbox_child::{Reg, Step, TargetKind};

pub(crate) fn cstring(what: &str, bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::InvalidCommand {
        reason: format!("{what} contains a NUL byte"),
    })
}

pub(crate) fn path_cstring(path: &Path) -> Result<CString> {
    cstring(
        &format!("path {}", path.display()),
        path.as_os_str().as_bytes(),
    )
}

/// The normal components of an absolute sandbox path.
pub(crate) fn components(path: &Path) -> Result<Vec<CString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => out.push(path_cstring(Path::new(name))?),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::InvalidCommand {
                    reason: format!("{} must not contain `..`", path.display()),
                });
            }
        }
    }
    Ok(out)
}

/// Collects steps and their descriptions.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub(super) steps: Vec<Step>,
    pub(super) descriptions: Vec<String>,
    pub(super) registers: usize,
    /// Where each phase of the setup starts (a step index), and its name.
    pub(super) phases: Vec<(usize, &'static str)>,
}

impl Builder {
    /// The steps pushed from here on belong to phase `name` (timed as a
    /// group: see `Plan::phases`).
    pub(crate) fn phase(&mut self, name: &'static str) {
        self.phases.push((self.descriptions.len(), name));
    }

    pub(crate) fn push(&mut self, step: Step, description: impl Into<String>) {
        self.steps.push(step);
        self.descriptions.push(description.into());
    }

    pub(crate) fn register(&mut self) -> Reg {
        self.registers += 1;
        self.registers - 1
    }

    pub(crate) fn host_tree(&mut self, path: &Path, recursive: bool, attrs: u64) -> Result<Reg> {
        let out = self.register();
        self.push(
            Step::OpenTree {
                path: path_cstring(path)?,
                recursive,
                out,
            },
            format!("open_tree {}", path.display()),
        );
        self.push(
            Step::SetMountAttrs {
                mount: out,
                set: attrs,
                recursive,
            },
            format!("mount_setattr {}", path.display()),
        );
        Ok(out)
    }

    pub(crate) fn new_fs(
        &mut self,
        fstype: &'static str,
        options: &[(String, Option<String>)],
        attrs: u64,
        target: &Path,
    ) -> Result<Reg> {
        let out = self.register();
        let source = [("source".to_string(), Some(fstype.to_string()))];
        let options = source
            .iter()
            .chain(options)
            .map(|(k, v)| {
                Ok((
                    cstring("mount option", k.as_bytes())?,
                    v.as_deref()
                        .map(|v| cstring("mount option", v.as_bytes()))
                        .transpose()?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.push(
            Step::NewFilesystem {
                fstype: cstring("fstype", fstype.as_bytes())?,
                options,
                attrs,
                out,
            },
            format!("{fstype} for {}", target.display()),
        );
        Ok(out)
    }

    pub(crate) fn resolve(
        &mut self,
        base: Reg,
        target: &Path,
        kind: TargetKind,
        create: bool,
        optional: bool,
    ) -> Result<Reg> {
        let out = self.register();
        self.push(
            Step::Resolve {
                base,
                components: components(target)?,
                kind,
                create,
                optional,
                out,
            },
            format!(
                "mount target {} (resolved beneath the new root, no symlinks)",
                target.display()
            ),
        );
        Ok(out)
    }
}
