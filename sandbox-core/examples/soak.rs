//! A soak: waves of concurrent sandboxes for N minutes, mixing runs that
//! succeed, fail, time out, are killed, and never start (a missing
//! program, a missing bind source), then a check that nothing was leaked:
//! fds, run cgroups, mounts, child processes, threads.
//!
//! `cargo xtask soak --minutes N` (root) runs it in release mode:
//! `cargo run --release -p sandbox-core --example soak -- --minutes 1 --concurrency 50`.

#[path = "../tests/common/leaks.rs"]
mod leaks;

use std::time::{Duration, Instant};

use sandbox_core::Sandbox;
use sandbox_policy::Policy;

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed_as_expected: u64,
    refused_as_expected: u64,
    unexpected: Vec<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let minutes = arg("--minutes", 1.0);
    let concurrency = arg("--concurrency", 50.0) as usize;
    let limited = Sandbox::new(Policy::from_toml_str(
        "[resources]\npids = 32\nmemory = \"64MiB\"\nwall_time = \"2s\"\n",
    )?)?;
    let broken = Sandbox::new(Policy::from_toml_str(
        "[filesystem]\nbinds = [{ source = \"/nonexistent/soak\", target = \"/x\" }]\n",
    )?)?;
    // Once, so that what is made once per process is not counted.
    limited.command("true").output()?;
    let before = leaks::held();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(minutes * 60.0);
    let mut tally = Tally::default();
    let mut waves = 0u64;
    while Instant::now() < deadline {
        waves += 1;
        let handles: Vec<_> = (0..concurrency)
            .map(|i| {
                let (limited, broken) = (limited.clone(), broken.clone());
                std::thread::spawn(move || -> Result<&'static str, String> {
                    match i % 6 {
                        0 | 1 => {
                            let out = limited
                                .command("sh")
                                .args(["-c", "echo hi; head -c 100000 /dev/zero | wc -c"])
                                .output()
                                .map_err(|e| e.to_string())?;
                            (out.success() && out.stdout == b"hi\n100000\n")
                                .then_some("ok")
                                .ok_or(format!("{out:?}"))
                        }
                        2 => {
                            let out = limited
                                .command("sh")
                                .args(["-c", "exit 3"])
                                .output()
                                .map_err(|e| e.to_string())?;
                            (out.status.code() == Some(3))
                                .then_some("failed")
                                .ok_or(format!("{}", out.status))
                        }
                        3 => {
                            let out = limited
                                .command("sleep")
                                .arg("10")
                                .output()
                                .map_err(|e| e.to_string())?;
                            out.timed_out
                                .then_some("failed")
                                .ok_or(format!("not timed out: {}", out.status))
                        }
                        4 => {
                            let mut child = limited
                                .command("sleep")
                                .arg("10")
                                .spawn()
                                .map_err(|e| e.to_string())?;
                            child.kill().map_err(|e| e.to_string())?;
                            let out = child.wait().map_err(|e| e.to_string())?;
                            (!out.success())
                                .then_some("failed")
                                .ok_or("a killed run succeeded".to_string())
                        }
                        _ => {
                            let missing = limited.command("/nonexistent/program").output();
                            let unbound = broken.command("true").output();
                            (missing.is_err() && unbound.is_err())
                                .then_some("refused")
                                .ok_or(format!("{missing:?} / {unbound:?}"))
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(Ok("ok")) => tally.ok += 1,
                Ok(Ok("failed")) => tally.failed_as_expected += 1,
                Ok(Ok(_)) => tally.refused_as_expected += 1,
                Ok(Err(e)) => tally.unexpected.push(e),
                Err(_) => tally.unexpected.push("a thread panicked".into()),
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = leaks::settled(&before);
    let runs = tally.ok + tally.failed_as_expected + tally.refused_as_expected;
    println!(
        "soak: {elapsed:.0} s, {waves} waves of {concurrency}: {runs} runs ({:.0}/s): {} ok, {} failed or timed out or killed as meant, {} refused before starting as meant, {} unexpected",
        runs as f64 / elapsed,
        tally.ok,
        tally.failed_as_expected,
        tally.refused_as_expected,
        tally.unexpected.len()
    );
    println!("held before: {before:?}");
    println!("held after:  {after:?}");
    for e in tally.unexpected.iter().take(5) {
        println!("unexpected: {e}");
    }
    if after != before || !tally.unexpected.is_empty() {
        return Err("the soak found leaks or unexpected outcomes".into());
    }
    println!("no leaks");
    Ok(())
}
