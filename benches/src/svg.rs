//! Hand-written SVG bar charts (no plotting dependency): horizontal bars on
//! a log axis, one panel per group, each bar drawn solid to its best
//! repetition and shaded to its worst, so the min–max range is visible.

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

#[cfg(test)]
mod tests {
    use super::*;

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
