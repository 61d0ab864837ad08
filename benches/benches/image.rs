//! Images and overlays, what they cost: (1) unpacking a 100 MB,
//! 10,000-file image (two gzip layers) with `sandbox_image::unpack`
//! (every entry through `openat2-root`, digests checked) against
//! `tar -xzf` of the same layers into a directory, interleaved; (2) the
//! spawn of `/bin/true` in the default profile with an overlay of a small
//! tree (tmpfs upper) against the same without it.
//!
//! `cargo xtask bench image` runs this as root; `IMAGE_ROUNDS` (5) and
//! `OVERLAY_ROUNDS` (200) set the rounds.

use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_core::Sandbox;
use sandbox_policy::Policy;

#[path = "../../sandbox-image/tests/common/mod.rs"]
#[allow(unreachable_pub)]
mod oci;

const FILES: usize = 10_000;
const FILE_BYTES: usize = 10_000;

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("image bench: {what}: {e}");
    std::process::exit(1)
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Two layers of `FILES / 2` files each, in 100 directories, with bytes
/// that do not compress to nothing.
fn layers() -> Vec<Vec<u8>> {
    (0..2)
        .map(|layer| {
            let mut entries = Vec::new();
            for d in 0..100 {
                entries.push(oci::dir(&format!("d{layer}-{d}/")));
            }
            for i in 0..FILES / 2 {
                let data: Vec<u8> = (0..FILE_BYTES)
                    .map(|j| ((i * 31 + j * 7 + layer) % 251) as u8)
                    .collect();
                entries.push(oci::file(
                    &format!("d{layer}-{}/f{i}", i % 100),
                    0o644,
                    &data,
                ));
            }
            oci::tar(&entries)
        })
        .collect()
}

fn unpack_bench(rounds: usize) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let layout = tmp.path().join("oci");
    let tars = layers();
    oci::layout(
        &layout,
        "bench",
        &tars
            .iter()
            .map(|t| (t.clone(), oci::Stored::Gzip))
            .collect::<Vec<_>>(),
        &[],
    );
    // The peer's input: the same gzip layers, as files.
    let mut gz_files = Vec::new();
    for (i, t) in tars.iter().enumerate() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(t).unwrap_or_else(|e| fail("gzip", e));
        let path = tmp.path().join(format!("layer{i}.tar.gz"));
        std::fs::write(&path, gz.finish().unwrap_or_else(|e| fail("gzip", e)))
            .unwrap_or_else(|e| fail("write", e));
        gz_files.push(path);
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let dest = tmp.path().join(format!("ours{round}"));
        let tar_dest = tmp.path().join(format!("tar{round}"));
        let mut run_ours = || {
            let start = Instant::now();
            sandbox_image::unpack(
                &layout,
                Some("bench"),
                &dest,
                &sandbox_image::UnpackOptions::default(),
            )
            .unwrap_or_else(|e| fail("unpack", e));
            ours.push(start.elapsed());
        };
        let mut run_tar = || {
            std::fs::create_dir(&tar_dest).unwrap_or_else(|e| fail("mkdir", e));
            let start = Instant::now();
            for f in &gz_files {
                let ok = Command::new("tar")
                    .arg("-xzf")
                    .arg(f)
                    .arg("-C")
                    .arg(&tar_dest)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    fail("tar -x", "failed");
                }
            }
            theirs.push(start.elapsed());
        };
        if round % 2 == 0 {
            run_ours();
            run_tar();
        } else {
            run_tar();
            run_ours();
        }
        let _ = std::fs::remove_dir_all(&dest);
        let _ = std::fs::remove_dir_all(&tar_dest);
    }
    let (o, t) = (median_ms(ours), median_ms(theirs));
    println!(
        "\nunpacking {} files, {} MB in 2 gzip layers, {rounds} interleaved rounds (median ms)\n",
        FILES,
        FILES * FILE_BYTES / 1_000_000
    );
    println!("| sandbox_image::unpack | tar -xzf | ratio |");
    println!("|---|---|---|");
    println!("| {o:.1} | {t:.1} | {:.2}x |", o / t);
    println!("(target: at most 1.5x tar -x)");
}

fn overlay_bench(rounds: usize) {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let lower = tmp.path().join("lower");
    std::fs::create_dir_all(lower.join("src")).unwrap_or_else(|e| fail("mkdir", e));
    for i in 0..100 {
        std::fs::write(lower.join("src").join(format!("f{i}")), b"x")
            .unwrap_or_else(|e| fail("write", e));
    }
    let plain = Sandbox::from_profile("default").unwrap_or_else(|e| fail("sandbox", e));
    let with_overlay = Policy::profile("default")
        .and_then(|base| {
            Ok(base.merge(&Policy::from_toml_str(&format!(
                "[filesystem]\noverlay = [{{ lower = \"{}\", target = \"/work\", size = \"16MiB\" }}]\n",
                lower.display()
            ))?))
        })
        .map_err(|e| e.to_string())
        .and_then(|p| Sandbox::new(p).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| fail("overlay sandbox", e));
    if !with_overlay.report().fully_enforced() {
        println!(
            "\noverlay spawn: skipped, overlays with a tmpfs upper are a downgrade here:\n{}",
            with_overlay.report()
        );
        return;
    }
    let run = |sb: &Sandbox| {
        let start = Instant::now();
        let ok = sb.command("/bin/true").output().is_ok_and(|o| o.success());
        if !ok {
            fail("spawn", "/bin/true failed");
        }
        start.elapsed()
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        if round % 2 == 0 {
            a.push(run(&plain));
            b.push(run(&with_overlay));
        } else {
            b.push(run(&with_overlay));
            a.push(run(&plain));
        }
    }
    let (a, b) = (median_ms(a), median_ms(b));
    println!("\nspawn /bin/true, {rounds} interleaved rounds (median ms)\n");
    println!("| default profile | with an overlay (tmpfs upper) | cost of the overlay |");
    println!("|---|---|---|");
    println!("| {a:.2} | {b:.2} | {:.2} ms |", b - a);
    println!("(target: at most 0.3 ms)");
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("image bench: skipped (needs root: the overlay runs make cgroups)");
        return;
    }
    unpack_bench(env_number("IMAGE_ROUNDS", 5).max(1));
    overlay_bench(env_number("OVERLAY_ROUNDS", 200).max(2));
}
