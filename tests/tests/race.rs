//! The race suite: 200,000 operations racing `RENAME_EXCHANGE` attackers at
//! depths 1, 4 and 16; the canary outside the root must be untouched.
//! `cargo xtask race --ops N` runs longer campaigns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

use integration_tests::race::{RaceConfig, RaceReport, run};

#[test]
fn racing_renames_never_redirect_an_operation() {
    let config = RaceConfig::default();
    let report = run(&config);
    println!("{report}");
    assert_no_escapes(&report);
    assert!(report.ops >= config.ops, "{report}");
    // The attack must have been live: swaps happened, and some operations
    // hit the symlink and were refused while others went through.
    assert!(report.swaps > 1000, "{report}");
    assert!(report.refused > 0 && report.succeeded > 0, "{report}");
}

#[test]
fn racing_renames_with_dotdot_links_in_follow_mode() {
    // Resolution crosses `..` (inside a symlink) while renames race: the
    // kernel may answer EAGAIN, which is retried; links are scoped to the
    // root, so nothing escapes either.
    let config = RaceConfig {
        ops: 50_000,
        follow_in_root: true,
        ..RaceConfig::default()
    };
    let report = run(&config);
    println!("{report}");
    assert_no_escapes(&report);
    assert!(report.swaps > 1000 && report.succeeded > 0, "{report}");
}

fn assert_no_escapes(report: &RaceReport) {
    assert_eq!(
        report.escapes,
        0,
        "escapes:\n{}",
        report.escape_details.join("\n")
    );
}

#[test]
fn racing_renames_never_return_data_from_outside() {
    use integration_tests::race_reads::{ReadRaceConfig, run_reads, std_control};
    // The control: std::fs on the same paths reads the canary's data.
    let leaked = std_control(20_000);
    assert!(
        leaked > 0,
        "the attack never redirected std::fs: it shows nothing"
    );
    let config = ReadRaceConfig::default();
    let report = run_reads(&config);
    println!("{report}; control: std::fs read the canary {leaked} times in 20000");
    assert_eq!(
        report.escapes,
        0,
        "reads returned outside data:\n{}",
        report.escape_details.join("\n")
    );
    assert!(report.ops >= config.ops, "{report}");
    // Live: swaps happened, and reads were both refused and answered.
    assert!(report.swaps > 1000, "{report}");
    assert!(report.refused > 0 && report.succeeded > 0, "{report}");
}

/// The pinned-parent residual with a mover renaming `root/a` out: measured
/// and printed; multi-step operations re-check and refuse (the refusals
/// show the re-checks at work: nothing else here can be refused).
#[test]
fn mover_outside_effects_are_measured_and_refused() {
    use integration_tests::race_mover::run_mover;
    let report = run_mover(&mover_config());
    println!("{report}");
    assert!(report.moves > 100, "the mover must be live: {report}");
    assert!(report.succeeded > 0, "{report}");
    // Nothing but a re-check refuses here (no symlink anywhere): without
    // them, 15 refusals in 2,826 moves; with them, more than one a move.
    assert!(
        report.refused >= report.moves / 4,
        "the re-checks must see the moves: {report}"
    );
}

/// With the root its own mount, a mover renaming through the root's path
/// cannot move anything out (`EXDEV`): no outside effect at all. Control:
/// the same mover, through a second view of the filesystem, moves.
#[test]
#[ignore = "needs root"]
fn mover_cannot_move_out_of_an_own_mount_root() {
    use integration_tests::race_mover::{MoverConfig, MoverMode, in_private_mount_ns, run_mover};
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
    let own = in_private_mount_ns(|| {
        run_mover(&MoverConfig {
            mode: MoverMode::OwnMount,
            ..mover_config()
        })
    });
    println!("{own}");
    assert!(own.move_attempts > 100, "{own}");
    assert_eq!(
        (own.moves, own.moves_refused),
        (0, own.move_attempts),
        "{own}"
    );
    assert_eq!(own.outside_total(), 0, "{own}");
    assert_eq!(own.succeeded, own.ops, "nothing else fails: {own}");
    let other = in_private_mount_ns(|| {
        run_mover(&MoverConfig {
            mode: MoverMode::OtherView,
            ..mover_config()
        })
    });
    println!("{other}");
    assert!(other.moves > 10, "control: a second view moves: {other}");
}

/// The mover's configuration: the default, with the tree made in
/// `MOVER_DIR` when that is set (a disk, say, to measure there).
fn mover_config() -> integration_tests::race_mover::MoverConfig {
    integration_tests::race_mover::MoverConfig {
        parent: std::env::var_os("MOVER_DIR").map(Into::into),
        ..Default::default()
    }
}
