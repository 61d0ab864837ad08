//! Where an install's time goes (building the batch vs. the kernel's
//! commit), for 100 allow rules in fresh namespaces. Needs root:
//! `cargo run --release -p sandbox-net --example nft_cost`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let allow: Vec<String> = (0..100)
        .map(|i| format!("\"198.18.0.{}/32:443/tcp\"", i + 1))
        .collect();
    let policy = sandbox_policy::Policy::from_toml_str(&format!(
        "[network]\nallow = [{}]\n",
        allow.join(",")
    ))?;
    let rs = sandbox_net::Ruleset::from_network(&policy.network, &sandbox_net::Gateway::default());
    std::thread::spawn(move || -> Result<(), sandbox_net::Error> {
        for _ in 0..5 {
            sandbox_net::unshare_network_namespace()?;
            let t = std::time::Instant::now();
            let batch = rs.batch()?;
            let built = t.elapsed();
            batch.send()?;
            println!(
                "build {built:?}, send and commit {:?} ({} bytes)",
                t.elapsed() - built,
                batch.as_bytes().len()
            );
        }
        Ok(())
    })
    .join()
    .map_err(|_| "the thread panicked")??;
    Ok(())
}
