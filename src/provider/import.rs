//! Reading a department's records from CSV or JSON Lines, checked row by row
//! against the catalog, all or nothing.
//!
//! Every row needs `id_number` (a valid resident ID: the record key) and may
//! hold only fields of the dataset, with values of the declared types. Errors
//! are collected with their line numbers; nothing is imported unless every
//! row is good.

use std::collections::HashSet;
use std::io::BufRead;

use serde_json::{Map, Value};
use time::Date;
use time::macros::format_description;

use crate::domain::ResidentId;
use crate::pipeline::minimize::Record;
use crate::policy::load::Dataset;
use crate::policy::model::FieldType;

/// A bad row: its line number (1-based) and what is wrong. Never a field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Line in the file (for CSV, counting the header as line 1).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

const KEY: &str = "id_number";
const MAX_ERRORS: usize = 100;

/// Why a record is not imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// `id_number` is not a valid resident ID.
    #[error("id_number: {0}")]
    InvalidId(crate::domain::IdFault),
    /// `id_number` is not a string.
    #[error("id_number must be a string")]
    IdNotText,
    /// `id_number` is missing.
    #[error("id_number is missing")]
    IdMissing,
    /// A member that is not a field of the dataset.
    #[error("\"{field}\" is not a field of dataset {dataset}")]
    UnknownField {
        /// The member.
        field: String,
        /// The dataset.
        dataset: String,
    },
    /// A value of the wrong type.
    #[error("field \"{field}\" must be {expected}")]
    WrongType {
        /// The field.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
}

/// Checks one record against the dataset: returns its key and the stored record.
pub fn check_record(
    dataset: &Dataset,
    mut raw: Map<String, Value>,
) -> Result<(ResidentId, Record), RecordError> {
    let id = match raw.get(KEY) {
        Some(Value::String(s)) => {
            ResidentId::parse(s).map_err(|e| RecordError::InvalidId(e.reason))?
        }
        Some(_) => return Err(RecordError::IdNotText),
        None => return Err(RecordError::IdMissing),
    };
    if !dataset.fields.contains_key(KEY) {
        raw.remove(KEY);
    }
    for (name, value) in &raw {
        let Some(spec) = dataset.fields.get(name.as_str()) else {
            return Err(RecordError::UnknownField {
                field: name.clone(),
                dataset: dataset.spec.id.to_string(),
            });
        };
        check_type(spec.kind, value).map_err(|expected| RecordError::WrongType {
            field: name.clone(),
            expected,
        })?;
    }
    Ok((id, raw))
}

/// Whether `value` is of type `kind` (null is allowed: an absent value).
pub fn check_type(kind: FieldType, value: &Value) -> Result<(), &'static str> {
    let ok = match (kind, value) {
        (_, Value::Null) => true,
        (FieldType::String, Value::String(_)) => true,
        (FieldType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (FieldType::Number, Value::Number(_)) => true,
        (FieldType::Boolean, Value::Bool(_)) => true,
        (FieldType::Date, Value::String(s)) => {
            Date::parse(s, format_description!("[year]-[month]-[day]")).is_ok()
        }
        (FieldType::StringList, Value::Array(a)) => a.iter().all(Value::is_string),
        (FieldType::ObjectList, Value::Array(a)) => a.iter().all(Value::is_object),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(match kind {
            FieldType::String => "a string",
            FieldType::Integer => "an integer",
            FieldType::Number => "a number",
            FieldType::Boolean => "true or false",
            FieldType::Date => "a date YYYY-MM-DD",
            FieldType::StringList => "an array of strings",
            FieldType::ObjectList => "an array of objects",
        })
    }
}

/// Where good rows go, one at a time (an error stops the reading).
pub type Sink<'a> = dyn FnMut(ResidentId, Record) -> Result<(), String> + 'a;

/// Reads JSON Lines (one object per line; blank lines skipped).
pub fn read_jsonl(
    reader: impl BufRead,
    dataset: &Dataset,
) -> Result<Vec<(ResidentId, Record)>, Vec<RowError>> {
    let mut good = Vec::new();
    each_jsonl(reader, dataset, &mut |id, record| {
        good.push((id, record));
        Ok(())
    })?;
    Ok(good)
}

/// Reads CSV with a header row. Lists are `;`-separated; object lists are JSON.
pub fn read_csv(
    reader: impl std::io::Read,
    dataset: &Dataset,
) -> Result<Vec<(ResidentId, Record)>, Vec<RowError>> {
    let mut good = Vec::new();
    each_csv(reader, dataset, &mut |id, record| {
        good.push((id, record));
        Ok(())
    })?;
    Ok(good)
}

/// As [`read_jsonl`], handing each good row to `sink` as it is read (until
/// the first bad one): how many rows, or the bad ones.
pub fn each_jsonl(
    reader: impl BufRead,
    dataset: &Dataset,
    sink: &mut Sink<'_>,
) -> Result<usize, Vec<RowError>> {
    let mut rows = Rows::default();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                rows.fail(line_no, format!("cannot be read: {e}"));
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(obj)) => rows.add(line_no, check_record(dataset, obj), sink),
            Ok(_) => rows.fail(line_no, "is not a JSON object".into()),
            Err(e) => rows.fail(
                line_no,
                format!("is not valid JSON (column {})", e.column()),
            ),
        }
        if rows.full() {
            break;
        }
    }
    rows.finish()
}

/// As [`read_csv`], handing each good row to `sink` as it is read.
pub fn each_csv(
    reader: impl std::io::Read,
    dataset: &Dataset,
    sink: &mut Sink<'_>,
) -> Result<usize, Vec<RowError>> {
    let mut rows = Rows::default();
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let headers = match csv.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return Err(vec![RowError {
                line: 1,
                message: format!("header cannot be read: {e}"),
            }]);
        }
    };
    for (i, record) in csv.records().enumerate() {
        let line_no = record
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map_or(i + 2, |p| usize::try_from(p.line()).unwrap_or(i + 2));
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                rows.fail(line_no, format!("cannot be read: {e}"));
                continue;
            }
        };
        let mut obj = Map::new();
        let mut bad = None;
        for (name, text) in headers.iter().zip(record.iter()) {
            if text.is_empty() {
                continue;
            }
            let kind = dataset.fields.get(name).map(|f| f.kind);
            let value = match kind {
                Some(FieldType::Integer) => text.parse::<i64>().map(Value::from).ok(),
                Some(FieldType::Number) => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number),
                Some(FieldType::Boolean) => text.parse::<bool>().map(Value::Bool).ok(),
                Some(FieldType::StringList) => Some(Value::Array(
                    text.split(';')
                        .map(|s| Value::String(s.trim().to_owned()))
                        .collect(),
                )),
                Some(FieldType::ObjectList) => serde_json::from_str(text).ok(),
                _ => Some(Value::String(text.to_owned())),
            };
            match value {
                Some(v) => {
                    obj.insert(name.to_owned(), v);
                }
                None => {
                    bad.get_or_insert_with(|| {
                        format!("field \"{name}\" cannot be read as {kind:?}")
                    });
                }
            }
        }
        match bad {
            Some(message) => rows.fail(line_no, message),
            None => rows.add(line_no, check_record(dataset, obj), sink),
        }
        if rows.full() {
            break;
        }
    }
    rows.finish()
}

#[derive(Default)]
struct Rows {
    count: usize,
    seen: HashSet<ResidentId>,
    errors: Vec<RowError>,
    /// The sink failed: nothing more is read.
    stopped: bool,
}

impl Rows {
    fn fail(&mut self, line: usize, message: String) {
        self.errors.push(RowError { line, message });
    }

    /// Whether to stop reading: enough errors to report, or a sink failed.
    fn full(&self) -> bool {
        self.stopped || self.errors.len() >= MAX_ERRORS
    }

    fn add(
        &mut self,
        line: usize,
        row: Result<(ResidentId, Record), RecordError>,
        sink: &mut Sink<'_>,
    ) {
        match row {
            Ok((id, record)) => {
                if !self.seen.insert(id.clone()) {
                    self.fail(line, format!("resident {} appears twice", id.masked()));
                    return;
                }
                self.count += 1;
                // After a bad row nothing is kept: the rest is only checked.
                if self.errors.is_empty()
                    && let Err(e) = sink(id, record)
                {
                    self.fail(line, format!("cannot be stored: {e}"));
                    self.stopped = true;
                }
            }
            Err(e) => self.fail(line, e.to_string()),
        }
    }

    fn finish(self) -> Result<usize, Vec<RowError>> {
        if self.errors.is_empty() {
            Ok(self.count)
        } else {
            Err(self.errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::load_dir;

    fn hukou() -> Dataset {
        let set =
            load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
        set.datasets.get("gongan.hukou").unwrap().clone()
    }

    #[test]
    fn reports_bad_rows_by_line_and_imports_nothing() {
        let text = "{\"id_number\":\"11010519491231002X\",\"name\":\"张三\"}\n\n{\"id_number\":\"110105194912310021\"}\n{\"id_number\":\"11010519491231002X\",\"ethnicty\":\"汉族\"}\nnot json\n";
        let errs = read_jsonl(text.as_bytes(), &hukou()).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5], "{errs:?}");
        assert!(errs[1].message.contains("ethnicty"));
    }

    #[test]
    fn reads_csv_with_types() {
        let text = "id_number,name,birth_date\n11010519491231002X,张三,1949-12-31\n";
        let rows = read_csv(text.as_bytes(), &hukou()).unwrap();
        assert_eq!(rows[0].1["birth_date"], "1949-12-31");
        let bad = "id_number,birth_date\n11010519491231002X,1949-13-31\n";
        let errs = read_csv(bad.as_bytes(), &hukou()).unwrap_err();
        assert_eq!(errs[0].line, 2);
    }
}
