//! Verification (数据核验): answering yes or no to conditions on a record's
//! fields without disclosing the values. Pure functions over the record and
//! the catalog's field types.
//!
//! What may be asked is bounded by the grant: of a verify-only field only the
//! predicates the grant names (field, comparison and value, exactly), at most
//! one condition per field in a request, and a budget of verify requests per
//! resident and day; a masked field cannot be verified at all (its raw value
//! is what the mask hides). Free thresholds would let repeated questions
//! bisect the value.

use serde::Serialize;
use serde_json::Value;

use crate::domain::FieldName;
use crate::pipeline::minimize::Record;
use crate::policy::model::FieldType;
use crate::policy::predicate::same;
pub use crate::policy::predicate::{Comparison, Condition};

/// Most conditions in one request.
pub const MAX_CONDITIONS: usize = 16;

/// Verify requests a grant allows per resident and day, unless it says otherwise.
pub const DEFAULT_BUDGET_PER_RESIDENT_DAY: u32 = 5;

/// The outcome of one condition: its field, its comparison, and whether it
/// holds; never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = ConditionOutcome)]
pub struct Outcome {
    /// The field.
    pub field: String,
    /// The comparison.
    pub op: Comparison,
    /// Whether it holds.
    #[serde(rename = "match")]
    pub matches: bool,
}

/// Verify requests counted per grant, resident (pseudonym) and day, at
/// admission, so a burst of requests cannot pass the budget. The first time
/// a grant and resident are met on a day the count starts from the audit
/// log's verify events of that day, so a restart does not reset it.
#[derive(Debug, Default)]
pub struct Budget {
    counts: std::sync::Mutex<std::collections::HashMap<BudgetKey, (time::Date, u32)>>,
}

/// A grant id and a resident's pseudonym.
type BudgetKey = (String, [u8; 16]);

impl Budget {
    /// Takes one request from the budget of `grant` for `resident` today, if
    /// fewer than `limit` were made; `so_far` counts today's from the log
    /// when the day's count is not known here yet.
    pub fn charge(
        &self,
        grant: &str,
        resident: [u8; 16],
        today: time::Date,
        limit: u32,
        so_far: impl FnOnce() -> u32,
    ) -> bool {
        let key = (grant.to_owned(), resident);
        let known = |counts: &std::collections::HashMap<BudgetKey, (time::Date, u32)>| {
            counts.get(&key).is_some_and(|(day, _)| *day == today)
        };
        let lock = || {
            self.counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        // The day's count from the log is read without the lock held.
        let is_known = known(&lock());
        let seed = (!is_known).then(so_far);
        let mut counts = lock();
        if counts.len() > 100_000 {
            counts.retain(|_, (day, _)| *day == today);
        }
        let entry = counts.entry(key.clone()).or_insert((today, 0));
        if entry.0 != today {
            *entry = (today, 0);
        }
        if let Some(seed) = seed {
            // Another request may have counted meanwhile: keep the larger.
            entry.1 = entry.1.max(seed);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }
}

/// Why a condition does not fit its field, told in the words of the wire
/// format (`>=`, `integer`), never the gateway's type names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// `exists` with a value.
    #[error("condition on \"{0}\": exists takes no value")]
    ExistsTakesNoValue(FieldName),
    /// Any other comparison without one.
    #[error("condition on \"{0}\": a value is required")]
    ValueRequired(FieldName),
    /// The comparison or the value does not fit the field's type.
    #[error("condition on \"{field}\": {} does not fit a field of type {} with that value", op_name(*.op), type_name(*.kind))]
    DoesNotFit {
        /// The field.
        field: FieldName,
        /// The comparison.
        op: Comparison,
        /// The field's type.
        kind: FieldType,
    },
}

impl ConditionError {
    /// The same, in Chinese.
    pub fn zh(&self) -> String {
        match self {
            Self::ExistsTakesNoValue(f) => format!("字段“{f}”的条件：exists 不带值"),
            Self::ValueRequired(f) => format!("字段“{f}”的条件：需要一个值"),
            Self::DoesNotFit { field, op, kind } => format!(
                "字段“{field}”的条件：{} 与类型为 {} 的字段或所给的值不符",
                op_name(*op),
                type_name(*kind)
            ),
        }
    }
}

/// A comparison as the wire format spells it.
fn op_name(op: Comparison) -> &'static str {
    match op {
        Comparison::Equals => "equals",
        Comparison::In => "in",
        Comparison::AtLeast => ">=",
        Comparison::AtMost => "<=",
        Comparison::Exists => "exists",
    }
}

/// A field type as the catalog spells it.
fn type_name(kind: FieldType) -> &'static str {
    match kind {
        FieldType::String => "string",
        FieldType::Integer => "integer",
        FieldType::Number => "number",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
        FieldType::StringList => "string_list",
        FieldType::ObjectList => "object_list",
    }
}

/// Checks a condition's value against the field's type before anything is looked up.
pub fn check_condition(c: &Condition, kind: FieldType) -> Result<(), ConditionError> {
    let field = &c.field;
    let numeric = matches!(kind, FieldType::Integer | FieldType::Number);
    let scalar_ok = |v: &Value| match kind {
        FieldType::Integer | FieldType::Number => v.is_number(),
        FieldType::Boolean => v.is_boolean(),
        FieldType::String => v.is_string(),
        FieldType::Date => v.as_str().is_some_and(is_date),
        FieldType::StringList => v.is_string(),
        FieldType::ObjectList => false,
    };
    match (c.op, &c.value) {
        (Comparison::Exists, None) => Ok(()),
        (Comparison::Exists, Some(_)) => Err(ConditionError::ExistsTakesNoValue(field.clone())),
        (_, None) => Err(ConditionError::ValueRequired(field.clone())),
        (Comparison::Equals, Some(v)) if scalar_ok(v) => Ok(()),
        (Comparison::In, Some(Value::Array(vs)))
            if !vs.is_empty() && vs.len() <= 100 && vs.iter().all(scalar_ok) =>
        {
            Ok(())
        }
        (Comparison::AtLeast | Comparison::AtMost, Some(v))
            if (numeric || kind == FieldType::Date) && scalar_ok(v) =>
        {
            Ok(())
        }
        (op, Some(_)) => Err(ConditionError::DoesNotFit {
            field: field.clone(),
            op,
            kind,
        }),
    }
}

fn is_date(s: &str) -> bool {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).is_ok()
}

/// Evaluates checked conditions against a record. Values never leave: only
/// whether each condition holds.
pub fn evaluate(record: &Record, conditions: &[Condition]) -> Vec<Outcome> {
    conditions
        .iter()
        .map(|c| {
            let have = record.get(c.field.as_str()).filter(|v| !v.is_null());
            let matches = match (c.op, have, &c.value) {
                (Comparison::Exists, have, _) => have.is_some(),
                (_, None, _) | (_, _, None) => false,
                (Comparison::Equals, Some(h), Some(v)) => same(h, v),
                (Comparison::In, Some(h), Some(Value::Array(vs))) => vs.iter().any(|v| same(h, v)),
                (Comparison::In, _, _) => false,
                (Comparison::AtLeast, Some(h), Some(v)) => order(h, v).is_some_and(|o| o.is_ge()),
                (Comparison::AtMost, Some(h), Some(v)) => order(h, v).is_some_and(|o| o.is_le()),
            };
            Outcome {
                field: c.field.to_string(),
                op: c.op,
                matches,
            }
        })
        .collect()
}

/// Equality, with numbers compared by value and lists by membership.
fn order(have: &Value, want: &Value) -> Option<std::cmp::Ordering> {
    match (have, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        // Dates are YYYY-MM-DD: text order is date order.
        (Value::String(a), Value::String(b)) if is_date(a) && is_date(b) => {
            Some(a.as_str().cmp(b.as_str()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn cond(field: &str, op: Comparison, value: Option<Value>) -> Condition {
        Condition {
            field: FieldName::parse(field).unwrap(),
            op,
            value,
        }
    }

    #[test]
    fn conditions_hold_or_not_without_values() {
        let record: Record = json!({"marital_status": "已婚", "property_count": 2, "start_date": "2019-05-01", "types": ["a", "b"]}).as_object().unwrap().clone();
        let out = evaluate(
            &record,
            &[
                cond("marital_status", Comparison::Equals, Some(json!("已婚"))),
                cond("property_count", Comparison::AtLeast, Some(json!(1))),
                cond("property_count", Comparison::AtMost, Some(json!(1))),
                cond("start_date", Comparison::AtLeast, Some(json!("2020-01-01"))),
                cond(
                    "marital_status",
                    Comparison::In,
                    Some(json!(["离婚", "丧偶"])),
                ),
                cond("types", Comparison::Equals, Some(json!("b"))),
                cond("missing", Comparison::Exists, None),
            ],
        );
        let got: Vec<bool> = out.iter().map(|o| o.matches).collect();
        assert_eq!(got, [true, true, false, false, false, true, false]);
    }

    /// A list field equals a value it holds; dates compare as dates only
    /// when both sides are dates (a stored value that is not one never
    /// meets a date condition).
    #[test]
    fn lists_hold_values_and_only_dates_compare_as_dates() {
        let record: Record = json!({
            "tags": ["a", "b"],
            "start": "2021-03-04",
            "broken": "not a date",
            "year_only": "2021",
        })
        .as_object()
        .cloned()
        .unwrap();
        let since = Some(json!("2020-01-01"));
        let out = evaluate(
            &record,
            &[
                cond("tags", Comparison::Equals, Some(json!("a"))),
                cond("tags", Comparison::Equals, Some(json!("c"))),
                cond("start", Comparison::AtLeast, since.clone()),
                cond("broken", Comparison::AtLeast, since.clone()),
                cond("year_only", Comparison::AtLeast, since),
            ],
        );
        let got: Vec<bool> = out.iter().map(|o| o.matches).collect();
        assert_eq!(got, [true, false, true, false, false]);
    }

    /// The budget's memory stays bounded: past 100,000 counted residents,
    /// the counts of earlier days are dropped (today's are kept).
    #[test]
    fn the_budget_forgets_earlier_days_once_it_holds_100000_counts() {
        let budget = Budget::default();
        let day = time::macros::date!(2026 - 06 - 01);
        let next = time::macros::date!(2026 - 06 - 02);
        let resident = |i: u32| {
            let mut r = [0u8; 16];
            r[..4].copy_from_slice(&i.to_be_bytes());
            r
        };
        for i in 0..=100_000 {
            assert!(budget.charge("g", resident(i), day, 5, || 0));
        }
        // Over the bound: yesterday's go, today's stay.
        assert!(budget.charge("g", resident(0), next, 5, || 0));
        assert_eq!(budget.counts.lock().unwrap().len(), 1);
        assert!(budget.charge("g", resident(1), next, 5, || 0));
        assert_eq!(budget.counts.lock().unwrap().len(), 2);
        // At the bound exactly, nothing is dropped.
        let budget = Budget::default();
        for i in 0..100_000 {
            assert!(budget.charge("g", resident(i), day, 5, || 0));
        }
        assert!(budget.charge("g", resident(0), next, 5, || 0));
        assert_eq!(budget.counts.lock().unwrap().len(), 100_000);
    }

    /// The caller is told in the wire format's words, in either language.
    #[test]
    fn a_condition_that_does_not_fit_says_so_in_the_callers_terms() {
        let e = check_condition(
            &cond("n", Comparison::AtLeast, Some(json!("x"))),
            FieldType::Integer,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "condition on \"n\": >= does not fit a field of type integer with that value"
        );
        assert_eq!(
            e.zh(),
            "字段“n”的条件：>= 与类型为 integer 的字段或所给的值不符"
        );
        let e = check_condition(
            &cond("d", Comparison::In, Some(json!([true]))),
            FieldType::StringList,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("in does not fit a field of type string_list"),
            "{e}"
        );
        let e = check_condition(
            &cond("s", Comparison::Exists, Some(json!(1))),
            FieldType::String,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "condition on \"s\": exists takes no value");
        assert_eq!(e.zh(), "字段“s”的条件：exists 不带值");
        let e =
            check_condition(&cond("s", Comparison::Equals, None), FieldType::String).unwrap_err();
        assert_eq!(e.to_string(), "condition on \"s\": a value is required");
        assert_eq!(e.zh(), "字段“s”的条件：需要一个值");
    }

    #[test]
    fn values_must_fit_the_field_type() {
        for (op, value, kind) in [
            (Comparison::Equals, json!("x"), FieldType::Integer),
            (Comparison::Equals, json!(1), FieldType::Boolean),
            (Comparison::Equals, json!("2026-13-01"), FieldType::Date),
            (Comparison::In, json!([1, "x"]), FieldType::Integer),
            (Comparison::In, json!([]), FieldType::String),
            (
                Comparison::In,
                json!((0..101).collect::<Vec<u32>>()),
                FieldType::Integer,
            ),
        ] {
            assert!(
                check_condition(&cond("f", op, Some(value.clone())), kind).is_err(),
                "{op:?} {value} on {kind:?}"
            );
        }
        assert!(
            check_condition(
                &cond("f", Comparison::Equals, Some(json!(true))),
                FieldType::Boolean
            )
            .is_ok()
        );
        assert!(
            check_condition(
                &cond("f", Comparison::In, Some(json!([1, 2]))),
                FieldType::Integer
            )
            .is_ok()
        );
        let hundred = json!((0..100).collect::<Vec<u32>>());
        assert!(
            check_condition(
                &cond("f", Comparison::In, Some(hundred)),
                FieldType::Integer
            )
            .is_ok()
        );
        assert!(
            check_condition(
                &cond("n", Comparison::AtLeast, Some(json!("x"))),
                FieldType::Integer
            )
            .is_err()
        );
        assert!(
            check_condition(
                &cond("n", Comparison::AtLeast, Some(json!(3000))),
                FieldType::Integer
            )
            .is_ok()
        );
        assert!(
            check_condition(
                &cond("s", Comparison::AtLeast, Some(json!("a"))),
                FieldType::String
            )
            .is_err()
        );
        assert!(
            check_condition(
                &cond("s", Comparison::Exists, Some(json!(1))),
                FieldType::String
            )
            .is_err()
        );
        assert!(
            check_condition(
                &cond("d", Comparison::AtMost, Some(json!("2026-01-01"))),
                FieldType::Date
            )
            .is_ok()
        );
    }

    #[test]
    fn a_condition_is_a_granted_predicate_only_exactly() {
        let granted = cond("contribution_base", Comparison::AtLeast, Some(json!(3000)));
        assert!(cond("contribution_base", Comparison::AtLeast, Some(json!(3000))).is(&granted));
        assert!(
            cond(
                "contribution_base",
                Comparison::AtLeast,
                Some(json!(3000.0))
            )
            .is(&granted)
        );
        assert!(!cond("contribution_base", Comparison::AtLeast, Some(json!(2999))).is(&granted));
        assert!(!cond("contribution_base", Comparison::AtMost, Some(json!(3000))).is(&granted));
        assert!(!cond("contribution_base", Comparison::Exists, None).is(&granted));
        assert!(!cond("other", Comparison::AtLeast, Some(json!(3000))).is(&granted));
        let exists = cond("marriage_status", Comparison::Exists, None);
        assert!(cond("marriage_status", Comparison::Exists, None).is(&exists));
        assert!(!cond("marriage_status", Comparison::Exists, Some(json!(1))).is(&exists));
        let set = cond("status", Comparison::In, Some(json!(["a", "b"])));
        assert!(cond("status", Comparison::In, Some(json!(["b", "a"]))).is(&set));
        assert!(!cond("status", Comparison::In, Some(json!(["a"]))).is(&set));
        assert!(!cond("status", Comparison::In, Some(json!(["a", "b", "c"]))).is(&set));
        assert!(!cond("status", Comparison::In, Some(json!(["a", "a"]))).is(&set));
    }

    #[test]
    fn the_budget_counts_per_grant_resident_and_day() {
        let budget = Budget::default();
        let day = time::macros::date!(2026 - 12 - 06);
        let r = [7u8; 16];
        let mut seeded = 0;
        for _ in 0..2 {
            assert!(budget.charge("g", r, day, 3, || {
                seeded += 1;
                1
            }));
        }
        assert_eq!(seeded, 1, "the log is read once a day");
        assert!(
            !budget.charge("g", r, day, 3, || 0),
            "1 from the log, 2 here: used up"
        );
        assert!(budget.charge("h", r, day, 3, || 0), "another grant");
        assert!(
            budget.charge("g", [8u8; 16], day, 3, || 0),
            "another resident"
        );
        assert!(
            budget.charge("g", r, day.next_day().unwrap(), 3, || 0),
            "the next day"
        );
    }

    proptest! {
        /// Whatever the record and the conditions, an answer holds only field names, comparisons and booleans.
        #[test]
        fn an_answer_reveals_no_value(secret in "[a-z0-9]{8,16}", n in 0i64..100_000, probe in "[a-z0-9]{1,16}") {
            let record: Record = json!({"name": secret, "amount": n}).as_object().unwrap().clone();
            let out = evaluate(&record, &[
                cond("name", Comparison::Equals, Some(json!(probe))),
                cond("amount", Comparison::AtLeast, Some(json!(n / 2))),
                cond("name", Comparison::Exists, None),
            ]);
            let text = serde_json::to_string(&out).unwrap();
            prop_assert!(!text.contains(&secret));
            // Field names, comparisons and booleans hold no digit: no number can leak.
            prop_assert!(!text.chars().any(|c| c.is_ascii_digit()), "{}", text);
        }
    }
}
