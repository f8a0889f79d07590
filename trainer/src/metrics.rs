//! Classification metrics and confusion-matrix plots.
//!
//! Unweighted accuracy (mean per-class recall) is the headline number: the
//! corpora are not balanced (RAVDESS and SAVEE have half or double as much
//! neutral), and a model that favours the big class should not look better
//! for it.

use std::error::Error;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use seremotion_core::plot::register_font;

/// The fields every metrics object carries in the evaluation JSON (the names
/// the issue and the report use).
pub const METRIC_KEYS: [&str; 5] = [
    "n",
    "accuracy",
    "unweighted_accuracy",
    "macro_f1",
    "confusion",
];

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub n: usize,
    pub accuracy: f64,
    /// Mean recall over the classes present in the truth.
    pub unweighted_accuracy: f64,
    /// Mean F1 over the classes present in the truth or the predictions.
    pub macro_f1: f64,
    /// `confusion[true][predicted]`, in label order.
    pub confusion: Vec<Vec<usize>>,
    /// Per true label, predictions outside the labels (e.g. "no speech
    /// found"): errors that appear in no confusion column.
    pub unclassified: Vec<usize>,
}

impl Metrics {
    /// `truth` values must be `< n_labels`; a prediction `>= n_labels` is a
    /// sentinel for "no label" and counts as an error.
    pub fn from_predictions(n_labels: usize, truth: &[usize], pred: &[usize]) -> Self {
        assert_eq!(truth.len(), pred.len(), "one prediction per true label");
        let mut confusion = vec![vec![0usize; n_labels]; n_labels];
        let mut row_totals = vec![0usize; n_labels];
        let mut unclassified = vec![0usize; n_labels];
        for (&t, &p) in truth.iter().zip(pred) {
            assert!(t < n_labels, "true label {t} out of range 0..{n_labels}");
            row_totals[t] += 1;
            if p < n_labels {
                confusion[t][p] += 1;
            } else {
                unclassified[t] += 1;
            }
        }
        let col_totals: Vec<usize> = (0..n_labels)
            .map(|p| confusion.iter().map(|row| row[p]).sum())
            .collect();
        let correct: usize = (0..n_labels).map(|c| confusion[c][c]).sum();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };

        let recalls: Vec<f64> = (0..n_labels)
            .filter(|&c| row_totals[c] > 0)
            .map(|c| ratio(confusion[c][c], row_totals[c]))
            .collect();
        // F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (row total + column total).
        let f1s: Vec<f64> = (0..n_labels)
            .filter(|&c| row_totals[c] + col_totals[c] > 0)
            .map(|c| ratio(2 * confusion[c][c], row_totals[c] + col_totals[c]))
            .collect();
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        Metrics {
            n: truth.len(),
            accuracy: ratio(correct, truth.len()),
            unweighted_accuracy: mean(&recalls),
            macro_f1: mean(&f1s),
            confusion,
            unclassified,
        }
    }

    /// Recall of each class, `None` where the class never occurs in the truth.
    pub fn recalls(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(c, row)| {
                let total = row.iter().sum::<usize>() + self.unclassified[c];
                (total > 0).then(|| row[c] as f64 / total as f64)
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Plot

const CELL: i32 = 110;
const LEFT: i32 = 120;
const TOP: i32 = 90;
const MARGIN: i32 = 20;

/// Image size for `n` labels.
fn plot_size(n: usize) -> (u32, u32) {
    let grid = CELL * n as i32;
    ((LEFT + grid + MARGIN) as u32, (TOP + grid + MARGIN) as u32)
}

/// Writes a PNG of `confusion` (rows = true, columns = predicted): each cell
/// shows the count and its share of the row, shaded by that share.
pub fn plot_confusion(
    path: &Path,
    labels: &[&str],
    confusion: &[Vec<usize>],
    title: &str,
) -> Result<(), Box<dyn Error>> {
    if labels.is_empty() || confusion.len() != labels.len() {
        return Err(format!(
            "{}: confusion matrix has {} rows for {} labels",
            path.display(),
            confusion.len(),
            labels.len()
        )
        .into());
    }
    register_font()?;
    let root = BitMapBackend::new(path, plot_size(labels.len())).into_drawing_area();
    draw_confusion(&root, labels, confusion, title)
        .and_then(|()| root.present())
        .map_err(|e| format!("{}: cannot draw the confusion matrix: {e}", path.display()))?;
    Ok(())
}

fn draw_confusion<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: &[&str],
    confusion: &[Vec<usize>],
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let n = labels.len() as i32;
    root.fill(&WHITE)?;
    let centred = Pos::new(HPos::Center, VPos::Center);
    let font = |size: f64| TextStyle::from(("sans-serif", size).into_font()).pos(centred);
    let (width, _) = root.dim_in_pixel();
    root.draw(&Text::new(title, (width as i32 / 2, 22), font(22.0)))?;
    root.draw(&Text::new(
        "predicted",
        (LEFT + n * CELL / 2, 50),
        font(16.0),
    ))?;
    root.draw(&Text::new("true", (LEFT / 2 - 10, TOP - 18), font(16.0)))?;
    for (i, label) in labels.iter().enumerate() {
        let i = i as i32;
        root.draw(&Text::new(
            *label,
            (LEFT + i * CELL + CELL / 2, TOP - 18),
            font(16.0),
        ))?;
        root.draw(&Text::new(
            *label,
            (LEFT / 2 - 10, TOP + i * CELL + CELL / 2),
            font(16.0),
        ))?;
    }
    for (r, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        for (c, &count) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let (x, y) = (LEFT + c as i32 * CELL, TOP + r as i32 * CELL);
            root.draw(&Rectangle::new(
                [(x, y), (x + CELL, y + CELL)],
                shade(share).filled(),
            ))?;
            root.draw(&Rectangle::new(
                [(x, y), (x + CELL, y + CELL)],
                BLACK.mix(0.3),
            ))?;
            let ink = if share > 0.5 { WHITE } else { BLACK };
            let (cx, cy) = (x + CELL / 2, y + CELL / 2);
            root.draw(&Text::new(
                count.to_string(),
                (cx, cy - 13),
                font(24.0).color(&ink),
            ))?;
            root.draw(&Text::new(
                format!("{:.1}%", 100.0 * share),
                (cx, cy + 16),
                font(16.0).color(&ink),
            ))?;
        }
    }
    Ok(())
}

/// White (0) to dark blue (1).
fn shade(share: f64) -> RGBColor {
    let s = share.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * s).round() as u8;
    RGBColor(lerp(255.0, 8.0), lerp(255.0, 69.0), lerp(255.0, 148.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    /// Predictions that produce `confusion` (rows true, columns predicted).
    fn expand(confusion: &[[usize; 3]]) -> (Vec<usize>, Vec<usize>) {
        let (mut t, mut p) = (Vec::new(), Vec::new());
        for (r, row) in confusion.iter().enumerate() {
            for (c, &k) in row.iter().enumerate() {
                t.extend(std::iter::repeat_n(r, k));
                p.extend(std::iter::repeat_n(c, k));
            }
        }
        (t, p)
    }

    #[test]
    fn three_class_example_by_hand() {
        //            pred 0  1  2    row total
        // true 0        [4, 1, 0]    5
        // true 1        [2, 6, 2]   10
        // true 2        [1, 0, 3]    4
        // column total   7  7  5    n = 19
        //
        // accuracy = (4 + 6 + 3) / 19 = 13/19
        // recalls  = 4/5, 6/10, 3/4            -> UA = (0.8 + 0.6 + 0.75) / 3 = 0.71666..
        // F1_c = 2 TP / (row + col): 8/12, 12/17, 6/9
        //   -> macro-F1 = (2/3 + 12/17 + 2/3) / 3 = 104/153
        let cm = [[4, 1, 0], [2, 6, 2], [1, 0, 3]];
        let (t, p) = expand(&cm);
        let m = Metrics::from_predictions(3, &t, &p);
        assert_eq!(m.n, 19);
        assert_eq!(m.confusion, cm.map(|r| r.to_vec()).to_vec());
        close(m.accuracy, 13.0 / 19.0);
        close(m.unweighted_accuracy, 2.15 / 3.0);
        close(m.macro_f1, 104.0 / 153.0);
        assert_eq!(m.unclassified, vec![0; 3]);
        assert_eq!(m.recalls(), vec![Some(0.8), Some(0.6), Some(0.75)]);
    }

    #[test]
    fn absent_classes_and_unclassified_predictions() {
        // 4 labels; class 3 never true but predicted once; one clip unclassified (sentinel 4).
        // truth [0, 0, 1, 1, 2], pred [0, 4, 1, 0, 3]
        // confusion rows: 0 -> [1,0,0,0], 1 -> [1,1,0,0], 2 -> [0,0,0,1], 3 -> []
        // accuracy = 2/5; UA over classes 0..=2 = (1/2 + 1/2 + 0) / 3 = 1/3
        // F1: class 0: 2*1/(2+2) = 1/2; class 1: 2*1/(2+1) = 2/3; class 2: 0; class 3
        //   (predicted, never true): 0 -> macro-F1 = (1/2 + 2/3) / 4 = 7/24
        let m = Metrics::from_predictions(4, &[0, 0, 1, 1, 2], &[0, 4, 1, 0, 3]);
        close(m.accuracy, 0.4);
        close(m.unweighted_accuracy, 1.0 / 3.0);
        close(m.macro_f1, 7.0 / 24.0);
        assert_eq!(m.unclassified, vec![1, 0, 0, 0]);
        assert_eq!(m.recalls(), vec![Some(0.5), Some(0.5), Some(0.0), None]);
        assert_eq!(
            m.confusion,
            vec![
                vec![1, 0, 0, 0],
                vec![1, 1, 0, 0],
                vec![0, 0, 0, 1],
                vec![0, 0, 0, 0]
            ]
        );
    }

    #[test]
    fn perfect_and_empty() {
        let m = Metrics::from_predictions(4, &[0, 1, 2, 3, 3], &[0, 1, 2, 3, 3]);
        close(m.accuracy, 1.0);
        close(m.unweighted_accuracy, 1.0);
        close(m.macro_f1, 1.0);
        let e = Metrics::from_predictions(4, &[], &[]);
        assert_eq!((e.n, e.accuracy, e.unweighted_accuracy), (0, 0.0, 0.0));
        // Serialises with the field names the report and the issue use.
        let j = serde_json::to_value(&m).unwrap();
        for key in METRIC_KEYS {
            assert!(j.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn confusion_plot_renders_text_and_shading() {
        let labels = ["neutral", "happy", "sad", "angry"];
        let cm = vec![
            vec![10, 0, 0, 0],
            vec![1, 3, 0, 0],
            vec![0, 0, 0, 0],
            vec![2, 2, 2, 2],
        ];
        register_font().unwrap();
        let (w, h) = plot_size(4);
        let mut buf = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            draw_confusion(&root, &labels, &cm, "test").unwrap();
            root.present().unwrap();
        }
        let px = |x: i32, y: i32| {
            let i = ((y as u32 * w + x as u32) * 3) as usize;
            (buf[i], buf[i + 1], buf[i + 2])
        };
        // The title row has dark text pixels: the embedded font rendered.
        let dark = (0..w as i32)
            .flat_map(|x| (10..34).map(move |y| (x, y)))
            .filter(|&(x, y)| px(x, y).0 < 100)
            .count();
        assert!(dark > 20, "no title text drawn ({dark} dark pixels)");
        // A cell corner (no text there) carries the row share's shade.
        let corner = |r: i32, c: i32| px(LEFT + c * CELL + 5, TOP + r * CELL + 5);
        let rgb = |c: RGBColor| (c.0, c.1, c.2);
        assert_eq!(corner(0, 0), rgb(shade(1.0)));
        assert_eq!(corner(1, 1), rgb(shade(0.75)));
        assert_eq!(corner(2, 2), rgb(shade(0.0)));

        let dir = std::env::temp_dir().join(format!("seremotion-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("cm.png");
        plot_confusion(&png, &labels, &cm, "overall").unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let err = plot_confusion(&png, &labels[..2], &cm, "x").unwrap_err();
        assert!(err.to_string().contains("4 rows for 2 labels"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
