//! A local folder as the bucket: keys are paths relative to the root with `/` separators, the
//! version is the modification time, and nothing outside the root can be named.

use std::path::{Component, Path, PathBuf};

use quarry_core::ports::{Blob, BlobInfo, BlobSource, BlobWriter, UploadGrant, UploadGranter};
use quarry_core::{DocumentId, DocumentKey, PortError};

#[derive(Debug, Clone)]
pub struct FolderSource {
    root: PathBuf,
}

fn io_error<'a>(operation: &'static str, what: &'a str) -> impl FnOnce(std::io::Error) -> PortError + 'a {
    move |e| match e.kind() {
        std::io::ErrorKind::NotFound => PortError::NotFound { what: what.to_owned() },
        std::io::ErrorKind::PermissionDenied => {
            PortError::InvalidInput { operation, reason: format!("{what}: permission denied") }
        }
        // A name the file system cannot hold (too long, or a byte it refuses): the caller's
        // key, not a passing trouble, so never worth a retry.
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidFilename => {
            PortError::InvalidInput { operation, reason: format!("{what}: not a file name this folder can hold") }
        }
        _ => PortError::Transient { operation, source: Box::new(e) },
    }
}

impl FolderSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FolderSource { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file behind a key; keys that would leave the root (`..`, absolute paths) are refused.
    pub fn path_of(&self, key: &DocumentKey) -> Result<PathBuf, PortError> {
        let rel = Path::new(key.as_str());
        if key.as_str().is_empty()
            || key.as_str().contains('\0')
            || rel.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(PortError::InvalidInput {
                operation: "folder.path",
                reason: format!("key {key:?} is not inside the folder"),
            });
        }
        Ok(self.root.join(rel))
    }

    /// The key of a file under the root.
    pub fn key_of(&self, path: &Path) -> Option<DocumentKey> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        Some(DocumentKey::new(parts?.join("/")))
    }

    async fn info(&self, key: &DocumentKey, path: &Path) -> Result<BlobInfo, PortError> {
        let what = format!("file {key}");
        let meta = tokio::fs::metadata(path).await.map_err(io_error("folder.head", &what))?;
        if !meta.is_file() {
            return Err(PortError::NotFound { what });
        }
        let version = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos().to_string());
        Ok(BlobInfo { key: key.clone(), size: meta.len(), version, content_type: None, metadata: Default::default() })
    }
}

impl BlobSource for FolderSource {
    async fn head(&self, key: &DocumentKey) -> Result<BlobInfo, PortError> {
        let path = self.path_of(key)?;
        self.info(key, &path).await
    }

    async fn get(&self, key: &DocumentKey) -> Result<Blob, PortError> {
        let path = self.path_of(key)?;
        let info = self.info(key, &path).await?;
        let what = format!("file {key}");
        let bytes = tokio::fs::read(&path).await.map_err(io_error("folder.get", &what))?;
        Ok(Blob { info, bytes })
    }

    async fn peek(&self, key: &DocumentKey, n: usize) -> Result<Vec<u8>, PortError> {
        use tokio::io::AsyncReadExt;
        let path = self.path_of(key)?;
        let what = format!("file {key}");
        let file = tokio::fs::File::open(&path).await.map_err(io_error("folder.peek", &what))?;
        let mut head = Vec::with_capacity(n);
        file.take(n as u64).read_to_end(&mut head).await.map_err(io_error("folder.peek", &what))?;
        Ok(head)
    }

    /// Every regular file under `prefix`, in key order; hidden files and folders are skipped.
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, PortError> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let what = format!("folder {}", dir.display());
            let mut entries = tokio::fs::read_dir(&dir).await.map_err(io_error("folder.list", &what))?;
            while let Some(entry) = entries.next_entry().await.map_err(io_error("folder.list", &what))? {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = entry.path();
                let kind = entry.file_type().await.map_err(io_error("folder.list", &what))?;
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file()
                    && let Some(key) = self.key_of(&path).filter(|k| k.as_str().starts_with(prefix))
                {
                    out.push(self.info(&key, &path).await?);
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

impl BlobWriter for FolderSource {
    /// Written to a hidden file beside its place (listings skip it), flushed, then hard-linked
    /// into place: the link either creates the name or fails because it exists, so a reader or
    /// the watcher never sees half a file and an existing file is never replaced.
    // A taken name is the caller's to fix, not the server's: logged at INFO, not ERROR.
    #[tracing::instrument(skip_all, err(level = tracing::Level::INFO))]
    async fn put_new(&self, key: &DocumentKey, bytes: &[u8]) -> Result<(), PortError> {
        use tokio::io::AsyncWriteExt;
        let path = self.path_of(key)?;
        let what = format!("file {key}");
        let (Some(dir), Some(_)) = (path.parent(), path.file_name()) else {
            return Err(PortError::InvalidInput {
                operation: "folder.put",
                reason: format!("key {key:?} names no file"),
            });
        };
        tokio::fs::create_dir_all(dir).await.map_err(io_error("folder.put", &what))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        // Short and fixed-length: a name near the file system's 255-byte limit must still fit.
        let temp = dir.join(format!(".quarry-upload-{}-{nanos}", std::process::id()));
        let written = async {
            let mut file = tokio::fs::File::create_new(&temp).await?;
            file.write_all(bytes).await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::hard_link(&temp, &path).await
        }
        .await;
        // The name is linked or was never made: the temporary name goes either way.
        let _ = tokio::fs::remove_file(&temp).await;
        written.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => PortError::Conflict { operation: "folder.put" },
            // No retry fixes these: a full disk, a file system without hard links, a bad name.
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::Unsupported | std::io::ErrorKind::InvalidInput => {
                PortError::Permanent { operation: "folder.put", source: Box::new(e) }
            }
            _ => io_error("folder.put", &what)(e),
        })
    }
}

/// Every byte but the unreserved ones (RFC 3986) is escaped: a key becomes one path segment.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

impl UploadGranter for FolderSource {
    /// The API's own `PUT /v1/files/{key}` ([`BlobWriter::put_new`] behind it), if no file has the
    /// name yet.
    async fn grant(&self, key: &DocumentKey, _: u64, content_type: Option<&str>) -> Result<UploadGrant, PortError> {
        match self.head(key).await {
            Ok(_) => return Err(PortError::Conflict { operation: "folder.grant" }),
            Err(PortError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let content_type = content_type.filter(|c| !c.is_empty()).unwrap_or("application/octet-stream");
        Ok(UploadGrant {
            key: key.clone(),
            document_id: DocumentId::for_key(key),
            method: "PUT".to_owned(),
            url: format!("/v1/files/{}", percent_encoding::utf8_percent_encode(key.as_str(), SEGMENT)),
            headers: [("content-type".to_owned(), content_type.to_owned())].into(),
            expires_in_s: None,
        })
    }
}
