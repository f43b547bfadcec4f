//! A file that outlives its server, written through a shared mapping: what a server killed
//! at any instruction leaves for the next one to read.
//!
//! Two records work this way: the runtime's in-flight log
//! ([`InflightLog`](crate::runtime::inflight::InflightLog)) and vduse-fs's node journal.
//! Both need the same four things, which this module does once:
//!
//! - **Made whole or not at all.** [`MappedFile::create`] writes the header into
//!   `NAME.new` and renames it over `NAME`, so a reader finds the old file or the new one,
//!   never a half-made one.
//! - **Reached through its directory.** A [`FilePlace`] holds the directory open: a server
//!   whose threads enter a mount namespace without that directory (vduse-fs's sandbox)
//!   can still replace or remove the file.
//! - **No system call per store.** The file is mapped shared; stores reach the page cache
//!   at once and survive a killed process (not a host crash: nothing here calls msync).
//! - **Removed, or emptied.** A server that switched to a user who may not remove files
//!   from root's directory truncates the file instead; an empty file means "nothing".

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryRegion, GuestRegionMmap};

/// A shared mapping of a file's first bytes, addressed from 0.
pub type FileRegion = GuestRegionMmap<()>;

/// Where a mapped file lives: its directory, held open, and its name there.
#[derive(Debug)]
pub struct FilePlace {
    dir: OwnedFd,
    name: OsString,
    shown: String,
}

impl FilePlace {
    /// Opens the directory of `path` (the current directory for a bare name).
    pub fn locate(path: &Path) -> io::Result<FilePlace> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let dir = rustix::fs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(FilePlace {
            dir,
            name: name.to_owned(),
            shown: path.display().to_string(),
        })
    }

    /// The path it was located by, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The same place, with its own descriptor of the directory.
    pub fn try_clone(&self) -> io::Result<FilePlace> {
        Ok(FilePlace {
            dir: rustix::io::dup(&self.dir)?,
            name: self.name.clone(),
            shown: self.shown.clone(),
        })
    }

    /// Every byte of the file there.
    pub fn read(&self) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::from(self.open(&self.name, OFlags::RDONLY)?).read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn open(&self, name: &OsStr, flags: OFlags) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.dir,
            name,
            flags | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?)
    }
}

/// What [`MappedFile::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The file is gone.
    Removed,
    /// This process may not remove it from its directory: it is empty now, which reads
    /// as "nothing recorded".
    Emptied,
}

/// A file at a [`FilePlace`], its first [`MappedFile::len`] bytes mapped shared.
#[derive(Debug)]
pub struct MappedFile {
    place: FilePlace,
    file: File,
    region: FileRegion,
}

impl MappedFile {
    /// Makes the file at `place` anew, `len` bytes starting with `head` (zeros after),
    /// replacing any file there at once (see the module documentation). Mode 0600.
    pub fn create(place: FilePlace, head: &[u8], len: u64) -> io::Result<MappedFile> {
        let mut staged = place.name.clone();
        staged.push(".new");
        let mut file =
            File::from(place.open(&staged, OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC)?);
        file.write_all(head)?;
        file.set_len(len.max(head.len() as u64))?;
        let region = map(&file, len.max(head.len() as u64))?;
        rustix::fs::renameat(&place.dir, &staged, &place.dir, &place.name)?;
        Ok(MappedFile {
            place,
            file,
            region,
        })
    }

    /// Maps the first `len` bytes of the existing file at `place`, which a server before
    /// this one made; fails if it is shorter.
    pub fn open(place: FilePlace, len: u64) -> io::Result<MappedFile> {
        let file = File::from(place.open(&place.name, OFlags::RDWR)?);
        let actual = file.metadata()?.len();
        if actual < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it is {actual} bytes, less than {len}"),
            ));
        }
        let region = map(&file, len)?;
        Ok(MappedFile {
            place,
            file,
            region,
        })
    }

    /// The mapping.
    pub fn region(&self) -> &FileRegion {
        &self.region
    }

    /// Bytes mapped.
    pub fn len(&self) -> u64 {
        self.region.len()
    }

    /// Never true: a mapping has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the file is.
    pub fn place(&self) -> &FilePlace {
        &self.place
    }

    /// Lengthens the file to `len` bytes and maps all of it; what was written stays.
    pub fn grow(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.region = map(&self.file, len)?;
        Ok(())
    }

    /// Removes the file, or empties it where this process may not remove it (see
    /// [`Removal`]). The mapping stays, and after emptying a store into it faults: the
    /// caller stops writing first.
    pub fn remove(&self) -> io::Result<Removal> {
        match rustix::fs::unlinkat(&self.place.dir, &self.place.name, AtFlags::empty()) {
            Ok(()) => Ok(Removal::Removed),
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => {
                self.file.set_len(0)?;
                Ok(Removal::Emptied)
            }
            Err(errno) => Err(errno.into()),
        }
    }
}

/// A shared mapping of the first `len` bytes of `file`.
fn map(file: &File, len: u64) -> io::Result<FileRegion> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    GuestRegionMmap::from_range(
        GuestAddress(0),
        len,
        Some(FileOffset::new(file.try_clone()?, 0)),
    )
    .map_err(|error| io::Error::other(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, MemoryRegionAddress};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vduse-mapped-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn made_whole_stored_through_the_mapping_grown_and_removed() {
        let dir = temp_dir("life");
        let path = dir.join("log");
        std::fs::write(&path, b"the old one").unwrap();
        let mut file =
            MappedFile::create(FilePlace::locate(&path).unwrap(), b"HEAD", 4096).unwrap();
        // Replaced by rename: no staged file is left, and the new head is there.
        assert!(!dir.join("log.new").exists());
        assert_eq!(&std::fs::read(&path).unwrap()[..4], b"HEAD");
        file.region()
            .write_slice(b"stored", MemoryRegionAddress(100))
            .unwrap();
        file.grow(8192).unwrap();
        assert_eq!(file.len(), 8192);
        let bytes = FilePlace::locate(&path).unwrap().read().unwrap();
        assert_eq!((bytes.len(), &bytes[100..106]), (8192, &b"stored"[..]));
        // A server after this one maps what is there.
        let again = MappedFile::open(FilePlace::locate(&path).unwrap(), 8192).unwrap();
        let mut read = [0u8; 6];
        again
            .region()
            .read_slice(&mut read, MemoryRegionAddress(100))
            .unwrap();
        assert_eq!(&read, b"stored");
        assert!(MappedFile::open(FilePlace::locate(&path).unwrap(), 8193).is_err());
        assert_eq!(file.remove().unwrap(), Removal::Removed);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
