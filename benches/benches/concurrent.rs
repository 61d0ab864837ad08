//! Many sandboxes at once from one tokio runtime (`cargo xtask bench
//! concurrent [--sandboxes N] [--networked N]`): N sandboxes (1,000 by
//! default) alive together, each `sleep 3`, of which some (200) first make
//! an allowlisted connection to a server of the bench's; then the same
//! number of bubblewrap sandboxes launched from the same runtime. Prints
//! launches per second for both, the threads of the process, the peak
//! memory per sandbox in the caller, and what is left after (fds, run
//! cgroups, mounts, children, threads): nothing, or the bench fails.
//!
//! `CONCURRENT_POLICY` replaces the plain sandboxes' policy (TOML), e.g.
//! to measure them without cgroup limits.
//!
//! Everything happens in a network namespace the bench makes first (its
//! server on 198.18.5.5:80, on its loopback): no packet leaves it.

#[path = "../../sandbox-core/tests/common/leaks.rs"]
mod leaks;
#[path = "../../sandbox-core/tests/common/world.rs"]
mod world;

use std::process::Stdio as StdStdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sandbox_core::{Sandbox, Stdio};
use sandbox_policy::Policy;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

const SERVER: &str = "198.18.5.5";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `/proc/self/status` field `name`, a number (kB for memory).
fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// An HTTP/1.0 server on `SERVER:80` answering every request.
async fn serve() -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind((SERVER, 80))
        .await
        .map_err(|e| format!("bind {SERVER}:80: {e}"))?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nserved")
                    .await;
            });
        }
    });
    Ok(())
}

/// What one launched sandbox did: seconds from the batch's start until its
/// command said `up`, and whether it ended as it should.
struct Launched {
    up_after: Duration,
    ok: bool,
}

impl Launched {
    fn failed(start: Instant) -> Self {
        Launched {
            up_after: start.elapsed(),
            ok: false,
        }
    }
}

/// A sandbox's first two lines: when the first came (since `start`),
/// whether it was `up`, and the second.
async fn watch<R: AsyncRead + Unpin>(
    stdout: R,
    start: Instant,
) -> (Duration, bool, Option<String>) {
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next_line().await;
    let up_after = start.elapsed();
    let second = lines.next_line().await.ok().flatten();
    (
        up_after,
        matches!(first, Ok(Some(ref l)) if l == "up"),
        second,
    )
}

/// Runs launches to their end, sampling the thread count as they finish.
async fn collect(
    mut jobs: tokio::task::JoinSet<Launched>,
    start: Instant,
    peak_threads: &AtomicUsize,
) -> Vec<Launched> {
    let mut launched = Vec::with_capacity(jobs.len());
    while let Some(done) = jobs.join_next().await {
        peak_threads.fetch_max(status_field("Threads") as usize, Ordering::Relaxed);
        launched.push(done.unwrap_or_else(|_| Launched::failed(start)));
    }
    launched
}

/// Launches `count` sandboxes of ours at once; the first `networked`
/// connect to the server first.
async fn ours(
    plain: &Sandbox,
    networked_sb: &Sandbox,
    count: usize,
    networked: usize,
    peak_threads: &AtomicUsize,
) -> Vec<Launched> {
    let start = Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for i in 0..count {
        let (sandbox, script) = if i < networked {
            (
                networked_sb.clone(),
                format!(
                    "echo up; exec 3<>/dev/tcp/{SERVER}/80; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; \
                     cat <&3 | tail -c 6; echo; sleep 3"
                ),
            )
        } else {
            (plain.clone(), "echo up; sleep 3; echo done".to_string())
        };
        jobs.spawn(async move {
            let mut command = sandbox.command("bash");
            command.args(["-c", &script]).stdin(Stdio::Null);
            let mut child = match command.spawn_async().await {
                Ok(child) => child,
                Err(e) => {
                    eprintln!("spawn {i}: {e}");
                    return Launched::failed(start);
                }
            };
            let Some(stdout) = child.stdout.take() else {
                return Launched::failed(start);
            };
            let (up_after, up, second) = watch(stdout, start).await;
            let outcome = child.wait().await;
            let ok = up
                && match (second.as_deref(), &outcome) {
                    (Some("served"), Ok(out)) if i < networked => {
                        out.success() && out.egress.as_ref().is_some_and(|e| e.tcp_connections == 1)
                    }
                    (Some("done"), Ok(out)) => out.success(),
                    _ => false,
                };
            if !ok {
                eprintln!("sandbox {i}: {second:?} {:?}", outcome.map(|o| o.status));
            }
            Launched { up_after, ok }
        });
        peak_threads.fetch_max(status_field("Threads") as usize, Ordering::Relaxed);
    }
    collect(jobs, start, peak_threads).await
}

/// Launches `count` bubblewrap sandboxes at once from the runtime
/// (`tokio::process`), each printing `up` then sleeping 3 s.
async fn bwrap(count: usize) -> Vec<Launched> {
    let start = Instant::now();
    let mut jobs = tokio::task::JoinSet::new();
    for _ in 0..count {
        jobs.spawn(async move {
            let child = tokio::process::Command::new("bwrap")
                .args(benches::BWRAP_SANDBOX)
                .args(["bash", "-c", "echo up; sleep 3; echo done"])
                .stdin(StdStdio::null())
                .stdout(StdStdio::piped())
                .stderr(StdStdio::null())
                .kill_on_drop(true)
                .spawn();
            let Ok(mut child) = child else {
                return Launched::failed(start);
            };
            let Some(stdout) = child.stdout.take() else {
                return Launched::failed(start);
            };
            let (up_after, up, second) = watch(stdout, start).await;
            let status = child.wait().await;
            let ok = up && second.as_deref() == Some("done") && status.is_ok_and(|s| s.success());
            Launched { up_after, ok }
        });
    }
    collect(jobs, start, &AtomicUsize::new(0)).await
}

/// Launches per second: sandboxes up over the time until the last was up.
fn rate(launched: &[Launched]) -> f64 {
    let last = launched
        .iter()
        .map(|l| l.up_after)
        .max()
        .unwrap_or_default();
    launched.len() as f64 / last.as_secs_f64().max(1e-9)
}

fn raise_fd_limit() -> Result<(), String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).map_err(|e| format!("raise RLIMIT_NOFILE: {e}"))
}

fn main() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err(
            "bench concurrent: needs root (a network namespace of its own, run cgroups)".into(),
        );
    }
    let count = env_number("CONCURRENT_SANDBOXES", 1000);
    let networked = env_number("CONCURRENT_NETWORKED", 200).min(count);
    raise_fd_limit()?;
    // This thread, and so the runtime's threads made after, in a network
    // namespace of the bench's own, the server's address on its loopback.
    world::enter_world(&[SERVER]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("the runtime: {e}"))?;
    runtime.block_on(async move {
        serve().await?;
        let plain = Sandbox::new(
            Policy::from_toml_str(&std::env::var("CONCURRENT_POLICY").unwrap_or_else(|_| "[resources]\nwall_time = \"120s\"\n".into())).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let networked_sb = Sandbox::new(
            Policy::from_toml_str(&format!(
                "[network]\nmode = \"allowlist\"\nallow = [\"{SERVER}/32:80/tcp\"]\n[resources]\nwall_time = \"120s\"\n"
            ))
            .map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        if !networked_sb.report().fully_enforced() {
            return Err(format!("allowlisted egress is not enforceable here:\n{}", networked_sb.report()));
        }
        // What is made once per process first: the supervisor, the
        // spawners, the forwarder pool.
        let warm = ours(&plain, &networked_sb, 2, 1, &AtomicUsize::new(0)).await;
        if !warm.iter().all(|l| l.ok) {
            return Err("the warm-up runs failed".into());
        }
        let before = leaks::held();
        let rss_before = status_field("VmRSS");
        let threads_before = status_field("Threads") as usize;
        let peak_threads = Arc::new(AtomicUsize::new(threads_before));
        let sampler = {
            let peak = Arc::clone(&peak_threads);
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(status_field("Threads") as usize, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let started = Instant::now();
        let launched = ours(&plain, &networked_sb, count, networked, &peak_threads).await;
        let ours_total = started.elapsed();
        sampler.abort();
        let peak_rss = status_field("VmHWM");
        let failed = launched.iter().filter(|l| !l.ok).count();
        let ours_rate = rate(&launched);
        let after = leaks::settled(&before);

        let started = Instant::now();
        let peer = bwrap(count).await;
        let bwrap_total = started.elapsed();
        let bwrap_failed = peer.iter().filter(|l| !l.ok).count();
        let bwrap_rate = rate(&peer);

        println!("{count} sandboxes at once from one tokio runtime (2 workers), {networked} with an allowlisted connection; 2 CPUs");
        println!("| | launches/s (all up) | all ended | failed |");
        println!("|---|---|---|---|");
        println!("| sandbox-core spawn_async | {ours_rate:.0} | {:.1} s | {failed} |", ours_total.as_secs_f64());
        println!("| bwrap --unshare-all via tokio::process | {bwrap_rate:.0} | {:.1} s | {bwrap_failed} |", bwrap_total.as_secs_f64());
        println!("ratio (ours / bwrap launches per second): {:.2}x", ours_rate / bwrap_rate.max(1e-9));
        println!(
            "threads: {threads_before} before, {} at most with {count} alive (runtime 2 + supervisor 1 + spawners 4 + forwarder pool 2 + the bench's own)",
            peak_threads.load(Ordering::Relaxed)
        );
        println!(
            "caller memory: {} KiB resident before, {} KiB peak: {:.1} KiB per sandbox",
            rss_before,
            peak_rss,
            peak_rss.saturating_sub(rss_before) as f64 / count as f64
        );
        println!("held before: {before:?}");
        println!("held after:  {after:?}");
        if failed > 0 || after != before {
            return Err(format!("{failed} sandboxes failed, or something was left behind"));
        }
        Ok(())
    })
}
