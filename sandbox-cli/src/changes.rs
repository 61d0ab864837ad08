//! `sbx changes`: what a kept overlay upper holds, applied onto a tree or
//! exported as an OCI layer.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum ChangesCommand {
    /// List what a kept upper changed over its lower trees.
    List {
        /// The overlay's upper, as the policy names it (its `diff` is read).
        upper: PathBuf,
        /// The overlay's lower trees, the top one first.
        #[arg(required = true)]
        lower: Vec<PathBuf>,
        /// Print JSON instead of one line per path.
        #[arg(long)]
        json: bool,
    },
    /// Apply a kept upper's changes onto TREE (usually the overlay's
    /// lower), every write resolved beneath TREE; all is checked before
    /// anything is written. Apply after the run, not during it.
    Apply {
        /// The overlay's upper, as the policy names it (its `diff` is read).
        upper: PathBuf,
        /// The tree to change.
        tree: PathBuf,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a kept upper's changes as an OCI image layer (a tar:
    /// deletions as `.wh.` entries, opaque directories as `.wh..wh..opq`).
    Export {
        /// The overlay's upper, as the policy names it (its `diff` is read).
        upper: PathBuf,
        /// The tar to write (it must not exist); stdout if not a terminal
        /// without it.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// The `diff` of a kept upper.
fn diff_of(upper: &Path) -> Result<PathBuf, String> {
    let diff = upper.join("diff");
    if diff.is_dir() {
        Ok(diff)
    } else {
        Err(format!(
            "{} has no diff directory: give the overlay's upper as the policy names it \
             (its writes are in UPPER/diff)",
            upper.display()
        ))
    }
}

pub(crate) fn changes(cmd: ChangesCommand) -> Result<ExitCode, String> {
    match cmd {
        ChangesCommand::List { upper, lower, json } => {
            let diff = diff_of(&upper)?;
            let mut listed =
                sandbox_core::overlay_changes(&diff, &lower).map_err(|e| e.to_string())?;
            listed.target = PathBuf::from("/");
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&listed).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", crate::run::changes_lines(&listed, true));
            }
        }
        ChangesCommand::Apply { upper, tree, json } => {
            let diff = diff_of(&upper)?;
            let applied = sandbox_core::apply_changes(&diff, &tree).map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&applied).map_err(|e| e.to_string())?
                );
            } else {
                println!(
                    "{}: {} added, {} modified, {} deleted, {} replaced ({} B written{})",
                    tree.display(),
                    applied.added,
                    applied.modified,
                    applied.deleted,
                    applied.replaced,
                    applied.bytes,
                    if applied.setid_dropped > 0 {
                        format!(", {} set-id bits dropped", applied.setid_dropped)
                    } else {
                        String::new()
                    }
                );
            }
        }
        ChangesCommand::Export { upper, output } => {
            let diff = diff_of(&upper)?;
            let exported = match &output {
                Some(path) => {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(path)
                        .map_err(|e| format!("create {}: {e}", path.display()))?;
                    let written =
                        sandbox_core::export_changes(&diff, std::io::BufWriter::new(file));
                    if written.is_err() {
                        // No half archive left where a tar is expected.
                        let _ = std::fs::remove_file(path);
                    }
                    written
                }
                None => {
                    let stdout = std::io::stdout();
                    if stdout.is_terminal() {
                        return Err("refusing to write a tar to a terminal: give --output FILE \
                                    or redirect stdout"
                            .into());
                    }
                    let mut lock = stdout.lock();
                    let written = sandbox_core::export_changes(&diff, &mut lock);
                    lock.flush().map_err(|e| format!("write stdout: {e}"))?;
                    written
                }
            }
            .map_err(|e| e.to_string())?;
            eprintln!(
                "sbx: exported {} entries and {} whiteouts ({} B of files){}",
                exported.entries,
                exported.whiteouts,
                exported.bytes,
                output
                    .map(|p| format!(" to {}", p.display()))
                    .unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
