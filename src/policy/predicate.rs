//! What a grant's `verify_predicates` and a verify request name: a field, a
//! comparison and a value. Evaluating them on a record is
//! [`crate::pipeline::verify`]'s work.
//!
//! Invariant: a request's condition is allowed only if it [`Condition::is`]
//! one of the grant's predicates exactly (same field, comparison and value
//! or set); numbers compare by value, so `1` and `1.0` are the same.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::FieldName;

/// A comparison of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Comparison {
    /// The field equals the value.
    #[serde(rename = "equals")]
    Equals,
    /// The field is one of the values (an array).
    #[serde(rename = "in")]
    In,
    /// The field is at least the value (numbers and dates).
    #[serde(rename = ">=")]
    AtLeast,
    /// The field is at most the value (numbers and dates).
    #[serde(rename = "<=")]
    AtMost,
    /// The field has a value.
    #[serde(rename = "exists")]
    Exists,
}

/// One condition on a field, as a caller sends it, or as a grant names it
/// among its `verify_predicates`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"field": "marital_status", "op": "equals", "value": "已婚"}))]
pub struct Condition {
    /// A field of the dataset.
    #[schema(value_type = String, pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub field: FieldName,
    /// The comparison.
    pub op: Comparison,
    /// What to compare with, of the field's type (an array for `in`; none for `exists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Value, required = false)]
    pub value: Option<Value>,
}

impl Condition {
    /// Whether this condition asks exactly what `predicate` names: the same
    /// field and comparison, and the same value (the same set, for `in`).
    pub fn is(&self, predicate: &Condition) -> bool {
        if self.field != predicate.field || self.op != predicate.op {
            return false;
        }
        match (&self.value, &predicate.value) {
            (Some(Value::Array(a)), Some(Value::Array(b))) => {
                a.len() == b.len()
                    && a.iter().all(|x| b.iter().any(|y| same(x, y)))
                    && b.iter().all(|y| a.iter().any(|x| same(x, y)))
            }
            (Some(a), Some(b)) => same(a, b) && same(b, a),
            (None, None) => true,
            _ => false,
        }
    }
}

/// Whether `have` is `want` (numbers by value; an array holds it if any
/// item is it).
pub(crate) fn same(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(items), w) => items.iter().any(|i| i == w),
        (a, b) => a == b,
    }
}
