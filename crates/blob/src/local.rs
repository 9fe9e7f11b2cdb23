//! The archive in a local folder (embedded mode).
//!
//! A page is the file `ROOT/raw/{practice}/{resource}/{date}/{run}/{seq:010}.jsonl.gz`;
//! files are created with mode 0600 and folders with 0700 (records are PHI).
//! A write goes to a temporary file in the page's folder (`.{name}.{pid}-{n}.tmp`),
//! is fsynced, renamed over the page and the folder fsynced: a reader sees
//! the old page or the new one, never half of one, and a crash leaves at
//! most a temporary file, which listing ignores.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::BlobError;
use crate::key::{PageKey, RAW, check_name};
use crate::page::{MAX_PAGE_BYTES, decode_page, gzip, json_lines};
use crate::run_blocking;

/// Distinguishes temporary files of concurrent writes in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The archive in a local folder. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LocalArchive {
    root: PathBuf,
}

impl LocalArchive {
    /// Uses `root` as the archive folder, creating it (mode 0700) if it does
    /// not exist. An existing folder's mode is left as it is.
    pub fn open(root: PathBuf) -> Result<LocalArchive, BlobError> {
        if !root.exists() {
            dir_builder()
                .create(&root)
                .map_err(|source| io_error("create the archive folder", &root, source))?;
        }
        let meta = fs::metadata(&root)
            .map_err(|source| io_error("read the archive folder", &root, source))?;
        if !meta.is_dir() {
            return Err(BlobError::Config {
                reason: format!(
                    "the archive folder {} is not a folder: point the embedded archive at a \
                     folder (or a path that does not exist yet)",
                    root.display()
                ),
            });
        }
        Ok(LocalArchive { root })
    }

    /// The archive folder.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a page (whose key has been validated).
    pub(crate) fn path_of(&self, key: &PageKey) -> PathBuf {
        self.folder_of(key).join(key.file_name())
    }

    fn folder_of(&self, key: &PageKey) -> PathBuf {
        self.root
            .join(RAW)
            .join(&key.practice_id)
            .join(&key.resource)
            .join(key.date_text())
            .join(&key.run_id)
    }

    pub(crate) async fn put_page(&self, key: &PageKey, records: &[&str]) -> Result<u64, BlobError> {
        key.validate()?;
        let text = json_lines(records.iter().copied())?;
        let folder = self.folder_of(key);
        let name = key.file_name();
        let root = self.root.clone();
        run_blocking("write a page", move || {
            let bytes = gzip(&text)?;
            write_atomically(&root, &folder, &name, &bytes)?;
            Ok(bytes.len() as u64)
        })
        .await
    }

    pub(crate) async fn get_page(&self, key: &PageKey) -> Result<Vec<String>, BlobError> {
        key.validate()?;
        let path = self.path_of(key);
        run_blocking("read a page", move || {
            let location = path.display().to_string();
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    return Err(BlobError::NotFound { location });
                }
                Err(source) => return Err(io_error("open the page", &path, source)),
            };
            let mut bytes = Vec::new();
            file.take(MAX_PAGE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| io_error("read the page", &path, source))?;
            if bytes.len() as u64 > MAX_PAGE_BYTES {
                return Err(BlobError::BadArchive {
                    location,
                    reason: format!("the file is larger than {MAX_PAGE_BYTES} bytes"),
                });
            }
            decode_page(&bytes).map_err(|err| err.at(&location))
        })
        .await
    }

    pub(crate) async fn list_pages(&self, practice_id: &str) -> Result<Vec<PageKey>, BlobError> {
        check_name("practice_id", practice_id)?;
        let base = self.root.join(RAW).join(practice_id);
        let practice_id = practice_id.to_owned();
        run_blocking("list pages", move || {
            let mut pages = Vec::new();
            if !base.is_dir() {
                return Ok(pages);
            }
            let prefix = format!("{RAW}/{practice_id}");
            for (resource, resource_dir) in sub_folders(&base)? {
                for (date, date_dir) in sub_folders(&resource_dir)? {
                    for (run, run_dir) in sub_folders(&date_dir)? {
                        for (file, path) in entries(&run_dir, false)? {
                            if is_temporary(&file) {
                                continue;
                            }
                            let relative = format!("{prefix}/{resource}/{date}/{run}/{file}");
                            match PageKey::parse(&relative) {
                                Ok(key) => pages.push(key),
                                Err(error) => tracing::warn!(
                                    message = "Skipping a file that is not an archived page.",
                                    %error,
                                    path = %path.display(),
                                ),
                            }
                        }
                    }
                }
            }
            pages.sort_unstable();
            Ok(pages)
        })
        .await
    }
}

fn io_error(operation: &'static str, path: &Path, source: io::Error) -> BlobError {
    BlobError::Io {
        operation,
        path: path.to_owned(),
        source,
    }
}

fn dir_builder() -> DirBuilder {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Writes `bytes` as `folder/name`: temporary file, fsync, rename, fsync
/// of the folder (and of the folders created for it).
fn write_atomically(root: &Path, folder: &Path, name: &str, bytes: &[u8]) -> Result<(), BlobError> {
    let created = !folder.is_dir();
    if created {
        dir_builder()
            .create(folder)
            .map_err(|source| io_error("create the folder", folder, source))?;
    }
    let target = folder.join(name);
    let temp = folder.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = write_new_file(&temp, bytes).and_then(|()| {
        fs::rename(&temp, &target).map_err(|source| io_error("rename into place", &target, source))
    });
    if let Err(err) = written {
        // Best effort: a leftover temporary file is ignored by listing.
        let _ = fs::remove_file(&temp);
        return Err(err);
    }
    sync_folder(folder)?;
    if created {
        // The new folders' entries must reach the disk too.
        let mut dir = folder.parent();
        while let Some(parent) = dir {
            sync_folder(parent)?;
            if parent == root || !parent.starts_with(root) {
                break;
            }
            dir = parent.parent();
        }
    }
    Ok(())
}

fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|source| io_error("create the temporary file", path, source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error("write the temporary file", path, source))
}

fn sync_folder(folder: &Path) -> Result<(), BlobError> {
    #[cfg(unix)]
    {
        File::open(folder)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| io_error("flush the folder", folder, source))?;
    }
    #[cfg(not(unix))]
    let _ = folder;
    Ok(())
}

/// The sub-folders of `dir` with UTF-8 names, not following symbolic links;
/// anything else is skipped with a warning.
fn sub_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, BlobError> {
    entries(dir, true)
}

/// The entries of `dir` that are folders (`folders`) or regular files, with
/// UTF-8 names; symbolic links and anything else are skipped with a warning.
fn entries(dir: &Path, folders: bool) -> Result<Vec<(String, PathBuf)>, BlobError> {
    let mut found = Vec::new();
    let listing = fs::read_dir(dir).map_err(|source| io_error("list the folder", dir, source))?;
    for entry in listing {
        let entry = entry.map_err(|source| io_error("list the folder", dir, source))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|source| io_error("read the type of", &path, source))?;
        let wanted = if folders {
            kind.is_dir()
        } else {
            kind.is_file()
        };
        match entry.file_name().into_string() {
            Ok(name) if wanted => found.push((name, path)),
            Ok(name) if is_temporary(&name) => {}
            _ => tracing::warn!(
                message = "Skipping an entry of the archive folder that is not part of a page's path.",
                path = %path.display(),
            ),
        }
    }
    Ok(found)
}
