//! The child's fd registers: the fds its steps open, each owned by its
//! slot until a step closes it. The slots are allocated by the parent
//! before the clone (their number is in the plan); the child only fills
//! and empties them, which allocates nothing.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;

use crate::step::Reg;

/// Numbered slots for the fds a plan's steps open.
#[derive(Debug)]
pub(crate) struct Registers(Vec<Option<OwnedFd>>);

impl Registers {
    /// `count` empty slots (in the parent: this allocates).
    pub(crate) fn new(count: usize) -> Self {
        Self((0..count).map(|_| None).collect())
    }

    /// The fd in slot `r`; `EBADF` if the slot is empty or does not exist
    /// (a plan that uses a register before filling it).
    pub(crate) fn get(&self, r: Reg) -> Result<BorrowedFd<'_>, Errno> {
        self.optional(r).ok_or(Errno::BADF)
    }

    /// The fd in slot `r`, if there is one (an optional mount target that
    /// was missing leaves its slot empty).
    pub(crate) fn optional(&self, r: Reg) -> Option<BorrowedFd<'_>> {
        self.0.get(r).and_then(Option::as_ref).map(AsFd::as_fd)
    }

    /// Puts `fd` in slot `r`, closing what was there. A slot the plan did
    /// not count is a bug in the plan: the fd is closed and `EINVAL`
    /// returned.
    pub(crate) fn put(&mut self, r: Reg, fd: OwnedFd) -> Result<(), Errno> {
        match self.0.get_mut(r) {
            Some(slot) => {
                *slot = Some(fd);
                Ok(())
            }
            None => Err(Errno::INVAL),
        }
    }

    /// Empties every slot without closing: the fds a process sharing this
    /// memory put there are in its fd table, not ours.
    pub(crate) fn forget(&mut self) {
        for slot in &mut self.0 {
            if let Some(fd) = slot.take() {
                let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
            }
        }
    }

    /// Closes the fd in slot `r`, if any.
    pub(crate) fn close(&mut self, r: Reg) {
        if let Some(slot) = self.0.get_mut(r) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_holds_its_fd_until_closed() {
        let mut registers = Registers::new(2);
        assert_eq!(registers.get(0).err(), Some(Errno::BADF));
        let (read, _write) = rustix::pipe::pipe().unwrap();
        registers.put(1, read).unwrap();
        assert!(registers.get(1).is_ok());
        registers.close(1);
        assert_eq!(registers.get(1).err(), Some(Errno::BADF));
        let (read, _write) = rustix::pipe::pipe().unwrap();
        assert_eq!(registers.put(2, read), Err(Errno::INVAL));
        assert_eq!(registers.get(7).err(), Some(Errno::BADF));
    }
}
