//! Installing the egress ruleset with 1, 100 and 10,000 allow rules (CIDR
//! networks; past 8 of a kind they go into an interval set): one
//! libnftnl batch over netlink (`Ruleset::batch` sent into a fresh
//! namespace, `Ruleset::install` to replace; building included)
//! against the same ruleset as text through `nft -f` (a subprocess, as
//! scripts do it), interleaved. "Fresh" installs into a new network
//! namespace each time (what a sandbox does, once); "replace" swaps the
//! table in place, where the kernel's own commit work (unregistering the
//! old chains' hooks waits for an RCU grace period) dominates both.
//! `cargo xtask bench nft` installs nftables if missing and runs this;
//! `NFT_ROUNDS` sets the rounds. "kernel" times the send of a batch built
//! beforehand: the floor for any client that asks the kernel for the same
//! objects, and so the ceiling on the speed-up.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandbox_net::{Gateway, KernelRuleset, Ruleset};
use sandbox_policy::Policy;

fn ruleset(allow_rules: usize) -> Ruleset {
    let allow: Vec<String> = (0..allow_rules)
        // Every other /24, so that none merge: one interval each.
        .map(|i| format!("\"20.{}.{}.0/24:443/tcp\"", i * 2 / 256 % 256, i * 2 % 256))
        .collect();
    let policy = Policy::from_toml_str(&format!(
        "[network]\nmode = \"allowlist\"\nallow = [{}]\n",
        allow.join(", ")
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    Ruleset::from_network(&policy.network, &Gateway::default())
}

fn nft_f(text: &str) -> bool {
    let mut child = match Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("nft: {e} (cargo xtask bench nft installs it)"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(text.as_bytes());
    }
    child.wait_with_output().is_ok_and(|o| {
        if !o.status.success() {
            eprintln!("nft -f: {}", String::from_utf8_lossy(&o.stderr));
        }
        o.status.success()
    })
}

fn median(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

fn main() {
    let rounds: usize = std::env::var("NFT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let rows = std::thread::spawn(move || {
        sandbox_net::unshare_network_namespace().unwrap_or_else(|e| panic!("{e} (needs root)"));
        let mut rows = Vec::new();
        for n in [1usize, 100, 10_000] {
            let rs = ruleset(n);
            // Replace, as the library does: create, delete, then the table.
            let text = format!("table inet sandbox\ndelete table inet sandbox\n{rs}");
            assert!(nft_f(&text), "nft -f accepts the ruleset text");
            // (Chain `refuse` has 3 rules.)
            assert_eq!(
                KernelRuleset::read().map(|k| k.rules.len()).ok(),
                Some(rs.output.len() + rs.input.len() + 3)
            );
            rs.install().unwrap_or_else(|e| panic!("{e}"));
            rs.read_back().unwrap_or_else(|e| panic!("{e}"));
            // How much of ours is building the batch (the rest is the
            // kernel's work, which nft -f pays too).
            let mut building: Vec<Duration> = (0..rounds)
                .map(|_| {
                    let start = Instant::now();
                    let _ = rs.batch();
                    start.elapsed()
                })
                .collect();
            let (mut fresh_ours, mut fresh_theirs) = (Vec::new(), Vec::new());
            // The kernel's share: sending a batch built beforehand.
            let built = rs.batch().unwrap_or_else(|e| panic!("{e}"));
            let mut kernel = Vec::new();
            let (mut replace_ours, mut replace_theirs) = (Vec::new(), Vec::new());
            let fresh_text = rs.to_string();
            for round in 0..rounds {
                let timed = |f: &mut dyn FnMut(), out: &mut Vec<Duration>, fresh: bool| {
                    if fresh {
                        sandbox_net::unshare_network_namespace().unwrap_or_else(|e| panic!("{e}"));
                    }
                    let start = Instant::now();
                    f();
                    out.push(start.elapsed());
                };
                // Fresh: the batch a sandbox's child sends into its new
                // namespace; replace: `install`, over a live table.
                let mut ours_fresh = || {
                    rs.batch()
                        .and_then(|b| b.send())
                        .unwrap_or_else(|e| panic!("{e}"))
                };
                let mut ours = || rs.install().unwrap_or_else(|e| panic!("{e}"));
                let mut send_built = || built.send().unwrap_or_else(|e| panic!("{e}"));
                timed(&mut send_built, &mut kernel, true);
                let mut theirs_fresh = || assert!(nft_f(&fresh_text));
                let mut theirs_replace = || assert!(nft_f(&text));
                if round % 2 == 0 {
                    timed(&mut ours_fresh, &mut fresh_ours, true);
                    timed(&mut theirs_fresh, &mut fresh_theirs, true);
                    timed(&mut ours, &mut replace_ours, false);
                    timed(&mut theirs_replace, &mut replace_theirs, false);
                } else {
                    timed(&mut theirs_fresh, &mut fresh_theirs, true);
                    timed(&mut ours_fresh, &mut fresh_ours, true);
                    timed(&mut theirs_replace, &mut replace_theirs, false);
                    timed(&mut ours, &mut replace_ours, false);
                }
            }
            rows.push((
                n,
                rs.output.len() + rs.input.len(),
                median(&mut building),
                median(&mut kernel),
                [
                    median(&mut fresh_ours),
                    median(&mut fresh_theirs),
                    median(&mut replace_ours),
                    median(&mut replace_theirs),
                ],
            ));
        }
        rows
    })
    .join()
    .unwrap_or_else(|_| panic!("the benchmark thread failed"));
    println!("\nnftables ruleset install, {rounds} interleaved rounds (median ms)\n");
    println!(
        "{:>11} {:>6} {:>9} {:>7} | {:>12} {:>9} {:>8} {:>8} | {:>12} {:>9} {:>8}",
        "allow rules",
        "rules",
        "building",
        "kernel",
        "fresh nftnl",
        "nft -f",
        "speed-up",
        "ceiling",
        "replace nftnl",
        "nft -f",
        "speed-up"
    );
    for (n, total, build, kernel, [fo, ft, ro, rt]) in rows {
        println!(
            "{n:>11} {total:>6} {build:>9.3} {kernel:>7.3} | {fo:>12.3} {ft:>9.3} {:>7.1}x {:>7.1}x | {ro:>12.3} {rt:>9.3} {:>7.1}x",
            ft / fo,
            ft / kernel,
            rt / ro
        );
    }
    println!(
        "\n(target: at least 10x faster than nft -f. \"kernel\" is sending a batch built\n\
         beforehand into a fresh namespace: the kernel's work, which nft -f pays too;\n\
         \"ceiling\" is nft -f over it, the most any client of the same kernel objects\n\
         can gain)"
    );
}
