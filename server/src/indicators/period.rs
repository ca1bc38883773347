//! Reporting periods: a year (`2025`), a quarter (`2025-Q3`) or a month (`2025-07`) of the
//! activity date. Every figure is kept for all three, so a period's figure is read, never
//! summed from its months (a woman counselled in two months of a quarter counts once in it).

use std::fmt;

use chrono::{Datelike, NaiveDate};

use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Year(i32),
    Quarter(i32, u8),
    Month(i32, u8),
}

/// The grains a table can be broken down by within the requested period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Quarter,
    Month,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, AppError> {
        let bad = || {
            AppError::bad_request(
                "bad_period",
                format!("'{s}' is not a period: use a year (2025), a quarter (2025-Q3) or a month (2025-07)"),
            )
        };
        let s = s.trim();
        let year = |y: &str| -> Result<i32, AppError> {
            if y.len() != 4 {
                return Err(bad());
            }
            y.parse::<i32>().map_err(|_| bad())
        };
        match s.split_once('-') {
            None => Ok(Period::Year(year(s)?)),
            Some((y, rest)) => {
                let y = year(y)?;
                if let Some(q) = rest.strip_prefix('Q').or_else(|| rest.strip_prefix('q')) {
                    match q.parse::<u8>() {
                        Ok(n @ 1..=4) if q.len() == 1 => Ok(Period::Quarter(y, n)),
                        _ => Err(bad()),
                    }
                } else {
                    match rest.parse::<u8>() {
                        Ok(m @ 1..=12) if rest.len() == 2 => Ok(Period::Month(y, m)),
                        _ => Err(bad()),
                    }
                }
            }
        }
    }

    pub fn month_of(date: NaiveDate) -> Period {
        // Months are 1..=12, so the conversion never fails.
        Period::Month(date.year(), u8::try_from(date.month()).unwrap_or(1))
    }

    /// The three periods an activity on `date` counts in.
    pub fn of_date(date: NaiveDate) -> [Period; 3] {
        let month = Period::month_of(date);
        [month, month.quarter(), Period::Year(date.year())]
    }

    pub fn year(self) -> i32 {
        match self {
            Period::Year(y) | Period::Quarter(y, _) | Period::Month(y, _) => y,
        }
    }

    fn quarter(self) -> Period {
        match self {
            Period::Month(y, m) => Period::Quarter(y, (m - 1) / 3 + 1),
            other => other,
        }
    }

    /// First and last day.
    pub fn bounds(self) -> (NaiveDate, NaiveDate) {
        let (y, first_month, months) = match self {
            Period::Year(y) => (y, 1, 12),
            Period::Quarter(y, q) => (y, u32::from(q - 1) * 3 + 1, 3),
            Period::Month(y, m) => (y, u32::from(m), 1),
        };
        let start = NaiveDate::from_ymd_opt(y, first_month, 1).unwrap_or_default();
        let next = start
            .checked_add_months(chrono::Months::new(months))
            .unwrap_or(start);
        (start, next.pred_opt().unwrap_or(start))
    }

    pub fn contains_date(self, date: NaiveDate) -> bool {
        let (a, b) = self.bounds();
        a <= date && date <= b
    }

    /// Whether `other` lies within this period (a period contains itself).
    pub fn covers(self, other: Period) -> bool {
        let (a, b) = other.bounds();
        self.contains_date(a) && self.contains_date(b)
    }

    /// This period and every shorter period within it.
    pub fn covered(self) -> Vec<Period> {
        let mut out = vec![self];
        match self {
            Period::Year(y) => {
                out.extend((1..=4).map(|q| Period::Quarter(y, q)));
                out.extend((1..=12).map(|m| Period::Month(y, m)));
            }
            Period::Quarter(y, q) => out.extend((1..=3).map(|i| Period::Month(y, (q - 1) * 3 + i))),
            Period::Month(..) => {}
        }
        out
    }

    /// The periods of `grain` within this one; the period itself when it is not longer.
    pub fn split(self, grain: Grain) -> Vec<Period> {
        match (self, grain) {
            (Period::Year(y), Grain::Quarter) => (1..=4).map(|q| Period::Quarter(y, q)).collect(),
            (Period::Year(y), Grain::Month) => (1..=12).map(|m| Period::Month(y, m)).collect(),
            (Period::Quarter(y, q), Grain::Month) => {
                (1..=3).map(|i| Period::Month(y, (q - 1) * 3 + i)).collect()
            }
            (other, _) => vec![other],
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Year(y) => write!(f, "{y:04}"),
            Period::Quarter(y, q) => write!(f, "{y:04}-Q{q}"),
            Period::Month(y, m) => write!(f, "{y:04}-{m:02}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn parses_and_prints_the_three_kinds() {
        for s in ["2025", "2025-Q3", "2025-07", "2024-12", "2025-Q1"] {
            assert_eq!(Period::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Period::parse("2025-q2").unwrap(), Period::Quarter(2025, 2));
        for bad in [
            "", "25", "2025-Q5", "2025-Q0", "2025-13", "2025-7", "2025-00", "July", "2025-Q01",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_activity_counts_in_its_month_quarter_and_year() {
        assert_eq!(
            Period::of_date(d("2025-08-31")),
            [
                Period::Month(2025, 8),
                Period::Quarter(2025, 3),
                Period::Year(2025)
            ]
        );
        assert_eq!(
            Period::of_date(d("2025-01-01"))[1],
            Period::Quarter(2025, 1)
        );
        assert_eq!(
            Period::of_date(d("2025-12-31"))[1],
            Period::Quarter(2025, 4)
        );
    }

    #[test]
    fn bounds_cover_and_split() {
        assert_eq!(
            Period::Quarter(2025, 1).bounds(),
            (d("2025-01-01"), d("2025-03-31"))
        );
        assert_eq!(
            Period::Month(2024, 2).bounds(),
            (d("2024-02-01"), d("2024-02-29"))
        );
        assert_eq!(
            Period::Year(2025).bounds(),
            (d("2025-01-01"), d("2025-12-31"))
        );
        assert!(Period::Year(2025).covers(Period::Month(2025, 7)));
        assert!(Period::Quarter(2025, 3).covers(Period::Month(2025, 9)));
        assert!(!Period::Quarter(2025, 3).covers(Period::Month(2025, 10)));
        assert!(!Period::Quarter(2025, 3).covers(Period::Year(2025)));
        assert_eq!(Period::Year(2025).covered().len(), 17);
        assert_eq!(Period::Quarter(2025, 2).covered().len(), 4);
        assert_eq!(Period::Year(2025).split(Grain::Quarter).len(), 4);
        assert_eq!(
            Period::Quarter(2025, 4).split(Grain::Month),
            vec![
                Period::Month(2025, 10),
                Period::Month(2025, 11),
                Period::Month(2025, 12)
            ]
        );
        assert_eq!(
            Period::Month(2025, 4).split(Grain::Quarter),
            vec![Period::Month(2025, 4)]
        );
    }
}
