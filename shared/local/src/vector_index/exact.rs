//! The f32 vectors a [`FlatIndex`](super::FlatIndex) scores exactly: in memory, or in a file
//! beside the database that a query reads only for its re-rank candidates.
//!
//! Why a file: at a million chunks they are 1.5 GB of the server's 3.2 GB resident, and loading
//! them from SQLite rows took most of the 11.4 s open (`--bench scale` in the CLI crate), while a
//! query reads a few hundred of them. Positioned reads (`pread`) rather than a memory map: a map
//! needs `unsafe`, which the workspace forbids, and the OS page cache keeps the read ones anyway.
//! The file is slot-major, little-endian, and mirrors the index's slots: only the process that
//! holds its lock uses it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The exact vectors, slot-major.
#[derive(Debug)]
pub(super) enum Exact {
    Memory(Vec<f32>),
    File(SlotFile),
}

/// The vectors in a file this process holds an exclusive lock on, and the snapshot that describes
/// it (`snapshot.rs`), which the first change removes: a crash then leaves no snapshot that
/// claims the file's old contents.
#[derive(Debug)]
pub(crate) struct SlotFile {
    file: File,
    dim: usize,
    /// Slots in use; the file may be longer until the next snapshot truncates it.
    len: usize,
    pub(super) snapshot: PathBuf,
    /// Changed since the snapshot was written (or there is none).
    pub(super) unsaved: bool,
}

impl SlotFile {
    /// Opens (creating) the file at `path` under an exclusive lock; `None` when another process
    /// holds it.
    pub(super) fn open(path: &std::path::Path, snapshot: PathBuf, dim: usize) -> io::Result<Option<SlotFile>> {
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(Some(SlotFile { file, dim, len: 0, snapshot, unsaved: true }))
    }

    /// How many whole slots the file holds.
    pub(super) fn slots_on_disk(&self) -> io::Result<usize> {
        Ok(self.file.metadata()?.len() as usize / (self.dim * 4))
    }

    pub(super) fn set_len(&mut self, slots: usize) {
        self.len = slots;
    }

    /// Cuts the file to the slots in use and makes it durable: before a snapshot names it.
    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.set_len((self.len * self.dim * 4) as u64)?;
        self.file.sync_data()
    }

    fn offset(&self, slot: usize) -> u64 {
        (slot * self.dim * 4) as u64
    }

    /// The first change after a snapshot removes it.
    fn changing(&mut self) -> io::Result<()> {
        if !self.unsaved {
            match std::fs::remove_file(&self.snapshot) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            self.unsaved = true;
        }
        Ok(())
    }

    fn write(&mut self, slot: usize, v: &[f32]) -> io::Result<()> {
        self.changing()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.file.write_all_at(&bytes, self.offset(slot))
    }

    fn read(&self, slot: usize, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.resize(self.dim * 4, 0);
        self.file.read_exact_at(buf, self.offset(slot))
    }
}

impl Exact {
    pub(super) fn in_memory(&self) -> bool {
        matches!(self, Exact::Memory(_))
    }

    /// Appends a vector as slot `slot` (the current length).
    pub(super) fn push(&mut self, slot: usize, v: &[f32]) -> io::Result<()> {
        match self {
            Exact::Memory(all) => all.extend_from_slice(v),
            Exact::File(f) => {
                f.write(slot, v)?;
                f.len = slot + 1;
            }
        }
        Ok(())
    }

    pub(super) fn set(&mut self, slot: usize, v: &[f32]) -> io::Result<()> {
        match self {
            Exact::Memory(all) => all[slot * v.len()..(slot + 1) * v.len()].copy_from_slice(v),
            Exact::File(f) => f.write(slot, v)?,
        }
        Ok(())
    }

    /// Moves slot `from` into slot `to` and drops the last slot: a removal's swap.
    pub(super) fn swap_remove(&mut self, dim: usize, from: usize, to: usize) -> io::Result<()> {
        match self {
            Exact::Memory(all) => {
                all.copy_within(from * dim..(from + 1) * dim, to * dim);
                all.truncate(from * dim);
            }
            Exact::File(f) => {
                f.changing()?;
                if from != to {
                    let mut buf = Vec::new();
                    f.read(from, &mut buf)?;
                    f.file.write_all_at(&buf, f.offset(to))?;
                }
                f.len = from;
            }
        }
        Ok(())
    }

    /// The dot product of `q` with slot `slot`'s vector; `scratch` (the bytes read and the
    /// vector they hold) is reused between calls, a query's re-rank reading hundreds.
    pub(super) fn dot(&self, q: &[f32], slot: usize, scratch: &mut (Vec<u8>, Vec<f32>)) -> io::Result<f32> {
        match self {
            Exact::Memory(all) => Ok(super::dot(q, &all[slot * q.len()..(slot + 1) * q.len()])),
            Exact::File(f) => {
                let (bytes, v) = scratch;
                f.read(slot, bytes)?;
                v.clear();
                v.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                Ok(super::dot(q, v))
            }
        }
    }
}
