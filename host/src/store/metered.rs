//! A store that times and counts every request it passes on, for the
//! `sluice_store_*` metrics. [`open`](super::open) wraps every store in one.

use super::{ETag, Object, ObjectStore, Progress, PutMode, Revalidated, StoreError};
use crate::observe::metrics::store_request;
use bytes::Bytes;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// `inner`, metered.
pub struct Metered(pub Arc<dyn ObjectStore>);

/// Run `request`, recording it as `operation`.
async fn timed<T>(
    operation: &'static str,
    key: &str,
    request: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let span = tracing::info_span!(target: crate::observe::trace::SPANS, "store", operation, key);
    let result = request.instrument(span).await;
    store_request(operation, started.elapsed(), result.is_ok());
    result
}

#[async_trait::async_trait]
impl ObjectStore for Metered {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        timed("get", key, self.0.get(key)).await
    }

    async fn get_if_changed(&self, key: &str, etag: &ETag) -> Result<Revalidated, StoreError> {
        timed("get", key, self.0.get_if_changed(key, etag)).await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        timed("exists", key, self.0.exists(key)).await
    }

    async fn write(
        &self,
        key: &str,
        bytes: Bytes,
        mode: PutMode,
        progress: Progress<'_>,
    ) -> Result<ETag, StoreError> {
        timed("write", key, self.0.write(key, bytes, mode, progress)).await
    }

    async fn write_file(
        &self,
        key: &str,
        path: &Path,
        len: u64,
        progress: Progress<'_>,
    ) -> Result<(), StoreError> {
        timed("write", key, self.0.write_file(key, path, len, progress)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        timed("delete", key, self.0.delete(key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        timed("list", prefix, self.0.list(prefix)).await
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}
