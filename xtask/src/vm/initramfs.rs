//! The guest's initramfs: a static busybox, the modules that reach the
//! host's root, and an `/init` that mounts it (9p, read-only, under a
//! tmpfs overlay) and hands over to the guest script. Written as a
//! `newc` cpio archive, which is all the kernel needs.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::kernel::{self, Kernel};

/// What `/init` does before the guest script: modules, the host's root
/// as the lower layer of an overlay, the kernel's modules and the run's
/// share in it, then `switch_root` to `/vm/guest.sh`.
const INIT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t devtmpfs dev /dev
for m in /modules/*.ko; do $bb insmod "$m" || echo "vm: insmod $m failed"; done
$bb mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /lower || exec $bb sh -c 'echo "vm: cannot mount the host root"; echo o > /proc/sysrq-trigger'
$bb mount -t tmpfs -o size=80% tmpfs /rw
$bb mkdir -p /rw/upper /rw/work
$bb mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || exec $bb sh -c 'echo "vm: cannot mount the overlay"; echo o > /proc/sysrq-trigger'
$bb mkdir -p /newroot/lib/modules /newroot/vm
$bb mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 modules /newroot/lib/modules
$bb mount -t 9p -o trans=virtio,version=9p2000.L,rw,msize=512000 run /newroot/vm
$bb mount --move /dev /newroot/dev
$bb umount /proc
exec $bb switch_root /newroot /bin/bash /vm/guest.sh
"#;

/// Builds the initramfs for `kernel` at `out`.
pub(crate) fn build(kernel: &Kernel, busybox: &Path, out: &Path) -> Result<(), String> {
    let mut archive = Newc::default();
    for dir in ["bin", "dev", "proc", "lower", "rw", "newroot", "modules"] {
        archive.dir(dir);
    }
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("read {}: {e}", p.display()));
    archive.file("bin/busybox", 0o755, &read(busybox)?);
    archive.file("init", 0o755, INIT.as_bytes());
    for (i, module) in kernel::boot_modules(kernel)?.iter().enumerate() {
        let bytes = decompress(module)?;
        let name = module
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.split(".ko").next().unwrap_or(n).to_string())
            .unwrap_or_default();
        archive.file(&format!("modules/{i:02}-{name}.ko"), 0o644, &bytes);
    }
    let bytes = archive.finish();
    std::fs::write(out, bytes).map_err(|e| format!("write {}: {e}", out.display()))
}

/// A module's bytes, unpacked if the package compressed it (`.ko.xz`,
/// `.ko.zst`): busybox's insmod takes plain ELF.
fn decompress(module: &Path) -> Result<Vec<u8>, String> {
    let tool = match module.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => {
            return std::fs::read(module).map_err(|e| format!("read {}: {e}", module.display()));
        }
    };
    let out = std::process::Command::new(tool)
        .arg("-dc")
        .arg(module)
        .output()
        .map_err(|e| format!("{tool} -dc {}: {e}", module.display()))?;
    if !out.status.success() {
        return Err(format!("{tool} -dc {} failed", module.display()));
    }
    Ok(out.stdout)
}

/// A `newc` cpio archive being written.
#[derive(Default)]
struct Newc {
    bytes: Vec<u8>,
    ino: u32,
}

impl Newc {
    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | mode, data);
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o040_000 != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        let _ = write!(self.bytes, "070701");
        for f in fields {
            let _ = write!(self.bytes, "{f:08x}");
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

/// Where a static busybox is (Debian's `busybox-static`, or `busybox`
/// where that one is static).
pub(crate) fn find_busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_aligned_and_terminated() {
        let mut a = Newc::default();
        a.dir("bin");
        a.file("init", 0o755, b"#!/bin/sh\n");
        let bytes = a.finish();
        assert!(bytes.starts_with(b"070701"));
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("TRAILER!!!"));
        assert!(text.contains("#!/bin/sh"));
    }
}
