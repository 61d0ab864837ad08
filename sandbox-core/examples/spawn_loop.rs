//! Runs `/bin/true` in the default sandbox N times (for profiling the
//! spawn path): `cargo run --release --example spawn_loop -- 500`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map_or(Ok(200), |a| a.parse())?;
    let sandbox = sandbox_core::Sandbox::from_profile("default")?;
    let started = std::time::Instant::now();
    for _ in 0..n {
        let outcome = sandbox.command("/bin/true").output()?;
        if !outcome.success() {
            return Err(format!("{}", outcome.status).into());
        }
    }
    println!(
        "{:.2} ms per run",
        started.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
    Ok(())
}
