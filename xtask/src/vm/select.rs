//! Which test binaries a guest runs: built here with
//! `cargo test --no-run`, named `crate/target`, chosen by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// A built test binary.
#[derive(Debug, Clone)]
pub(crate) struct TestBinary {
    /// `sandbox-core/lifecycle`, `sandbox-core/lib`.
    pub(crate) display: String,
    pub(crate) executable: PathBuf,
    /// Arguments before the user's filter.
    pub(crate) args: Vec<String>,
    /// Whether libtest runs it (else it is a `harness = false` program: the
    /// escape suite, the tamper test, both root-only).
    pub(crate) harness: bool,
}

/// libtest arguments for a binary run as root (`as_root`) or not: root runs
/// the root-only tests (`#[ignore = "needs root"]`) too; neither runs the
/// helpers that a test starts in a child process of its own.
pub(crate) fn libtest_args(as_root: bool) -> Vec<String> {
    let mut args = Vec::new();
    if as_root {
        args.push("--include-ignored".to_string());
    }
    args.extend(["--skip".to_string(), "child_process::".to_string()]);
    args
}

impl TestBinary {
    /// A name usable as a file name.
    pub(crate) fn file_name(&self) -> String {
        self.display.replace('/', "__")
    }
}

/// The binaries the matrix runs unless told otherwise: every path that
/// depends on the kernel or the cgroup layout (the probe, the spawn
/// pipeline and its layers, the relays, terminals, signals and job
/// control, the timings, cgroup limits and those made ahead, egress and
/// its ruleset, async runs, the escape suite, the CLI).
pub(crate) const DEFAULT: &[&str] = &[
    "sandbox-core/lib",
    "sandbox-core/probe",
    "sandbox-core/run",
    "sandbox-core/seccomp",
    "sandbox-core/lifecycle",
    "sandbox-core/stdio",
    "sandbox-core/terminal",
    "sandbox-core/signals",
    "sandbox-core/tracing",
    "integration-tests/async_child",
    "sandbox-core/network",
    "sandbox-core/egress_tcp",
    "sandbox-core/egress_names",
    "sandbox-core/egress_quic",
    "sandbox-core/concurrency",
    "sandbox-core/placement",
    "sandbox-core/ahead",
    "sandbox-core/overlay",
    "sandbox-core/apply",
    "sandbox-net/ruleset",
    "sandbox-net/rootless",
    "sandbox-net/tap",
    "sandbox-net/world",
    "sandbox-net/tamper",
    "sandbox-cli/cli",
    "sandbox-cli/live",
    "sandbox-cli/image",
    "sandbox-cli/changes",
    "integration-tests/escape",
    "openat2-root/kernel",
];

/// What `cargo xtask test` runs in the VMs: the cgroup and nftables paths
/// (the 200-sandbox concurrency binary, 30–45 s a boot under emulation,
/// runs in the default set).
pub(crate) const CI: &[&str] = &[
    "sandbox-core/probe",
    "sandbox-core/run",
    "sandbox-core/lifecycle",
    "sandbox-core/network",
    "sandbox-core/placement",
    "sandbox-net/ruleset",
    "sandbox-cli/cli",
    "integration-tests/escape",
];

/// `--binaries`.
#[derive(Debug, Clone)]
pub(crate) enum Selection {
    Named(Vec<String>),
    All,
}

impl Selection {
    pub(crate) fn parse(value: Option<&str>) -> Result<Self, String> {
        Ok(match value {
            None | Some("default") => Self::Named(DEFAULT.iter().map(|s| s.to_string()).collect()),
            Some("ci") => Self::Named(CI.iter().map(|s| s.to_string()).collect()),
            Some("all") => Self::All,
            Some(list) => Self::Named(list.split(',').map(String::from).collect()),
        })
    }
}

/// Builds the workspace's test binaries and picks the selected ones.
pub(crate) fn build_and_select(selection: &Selection) -> Result<Vec<TestBinary>, String> {
    let out = Command::new(run::cargo_bin())
        .args(["test", "--workspace", "--no-run", "--message-format=json"])
        .current_dir(run::workspace_root())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cargo test --no-run: {e}"))?;
    if !out.status.success() {
        return Err("building the test binaries failed".into());
    }
    let mut all = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(target), Some(manifest)) = (
            message["executable"].as_str(),
            message.get("target"),
            message["manifest_path"].as_str(),
        ) else {
            continue;
        };
        if message["profile"]["test"].as_bool() != Some(true)
            && target["test"].as_bool() != Some(true)
        {
            continue;
        }
        let krate = std::path::Path::new(manifest)
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .unwrap_or("?");
        let package = match krate {
            "tests" => "integration-tests",
            "sandbox-cli" | "sandbox-core" | "sandbox-net" | "sandbox-policy" | "openat2-root" => {
                krate
            }
            other => other,
        };
        let kind = target["kind"][0].as_str().unwrap_or("");
        let name = if kind == "lib" {
            "lib".to_string()
        } else {
            target["name"].as_str().unwrap_or("?").to_string()
        };
        let harness = !harness_free_tests(Path::new(manifest)).contains(&name);
        all.push(TestBinary {
            display: format!("{package}/{name}"),
            executable: PathBuf::from(exe),
            args: if harness {
                vec!["--test-threads=2".into(), "--nocapture".into()]
            } else {
                Vec::new()
            },
            harness,
        });
    }
    match selection {
        Selection::All => Ok(all),
        Selection::Named(names) => names
            .iter()
            .map(|n| {
                all.iter()
                    .find(|b| &b.display == n)
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "no test binary {n}; there are: {}",
                            all.iter()
                                .map(|b| b.display.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
            })
            .collect(),
    }
}

/// The `[[test]]` targets a manifest declares with `harness = false`
/// (cargo's build messages do not say which these are).
fn harness_free_tests(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_default();
    let mut found = Vec::new();
    let mut in_test = false;
    let mut name: Option<String> = None;
    let mut harness = true;
    let mut flush = |name: &mut Option<String>, harness: &mut bool| {
        if let Some(n) = name.take()
            && !*harness
        {
            found.push(n);
        }
        *harness = true;
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            if in_test {
                flush(&mut name, &mut harness);
            }
            in_test = line == "[[test]]";
            continue;
        }
        if !in_test {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key.trim() {
            "name" => name = Some(value.trim().trim_matches('"').to_string()),
            "harness" => harness = value.trim() != "false",
            _ => {}
        }
    }
    if in_test {
        flush(&mut name, &mut harness);
    }
    found
}

/// Passed and failed counts summed over a libtest log's `test result:`
/// lines, if it has any.
pub(crate) fn count_results(log: &str) -> Option<(u64, u64)> {
    let mut seen = false;
    let (mut passed, mut failed) = (0, 0);
    for line in log.lines().filter(|l| l.starts_with("test result:")) {
        seen = true;
        let number_before = |word: &str| -> u64 {
            line.split(';')
                .find(|part| part.trim_end().ends_with(word))
                .and_then(|part| part.split_whitespace().rev().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        passed += number_before("passed");
        failed += number_before("failed");
    }
    seen.then_some((passed, failed))
}

/// Tests libtest ignored (root-only ones where the tests are not root),
/// summed over a log's `test result:` lines.
pub(crate) fn count_ignored(log: &str) -> usize {
    log.lines()
        .filter(|l| l.starts_with("test result:"))
        .filter_map(|line| {
            line.split(';')
                .find(|part| part.trim_end().ends_with("ignored"))
                .and_then(|part| part.split_whitespace().rev().nth(1))
                .and_then(|n| n.parse::<usize>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_harness_free_tests() {
        let root = run::workspace_root();
        assert_eq!(
            harness_free_tests(&root.join("tests/Cargo.toml")),
            vec!["escape".to_string()]
        );
        assert_eq!(
            harness_free_tests(&root.join("sandbox-net/Cargo.toml")),
            vec!["tamper".to_string()]
        );
        assert!(harness_free_tests(&root.join("sandbox-core/Cargo.toml")).is_empty());
    }

    #[test]
    fn counts_libtest_results() {
        let log = "running 3 tests\ntest result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.2s\n";
        assert_eq!(count_results(log), Some((3, 0)));
        assert_eq!(count_ignored(log), 1);
        let failed =
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(count_results(failed), Some((2, 1)));
        assert_eq!(count_results("escape suite: 44 cases\n"), None);
    }
}
