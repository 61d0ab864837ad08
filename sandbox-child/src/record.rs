//! The one record format of the child's pipes: 12 bytes, `(kind, index,
//! value)`, written with one `write(2)` (atomic below `PIPE_BUF`).

use std::ffi::c_int;

/// A record on the setup or status pipe.
pub const RECORD_LEN: usize = 12;
/// A step failed: `(index, errno)`.
pub const RECORD_STEP_FAILED: u32 = 1;
/// The command ended: `(0, wait status)`.
pub const RECORD_COMMAND_STATUS: u32 = 2;
/// A step panicked (a bug in this crate) and the child aborted:
/// `(index, 0)`.
pub const RECORD_STEP_PANICKED: u32 = 3;
/// The command was stopped (job control): `(0, signal)`.
pub const RECORD_COMMAND_STOPPED: u32 = 4;
/// The command was continued after a stop: `(0, 0)`.
pub const RECORD_COMMAND_CONTINUED: u32 = 5;

/// Decodes a record: `(kind, index, value)`.
pub fn decode_record(bytes: &[u8; RECORD_LEN]) -> (u32, u32, i32) {
    let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
    (
        u32::from_ne_bytes(word(0)),
        u32::from_ne_bytes(word(4)),
        i32::from_ne_bytes(word(8)),
    )
}

pub(crate) fn write_record(fd: c_int, kind: u32, index: u32, value: i32) {
    let mut record = [0u8; RECORD_LEN];
    record[..4].copy_from_slice(&kind.to_ne_bytes());
    record[4..8].copy_from_slice(&index.to_ne_bytes());
    record[8..].copy_from_slice(&value.to_ne_bytes());
    // One write: a pipe write of 12 bytes is atomic (below PIPE_BUF). A
    // failure has nobody to be reported to (the parent reads this pipe).
    if let Ok(fd) = crate::exec::inherited(fd) {
        let _ = rustix::io::write(fd, &record);
    }
}
