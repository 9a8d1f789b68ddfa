//! `zerolost-lab demo --report FILE`: one self-contained HTML page (inline CSS and SVG, no
//! scripts, nothing fetched) with the run's throughput per stage over time, its faults on
//! the same time axis, latency percentiles per stage and the reconciliation table.

use std::fmt::Write as _;
use std::path::Path;

use zerolost_core::Error;
use zerolost_testkit::timeline::{Latencies, Percentiles, Timeline};

/// What the report shows.
pub struct ReportInput<'a> {
    /// The run in one line (messages, backend, stores, seed).
    pub title: String,
    /// The command that replays the run.
    pub replay: String,
    /// Nothing lost, nothing applied twice.
    pub ok: bool,
    /// The verdict in words.
    pub verdict: String,
    /// Reconciliation by id: (what, how many).
    pub by_id: Vec<(&'static str, String)>,
    /// The article's count-based view: (what, how many).
    pub by_count: Vec<(&'static str, String)>,
    /// Faults injected by kind.
    pub fault_counts: Vec<(String, u64)>,
    /// Stages over time and fault times.
    pub timeline: &'a Timeline,
    /// Latency percentiles per stage.
    pub latencies: &'a Latencies,
}

/// Writes the report to `path` (creating its folder).
pub fn write(path: &Path, input: &ReportInput<'_>) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, render(input))
        .map_err(|e| Error::Config(format!("cannot write the report {}: {e}", path.display())))
}

/// The whole page.
pub fn render(input: &ReportInput<'_>) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let verdict_class = if input.ok { "ok" } else { "failed" };
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>zerolost-lab demo report</title><style>{STYLE}</style></head><body>\n\
         <h1>zerolost-lab demo</h1>\n<p class=\"run\">{}</p>\n\
         <p class=\"verdict {verdict_class}\" id=\"verdict\">{}</p>\n\
         <p class=\"replay\">replay: <code>{}</code></p>\n",
        esc(&input.title),
        esc(&input.verdict),
        esc(&input.replay)
    );
    page.push_str("<h2>Reconciliation</h2>\n");
    page.push_str(&reconciliation_table(input));
    page.push_str("<h2>Throughput per stage</h2>\n");
    page.push_str(&throughput_chart(input.timeline));
    page.push_str("<h2>Faults on the timeline</h2>\n");
    page.push_str(&fault_chart(input.timeline, &input.fault_counts));
    page.push_str("<h2>Latency percentiles</h2>\n");
    page.push_str(&latency_chart(input.latencies));
    page.push_str(&latency_table(input.latencies));
    page.push_str("</body></html>\n");
    page
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px 40px;color:#222;max-width:1100px}\
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}\
.run{color:#555;margin-top:0}.verdict{font-size:20px;font-weight:bold;padding:8px 12px;border-radius:4px;display:inline-block}\
.ok{background:#e3f5e1;color:#1b6e1b}.failed{background:#fbe3e3;color:#a11}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 12px}\
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\
svg{display:block;margin:8px 0;background:#fff}code{background:#f3f3f3;padding:2px 4px}";

/// Escapes text for HTML and SVG.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn reconciliation_table(input: &ReportInput<'_>) -> String {
    let mut t = String::from(
        "<table id=\"reconciliation\"><tr><th>by message id</th><th></th>\
         <th>the article's count view</th><th></th></tr>\n",
    );
    let rows = input.by_id.len().max(input.by_count.len());
    for i in 0..rows {
        let cell = |side: &[(&'static str, String)]| {
            side.get(i).map_or_else(
                || "<td></td><td></td>".to_owned(),
                |(name, value)| {
                    format!("<td>{}</td><td class=\"n\">{}</td>", esc(name), esc(value))
                },
            )
        };
        let _ = writeln!(
            t,
            "<tr>{}{}</tr>",
            cell(&input.by_id),
            cell(&input.by_count)
        );
    }
    t.push_str("</table>\n");
    t
}

/// Plot area of the time charts.
const WIDTH: f64 = 1000.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

const STAGES: [(&str, &str); 3] = [
    ("enqueued", "#4e79a7"),
    ("published", "#f28e2b"),
    ("processed", "#59a14f"),
];

/// A round step for about `ticks` ticks over `0..max`.
fn tick_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn span_s(timeline: &Timeline) -> f64 {
    (timeline.bucket_s * timeline.enqueued.len() as f64).max(timeline.bucket_s)
}

fn trim(value: f64) -> String {
    let s = format!("{value:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Messages per second per stage: one panel each (stages run at very different rates, so
/// each has its own scale), on one shared time axis.
fn throughput_chart(timeline: &Timeline) -> String {
    const PANEL: f64 = 110.0;
    const GAP: f64 = 24.0;
    let span = span_s(timeline);
    let series = [&timeline.enqueued, &timeline.published, &timeline.processed];
    let bottom = 10.0 + (PANEL + GAP) * series.len() as f64 - GAP;
    let height = bottom + 40.0;
    let mut svg = format!(
        "<svg id=\"throughput\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\">\n\
         <title>Messages per second per stage</title>\n"
    );
    for (i, (values, stage)) in series.iter().zip(STAGES).enumerate() {
        let top = 10.0 + (PANEL + GAP) * i as f64;
        svg.push_str(&stage_panel(
            timeline,
            values,
            stage,
            top,
            top + PANEL,
            span,
        ));
    }
    svg.push_str(&axis_for(LEFT, span, bottom));
    svg.push_str("</svg>\n");
    svg
}

/// One stage's messages per second between `top` and `bottom`.
fn stage_panel(
    timeline: &Timeline,
    values: &[u64],
    (name, color): (&str, &str),
    top: f64,
    bottom: f64,
    span: f64,
) -> String {
    let rate = |n: u64| n as f64 / timeline.bucket_s;
    let peak = values.iter().map(|n| rate(*n)).fold(1.0, f64::max);
    let step = tick_step(peak, 2.0);
    let y_max = (peak / step).ceil() * step;
    let x_of = |t: f64| LEFT + t / span * (WIDTH - LEFT - RIGHT);
    let y_of = |v: f64| bottom - v / y_max * (bottom - top);
    let mut svg = String::new();
    let mut v = 0.0;
    while v <= y_max + 1e-9 {
        let y = y_of(v);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            human(v)
        );
        v += step;
    }
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let t = (i as f64 + 0.5) * timeline.bucket_s;
            format!("{:.1},{:.1}", x_of(t), y_of(rate(*n)))
        })
        .collect();
    let total: u64 = values.iter().sum();
    let _ = writeln!(
        svg,
        "<polyline class=\"stage\" data-stage=\"{name}\" fill=\"none\" stroke=\"{color}\" \
         stroke-width=\"2\" points=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\" fill=\"{color}\">\
         {name} /s (total {total})</text>",
        points.join(" "),
        WIDTH - RIGHT,
        top + 12.0
    );
    svg
}

/// Milliseconds as read at a glance: one decimal under 10 ms, whole above.
fn millis(ms: f64) -> String {
    if ms < 10.0 {
        trim((ms * 10.0).round() / 10.0)
    } else {
        format!("{ms:.0}")
    }
}

/// 12,345 → "12k"; small values as they are.
fn human(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", trim(v / 1000.0))
    } else {
        trim(v)
    }
}

const FAULT_COLORS: [&str; 8] = [
    "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#4e79a7", "#f28e2b",
];

/// One row per fault kind, a tick at each fault's time.
fn fault_chart(timeline: &Timeline, counts: &[(String, u64)]) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for fault in &timeline.faults {
        if !kinds.contains(&fault.kind.as_str()) {
            kinds.push(&fault.kind);
        }
    }
    kinds.sort_unstable();
    let row = 26.0;
    let top = 10.0;
    let bottom = top + row * kinds.len().max(1) as f64;
    let height = bottom + 40.0;
    let left = LEFT + 200.0;
    let span = span_s(timeline);
    let x_of = |t: f64| left + t / span * (WIDTH - left - RIGHT);
    let mut svg = format!(
        "<svg id=\"faults\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\">\n\
         <title>Faults injected over time</title>\n"
    );
    if kinds.is_empty() {
        let _ = writeln!(
            svg,
            "<text x=\"{left}\" y=\"{}\" font-size=\"13\">no faults were injected</text>",
            top + 16.0
        );
    }
    for (i, kind) in kinds.iter().enumerate() {
        let y = top + row * i as f64;
        let color = FAULT_COLORS[i % FAULT_COLORS.len()];
        let total = counts
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| timeline.faults.iter().filter(|f| f.kind == *kind).count() as u64);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{} ({total})</text>\
             <line x1=\"{left}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#eee\"/>",
            left - 8.0,
            y + row / 2.0 + 4.0,
            esc(kind),
            y + row / 2.0,
            WIDTH - RIGHT,
            y + row / 2.0
        );
        for fault in timeline.faults.iter().filter(|f| f.kind == *kind) {
            let x = x_of(fault.at_s.min(span));
            let _ = writeln!(
                svg,
                "<line class=\"fault\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" \
                 stroke=\"{color}\" stroke-width=\"2\"/>",
                y + 4.0,
                y + row - 4.0
            );
        }
    }
    svg.push_str(&axis_for(left, span, bottom));
    svg.push_str("</svg>\n");
    svg
}

/// The time axis (seconds) under a chart whose plot spans `left..WIDTH - RIGHT` and ends
/// at `bottom`.
fn axis_for(left: f64, span: f64, bottom: f64) -> String {
    let mut svg = String::new();
    let step = tick_step(span, 10.0);
    let x_of = |t: f64| left + t / span * (WIDTH - left - RIGHT);
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\" stroke=\"#333\"/>",
        WIDTH - RIGHT
    );
    let mut t = 0.0;
    while t <= span + 1e-9 {
        let x = x_of(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{bottom}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#333\"/>\
             <text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            bottom + 4.0,
            bottom + 16.0,
            trim(t)
        );
        t += step;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">seconds since start</text>",
        (left + WIDTH - RIGHT) / 2.0,
        bottom + 32.0
    );
    svg
}

const PERCENTILES: [(&str, &str); 5] = [
    ("p50", "#a0cbe8"),
    ("p90", "#4e79a7"),
    ("p99", "#f28e2b"),
    ("p99.9", "#e15759"),
    ("max", "#79706e"),
];

fn stages(latencies: &Latencies) -> [(&'static str, &Percentiles); 3] {
    [
        ("enqueue → confirm", &latencies.enqueue_to_confirm),
        ("confirm → effect", &latencies.confirm_to_effect),
        ("enqueue → effect", &latencies.end_to_end),
    ]
}

fn values(p: &Percentiles) -> [f64; 5] {
    [p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms]
}

/// Horizontal bars per stage and percentile, on a log scale of milliseconds.
fn latency_chart(latencies: &Latencies) -> String {
    let stages = stages(latencies);
    let bar = 12.0;
    let group = bar * 5.0 + 16.0;
    let left = 160.0;
    let top = 30.0;
    let bottom = top + group * 3.0;
    let height = bottom + 40.0;
    let peak = stages
        .iter()
        .flat_map(|(_, p)| values(p))
        .fold(1.0, f64::max);
    let (lo, hi) = (-1.0f64, peak.log10().ceil().max(1.0));
    let x_of = |ms: f64| left + (ms.max(0.1).log10() - lo) / (hi - lo) * (WIDTH - left - RIGHT);
    let mut svg = format!(
        "<svg id=\"latency\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\">\n\
         <title>Latency percentiles per stage (ms, log scale)</title>\n"
    );
    for (i, (name, color)) in PERCENTILES.iter().enumerate() {
        let x = left + i as f64 * 90.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"6\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"16\" font-size=\"12\">{name}</text>",
            x + 16.0
        );
    }
    let mut exponent = lo;
    while exponent <= hi + 1e-9 {
        let ms = 10f64.powf(exponent);
        let x = x_of(ms);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            bottom + 16.0,
            trim(ms)
        );
        exponent += 1.0;
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">milliseconds (log scale)</text>",
        (left + WIDTH - RIGHT) / 2.0,
        bottom + 32.0
    );
    for (g, (stage, p)) in stages.iter().enumerate() {
        let y0 = top + g as f64 * group;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y0 + bar * 2.5 + 4.0,
            esc(stage)
        );
        for (i, (value, (name, color))) in values(p).iter().zip(PERCENTILES).enumerate() {
            let y = y0 + i as f64 * bar;
            let w = (x_of(*value) - left).max(1.0);
            let _ = writeln!(
                svg,
                "<rect class=\"latency\" x=\"{left}\" y=\"{y:.1}\" width=\"{w:.1}\" \
                 height=\"{}\" fill=\"{color}\"><title>{} {name}: {value:.1} ms</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
                bar - 2.0,
                esc(stage),
                left + w + 4.0,
                y + bar - 3.0,
                millis(*value)
            );
        }
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#333\"/>"
    );
    svg.push_str("</svg>\n");
    svg
}

fn latency_table(latencies: &Latencies) -> String {
    let mut t = String::from(
        "<table id=\"latencies\"><tr><th>stage</th><th>samples</th><th>p50 ms</th>\
         <th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>\n",
    );
    for (stage, p) in stages(latencies) {
        let _ = write!(
            t,
            "<tr><td>{}</td><td class=\"n\">{}</td>",
            esc(stage),
            p.samples
        );
        for v in values(p) {
            let _ = write!(t, "<td class=\"n\">{v:.1}</td>");
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</table>\n");
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerolost_testkit::timeline::TimedFault;

    fn input<'a>(timeline: &'a Timeline, latencies: &'a Latencies) -> ReportInput<'a> {
        ReportInput {
            title: "3 messages <memory>".into(),
            replay: "zerolost-lab demo --seed 1".into(),
            ok: true,
            verdict: "OK: nothing lost, nothing applied twice".into(),
            by_id: vec![("produced", "3".into()), ("lost", "0".into())],
            by_count: vec![("produced", "3".into())],
            fault_counts: vec![("lost_confirm".into(), 1)],
            timeline,
            latencies,
        }
    }

    #[test]
    fn the_page_has_the_table_three_charts_and_escapes_text() {
        let timeline = Timeline {
            bucket_s: 0.5,
            enqueued: vec![2, 1],
            published: vec![1, 2],
            processed: vec![0, 3],
            faults: vec![TimedFault {
                kind: "lost_confirm".into(),
                at_s: 0.7,
            }],
        };
        let latencies = Latencies {
            end_to_end: Percentiles::of(vec![std::time::Duration::from_millis(40)]),
            ..Latencies::default()
        };
        let page = render(&input(&timeline, &latencies));
        assert!(page.contains("<table id=\"reconciliation\">"));
        assert!(page.contains("<td>lost</td><td class=\"n\">0</td>"));
        for chart in ["throughput", "faults", "latency"] {
            assert!(page.contains(&format!("<svg id=\"{chart}\"")), "{chart}");
        }
        assert_eq!(page.matches("class=\"stage\"").count(), 3);
        assert_eq!(page.matches("class=\"fault\"").count(), 1);
        assert!(page.contains("lost_confirm (1)"));
        assert!(page.contains("&lt;memory&gt;") && !page.contains("<memory>"));
        // Two buckets of 0.5 s: 4 messages/s enqueued in the first.
        assert!(page.contains("data-stage=\"enqueued\""));
        assert!(!page.contains("<script"), "self-contained, no scripts");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(100.0, 10.0), 10.0);
        assert_eq!(tick_step(47.0, 5.0), 10.0);
        assert_eq!(tick_step(0.9, 10.0), 0.1);
    }
}
