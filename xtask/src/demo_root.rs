//! `cargo xtask demo root`: `openat2-root` on its own — a `Root` on a
//! fresh tree, real operations, and escapes refused with their errors.

use std::io::Read;

use openat2_root::{OpenOptions, RemoveOptions, Root};

pub(crate) fn run() -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let base = tmp.path();
    let project = base.join("project");
    let secret = base.join("secret");
    std::fs::create_dir_all(&project).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&secret).map_err(|e| e.to_string())?;
    std::fs::write(secret.join("credentials"), "outside the root\n").map_err(|e| e.to_string())?;

    println!("openat2-root demo: a Root on {}", project.display());
    println!(
        "(a sibling directory {} holds a file the root must never reach)\n",
        secret.display()
    );
    let root = Root::open(&project).map_err(|e| e.to_string())?;

    let step = |what: &str, r: openat2_root::Result<String>| match r {
        Ok(s) if s.is_empty() => println!("  ok       {what}"),
        Ok(s) => println!("  ok       {what} -> {s}"),
        Err(e) => println!("  refused  {what}\n           {e} [{:?}]", e.kind()),
    };

    println!("Ordinary operations, resolved beneath the root by openat2:");
    step(
        "create_dir_all(\"src/bin\", 0o755)",
        root.create_dir_all("src/bin", 0o755)
            .map(|()| String::new()),
    );
    step(
        "write_atomic(\"src/main.rs\")",
        root.write_atomic("src/main.rs", b"fn main() {}\n")
            .map(|()| String::new()),
    );
    step(
        "rename_noreplace(\"src/main.rs\", \"src/bin/app.rs\")",
        root.rename_noreplace("src/main.rs", "src/bin/app.rs")
            .map(|()| String::new()),
    );
    step(
        "copy(\"src/bin/app.rs\", \"backup.rs\")",
        root.copy("src/bin/app.rs", "backup.rs")
            .map(|n| format!("{n} bytes")),
    );
    step(
        "set_permissions(\"backup.rs\", 0o600)",
        root.set_permissions("backup.rs", 0o600)
            .map(|()| String::new()),
    );
    step(
        "metadata(\"backup.rs\")",
        root.metadata("backup.rs")
            .map(|m| format!("{} bytes, mode {:o}", m.len(), m.permissions())),
    );
    step(
        "open_file(\"src/bin/app.rs\", read)",
        root.open_file("src/bin/app.rs", OpenOptions::new().read(true))
            .map(|mut f| {
                let mut s = String::new();
                let _ = f.read_to_string(&mut s);
                format!("{:?}", s)
            }),
    );
    step(
        "read_dir(\"src/bin\")",
        root.read_dir("src/bin").and_then(|rd| {
            rd.map(|e| {
                e.map(|e| format!("{} ({})", e.file_name().to_string_lossy(), e.file_type()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join(", "))
        }),
    );

    println!("\nAn attacker plants symlinks inside the project:");
    std::os::unix::fs::symlink(&secret, project.join("docs")).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink("../secret/credentials", project.join("notes.txt"))
        .map_err(|e| e.to_string())?;
    println!("  docs      -> {}", secret.display());
    println!("  notes.txt -> ../secret/credentials\n");
    step(
        "open_file(\"notes.txt\", read)",
        root.open_file("notes.txt", OpenOptions::new().read(true))
            .map(|_| "opened!".into()),
    );
    step(
        "set_len(\"notes.txt\", 0)",
        root.set_len("notes.txt", 0).map(|()| String::new()),
    );
    step(
        "write_atomic(\"docs/credentials\")",
        root.write_atomic("docs/credentials", b"pwned")
            .map(|()| String::new()),
    );
    step(
        "remove_dir_all(\"docs/\")",
        root.remove_dir_all("docs/").map(|()| String::new()),
    );
    step(
        "metadata(\"../secret/credentials\")",
        root.metadata("../secret/credentials")
            .map(|_| "reached!".into()),
    );
    step(
        "metadata(\"/etc/passwd\")",
        root.metadata("/etc/passwd").map(|_| "reached!".into()),
    );
    step(
        "remove(\"docs\", -r) removes the link itself",
        root.remove("docs", RemoveOptions::new().recursive(true).force(false))
            .map(|()| String::new()),
    );

    let after = std::fs::read_to_string(secret.join("credentials")).map_err(|e| e.to_string())?;
    println!("\nThe file outside the root still reads {after:?}.");
    if after != "outside the root\n" {
        return Err("the file outside the root changed".into());
    }
    Ok(())
}
