//! The operating system's baselines: two pipes, or one unix socket pair.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Command;

use crate::drive::{Link, Spin};
use crate::peer::{inherit_fd, inherited_fd, Job};
use crate::{MeasureError, Mode};

/// A byte stream per direction, read and written in whole messages.
pub(crate) struct FdLink {
    tx: File,
    rx: File,
    payload: usize,
}

/// Sets `O_NONBLOCK` on `fd` (polling mode).
fn set_nonblocking(fd: &impl AsRawFd) -> Result<(), MeasureError> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; F_GETFL/F_SETFL only read and
    // write the file status flags.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK)
    };
    if rc < 0 {
        return Err(MeasureError::io("O_NONBLOCK")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Best effort: asks for `bytes` of pipe buffer (capped by
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default).
fn set_pipe_size(fd: &impl AsRawFd, bytes: u64) {
    let bytes = bytes.min(i32::MAX as u64) as libc::c_int;
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own; a failure changes
    // nothing.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes);
    }
}

/// Best effort: asks for `bytes` of socket send and receive buffer (capped
/// by `net.core.wmem_max`/`rmem_max`).
fn set_socket_buffers(fd: &impl AsRawFd, bytes: u64) {
    let value = bytes.min(i32::MAX as u64 / 2) as libc::c_int;
    for option in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `value`,
        // which lives across the call; a failure changes nothing.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl FdLink {
    fn new(job: &Job, tx: OwnedFd, rx: OwnedFd) -> Result<FdLink, MeasureError> {
        if job.mode == Mode::Polling {
            set_nonblocking(&tx)?;
            set_nonblocking(&rx)?;
        }
        Ok(FdLink {
            tx: File::from(tx),
            rx: File::from(rx),
            payload: job.payload,
        })
    }

    pub(crate) fn parent_pipe(job: &mut Job, cmd: &mut Command) -> Result<FdLink, MeasureError> {
        let (peer_rx, tx) = std::io::pipe().map_err(MeasureError::io("pipe"))?;
        let (rx, peer_tx) = std::io::pipe().map_err(MeasureError::io("pipe"))?;
        set_pipe_size(&tx, job.ring_bytes());
        set_pipe_size(&rx, job.ring_bytes());
        inherit_fd(cmd, job, peer_rx.into());
        inherit_fd(cmd, job, peer_tx.into());
        FdLink::new(job, tx.into(), rx.into())
    }

    pub(crate) fn child_pipe(job: &Job) -> Result<FdLink, MeasureError> {
        let rx = inherited_fd(job, 0)?;
        let tx = inherited_fd(job, 1)?;
        FdLink::new(job, tx, rx)
    }

    pub(crate) fn parent_socket(job: &mut Job, cmd: &mut Command) -> Result<FdLink, MeasureError> {
        let (ours, theirs) = UnixStream::pair().map_err(MeasureError::io("socketpair"))?;
        set_socket_buffers(&ours, job.ring_bytes());
        set_socket_buffers(&theirs, job.ring_bytes());
        inherit_fd(cmd, job, theirs.into());
        let ours = OwnedFd::from(ours);
        let rx = ours.try_clone().map_err(MeasureError::io("dup"))?;
        FdLink::new(job, ours, rx)
    }

    pub(crate) fn child_socket(job: &Job) -> Result<FdLink, MeasureError> {
        let tx = inherited_fd(job, 0)?;
        let rx = tx.try_clone().map_err(MeasureError::io("dup"))?;
        FdLink::new(job, tx, rx)
    }
}

impl Link for FdLink {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), MeasureError> {
        let mut spin = Spin::new();
        let mut done = 0;
        while done < msg.len() {
            match self.tx.write(&msg[done..]) {
                Ok(0) => return Err(MeasureError::Peer("write returned 0".into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => spin.spin()?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(MeasureError::transport("write", e)),
            }
        }
        Ok(())
    }

    #[inline]
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<(), MeasureError> {
        buf.resize(self.payload, 0);
        let mut spin = Spin::new();
        let mut done = 0;
        while done < buf.len() {
            match self.rx.read(&mut buf[done..]) {
                Ok(0) => return Err(MeasureError::Peer("end of file".into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => spin.spin()?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(MeasureError::transport("read", e)),
            }
        }
        Ok(())
    }
}
