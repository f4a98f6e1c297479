//! Medians, spreads and percentiles of repeated measurements.

use std::fmt;

/// Repeated measurements of one figure.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub samples: Vec<f64>,
}

impl Summary {
    pub fn of(samples: Vec<f64>) -> Summary {
        Summary { samples }
    }

    pub fn push(&mut self, value: f64) {
        self.samples.push(value);
    }

    pub fn median(&self) -> f64 {
        percentile(&self.samples, 50.0)
    }

    pub fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.samples
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

impl fmt::Display for Summary {
    /// `median (min–max)`, or `—` without samples.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.samples.len() {
            0 => f.write_str("—"),
            1 => f.write_str(&number(self.median())),
            _ => write!(
                f,
                "{} ({}–{})",
                number(self.median()),
                number(self.min()),
                number(self.max())
            ),
        }
    }
}

/// The `p`th percentile (nearest rank on the sorted samples); 0 when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if p == 50.0 && sorted.len().is_multiple_of(2) {
        let mid = sorted.len() / 2;
        return (sorted[mid - 1] + sorted[mid]) / 2.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A number with about three significant digits.
pub fn number(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || (x == x.trunc() && a < 1e6) {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}
