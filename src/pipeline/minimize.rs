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

/// The granted fields of one record, masked where the grant says, as the
/// JSON object a lookup answer carries (members in name order), and the
/// names of the fields it holds (what the audit event records).
#[derive(Debug)]
pub struct Disclosure {
    /// The rendered object.
    pub record: Box<serde_json::value::RawValue>,
    /// The fields disclosed, in name order.
    pub names: Vec<crate::audit::event::Text>,
}

impl Disclosure {
    /// A minimized record, rendered.
    pub fn of(record: &Record) -> Result<Self, serde_json::Error> {
        Ok(Self {
            record: serde_json::value::to_raw_value(record)?,
            names: record.keys().map(|k| k.as_str().into()).collect(),
        })
    }
}

/// Renders what a scan of a stored record picked: `picked[i]` is the stored
/// JSON text of `fields[i]` (if the record has it). Unmasked values are
/// copied as stored; masked ones are masked as [`minimize`] masks them. The
/// result holds exactly what [`minimize`] of the same record holds.
pub fn render(
    fields: &[Disclosed],
    picked: &[Option<&serde_json::value::RawValue>],
) -> Result<Disclosure, serde_json::Error> {
    let mut order: Vec<usize> = (0..fields.len())
        .filter(|i| picked.get(*i).is_some_and(Option::is_some))
        .collect();
    order.sort_unstable_by(|a, b| fields[*a].name.as_str().cmp(fields[*b].name.as_str()));
    let mut out = Vec::with_capacity(256);
    let mut names = Vec::with_capacity(order.len());
    out.push(b'{');
    for (n, i) in order.into_iter().enumerate() {
        let (f, Some(Some(raw))) = (&fields[i], picked.get(i)) else {
            continue;
        };
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f.key.as_bytes());
        match f.mask {
            None => out.extend_from_slice(raw.get().as_bytes()),
            Some(mask) => write_masked(mask, raw.get(), &mut out)?,
        }
        names.push(f.name.shared());
    }
    out.push(b'}');
    let text = String::from_utf8(out).map_err(serde::de::Error::custom)?;
    Ok(Disclosure {
        record: serde_json::value::RawValue::from_string(text)?,
        names,
    })
}

/// Writes the stored JSON value `raw` masked into `out`, as [`apply_mask`]
/// masks it: null stays null, a string is masked, a value of another type
/// redacted. A value that cannot be read (a lone surrogate in a string,
/// say) is an error, as it is when the record is decoded whole.
fn write_masked(mask: Mask, raw: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match serde_json::from_str::<Option<String>>(raw) {
        Ok(None) => out.extend_from_slice(b"null"),
        Ok(Some(s)) => match mask_text(mask, &s) {
            Some(masked) => serde_json::to_writer(&mut *out, &masked)?,
            None => serde_json::to_writer(&mut *out, REDACTED)?,
        },
        // Another type than text: redacted.
        Err(e) if e.is_data() => serde_json::to_writer(&mut *out, REDACTED)?,
        Err(e) => return Err(e),
    }
    Ok(())
}

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
    match value {
        Value::Null => Value::Null,
        Value::String(s) => {
            Value::String(mask_text(mask, s).unwrap_or_else(|| REDACTED.to_owned()))
        }
        _ => Value::String(REDACTED.to_owned()),
    }
}

/// What a value the mask cannot apply to becomes.
const REDACTED: &str = "***";

/// The masked text, or `None` where the mask does not fit the text (it is
/// then redacted).
fn mask_text(mask: Mask, s: &str) -> Option<String> {
    let chars = s.chars().count();
    // Where the character at `index` starts (the end, one past the last).
    let at = |index: usize| s.char_indices().nth(index).map_or(s.len(), |(i, _)| i);
    match mask {
        Mask::IdNumber if chars >= 11 => {
            let mut out = String::with_capacity(s.len());
            out.push_str(&s[..at(6)]);
            out.extend(std::iter::repeat_n('*', chars - 10));
            out.push_str(&s[at(chars - 4)..]);
            Some(out)
        }
        // Eleven ASCII digits: its characters are its bytes.
        Mask::Mobile if chars == 11 && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("{}****{}", &s[..3], &s[7..]))
        }
        Mask::Name if chars > 0 => {
            let surname = COMPOUND_SURNAMES
                .iter()
                .find(|c| s.starts_with(*c) && chars > 2)
                .map_or_else(|| &s[..at(1)], |c| *c);
            Some(format!("{surname}*"))
        }
        Mask::Address => address_to_district(s),
        // Four ASCII digits first: its first four characters are its first four bytes.
        Mask::Year if chars >= 4 && s.bytes().take(4).all(|b| b.is_ascii_digit()) => {
            Some(s[..4].to_owned())
        }
        _ => None,
    }
}

/// The address up to and including its district (区/县/旗, or a county-level
/// 市), after its province and city where it names them; only the province
/// and city where no district can be told apart (cities without districts
/// such as 东莞市 and 中山市 go straight to towns and streets); `None` when
/// not even a city can be found. Each unit is taken only when its name is
/// short and holds no mark of a street, town, village, compound or building,
/// so 超市, 市场, 城市, 小区, 社区 and 园区 are never taken for one: the mask
/// may reveal less than the district, never the street or compound.
fn address_to_district(s: &str) -> Option<String> {
    // The province (省, 自治区, 特别行政区), if the address starts with one.
    let province = ["省", "自治区", "特别行政区"]
        .iter()
        .filter_map(|u| s.find(u).map(|i| i + u.len()))
        .min()
        .filter(|end| is_unit_name(&s[..*end], 12));
    let after_province = province.unwrap_or(0);
    // The city (市, 自治州, 地区, 盟), right after it.
    let rest = &s[after_province..];
    let city = rest
        .char_indices()
        .find_map(|(i, _)| {
            let here = &rest[i..];
            ["市", "自治州", "地区", "盟"]
                .iter()
                .find(|u| here.starts_with(**u) && !street_follows(&here[u.len()..]))
                .map(|u| (i, i + u.len()))
        })
        .filter(|(name_end, _)| {
            is_district_name(&rest[..*name_end]) || is_unit_name(&rest[..*name_end], 8)
        })
        .map(|(_, end)| after_province + end);
    let start = city.unwrap_or(after_province);
    let rest = &s[start..];
    let district = rest
        .char_indices()
        .find(|(i, c)| {
            matches!(c, '区' | '县' | '旗' | '市') && !street_follows(&rest[i + c.len_utf8()..])
        })
        .filter(|(i, _)| is_district_name(&rest[..*i]))
        .map(|(i, c)| start + i + c.len_utf8());
    district.or(city).map(|end| s[..end].to_owned())
}

/// Whether what follows a unit's suffix makes it part of a street or a
/// place instead (城市路, 市场, 新区街): no city or district is followed at
/// once by one of these.
fn street_follows(after: &str) -> bool {
    after.starts_with(['路', '街', '道', '巷', '弄', '场'])
}

/// Whether `name` (the text of a province or city before its suffix) can be
/// such a name: at most `longest` characters, none a mark of what lies below.
fn is_unit_name(name: &str, longest: usize) -> bool {
    let chars = name.chars().count();
    chars >= 1
        && chars <= longest
        && !name.contains(MARKS)
        && !name.chars().any(|c| c.is_ascii_alphanumeric())
}

// Marks of what lies below a district. A few real districts carry one
// (道里区, 乡宁县): those addresses are masked to the city, which
// reveals less, never more.
const MARKS: &[char] = &[
    '街', '路', '道', '巷', '弄', '号', '镇', '乡', '村', '屯', '组', '社', '小', '园', '苑', '庭',
    '府', '楼', '栋', '幢', '座', '室', '层', '院', '宅', '寓', '墅', '舍', '厦', '场', '0', '1',
    '2', '3', '4', '5', '6', '7', '8', '9',
];

/// Whether `name` (what comes before 区/县/旗/市) can be a district's name.
fn is_district_name(name: &str) -> bool {
    let chars = name.chars().count();
    // Autonomous counties and banners carry long names (双江拉祜族佤族布朗族傣族自治县).
    let longest = if name.ends_with("自治") { 20 } else { 5 };
    chars >= 1
        && chars <= longest
        && !name.chars().any(|c| c.is_ascii_alphabetic())
        && (name.ends_with("自治") || !name.contains(MARKS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FieldName;
    use proptest::prelude::*;
    use serde_json::json;

    fn d(name: &str, mask: Option<Mask>) -> Disclosed {
        Disclosed::new(FieldName::parse(name).unwrap(), mask)
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
        // Values a mask cannot apply to are redacted whole, never passed on
        // and never a panic.
        assert_eq!(m(Mask::Name, ""), json!("***"));
        // Two characters that spell a compound surname are a surname and a
        // given name: only the first is shown.
        assert_eq!(m(Mask::Name, "欧阳"), json!("欧*"));
        assert_eq!(m(Mask::Year, "1990-05-01"), json!("1990"));
        for not_a_year in ["", "199", "未知日期", "19x0-01-01"] {
            assert_eq!(m(Mask::Year, not_a_year), json!("***"), "{not_a_year}");
        }
        assert_eq!(
            m(Mask::Address, "北京市东城区景山街道吉祥胡同12号"),
            json!("北京市东城区")
        );
        assert_eq!(
            m(Mask::Address, "浙江省杭州市西湖区文三路90号"),
            json!("浙江省杭州市西湖区")
        );
        assert_eq!(m(Mask::Address, "某处"), json!("***"));
        // Cities without districts, and compounds whose names hold 区.
        assert_eq!(
            m(Mask::Address, "广东省东莞市南城街道莲花小区8栋301"),
            json!("广东省东莞市")
        );
        assert_eq!(
            m(Mask::Address, "广东省中山市石岐街道幸福社区居委会旁"),
            json!("广东省中山市")
        );
        assert_eq!(m(Mask::Address, "东莞市虎门镇金龙小区"), json!("东莞市"));
        // 市 inside a street or a shop is no city; municipalities written without 市.
        assert_eq!(
            m(Mask::Address, "北京海淀区中关村大街27号中关村大厦超市"),
            json!("北京海淀区")
        );
        assert_eq!(
            m(Mask::Address, "上海浦东新区张江路城市之光小区8号"),
            json!("上海浦东新区")
        );
        assert_eq!(
            m(
                Mask::Address,
                "云南省西双版纳傣族自治州勐海县勐海镇曼贺路菜市场3号"
            ),
            json!("云南省西双版纳傣族自治州勐海县")
        );
        assert_eq!(
            m(Mask::Address, "广东省东莞市星河城A区3栋"),
            json!("广东省东莞市")
        );
        assert_eq!(
            m(Mask::Address, "新疆维吾尔自治区阿克苏地区阿克苏市解放路1号"),
            json!("新疆维吾尔自治区阿克苏地区阿克苏市")
        );
        assert_eq!(
            m(Mask::Address, "浙江省杭州市建德市新安江街道"),
            json!("浙江省杭州市建德市")
        );
        assert_eq!(
            m(
                Mask::Address,
                "云南省临沧市双江拉祜族佤族布朗族傣族自治县勐勐镇"
            ),
            json!("云南省临沧市双江拉祜族佤族布朗族傣族自治县")
        );
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
        /// A mask written into an answer's bytes is the mask applied to the
        /// value: for any text (quotes, escapes, control characters, CJK,
        /// surnames, digits) and for values that are not text.
        #[test]
        fn a_mask_written_into_the_answer_is_the_mask_applied(
            text in prop_oneof![
                "\\PC{0,24}",
                "[0-9X]{0,20}",
                "(欧阳|司马|张|王)[一-龥]{0,3}",
                "[\"\\\\\u{0}-\u{1f}a-z]{0,8}",
            ],
            other in prop_oneof![Just(json!(null)), Just(json!(13_812_345_678_u64)), Just(json!(true)), Just(json!([1])), Just(json!({"a": "b"}))],
            mask in proptest::sample::select(vec![Mask::IdNumber, Mask::Mobile, Mask::Name, Mask::Address, Mask::Year, Mask::Redact]),
        ) {
            for value in [Value::String(text.clone()), other.clone()] {
                let mut out = Vec::new();
                write_masked(mask, &value.to_string(), &mut out).unwrap();
                let written: Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(written, apply_mask(mask, &value), "{:?} of {}", mask, value);
            }
        }

        /// For any address built of a province, a city, a district (each
        /// may be missing), a street or town and a compound or building,
        /// the mask keeps a prefix that never reaches the street or the
        /// compound; with a city and a district, exactly up to the district.
        #[test]
        fn the_address_mask_never_reveals_the_street_or_compound(
            province in proptest::sample::select(vec!["", "广东省", "浙江省", "云南省", "新疆维吾尔自治区"]),
            city in proptest::sample::select(vec!["", "东莞市", "中山市", "杭州市", "北京市", "伊宁市", "西双版纳傣族自治州"]),
            district in proptest::sample::select(vec!["", "西湖区", "东城区", "建德市", "鄂托克前旗", "双江拉祜族佤族布朗族傣族自治县"]),
            street in "[南城莲花新华东方金龙幸福阳光长安]{1,4}",
            street_kind in proptest::sample::select(vec!["街道", "镇", "路", "乡", "大道", "市场路", "城市路"]),
            compound in "[南城莲花新华东方金龙幸福阳光长安]{1,3}",
            compound_kind in proptest::sample::select(vec!["小区", "社区", "花园", "园区", "村", "大厦", "超市", "A区"]),
            number in 1u32..999,
        ) {
            let street = format!("{street}{street_kind}");
            let compound = format!("{compound}{compound_kind}");
            let address = format!("{province}{city}{district}{street}{compound}{number}号");
            let masked = match apply_mask(Mask::Address, &json!(address)) {
                Value::String(m) => m,
                other => panic!("{other:?}"),
            };
            if masked != "***" {
                prop_assert!(address.starts_with(&masked), "{} is not a prefix of {}", masked, address);
                let kept = &address[..masked.len()];
                prop_assert!(kept.len() <= format!("{province}{city}{district}").len(), "{} reveals more than the district of {}", masked, address);
            }
            if !city.is_empty() && !district.is_empty() {
                prop_assert_eq!(masked, format!("{province}{city}{district}"));
            }
        }

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
