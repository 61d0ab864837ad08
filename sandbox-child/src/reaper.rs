//! PID 1 once the command runs: a minimal static program PID 1 execs, so
//! that for the rest of the run the sandbox's init holds a few pages of
//! its own instead of its copy of the caller's address space (which may
//! be gigabytes, and holds the caller's secrets).
//!
//! The program is an ELF image assembled here (x86_64), written once per
//! process to a sealed memfd and executed with `execveat(fd, "",
//! AT_EMPTY_PATH)`. It is called as `sbx-init COMMAND-PID STATUS-FD`,
//! with the signals to forward and `SIGCHLD` blocked, and then:
//!
//! - names itself `sandbox-init`, sets itself non-dumpable and its
//!   parent-death signal to `SIGKILL`;
//! - reads the blocked set and makes a `signalfd` of it;
//! - reaps every child (`wait4(-1, WNOHANG | WUNTRACED | WCONTINUED)`):
//!   the command's stops and continues become `RECORD_COMMAND_STOPPED` and
//!   `RECORD_COMMAND_CONTINUED` on the status fd, and its end
//!   `RECORD_COMMAND_STATUS` (after a `CONTINUED` if it ended stopped by
//!   anything but `SIGKILL`), then it exits 0 (the kernel ends the pid
//!   namespace with it);
//! - passes every other signal it reads on to the command's process group.
//!
//! That is what `spawn::init_main` does in-process, where the memfd cannot
//! be made or executed (another architecture, `vm.memfd_noexec = 2`).

use std::ffi::c_int;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .rodata.sandbox_child_reaper, \"a\", @progbits",
    ".balign 64",
    ".globl sandbox_child_reaper_start",
    ".hidden sandbox_child_reaper_start",
    "sandbox_child_reaper_start:",
    // The ELF header: 64-bit, little-endian, version 1, System V.
    ".byte 0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0",
    ".quad 0",
    // ET_EXEC, EM_X86_64, EV_CURRENT.
    ".short 2, 62",
    ".long 1",
    // e_entry, e_phoff, e_shoff, e_flags.
    ".quad 0x400000 + (.Lsbx_entry - sandbox_child_reaper_start)",
    ".quad .Lsbx_phdr - sandbox_child_reaper_start",
    ".quad 0",
    ".long 0",
    // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx.
    ".short 64, 56, 2, 0, 0, 0",
    // PT_LOAD of the whole image, read and execute, at 0x400000.
    ".Lsbx_phdr:",
    ".long 1, 5",
    ".quad 0, 0x400000, 0x400000",
    ".quad .Lsbx_end - sandbox_child_reaper_start",
    ".quad .Lsbx_end - sandbox_child_reaper_start",
    ".quad 0x1000",
    // PT_GNU_STACK: a stack that is not executable.
    ".long 0x6474e551, 6",
    ".quad 0, 0, 0, 0, 0, 16",
    ".Lsbx_entry:",
    // argc must be 3: the name, the command's pid, the status fd.
    "cmpq $3, (%rsp)",
    "jne .Lsbx_fail",
    "movq 16(%rsp), %rdi",
    "call .Lsbx_atoi",
    "movq %rax, %r12",
    "movq 24(%rsp), %rdi",
    "call .Lsbx_atoi",
    "movq %rax, %r13",
    // r15: whether the last change reported was a stop.
    "xorl %r15d, %r15d",
    // Scratch below the arguments, from rbp: 0 the signal set, 8 the wait
    // status, 16 the record, 128 the signalfd_siginfo.
    "subq $512, %rsp",
    "andq $-16, %rsp",
    "movq %rsp, %rbp",
    // prctl(PR_SET_DUMPABLE, 0); prctl(PR_SET_PDEATHSIG, SIGKILL).
    "movl $157, %eax",
    "movl $4, %edi",
    "xorl %esi, %esi",
    "syscall",
    "movl $157, %eax",
    "movl $1, %edi",
    "movl $9, %esi",
    "syscall",
    // prctl(PR_SET_NAME, "sandbox-init").
    "movl $157, %eax",
    "movl $15, %edi",
    "leaq .Lsbx_name(%rip), %rsi",
    "syscall",
    // rt_sigprocmask(SIG_BLOCK, NULL, &set, 8): the blocked set.
    "movl $14, %eax",
    "xorl %edi, %edi",
    "xorl %esi, %esi",
    "leaq 0(%rbp), %rdx",
    "movl $8, %r10d",
    "syscall",
    "testq %rax, %rax",
    "jnz .Lsbx_fail",
    // signalfd4(-1, &set, 8, SFD_CLOEXEC).
    "movl $289, %eax",
    "movq $-1, %rdi",
    "leaq 0(%rbp), %rsi",
    "movl $8, %edx",
    "movl $0x80000, %r10d",
    "syscall",
    "testq %rax, %rax",
    "js .Lsbx_fail",
    "movq %rax, %r14",
    ".Lsbx_reap:",
    // wait4(-1, &status, WNOHANG | WUNTRACED | WCONTINUED, NULL).
    "movl $61, %eax",
    "movq $-1, %rdi",
    "leaq 8(%rbp), %rsi",
    "movl $11, %edx",
    "xorl %r10d, %r10d",
    "syscall",
    "testq %rax, %rax",
    "jz .Lsbx_signal",
    "js .Lsbx_fail",
    "cmpq %r12, %rax",
    "jne .Lsbx_reap",
    "movl 8(%rbp), %ebx",
    // Stopped: (status & 0xff) == 0x7f, the signal in bits 8-15.
    "movl %ebx, %ecx",
    "andl $0xff, %ecx",
    "cmpl $0x7f, %ecx",
    "jne .Lsbx_not_stopped",
    "movl $1, %r15d",
    "movl %ebx, %edx",
    "shrl $8, %edx",
    "andl $0xff, %edx",
    "movl $4, %edi",
    "call .Lsbx_record",
    "jmp .Lsbx_reap",
    ".Lsbx_not_stopped:",
    // Continued: status == 0xffff.
    "cmpl $0xffff, %ebx",
    "jne .Lsbx_ended",
    "xorl %r15d, %r15d",
    "movl $5, %edi",
    "xorl %edx, %edx",
    "call .Lsbx_record",
    "jmp .Lsbx_reap",
    ".Lsbx_ended:",
    // Ended while stopped: it ran again, unless SIGKILL ended it.
    "testl %r15d, %r15d",
    "jz .Lsbx_status",
    "movl %ebx, %ecx",
    "andl $0x7f, %ecx",
    "cmpl $9, %ecx",
    "je .Lsbx_status",
    "movl $5, %edi",
    "xorl %edx, %edx",
    "call .Lsbx_record",
    ".Lsbx_status:",
    "movl $2, %edi",
    "movl %ebx, %edx",
    "call .Lsbx_record",
    "movl $231, %eax",
    "xorl %edi, %edi",
    "syscall",
    ".Lsbx_signal:",
    // read(signalfd, &info, 128): a child changed, or a signal to pass on.
    "xorl %eax, %eax",
    "movq %r14, %rdi",
    "leaq 128(%rbp), %rsi",
    "movl $128, %edx",
    "syscall",
    "cmpq $-4, %rax",
    "je .Lsbx_signal",
    "cmpq $128, %rax",
    "jne .Lsbx_fail",
    "movl 128(%rbp), %esi",
    "cmpl $17, %esi",
    "je .Lsbx_reap",
    // kill(-command, signal): the command's process group.
    "movl $62, %eax",
    "movq %r12, %rdi",
    "negq %rdi",
    "syscall",
    "jmp .Lsbx_reap",
    ".Lsbx_fail:",
    "movl $231, %eax",
    "movl $125, %edi",
    "syscall",
    // The record (kind edi, index 0, value edx) written to the status fd.
    ".Lsbx_record:",
    "movl %edi, 16(%rbp)",
    "movl $0, 20(%rbp)",
    "movl %edx, 24(%rbp)",
    "movl $1, %eax",
    "movq %r13, %rdi",
    "leaq 16(%rbp), %rsi",
    "movl $12, %edx",
    "syscall",
    "ret",
    // A decimal string at rdi to rax; anything else fails.
    ".Lsbx_atoi:",
    "xorl %eax, %eax",
    ".Lsbx_digit:",
    "movzbl (%rdi), %ecx",
    "testl %ecx, %ecx",
    "jz .Lsbx_number",
    "subl $48, %ecx",
    "cmpl $9, %ecx",
    "ja .Lsbx_fail",
    "imulq $10, %rax, %rax",
    "addq %rcx, %rax",
    "incq %rdi",
    "jmp .Lsbx_digit",
    ".Lsbx_number:",
    "ret",
    ".Lsbx_name:",
    ".asciz \"sandbox-init\"",
    ".Lsbx_end:",
    ".globl sandbox_child_reaper_end",
    ".hidden sandbox_child_reaper_end",
    "sandbox_child_reaper_end:",
    ".popsection",
    options(att_syntax)
);

/// The reaper's ELF image.
#[cfg(target_arch = "x86_64")]
fn image() -> Option<&'static [u8]> {
    unsafe extern "C" {
        static sandbox_child_reaper_start: u8;
        static sandbox_child_reaper_end: u8;
    }
    let start = &raw const sandbox_child_reaper_start;
    let end = &raw const sandbox_child_reaper_end;
    let len = (end as usize).checked_sub(start as usize)?;
    // SAFETY: both symbols are labels of the one read-only section the
    // `global_asm!` above emits, `start` before `end`: the bytes between
    // them are that image, initialised and never written.
    Some(unsafe { std::slice::from_raw_parts(start, len) })
}

#[cfg(not(target_arch = "x86_64"))]
fn image() -> Option<&'static [u8]> {
    None
}

/// The sealed memfd holding the reaper, made on first use; `None` where
/// it cannot be made (then PID 1 reaps in-process).
pub fn reaper_fd() -> Option<BorrowedFd<'static>> {
    static FD: OnceLock<Option<OwnedFd>> = OnceLock::new();
    FD.get_or_init(|| make().ok()).as_ref().map(|fd| fd.as_fd())
}

fn make() -> Result<OwnedFd, rustix::io::Errno> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let image = image().ok_or(rustix::io::Errno::NOSYS)?;
    // MFD_EXEC (6.3+) keeps it executable where `vm.memfd_noexec = 1`
    // would seal a new memfd against exec; older kernels refuse the flag.
    const MFD_EXEC: u32 = 0x10;
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    let fd = rustix::fs::memfd_create(c"sbx-init", flags | MemfdFlags::from_bits_retain(MFD_EXEC))
        .or_else(|_| rustix::fs::memfd_create(c"sbx-init", flags))?;
    let mut written = 0;
    while written < image.len() {
        written += rustix::io::write(&fd, image.get(written..).unwrap_or_default())?;
    }
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
    )?;
    Ok(fd)
}

/// Execs the reaper from PID 1 (`reaper`, its memfd) for the command
/// `command`, reporting on `status_fd`; returns only if that failed (then
/// PID 1 goes on reaping in-process, the forwarded signals and `SIGCHLD`
/// blocked, which its handlers and `wait` do not mind).
pub(crate) fn exec_reaper(reaper: c_int, command: i32, status_fd: c_int) {
    // SAFETY: sigemptyset/sigaddset/sigprocmask on a live local set; PID
    // 1 has one thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        for signal in crate::FORWARDED_SIGNALS.iter().chain(&[libc::SIGCHLD]) {
            libc::sigaddset(&raw mut set, *signal);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut());
    }
    // The status fd stays open across the exec.
    let Ok(status) = crate::exec::inherited(status_fd) else {
        return;
    };
    if rustix::io::fcntl_setfd(status, rustix::io::FdFlags::empty()).is_err() {
        return;
    }
    let (mut pid_text, mut fd_text) = ([0u8; 21], [0u8; 21]);
    for (n, text) in [
        (command as usize, &mut pid_text),
        (status_fd as usize, &mut fd_text),
    ] {
        let mut digits = [0u8; 20];
        let digits = crate::spawn::decimal(n, &mut digits);
        text[..digits.len()].copy_from_slice(digits);
    }
    let name = c"sbx-init";
    let argv = [
        name.as_ptr(),
        pid_text.as_ptr().cast::<std::ffi::c_char>(),
        fd_text.as_ptr().cast::<std::ffi::c_char>(),
        std::ptr::null(),
    ];
    let envp = [std::ptr::null::<std::ffi::c_char>()];
    // SAFETY: execveat(2) reads the NUL-terminated strings and the
    // NULL-terminated pointer arrays above, all live locals; on success it
    // does not return, on failure it changed nothing.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            reaper,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_image_is_one_small_elf() {
        let image = super::image().unwrap();
        assert_eq!(&image[..4], b"\x7fELF");
        assert!(image.len() < 1024, "{}", image.len());
        assert!(super::reaper_fd().is_some());
    }
}
