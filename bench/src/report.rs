//! How figures are shown: a series of repeated runs as min / median / max,
//! numbers to three significant digits, a target's verdict.

/// min / median / max of repeated runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series(pub(crate) Vec<f64>);

impl FromIterator<f64> for Series {
    fn from_iter<I: IntoIterator<Item = f64>>(values: I) -> Self {
        Series(values.into_iter().collect())
    }
}

impl Series {
    pub(crate) fn push(&mut self, v: f64) {
        self.0.push(v);
    }
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    pub(crate) fn median(&self) -> f64 {
        let v = self.sorted();
        if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
    }
    pub(crate) fn show(&self, unit: &str) -> String {
        let v = self.sorted();
        match v.len() {
            0 => "—".into(),
            1 => format!("{} {unit}", fmt(v[0])),
            _ => format!("{} / {} / {} {unit}", fmt(v[0]), fmt(v[v.len() / 2]), fmt(v[v.len() - 1])),
        }
    }
}

pub(crate) fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// One row of the main table: the benchmark's number, what it measures,
/// Switchboard's figures, the comparison's, their ratio, the target and
/// whether it was met.
pub(crate) struct Row {
    pub n: &'static str,
    pub what: String,
    pub ours: String,
    pub theirs: String,
    pub ratio: String,
    pub target: &'static str,
    pub verdict: &'static str,
}

/// The rows as Markdown table lines.
pub(crate) fn table(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| {
            format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.n, r.what, r.ours, r.theirs, r.ratio, r.target, r.verdict
            )
        })
        .collect()
}

/// A Markdown table: the header, its rule, and one line per row.
pub(crate) fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("|");
        for c in cells {
            s.push(' ');
            s.push_str(c);
            s.push_str(" |");
        }
        s + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    out += &line(&mut header.iter().map(|_| "---"));
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}
