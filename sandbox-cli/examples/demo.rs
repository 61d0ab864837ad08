//! The sandbox showcase `cargo xtask demo` runs: real commands in a sandbox
//! on the embedded `default` profile, each layer seen from inside, then the
//! report. Run directly with `cargo run --release -p sandbox-cli --example demo`.

use std::process::ExitCode;

use sandbox_core::{Error, Sandbox};

fn main() -> ExitCode {
    match sandbox() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn sandbox() -> Result<(), String> {
    let sandbox = Sandbox::from_profile("default").map_err(|e| e.to_string())?;
    println!("sandbox-core demo: the embedded `default` profile, no helper binaries\n");
    if !sandbox.report().fully_enforced() {
        println!("This host cannot enforce the default profile as asked:\n");
        print!("{}", sandbox.report());
        println!("\nThe run is refused (on_unavailable = \"fail\"), as it should be.");
        let err = sandbox.command("true").output().map_err(|e| e.to_string());
        return match err {
            Err(message) => {
                println!("  {message}");
                Ok(())
            }
            Ok(_) => Err("a run that cannot be enforced was not refused".into()),
        };
    }
    let bash = std::path::Path::new("/bin/bash").exists();
    let mut steps: Vec<(&str, String)> = vec![
        ("who am I", "id".into()),
        ("which host", "hostname".into()),
        ("what is on disk", "ls /".into()),
        (
            "which processes",
            "ls -d /proc/[0-9]* | tr '\\n' ' '; echo".into(),
        ),
        (
            "which privileges",
            "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status".into(),
        ),
        ("write to /etc", "echo x > /etc/motd-by-sandbox".into()),
        (
            "write to /tmp (a private tmpfs)",
            "echo x > /tmp/ok && ls -l /tmp/ok".into(),
        ),
        (
            "which network",
            "cat /proc/net/dev | tail -n +3 | cut -d: -f1".into(),
        ),
    ];
    if bash {
        // 192.0.2.1 is TEST-NET-1, never routed; the sandbox has no route
        // at all, so no packet is sent anywhere. The control connects to
        // the sandbox's own loopback: refused, not unreachable, because
        // the network stack is there and only the way out is missing.
        steps.push((
            "reach 192.0.2.1:80 (outside)",
            "bash -c 'echo > /dev/tcp/192.0.2.1/80'".into(),
        ));
        steps.push((
            "control: reach 127.0.0.1:9 (its own loopback)",
            "bash -c 'echo > /dev/tcp/127.0.0.1/9'".into(),
        ));
    }
    for (what, script) in steps {
        println!("# {what}\n$ {script}");
        let outcome = sandbox
            .command("sh")
            .args(["-c", &script])
            .output()
            .map_err(|e: Error| e.to_string())?;
        let text = String::from_utf8_lossy(&outcome.stdout);
        let err = String::from_utf8_lossy(&outcome.stderr);
        for line in text.lines().chain(err.lines()) {
            println!("  {line}");
        }
        if !outcome.success() {
            println!("  [{}]", outcome.status);
        }
        println!();
    }
    let outcome = sandbox
        .command("true")
        .output()
        .map_err(|e| e.to_string())?;
    println!(
        "A whole run of `true` took {:.1} ms. The report every run carries:\n",
        outcome.wall_time.as_secs_f64() * 1000.0
    );
    print!("{}", outcome.report);
    println!(
        "\nTry it yourself: cargo run -p sandbox-cli -- run --profile default -- sh -c 'id; ls /; echo x > /etc/y'"
    );
    Ok(())
}
