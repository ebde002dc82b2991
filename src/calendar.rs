//! The working-day calendar: Monday to Friday are working days, except the
//! statutory holidays (法定节假日), and a weekend day the State Council
//! names as a make-up working day (调休上班) is one. The schedule is
//! announced each year (国务院办公厅关于某年部分节假日安排的通知) and
//! kept in a file (`[calendar] file`), one `[[year]]` per notice. A year the
//! file does not cover counts Monday to Friday alone, and says so
//! ([`Calendar::covers`], the `tongban_calendar_covers_today` metric).
//!
//! The anomaly rules ask it whether a disclosure fell outside working time;
//! deadlines counted in working days (objections, sharing requests) end on
//! the day [`Calendar::add_working_days`] names.
//!
//! ```toml
//! [[year]]
//! year = 2026
//! notice = "国务院办公厅关于2026年部分节假日安排的通知（2025年11月4日）"
//! workdays = [2026-01-04, 2026-02-14]       # 调休: weekend days worked
//! [[year.holiday]]
//! name = "元旦"
//! from = 2026-01-01
//! to = 2026-01-03
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use time::{Date, Weekday};

/// What kind of day a date is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayKind {
    /// Monday to Friday, no holiday.
    Workday,
    /// Saturday or Sunday, not a make-up working day.
    Weekend,
    /// A statutory holiday, named (`春节`).
    Holiday(String),
    /// A weekend day worked instead of a holiday (调休).
    MakeupWorkday,
}

impl DayKind {
    /// Whether it is a working day.
    pub fn is_working(&self) -> bool {
        matches!(self, Self::Workday | Self::MakeupWorkday)
    }

    /// Its name in the API: `workday`, `weekend`, `holiday` or `makeup_workday`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Workday => "workday",
            Self::Weekend => "weekend",
            Self::Holiday(_) => "holiday",
            Self::MakeupWorkday => "makeup_workday",
        }
    }
}

/// The working-day calendar in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeMap<Date, String>,
    workdays: BTreeSet<Date>,
    years: BTreeMap<i32, String>,
}

/// A calendar file that does not load: the file, and what is wrong where.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CalendarError {
    /// The file.
    pub path: String,
    /// What is wrong, naming the year and holiday.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    year: Vec<YearFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    /// The notice the schedule comes from.
    notice: String,
    #[serde(default)]
    workdays: Vec<toml::value::Datetime>,
    #[serde(default)]
    holiday: Vec<HolidayFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayFile {
    name: String,
    from: toml::value::Datetime,
    to: toml::value::Datetime,
}

/// The longest holiday a notice gives, in days (春节 and 国庆 are 7–9).
const LONGEST_HOLIDAY: i64 = 15;

fn date_of(v: &toml::value::Datetime, what: &str) -> Result<Date, String> {
    match (&v.date, &v.time, &v.offset) {
        (Some(d), None, None) => Date::from_calendar_date(
            i32::from(d.year),
            time::Month::try_from(d.month).map_err(|e| format!("{what}: {e}"))?,
            d.day,
        )
        .map_err(|e| format!("{what}: {e}")),
        _ => Err(format!(
            "{what}: {v} is not a date (write it as 2026-10-01, without a time)"
        )),
    }
}

impl Calendar {
    /// Monday to Friday, no holidays: the calendar without a file.
    pub fn weekdays_only() -> Self {
        Self::default()
    }

    /// Reads a calendar file.
    pub fn load(path: &Path) -> Result<Self, CalendarError> {
        let err = |message: String| CalendarError {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// Reads a calendar from its TOML text; every mistake names its year
    /// and holiday.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let mut cal = Self::default();
        for y in file.year {
            let year = y.year;
            if cal.years.insert(year, y.notice.clone()).is_some() {
                return Err(format!("year {year} appears twice"));
            }
            if y.notice.trim().is_empty() {
                return Err(format!(
                    "year {year}: notice is empty; name the State Council notice the schedule comes from"
                ));
            }
            // A notice may reach into the years beside its own (the 2024
            // 元旦 holiday began on 30 December 2023).
            let in_year = |d: Date, what: &str| {
                if (year - 1..=year + 1).contains(&d.year()) {
                    Ok(d)
                } else {
                    Err(format!(
                        "year {year}: {what} {d} is not in or beside {year}"
                    ))
                }
            };
            for h in &y.holiday {
                let what = format!("holiday {}", h.name);
                let from = in_year(
                    date_of(&h.from, &format!("year {year}: {what}: from"))?,
                    &what,
                )?;
                let to = in_year(date_of(&h.to, &format!("year {year}: {what}: to"))?, &what)?;
                if to < from {
                    return Err(format!(
                        "year {year}: {what} ends ({to}) before it begins ({from})"
                    ));
                }
                if (to - from).whole_days() >= LONGEST_HOLIDAY {
                    return Err(format!(
                        "year {year}: {what} runs from {from} to {to}, longer than {LONGEST_HOLIDAY} days"
                    ));
                }
                let mut d = from;
                loop {
                    if let Some(other) = cal.holidays.insert(d, h.name.clone()) {
                        return Err(format!(
                            "year {year}: {d} is in both holiday {other} and holiday {}",
                            h.name
                        ));
                    }
                    if d == to {
                        break;
                    }
                    d = d
                        .next_day()
                        .ok_or_else(|| format!("year {year}: {d} has no next day"))?;
                }
            }
            for w in &y.workdays {
                let d = in_year(date_of(w, &format!("year {year}: workdays"))?, "workday")?;
                if !is_weekend(d) {
                    return Err(format!(
                        "year {year}: workday {d} is a {}; a make-up working day (调休) is a Saturday or Sunday",
                        d.weekday()
                    ));
                }
                if let Some(name) = cal.holidays.get(&d) {
                    return Err(format!(
                        "year {year}: workday {d} is also in holiday {name}"
                    ));
                }
                cal.workdays.insert(d);
            }
        }
        Ok(cal)
    }

    /// What kind of day `date` is.
    pub fn day(&self, date: Date) -> DayKind {
        if let Some(name) = self.holidays.get(&date) {
            return DayKind::Holiday(name.clone());
        }
        if self.workdays.contains(&date) {
            return DayKind::MakeupWorkday;
        }
        if is_weekend(date) {
            DayKind::Weekend
        } else {
            DayKind::Workday
        }
    }

    /// Whether `date` is a working day.
    pub fn is_working_day(&self, date: Date) -> bool {
        self.day(date).is_working()
    }

    /// Whether the file holds the schedule of `year`; a year it does not
    /// hold counts Monday to Friday alone.
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains_key(&year)
    }

    /// The years it holds, with the notice of each.
    pub fn years(&self) -> impl Iterator<Item = (i32, &str)> {
        self.years.iter().map(|(y, n)| (*y, n.as_str()))
    }

    /// The `n`-th working day after `start` (which does not count): a
    /// deadline of `n` working days from something that happened on
    /// `start` ends when that day ends. `n = 0` is `start` itself.
    pub fn add_working_days(&self, start: Date, n: u32) -> Date {
        let mut d = start;
        let mut left = n;
        while left > 0 {
            match d.next_day() {
                Some(next) => d = next,
                None => return d,
            }
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        d
    }

    /// Working days after `from` up to and including `to` (0 when `to` is
    /// not after `from`): how many working days something took.
    pub fn working_days_between(&self, from: Date, to: Date) -> u32 {
        let mut n = 0u32;
        let mut d = from;
        while d < to {
            match d.next_day() {
                Some(next) => d = next,
                None => break,
            }
            if self.is_working_day(d) {
                n = n.saturating_add(1);
            }
        }
        n
    }
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    /// The schedule the demo ships.
    fn cn2026() -> Calendar {
        Calendar::parse(include_str!("../deploy/calendar.toml")).unwrap()
    }

    #[test]
    fn the_2026_schedule_classifies_holidays_and_makeup_saturdays() {
        let c = cn2026();
        assert!(c.covers(2026));
        assert!(!c.covers(2027));
        // 国庆: Thursday 1 October to Wednesday 7 October; Friday 2 October is a holiday.
        assert_eq!(
            c.day(date!(2026 - 10 - 02)),
            DayKind::Holiday("国庆节".into())
        );
        assert!(!c.is_working_day(date!(2026 - 10 - 07)));
        // Saturday 10 October is worked (调休), Sunday 11 October is not.
        assert_eq!(c.day(date!(2026 - 10 - 10)), DayKind::MakeupWorkday);
        assert!(c.is_working_day(date!(2026 - 10 - 10)));
        assert_eq!(c.day(date!(2026 - 10 - 11)), DayKind::Weekend);
        // 春节: 15 to 23 February; Saturdays 14 and 28 February are worked.
        assert_eq!(
            c.day(date!(2026 - 02 - 23)),
            DayKind::Holiday("春节".into())
        );
        assert!(c.is_working_day(date!(2026 - 02 - 14)));
        assert!(c.is_working_day(date!(2026 - 02 - 28)));
        assert!(c.is_working_day(date!(2026 - 02 - 24)));
        // Sunday 20 September is worked before 国庆.
        assert!(c.is_working_day(date!(2026 - 09 - 20)));
        // An ordinary Monday and Saturday.
        assert_eq!(c.day(date!(2026 - 12 - 07)), DayKind::Workday);
        assert_eq!(c.day(date!(2026 - 12 - 05)), DayKind::Weekend);
        // Every holiday day of the notice, 3+9+3+5+3+3+7 = 33, and six 调休 days.
        assert_eq!(c.holidays.len(), 33);
        assert_eq!(c.workdays.len(), 6);
    }

    #[test]
    fn deadlines_count_working_days_across_holidays_and_makeup_days() {
        let c = cn2026();
        // Filed on Wednesday 30 September: 1 to 7 October are off, Saturday
        // 10 October is worked. Working days after it: 8, 9, 10, 12 October.
        assert_eq!(
            c.add_working_days(date!(2026 - 09 - 30), 1),
            date!(2026 - 10 - 08)
        );
        assert_eq!(
            c.add_working_days(date!(2026 - 09 - 30), 3),
            date!(2026 - 10 - 10)
        );
        assert_eq!(
            c.add_working_days(date!(2026 - 09 - 30), 4),
            date!(2026 - 10 - 12)
        );
        assert_eq!(
            c.add_working_days(date!(2026 - 09 - 30), 0),
            date!(2026 - 09 - 30)
        );
        assert_eq!(
            c.working_days_between(date!(2026 - 09 - 30), date!(2026 - 10 - 12)),
            4
        );
        // Without the schedule, the same count ends earlier.
        let plain = Calendar::weekdays_only();
        assert_eq!(
            plain.add_working_days(date!(2026 - 09 - 30), 4),
            date!(2026 - 10 - 06)
        );
        // A year not covered counts Monday to Friday: Friday 31 December
        // 2027 plus one working day is Monday 3 January 2028.
        assert_eq!(
            c.add_working_days(date!(2027 - 12 - 31), 1),
            date!(2028 - 01 - 03)
        );
    }

    #[test]
    fn a_wrong_schedule_is_refused_naming_the_year_and_holiday() {
        let refused = |text: &str, needle: &str| {
            let e = Calendar::parse(text).unwrap_err();
            assert!(e.contains(needle), "{e}");
        };
        let year = "[[year]]\nyear = 2026\nnotice = \"n\"\n";
        refused(
            &format!("{year}workdays = [2026-10-09]\n"),
            "workday 2026-10-09 is a Friday",
        );
        refused(
            &format!(
                "{year}[[year.holiday]]\nname = \"国庆节\"\nfrom = 2026-10-07\nto = 2026-10-01\n"
            ),
            "holiday 国庆节 ends",
        );
        refused(
            &format!(
                "{year}[[year.holiday]]\nname = \"元旦\"\nfrom = 2028-01-01\nto = 2028-01-01\n"
            ),
            "not in or beside 2026",
        );
        // The 2024 notice: 元旦 from 30 December 2023, in the 2024 block.
        let c = Calendar::parse("[[year]]\nyear = 2024\nnotice = \"n\"\n[[year.holiday]]\nname = \"元旦\"\nfrom = 2023-12-30\nto = 2024-01-01\n").unwrap();
        assert_eq!(
            c.day(date!(2023 - 12 - 30)),
            DayKind::Holiday("元旦".into())
        );
        assert!(c.covers(2024) && !c.covers(2023));
        refused(
            &format!(
                "{year}workdays = [2026-10-03]\n[[year.holiday]]\nname = \"国庆节\"\nfrom = 2026-10-01\nto = 2026-10-07\n"
            ),
            "also in holiday 国庆节",
        );
        refused(
            &format!(
                "{year}[[year.holiday]]\nname = \"x\"\nfrom = 2026-10-01T08:00:00\nto = 2026-10-02\n"
            ),
            "is not a date",
        );
        refused(&format!("{year}{year}"), "year 2026 appears twice");
        refused(
            "[[year]]\nyear = 2026\nnotice = \"n\"\nholidays = []\n",
            "unknown field",
        );
    }
}
