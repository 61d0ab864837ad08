//! The ratio table: for each operation and depth, `std::fs`, `cap-std` and
//! `Root` run in interleaved rounds (so that the machine's drift hits all
//! three alike), and the median of the per-round means is compared.
//! `cargo xtask bench fs` runs this; `ROUNDS` and `BATCH` tune it.

use std::time::Instant;

use benches::data::{COPY_SIZE, Copier, DataDir, Source, Writer, median};
use benches::{DEPTHS, Imp, Op, Paths, Syscall, Tree, bench_parent};

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
    samples.into_iter().map(median).collect()
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
    syscalls(&tree, rounds, batch);
    let data = DataDir::new(&bench_parent());
    copies(&data);
    writes(&data);
    if misses.is_empty() {
        println!("\ntarget (Root <= 1.3x std and <= 1.0x cap-std) met everywhere");
    } else {
        println!(
            "\ntarget (Root <= 1.3x std and <= 1.0x cap-std) missed for: {}",
            misses.join(", ")
        );
    }
}

/// What the open_close ratio is made of: each syscall of Root's checked
/// open, alone, at depth 4.
fn syscalls(tree: &Tree, rounds: usize, batch: usize) {
    let paths = tree.paths(4);
    let prims = tree.primitives(&paths);
    let mut samples = vec![Vec::with_capacity(rounds); Syscall::ALL.len()];
    for round in 0..rounds {
        for k in 0..Syscall::ALL.len() {
            let i = (round + k) % Syscall::ALL.len();
            let start = Instant::now();
            for _ in 0..batch {
                tree.syscall(Syscall::ALL[i], &paths, &prims);
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / batch as f64);
        }
    }
    let t: Vec<f64> = samples.into_iter().map(median).collect();
    println!(
        "\nwhy (depth 4): Root's checked open is openat2(O_PATH) + fstat + a reopen through /proc/self/fd \
         (a FIFO or device is never opened); cap-std's is one openat2, which would open one."
    );
    println!("| syscall | ns |");
    println!("|---|---:|");
    for (which, ns) in Syscall::ALL.iter().zip(&t) {
        println!("| {} | {ns:.0} |", which.name());
    }
    println!(
        "| sum of Root's three / cap-std's one | {:.0} / {:.0} = {:.2}x |",
        t[1] + t[2] + t[3],
        t[0],
        (t[1] + t[2] + t[3]) / t[0]
    );
}

/// `copy` of a dense and a sparse 64 MiB file by each copier, interleaved.
fn copies(dir: &DataDir) {
    let rounds = env_or("COPY_ROUNDS", 9);
    println!(
        "\ncopy of a {} MiB file to a new file, {rounds} interleaved rounds, median ms (and MiB the copy occupies):",
        COPY_SIZE >> 20
    );
    let names: Vec<&str> = Copier::ALL.iter().map(|c| c.name()).collect();
    println!("| file | {} | Root/std | Root/cp |", names.join(" | "));
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for source in Source::ALL {
        let mut secs = vec![Vec::with_capacity(rounds); Copier::ALL.len()];
        let mut bytes = vec![0u64; Copier::ALL.len()];
        dir.copy(source, Copier::Root); // warm the page cache
        for round in 0..rounds {
            for k in 0..Copier::ALL.len() {
                let i = (round + k) % Copier::ALL.len();
                let (s, b) = dir.copy(source, Copier::ALL[i]);
                secs[i].push(s * 1e3);
                bytes[i] = b;
            }
        }
        let ms: Vec<f64> = secs.into_iter().map(median).collect();
        let cells: Vec<String> = ms
            .iter()
            .zip(&bytes)
            .map(|(ms, b)| format!("{ms:.1} ({})", b >> 20))
            .collect();
        println!(
            "| {} | {} | {:.2} | {:.2} |",
            source.name(),
            cells.join(" | "),
            ms[2] / ms[0],
            ms[2] / ms[3]
        );
    }
}

/// Replacing a 4 KiB file: what write_atomic's flushes cost.
fn writes(dir: &DataDir) {
    let rounds = env_or("WRITE_ROUNDS", 101);
    let data = vec![b'x'; 4096];
    let mut samples = vec![Vec::with_capacity(rounds); Writer::ALL.len()];
    for round in 0..rounds {
        for k in 0..Writer::ALL.len() {
            let i = (round + k) % Writer::ALL.len();
            samples[i].push(dir.write(Writer::ALL[i], &data) * 1e6);
        }
    }
    let us: Vec<f64> = samples.into_iter().map(median).collect();
    println!("\nreplacing a 4 KiB file, {rounds} interleaved rounds, median µs:");
    let names: Vec<&str> = Writer::ALL.iter().map(|w| w.name()).collect();
    println!("| {} |", names.join(" | "));
    println!("|---:|---:|---:|");
    let cells: Vec<String> = us.iter().map(|u| format!("{u:.1}")).collect();
    println!("| {} |", cells.join(" | "));
}
