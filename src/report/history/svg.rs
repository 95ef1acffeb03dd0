//! The sparkline of a row's time to ready over the nights, as numbers an SVG is drawn from: the
//! template writes them out (escaped like any text), so no markup is built here.
//!
//! The box is fixed ([`WIDTH`] x [`HEIGHT`]) so that a page of a thousand rows stays light. Each
//! night has its place along x whether or not it has a time, so a night without one (the cell
//! failed, or was not in that night's run) leaves a gap: the line is broken there. The slowest time
//! is at the top; the fastest and slowest are written at the right.

use serde::Serialize;

/// The chart's width and height, in CSS pixels.
pub const WIDTH: u32 = 200;
pub const HEIGHT: u32 = 32;
/// Where the points go: inside a margin (a point's circle must fit), left of the labels.
const LEFT: f64 = 4.0;
const RIGHT: f64 = 152.0;
const TOP: f64 = 4.0;
const BOTTOM: f64 = 28.0;
/// The labels' right edge.
const LABEL_X: f64 = 198.0;

/// One night's value on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The night's name in titles.
    pub night: String,
    pub ready_s: Option<f64>,
}

/// A chart, ready for the template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub view_box: String,
    /// What it shows, for screen readers.
    pub label: String,
    /// Each run of consecutive nights with a time: a polyline's `points`.
    pub lines: Vec<String>,
    pub points: Vec<Point>,
    pub texts: Vec<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub cx: String,
    pub cy: String,
    /// `night: ready 12.3s`
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Text {
    pub x: String,
    pub y: String,
    pub text: String,
}

pub use crate::report::html::secs;

fn coordinate(v: f64) -> String {
    format!("{v:.1}")
}

/// The chart of `values`, one per night, oldest first.
pub fn chart(values: &[Value]) -> Chart {
    let times: Vec<f64> = values.iter().filter_map(|v| v.ready_s).filter(|t| t.is_finite()).collect();
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    let max = times.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let x = |i: usize| match values.len() {
        0 | 1 => (LEFT + RIGHT) / 2.0,
        n => LEFT + (RIGHT - LEFT) * i as f64 / (n - 1) as f64,
    };
    // The slowest at the top; all equal, in the middle.
    let y = |t: f64| if max > min { BOTTOM - (BOTTOM - TOP) * (t - min) / (max - min) } else { (TOP + BOTTOM) / 2.0 };
    let mut lines = Vec::new();
    let mut points = Vec::new();
    let mut run: Vec<String> = Vec::new();
    for (i, value) in values.iter().enumerate() {
        match value.ready_s.filter(|t| t.is_finite()) {
            Some(t) => {
                let (cx, cy) = (coordinate(x(i)), coordinate(y(t)));
                run.push(format!("{cx},{cy}"));
                points.push(Point { cx, cy, title: format!("{}: ready {}", value.night, secs(t)) });
            }
            None => end_line(&mut run, &mut lines),
        }
    }
    end_line(&mut run, &mut lines);
    let texts = labels(&times, min, max);
    Chart {
        width: WIDTH,
        height: HEIGHT,
        view_box: format!("0 0 {WIDTH} {HEIGHT}"),
        label: aria_label(values.len(), times.len(), min, max),
        lines,
        points,
        texts,
    }
}

/// Ends the current run of points: a line when it has two or more (one point is its circle alone).
fn end_line(run: &mut Vec<String>, lines: &mut Vec<String>) {
    if run.len() > 1 {
        lines.push(run.join(" "));
    }
    run.clear();
}

/// The slowest at the top right, the fastest at the bottom right; one label when they are equal.
fn labels(times: &[f64], min: f64, max: f64) -> Vec<Text> {
    let text = |y: f64, s: f64| Text { x: coordinate(LABEL_X), y: coordinate(y), text: secs(s) };
    match times {
        [] => vec![Text { x: coordinate(LABEL_X), y: coordinate(BOTTOM - 8.0), text: "no time".into() }],
        _ if secs(min) == secs(max) => vec![text((TOP + BOTTOM) / 2.0 + 3.0, max)],
        _ => vec![text(TOP + 6.0, max), text(BOTTOM + 2.0, min)],
    }
}

fn aria_label(nights: usize, timed: usize, min: f64, max: f64) -> String {
    let nights = plural(nights, "night");
    match timed {
        0 => format!("time to ready over {nights}: none reached ready"),
        _ => format!("time to ready over {nights} ({} timed): from {} to {}", timed, secs(min), secs(max)),
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(times: &[Option<f64>]) -> Vec<Value> {
        times.iter().enumerate().map(|(i, t)| Value { night: format!("n{i}"), ready_s: *t }).collect()
    }

    fn xy(point: &Point) -> (f64, f64) {
        (point.cx.parse().unwrap(), point.cy.parse().unwrap())
    }

    #[test]
    fn points_are_scaled_into_the_box_slowest_at_the_top() {
        let c = chart(&values(&[Some(10.0), Some(30.0), Some(20.0)]));
        assert_eq!((c.width, c.height, c.view_box.as_str()), (200, 32, "0 0 200 32"));
        let points: Vec<(f64, f64)> = c.points.iter().map(xy).collect();
        assert_eq!(points, [(4.0, 28.0), (78.0, 4.0), (152.0, 16.0)]);
        for (x, y) in &points {
            assert!((0.0..=f64::from(WIDTH)).contains(x) && (0.0..=f64::from(HEIGHT)).contains(y));
        }
        assert_eq!(c.lines, ["4.0,28.0 78.0,4.0 152.0,16.0"]);
        assert_eq!(c.points[1].title, "n1: ready 30.0s");
        let texts: Vec<&str> = c.texts.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["30.0s", "10.0s"], "the max at the top, the min below");
        assert_eq!(c.label, "time to ready over 3 nights (3 timed): from 10.0s to 30.0s");
    }

    #[test]
    fn a_night_without_a_time_breaks_the_line() {
        let c = chart(&values(&[Some(1.0), Some(2.0), None, Some(3.0), Some(4.0), None, Some(5.0)]));
        assert_eq!(c.points.len(), 5);
        assert_eq!(c.lines.len(), 2, "two runs of two; the last point alone has no line: {:?}", c.lines);
        assert_eq!(c.lines[0].split(' ').count(), 2);
        // Each night keeps its place: the fourth night is halfway along.
        assert_eq!(xy(&c.points[2]).0, 78.0);
    }

    #[test]
    fn a_single_night_is_one_point_in_the_middle() {
        let c = chart(&values(&[Some(12.34)]));
        assert_eq!(c.points.iter().map(xy).collect::<Vec<_>>(), [(78.0, 16.0)]);
        assert!(c.lines.is_empty());
        assert_eq!(c.texts.len(), 1);
        assert_eq!(c.texts[0].text, "12.3s");
        assert_eq!(c.label, "time to ready over 1 night (1 timed): from 12.3s to 12.3s");
    }

    #[test]
    fn all_equal_is_a_flat_line_in_the_middle() {
        let c = chart(&values(&[Some(7.0), Some(7.0), Some(7.0)]));
        assert!(c.points.iter().all(|p| xy(p).1 == 16.0), "{:?}", c.points);
        assert_eq!(c.texts.len(), 1, "min and max are one label");
    }

    #[test]
    fn no_time_at_all_draws_nothing_and_says_so() {
        let c = chart(&values(&[None, None]));
        assert!(c.points.is_empty() && c.lines.is_empty());
        assert_eq!(c.texts[0].text, "no time");
        assert_eq!(c.label, "time to ready over 2 nights: none reached ready");
        let nan = chart(&values(&[Some(f64::NAN), Some(2.0)]));
        assert_eq!(nan.points.len(), 1, "a time that is not a number is no time");
    }
}
