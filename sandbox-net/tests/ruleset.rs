#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ruleset installed in a throwaway network namespace and read back.

use sandbox_net::{Gateway, KernelRuleset, Ruleset};
use sandbox_policy::Policy;

/// Fails the test where it is not root: a root-only test is
/// `#[ignore = "needs root"]`, and run with `--include-ignored` as root.
fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root: run as root with --include-ignored, as CI does"
    );
}

/// Runs `f` on a thread of its own in a new network namespace (a netns is
/// per thread, so the rest of the test binary is untouched).
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        sandbox_net::unshare_network_namespace().unwrap();
        f()
    })
    .join()
    .unwrap()
}

#[test]
#[ignore = "needs root"]
fn the_networked_profile_installs_and_reads_back() {
    require_root();
    let policy = Policy::profile("networked").unwrap();
    let ruleset = Ruleset::from_network(&policy.network, &Gateway::default());
    let (installed, kernel) = in_new_netns(move || {
        ruleset.install().unwrap();
        let kernel = KernelRuleset::read().unwrap();
        (ruleset.read_back().map_err(|e| e.to_string()), kernel)
    });
    println!("{kernel:#?}");
    installed.unwrap();
}
