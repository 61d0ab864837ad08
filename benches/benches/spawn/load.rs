//! The spawn benchmark's two loads: a caller with gibibytes resident (the
//! child must not cost more for it), and many launchers at once.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sandbox_core::Sandbox;

fn bwrap_true() -> bool {
    Command::new("bwrap")
        .args(benches::BWRAP_SANDBOX)
        .arg("/bin/true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn library_true(sandbox: &Sandbox) -> bool {
    sandbox
        .command("/bin/true")
        .output()
        .is_ok_and(|o| o.success())
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// `MemAvailable`, bytes.
fn available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The library's and bwrap's spawn with `gib` GiB of this process touched
/// (every page written, as a server's heap is), against `small`: the
/// (library, bwrap) medians measured before, with a small caller.
pub(crate) fn big_caller(gib: u64, rounds: usize, small: (f64, f64)) {
    let bytes = gib << 30;
    if available() < bytes + (1 << 30) {
        println!(
            "\n{gib} GiB caller: skipped ({} MiB available)",
            available() >> 20
        );
        return;
    }
    let sandbox = Sandbox::from_profile("default").unwrap_or_else(|e| panic!("{e}"));
    let mut heap = vec![0u8; bytes as usize];
    for page in heap.chunks_mut(4096) {
        page[0] = 1;
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let one = |library: bool| {
            let start = Instant::now();
            let ok = if library {
                library_true(&sandbox)
            } else {
                bwrap_true()
            };
            assert!(ok, "the spawn failed with a {gib} GiB caller");
            start.elapsed()
        };
        if round % 2 == 0 {
            ours.push(one(true));
            theirs.push(one(false));
        } else {
            theirs.push(one(false));
            ours.push(one(true));
        }
    }
    std::hint::black_box(&heap);
    let (big_ours, big_theirs) = (median_ms(ours), median_ms(theirs));
    println!("\nthe caller's size, {rounds} interleaved rounds (median ms)\n");
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "variant",
        "small",
        format!("{gib} GiB"),
        "ratio"
    );
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>7.2}x",
        "Sandbox default profile (library)",
        small.0,
        big_ours,
        big_ours / small.0
    );
    println!(
        "{:<34} {:>10.2} {:>10.2} {:>7.2}x",
        "bwrap (spawned by std::process)",
        small.1,
        big_theirs,
        big_theirs / small.1
    );
    println!("(target: a {gib} GiB caller within 1.2x of a small one)");
}

/// The machine's busy CPU time so far (every CPU, every process and
/// kernel thread: `/proc/stat`'s `cpu` line less idle and iowait), seconds.
fn busy_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return f64::NAN;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    busy as f64 / rustix::param::clock_ticks_per_second().max(1) as f64
}

/// Launches per second with `launchers` threads each launching in a loop
/// for `seconds`, and the machine's busy CPU time per launch (ms).
fn rate(launchers: usize, seconds: f64, launch: Arc<dyn Fn() -> bool + Send + Sync>) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let busy = busy_cpu_seconds();
    let started = Instant::now();
    let threads: Vec<_> = (0..launchers)
        .map(|_| {
            let launch = Arc::clone(&launch);
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    assert!(launch(), "a concurrent launch failed");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| panic!("a launcher panicked")))
        .sum();
    let per_second = total as f64 / started.elapsed().as_secs_f64();
    let cpu_ms = (busy_cpu_seconds() - busy) * 1000.0 / total.max(1) as f64;
    (per_second, cpu_ms)
}

/// Launches per second of the library's default profile (one `Sandbox`
/// shared by every launcher thread) and of bwrap (spawned by each thread),
/// with 1, 8 and 64 launchers.
pub(crate) fn concurrency(seconds: f64) {
    let sandbox = Arc::new(Sandbox::from_profile("default").unwrap_or_else(|e| panic!("{e}")));
    let ours: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || library_true(&sandbox));
    let theirs: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(bwrap_true);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nconcurrent launches of /bin/true, {seconds} s each (launches per second; \
         the machine's busy CPU per launch, ms, all {cpus} CPUs and kernel threads)\n"
    );
    println!(
        "{:>9} {:>10} {:>10} {:>9} {:>12} {:>10}",
        "launchers", "library", "bwrap", "ratio", "library CPU", "bwrap CPU"
    );
    for launchers in [1, 8, 64] {
        let ((o, o_cpu), (t, t_cpu)) = (
            rate(launchers, seconds, Arc::clone(&ours)),
            rate(launchers, seconds, Arc::clone(&theirs)),
        );
        println!(
            "{launchers:>9} {o:>10.0} {t:>10.0} {:>8.2}x {o_cpu:>12.2} {t_cpu:>10.2}",
            o / t
        );
    }
    println!(
        "(target: at least 2x bwrap's rate at 8 and 64 launchers; once every CPU is busy, \
         the rate is at most {cpus} s / the CPU per launch)"
    );
}
