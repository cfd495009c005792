//! The in-memory part of a file-backed [`FlatIndex`] (int8 codes, scales, signs, each slot's
//! document, the ids), saved beside the vectors' file so that an open reads it in one sequential
//! pass instead of decoding every SQLite row: at a million chunks, about 460 MB against the
//! 4.2 GB table.
//!
//! A snapshot is valid only for the chunk stamp it was saved at (the database's count of changes
//! to its chunks): an index written since, by any process, is rebuilt from the rows. It is
//! written to a temporary file and renamed, after the vectors' file is synced; the first change
//! to the vectors removes it (`exact.rs`).
//!
//! Layout, little-endian: magic, dim (u32), slots (u64), stamp (u64), documents (u64); the codes
//! (slots x dim i8), scales (f32), signs (slots x words u64), slot documents (u32); each document
//! id, then each chunk id, as a u32 length and UTF-8; the end magic.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use quarry_core::{ChunkId, DocumentId};

use super::exact::{Exact, SlotFile};
use super::{Documents, FlatIndex};

const MAGIC: &[u8; 8] = b"QRYVEC01";
const END: &[u8; 8] = b"QRYVEND1";

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("vector snapshot: {what}"))
}

/// What [`FlatIndex::open_files`] found.
#[derive(Debug)]
pub enum Opened {
    /// Loaded from a snapshot saved at the stamp asked for.
    Current(FlatIndex),
    /// No snapshot for this stamp: an empty file-backed index, to fill from the rows and save.
    Empty(FlatIndex),
    /// Another process holds the vectors' file: this one keeps its vectors in memory.
    Locked,
}

impl FlatIndex {
    /// A file-backed index over `vectors` (created if missing), loaded from `snapshot` when that
    /// was saved at `stamp`.
    pub fn open_files(dim: usize, vectors: &Path, snapshot: &Path, stamp: u64) -> io::Result<Opened> {
        let Some(mut file) = SlotFile::open(vectors, snapshot.to_owned(), dim)? else { return Ok(Opened::Locked) };
        let on_disk = file.slots_on_disk()?;
        match std::fs::File::open(snapshot) {
            Ok(f) => match read(BufReader::with_capacity(1 << 20, f), dim, stamp, on_disk) {
                Ok(Some(mut index)) => {
                    file.set_len(index.ids.len());
                    index.stamp = Some(stamp);
                    file.unsaved = false;
                    index.vectors = Exact::File(file);
                    return Ok(Opened::Current(index));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "the vector snapshot is unreadable; rebuilding it"),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut index = FlatIndex::new(dim);
        index.vectors = Exact::File(file);
        // The caller fills it from rows read after `stamp`: at worst newer, and then the stamp
        // the snapshot is saved at is behind the database's, so the next open reads the rows.
        index.stamp = Some(stamp);
        Ok(Opened::Empty(index))
    }

    /// Whether this index is file-backed and changed since its snapshot.
    pub fn unsaved(&self) -> bool {
        matches!(&self.vectors, Exact::File(f) if f.unsaved)
    }

    /// Records a write to the chunks that moved the database's stamp from `before` to `after`:
    /// `None` when this index failed to apply it. Writes must be applied in commit order; a gap
    /// (another process wrote chunks this index lacks) or a failed write means it is never saved.
    pub fn follow(&mut self, before: u64, after: Option<u64>) {
        self.stamp = after.filter(|_| self.stamp == Some(before));
    }

    /// Saves the snapshot, for the chunk stamp the index is current with, when the index is
    /// file-backed, changed since the last one, and holds every write (see [`FlatIndex::follow`]).
    pub fn save(&mut self) -> io::Result<()> {
        let (Exact::File(file), Some(stamp)) = (&self.vectors, self.stamp) else { return Ok(()) };
        if !file.unsaved {
            return Ok(());
        }
        file.sync()?;
        let path = file.snapshot.clone();
        let tmp = path.with_extension("tmp");
        {
            let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
            self.write(&mut w, stamp)?;
            let f = w.into_inner().map_err(io::IntoInnerError::into_error)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Exact::File(file) = &mut self.vectors {
            file.unsaved = false;
        }
        Ok(())
    }

    fn write(&self, w: &mut impl Write, stamp: u64) -> io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&(self.dim as u32).to_le_bytes())?;
        w.write_all(&(self.ids.len() as u64).to_le_bytes())?;
        w.write_all(&stamp.to_le_bytes())?;
        w.write_all(&(self.documents.ids.len() as u64).to_le_bytes())?;
        let codes: Vec<u8> = self.codes.iter().map(|&c| c as u8).collect();
        w.write_all(&codes)?;
        for s in &self.scales {
            w.write_all(&s.to_le_bytes())?;
        }
        for b in &self.bits {
            w.write_all(&b.to_le_bytes())?;
        }
        for d in &self.slot_doc {
            w.write_all(&d.to_le_bytes())?;
        }
        for s in self.documents.ids.iter().map(DocumentId::as_str).chain(self.ids.iter().map(ChunkId::as_str)) {
            w.write_all(&(s.len() as u32).to_le_bytes())?;
            w.write_all(s.as_bytes())?;
        }
        w.write_all(END)
    }
}

fn bytes(r: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

fn u32s(r: &mut impl Read, n: usize) -> io::Result<Vec<u32>> {
    Ok(bytes(r, n * 4)?.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn string(r: &mut impl Read) -> io::Result<String> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    String::from_utf8(bytes(r, u32::from_le_bytes(n) as usize)?).map_err(|_| corrupt("an id is not UTF-8"))
}

/// The index a snapshot holds; `None` when it was saved at another stamp or dimension, or names
/// more slots than the vectors' file has.
fn read(mut r: impl Read, dim: usize, stamp: u64, on_disk: usize) -> io::Result<Option<FlatIndex>> {
    if bytes(&mut r, 8)? != MAGIC {
        return Err(corrupt("not a vector snapshot"));
    }
    let head = bytes(&mut r, 28)?;
    let at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or_default());
    let (got_dim, slots, got_stamp, documents) =
        (u32::from_le_bytes(head[0..4].try_into().unwrap_or_default()) as usize, at(4) as usize, at(12), at(20));
    if got_dim != dim || got_stamp != stamp || slots > on_disk {
        return Ok(None);
    }
    let mut index = FlatIndex::new(dim);
    let words = index.words;
    index.codes = bytes(&mut r, slots * dim)?.into_iter().map(|b| b as i8).collect();
    index.scales = u32s(&mut r, slots)?.into_iter().map(f32::from_bits).collect();
    index.bits = bytes(&mut r, slots * words * 8)?
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    index.slot_doc = u32s(&mut r, slots)?;
    let mut docs = Documents::default();
    for _ in 0..documents {
        let id = string(&mut r)?;
        let id = DocumentId::parse(&id).ok_or_else(|| corrupt("a document id is malformed"))?;
        docs.intern(&id);
    }
    if docs.ids.len() as u64 != documents || index.slot_doc.iter().any(|&d| d as u64 >= documents) {
        return Err(corrupt("the documents do not match the slots"));
    }
    index.documents = docs;
    index.ids.reserve(slots);
    index.slots.reserve(slots);
    for slot in 0..slots {
        let id = ChunkId::from_stored(string(&mut r)?);
        index.slots.insert(id.clone(), slot);
        index.ids.push(id);
    }
    if bytes(&mut r, 8)? != END {
        return Err(corrupt("truncated"));
    }
    Ok(Some(index))
}
