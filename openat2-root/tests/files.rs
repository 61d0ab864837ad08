//! Opening, copying, listing and atomically writing files.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a test failure

mod common;

use std::fs;
use std::io::{Read, Write};

use common::{errno, setup, umask_applied};
use openat2_root::{Error, ErrorKind, FileType, OpenOptions, Root, RootOptions};

#[test]
fn copy_regular_files_only() {
    let t = setup();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(t.p("src"), &data).unwrap();
    t.chmod("src", 0o640);
    assert_eq!(t.root.copy("src", "dst").unwrap(), data.len() as u64);
    assert_eq!(fs::read(t.p("dst")).unwrap(), data);
    assert_eq!((t.mode("dst") & 0o777), 0o640);
    // Over an existing, longer file: replaced, not overlaid.
    t.file("small", "abc");
    t.root.copy("small", "dst").unwrap();
    assert_eq!(t.read("dst"), "abc");
    // Same file: refused, nothing truncated.
    let e = t.root.copy("small", "small").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    t.root.hard_link("small", "small2").unwrap();
    assert_eq!(
        t.root.copy("small", "small2").unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(t.read("small"), "abc");
    t.dir("d");
    assert!(matches!(
        t.root.copy("d", "x").unwrap_err(),
        Error::SpecialFile {
            file_type: FileType::Dir,
            ..
        }
    ));
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        t.p("fifo").as_path(),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    assert!(matches!(
        t.root.copy("fifo", "x").unwrap_err(),
        Error::SpecialFile {
            file_type: FileType::Fifo,
            ..
        }
    ));
    assert!(!t.exists("x"));
    std::os::unix::fs::symlink("small", t.p("l")).unwrap();
    assert_eq!(t.root.copy("l", "x").unwrap_err().kind(), ErrorKind::Escape);
    assert_eq!(
        t.root.copy("small", "l").unwrap_err().kind(),
        ErrorKind::Escape
    );
    assert_eq!(t.read("small"), "abc");
}

#[test]
fn read_dir_lists_types_without_following() {
    let t = setup();
    t.dir("d/sub");
    t.file("d/f", "");
    std::os::unix::fs::symlink("/", t.p("d/l")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        t.p("d/p").as_path(),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    let mut entries: Vec<(String, FileType)> = t
        .root
        .read_dir("d")
        .unwrap()
        .map(|e| e.map(|e| (e.file_name().to_string_lossy().into_owned(), e.file_type())))
        .collect::<Result<_, _>>()
        .unwrap();
    entries.sort();
    assert_eq!(
        entries,
        [
            ("f".into(), FileType::File),
            ("l".into(), FileType::Symlink),
            ("p".into(), FileType::Fifo),
            ("sub".into(), FileType::Dir)
        ]
    );
    assert_eq!(errno(&t.root.read_dir("d/f").unwrap_err()), libc::ENOTDIR);
    assert_eq!(
        t.root.read_dir("d/l").unwrap_err().kind(),
        ErrorKind::Escape
    );
    assert_eq!(t.root.read_dir(".").unwrap().count(), 1);
}

#[test]
fn open_dir_confines_to_the_subdirectory() {
    let t = setup();
    t.dir("a/b");
    t.file("secret", "s");
    let sub = t.root.open_dir("a").unwrap();
    assert!(sub.metadata("b").unwrap().is_dir());
    assert_eq!(
        sub.metadata("../secret").unwrap_err().kind(),
        ErrorKind::InvalidPath
    );
    std::os::unix::fs::symlink("../secret", t.p("a/up")).unwrap();
    assert_eq!(sub.metadata("up").unwrap_err().kind(), ErrorKind::Escape);
    t.file("a/f", "");
    assert_eq!(errno(&t.root.open_dir("a/f").unwrap_err()), libc::ENOTDIR);
    // In follow mode, `..` in a link is clamped at the subroot.
    let fol = Root::open_with(&t.path, RootOptions::new().follow_symlinks_in_root(true)).unwrap();
    let sub = fol.open_dir("a").unwrap();
    assert_eq!(sub.metadata("up").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn open_file_options() {
    let t = setup();
    let mut f = t
        .root
        .open_file(
            "new",
            OpenOptions::new().write(true).create_new(true).mode(0o600),
        )
        .unwrap();
    f.write_all(b"abc").unwrap();
    drop(f);
    assert_eq!((t.mode("new") & 0o777), umask_applied(0o600));
    let e = t
        .root
        .open_file("new", OpenOptions::new().write(true).create_new(true))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let mut s = String::new();
    t.root
        .open_file("new", OpenOptions::new().read(true))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "abc");
    t.root
        .open_file("new", OpenOptions::new().append(true))
        .unwrap()
        .write_all(b"def")
        .unwrap();
    assert_eq!(t.read("new"), "abcdef");
    t.root
        .open_file("new", OpenOptions::new().write(true).truncate(true))
        .unwrap();
    assert_eq!(t.read("new"), "");
    // The returned file is blocking, close-on-exec, and not in append mode
    // unless asked.
    let f = t
        .root
        .open_file("new", OpenOptions::new().read(true).write(true))
        .unwrap();
    let fl = rustix::fs::fcntl_getfl(&f).unwrap();
    assert!(!fl.contains(rustix::fs::OFlags::NONBLOCK) && !fl.contains(rustix::fs::OFlags::APPEND));
    assert!(
        rustix::io::fcntl_getfd(&f)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    );
    // Refused combinations, as std refuses them.
    for opts in [
        OpenOptions::new(),
        *OpenOptions::new().read(true).create(true),
        *OpenOptions::new().read(true).truncate(true),
    ] {
        assert_eq!(
            t.root.open_file("new", &opts).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
    assert_eq!(
        t.root
            .open_file("missing", OpenOptions::new().read(true))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        errno(
            &t.root
                .open_file("new/", OpenOptions::new().read(true))
                .unwrap_err()
        ),
        libc::ENOTDIR
    );
    // Creating through a dangling symlink is refused, and creates nothing.
    std::os::unix::fs::symlink("created_elsewhere", t.p("dangling")).unwrap();
    let e = t
        .root
        .open_file("dangling", OpenOptions::new().write(true).create(true))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Escape);
    assert!(!t.exists("created_elsewhere"));
}

#[test]
fn open_file_refuses_special_files_without_blocking() {
    let t = setup();
    let fifo = t.p("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        fifo.as_path(),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    // Neither of these may block: there is no other end.
    for opts in [
        *OpenOptions::new().read(true),
        *OpenOptions::new().write(true),
    ] {
        let e = t.root.open_file("fifo", &opts).unwrap_err();
        assert!(
            matches!(
                e,
                Error::SpecialFile {
                    file_type: FileType::Fifo,
                    ..
                }
            ),
            "{e}"
        );
    }
    assert!(matches!(
        t.root.set_len("fifo", 0).unwrap_err(),
        Error::SpecialFile { .. }
    ));
    // Explicitly allowed: opens (read side with O_RDWR so it cannot block).
    t.root
        .open_file(
            "fifo",
            OpenOptions::new()
                .read(true)
                .write(true)
                .allow_special_files(true),
        )
        .unwrap();
    // A device node through a bind of /dev would be refused the same way;
    // a Unix socket cannot be opened at all.
    let sock = std::os::unix::net::UnixListener::bind(t.p("sock")).unwrap();
    let e = t
        .root
        .open_file("sock", OpenOptions::new().read(true))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::SpecialFile {
                file_type: FileType::Socket,
                ..
            }
        ) || errno(&e) == libc::ENXIO,
        "{e}"
    );
    drop(sock);
}

#[test]
fn special_device_nodes_are_refused() {
    // /dev itself as a root: null is a character device.
    let dev = Root::open("/dev").unwrap();
    let e = dev
        .open_file("null", OpenOptions::new().read(true))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::SpecialFile {
                file_type: FileType::CharDevice,
                ..
            }
        ),
        "{e}"
    );
    dev.open_file(
        "null",
        OpenOptions::new().read(true).allow_special_files(true),
    )
    .unwrap();
}

#[test]
fn write_atomic_replaces_whole_files() {
    let t = setup();
    t.root.write_atomic("f", b"first").unwrap();
    assert_eq!(t.read("f"), "first");
    t.root.write_atomic("f", b"second!").unwrap();
    assert_eq!(t.read("f"), "second!");
    // A symlink at the path is replaced by the file; its target is untouched.
    t.file("target", "T");
    std::os::unix::fs::symlink("target", t.p("l")).unwrap();
    t.root.write_atomic("l", b"new").unwrap();
    assert!(fs::symlink_metadata(t.p("l")).unwrap().is_file());
    assert_eq!(t.read("target"), "T");
    t.dir("d");
    t.root.write_atomic("d", b"x").unwrap_err();
    assert_eq!(
        errno(&t.root.write_atomic("e/", b"x").unwrap_err()),
        libc::EISDIR
    );
    assert_eq!(
        t.root.write_atomic("missing/f", b"x").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // No temporary file is left behind, after success or failure.
    let names: Vec<String> = fs::read_dir(&t.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn write_atomic_keeps_mode_and_owner_of_the_replaced_file() {
    use std::os::unix::fs::MetadataExt;
    let t = setup();
    t.file("secret", "old");
    t.chmod("secret", 0o600);
    t.root.write_atomic("secret", b"new").unwrap();
    assert_eq!(t.read("secret"), "new");
    assert_eq!(t.mode("secret"), 0o600);
    // Looser than the umask allows is kept exactly too; set-id bits are not
    // carried over to new contents.
    t.chmod("secret", 0o4777);
    t.root.write_atomic("secret", b"newer").unwrap();
    assert_eq!(t.mode("secret"), 0o777);
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(t.p("secret"), Some(65534), Some(65534)).unwrap();
        t.root.write_atomic("secret", b"newest").unwrap();
        let m = fs::metadata(t.p("secret")).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
    }
    // A new file: 0o666 less the umask.
    t.root.write_atomic("fresh", b"x").unwrap();
    assert_eq!((t.mode("fresh") & 0o777), umask_applied(0o666));
}

#[test]
fn root_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Root>();
    assert_send_sync::<openat2_root::Error>();
    // Shared by reference across threads, each call resolving afresh.
    let t = setup();
    std::thread::scope(|s| {
        for i in 0..4 {
            let root = &t.root;
            s.spawn(move || root.write_atomic(format!("t{i}"), b"x").unwrap());
        }
    });
    assert_eq!(t.root.read_dir(".").unwrap().count(), 4);
}

/// A refused FIFO is never opened: a writer blocked in its open stays
/// blocked (an open for reading would release it), and inotify sees no
/// `IN_OPEN` — for `open_file`, `copy` and `set_len` alike. The control:
/// std's open for reading releases the writer, and inotify sees it.
#[test]
fn refused_special_files_are_never_opened() {
    use std::sync::mpsc;
    use std::time::Duration;
    let t = setup();
    let fifo = t.p("fifo");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        fifo.as_path(),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    let inotify = rustix::fs::inotify::init(
        rustix::fs::inotify::CreateFlags::CLOEXEC | rustix::fs::inotify::CreateFlags::NONBLOCK,
    )
    .unwrap();
    rustix::fs::inotify::add_watch(
        &inotify,
        fifo.as_path(),
        rustix::fs::inotify::WatchFlags::OPEN,
    )
    .unwrap();
    let opens = || {
        let mut buf = [std::mem::MaybeUninit::uninit(); 1024];
        let mut reader = rustix::fs::inotify::Reader::new(&inotify, &mut buf);
        let mut n = 0;
        while reader.next().is_ok() {
            n += 1;
        }
        n
    };
    // A writer waiting for a reader.
    let (done, writer_returned) = mpsc::channel();
    let path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let f = fs::OpenOptions::new().write(true).open(&path);
        let _ = done.send(());
        f
    });
    std::thread::sleep(Duration::from_millis(100));
    let before = opens();
    for e in [
        t.root
            .open_file("fifo", OpenOptions::new().read(true))
            .unwrap_err(),
        t.root.copy("fifo", "copy").unwrap_err(),
        t.root.set_len("fifo", 0).unwrap_err(),
    ] {
        assert!(matches!(e, Error::SpecialFile { .. }), "{e}");
    }
    assert!(
        writer_returned
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "the blocked writer was released: the FIFO was opened"
    );
    assert_eq!(opens(), 0, "inotify saw the FIFO opened ({before} before)");
    // The control: an ordinary open for reading releases the writer.
    let reader = fs::File::open(&fifo).unwrap();
    writer_returned
        .recv_timeout(Duration::from_secs(5))
        .expect("an open for reading releases the writer");
    assert!(writer.join().unwrap().is_ok());
    assert!(opens() > 0, "inotify sees an open");
    drop(reader);
}

/// `copy` keeps holes: a 64 MiB file with two 4 KiB extents copies to a
/// file of the same length and contents that allocates no more than the
/// source (the control: writing the same bytes densely allocates 64 MiB).
/// An existing longer file is replaced, not merged.
#[test]
fn copy_keeps_holes_and_replaces_whole_files() {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;
    let t = setup();
    let mut f = fs::File::create(t.p("sparse")).unwrap();
    f.write_all(&[1u8; 4096]).unwrap();
    f.seek(SeekFrom::Start(32 << 20)).unwrap();
    f.write_all(&[2u8; 4096]).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    assert_eq!(t.root.copy("sparse", "copy").unwrap(), 64 << 20);
    let (src, dst) = (
        fs::metadata(t.p("sparse")).unwrap(),
        fs::metadata(t.p("copy")).unwrap(),
    );
    assert_eq!(dst.len(), src.len());
    assert!(
        dst.blocks() <= src.blocks() + 16,
        "holes kept: {} blocks against the source's {}",
        dst.blocks(),
        src.blocks()
    );
    assert_eq!(
        fs::read(t.p("copy")).unwrap(),
        fs::read(t.p("sparse")).unwrap()
    );
    // The control: the same bytes written densely take the whole length.
    fs::write(t.p("dense"), fs::read(t.p("sparse")).unwrap()).unwrap();
    assert!(fs::metadata(t.p("dense")).unwrap().blocks() * 512 >= 60 << 20);
    // Over a longer file: its old tail is gone.
    t.file("long", &"x".repeat(100_000));
    t.file("short", "short");
    assert_eq!(t.root.copy("short", "long").unwrap(), 5);
    assert_eq!(t.read("long"), "short");
    // An empty source makes an empty file.
    t.file("empty", "");
    assert_eq!(t.root.copy("empty", "long").unwrap(), 0);
    assert_eq!(t.read("long"), "");
}

/// Helpers run in a child process by the test that names them; each
/// returns at once when run any other way (CI skips `child_process::`).
mod child_process {
    use super::*;

    /// Replaces `big` with 64 MiB, for ever, in the directory the parent
    /// names; killed by `write_atomic_leaves_nothing_when_killed`.
    #[test]
    #[ignore = "run by write_atomic_leaves_nothing_when_killed in a child process"]
    fn write_atomic_forever() {
        let Some(dir) = std::env::var_os("OPENAT2_ROOT_KILL_CHILD") else {
            return;
        };
        let root = Root::open(dir).unwrap();
        let data = vec![7u8; 64 << 20];
        loop {
            root.write_atomic("big", &data).unwrap();
        }
    }
}

/// A process killed while `write_atomic` writes leaves no temporary file
/// behind: the data was in an anonymous `O_TMPFILE` file. The kill is
/// made while the child holds such a file open (seen in `/proc/PID/fd` as
/// `#NNN (deleted)` in the directory): the control that a write was under
/// way.
#[test]
fn write_atomic_leaves_nothing_when_killed() {
    let t = setup();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process::write_atomic_forever",
            "--include-ignored",
            "--nocapture",
        ])
        .env("OPENAT2_ROOT_KILL_CHILD", t.p(""))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let fd_dir = format!("/proc/{}/fd", child.id());
    let dir = t.p("").display().to_string();
    let started = std::time::Instant::now();
    let mut caught = false;
    while started.elapsed() < std::time::Duration::from_secs(30) && !caught {
        caught = fs::read_dir(&fd_dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                fs::read_link(e.path()).is_ok_and(|l| {
                    let l = l.display().to_string();
                    l.starts_with(dir.trim_end_matches('/'))
                        && l.contains("/#")
                        && l.ends_with("(deleted)")
                })
            });
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(caught, "never saw the child mid-write");
    let left: Vec<String> = fs::read_dir(t.p(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "big")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
