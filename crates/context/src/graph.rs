//! The group's graph: a PNG of the rule's expression around the time the group started, drawn with
//! plotters into a bitmap (no browser, no system fonts: DejaVu Sans is embedded) and encoded with
//! png. The rule's signal (the side of its comparison that is not a number, so the peers that did
//! not cross are seen too) is graphed from an hour before the start to half an hour after it (or a
//! few minutes past the resolution); the alerting series are thick and red, the others thin and
//! grey, the threshold a dashed orange line, the start a dashed blue one. 960×540 pixels with
//! 20-pixel labels: readable on a phone.

use std::collections::BTreeMap;
use std::sync::Once;
use std::time::Duration;

use aiops_model::{Grapher, StageError, WebhookPayload};
use async_trait::async_trait;
use plotters::prelude::*;
use time::OffsetDateTime;

use crate::config::PrometheusConfig;
use crate::prom::Prometheus;
use crate::promql::read_rule;
use crate::series::{Series, Threshold};

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 540;
/// Before the start, and after it while the group fires.
const BEFORE: i64 = 3600;
const AFTER: i64 = 1800;
/// Past the resolution.
const PAST_END: i64 = 300;
/// Points per series, at most.
const POINTS: i64 = 300;
/// Series drawn: the alerting ones, then the others.
const MAX_FIRING: usize = 10;
const MAX_OTHERS: usize = 20;
/// Alerting series named in the legend.
const LEGEND_FIRING: usize = 3;

const FIRING: RGBColor = RGBColor(214, 39, 40);
const OTHER: RGBColor = RGBColor(175, 175, 175);
const THRESHOLD: RGBColor = RGBColor(230, 140, 0);
const START: RGBColor = RGBColor(31, 119, 180);

/// What a graph shows; [`render`] draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    /// The alerting series, drawn on top.
    pub firing: Vec<Series>,
    pub others: Vec<Series>,
    pub threshold: Option<Threshold>,
    /// When the group started, Unix seconds.
    pub started: f64,
    /// The time axis, Unix seconds.
    pub from: f64,
    pub to: f64,
}

/// Draws `chart` as a PNG of [`WIDTH`]×[`HEIGHT`].
pub fn render(chart: &Chart) -> Result<Vec<u8>, String> {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // DejaVu Sans is valid TrueType: registering it cannot fail.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    draw(chart, &mut rgb).map_err(|e| format!("cannot draw the graph: {e}"))?;
    encode(&rgb)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn draw(chart: &Chart, rgb: &mut [u8]) -> Result<(), String> {
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (low, high) = value_range(chart);
    // Under ten minutes, minutes alone would repeat along the axis.
    let seconds = chart.to - chart.from < 600.0;
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(84)
        .build_cartesian_2d(chart.from..chart.to, low..high)
        .map_err(err)?;
    ctx.configure_mesh()
        .x_labels(7)
        .y_labels(6)
        .x_label_formatter(&|t| match seconds {
            true => clock_seconds(*t),
            false => clock(*t),
        })
        .y_label_formatter(&|v| number(*v))
        .label_style(("sans-serif", 20))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(err)?;
    for s in &chart.others {
        ctx.draw_series(LineSeries::new(
            s.points.iter().copied(),
            OTHER.stroke_width(2),
        ))
        .map_err(err)?;
    }
    if let Some(t) = chart.threshold {
        ctx.draw_series(DashedLineSeries::new(
            [(chart.from, t.value), (chart.to, t.value)],
            14,
            8,
            THRESHOLD.stroke_width(3),
        ))
        .map_err(err)?
        .label(format!("threshold {}", t.describe()))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], THRESHOLD.stroke_width(3)));
    }
    ctx.draw_series(DashedLineSeries::new(
        [(chart.started, low), (chart.started, high)],
        8,
        6,
        START.stroke_width(2),
    ))
    .map_err(err)?
    .label(format!("started {} UTC", clock(chart.started)))
    .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], START.stroke_width(2)));
    for (i, s) in chart.firing.iter().enumerate() {
        let drawn = ctx
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                FIRING.stroke_width(4),
            ))
            .map_err(err)?;
        if i < LEGEND_FIRING {
            drawn
                .label(describe(&s.labels))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], FIRING.stroke_width(4)));
        }
    }
    ctx.configure_series_labels()
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

fn encode(rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("cannot encode the graph: {e}"))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| format!("cannot encode the graph: {e}"))?;
    writer
        .finish()
        .map_err(|e| format!("cannot encode the graph: {e}"))?;
    Ok(out)
}

/// The values' range with the threshold in it, and a margin.
fn value_range(chart: &Chart) -> (f64, f64) {
    let values = chart
        .firing
        .iter()
        .chain(&chart.others)
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(chart.threshold.map(|t| t.value));
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !low.is_finite() || !high.is_finite() {
        return (0.0, 1.0);
    }
    let span = match high - low {
        s if s > 0.0 => s,
        _ => high.abs().max(1.0),
    };
    let low = low - span * 0.08;
    // Room above for the legend.
    (low, high + span * 0.35)
}

/// `14:05`, UTC.
fn clock(t: f64) -> String {
    OffsetDateTime::from_unix_timestamp(t as i64)
        .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
        .unwrap_or_default()
}

/// `14:05:30`, UTC.
fn clock_seconds(t: f64) -> String {
    OffsetDateTime::from_unix_timestamp(t as i64)
        .map(|t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()))
        .unwrap_or_default()
}

fn number(v: f64) -> String {
    match v.abs() {
        0.0 => "0".into(),
        a if !(1e-3..1e6).contains(&a) => format!("{v:.2e}"),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// `instance=node-1:9100, job=node`, short.
fn describe(labels: &BTreeMap<String, String>) -> String {
    let text = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match text.chars().count() {
        0 => "the alerting series".into(),
        n if n > 60 => format!("{}…", text.chars().take(59).collect::<String>()),
        _ => text,
    }
}

/// Whether `series` is one of the group's alerting series: each of its labels is the alert's.
fn alerting(series: &Series, payload: &WebhookPayload) -> bool {
    payload.alerts.iter().any(|a| {
        series
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .all(|(k, v)| a.labels.get(k) == Some(v))
    })
}

/// Draws groups' graphs from Prometheus.
#[derive(Debug)]
pub struct PromGraph {
    prometheus: Prometheus,
}

impl PromGraph {
    pub fn new(config: &PrometheusConfig) -> Result<Self, String> {
        let timeout = Duration::from_secs(config.timeout_secs.max(1));
        Ok(Self {
            prometheus: Prometheus::new(&config.url, timeout, Duration::from_secs(60))?,
        })
    }

    /// The chart of `payload`, or none when its alerts carry no rule expression or Prometheus has
    /// no series for it.
    pub async fn chart(&self, payload: &WebhookPayload) -> Result<Option<Chart>, StageError> {
        let Some(expr) = payload.alerts.iter().find_map(|a| a.rule_expr()) else {
            return Ok(None);
        };
        let rule = read_rule(&expr).map_err(|e| {
            StageError::permanent(format!("the rule's expression does not parse: {e}"))
        })?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let started = payload
            .started_at()
            .map_or(now, OffsetDateTime::unix_timestamp);
        let from = started - BEFORE;
        let ended = payload.alerts.iter().filter_map(|a| a.ended_at()).max();
        let to = ended
            .filter(|_| payload.status == aiops_model::AlertStatus::Resolved)
            .map_or(started + AFTER, |end| end.unix_timestamp() + PAST_END)
            .min(now)
            .max(started + 60);
        let step = ((to - from) / POINTS).max(1) as f64;
        let series = self
            .prometheus
            .range(&rule.signal, from, to, step)
            .await
            .map_err(|e| StageError::retriable(format!("Prometheus: {e}")))?;
        let (firing, others): (Vec<Series>, Vec<Series>) = series
            .into_iter()
            .map(|mut s| {
                s.points.retain(|p| p.1.is_finite());
                s
            })
            .filter(|s| !s.points.is_empty())
            .partition(|s| alerting(s, payload));
        if firing.is_empty() && others.is_empty() {
            return Ok(None);
        }
        // Series younger than the window (a new target, a short retention) start the time axis,
        // with the start in view: no empty hour on the left.
        let first = firing
            .iter()
            .chain(&others)
            .filter_map(|s| s.points.first().map(|p| p.0))
            .fold(f64::INFINITY, f64::min)
            .min(started as f64);
        let pad = ((to as f64 - first) * 0.05).max(step);
        let from = (first - pad).max(from as f64);
        let title = format!("{}: {}", payload.alertname(), rule.signal);
        Ok(Some(Chart {
            title: match title.chars().count() {
                n if n > 72 => format!("{}…", title.chars().take(71).collect::<String>()),
                _ => title,
            },
            firing: firing.into_iter().take(MAX_FIRING).collect(),
            others: others.into_iter().take(MAX_OTHERS).collect(),
            threshold: rule.threshold,
            started: started as f64,
            from,
            to: to as f64,
        }))
    }
}

#[async_trait]
impl Grapher for PromGraph {
    async fn graph(&self, payload: &WebhookPayload) -> Result<Option<Vec<u8>>, StageError> {
        let Some(chart) = self.chart(payload).await? else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || render(&chart))
            .await
            .map_err(|e| StageError::permanent(format!("the graph's renderer stopped: {e}")))?
            .map(Some)
            .map_err(StageError::permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Comparison;

    fn series(labels: &[(&str, &str)], points: Vec<(f64, f64)>) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            points,
        }
    }

    pub(crate) fn chart() -> Chart {
        let from = 1_700_000_000.0;
        let ramp = |scale: f64| -> Vec<(f64, f64)> {
            (0..=300)
                .map(|i| {
                    let t = from + f64::from(i) * 18.0;
                    let v = if i > 200 { 0.4 * scale } else { 0.02 * scale };
                    (t, v)
                })
                .collect()
        };
        Chart {
            title: "CheckoutErrorRatioHigh: checkout_error_ratio".into(),
            firing: vec![series(&[("instance", "checkout-1")], ramp(1.0))],
            others: vec![series(&[("instance", "checkout-2")], ramp(0.1))],
            threshold: Some(Threshold {
                op: Comparison::Greater,
                value: 0.1,
            }),
            started: from + 3600.0,
            from,
            to: from + 5400.0,
        }
    }

    /// Counts pixels near `color`.
    fn count(rgb: &[u8], color: RGBColor) -> usize {
        rgb.chunks(3)
            .filter(|p| {
                (i16::from(p[0]) - i16::from(color.0)).abs() < 24
                    && (i16::from(p[1]) - i16::from(color.1)).abs() < 24
                    && (i16::from(p[2]) - i16::from(color.2)).abs() < 24
            })
            .count()
    }

    fn decode(png_bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
        let info = reader.next_frame(&mut buf).expect("a frame");
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn the_graph_is_a_png_of_the_size_with_every_element_drawn() {
        let bytes = render(&chart()).expect("renders");
        // Kept as an artifact to look at.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/tmp");
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = std::fs::write(format!("{dir}/graph.png"), &bytes);
        }
        let (info, rgb) = decode(&bytes);
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let white = count(&rgb, RGBColor(255, 255, 255));
        let all = (WIDTH * HEIGHT) as usize;
        assert!(white < all * 97 / 100, "not blank: {white} of {all} white");
        for (what, color) in [
            ("the alerting series", FIRING),
            ("the other series", OTHER),
            ("the threshold", THRESHOLD),
            ("the start", START),
        ] {
            assert!(count(&rgb, color) > 200, "{what} is drawn");
        }
        // Text is drawn (dark anti-aliased glyphs of the title, labels and legend).
        assert!(count(&rgb, RGBColor(0, 0, 0)) > 2000);
    }

    #[test]
    fn an_empty_chart_still_renders() {
        let empty = Chart {
            firing: Vec::new(),
            others: Vec::new(),
            threshold: None,
            ..chart()
        };
        let (info, _) = decode(&render(&empty).expect("renders"));
        assert_eq!(info.width, WIDTH);
    }
}
