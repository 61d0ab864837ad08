//! Runs a command in the default sandbox: `cargo run --example run -- sh -c 'id; ls /'`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (program, rest) = args.split_first().ok_or("usage: run PROGRAM [ARGS…]")?;
    let sandbox = sandbox_core::Sandbox::from_profile("default")?;
    let outcome = sandbox.command(program).args(rest).output()?;
    print!("{}", String::from_utf8_lossy(&outcome.stdout));
    eprint!("{}", String::from_utf8_lossy(&outcome.stderr));
    eprintln!(
        "{} in {:?}\n{}",
        outcome.status, outcome.wall_time, outcome.report
    );
    Ok(())
}
