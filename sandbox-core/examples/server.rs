//! A job runner, the library's main use in miniature: it reads one shell
//! command per line from stdin, runs each in a sandbox of its own (the
//! `default` profile), N at a time (the first argument, default 8), on one
//! tokio runtime, and prints each job's outcome as it ends.
//!
//! ```sh
//! printf 'echo hi\nsleep 1; date\nexit 3\n' |
//!     cargo run -p sandbox-core --features tokio --example server -- 4
//! ```

use std::sync::Arc;

use sandbox_core::{Error, RunOutcome, Sandbox};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;

/// A finished job: its number, its command line, and what came of it.
type Finished = (usize, String, Result<RunOutcome, Error>);

fn report((number, line, result): Finished) {
    match result {
        Ok(out) => println!(
            "job {number} `{line}`: {} in {:.3} s: {}",
            out.status,
            out.wall_time.as_secs_f64(),
            String::from_utf8_lossy(&out.stdout).trim_end()
        ),
        Err(e) => println!("job {number} `{line}`: not run: {e}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let parallel = match std::env::args().nth(1) {
        Some(n) => n
            .parse::<usize>()
            .map_err(|e| format!("the number of jobs at a time, {n:?}: {e}"))?,
        None => 8,
    };
    let sandbox = Sandbox::from_profile("default")?;
    let slots = Arc::new(Semaphore::new(parallel.max(1)));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut jobs = tokio::task::JoinSet::new();
    let mut number = 0;
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        number += 1;
        let permit = Arc::clone(&slots).acquire_owned().await?;
        let mut command = sandbox.command("sh");
        command.args(["-c", &line]);
        jobs.spawn(async move {
            let _permit = permit;
            let result = match command.spawn_async().await {
                Ok(child) => child.output().await,
                Err(e) => Err(e),
            };
            (number, line, result)
        });
        while let Some(done) = jobs.try_join_next() {
            report(done?);
        }
    }
    while let Some(done) = jobs.join_next().await {
        report(done?);
    }
    Ok(())
}
