//! Criterion statistics for the filesystem hot paths at depths 1, 4 and 16:
//! `Root` against `std::fs` (absolute paths) and `cap-std`. For the ratio
//! table measured with the three interleaved, see `fs_pairwise.rs`
//! (`cargo xtask bench fs`).
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::time::Duration;

use benches::{DEPTHS, Imp, Op, Tree};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let tree = Tree::new();
    for op in Op::ALL {
        let mut g = c.benchmark_group(op.name());
        for depth in DEPTHS {
            let paths = tree.paths(depth);
            let mut imps = Imp::COMPARED.to_vec();
            if op == Op::OpenClose {
                imps.push(Imp::RootAllowSpecial);
            }
            for imp in imps {
                g.bench_with_input(BenchmarkId::new(imp.name(), depth), &depth, |b, _| {
                    b.iter(|| tree.run(op, imp, &paths))
                });
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = fs_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = benches
}
criterion_main!(fs_benches);
