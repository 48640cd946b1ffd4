//! The local-directory backend: the embedded default (`--data DIR`).
//!
//! Writes go to a temporary file in the target's directory, are fsynced,
//! then renamed into place (and the directory fsynced), so a crash leaves
//! the old object or the new one. Create-if-absent is a hard link, which
//! fails atomically when the name exists; replace-if-unchanged holds an
//! exclusive lock on a sibling lock file while it compares and renames, so
//! it is safe across processes sharing the directory.

use super::{ETag, Object, ObjectStore, Progress, PutMode, StoreError, check_key};
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl FsStore {
    /// A store rooted at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| StoreError::io(root.display().to_string(), e))?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn etag_of(bytes: &[u8]) -> ETag {
    ETag(hex::encode(&Sha256::digest(bytes)[..16]).into())
}

fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write `bytes` to a fresh temporary file next to `path`, fsynced.
fn write_temp(path: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    let (temp, mut file) = create_temp(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(temp)
}

/// A fresh temporary file next to `path` (hidden from listings).
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("key has no parent directory"))?;
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    Ok((temp, file))
}

/// Copy the file at `source` to `path` through a temporary file and a
/// rename: readers see the old object or the whole new one.
fn copy_blocking(source: &Path, path: &Path) -> io::Result<()> {
    let (temp, mut file) = create_temp(path)?;
    let copied = File::open(source)
        .and_then(|mut from| io::copy(&mut from, &mut file))
        .and_then(|_| file.sync_all())
        .and_then(|()| fs::rename(&temp, path));
    if copied.is_err() {
        let _ = fs::remove_file(&temp);
    }
    copied?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn put_blocking(path: &Path, key: &str, bytes: &[u8], mode: &PutMode) -> Result<ETag, StoreError> {
    let io_err = |source| StoreError::io(key, source);
    let conflict = |current: Option<Vec<u8>>| StoreError::Conflict {
        key: key.to_string(),
        current: current.map(|b| etag_of(&b)),
    };
    let temp = write_temp(path, bytes).map_err(io_err)?;
    let result = match mode {
        PutMode::Overwrite => fs::rename(&temp, path).map_err(io_err),
        PutMode::IfAbsent => match fs::hard_link(&temp, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(conflict(read(path).map_err(io_err)?))
            }
            Err(e) => Err(io_err(e)),
        },
        PutMode::IfMatch(expected) => {
            let lock_path = path.with_file_name(format!(
                ".{}.lock",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io_err)?;
            lock.lock().map_err(io_err)?;
            let current = read(path).map_err(io_err)?;
            match &current {
                Some(bytes) if &etag_of(bytes) == expected => {
                    fs::rename(&temp, path).map_err(io_err)
                }
                _ => Err(conflict(current)),
            }
            // The lock is released when `lock` drops.
        }
    };
    // After a rename the temp name is gone; otherwise remove it.
    let _ = fs::remove_file(&temp);
    result?;
    sync_dir(path).map_err(io_err)?;
    Ok(etag_of(bytes))
}

fn list_blocking(root: &Path, prefix: &str) -> io::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pending = vec![root.join(prefix)];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue; // temporary and lock files
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                keys.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    keys.sort();
    Ok(keys)
}

#[async_trait::async_trait]
impl ObjectStore for FsStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let path = self.path(key)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::io(key, source)),
        };
        Ok(Some(Object {
            etag: etag_of(&bytes),
            bytes: Bytes::from(bytes),
        }))
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        tokio::fs::try_exists(self.path(key)?)
            .await
            .map_err(|e| StoreError::io(key, e))
    }

    async fn write(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
        progress: Progress<'_>,
    ) -> Result<ETag, StoreError> {
        let path = self.path(key)?;
        let owned_key = key.to_string();
        let len = bytes.len() as u64;
        let etag =
            tokio::task::spawn_blocking(move || put_blocking(&path, &owned_key, &bytes, &mode))
                .await
                .map_err(|e| StoreError::io(key, io::Error::other(e)))??;
        if let Some(report) = progress {
            report(len);
        }
        Ok(etag)
    }

    async fn write_file(
        &self,
        key: &str,
        source: &Path,
        len: u64,
        progress: Progress<'_>,
    ) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let source = source.to_path_buf();
        tokio::task::spawn_blocking(move || copy_blocking(&source, &path))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|e| StoreError::io(key, e))?;
        if let Some(report) = progress {
            report(len);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::io(key, source)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        check_key(prefix.trim_end_matches('/'))?;
        let root = self.root.clone();
        let prefix_owned = prefix.to_string();
        tokio::task::spawn_blocking(move || list_blocking(&root, &prefix_owned))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|source| StoreError::io(prefix, source))
    }

    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }
}
