//! Content-addressed file storage for media, behind a trait: the filesystem now, an
//! S3-compatible store later. A blob is named by the SHA-256 of its bytes, so the same photo
//! sent to a thousand chats is kept once, and a name always means the same bytes. Bytes are
//! written to a staging file and renamed into place only once complete and synced: a crash
//! never leaves a half file under a blob's name. Which rows still use a blob is the database's
//! business; this layer only stores, lists and deletes.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt};

/// A boxed future, so the trait stays object-safe (`Arc<dyn BlobStore>`).
pub type BlobFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BlobError>> + Send + 'a>>;

/// A readable stream of a blob's bytes.
pub type BlobRead = Pin<Box<dyn AsyncRead + Send>>;

/// The name of a blob: the SHA-256 of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobId(pub [u8; 32]);

impl BlobId {
    /// Lower-case hex, as in file names, ETags and the API.
    pub fn hex(&self) -> String {
        crate::util::hex::encode(&self.0)
    }

    /// From 64 hex digits.
    pub fn parse(s: &str) -> Option<BlobId> {
        if s.len() != 64 {
            return None;
        }
        let v = crate::util::hex::decode(s)?;
        Some(BlobId(v.try_into().ok()?))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.hex())
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The storage itself failed (disk full, permissions).
    #[error("blob storage: {0}")]
    Io(#[from] io::Error),
    /// More bytes were written than the writer allows.
    #[error("blob larger than {0} bytes")]
    TooLarge(u64),
    /// A requested range lies outside the blob.
    #[error("range outside the blob")]
    BadRange,
}

/// An open blob: its length and a stream over the requested bytes.
pub struct BlobReader {
    /// The whole blob's length.
    pub len: u64,
    /// The bytes asked for (all of them, or the range).
    pub body: BlobRead,
}

/// A blob being written: bytes go to a staging place until [`StagedBlob::commit`].
pub trait StagedBlob: Send {
    /// Appends bytes.
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BlobFuture<'a, ()>;
    /// Bytes written so far.
    fn len(&self) -> u64;
    /// Whether nothing was written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The SHA-256 of what was written so far (what the blob will be named).
    fn id(&self) -> BlobId;
    /// Makes the blob durable under its name. If a blob of that name exists, the staged copy is
    /// dropped (same name, same bytes).
    fn commit(self: Box<Self>) -> BlobFuture<'static, (BlobId, u64)>;
}

/// Where blobs live. Implementations must make `commit` atomic: a name is either absent or
/// the complete bytes.
pub trait BlobStore: Send + Sync + 'static {
    /// Starts a blob of at most `max_len` bytes.
    fn stage(&self, max_len: u64) -> BlobFuture<'_, Box<dyn StagedBlob>>;
    /// Opens a blob, whole or a byte range `start..end` (end exclusive); None if absent.
    fn open(&self, id: BlobId, range: Option<(u64, u64)>) -> BlobFuture<'_, Option<BlobReader>>;
    /// A blob's length; None if absent.
    fn len(&self, id: BlobId) -> BlobFuture<'_, Option<u64>>;
    /// Deletes a blob (absent is fine).
    fn delete(&self, id: BlobId) -> BlobFuture<'_, ()>;
    /// Deletes a blob unless it was written after `since`, a commit of bytes it already holds
    /// counting as a write: the sweep's delete, which must never take a blob a send is just
    /// now committing (its row is written after the commit). True if it was deleted.
    fn delete_if_idle(&self, id: BlobId, since: SystemTime) -> BlobFuture<'_, bool>;
    /// Up to `limit` blob names after `after`, in name order, each with when it was written:
    /// the sweep for blobs no row uses walks them page by page.
    fn list(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> BlobFuture<'_, Vec<(BlobId, SystemTime)>>;
    /// Drops staging leftovers of an earlier process (a crash mid-write): staging files this
    /// store did not make.
    fn clear_staging(&self) -> BlobFuture<'_, usize>;
}

/// Blobs as files under a directory: `<root>/<2 hex>/<64 hex>`, staged in `<root>/tmp/`.
#[derive(Debug, Clone)]
pub struct FsBlobs {
    root: PathBuf,
    /// Names this store's staging files: any other name in staging is a dead process's
    /// (file times are too coarse to tell).
    run: String,
}

impl FsBlobs {
    /// A store under `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<FsBlobs, BlobError> {
        let root = root.into();
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(FsBlobs {
            root,
            run: crate::util::hex::encode(&rand::random::<[u8; 8]>()),
        })
    }

    fn path(&self, id: BlobId) -> PathBuf {
        let hex = id.hex();
        self.root.join(&hex[..2]).join(hex)
    }
}

struct FsStaged {
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    root: PathBuf,
    hash: Sha256,
    len: u64,
    max: u64,
}

impl Drop for FsStaged {
    fn drop(&mut self) {
        // Abandoned (an error or a cancelled request): the staging file goes with it.
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl StagedBlob for FsStaged {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BlobFuture<'a, ()> {
        Box::pin(async move {
            let len = self.len + chunk.len() as u64;
            if len > self.max {
                return Err(BlobError::TooLarge(self.max));
            }
            let file = self.file.as_mut().ok_or_else(closed)?;
            file.write_all(chunk).await?;
            self.hash.update(chunk);
            self.len = len;
            Ok(())
        })
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn id(&self) -> BlobId {
        BlobId(self.hash.clone().finalize().into())
    }

    fn commit(mut self: Box<Self>) -> BlobFuture<'static, (BlobId, u64)> {
        Box::pin(async move {
            let id = self.id();
            let mut file = self.file.take().ok_or_else(closed)?;
            let tmp = self.tmp.clone();
            let done = async {
                file.flush().await?;
                file.sync_all().await?;
                drop(file);
                let dir = self.root.join(&id.hex()[..2]);
                tokio::fs::create_dir_all(&dir).await?;
                let dest = dir.join(id.hex());
                // Always ours over any kept copy (same name, same bytes): the blob is then
                // written now whatever a sweep does meanwhile, so its grace covers the row
                // about to name it (touching the kept copy instead could land on one a sweep
                // had just moved aside to delete).
                tokio::fs::rename(&tmp, &dest).await?;
                // The rename itself is durable only once its directory is synced.
                sync_dir(&dir).await?;
                Ok::<_, BlobError>(())
            };
            match done.await {
                Ok(()) => Ok((id, self.len)),
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    Err(e)
                }
            }
        })
    }
}

fn closed() -> BlobError {
    BlobError::Io(io::Error::other("staged blob already committed"))
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        tokio::fs::File::open(dir).await?.sync_all().await?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl BlobStore for FsBlobs {
    fn stage(&self, max_len: u64) -> BlobFuture<'_, Box<dyn StagedBlob>> {
        Box::pin(async move {
            let name: [u8; 16] = rand::random();
            let tmp = self.root.join("tmp").join(format!(
                "{}-{}",
                self.run,
                crate::util::hex::encode(&name)
            ));
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .await?;
            Ok(Box::new(FsStaged {
                file: Some(file),
                tmp,
                root: self.root.clone(),
                hash: Sha256::new(),
                len: 0,
                max: max_len,
            }) as Box<dyn StagedBlob>)
        })
    }

    fn open(&self, id: BlobId, range: Option<(u64, u64)>) -> BlobFuture<'_, Option<BlobReader>> {
        Box::pin(async move {
            let mut file = match tokio::fs::File::open(self.path(id)).await {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let len = file.metadata().await?.len();
            let body: BlobRead = match range {
                None => Box::pin(file),
                Some((start, end)) => {
                    if start > end || end > len {
                        return Err(BlobError::BadRange);
                    }
                    file.seek(io::SeekFrom::Start(start)).await?;
                    Box::pin(tokio::io::AsyncReadExt::take(file, end - start))
                }
            };
            Ok(Some(BlobReader { len, body }))
        })
    }

    fn len(&self, id: BlobId) -> BlobFuture<'_, Option<u64>> {
        Box::pin(async move {
            match tokio::fs::metadata(self.path(id)).await {
                Ok(m) => Ok(Some(m.len())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete(&self, id: BlobId) -> BlobFuture<'_, ()> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(id)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete_if_idle(&self, id: BlobId, since: SystemTime) -> BlobFuture<'_, bool> {
        Box::pin(async move {
            // Moved aside first, then judged: a commit of the same bytes before the move shows
            // in the moved file's time (and it goes back); one after the move puts its own
            // copy in place, which deleting the old one leaves alone.
            // Named by the blob, so a crash between the moves is undone at the next start.
            let path = self.path(id);
            let aside = self
                .root
                .join("tmp")
                .join(format!("{}-sweep-{}", self.run, id.hex()));
            match tokio::fs::rename(&path, &aside).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e.into()),
            }
            let written = tokio::fs::metadata(&aside).await?.modified()?;
            if written > since {
                // Same name, same bytes: replacing a copy committed meanwhile loses nothing.
                tokio::fs::rename(&aside, &path).await?;
                return Ok(false);
            }
            tokio::fs::remove_file(&aside).await?;
            Ok(true)
        })
    }

    fn list(
        &self,
        after: Option<BlobId>,
        limit: usize,
    ) -> BlobFuture<'_, Vec<(BlobId, SystemTime)>> {
        Box::pin(async move {
            let root = self.root.clone();
            // Directory walks are blocking calls; a page is read off the runtime's threads.
            tokio::task::spawn_blocking(move || list_page(&root, after, limit))
                .await
                .map_err(|e| BlobError::Io(io::Error::other(e)))?
        })
    }

    fn clear_staging(&self) -> BlobFuture<'_, usize> {
        Box::pin(async move {
            let mut n = 0;
            let mut dir = tokio::fs::read_dir(self.root.join("tmp")).await?;
            let ours = format!("{}-", self.run);
            while let Some(e) = dir.next_entry().await? {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&ours) {
                    continue;
                }
                // A blob a dead sweep had moved aside to judge goes back: a row may name it,
                // and the next sweep judges it again.
                let swept = name
                    .split_once("-sweep-")
                    .and_then(|(_, hex)| BlobId::parse(hex));
                if let Some(id) = swept {
                    let dest = self.path(id);
                    if !tokio::fs::try_exists(&dest).await? {
                        tokio::fs::create_dir_all(dest.parent().unwrap_or(&self.root)).await?;
                        tokio::fs::rename(e.path(), &dest).await?;
                        continue;
                    }
                }
                tokio::fs::remove_file(e.path()).await?;
                n += 1;
            }
            Ok(n)
        })
    }
}

/// One page of names in order: fan-out directories in order, names sorted within each.
fn list_page(
    root: &Path,
    after: Option<BlobId>,
    limit: usize,
) -> Result<Vec<(BlobId, SystemTime)>, BlobError> {
    let mut dirs: Vec<String> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    dirs.sort();
    let after_hex = after.map(|a| a.hex());
    let mut out = Vec::new();
    for d in dirs {
        if let Some(a) = &after_hex
            && d.as_str() < &a[..2]
        {
            continue;
        }
        let mut names: Vec<(BlobId, SystemTime)> = std::fs::read_dir(root.join(&d))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let id = BlobId::parse(e.file_name().to_str()?)?;
                let t = e.metadata().ok()?.modified().ok()?;
                Some((id, t))
            })
            .filter(|(id, _)| after.is_none_or(|a| *id > a))
            .collect();
        names.sort_by_key(|(id, _)| *id);
        for n in names {
            out.push(n);
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn put(store: &FsBlobs, bytes: &[u8]) -> BlobId {
        let mut s = store.stage(1 << 20).await.unwrap();
        for c in bytes.chunks(3) {
            s.write(c).await.unwrap();
        }
        s.commit().await.unwrap().0
    }

    async fn read_all(r: BlobReader) -> Vec<u8> {
        let mut v = Vec::new();
        let mut body = r.body;
        body.read_to_end(&mut v).await.unwrap();
        v
    }

    #[tokio::test]
    async fn named_by_sha256_and_read_back_whole_or_ranged() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).unwrap();
        let id = put(&store, b"hello blob").await;
        assert_eq!(id.0, <[u8; 32]>::from(Sha256::digest(b"hello blob")));
        assert_eq!(store.len(id).await.unwrap(), Some(10));
        let whole = store.open(id, None).await.unwrap().unwrap();
        assert_eq!(whole.len, 10);
        assert_eq!(read_all(whole).await, b"hello blob");
        let part = store.open(id, Some((6, 10))).await.unwrap().unwrap();
        assert_eq!(read_all(part).await, b"blob");
        assert!(matches!(
            store.open(id, Some((6, 11))).await,
            Err(BlobError::BadRange)
        ));
        // Nothing is left in staging once committed.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn the_same_bytes_twice_are_one_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).unwrap();
        let a = put(&store, b"same").await;
        let b = put(&store, b"same").await;
        assert_eq!(a, b);
        assert_eq!(store.list(None, 10).await.unwrap().len(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn an_abandoned_or_oversized_write_leaves_no_blob_and_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).unwrap();
        let mut s = store.stage(4).await.unwrap();
        s.write(b"abc").await.unwrap();
        assert!(matches!(s.write(b"de").await, Err(BlobError::TooLarge(4))));
        drop(s);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        assert!(store.list(None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn staging_leftovers_of_a_crash_are_cleared_and_never_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).unwrap();
        let mut s = store.stage(100).await.unwrap();
        s.write(b"half a file").await.unwrap();
        // A crash: the process ends without Drop running.
        std::mem::forget(s);
        assert!(store.list(None, 10).await.unwrap().is_empty());
        // This process's own staging is in use, not a leftover.
        assert_eq!(store.clear_staging().await.unwrap(), 0);
        let restarted = FsBlobs::open(dir.path()).unwrap();
        assert_eq!(restarted.clear_staging().await.unwrap(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn the_sweep_spares_a_blob_committed_again_since_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).unwrap();
        let kept = put(&store, b"sent again").await;
        let idle = put(&store, b"nobody's").await;
        let path = store.path(kept);
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        for id in [kept, idle] {
            std::fs::File::options()
                .append(true)
                .open(store.path(id))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let looked = SystemTime::now() - std::time::Duration::from_secs(60);
        // A send commits the same bytes again after the sweep listed the blob as old.
        assert_eq!(put(&store, b"sent again").await, kept);
        assert!(std::fs::metadata(&path).unwrap().modified().unwrap() > looked);
        assert!(!store.delete_if_idle(kept, looked).await.unwrap());
        assert_eq!(store.len(kept).await.unwrap(), Some(10));
        assert!(store.delete_if_idle(idle, looked).await.unwrap());
        assert_eq!(store.len(idle).await.unwrap(), None);
        assert!(!store.delete_if_idle(idle, looked).await.unwrap());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn a_blob_a_dead_sweep_held_aside_is_put_back_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).unwrap();
        let id = put(&store, b"judged when it died").await;
        let aside = dir
            .path()
            .join("tmp")
            .join(format!("dead-sweep-{}", id.hex()));
        std::fs::rename(store.path(id), &aside).unwrap();
        assert_eq!(store.len(id).await.unwrap(), None);
        let restarted = FsBlobs::open(dir.path()).unwrap();
        assert_eq!(restarted.clear_staging().await.unwrap(), 0);
        let back = restarted.open(id, None).await.unwrap().unwrap();
        assert_eq!(read_all(back).await, b"judged when it died");
        assert!(!aside.exists());
    }

    #[tokio::test]
    async fn listing_pages_in_name_order_and_delete_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobs::open(dir.path()).unwrap();
        let mut ids = Vec::new();
        for i in 0..7u8 {
            ids.push(put(&store, &[i; 5]).await);
        }
        ids.sort();
        let first = store.list(None, 4).await.unwrap();
        let rest = store.list(Some(first[3].0), 4).await.unwrap();
        let seen: Vec<BlobId> = first.iter().chain(&rest).map(|(i, _)| *i).collect();
        assert_eq!(seen, ids);
        store.delete(ids[0]).await.unwrap();
        store.delete(ids[0]).await.unwrap();
        assert_eq!(store.len(ids[0]).await.unwrap(), None);
        assert!(store.open(ids[0], None).await.unwrap().is_none());
    }
}
