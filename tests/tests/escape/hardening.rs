//! The second round's cases: syscalls newer than the old denylist, a
//! syscall number the filter does not know, socket families no namespace
//! isolates, and a report forged by the command.

use std::process::Command;

use sandbox_core::{Sandbox, Stdio};
use sandbox_policy::Policy;

use crate::attacks::{Attempt, errno_text};
use crate::{Control, ControlResult, Observed, Suite};

/// `ret < 0` → `Err(errno)`, else `Ok(what)`.
fn judge(ret: i64, what: &str) -> Attempt {
    if ret < 0 {
        Err(errno_text())
    } else {
        Ok(format!("{what} (returned {ret})"))
    }
}

/// A vsock stream socket bound to `port` on any CID, listening: a port the
/// host's agents (or the hypervisor's) could be squatted on. (The suite
/// asks for any free port, so that its control takes none of theirs.)
fn vsock_listen(port: u32) -> Attempt {
    // SAFETY: socket/bind/listen on a zeroed sockaddr_vm filled in below;
    // the fd is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket(AF_VSOCK): {}", errno_text()));
        }
        let mut addr: libc::sockaddr_vm = std::mem::zeroed();
        addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        addr.svm_port = port;
        addr.svm_cid = libc::VMADDR_CID_ANY;
        let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
        let bound = libc::bind(fd, (&addr as *const libc::sockaddr_vm).cast(), len);
        let result = if bound < 0 || libc::listen(fd, 1) < 0 {
            Err(format!("bind/listen: {}", errno_text()))
        } else {
            let mut bound_addr: libc::sockaddr_vm = std::mem::zeroed();
            let mut bound_len = len;
            libc::getsockname(
                fd,
                (&mut bound_addr as *mut libc::sockaddr_vm).cast(),
                &mut bound_len,
            );
            Ok(format!("listening on vsock port {}", bound_addr.svm_port))
        };
        libc::close(fd);
        result
    }
}

/// Syscalls that got past the first denylist, each called with arguments
/// that create at most one fd (closed with the process) or read nothing of
/// consequence.
fn newer_syscall(name: &str) -> Option<Attempt> {
    // SAFETY: each call gets buffers that outlive it, sized as the kernel
    // expects, or plain integers.
    let ret = unsafe {
        match name {
            "modify_ldt" => {
                let mut buf = [0u8; 16];
                libc::syscall(libc::SYS_modify_ldt, 0, buf.as_mut_ptr(), buf.len())
            }
            "memfd_secret" => libc::syscall(libc::SYS_memfd_secret, libc::O_CLOEXEC),
            "listmount" => {
                // struct mnt_id_req { u32 size, spare; u64 mnt_id, param; },
                // LSMT_ROOT: the mounts of this namespace's root.
                let req: [u64; 3] = [24, u64::MAX, 0];
                let mut ids = [0u64; 8];
                libc::syscall(458, req.as_ptr(), ids.as_mut_ptr(), ids.len(), 0)
            }
            "open_tree_attr" => libc::syscall(
                467,
                libc::AT_FDCWD,
                c"/".as_ptr(),
                libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
                std::ptr::null::<u8>(),
                0,
            ),
            "pidfd_getfd" => {
                let pidfd = libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0);
                if pidfd < 0 {
                    return Some(Err(format!("pidfd_open: {}", errno_text())));
                }
                libc::syscall(libc::SYS_pidfd_getfd, pidfd, 0, 0)
            }
            "kcmp" => libc::syscall(
                libc::SYS_kcmp,
                libc::getpid(),
                libc::getpid(),
                0, /* KCMP_FILE */
                0,
                1,
            ),
            "fanotify_init" => libc::syscall(
                libc::SYS_fanotify_init,
                0, /* FAN_CLASS_NOTIF */
                libc::O_RDONLY,
            ),
            _ => return None,
        }
    };
    Some(judge(ret, &format!("{name} worked")))
}

/// A syscall by number, without arguments.
fn syscall_number(nr: i64) -> Attempt {
    // SAFETY: a number the filter answers itself, or one the kernel does
    // not have; no arguments are read.
    judge(
        unsafe { libc::syscall(nr) },
        &format!("syscall {nr:#x} ran"),
    )
}

/// Connects to the unix socket at `path` and trades a line with it.
fn unix_connect(path: &str) -> Attempt {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| format!("connect {path}: {e}"))?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream.write_all(b"ping\n").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(format!("{path} answered {:?}", line.trim()))
}

/// A unix socket server of the suite's own: answers each line with
/// `pong`, until the process ends.
fn serve_unix(path: &std::path::Path) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut line = String::new();
            if BufReader::new(&stream).read_line(&mut line).is_ok() {
                let _ = stream.write_all(b"pong\n");
            }
        }
    });
}

/// The host's unix sockets: one in the host's /tmp, hidden by
/// `host-readonly`; one in a directory bound into the sandbox, refused
/// unless the bind says `sockets = true`.
fn unix_socket_cases(suite: &mut Suite, exe_dir: &str) {
    let dir = tempfile::Builder::new()
        .prefix("escape-sockets-")
        .tempdir_in("/tmp")
        .unwrap();
    // As host services make theirs: reachable by anyone (the D-Bus
    // system bus, say, is srw-rw-rw-).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("agent.sock");
    serve_unix(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let path_text = path.display().to_string();

    // host-readonly: the host's /tmp is a fresh tmpfs. The attacker's own
    // directory is bound, as it may be under /tmp too (a clone there).
    let host_readonly = Sandbox::new(
        Policy::from_toml_str(&format!(
            "[filesystem]\nmode = \"host-readonly\"\ntmpfs = []\n\
             binds = [{{ source = \"{exe_dir}\", target = \"{exe_dir}\" }}]\n"
        ))
        .unwrap(),
    )
    .unwrap();
    let saved = std::mem::replace(&mut suite.sandbox, host_readonly);
    suite.case_labelled(
        "unix-connect (host-readonly, a socket in the host's /tmp)",
        "unix-connect",
        Some(&path_text),
        Control::Same,
        Stdio::Null,
    );

    // A bind of the socket's directory: refused when the sandbox is made,
    // unless the bind allows sockets (the control: then it connects).
    let bind = |sockets: bool| {
        Policy::from_toml_str(&format!(
            "[filesystem]\nbinds = [{{ source = \"{exe_dir}\", target = \"{exe_dir}\" }}, \
             {{ source = \"{}\", target = \"/agent\", sockets = {sockets} }}]\n",
            dir.path().display()
        ))
        .unwrap()
    };
    let observed = match Sandbox::new(bind(false)) {
        Err(e) => Observed::Refused(e.to_string()),
        Ok(_) => Observed::Worked("the sandbox was made with the socket bound".into()),
    };
    let control = match Sandbox::new(bind(true)) {
        Err(e) => ControlResult::Failed(e.to_string()),
        Ok(allowed) => {
            suite.sandbox = allowed;
            match suite.inside("unix-connect", Some("/agent/agent.sock"), Stdio::Null) {
                Observed::Worked(evidence) => {
                    ControlResult::Worked(format!("with sockets = true: {evidence}"))
                }
                Observed::Refused(why) | Observed::NoReport(why) => ControlResult::Failed(why),
            }
        }
    };
    suite.sandbox = saved;
    suite.push(
        "a bind whose tree holds a unix socket".into(),
        "refused",
        observed,
        control,
    );
}

/// The attacks of this file, by name.
pub(crate) fn attack(name: &str, arg: Option<&str>) -> Option<Attempt> {
    match name {
        "unix-connect" => Some(unix_connect(arg.unwrap_or("/run/dbus/system_bus_socket"))),
        "vsock-listen" => Some(vsock_listen(
            arg.and_then(|a| a.parse().ok())
                .unwrap_or(libc::VMADDR_PORT_ANY),
        )),
        "syscall-nr" => Some(syscall_number(
            arg.and_then(|a| a.parse().ok()).unwrap_or(-1),
        )),
        other => newer_syscall(other),
    }
}

/// Whether a control failed only because this kernel lacks the feature.
fn missing_here(why: &str) -> bool {
    ["os error 38", "os error 97", "os error 19", "os error 93"]
        .iter()
        .any(|code| why.contains(code))
}

/// A report forged by the command: it prints an outcome object on stderr
/// first, then fails. A parser of `sbx run --json` takes the first JSON
/// value of stderr; it must be sbx's.
fn forged_report(suite: &mut Suite) {
    let forged = r#"{"status":{"exited":0},"report":{"privilege":{"enforced":true}}}"#;
    let script = format!("echo '{forged}' >&2; exit 3");
    let first_status = |stderr: &[u8]| {
        serde_json::Deserializer::from_slice(stderr)
            .into_iter::<serde_json::Value>()
            .next()
            .and_then(Result::ok)
            .map(|v| v["status"]["exited"].clone())
    };
    let sbx = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("sbx")))
        .filter(|p| p.exists());
    let observed = match &sbx {
        None => Observed::NoReport(
            "sbx is not built next to the suite (cargo build -p sandbox-cli)".into(),
        ),
        Some(sbx) => match Command::new(sbx)
            // No probe cache: it would go to the host's /run/sbx.
            .env("SBX_PROBE_CACHE", "0")
            .args(["run", "--json", "--", "sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .output()
        {
            Err(e) => Observed::NoReport(format!("sbx did not start: {e}")),
            Ok(out) => match first_status(&out.stderr) {
                Some(status) if status == 3 => {
                    Observed::Refused("the first JSON value on stderr is sbx's: exited 3".into())
                }
                Some(status) => Observed::Worked(format!("a parser read exited {status}")),
                None => Observed::NoReport(format!(
                    "no JSON on stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )),
            },
        },
    };
    // The control: the same command with its stderr and a report on one
    // stream (as sbx wrote them before): the forged object comes first.
    let control = match Command::new("sh").args(["-c", &script]).output() {
        Ok(out) => match first_status(&out.stderr) {
            Some(status) if status == 0 => ControlResult::Worked(
                "on a shared stream the first JSON value is the forgery: exited 0".into(),
            ),
            other => ControlResult::Failed(format!("the forgery did not parse: {other:?}")),
        },
        Err(e) => ControlResult::Failed(e.to_string()),
    };
    suite.push(
        "forged outcome first on stderr (sbx run --json)".into(),
        "refused",
        observed,
        control,
    );
}

pub(crate) fn hardening_cases(suite: &mut Suite, exe_dir: &str) {
    unix_socket_cases(suite, exe_dir);
    for name in [
        "modify_ldt",
        "memfd_secret",
        "listmount",
        "open_tree_attr",
        "pidfd_getfd",
        "kcmp",
        "fanotify_init",
    ] {
        suite.case(name, None, Control::SameIfPresent, Stdio::Null);
    }
    suite.case("vsock-listen", None, Control::SameIfPresent, Stdio::Null);
    // A number past the filter's table (the next one a kernel would add):
    // ENOSYS from the filter whatever the kernel has. No kernel here has
    // it, so there is no control; sandbox-core's seccomp test removes a
    // known syscall from the table and shows the same against getpid.
    let unknown = sandbox_core::KNOWN_SYSCALLS
        .last()
        .map_or(1000, |&(_, nr)| nr + 1);
    suite.case(
        "syscall-nr",
        Some(&unknown.to_string()),
        Control::None("no kernel here has a syscall the filter does not know"),
        Stdio::Null,
    );
    forged_report(suite);
}

/// Turns a failed control into "no control" where this kernel lacks the
/// feature (ENOSYS, EAFNOSUPPORT, ENODEV, EPROTONOSUPPORT).
pub(crate) fn unless_missing(control: ControlResult) -> ControlResult {
    match control {
        ControlResult::Failed(why) if missing_here(&why) => {
            ControlResult::None(format!("this kernel lacks it ({why})"))
        }
        other => other,
    }
}
