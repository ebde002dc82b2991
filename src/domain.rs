//! The gateway's vocabulary as types whose only constructor validates.
//!
//! Once a value is a [`ResidentId`], a [`DatasetId`] or a [`DeptId`], nobody
//! checks it again: parse, don't validate.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month};

/// Why a value could not become one of the domain's identifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: {reason}")]
pub struct InvalidId {
    /// Which kind of identifier, for the message ("department id", …).
    pub what: &'static str,
    /// The offending input, cut to a safe length.
    pub value: String,
    /// What is wrong with it.
    pub reason: IdFault,
}

/// What is wrong with an identifier, said in English (its `Display`) or
/// Chinese ([`IdFault::zh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFault {
    /// Nothing was given.
    Empty,
    /// A code must start with a lower-case letter.
    CodeStart,
    /// Longer than allowed.
    TooLong,
    /// A code's characters.
    CodeChars,
    /// A dataset id without its owner.
    NotOwnerDotName,
    /// A grant id's length.
    GrantLength,
    /// A grant id's first character.
    GrantStart,
    /// A grant id's characters.
    GrantChars,
    /// A case reference's length.
    CaseRefLength,
    /// A case reference's characters.
    CaseRefChars,
    /// A case reference's percent-encoding.
    CaseRefEncoding,
    /// A resident ID's length.
    ResidentLength,
    /// A resident ID's first 17 characters.
    ResidentDigits,
    /// A resident ID's check character's form.
    ResidentLast,
    /// A resident ID's area code.
    ResidentProvince,
    /// A resident ID's birth date.
    ResidentBirthDate,
    /// A resident ID's check character.
    ResidentCheck,
    /// The 17-digit body an ID is built from.
    ResidentBody,
}

impl IdFault {
    /// In English.
    pub fn en(self) -> &'static str {
        match self {
            Self::Empty => "it is empty",
            Self::CodeStart => "it must start with a lower-case letter",
            Self::TooLong => "it is too long",
            Self::CodeChars => "only lower-case letters, digits and '_' are allowed",
            Self::NotOwnerDotName => "it must be <department>.<name>",
            Self::GrantLength => "it must have 1 to 96 characters",
            Self::GrantStart => "it must start with a lower-case letter or digit",
            Self::GrantChars => "only lower-case letters, digits, '-', '_' and '.' are allowed",
            Self::CaseRefLength => "it must have 1 to 64 characters",
            Self::CaseRefChars => {
                "only letters, digits, '-', '_', '/', '.', ':', '#' and the brackets of a document number (〔〕()（）[]【】) are allowed"
            }
            Self::CaseRefEncoding => {
                "it is not percent-encoded UTF-8 (RFC 3986: send a Chinese case reference as %E6%B0%91…)"
            }
            Self::ResidentLength => "it must have exactly 18 characters",
            Self::ResidentDigits => "the first 17 characters must be digits",
            Self::ResidentLast => "the last character must be a digit or X",
            Self::ResidentProvince => "the area code names no province",
            Self::ResidentBirthDate => "the birth date is not a plausible date",
            Self::ResidentCheck => "the check character does not match (ISO 7064 MOD 11-2)",
            Self::ResidentBody => "the body must have 17 digits",
        }
    }

    /// In Chinese.
    pub fn zh(self) -> &'static str {
        match self {
            Self::Empty => "不能为空",
            Self::CodeStart => "必须以小写字母开头",
            Self::TooLong => "过长",
            Self::CodeChars => "只能包含小写字母、数字和“_”",
            Self::NotOwnerDotName => "必须为“部门.名称”的形式",
            Self::GrantLength => "长度须为 1 至 96 个字符",
            Self::GrantStart => "必须以小写字母或数字开头",
            Self::GrantChars => "只能包含小写字母、数字和“-”“_”“.”",
            Self::CaseRefLength => "长度须为 1 至 64 个字符",
            Self::CaseRefChars => {
                "只能包含文字、数字、“-”“_”“/”“.”“:”“#”和文号所用的括号（〔〕()（）[]【】）"
            }
            Self::CaseRefEncoding => {
                "不是按 UTF-8 百分号编码的文本（RFC 3986：中文办件编号须编码为 %E6%B0%91… 的形式发送）"
            }
            Self::ResidentLength => "必须为 18 位",
            Self::ResidentDigits => "前 17 位必须为数字",
            Self::ResidentLast => "最后一位必须为数字或 X",
            Self::ResidentProvince => "行政区划代码不对应任何省份",
            Self::ResidentBirthDate => "出生日期不是有效日期",
            Self::ResidentCheck => "校验码不符（ISO 7064 MOD 11-2）",
            Self::ResidentBody => "本体码必须为 17 位数字",
        }
    }
}

impl fmt::Display for IdFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.en())
    }
}

impl InvalidId {
    fn new(what: &'static str, value: &str, reason: IdFault) -> Self {
        Self {
            what,
            value: value.chars().take(40).collect(),
            reason,
        }
    }
}

/// A lower-case code: a letter, then letters, digits or `_` (department ids,
/// roles, purpose codes, field names).
fn check_code(s: &str, max: usize) -> Result<(), IdFault> {
    let mut chars = s.chars();
    match chars.next() {
        None => return Err(IdFault::Empty),
        Some(c) if !c.is_ascii_lowercase() => return Err(IdFault::CodeStart),
        Some(_) => {}
    }
    if s.len() > max {
        return Err(IdFault::TooLong);
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(IdFault::CodeChars);
    }
    Ok(())
}

macro_rules! code_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        ///
        /// Held shared: a copy is a reference count, not an allocation.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Parses and validates.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let check: fn(&str) -> Result<(), IdFault> = $check;
                check(s).map_err(|reason| InvalidId::new($what, s, reason))?;
                Ok(Self(s.into()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as shared text.
            pub fn shared(&self) -> std::sync::Arc<str> {
                self.0.clone()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

code_newtype!(
    /// A department id (`gongan`, `minzheng` …): an owner and/or consumer of data.
    DeptId,
    "department id",
    |s| check_code(s, 32)
);
code_newtype!(
    /// A role held by a caller (`dibao_reviewer`, `privacy_officer` …).
    Role,
    "role",
    |s| check_code(s, 64)
);
code_newtype!(
    /// A purpose code (用途), named on every query and checked against the grant.
    Purpose,
    "purpose code",
    |s| check_code(s, 64)
);
code_newtype!(
    /// A field of a dataset (`hukou_address`).
    FieldName,
    "field name",
    |s| check_code(s, 64)
);
code_newtype!(
    /// A dataset id, `<owner>.<name>` (`gongan.hukou`).
    DatasetId,
    "dataset id",
    |s| {
        let (owner, name) = s.split_once('.').ok_or(IdFault::NotOwnerDotName)?;
        check_code(owner, 32)?;
        check_code(name, 64)
    }
);
code_newtype!(
    /// A grant id (`minzheng-dibao-hukou`).
    GrantId,
    "grant id",
    |s| {
        if s.is_empty() || s.len() > 96 {
            return Err(IdFault::GrantLength);
        }
        if !s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            return Err(IdFault::GrantStart);
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.')
        {
            return Err(IdFault::GrantChars);
        }
        Ok(())
    }
);
code_newtype!(
    /// A case reference (办件编号): letters (Chinese too), digits, `-_/.:#`
    /// and the brackets of a document number (`民低保〔2026〕123号`), at most
    /// 64 characters.
    CaseRef,
    "case reference",
    |s| {
        if s.is_empty() || s.chars().count() > 64 {
            return Err(IdFault::CaseRefLength);
        }
        if !s.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(
                    c,
                    '-' | '_' | '/' | '.' | ':' | '#' | '〔' | '〕' | '(' | ')' | '（' | '）' | '[' | ']' | '【' | '】'
                )
        }) {
            return Err(IdFault::CaseRefChars);
        }
        Ok(())
    }
);

impl CaseRef {
    /// A case reference as `X-Case-Ref` carries it: plain ASCII, or
    /// percent-encoded UTF-8 (RFC 3986), decoded before it is checked, so a
    /// 文号 such as `民低保〔2026〕123号` is sent as `%E6%B0%91…`. A `%` not
    /// followed by two hex digits, or bytes that are not UTF-8, are refused.
    pub fn from_header(raw: &str) -> Result<Self, InvalidId> {
        if !raw.contains('%') {
            return Self::parse(raw);
        }
        let bytes = raw.as_bytes();
        let well_formed = bytes.iter().enumerate().all(|(i, b)| {
            *b != b'%'
                || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        });
        let decoded = percent_encoding::percent_decode_str(raw).decode_utf8();
        match decoded {
            Ok(text) if well_formed => Self::parse(&text),
            _ => Err(InvalidId::new(
                "case reference",
                raw,
                IdFault::CaseRefEncoding,
            )),
        }
    }
}

impl DatasetId {
    /// The department that owns the dataset (the part before the dot).
    pub fn owner(&self) -> &str {
        self.0.split_once('.').map_or(&self.0, |(owner, _)| owner)
    }
}

/// A resident ID number (居民身份证号, GB 11643-1999): 6-digit area code,
/// 8-digit birth date, 3-digit sequence, ISO 7064 MOD 11-2 check character.
///
/// Stored upper-case (`x` is accepted and normalised to `X`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResidentId(String);

/// Province-level codes in use in the first two digits of an area code.
const PROVINCES: &[u8] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83,
];

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: &[u8; 11] = b"10X98765432";

impl ResidentId {
    /// Parses an 18-character ID, checking its shape, area code, birth date
    /// and check character.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let err = |reason| InvalidId::new("resident ID", s, reason);
        let bytes = s.as_bytes();
        if bytes.len() != 18 || !s.is_ascii() {
            return Err(err(IdFault::ResidentLength));
        }
        if !bytes[..17].iter().all(u8::is_ascii_digit) {
            return Err(err(IdFault::ResidentDigits));
        }
        let last = bytes[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == b'X') {
            return Err(err(IdFault::ResidentLast));
        }
        let digits: Vec<u32> = bytes[..17].iter().map(|b| u32::from(b - b'0')).collect();
        let province = (digits[0] * 10 + digits[1]) as u8;
        if !PROVINCES.contains(&province) {
            return Err(err(IdFault::ResidentProvince));
        }
        if birth_date(&digits).is_none() {
            return Err(err(IdFault::ResidentBirthDate));
        }
        if check_char(&digits) != last {
            return Err(err(IdFault::ResidentCheck));
        }
        let mut normal = s.to_owned();
        normal.make_ascii_uppercase();
        Ok(Self(normal))
    }

    /// Builds a valid ID from its first 17 digits by computing the check character.
    pub fn from_body(body17: &str) -> Result<Self, InvalidId> {
        let digits: Vec<u32> = body17
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| u32::from(b - b'0'))
            .collect();
        if digits.len() != 17 || body17.len() != 17 {
            return Err(InvalidId::new("resident ID", body17, IdFault::ResidentBody));
        }
        let full = format!("{body17}{}", char::from(check_char(&digits)));
        Self::parse(&full)
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The birth date encoded in the ID.
    pub fn birth_date(&self) -> Date {
        let digits: Vec<u32> = self
            .0
            .bytes()
            .take(17)
            .map(|b| u32::from(b - b'0'))
            .collect();
        // The constructor checked that the date is valid.
        birth_date(&digits).unwrap_or(Date::MIN)
    }

    /// Whether the sequence digit marks a man (odd) or a woman (even).
    pub fn is_male(&self) -> bool {
        self.0.as_bytes()[16] % 2 == 1
    }

    /// The ID masked as `110101********1234` (first 6, last 4), safe to show.
    pub fn masked(&self) -> String {
        format!("{}********{}", &self.0[..6], &self.0[14..])
    }
}

/// Never prints the whole ID, so a stray `{:?}` cannot put one in a log.
impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

fn check_char(digits: &[u32]) -> u8 {
    let sum: u32 = digits.iter().zip(WEIGHTS).map(|(d, w)| d * w).sum();
    CHECK_CHARS[(sum % 11) as usize]
}

fn birth_date(digits: &[u32]) -> Option<Date> {
    let num = |r: std::ops::Range<usize>| digits[r].iter().fold(0, |acc, d| acc * 10 + d);
    let year = i32::try_from(num(6..10)).ok()?;
    let month = Month::try_from(u8::try_from(num(10..12)).ok()?).ok()?;
    let day = u8::try_from(num(12..14)).ok()?;
    if !(1900..=2100).contains(&year) {
        return None;
    }
    Date::from_calendar_date(year, month, day).ok()
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Fills `out` from hex text of exactly its length (either case);
/// whether the text was that.
pub fn unhex(text: &str, out: &mut [u8]) -> bool {
    let digits = text.as_bytes();
    if digits.len() != out.len() * 2 {
        return false;
    }
    let value = |c: u8| char::from(c).to_digit(16);
    for (i, byte) in out.iter_mut().enumerate() {
        let (Some(hi), Some(lo)) = (value(digits[2 * i]), value(digits[2 * i + 1])) else {
            return false;
        };
        *byte = u8::try_from(hi * 16 + lo).unwrap_or(0);
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn unhex_reads_what_hex_writes() {
        let mut out = [0u8; 5];
        assert!(super::unhex(
            &super::hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]),
            &mut out
        ));
        assert_eq!(out, [0x00, 0x0f, 0xa0, 0xff, 0x5c]);
        assert!(!super::unhex("0g", &mut [0u8; 1]));
        assert!(!super::unhex("00", &mut [0u8; 2]));
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xa0, 0xff, 0x5c]), "000fa0ff5c");
        assert_eq!(super::hex(&[]), "");
    }

    use super::*;

    #[test]
    fn accepts_a_valid_id_and_normalises_x() {
        // 11010519491231002X is the standard's own example.
        let id = ResidentId::parse("11010519491231002x").unwrap();
        assert_eq!(id.as_str(), "11010519491231002X");
        assert!(!id.is_male());
        assert_eq!(id.masked(), "110105********002X");
        assert_eq!(id.birth_date().year(), 1949);
    }

    #[test]
    fn rejects_wrong_check_character() {
        let err = ResidentId::parse("110105194912310021").unwrap_err();
        assert!(err.reason.to_string().contains("check character"));
    }

    #[test]
    fn rejects_impossible_birth_date_and_unknown_province() {
        assert!(ResidentId::from_body("11010519490230002").is_err());
        assert!(ResidentId::from_body("99010519491231002").is_err());
        assert!(ResidentId::parse("1101051949123100").is_err());
        assert!(ResidentId::parse("11010519491231002Ⅹ").is_err());
    }

    #[test]
    fn debug_never_shows_the_whole_id() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert!(!format!("{id:?}").contains("19491231"));
    }

    #[test]
    fn codes_reject_path_tricks() {
        assert!(DatasetId::parse("gongan.hukou").is_ok());
        assert!(DatasetId::parse("../etc").is_err());
        assert!(DatasetId::parse("gongan.hukou/../x").is_err());
        assert!(DeptId::parse("Gongan").is_err());
        assert!(CaseRef::parse("MZ-2026-000123").is_ok());
        assert!(CaseRef::parse("a b").is_err());
        assert!(CaseRef::parse("a\0b").is_err());
        // A 文号, sent percent-encoded as UTF-8.
        let wenhao = "民低保〔2026〕123号";
        let sent: String =
            percent_encoding::utf8_percent_encode(wenhao, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(CaseRef::from_header(&sent).unwrap().as_str(), wenhao);
        assert_eq!(
            CaseRef::from_header("MZ-2026-000123").unwrap().as_str(),
            "MZ-2026-000123"
        );
        for bad in ["%E6%B0", "%ZZ", "MZ%", "%20", "%00", "%E6%B0%91%"] {
            let e = CaseRef::from_header(bad).unwrap_err();
            assert!(
                matches!(e.reason, IdFault::CaseRefEncoding | IdFault::CaseRefChars),
                "{bad}: {e}"
            );
        }
        assert_eq!(DatasetId::parse("gongan.hukou").unwrap().owner(), "gongan");
    }
}
