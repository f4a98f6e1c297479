//! timerTrigger functions: the `schedule` checked at start-up (`%NAME%`
//! expanded from the app settings, a 6-field NCRONTAB expression required)
//! and an on-demand firing with the host's `TimerInfo` payload
//! (functions-facts §4 "Timer"; azure-facts §3.2 timerTrigger, §3.4).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use serde_json::{Map, Value, json};

use super::clock::{civil, iso_offset, iso_utc};
use super::config::AppConfig;
use super::{Invocation, Shared, invoke, outputs, sys_metadata};

/// How far ahead the next occurrence is looked for (a full leap/weekday cycle).
const SEARCH_DAYS: i64 = 28 * 366;

/// One NCRONTAB field as a bit set of allowed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field(u64);

impl Field {
    fn has(self, v: i64) -> bool {
        (0..64).contains(&v) && self.0 & (1 << v) != 0
    }
}

/// A parsed `{second} {minute} {hour} {day} {month} {day-of-week}` schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cron {
    second: Field,
    minute: Field,
    hour: Field,
    day: Field,
    month: Field,
    weekday: Field,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(text: &str, min: i64, max: i64, names: &[&str], first_name: i64) -> Result<i64, String> {
    let v = match names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        Some(i) => i as i64 + first_name,
        None => text
            .parse::<i64>()
            .map_err(|_| format!("'{text}' is not a number"))?,
    };
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside {min}-{max}"))
    }
}

/// `*`, `n`, `a-b`, each optionally `/step`, comma-separated.
fn field(text: &str, min: i64, max: i64, names: &[&str], first_name: i64) -> Result<Field, String> {
    let mut bits = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = s
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step '{s}'"))?;
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (
                value(a, min, max, names, first_name)?,
                value(b, min, max, names, first_name)?,
            );
            if a > b {
                return Err(format!("range '{range}' is reversed"));
            }
            (a, b)
        } else {
            let v = value(range, min, max, names, first_name)?;
            (v, if step.is_some() { max } else { v })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    Ok(Field(bits))
}

impl Cron {
    /// Parses a 6-field NCRONTAB expression.
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let [s, mi, h, d, mo, w] = parts.as_slice() else {
            return Err(format!(
                "it has {} field(s); a 6-field NCRONTAB expression \
                 '{{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}' is required",
                parts.len()
            ));
        };
        let named = |name: &str, r: Result<Field, String>| r.map_err(|e| format!("{name}: {e}"));
        Ok(Cron {
            second: named("second", field(s, 0, 59, &[], 0))?,
            minute: named("minute", field(mi, 0, 59, &[], 0))?,
            hour: named("hour", field(h, 0, 23, &[], 0))?,
            day: named("day", field(d, 1, 31, &[], 0))?,
            month: named("month", field(mo, 1, 12, &MONTHS, 1))?,
            weekday: named("day-of-week", field(w, 0, 6, &WEEKDAYS, 0))?,
        })
    }

    /// The first occurrence strictly after `after` (Unix seconds, UTC).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let start = after + 1;
        let first_day = start.div_euclid(86_400);
        for day in first_day..first_day + SEARCH_DAYS {
            let (_, month, dom) = civil(day);
            // 1970-01-01 was a Thursday (4).
            let weekday = (day + 4).rem_euclid(7);
            if !(self.month.has(i64::from(month))
                && self.day.has(i64::from(dom))
                && self.weekday.has(weekday))
            {
                continue;
            }
            let floor = if day == first_day {
                start.rem_euclid(86_400)
            } else {
                0
            };
            let found = (0..24).filter(|h| self.hour.has(*h)).find_map(|h| {
                (0..60).filter(|m| self.minute.has(*m)).find_map(|m| {
                    (0..60)
                        .filter(|s| self.second.has(*s))
                        .map(|s| h * 3600 + m * 60 + s)
                        .find(|sod| *sod >= floor)
                })
            });
            if let Some(sod) = found {
                return Some(day * 86_400 + sod);
            }
        }
        None
    }
}

/// A timer-triggered function as validated at start-up.
#[derive(Debug, Clone)]
pub(crate) struct TimerDef {
    pub binding: String,
    /// The schedule after `%NAME%` expansion.
    pub expression: String,
    pub cron: Cron,
}

/// The timers of the app plus each one's last firing (the schedule monitor).
pub(crate) struct Timers {
    pub defs: BTreeMap<String, TimerDef>,
    last: Mutex<HashMap<String, SystemTime>>,
    started: SystemTime,
}

/// Expands every `%NAME%` from the app settings only; a missing setting
/// fails, as the host's name resolver does at indexing time.
fn expand_strict(text: &str, settings: &[(String, String)]) -> Result<String, String> {
    let re = regex::Regex::new(r"%([^%]+)%").expect("valid regex");
    let mut missing = None;
    let out = re.replace_all(text, |c: &regex::Captures| {
        let found = settings
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(&c[1]));
        match found {
            Some((_, v)) => v.clone(),
            None => {
                missing.get_or_insert_with(|| c[0].to_owned());
                String::new()
            }
        }
    });
    match missing {
        Some(name) => Err(format!("'{name}' does not resolve to a value.")),
        None => Ok(out.into_owned()),
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn from_unix(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// Validates every timerTrigger's schedule; any failure stops start-up.
pub(crate) fn load(config: &AppConfig, settings: &[(String, String)]) -> Result<Timers> {
    let now = SystemTime::now();
    let mut defs = BTreeMap::new();
    for f in config.functions.values() {
        let Some(t) = f.trigger().filter(|t| t.is("timerTrigger")) else {
            continue;
        };
        let indexing = |why: String| {
            anyhow!(
                "Error indexing method 'Functions.{}': timerTrigger '{}': {why}",
                f.name,
                t.name
            )
        };
        let raw = t
            .schedule
            .as_deref()
            .ok_or_else(|| indexing("the 'schedule' property is missing".into()))?;
        let expression = expand_strict(raw, settings).map_err(&indexing)?;
        let cron = Cron::parse(&expression).map_err(|e| {
            indexing(format!(
                "the schedule expression '{expression}' was not recognized as a valid \
                 NCRONTAB expression: {e}"
            ))
        })?;
        if cron.next_after(unix(now)).is_none() {
            bail!(indexing(format!(
                "the schedule expression '{expression}' never occurs"
            )));
        }
        defs.insert(
            f.name.clone(),
            TimerDef {
                binding: t.name.clone(),
                expression,
                cron,
            },
        );
    }
    Ok(Timers {
        defs,
        last: Mutex::new(HashMap::new()),
        started: now,
    })
}

/// `2022-03-28T15:40:00.0105419+00:00`, the fixture's shape in UTC.
fn iso_fraction(t: SystemTime) -> String {
    let text = iso_utc(t);
    format!("{}+00:00", text.trim_end_matches('Z'))
}

/// `TimerInfo` as the function sees it: the status recorded after the
/// previous firing (or at host start): `Last`/`LastUpdated` = that moment,
/// `Next` = the schedule's first occurrence after it.
fn timer_info(def: &TimerDef, last: SystemTime) -> Value {
    let next = def
        .cron
        .next_after(unix(last))
        .map_or(Value::Null, |n| json!(iso_offset(from_unix(n))));
    json!({
        "Schedule": {"AdjustForDST": true},
        "ScheduleStatus": {
            "Last": iso_fraction(last),
            "Next": next,
            "LastUpdated": iso_fraction(last),
        },
        "IsPastDue": false,
    })
}

/// Invokes a timer function now and routes its queue outputs.
pub(crate) async fn fire(shared: &Arc<Shared>, function: &str) -> Result<Invocation> {
    let def = shared
        .timers
        .defs
        .get(function)
        .cloned()
        .ok_or_else(|| anyhow!("no timerTrigger function named '{function}'"))?;
    let fired = SystemTime::now();
    let last = shared
        .timers
        .last
        .lock()
        .expect("timer lock")
        .insert(function.to_owned(), fired)
        .unwrap_or(shared.timers.started);
    let mut data = Map::new();
    data.insert(def.binding.clone(), timer_info(&def, last));
    let meta = json!({ "sys": sys_metadata(function) });
    let outcome = invoke::call(shared, function, Value::Object(data), meta).await;
    if let (Some(resp), Some(f)) = (&outcome.response, shared.config.functions.get(function)) {
        outputs::route(shared, f, resp);
    }
    Ok(outcome.invocation)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z, a Monday.
    const JAN_1_2024: i64 = 1_704_067_200;

    #[test]
    fn parses_ncrontab_fields() {
        let c = Cron::parse("0 */5 9-17 * JAN-mar mon,FRI").unwrap();
        assert!(c.second.has(0) && !c.second.has(1));
        assert!(c.minute.has(55) && !c.minute.has(56));
        assert!(c.hour.has(9) && c.hour.has(17) && !c.hour.has(18));
        assert!(c.month.has(1) && c.month.has(3) && !c.month.has(4));
        assert!(c.weekday.has(1) && c.weekday.has(5) && !c.weekday.has(0));
        assert_eq!(
            Cron::parse("5/20 * * * * *").unwrap().second.0,
            1 << 5 | 1 << 25 | 1 << 45
        );
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "*/5 * * * *",
            "0 0 * * * * *",
            "00:05:00",
            "60 * * * * *",
            "0 0 24 * * *",
            "0 0 0 0 * *",
            "0 0 0 * 13 *",
            "0 0 0 * * 7",
            "0 */0 * * * *",
            "0 5-1 * * * *",
            "0 x * * * *",
            "",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn finds_next_occurrences() {
        let every5 = Cron::parse("0 */5 * * * *").unwrap();
        assert_eq!(every5.next_after(JAN_1_2024), Some(JAN_1_2024 + 300));
        assert_eq!(every5.next_after(JAN_1_2024 - 1), Some(JAN_1_2024));
        let sunday_noon = Cron::parse("30 0 12 * * SUN").unwrap();
        let expected = JAN_1_2024 + 6 * 86_400 + 12 * 3600 + 30;
        assert_eq!(sunday_noon.next_after(JAN_1_2024), Some(expected));
        let leap = Cron::parse("0 0 0 29 2 *").unwrap();
        // 2028-02-29T00:00:00Z
        assert_eq!(
            leap.next_after(JAN_1_2024 + 60 * 86_400),
            Some(1_835_395_200)
        );
        assert_eq!(Cron::parse("0 0 0 31 2 *").unwrap().next_after(0), None);
    }

    #[test]
    fn expands_only_from_app_settings() {
        let settings = vec![("SWEEP_SCHEDULE".to_owned(), "0 0 * * * *".to_owned())];
        assert_eq!(
            expand_strict("%sweep_schedule%", &settings).unwrap(),
            "0 0 * * * *"
        );
        let err = expand_strict("%PATH%", &settings).unwrap_err();
        assert!(err.contains("'%PATH%' does not resolve"), "{err}");
    }
}
