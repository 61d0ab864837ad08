//! The ratio table: for each operation and depth, `std::fs`, `cap-std` and
//! `Root` run in interleaved rounds (so that the machine's drift hits all
//! three alike), and the median of the per-round means is compared.
//! `cargo xtask bench fs` runs this; `ROUNDS` and `BATCH` tune it.

use std::time::Instant;

use benches::{DEPTHS, Imp, Op, Paths, Tree};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of the per-round mean times of `imp`, in nanoseconds.
fn measure(
    tree: &Tree,
    op: Op,
    imps: &[Imp],
    paths: &Paths,
    rounds: usize,
    batch: usize,
) -> Vec<f64> {
    let mut samples = vec![Vec::with_capacity(rounds); imps.len()];
    for _ in 0..batch {
        for &imp in imps {
            tree.run(op, imp, paths); // warm up
        }
    }
    for round in 0..rounds {
        // Rotate who goes first, so that no one always follows the same one.
        for k in 0..imps.len() {
            let i = (round + k) % imps.len();
            let start = Instant::now();
            for _ in 0..batch {
                tree.run(op, imps[i], paths);
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / batch as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let rounds = env_or("ROUNDS", 41);
    let batch = env_or("BATCH", 300);
    let tree = Tree::new();
    println!(
        "interleaved: {rounds} rounds of {batch} operations per implementation; median of round means"
    );
    println!("| operation | depth | std::fs ns | cap-std ns | Root ns | Root/std | Root/cap-std |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut misses = Vec::new();
    for op in Op::ALL {
        for depth in DEPTHS {
            let paths = tree.paths(depth);
            let t = measure(&tree, op, &Imp::COMPARED, &paths, rounds, batch);
            let (std, cap, root) = (t[0], t[1], t[2]);
            let (vs_std, vs_cap) = (root / std, root / cap);
            println!(
                "| {} | {depth} | {std:.0} | {cap:.0} | {root:.0} | {vs_std:.2} | {vs_cap:.2} |",
                op.name()
            );
            if vs_std > 1.3 || vs_cap > 1.0 {
                misses.push(format!("{} at depth {depth}", op.name()));
            }
        }
    }
    let mut special = Vec::new();
    for depth in DEPTHS {
        let paths = tree.paths(depth);
        let t = measure(
            &tree,
            Op::OpenClose,
            &[Imp::Root, Imp::RootAllowSpecial, Imp::CapStd],
            &paths,
            rounds,
            batch,
        );
        special.push(format!(
            "depth {depth}: {:.0} / {:.0} / {:.0} ns",
            t[0], t[1], t[2]
        ));
    }
    println!(
        "\nopen_close, Root with the FIFO/device check / Root with allow_special_files(true) / cap-std:"
    );
    println!("{}", special.join("; "));
    if misses.is_empty() {
        println!("\ntarget (Root <= 1.3x std and <= 1.0x cap-std) met everywhere");
    } else {
        println!(
            "\ntarget (Root <= 1.3x std and <= 1.0x cap-std) missed for: {}",
            misses.join(", ")
        );
    }
}
