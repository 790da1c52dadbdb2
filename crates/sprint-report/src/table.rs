//! A table of typed cells with named columns and units, rendered for the terminal
//! (comfy-table), as GitHub Markdown, as CSV (full precision) and as JSON.
//!
//! Numbers keep their full `f64` value; `decimals` only governs the terminal and Markdown
//! renderings, so the CSV and JSON carry what was computed.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::error::{ReportError, Result};

/// A column: its name and, when it has one, its unit (shown as `name (unit)`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Unit (`%`, `x`, `pJ`, `s`, ...), if any.
    pub unit: Option<String>,
}

impl Column {
    /// A column without a unit.
    pub fn text(name: &str) -> Self {
        Self {
            name: name.into(),
            unit: None,
        }
    }

    /// A column with a unit.
    pub fn unit(name: &str, unit: &str) -> Self {
        Self {
            name: name.into(),
            unit: Some(unit.into()),
        }
    }

    /// The header text: `name (unit)` or `name`.
    pub fn header(&self) -> String {
        match &self.unit {
            Some(u) => format!("{} ({u})", self.name),
            None => self.name.clone(),
        }
    }
}

/// One cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A number shown with `decimals` digits after the point.
    Num {
        /// The value.
        value: f64,
        /// Digits shown on the terminal and in Markdown.
        decimals: usize,
    },
    /// An integer count.
    Int(i64),
    /// No value (the paper has none, or the stage did not run).
    Empty,
}

impl Cell {
    /// A text cell.
    pub fn text(s: impl Into<String>) -> Self {
        Cell::Text(s.into())
    }

    /// A number cell.
    pub fn num(value: f64, decimals: usize) -> Self {
        Cell::Num { value, decimals }
    }

    /// A number cell, or empty for `None`.
    pub fn opt(value: Option<f64>, decimals: usize) -> Self {
        value.map_or(Cell::Empty, |v| Cell::num(v, decimals))
    }

    /// The rounded rendering (terminal, Markdown).
    pub fn display(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num { value, decimals } if value.is_finite() => format!("{value:.decimals$}"),
            Cell::Num { value, .. } => format!("{value}"),
            Cell::Int(i) => i.to_string(),
            Cell::Empty => "-".into(),
        }
    }

    /// The full-precision rendering (CSV): the shortest text that reads back to the value.
    pub fn exact(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num { value, .. } => format!("{value}"),
            Cell::Int(i) => i.to_string(),
            Cell::Empty => String::new(),
        }
    }

    /// The JSON value (null when empty or not finite).
    pub fn json(&self) -> Value {
        match self {
            Cell::Text(s) => json!(s),
            Cell::Num { value, .. } if value.is_finite() => json!(value),
            Cell::Num { .. } | Cell::Empty => Value::Null,
            Cell::Int(i) => json!(i),
        }
    }

    /// The value of a number cell.
    pub fn value(&self) -> Option<f64> {
        match self {
            Cell::Num { value, .. } => Some(*value),
            Cell::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

/// A table: an id (its file stem), a title, columns, rows and notes under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// File stem of its CSV and JSON (`fig11-speedup`).
    pub id: String,
    /// Title shown above it.
    pub title: String,
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
    /// Notes shown under it (sources, definitions).
    pub notes: Vec<String>,
}

impl Table {
    /// An empty table.
    pub fn new(id: &str, title: &str, columns: Vec<Column>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            columns,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds a row (checked by [`Table::check`] when rendered to files).
    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// Adds a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Every row has one cell per column.
    pub fn check(&self) -> Result<()> {
        for (i, r) in self.rows.iter().enumerate() {
            if r.len() != self.columns.len() {
                return Err(ReportError::RowWidth {
                    table: self.id.clone(),
                    row: i,
                    got: r.len(),
                    want: self.columns.len(),
                });
            }
        }
        Ok(())
    }

    /// The cell of row `r` in the column named `name`.
    pub fn cell(&self, r: usize, name: &str) -> Option<&Cell> {
        let c = self.columns.iter().position(|c| c.name == name)?;
        self.rows.get(r)?.get(c)
    }

    /// The terminal rendering (title line, box table, notes).
    pub fn terminal(&self) -> String {
        let mut t = comfy_table::Table::new();
        t.set_header(self.columns.iter().map(Column::header));
        for r in &self.rows {
            t.add_row(r.iter().map(Cell::display));
        }
        let mut out = format!("{}\n{t}\n", self.title);
        for n in &self.notes {
            out.push_str(&format!("  {n}\n"));
        }
        out
    }

    /// The GitHub-Markdown rendering (numbers right-aligned), notes as a list under it.
    pub fn markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = String::new();
        out.push('|');
        for c in &self.columns {
            out.push_str(&format!(" {} |", esc(&c.header())));
        }
        out.push_str("\n|");
        for (i, _) in self.columns.iter().enumerate() {
            let numeric = self
                .rows
                .iter()
                .any(|r| matches!(r.get(i), Some(Cell::Num { .. } | Cell::Int(_))));
            out.push_str(if numeric { " ---: |" } else { " --- |" });
        }
        out.push('\n');
        for r in &self.rows {
            out.push('|');
            for c in r {
                out.push_str(&format!(" {} |", esc(&c.display())));
            }
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(&format!("\n- {}", esc(n)));
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }

    /// The CSV rendering: header `name (unit)`, full-precision numbers, empty for no value.
    pub fn csv(&self) -> Result<String> {
        self.check()?;
        let mut w = csv::Writer::from_writer(Vec::new());
        let err = |e: csv::Error| ReportError::Write {
            path: format!("{}.csv", self.id).into(),
            reason: e.to_string(),
        };
        w.write_record(self.columns.iter().map(Column::header))
            .map_err(err)?;
        for r in &self.rows {
            w.write_record(r.iter().map(Cell::exact)).map_err(err)?;
        }
        let bytes = w.into_inner().map_err(|e| ReportError::Write {
            path: format!("{}.csv", self.id).into(),
            reason: e.to_string(),
        })?;
        Ok(String::from_utf8(bytes).expect("CSV of UTF-8 cells is UTF-8"))
    }

    /// The JSON document: id, title, columns (name and unit), rows as objects keyed by
    /// column name, notes.
    pub fn json(&self) -> Result<Value> {
        self.check()?;
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let mut m = Map::new();
                for (c, v) in self.columns.iter().zip(r) {
                    m.insert(c.name.clone(), v.json());
                }
                Value::Object(m)
            })
            .collect();
        Ok(json!({
            "id": self.id,
            "title": self.title,
            "columns": self.columns,
            "rows": rows,
            "notes": self.notes,
        }))
    }

    /// The HTML rendering (a `<table>` with caption and notes), text escaped.
    pub fn html(&self) -> String {
        let mut out = format!(
            "<table id=\"{}\">\n<caption>{}</caption>\n<thead><tr>",
            escape_html(&self.id),
            escape_html(&self.title)
        );
        for c in &self.columns {
            out.push_str(&format!("<th>{}</th>", escape_html(&c.header())));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for r in &self.rows {
            out.push_str("<tr>");
            for c in r {
                let class = if matches!(c, Cell::Num { .. } | Cell::Int(_)) {
                    " class=\"n\""
                } else {
                    ""
                };
                out.push_str(&format!("<td{class}>{}</td>", escape_html(&c.display())));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
        if !self.notes.is_empty() {
            out.push_str("<ul class=\"notes\">");
            for n in &self.notes {
                out.push_str(&format!("<li>{}</li>", escape_html(n)));
            }
            out.push_str("</ul>\n");
        }
        out
    }
}

/// `s` with `&`, `<`, `>` and `"` escaped for HTML text and attributes.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(
            "t",
            "Speedup",
            vec![Column::text("model"), Column::unit("speedup", "x")],
        );
        t.push(vec![Cell::text("BERT-B"), Cell::num(1.0 / 3.0, 2)]);
        t.push(vec![Cell::text("a|b"), Cell::Empty]);
        t.note("source: Fig 11");
        t
    }

    #[test]
    fn renderings_agree_on_content_and_precision() {
        let t = sample();
        assert!(t.terminal().contains("0.33") && t.terminal().contains("speedup (x)"));
        let md = t.markdown();
        assert!(
            md.contains("| model | speedup (x) |\n| --- | ---: |"),
            "{md}"
        );
        assert!(md.contains("a\\|b") && md.contains("- source: Fig 11"));
        let csv = t.csv().unwrap();
        assert_eq!(
            csv, "model,speedup (x)\nBERT-B,0.3333333333333333\na|b,\n",
            "full precision in CSV"
        );
        let j = t.json().unwrap();
        assert_eq!(j["rows"][0]["speedup"], json!(1.0 / 3.0));
        assert_eq!(j["rows"][1]["speedup"], Value::Null);
        assert_eq!(j["columns"][1]["unit"], json!("x"));
        assert!(t.html().contains("<td>a|b</td>"));
    }

    #[test]
    fn ragged_rows_are_an_error_naming_the_table() {
        let mut t = sample();
        t.push(vec![Cell::text("x")]);
        let e = t.csv().unwrap_err().to_string();
        assert!(e.contains("table `t`") && e.contains("row 2"), "{e}");
    }
}
