//! The embedded department store: one sled tree per dataset, keyed by the
//! 18-character resident ID, values are the record as JSON.
//!
//! A dataset's records are a generation: `data/<dataset>` first, then
//! `data/<dataset>@<n>` after each online import ([`EmbeddedStore::stage`]).
//! An import fills the next generation beside the one in force, and puts
//! it in force by one write of the pointer in `provider/generations`
//! (synced) and one swap in memory: a lookup sees the old records or the
//! new, never a mixture. Generations not in force (an import stopped
//! half-way, a replaced one) are dropped at the next start or import.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use crate::domain::{DatasetId, ResidentId};
use crate::pipeline::minimize::{Disclosure, Record};

use super::{DataProvider, FetchContext, ProviderError, ProviderFuture};
use crate::policy::Disclosed;
use crate::policy::load::Dataset;

/// The tree of the generation pointers.
const GENERATIONS: &str = "provider/generations";

/// Records held by the gateway on behalf of their owning departments.
#[derive(Debug)]
pub struct EmbeddedStore {
    db: sled::Db,
    /// Where the database's file is, to sync it (`None`: flushed only).
    data_dir: Option<PathBuf>,
    generations: sled::Tree,
    trees: RwLock<HashMap<DatasetId, sled::Tree>>,
}

/// The name of `dataset`'s tree in generation `n`.
fn tree_name(dataset: &DatasetId, n: u64) -> String {
    if n == 0 {
        format!("data/{dataset}")
    } else {
        format!("data/{dataset}@{n}")
    }
}

/// A generation being filled by an import, not yet in force.
#[derive(Debug)]
pub struct Staged {
    dataset: DatasetId,
    generation: u64,
    tree: sled::Tree,
}

impl Staged {
    /// Adds (or replaces) one record.
    pub fn insert(&self, id: &ResidentId, record: &Record) -> Result<(), ProviderError> {
        let bytes = serde_json::to_vec(record).map_err(|e| ProviderError::BadRecord {
            dataset: self.dataset.clone(),
            message: e.to_string(),
        })?;
        self.tree.insert(id.as_str().as_bytes(), bytes)?;
        Ok(())
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

impl EmbeddedStore {
    /// Uses the trees of `db` (whose file is synced by a commit, if
    /// `data_dir` is given); drops the generations not in force.
    pub fn new(db: sled::Db) -> Result<Self, sled::Error> {
        Self::open(db, None)
    }

    /// As [`Self::new`], syncing the database in `data_dir` at a commit.
    pub fn open(db: sled::Db, data_dir: Option<PathBuf>) -> Result<Self, sled::Error> {
        let generations = db.open_tree(GENERATIONS)?;
        let store = Self {
            db,
            data_dir,
            generations,
            trees: RwLock::new(HashMap::new()),
        };
        if let Err(e) = store.drop_stale(None) {
            tracing::warn!(error = %e, "a dataset generation not in force could not be dropped");
        }
        Ok(store)
    }

    /// The generation of `dataset` in force.
    fn generation(&self, dataset: &DatasetId) -> Result<u64, sled::Error> {
        Ok(self
            .generations
            .get(dataset.as_str())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// Drops every dataset tree (of `only`, if given) that is not its
    /// dataset's generation in force.
    fn drop_stale(&self, only: Option<&DatasetId>) -> Result<(), sled::Error> {
        for name in self.db.tree_names() {
            let Ok(name) = std::str::from_utf8(&name) else {
                continue;
            };
            let Some(rest) = name.strip_prefix("data/") else {
                continue;
            };
            // `data/<dataset>` is generation 0.
            let (dataset, n) = rest.split_once('@').unwrap_or((rest, "0"));
            let (Ok(dataset), Ok(n)) = (DatasetId::parse(dataset), n.parse::<u64>()) else {
                continue;
            };
            if only.is_some_and(|o| *o != dataset) {
                continue;
            }
            if self.generation(&dataset)? != n {
                self.db.drop_tree(name)?;
            }
        }
        Ok(())
    }

    fn tree(&self, dataset: &DatasetId) -> Result<sled::Tree, sled::Error> {
        if let Some(tree) = self.trees.read().ok().and_then(|t| t.get(dataset).cloned()) {
            return Ok(tree);
        }
        let tree = self
            .db
            .open_tree(tree_name(dataset, self.generation(dataset)?))?;
        if let Ok(mut trees) = self.trees.write() {
            trees.insert(dataset.clone(), tree.clone());
        }
        Ok(tree)
    }

    /// Begins the next generation of `dataset`: empty if `replace`, else a
    /// copy of the records in force. Nothing changes for lookups until
    /// [`Self::commit`]. The caller holds the gateway's import lock.
    pub fn stage(&self, dataset: &DatasetId, replace: bool) -> Result<Staged, ProviderError> {
        self.drop_stale(Some(dataset))?;
        let current = self.tree(dataset)?;
        let generation = self.generation(dataset)? + 1;
        let name = tree_name(dataset, generation);
        self.db.drop_tree(name.as_bytes())?;
        let tree = self.db.open_tree(name)?;
        if !replace {
            for item in current.iter() {
                let (k, v) = item?;
                tree.insert(k, v)?;
            }
        }
        Ok(Staged {
            dataset: dataset.clone(),
            generation,
            tree,
        })
    }

    /// Puts `staged` in force: its records are flushed and synced, then the
    /// pointer is written and synced, then lookups read it. The generation
    /// it replaces is dropped at the next import or start (a lookup may
    /// still be reading it).
    pub fn commit(&self, staged: Staged) -> Result<usize, ProviderError> {
        let io = |e: std::io::Error| ProviderError::Store(sled::Error::Io(e));
        let sync = || -> Result<(), ProviderError> {
            self.db.flush()?;
            if let Some(dir) = &self.data_dir {
                crate::faults::point(dir, "data.sync").map_err(io)?;
                std::fs::File::open(dir.join("db"))
                    .and_then(|f| f.sync_data())
                    .map_err(io)?;
            }
            Ok(())
        };
        sync()?;
        if let Some(dir) = &self.data_dir {
            crate::faults::point(dir, "data.pointer").map_err(io)?;
        }
        let before = self
            .generations
            .insert(staged.dataset.as_str(), &staged.generation.to_be_bytes())?;
        if let Err(e) = sync() {
            // Not known to be durable: the pointer goes back, lookups keep
            // the records in force, and the import is refused.
            let undo = match before {
                Some(old) => self
                    .generations
                    .insert(staged.dataset.as_str(), old)
                    .map(|_| ()),
                None => self.generations.remove(staged.dataset.as_str()).map(|_| ()),
            };
            if let Err(u) = undo {
                tracing::error!(error = %u, "an import's pointer could not be put back after a failed sync");
            }
            return Err(e);
        }
        let held = staged.tree.len();
        if let Ok(mut trees) = self.trees.write() {
            trees.insert(staged.dataset, staged.tree);
        }
        Ok(held)
    }

    /// Gives up `staged` (an import refused): its tree is dropped.
    pub fn abandon(&self, staged: Staged) {
        if let Err(e) = self
            .db
            .drop_tree(tree_name(&staged.dataset, staged.generation).as_bytes())
        {
            tracing::warn!(error = %e, "a refused import's records could not be dropped; the next start drops them");
        }
    }

    /// Every record of `dataset` in force, key and stored bytes (for a backup).
    pub fn records(
        &self,
        dataset: &DatasetId,
    ) -> Result<impl Iterator<Item = Result<(sled::IVec, sled::IVec), sled::Error>>, ProviderError>
    {
        Ok(self.tree(dataset)?.iter())
    }

    /// Reads one record.
    pub fn get(
        &self,
        dataset: &DatasetId,
        id: &ResidentId,
    ) -> Result<Option<Record>, ProviderError> {
        self.get_fields(dataset, id, None)
    }

    /// Reads one record, decoding only `fields` if given (the others are
    /// skipped over, still checked to be valid JSON).
    pub fn get_fields(
        &self,
        dataset: &DatasetId,
        id: &ResidentId,
        fields: Option<&[Disclosed]>,
    ) -> Result<Option<Record>, ProviderError> {
        let Some(bytes) = self.tree(dataset)?.get(id.as_str())? else {
            return Ok(None);
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        serde::Deserializer::deserialize_map(&mut de, Fields(fields))
            .and_then(|record| de.end().map(|()| record))
            .map(Some)
            .map_err(|e| ProviderError::BadRecord {
                dataset: dataset.clone(),
                message: format!("stored record is not a JSON object ({})", e.classify_name()),
            })
    }

    /// The granted `fields` of a resident's record, picked in one scan of
    /// the stored bytes (which validates the whole record) and rendered.
    pub fn get_disclosed(
        &self,
        dataset: &DatasetId,
        id: &ResidentId,
        fields: &[Disclosed],
    ) -> Result<Option<Disclosure>, ProviderError> {
        let Some(bytes) = self.tree(dataset)?.get(id.as_str())? else {
            return Ok(None);
        };
        let bad = |e: serde_json::Error| ProviderError::BadRecord {
            dataset: dataset.clone(),
            message: format!("stored record is not a JSON object ({})", e.classify_name()),
        };
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let picked = serde::Deserializer::deserialize_map(&mut de, Pick(fields))
            .and_then(|picked| de.end().map(|()| picked))
            .map_err(bad)?;
        crate::pipeline::minimize::render(fields, &picked)
            .map(Some)
            .map_err(bad)
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

/// Decodes a stored record, keeping only the named fields (all if `None`).
struct Fields<'f>(Option<&'f [Disclosed]>);

impl<'de> serde::de::Visitor<'de> for Fields<'_> {
    type Value = Record;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut record = Record::new();
        while let Some(Key(name)) = map.next_key()? {
            let wanted = self
                .0
                .is_none_or(|fields| fields.iter().any(|f| f.name.as_str() == name));
            if wanted {
                record.insert(name.into_owned(), map.next_value()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(record)
    }
}

/// Picks the stored JSON text of each granted field; every other member is
/// still read through, so a damaged record is refused whole. A member named
/// twice counts as its last occurrence, as a decoded map would.
struct Pick<'f>(&'f [Disclosed]);

impl<'de> serde::de::Visitor<'de> for Pick<'_> {
    type Value = Vec<Option<&'de serde_json::value::RawValue>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut picked = vec![None; self.0.len()];
        while let Some(Key(name)) = map.next_key()? {
            match self.0.iter().position(|f| f.name.as_str() == name) {
                Some(i) => picked[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(picked)
    }
}

/// A member name, borrowed from the stored bytes unless it holds an escape.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
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

    fn fetch_fields<'a>(
        &'a self,
        _ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        resident: &'a ResidentId,
        fields: &'a [Disclosed],
    ) -> ProviderFuture<'a, Option<Record>> {
        let result = self.get_fields(&dataset.spec.id, resident, Some(fields));
        Box::pin(std::future::ready(result))
    }

    fn fetch_disclosed<'a>(
        &'a self,
        _ctx: FetchContext<'a>,
        dataset: &'a Dataset,
        resident: &'a ResidentId,
        fields: &'a [Disclosed],
    ) -> ProviderFuture<'a, Option<Disclosure>> {
        let result = self.get_disclosed(&dataset.spec.id, resident, fields);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldName;
    use serde_json::json;

    #[test]
    fn an_import_puts_a_new_generation_in_force_and_the_next_drops_the_old() {
        let (store, dataset, id) = store_with(br#"{"name":"old"}"#);
        let names = |s: &EmbeddedStore| -> Vec<String> {
            s.db.tree_names()
                .iter()
                .filter_map(|n| String::from_utf8(n.to_vec()).ok())
                .filter(|n| n.starts_with("data/"))
                .collect()
        };
        for (n, name) in [(1, "first"), (2, "second")] {
            let staged = store.stage(&dataset, true).unwrap();
            let mut record = Record::new();
            record.insert("name".into(), json!(name));
            staged.insert(&id, &record).unwrap();
            assert_eq!(
                store.get(&dataset, &id).unwrap().unwrap()["name"],
                if n == 1 { "old" } else { "first" }
            );
            assert_eq!(store.commit(staged).unwrap(), 1);
            assert_eq!(store.get(&dataset, &id).unwrap().unwrap()["name"], name);
        }
        // The third stage drops every generation but the one in force.
        let staged = store.stage(&dataset, false).unwrap();
        store.abandon(staged);
        assert_eq!(names(&store), ["data/gongan.hukou@2"]);
        assert_eq!(store.get(&dataset, &id).unwrap().unwrap()["name"], "second");
    }

    fn store_with(raw: &[u8]) -> (EmbeddedStore, DatasetId, ResidentId) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let dataset = DatasetId::parse("gongan.hukou").unwrap();
        let id = ResidentId::parse("110101199810229455").unwrap();
        db.open_tree("data/gongan.hukou")
            .unwrap()
            .insert(id.as_str(), raw)
            .unwrap();
        (EmbeddedStore::new(db).unwrap(), dataset, id)
    }

    fn wanted(names: &[&str]) -> Vec<Disclosed> {
        names
            .iter()
            .map(|n| Disclosed::new(FieldName::parse(n).unwrap(), None))
            .collect()
    }

    #[test]
    fn decodes_only_the_fields_asked_for() {
        let raw = br#"{"name":"\u5f20\u4e09","gender":"1","h\u0069dden":{"deep":[1,2,{"x":null}]},"household_id":"H1"}"#;
        let (store, dataset, id) = store_with(raw);
        let all = store.get(&dataset, &id).unwrap().unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all["hidden"], json!({"deep": [1, 2, {"x": null}]}));
        let some = store
            .get_fields(
                &dataset,
                &id,
                Some(&wanted(&["name", "household_id", "absent"])),
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::Value::Object(some),
            json!({"name": "张三", "household_id": "H1"})
        );
        // An escaped member name is still found.
        let hidden = store
            .get_fields(&dataset, &id, Some(&wanted(&["hidden"])))
            .unwrap()
            .unwrap();
        assert_eq!(hidden.len(), 1);
    }

    /// The one-scan disclosure holds exactly what decoding the record and
    /// minimizing it holds (masked the same, in the same order, the last of
    /// a member named twice), whatever the record looks like.
    #[test]
    fn a_masked_value_that_cannot_be_read_fails_the_lookup_as_a_whole_decode_does() {
        use crate::policy::model::Mask;
        // A lone surrogate: valid JSON syntax, not a string Rust can hold.
        let (store, dataset, id) = store_with(br#"{"name":"\ud800","mobile":"13812345678"}"#);
        let mut fields = wanted(&["name", "mobile"]);
        fields[0].mask = Some(Mask::Name);
        assert!(
            store.get(&dataset, &id).is_err(),
            "a whole decode refuses it"
        );
        let picked = store.get_disclosed(&dataset, &id, &fields);
        assert!(
            matches!(picked, Err(ProviderError::BadRecord { .. })),
            "{picked:?}"
        );
    }

    #[test]
    fn a_disclosure_picked_in_one_scan_equals_the_minimized_record() {
        use crate::pipeline::minimize::{Disclosure, minimize};
        use crate::policy::model::Mask;
        let records: [&[u8]; 4] = [
            br#"{"name":"\u5f20\u4e09","gender":"1","h\u0069dden":{"deep":[1,2,{"x":null}]},"household_id":"H1","id_number":"110101199810229455"}"#,
            r#"{"household_id":"H2","name":"欧阳小明","name":"司马光","gender":2.50,"mobile":"13812345678","address":"北京市朝阳区建国路88号"}"#.as_bytes(),
            br#" { "name" : null , "mobile" : 13812345678 , "extra" : [ ] } "#,
            br#"{}"#,
        ];
        let mut fields = wanted(&[
            "name",
            "household_id",
            "gender",
            "hidden",
            "absent",
            "mobile",
            "id_number",
            "address",
        ]);
        fields[0].mask = Some(Mask::Name);
        fields[5].mask = Some(Mask::Mobile);
        fields[6].mask = Some(Mask::IdNumber);
        fields[7].mask = Some(Mask::Address);
        for raw in records {
            let (store, dataset, id) = store_with(raw);
            let picked = store
                .get_disclosed(&dataset, &id, &fields)
                .unwrap()
                .unwrap();
            let decoded = store.get(&dataset, &id).unwrap().unwrap();
            let expected = Disclosure::of(&minimize(decoded, &fields)).unwrap();
            let text = String::from_utf8_lossy(raw);
            assert_eq!(picked.names, expected.names, "{text}");
            let a: serde_json::Value = serde_json::from_str(picked.record.get()).unwrap();
            let b: serde_json::Value = serde_json::from_str(expected.record.get()).unwrap();
            assert_eq!(a, b, "{text}");
            // Members in name order, as a decoded map writes them.
            let order: Vec<&String> = a.as_object().unwrap().keys().collect();
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(order, sorted);
            assert!(picked.record.get().starts_with('{'), "{text}");
        }
        // Nothing but granted fields, and masks applied.
        let (store, dataset, id) = store_with(records[1]);
        let d = store
            .get_disclosed(&dataset, &id, &fields)
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(d.record.get()).unwrap(),
            json!({"name": "司马*", "household_id": "H2", "gender": 2.5, "mobile": "138****5678", "address": "北京市朝阳区"})
        );
        assert_eq!(
            d.names.iter().map(|n| &**n).collect::<Vec<_>>(),
            ["address", "gender", "household_id", "mobile", "name"]
        );
    }

    #[test]
    fn a_damaged_record_is_refused_even_where_it_is_not_decoded() {
        for raw in [
            &br#"{"name":"a","gender":[1,}"#[..],
            br#"{"name":"a"} trailing"#,
            br#"["name","a"]"#,
            br#"{"name":"a","gender":"#,
        ] {
            let (store, dataset, id) = store_with(raw);
            let err = store
                .get_fields(&dataset, &id, Some(&wanted(&["name"])))
                .unwrap_err();
            assert!(
                matches!(err, ProviderError::BadRecord { .. }),
                "{}: {err}",
                String::from_utf8_lossy(raw)
            );
            let err = store
                .get_disclosed(&dataset, &id, &wanted(&["name"]))
                .unwrap_err();
            assert!(
                matches!(err, ProviderError::BadRecord { .. }),
                "{}: {err}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}
