//! A store wrapper for fault tests: every call can be made to fail, and a read
//! can be held after it took its answer (a snapshot answered late).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use resume_server::store::{
    PositionStore, PositionWrite, PutOutcome, SharedStore, StoreError, Stored,
};
use tokio::sync::Notify;

/// A store that can fail every call, or hold a read's answer until released (a
/// read whose snapshot was taken before a write lands but answered after it).
pub struct FaultyStore {
    /// The store that does the work.
    inner: SharedStore,
    /// Every call fails while set.
    pub failing: AtomicBool,
    /// The next `get` takes its answer, then waits for `release`.
    pub hold_reads: AtomicBool,
    /// Notified when a held read has taken its answer.
    pub read_taken: Notify,
    /// Lets a held read answer.
    pub release: Notify,
}

impl FaultyStore {
    /// Wraps `inner`, passing every call through.
    pub fn wrap(inner: SharedStore) -> Arc<Self> {
        Arc::new(Self {
            inner,
            failing: AtomicBool::new(false),
            hold_reads: AtomicBool::new(false),
            read_taken: Notify::new(),
            release: Notify::new(),
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl PositionStore for FaultyStore {
    async fn put(&self, write: PositionWrite) -> Result<PutOutcome, StoreError> {
        self.check()?;
        self.inner.put(write).await
    }
    async fn delete(&self, user: &str, movie: &str, at: i64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete(user, movie, at).await
    }
    async fn get(&self, user: &str, movie: &str) -> Result<Option<Stored>, StoreError> {
        self.check()?;
        let snapshot = self.inner.get(user, movie).await;
        if self.hold_reads.swap(false, Ordering::SeqCst) {
            let released = self.release.notified();
            self.read_taken.notify_one();
            released.await;
        }
        snapshot
    }
    async fn list(&self, user: &str) -> Result<Vec<Stored>, StoreError> {
        self.check()?;
        self.inner.list(user).await
    }
    async fn check_health(&self) -> Result<(), StoreError> {
        self.check()?;
        self.inner.check_health().await
    }
}
