//! The embedded department store: one sled tree per dataset (`data/<dataset>`),
//! keyed by the 18-character resident ID, values are the record as JSON.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::domain::{DatasetId, ResidentId};
use crate::pipeline::minimize::Record;

use super::{DataProvider, FetchContext, ProviderError, ProviderFuture};
use crate::policy::load::Dataset;

/// Records held by the gateway on behalf of their owning departments.
#[derive(Debug)]
pub struct EmbeddedStore {
    db: sled::Db,
    trees: RwLock<HashMap<DatasetId, sled::Tree>>,
}

impl EmbeddedStore {
    /// Uses the trees of `db`.
    pub fn new(db: sled::Db) -> Self {
        Self {
            db,
            trees: RwLock::new(HashMap::new()),
        }
    }

    fn tree(&self, dataset: &DatasetId) -> Result<sled::Tree, sled::Error> {
        if let Some(tree) = self.trees.read().ok().and_then(|t| t.get(dataset).cloned()) {
            return Ok(tree);
        }
        let tree = self.db.open_tree(format!("data/{dataset}"))?;
        if let Ok(mut trees) = self.trees.write() {
            trees.insert(dataset.clone(), tree.clone());
        }
        Ok(tree)
    }

    /// Reads one record.
    pub fn get(
        &self,
        dataset: &DatasetId,
        id: &ResidentId,
    ) -> Result<Option<Record>, ProviderError> {
        let Some(bytes) = self.tree(dataset)?.get(id.as_str())? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ProviderError::BadRecord {
                dataset: dataset.clone(),
                message: format!("stored record is not a JSON object ({})", e.classify_name()),
            })
    }

    /// Adds `records` (replacing the dataset's other records if `replace`),
    /// all or nothing, in one atomic sled batch.
    pub fn import(
        &self,
        dataset: &DatasetId,
        records: &[(ResidentId, Record)],
        replace: bool,
    ) -> Result<(), ProviderError> {
        let tree = self.tree(dataset)?;
        let mut batch = sled::Batch::default();
        if replace {
            for item in tree.iter().keys() {
                batch.remove(item?);
            }
        }
        for (id, record) in records {
            let bytes = serde_json::to_vec(record).map_err(|e| ProviderError::BadRecord {
                dataset: dataset.clone(),
                message: e.to_string(),
            })?;
            batch.insert(id.as_str().as_bytes(), bytes);
        }
        tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Adds or replaces records one by one (no atomicity; for generated sample data).
    pub fn insert_all(
        &self,
        dataset: &DatasetId,
        records: &[(ResidentId, Record)],
    ) -> Result<(), ProviderError> {
        let tree = self.tree(dataset)?;
        for (id, record) in records {
            let bytes = serde_json::to_vec(record).map_err(|e| ProviderError::BadRecord {
                dataset: dataset.clone(),
                message: e.to_string(),
            })?;
            tree.insert(id.as_str().as_bytes(), bytes)?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// Number of records held for `dataset`.
    pub fn count(&self, dataset: &DatasetId) -> Result<usize, ProviderError> {
        Ok(self.tree(dataset)?.len())
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

impl DataProvider for EmbeddedStore {
    fn fetch<'a>(
        &'a self,
        _ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        resident: &'a ResidentId,
    ) -> ProviderFuture<'a, Option<Record>> {
        // A sled read of a hot key takes about a microsecond: no need to leave the task.
        let result = self.get(&dataset.spec.id, resident);
        Box::pin(std::future::ready(result))
    }

    fn fetch_many<'a>(
        &'a self,
        _ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        residents: &'a [ResidentId],
    ) -> ProviderFuture<'a, Vec<Option<Record>>> {
        let result = residents
            .iter()
            .map(|id| self.get(&dataset.spec.id, id))
            .collect();
        Box::pin(std::future::ready(result))
    }
}
