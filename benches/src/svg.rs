//! Hand-written SVG charts (no plotting dependency).
//!
//! * [`bar_chart`]: horizontal bars on a log axis, one panel per group,
//!   each bar drawn solid to its best repetition and shaded to its worst,
//!   so the min–max range is visible.
//! * [`curve_chart`]: percentile curves (a distribution's tail): latency on
//!   a log axis against the percentile on a log axis of `1 / (1 - p)`
//!   (50%, 90%, 99%, 99.9%, ... evenly spaced), one line per mechanism,
//!   floors dashed.

use std::fmt::Write;

/// One bar: a label, a series (colour), and the range over repetitions.
#[derive(Clone, Debug)]
pub struct Bar {
    /// Row label (several bars of different series may share one).
    pub label: String,
    /// Index into the chart's series.
    pub series: usize,
    /// The best repetition (solid part).
    pub best: f64,
    /// The worst repetition (shaded part).
    pub worst: f64,
}

/// A titled group of bars sharing one axis.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// Unit shown on the axis ticks ("ns", "M msgs/s", ...).
    pub unit: String,
    /// The bars, in drawing order.
    pub bars: Vec<Bar>,
}

const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"];
const LABEL_W: f64 = 300.0;
const PLOT_W: f64 = 480.0;
const BAR_H: f64 = 9.0;
const ROW_GAP: f64 = 5.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn tick(v: f64) -> String {
    if v >= 1e9 {
        format!("{}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

/// Renders `panels` as one SVG document titled `title`, with a legend of
/// `series` names.
pub fn bar_chart(title: &str, series: &[&str], panels: &[Panel]) -> String {
    let mut body = String::new();
    let mut y = 50.0;
    for panel in panels {
        let values = panel
            .bars
            .iter()
            .flat_map(|b| [b.best, b.worst])
            .filter(|v| *v > 0.0);
        let (lo, hi) = values.fold((f64::INFINITY, 0f64), |(l, h), v| (l.min(v), h.max(v)));
        if !lo.is_finite() {
            continue;
        }
        let (d0, d1) = (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        );
        let x = |v: f64| LABEL_W + (v.max(10f64.powf(d0)).log10() - d0) / (d1 - d0) * PLOT_W;
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" font-weight="bold">{}</text>"#,
            escape(&panel.title)
        );
        y += 10.0;
        let rows: Vec<&str> = panel.bars.iter().fold(Vec::new(), |mut rows, b| {
            if rows.last() != Some(&b.label.as_str()) {
                rows.push(&b.label);
            }
            rows
        });
        let per_row = series.len().max(1) as f64;
        let height = rows.len() as f64 * (per_row * BAR_H + ROW_GAP);
        for d in d0 as i32..=d1 as i32 {
            let v = 10f64.powi(d);
            let gx = x(v);
            let _ = writeln!(
                body,
                r##"<line x1="{gx:.1}" y1="{y}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" font-size="9" text-anchor="middle">{} {}</text>"##,
                y + height,
                y + height + 11.0,
                tick(v),
                escape(&panel.unit)
            );
        }
        for (r, row) in rows.iter().enumerate() {
            let top = y + r as f64 * (per_row * BAR_H + ROW_GAP);
            let _ = writeln!(
                body,
                r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
                LABEL_W - 6.0,
                top + per_row * BAR_H / 2.0 + 3.5,
                escape(row)
            );
            for b in panel.bars.iter().filter(|b| b.label == *row) {
                let by = top + b.series as f64 * BAR_H;
                let colour = COLOURS[b.series % COLOURS.len()];
                let (near, far) = (b.best.min(b.worst), b.best.max(b.worst));
                let _ = writeln!(
                    body,
                    r#"<rect x="{LABEL_W}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/><rect x="{:.1}" y="{by:.1}" width="{:.1}" height="{:.1}" fill="{colour}" opacity="0.35"/>"#,
                    (x(near) - LABEL_W).max(0.5),
                    BAR_H - 1.0,
                    x(near),
                    (x(far) - x(near)).max(0.0),
                    BAR_H - 1.0
                );
            }
        }
        y += height + 34.0;
    }
    let mut legend = String::new();
    for (i, s) in series.iter().enumerate() {
        let lx = LABEL_W + i as f64 * 110.0;
        let _ = write!(
            legend,
            r#"<rect x="{lx}" y="28" width="10" height="10" fill="{}"/><text x="{:.0}" y="37" font-size="10">{}</text>"#,
            COLOURS[i % COLOURS.len()],
            lx + 14.0,
            escape(s)
        );
    }
    let width = LABEL_W + PLOT_W + 40.0;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y:.0}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="18" font-size="14" font-weight="bold">{}</text>
{legend}
<text x="{:.0}" y="37" font-size="9" fill="#555">solid: best repetition; shaded: up to the worst</text>
{body}</svg>
"##,
        escape(title),
        LABEL_W + series.len() as f64 * 110.0
    )
}

/// One line of a [`curve_chart`]: a mechanism's percentile curve.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// `(level, value)` pairs, `level` in `[0, 1)` ascending; values at or
    /// below 0 and levels of 1 are skipped (a log axis has no place for
    /// them).
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (the floors).
    pub dashed: bool,
}

/// A titled set of curves sharing one pair of axes.
#[derive(Clone, Debug)]
pub struct CurvePanel {
    /// Title above the panel.
    pub title: String,
    /// Unit of the values ("ns").
    pub unit: String,
    /// The curves, in legend order.
    pub curves: Vec<Curve>,
}

/// Ten distinguishable colours for curves.
const LINE_COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
const CURVE_W: f64 = 460.0;
const CURVE_H: f64 = 260.0;
const CURVE_LEFT: f64 = 70.0;
const LEGEND_W: f64 = 260.0;

/// `log10(1 / (1 - p))`: the number of nines (0.30 at 50%, 1 at 90%, 2
/// at 99%, 3 at 99.9%).
fn nines(p: f64) -> f64 {
    (1.0 / (1.0 - p)).log10()
}

fn percent(p: f64) -> String {
    let s = format!("{:.5}", p * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// Renders `panels` of percentile curves as one SVG document titled
/// `title`, one panel below the other, each with its legend to the right.
pub fn curve_chart(title: &str, note: &str, panels: &[CurvePanel]) -> String {
    let mut body = String::new();
    let mut y = 56.0;
    for panel in panels {
        let points: Vec<(f64, f64)> = panel
            .curves
            .iter()
            .flat_map(|c| c.points.iter().copied())
            .filter(|&(p, v)| v > 0.0 && (0.0..1.0).contains(&p))
            .collect();
        if points.is_empty() {
            continue;
        }
        let (lo, hi) = points
            .iter()
            .fold((f64::INFINITY, 0f64), |(l, h), &(_, v)| {
                (l.min(v), h.max(v))
            });
        let (v0, v1) = (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        );
        let x_max = points.iter().map(|&(p, _)| nines(p)).fold(1.0f64, f64::max);
        // 99.999% is 5.000000000004 nines in floating point: not 6.
        let x_max = (x_max - 1e-6).ceil();
        let x_min = nines(0.5);
        let top = y + 16.0;
        let px = |p: f64| CURVE_LEFT + (nines(p) - x_min) / (x_max - x_min) * CURVE_W;
        let py = |v: f64| top + CURVE_H - (v.log10() - v0) / (v1 - v0) * CURVE_H;
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" font-weight="bold">{}</text>"#,
            escape(&panel.title)
        );
        // Horizontal grid: one line per power of ten.
        for d in v0 as i32..=v1 as i32 {
            let v = 10f64.powi(d);
            let gy = py(v);
            let _ = writeln!(
                body,
                r##"<line x1="{CURVE_LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="end">{} {}</text>"##,
                CURVE_LEFT + CURVE_W,
                CURVE_LEFT - 4.0,
                gy + 3.0,
                tick(v),
                escape(&panel.unit)
            );
        }
        // Vertical grid: 50%, then one line per nine.
        let mut levels = vec![0.5];
        levels.extend((1..=x_max as i32).map(|k| 1.0 - 10f64.powi(-k)));
        for p in levels {
            let gx = px(p);
            let _ = writeln!(
                body,
                r##"<line x1="{gx:.1}" y1="{top:.1}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"##,
                top + CURVE_H,
                top + CURVE_H + 11.0,
                percent(p)
            );
        }
        for (i, c) in panel.curves.iter().enumerate() {
            let colour = LINE_COLOURS[i % LINE_COLOURS.len()];
            let path: Vec<String> = c
                .points
                .iter()
                .filter(|&&(p, v)| v > 0.0 && (0.0..1.0).contains(&p) && p >= 0.5)
                .map(|&(p, v)| format!("{:.1},{:.1}", px(p), py(v)))
                .collect();
            let dash = if c.dashed {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            };
            if !path.is_empty() {
                let _ = writeln!(
                    body,
                    r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}/>"#,
                    path.join(" ")
                );
            }
            let ly = top + 4.0 + i as f64 * 14.0;
            let lx = CURVE_LEFT + CURVE_W + 16.0;
            let _ = writeln!(
                body,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                lx + 18.0,
                lx + 22.0,
                ly + 3.5,
                escape(&c.label)
            );
        }
        let legend_h = panel.curves.len() as f64 * 14.0;
        y = top + CURVE_H.max(legend_h) + 40.0;
    }
    let width = CURVE_LEFT + CURVE_W + LEGEND_W;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y:.0}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="18" font-size="14" font-weight="bold">{}</text>
<text x="10" y="36" font-size="9" fill="#555">{}</text>
{body}</svg>
"##,
        escape(title),
        escape(note)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_curves_with_dashed_floors() {
        let curve = |label: &str, dashed, scale: f64| Curve {
            label: label.into(),
            points: [0.5, 0.9, 0.99, 0.999, 0.9999]
                .into_iter()
                .zip([300.0, 400.0, 900.0, 20_000.0, 50_000.0])
                .map(|(p, v)| (p, v * scale))
                .chain([(1.0, 1e9)])
                .collect(),
            dashed,
        };
        let panel = CurvePanel {
            title: "8 B <blocking>".into(),
            unit: "ns".into(),
            curves: vec![curve("a & b", false, 1.0), curve("floor", true, 0.5)],
        };
        let svg = curve_chart("tails", "note", &[panel]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        // Each polyline has the five levels below 1 (the level 1 skipped).
        let first = svg.split("<polyline points=\"").nth(1).unwrap();
        let points = first.split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 5);
        assert_eq!(
            svg.matches("stroke-dasharray").count(),
            2,
            "line and legend"
        );
        assert!(svg.contains("a &amp; b") && svg.contains("8 B &lt;blocking&gt;"));
        assert!(svg.contains(">99.99%<") && svg.contains(">50%<"));
        assert!(
            !svg.contains(">99.999%<"),
            "the axis ends at the last level"
        );
        // Nothing to draw: no panel, still a document.
        let empty = curve_chart("t", "", &[]);
        assert!(empty.contains("</svg>") && !empty.contains("<polyline"));
    }

    #[test]
    fn renders_bars_and_escapes_labels() {
        let panel = Panel {
            title: "8 B <polling>".into(),
            unit: "ns".into(),
            bars: vec![
                Bar {
                    label: "a".into(),
                    series: 0,
                    best: 150.0,
                    worst: 300.0,
                },
                Bar {
                    label: "a".into(),
                    series: 1,
                    best: 900.0,
                    worst: 1200.0,
                },
                Bar {
                    label: "b & c".into(),
                    series: 0,
                    best: 20_000.0,
                    worst: 25_000.0,
                },
            ],
        };
        let svg = bar_chart("t", &["p50", "p99"], &[panel]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("opacity=\"0.35\"").count(), 3);
        assert!(svg.contains("b &amp; c") && svg.contains("8 B &lt;polling&gt;"));
    }
}
