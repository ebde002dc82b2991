//! Minimization: drop every field the decision does not grant, mask what it
//! grants only masked (最小必要, PIPL Art. 6).
//!
//! The output is built from the allowed list, never by removing from the
//! record, so a field the catalog or grant does not know cannot slip through.

use serde_json::{Map, Value};

use crate::policy::Disclosed;
use crate::policy::model::Mask;

/// A record as stored or as an upstream returns it.
pub type Record = Map<String, Value>;

/// The record cut down to `fields`, masks applied. Absent fields stay absent.
/// The granted values are moved out of `record`; the rest is dropped with it.
pub fn minimize(mut record: Record, fields: &[Disclosed]) -> Record {
    let mut out = Map::new();
    for f in fields {
        if let Some((name, value)) = record.remove_entry(f.name.as_str()) {
            let value = match f.mask {
                Some(mask) => apply_mask(mask, &value),
                None => value,
            };
            out.insert(name, value);
        }
    }
    out
}

/// Compound surnames (复姓) kept whole by the name mask.
const COMPOUND_SURNAMES: &[&str] = &[
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "令狐", "慕容", "尉迟", "公孙", "夏侯", "长孙",
    "宇文", "司徒", "端木", "独孤", "南宫", "西门", "轩辕", "呼延",
];

/// Applies one mask. A value of an unexpected shape is redacted, not passed through.
pub fn apply_mask(mask: Mask, value: &Value) -> Value {
    let Some(s) = value.as_str() else {
        return if value.is_null() {
            Value::Null
        } else {
            redacted()
        };
    };
    let chars: Vec<char> = s.chars().collect();
    let masked = match mask {
        Mask::IdNumber if chars.len() >= 11 => {
            let head: String = chars[..6].iter().collect();
            let tail: String = chars[chars.len() - 4..].iter().collect();
            format!("{head}{}{tail}", "*".repeat(chars.len() - 10))
        }
        Mask::Mobile if chars.len() == 11 && chars.iter().all(char::is_ascii_digit) => {
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[7..].iter().collect();
            format!("{head}****{tail}")
        }
        Mask::Name if !chars.is_empty() => {
            let surname = COMPOUND_SURNAMES
                .iter()
                .find(|c| s.starts_with(*c) && chars.len() > 2)
                .map_or_else(|| chars[0].to_string(), |c| (*c).to_owned());
            format!("{surname}*")
        }
        Mask::Address => return address_to_district(s).map_or_else(redacted, Value::String),
        Mask::Year if chars.len() >= 4 && chars[..4].iter().all(char::is_ascii_digit) => {
            chars[..4].iter().collect()
        }
        _ => return redacted(),
    };
    Value::String(masked)
}

fn redacted() -> Value {
    Value::String("***".to_owned())
}

/// The address up to and including its district (区/县/旗), after the city if
/// there is one; `None` when no district can be found.
fn address_to_district(s: &str) -> Option<String> {
    let start = s.find('市').map_or(0, |i| i + '市'.len_utf8());
    let rest = &s[start..];
    let end = rest
        .char_indices()
        .find(|(_, c)| matches!(c, '区' | '县' | '旗'))?;
    Some(s[..start + end.0 + end.1.len_utf8()].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldName;
    use proptest::prelude::*;
    use serde_json::json;

    fn d(name: &str, mask: Option<Mask>) -> Disclosed {
        Disclosed {
            name: FieldName::parse(name).unwrap(),
            mask,
        }
    }

    #[test]
    fn masks_follow_gbt_35273_practice() {
        let m = |mask, v: &str| apply_mask(mask, &json!(v));
        assert_eq!(
            m(Mask::IdNumber, "110101199001011234"),
            json!("110101********1234")
        );
        assert_eq!(m(Mask::Mobile, "13812345678"), json!("138****5678"));
        assert_eq!(m(Mask::Mobile, "12345"), json!("***"));
        assert_eq!(m(Mask::Name, "张三丰"), json!("张*"));
        assert_eq!(m(Mask::Name, "欧阳娜娜"), json!("欧阳*"));
        assert_eq!(
            m(Mask::Address, "北京市东城区景山街道吉祥胡同12号"),
            json!("北京市东城区")
        );
        assert_eq!(
            m(Mask::Address, "浙江省杭州市西湖区文三路90号"),
            json!("浙江省杭州市西湖区")
        );
        assert_eq!(m(Mask::Address, "某处"), json!("***"));
        assert_eq!(m(Mask::Year, "1990-01-01"), json!("1990"));
        assert_eq!(apply_mask(Mask::IdNumber, &json!(42)), json!("***"));
    }

    #[test]
    fn keeps_only_granted_fields() {
        let record =
            json!({"name": "张三", "ethnicity": "汉族", "id_number": "110101199001011234"});
        let out = minimize(
            record.as_object().unwrap().clone(),
            &[d("name", None), d("id_number", Some(Mask::IdNumber))],
        );
        assert_eq!(
            Value::Object(out),
            json!({"name": "张三", "id_number": "110101********1234"})
        );
    }

    proptest! {
        /// For any record and any grant, nothing leaves that the grant does not name,
        /// and a masked field never leaves in clear.
        #[test]
        fn minimization_never_leaks(
            record in proptest::collection::btree_map("[a-z]{1,6}", "[0-9a-z]{0,20}", 0..12),
            granted in proptest::collection::btree_map("[a-z]{1,6}", proptest::option::of(prop_oneof![Just(Mask::IdNumber), Just(Mask::Redact), Just(Mask::Mobile)]), 0..6),
        ) {
            let rec: Record = record.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            let fields: Vec<Disclosed> = granted.iter().map(|(k, m)| d(k, *m)).collect();
            let out = minimize(rec, &fields);
            for (k, v) in &out {
                let grant = granted.get(k);
                prop_assert!(grant.is_some(), "field {} left without a grant", k);
                if let Some(Some(_)) = grant {
                    let original = &record[k];
                    prop_assert!(v != &json!(original), "masked field {} left in clear", k);
                }
            }
        }
    }
}
