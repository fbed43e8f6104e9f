//! Retention policy (`prune --keep-*`): which backups to keep, and by which rule. A pure function
//! of the backups' times — no clock inside — so it is tested table-driven.
//!
//! Rules combine as in restic's `forget`: a backup is kept if any rule keeps it.
//! - `last N`: the N newest;
//! - `hourly/daily/weekly/monthly/yearly N`: walking from the newest, the newest backup of each
//!   of the N most recent hours/days/ISO weeks/months/years that have a backup (UTC);
//! - `within D`: every backup taken within D before the newest one (relative to the newest, not
//!   to now: backups that stopped do not all expire at once).
//!
//! Policies apply per group (one group per backed-up node), so a repository holding several
//! nodes keeps N of each.

use crate::BackupId;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which backups to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    /// Keep the N newest.
    pub last: u32,
    /// Keep the newest of each of the last N hours.
    pub hourly: u32,
    /// Keep the newest of each of the last N days.
    pub daily: u32,
    /// Keep the newest of each of the last N ISO weeks.
    pub weekly: u32,
    /// Keep the newest of each of the last N months.
    pub monthly: u32,
    /// Keep the newest of each of the last N years.
    pub yearly: u32,
    /// Keep all within this duration before the newest.
    pub within: Option<Duration>,
}

/// A backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Backup id.
    pub id: BackupId,
    /// When it was taken.
    pub time: SystemTime,
    /// Its group (e.g. the node it backs up).
    pub group: String,
}

/// The decision for one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Backup id.
    pub id: BackupId,
    /// Group.
    pub group: String,
    /// Kept or removed.
    pub keep: bool,
    /// The rules that keep it (`last`, `daily 2026-11-25`, …); empty when removed.
    pub reasons: Vec<String>,
}

impl KeepPolicy {
    /// Whether the policy keeps nothing at all (refused: it would remove every backup).
    pub fn keeps_nothing(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
    }

    /// Decide every candidate. Output is ordered by group, then newest first.
    pub fn apply(&self, candidates: &[Candidate]) -> Vec<Decision> {
        let mut groups: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
        for c in candidates {
            groups.entry(&c.group).or_default().push(c);
        }
        let mut decisions = Vec::new();
        for (group, mut members) in groups {
            members.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id)));
            decisions.extend(self.apply_group(group, &members));
        }
        decisions
    }

    fn apply_group(&self, group: &str, newest_first: &[&Candidate]) -> Vec<Decision> {
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); newest_first.len()];
        for reason in reasons.iter_mut().take(self.last as usize) {
            reason.push("last".to_string());
        }
        let rules: [(&str, u32, BucketOf); 5] = [
            ("hourly", self.hourly, hour_bucket),
            ("daily", self.daily, day_bucket),
            ("weekly", self.weekly, week_bucket),
            ("monthly", self.monthly, month_bucket),
            ("yearly", self.yearly, year_bucket),
        ];
        for (name, count, bucket_of) in rules {
            let mut kept = 0;
            let mut last_bucket: Option<String> = None;
            for (i, c) in newest_first.iter().enumerate() {
                if kept >= count {
                    break;
                }
                let bucket = bucket_of(c.time);
                if last_bucket.as_deref() != Some(bucket.as_str()) {
                    reasons[i].push(format!("{name} {bucket}"));
                    kept += 1;
                    last_bucket = Some(bucket);
                }
            }
        }
        if let (Some(within), Some(newest)) = (self.within, newest_first.first()) {
            for (i, c) in newest_first.iter().enumerate() {
                let age = newest.time.duration_since(c.time).unwrap_or_default();
                if age <= within {
                    reasons[i].push(format!("within {}", humantime::format_duration(within)));
                }
            }
        }
        newest_first
            .iter()
            .zip(reasons)
            .map(|(c, reasons)| Decision {
                id: c.id.clone(),
                group: group.to_string(),
                keep: !reasons.is_empty(),
                reasons,
            })
            .collect()
    }
}

/// Maps a time to its calendar bucket (hour, day, ISO week, month, year).
type BucketOf = fn(SystemTime) -> String;

/// (year, month, day) of a count of days since 1970-01-01 (proleptic Gregorian, UTC).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn hour_bucket(t: SystemTime) -> String {
    let s = seconds(t);
    let (y, m, d) = civil_from_days(s.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}T{:02}", s.rem_euclid(86_400) / 3600)
}

fn day_bucket(t: SystemTime) -> String {
    let (y, m, d) = civil_from_days(seconds(t).div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// ISO 8601 week: weeks start on Monday; week 1 holds the year's first Thursday.
fn week_bucket(t: SystemTime) -> String {
    let days = seconds(t).div_euclid(86_400);
    // 1970-01-01 was a Thursday: ISO weekday 4.
    let weekday = (days + 3).rem_euclid(7) + 1;
    let thursday = days - (weekday - 4);
    let (iso_year, _, _) = civil_from_days(thursday);
    let week = (thursday - days_from_civil(iso_year, 1, 1)) / 7 + 1;
    format!("{iso_year:04}-W{week:02}")
}

fn month_bucket(t: SystemTime) -> String {
    let (y, m, _) = civil_from_days(seconds(t).div_euclid(86_400));
    format!("{y:04}-{m:02}")
}

fn year_bucket(t: SystemTime) -> String {
    let (y, _, _) = civil_from_days(seconds(t).div_euclid(86_400));
    format!("{y:04}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    /// A fixed history: hourly backups on 2026-11-24/25, daily ones through November, weekly
    /// ones in October, monthly ones back to 2025, for node0; two backups of node1.
    fn history() -> Vec<Candidate> {
        let mut times: Vec<String> = Vec::new();
        for h in 0..24 {
            times.push(format!("2026-11-25T{h:02}:30:00Z"));
            times.push(format!("2026-11-24T{h:02}:30:00Z"));
        }
        for d in 1..24 {
            times.push(format!("2026-11-{d:02}T03:00:00Z"));
        }
        for d in [1, 8, 15, 22, 29] {
            times.push(format!("2026-10-{d:02}T03:00:00Z"));
        }
        for m in 1..10 {
            times.push(format!("2026-{m:02}-15T03:00:00Z"));
        }
        for m in 1..13 {
            times.push(format!("2025-{m:02}-15T03:00:00Z"));
        }
        let mut candidates: Vec<Candidate> = times
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate {
                id: format!(
                    "{}-{i:08x}",
                    t.replace(['-', ':'], "").replace("Z", ".000Z")
                )
                .parse()
                .unwrap(),
                time: at(t),
                group: "node0".into(),
            })
            .collect();
        for (i, t) in ["2026-11-20T00:00:00Z", "2026-11-25T00:00:00Z"]
            .iter()
            .enumerate()
        {
            candidates.push(Candidate {
                id: format!(
                    "{}-ffff000{i}",
                    t.replace(['-', ':'], "").replace("Z", ".000Z")
                )
                .parse()
                .unwrap(),
                time: at(t),
                group: "node1".into(),
            });
        }
        candidates
    }

    fn kept(policy: &KeepPolicy) -> Vec<String> {
        let mut kept: Vec<String> = policy
            .apply(&history())
            .into_iter()
            .filter(|d| d.keep && d.group == "node0")
            .map(|d| {
                humantime::format_rfc3339(history().iter().find(|c| c.id == d.id).unwrap().time)
                    .to_string()
            })
            .collect();
        kept.sort();
        kept
    }

    #[test]
    fn calendar_buckets() {
        assert_eq!(day_bucket(at("2026-11-25T23:59:59Z")), "2026-11-25");
        assert_eq!(hour_bucket(at("2026-11-25T09:44:18Z")), "2026-11-25T09");
        assert_eq!(month_bucket(at("2024-02-29T00:00:00Z")), "2024-02");
        // ISO weeks across year ends.
        assert_eq!(week_bucket(at("2026-11-25T12:00:00Z")), "2026-W48");
        assert_eq!(week_bucket(at("2021-01-03T12:00:00Z")), "2020-W53");
        assert_eq!(week_bucket(at("2024-12-30T12:00:00Z")), "2025-W01");
        assert_eq!(week_bucket(at("2026-01-01T00:00:00Z")), "2026-W01");
        for days in [-1000, 0, 59, 10_957, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn table_of_policies() {
        let cases: Vec<(KeepPolicy, Vec<&str>)> = vec![
            (
                KeepPolicy {
                    last: 3,
                    ..Default::default()
                },
                vec![
                    "2026-11-25T21:30:00Z",
                    "2026-11-25T22:30:00Z",
                    "2026-11-25T23:30:00Z",
                ],
            ),
            (
                KeepPolicy {
                    daily: 3,
                    ..Default::default()
                },
                vec![
                    "2026-11-23T03:00:00Z",
                    "2026-11-24T23:30:00Z",
                    "2026-11-25T23:30:00Z",
                ],
            ),
            (
                KeepPolicy {
                    weekly: 3,
                    ..Default::default()
                },
                vec![
                    "2026-11-15T03:00:00Z",
                    "2026-11-22T03:00:00Z",
                    "2026-11-25T23:30:00Z",
                ],
            ),
            (
                KeepPolicy {
                    monthly: 4,
                    ..Default::default()
                },
                vec![
                    "2026-08-15T03:00:00Z",
                    "2026-09-15T03:00:00Z",
                    "2026-10-29T03:00:00Z",
                    "2026-11-25T23:30:00Z",
                ],
            ),
            (
                KeepPolicy {
                    yearly: 5,
                    ..Default::default()
                },
                vec!["2025-12-15T03:00:00Z", "2026-11-25T23:30:00Z"],
            ),
            (
                KeepPolicy {
                    hourly: 2,
                    daily: 2,
                    ..Default::default()
                },
                vec![
                    "2026-11-24T23:30:00Z",
                    "2026-11-25T22:30:00Z",
                    "2026-11-25T23:30:00Z",
                ],
            ),
            (
                KeepPolicy {
                    within: Some(Duration::from_secs(2 * 3600)),
                    ..Default::default()
                },
                vec![
                    "2026-11-25T21:30:00Z",
                    "2026-11-25T22:30:00Z",
                    "2026-11-25T23:30:00Z",
                ],
            ),
        ];
        for (policy, expected) in cases {
            assert_eq!(kept(&policy), expected, "{policy:?}");
        }
    }

    #[test]
    fn every_group_keeps_its_own_and_reasons_are_given() {
        let decisions = KeepPolicy {
            last: 1,
            daily: 2,
            ..Default::default()
        }
        .apply(&history());
        let node1: Vec<&Decision> = decisions.iter().filter(|d| d.group == "node1").collect();
        assert_eq!(node1.len(), 2);
        assert!(
            node1.iter().all(|d| d.keep),
            "node1's two days are both kept"
        );
        let newest = decisions.iter().find(|d| d.group == "node0").unwrap();
        assert_eq!(newest.reasons, ["last", "daily 2026-11-25"]);
        assert!(decisions
            .iter()
            .filter(|d| !d.keep)
            .all(|d| d.reasons.is_empty()));
        assert!(KeepPolicy::default().keeps_nothing());
    }
}
