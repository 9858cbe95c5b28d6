//! Compressing a range query's series into a few numbers each, and ranking them by how anomalous they
//! are around the time the alert started.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One series of a range query: its labels and its points (Unix seconds, value).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// A comparison against a number, read from a rule such as `expr > 0.9`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub op: Comparison,
    pub value: f64,
}

impl Threshold {
    /// Whether `value` meets the threshold.
    pub fn holds(&self, value: f64) -> bool {
        self.op.holds(value, self.value)
    }

    /// `< 10`.
    pub fn describe(&self) -> String {
        format!("{} {}", self.op.symbol(), num(self.value))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Self::Greater => a > b,
            Self::GreaterOrEqual => a >= b,
            Self::Less => a < b,
            Self::LessOrEqual => a <= b,
            Self::Equal => a == b,
            Self::NotEqual => a != b,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Equal => "==",
            Self::NotEqual => "!=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trend {
    Rising,
    Falling,
    Flat,
}

/// What is kept of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    /// The labels that tell this series apart from the others of its query.
    pub labels: BTreeMap<String, String>,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
    /// The value closest to the alert's start.
    pub at_start: Option<f64>,
    /// The median before the incident (more than [`INCIDENT_LEAD`] before the start).
    pub baseline: Option<f64>,
    /// The point that departs most from the baseline at or after the incident began.
    pub peak: (f64, f64),
    /// `peak / baseline` when the baseline is not zero.
    pub ratio: Option<f64>,
    /// How far the peak is from the baseline's median, in robust standard deviations (1.4826 × the
    /// baseline's median absolute deviation, floored at 1% of its level), capped.
    pub z: Option<f64>,
    /// The level shift: the incident's median less the baseline's.
    pub shift: Option<f64>,
    /// When the series left its baseline (beyond [`ONSET_Z`]) and stayed away, if it did.
    pub onset: Option<f64>,
    /// When the series began, if after the window's start: it was born during the window.
    pub born: Option<f64>,
    /// When the series ended, if before the window's end: it is gone.
    pub gone: Option<f64>,
    pub trend: Trend,
    /// When the rule's threshold first held, if the rule has one.
    pub crossed_at: Option<f64>,
    /// A sparkline of the window.
    pub shape: String,
    /// How anomalous: higher ranks first.
    pub score: f64,
}

/// The time frame of a query: its window and step (Unix seconds), and when the alert started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub start: f64,
    pub alert: f64,
    pub end: f64,
    pub step: f64,
}

/// The incident starts this long before the alert: a rule's `for:` and evaluation delay.
pub const INCIDENT_LEAD: f64 = 300.0;
const Z_CAP: f64 = 1000.0;
/// Robust standard deviations from the baseline that count as having left it.
pub const ONSET_Z: f64 = 3.0;
/// The score of a series born or gone right at the alert's start; it halves every
/// [`CHANGE_HALF_SECS`] away from it.
const CHANGE_SCORE: f64 = 60.0;
const CHANGE_HALF_SECS: f64 = 600.0;
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Summarizes every series of one query and sorts them, most anomalous first. Series without points
/// are dropped. The frame is the series' own span: nothing is born or gone.
pub fn summarize(
    series: &[Series],
    start: f64,
    threshold: Option<Threshold>,
) -> Vec<SeriesSummary> {
    let times = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (first, last) = times.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
        (lo.min(t), hi.max(t))
    });
    let frame = Frame {
        start: first,
        alert: start,
        end: last,
        step: 0.0,
    };
    summarize_in(series, frame, threshold)
}

/// Summarizes every series of one query in `frame` and sorts them, most anomalous first: a series
/// born or gone inside the frame (a new version's `_info` series, a pod that went away) is a change,
/// scored by how close to the alert it happened.
pub fn summarize_in(
    series: &[Series],
    frame: Frame,
    threshold: Option<Threshold>,
) -> Vec<SeriesSummary> {
    let distinguishing = distinguishing_labels(series);
    let mut out: Vec<SeriesSummary> = series
        .iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| summarize_one(s, &distinguishing, frame, threshold))
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Labels whose values differ between the series; with a single series, all but the name.
pub(crate) fn distinguishing_labels<S: std::borrow::Borrow<Series>>(series: &[S]) -> Vec<String> {
    let series: Vec<&Series> = series.iter().map(std::borrow::Borrow::borrow).collect();
    let mut names: Vec<&String> = series.iter().flat_map(|s| s.labels.keys()).collect();
    names.sort_unstable();
    names.dedup();
    if series.len() <= 1 {
        return names
            .into_iter()
            .filter(|n| *n != "__name__")
            .cloned()
            .collect();
    }
    names
        .into_iter()
        .filter(|n| {
            let first = series[0].labels.get(*n);
            series.iter().any(|s| s.labels.get(*n) != first)
        })
        .cloned()
        .collect()
}

fn summarize_one(
    series: &Series,
    distinguishing: &[String],
    frame: Frame,
    threshold: Option<Threshold>,
) -> SeriesSummary {
    let start = frame.alert;
    let values: Vec<f64> = series.points.iter().map(|p| p.1).collect();
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let avg = mean(&values);
    let last = values.last().copied().unwrap_or(f64::NAN);
    let at_start = series
        .points
        .iter()
        .min_by(|a, b| (a.0 - start).abs().total_cmp(&(b.0 - start).abs()))
        .map(|p| p.1);
    let before: Vec<f64> = series
        .points
        .iter()
        .filter(|p| p.0 < start - INCIDENT_LEAD)
        .map(|p| p.1)
        .collect();
    let (baseline, spread) = match before.len() {
        0 => (None, None),
        _ => {
            let m = median(&before);
            (Some(m), Some(1.4826 * mad(&before, m)))
        }
    };
    let incident: Vec<&(f64, f64)> = series
        .points
        .iter()
        .filter(|p| p.0 >= start - INCIDENT_LEAD)
        .collect();
    let reference = baseline.unwrap_or(avg);
    // The first point of the largest departure: on a plateau, when it was reached.
    let peak = incident
        .iter()
        .copied()
        .fold(None::<&(f64, f64)>, |best, p| match best {
            Some(b) if (p.1 - reference).abs() <= (b.1 - reference).abs() => Some(b),
            _ => Some(p),
        })
        .or_else(|| series.points.last())
        .copied()
        .unwrap_or((start, f64::NAN));
    let ratio = baseline.filter(|b| *b != 0.0).map(|b| peak.1 / b);
    // A flat baseline has no spread; measure against a floor relative to its level instead.
    let unit = baseline
        .zip(spread)
        .map(|(b, sd)| sd.max((b.abs() * 0.01).max(1e-9)));
    let z = baseline
        .zip(unit)
        .map(|(b, u)| ((peak.1 - b) / u).clamp(-Z_CAP, Z_CAP));
    let shift = baseline.filter(|_| !incident.is_empty()).map(|b| {
        let during: Vec<f64> = incident.iter().map(|p| p.1).collect();
        median(&during) - b
    });
    // The first incident point from which the series stays beyond ONSET_Z of its baseline.
    let onset = baseline.zip(unit).and_then(|(b, u)| {
        let away = |v: f64| ((v - b) / u).abs() > ONSET_Z;
        let mut from = None;
        for p in &incident {
            match (away(p.1), from) {
                (true, None) => from = Some(p.0),
                (false, Some(_)) => from = None,
                _ => {}
            }
        }
        from
    });
    let crossed_at = threshold.and_then(|t| {
        series
            .points
            .iter()
            .find(|p| t.op.holds(p.1, t.value))
            .map(|p| p.0)
    });
    // Born after the window's first two steps, gone before its last two: not a gap of one scrape.
    let first_at = series.points.first().map_or(frame.start, |p| p.0);
    let last_at = series.points.last().map_or(frame.end, |p| p.0);
    let born = (first_at > frame.start + 2.0 * frame.step).then_some(first_at);
    let gone = (last_at < frame.end - 2.0 * frame.step).then_some(last_at);
    let mut score = z.map_or(0.0, f64::abs);
    if score == 0.0 && baseline.is_none() {
        // No baseline: fall back on how far the peak is from the series' own mean, relative to it.
        score = ((peak.1 - avg) / avg.abs().max(1e-9)).abs().min(Z_CAP) / 10.0;
    }
    for t in born.into_iter().chain(gone) {
        let near = CHANGE_SCORE / (1.0 + (t - start).abs() / CHANGE_HALF_SECS);
        score = score.max(near);
    }
    if crossed_at.is_some() {
        score += Z_CAP;
    }
    SeriesSummary {
        labels: series
            .labels
            .iter()
            .filter(|(k, _)| distinguishing.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        min,
        max,
        mean: avg,
        last,
        at_start,
        baseline,
        peak,
        ratio,
        z,
        shift,
        onset,
        born,
        gone,
        trend: trend(&series.points, min, max),
        crossed_at,
        shape: sparkline(&values, 16, min, max),
        score,
    }
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median absolute deviation from `m`.
fn mad(values: &[f64], m: f64) -> f64 {
    let deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    median(&deviations)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The least-squares slope over the window, as a share of the series' range.
fn trend(points: &[(f64, f64)], min: f64, max: f64) -> Trend {
    if points.len() < 3 || max <= min {
        return Trend::Flat;
    }
    let n = points.len() as f64;
    let mt = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mv = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    if var == 0.0 {
        return Trend::Flat;
    }
    let span = points[points.len() - 1].0 - points[0].0;
    let change = cov / var * span / (max - min);
    match change {
        c if c > 0.2 => Trend::Rising,
        c if c < -0.2 => Trend::Falling,
        _ => Trend::Flat,
    }
}

/// `values` averaged into `width` buckets and drawn with block characters.
fn sparkline(values: &[f64], width: usize, min: f64, max: f64) -> String {
    if values.is_empty() {
        return String::new();
    }
    let width = width.min(values.len());
    (0..width)
        .map(|i| {
            let from = i * values.len() / width;
            let to = ((i + 1) * values.len() / width).max(from + 1);
            let v = mean(&values[from..to]);
            let level = if max > min {
                ((v - min) / (max - min) * 7.0).round() as usize
            } else {
                0
            };
            SPARKS[level.min(7)]
        })
        .collect()
}

pub use aiops_model::facts::num;

/// A Unix time as RFC 3339 (UTC, seconds).
pub fn at(t: f64) -> String {
    OffsetDateTime::from_unix_timestamp(t.round() as i64)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{t}"))
}

impl SeriesSummary {
    /// One line for the LLM and the notification.
    pub fn line(&self, threshold: Option<Threshold>) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let mut s = format!("{{{}}}: ", labels.join(", "));
        let _ = write!(s, "peak {} at {}", num(self.peak.1), at(self.peak.0));
        match (self.ratio, self.baseline) {
            (Some(r), Some(b)) => {
                let _ = write!(s, " ({}x baseline median {}", num(r), num(b));
            }
            (None, Some(b)) => {
                let _ = write!(s, " (baseline {}", num(b));
            }
            _ => s.push_str(" (no baseline"),
        }
        if let Some(z) = self.z {
            let _ = write!(s, ", z={}", num(z));
        }
        if let Some(shift) = self.shift.filter(|d| *d != 0.0) {
            let _ = write!(
                s,
                ", level shift {}{}",
                if shift > 0.0 { "+" } else { "" },
                num(shift)
            );
        }
        s.push(')');
        if let Some(t) = self.onset {
            let _ = write!(s, "; left its baseline at {}", at(t));
        }
        if let Some(t) = self.born {
            let _ = write!(s, "; appeared at {}", at(t));
        }
        if let Some(t) = self.gone {
            let _ = write!(s, "; gone since {}", at(t));
        }
        if let Some(v) = self.at_start {
            let _ = write!(s, "; at start {}", num(v));
        }
        let _ = write!(
            s,
            "; min {} max {} mean {} last {}; {}",
            num(self.min),
            num(self.max),
            num(self.mean),
            num(self.last),
            match self.trend {
                Trend::Rising => "rising",
                Trend::Falling => "falling",
                Trend::Flat => "flat",
            }
        );
        if let (Some(t), Some(c)) = (threshold, self.crossed_at) {
            let _ = write!(
                s,
                "; crossed {} {} at {}",
                t.op.symbol(),
                num(t.value),
                at(c)
            );
        }
        let _ = write!(s, "; shape {}", self.shape);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(instance: &str, f: impl Fn(f64) -> f64) -> Series {
        Series {
            labels: [
                ("instance".to_owned(), instance.to_owned()),
                ("job".into(), "node".into()),
            ]
            .into_iter()
            .collect(),
            points: (0..120)
                .map(|i| (f64::from(i) * 30.0, f(f64::from(i) * 30.0)))
                .collect(),
        }
    }

    #[test]
    fn the_spiking_series_ranks_first_with_its_time_and_size() {
        let start = 3000.0;
        let wobble = |t: f64| 0.2 + 0.01 * (t / 30.0).sin();
        let all = vec![
            series("a", wobble),
            series("b", |t| wobble(t) + 0.05),
            series("c", |t| if t >= 2900.0 { 0.95 } else { wobble(t) }),
        ];
        let threshold = Threshold {
            op: Comparison::Greater,
            value: 0.9,
        };
        let ranked = summarize(&all, start, Some(threshold));
        assert_eq!(ranked.len(), 3);
        let top = &ranked[0];
        assert_eq!(top.labels.get("instance").map(String::as_str), Some("c"));
        assert!(!top.labels.contains_key("job"), "job is the same for all");
        assert_eq!(top.peak.1, 0.95);
        assert_eq!(top.peak.0, 2910.0, "the plateau's first point");
        assert_eq!(top.crossed_at, Some(2910.0));
        assert!((top.ratio.expect("ratio") - 0.95 / 0.2).abs() < 0.1);
        assert!(top.z.expect("z") > 10.0);
        assert_eq!(top.trend, Trend::Rising);
        let line = top.line(Some(threshold));
        assert!(
            line.contains("crossed > 0.9 at 1970-01-01T00:48:30Z"),
            "{line}"
        );
        assert!(ranked[1].score < top.score / 10.0);
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(0.95), "0.95");
        assert_eq!(num(4.750_123), "4.75");
        assert_eq!(num(1234.5678), "1235");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(12_345_678.0), "12345678");
        assert_eq!(num(12_345_678.5), "1.235e7");
    }

    #[test]
    fn a_flat_series_has_a_flat_shape() {
        let s = summarize(&[series("a", |_| 1.0)], 3000.0, None);
        assert_eq!(s[0].trend, Trend::Flat);
        assert_eq!(s[0].shape, "▁".repeat(16));
    }
}
