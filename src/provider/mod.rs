//! Data providers: where the owning department's records come from.
//!
//! [`DataProvider`] is the seam: the embedded sled store is the default (for
//! demos and departments without an API of their own); a dataset whose
//! catalog entry names an `http` provider is answered by the owner's own API
//! ([`http`]), called over mutual TLS, behind a circuit breaker, with its
//! answers checked against the catalog before anything is minimized.

pub mod embedded;
pub mod http;
pub mod import;
pub mod serve;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::domain::{DatasetId, ResidentId};
use crate::pipeline::minimize::{Disclosure, Record};
use crate::policy::Disclosed;
use crate::policy::load::Dataset;
use crate::policy::model::ProviderSpec;

pub use embedded::EmbeddedStore;
pub use http::Upstreams;

/// A provider failed to answer. Messages never hold a field value.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The embedded store failed.
    #[error("embedded store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record is not valid JSON.
    #[error("record of {dataset} is not valid: {message}")]
    BadRecord {
        /// The dataset.
        dataset: DatasetId,
        /// What is wrong.
        message: String,
    },
    /// The upstream cannot be reached, answered 5xx, or its circuit is open.
    #[error("upstream of {dataset} is unavailable: {reason}")]
    Unavailable {
        /// The dataset.
        dataset: DatasetId,
        /// Why.
        reason: String,
    },
    /// The upstream did not answer in time.
    #[error("upstream of {dataset} did not answer within {millis} ms")]
    Timeout {
        /// The dataset.
        dataset: DatasetId,
        /// The time allowed.
        millis: u64,
    },
    /// The upstream answered something the contract or the catalog does not allow.
    #[error("upstream of {dataset} answered invalidly: {message}")]
    InvalidAnswer {
        /// The dataset.
        dataset: DatasetId,
        /// What is wrong.
        message: String,
    },
    /// A dataset names an HTTP provider but the gateway has no `[upstream]` configuration.
    #[error("dataset {0} names an http provider, but tongban.toml has no [upstream] section")]
    NotConfigured(DatasetId),
}

/// What an upstream may learn about the request it serves (for its own logs):
/// never the token.
#[derive(Debug, Clone, Copy)]
pub struct FetchContext<'a> {
    /// The gateway's request id (also in the audit event).
    pub request_id: &'a str,
    /// The W3C trace id of the caller's `traceparent`, if any.
    pub trace_id: Option<&'a str>,
    /// The consumer department.
    pub consumer: &'a str,
    /// The purpose named.
    pub purpose: &'a str,
}

/// A boxed future, so providers can be chosen at run time.
pub type ProviderFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// A source of records for datasets, keyed by resident ID.
pub trait DataProvider: Send + Sync + std::fmt::Debug {
    /// The resident's record in `dataset`, or `None` if there is none.
    fn fetch<'a>(
        &'a self,
        ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        resident: &'a ResidentId,
    ) -> ProviderFuture<'a, Option<Record>>;

    /// As [`fetch`](Self::fetch) when only `fields` of the record will be
    /// used: a provider that can read part of a record may leave the other
    /// fields out (the embedded store does not decode them). What leaves the
    /// gateway is still decided by minimization, never by this list.
    fn fetch_fields<'a>(
        &'a self,
        ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        resident: &'a ResidentId,
        fields: &'a [Disclosed],
    ) -> ProviderFuture<'a, Option<Record>> {
        let _ = fields;
        self.fetch(ctx, dataset, resident)
    }

    /// The granted `fields` of the resident's record, minimized and
    /// rendered for a lookup answer. The embedded store picks them in one
    /// scan of the stored bytes; other providers fetch and minimize.
    fn fetch_disclosed<'a>(
        &'a self,
        ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        resident: &'a ResidentId,
        fields: &'a [Disclosed],
    ) -> ProviderFuture<'a, Option<Disclosure>> {
        Box::pin(async move {
            let Some(record) = self.fetch_fields(ctx, dataset, resident, fields).await? else {
                return Ok(None);
            };
            Disclosure::of(&crate::pipeline::minimize::minimize(record, fields))
                .map(Some)
                .map_err(|e| ProviderError::BadRecord {
                    dataset: dataset.spec.id.clone(),
                    message: format!("the record cannot be rendered ({e})"),
                })
        })
    }

    /// The records of many residents, in the order asked.
    fn fetch_many<'a>(
        &'a self,
        ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        residents: &'a [ResidentId],
    ) -> ProviderFuture<'a, Vec<Option<Record>>>;
}

/// The provider of every dataset.
#[derive(Debug, Clone)]
pub struct Providers {
    embedded: Arc<EmbeddedStore>,
    upstreams: Option<Arc<Upstreams>>,
}

impl Providers {
    /// The embedded store, and upstream APIs if the gateway is configured to call them.
    pub fn new(store: EmbeddedStore, upstreams: Option<Upstreams>) -> Self {
        Self {
            embedded: Arc::new(store),
            upstreams: upstreams.map(Arc::new),
        }
    }

    /// The provider that answers for `dataset`, as its catalog entry says.
    pub fn for_dataset(&self, dataset: &Dataset) -> Result<Arc<dyn DataProvider>, ProviderError> {
        match &dataset.spec.provider {
            None | Some(ProviderSpec::Embedded) => Ok(self.embedded.clone()),
            Some(ProviderSpec::Http { base_url, .. }) => match &self.upstreams {
                Some(up) => Ok(up.upstream(base_url)),
                None => Err(ProviderError::NotConfigured(dataset.spec.id.clone())),
            },
        }
    }

    /// The embedded store (for imports and backups).
    pub fn embedded(&self) -> &Arc<EmbeddedStore> {
        &self.embedded
    }

    /// The upstreams, if configured (for readiness and metrics).
    pub fn upstreams(&self) -> Option<&Upstreams> {
        self.upstreams.as_deref()
    }
}
