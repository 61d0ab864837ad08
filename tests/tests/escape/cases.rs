//! The cases run by the suite itself rather than by an attacker inside:
//! the setup (a planted symlink) and the resources (a fork bomb, a memory
//! hog, 1 GiB of output).

use std::process::Command;
use std::time::{Duration, Instant};

use sandbox_core::Sandbox;
use sandbox_policy::Policy;

use crate::{ControlResult, Suite};

fn limited(extra: &str) -> Sandbox {
    Sandbox::new(Policy::from_toml_str(&format!("[resources]\n{extra}")).unwrap()).unwrap()
}

/// Attacks on the setup: a symlink planted in a bind source, walked by a
/// mount target.
pub(crate) fn setup_cases(suite: &mut Suite) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
    std::fs::create_dir_all(dir.path().join("real/sub")).unwrap();
    let policy = |target: &str| {
        Policy::from_toml_str(&format!(
            "[filesystem]\nbinds = [{{ source = \"{}\", target = \"/work\" }}]\n\
             tmpfs = [{{ target = \"/tmp\" }}, {{ target = \"{target}\" }}]\n",
            dir.path().display()
        ))
        .unwrap()
    };
    // A tmpfs over /work/link/sub would land on the host's /etc/sub if the
    // symlink were followed.
    let attack = Sandbox::new(policy("/work/link/sub"))
        .unwrap()
        .command("true")
        .output();
    let observed = match attack {
        Err(e) => Err(e.to_string()),
        Ok(out) => Ok(format!("the run started: {}", out.status)),
    };
    let control = match Sandbox::new(policy("/work/real/sub"))
        .unwrap()
        .command("true")
        .output()
    {
        Ok(out) if out.success() => {
            ControlResult::Worked("the same through a real directory mounts".into())
        }
        other => ControlResult::Failed(format!("the real directory failed too: {other:?}")),
    };
    suite.push(
        "symlink planted in a bind source, under a mount target".into(),
        "refused",
        observed,
        control,
    );
}

pub(crate) fn resource_cases(suite: &mut Suite) {
    // A fork bomb: the pids limit holds it, the wall-time limit ends it,
    // and the host still starts processes meanwhile.
    let bomb = limited("pids = 64\nwall_time = \"3s\"\n");
    let started = Instant::now();
    let mut child = bomb
        .command("sh")
        .args(["-c", "b() { b | b & }; b; sleep 10"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let probe = Instant::now();
    let host_ok = Command::new("true").status().is_ok_and(|s| s.success());
    let host_ms = probe.elapsed().as_millis();
    let out = child.wait().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let observed = if out.pids_limit_hit && host_ok && elapsed < 10.0 {
        Err(format!(
            "pids limit hit (reported), the run over after {elapsed:.1} s{}; the host started a process in {host_ms} ms meanwhile",
            if out.timed_out {
                ", killed at the wall-time limit"
            } else {
                ", the bomb starved"
            }
        ))
    } else {
        Ok(format!(
            "pids_limit_hit {}, timed_out {}, host spawn ok {host_ok}",
            out.pids_limit_hit, out.timed_out
        ))
    };
    suite.push(
        "fork bomb".into(),
        "held",
        observed,
        ControlResult::None("it would take the host down".into()),
    );

    // A memory hog: the OOM killer, reported as such.
    let hog = limited("memory = \"64MiB\"\n");
    let out = hog
        .command("sh")
        .args(["-c", "head -c 1000000000 /dev/zero | tail > /dev/null"])
        .output()
        .unwrap();
    let observed = if out.oom_killed {
        Err(format!(
            "OOM-killed and reported; peak {} MiB",
            out.peak_memory.unwrap_or(0) >> 20
        ))
    } else {
        Ok(format!("not killed: {}", out.status))
    };
    suite.push(
        "memory hog (64 MiB limit)".into(),
        "held",
        observed,
        ControlResult::None("it would press the host".into()),
    );

    // 1 GiB of output: capped, flagged, and the command never blocked.
    // (Time enough for 1 GiB through a pipe under emulation too: the
    // kernel matrix's guests are 10x slower than this machine.)
    let chatty =
        limited("max_output_bytes = \"1MiB\"\nwall_time = \"300s\"\ncpu_time = \"300s\"\n");
    let started = Instant::now();
    let out = chatty
        .command("sh")
        .args(["-c", "head -c 1073741824 /dev/zero; echo done >&2"])
        .output()
        .unwrap();
    let observed = if out.stdout_truncated && out.stdout.len() == 1 << 20 && out.success() {
        Err(format!(
            "kept 1 MiB of 1 GiB, flagged truncated; the command finished in {:.1} s",
            started.elapsed().as_secs_f64()
        ))
    } else {
        Ok(format!(
            "kept {} bytes, truncated {}, {}",
            out.stdout.len(),
            out.stdout_truncated,
            out.status
        ))
    };
    suite.push(
        "1 GiB of output".into(),
        "capped",
        observed,
        ControlResult::None(
            "the cap is the library's own, there is nothing outside to compare".into(),
        ),
    );
}
