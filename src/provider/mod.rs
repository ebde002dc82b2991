//! Data providers: where the owning department's records come from.
//!
//! [`DataProvider`] is the seam: the embedded sled store is the default (for
//! demos and departments without an API of their own); an owner's own HTTP
//! API plugs in behind the same trait.

pub mod embedded;
pub mod import;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::domain::{DatasetId, ResidentId};
use crate::pipeline::minimize::Record;

pub use embedded::EmbeddedStore;

/// A provider failed to answer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The embedded store failed.
    #[error("embedded store: {0}")]
    Store(#[from] sled::Error),
    /// A stored or returned record is not valid JSON.
    #[error("record of {dataset} is not valid: {message}")]
    BadRecord {
        /// The dataset.
        dataset: DatasetId,
        /// What is wrong (never a field value).
        message: String,
    },
}

/// A boxed future, so providers can be chosen at run time.
pub type ProviderFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Record>, ProviderError>> + Send + 'a>>;

/// A source of records for datasets, keyed by resident ID.
pub trait DataProvider: Send + Sync + std::fmt::Debug {
    /// The resident's record in `dataset`, or `None` if there is none.
    fn fetch<'a>(&'a self, dataset: &'a DatasetId, resident: &'a ResidentId) -> ProviderFuture<'a>;
}

/// The provider of every dataset.
#[derive(Debug, Clone)]
pub struct Providers {
    embedded: Arc<EmbeddedStore>,
}

impl Providers {
    /// All datasets served from the embedded store.
    pub fn embedded(store: EmbeddedStore) -> Self {
        Self {
            embedded: Arc::new(store),
        }
    }

    /// The provider that answers for `dataset`.
    pub fn for_dataset(&self, _dataset: &DatasetId) -> &dyn DataProvider {
        self.embedded.as_ref()
    }
}
