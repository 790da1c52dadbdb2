//! A report document: a title, sections of paragraphs, lists, tables and plots, written as
//! `report.md`, a self-contained `report.html` (inline SVG and CSS, no scripts, nothing
//! fetched), `tables/ID.csv` + `tables/ID.json` per table and `plots/ID.svg` per plot.
//!
//! Every file is written atomically (a temporary file renamed into place), so an
//! interrupted write never leaves a partial file in the output folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{ReportError, Result};
use crate::plot::Plot;
use crate::table::{Table, escape_html};

/// One block of a section.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// A paragraph of plain text.
    Paragraph(String),
    /// A bulleted list of plain-text items.
    List(Vec<String>),
    /// A table (also written as CSV and JSON).
    Table(Table),
    /// A plot (written as SVG, inlined in the HTML).
    Plot(Plot),
}

/// A section: an anchor id, a heading and its blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// Anchor (lowercase, dashes).
    pub id: String,
    /// Heading.
    pub heading: String,
    /// Content, in order.
    pub blocks: Vec<Block>,
}

impl Section {
    /// An empty section.
    pub fn new(id: &str, heading: &str) -> Self {
        Self {
            id: id.into(),
            heading: heading.into(),
            blocks: Vec::new(),
        }
    }

    /// Appends a paragraph.
    pub fn paragraph(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Paragraph(text.into()));
        self
    }

    /// Appends a list.
    pub fn list(&mut self, items: Vec<String>) -> &mut Self {
        self.blocks.push(Block::List(items));
        self
    }

    /// Appends a table.
    pub fn table(&mut self, t: Table) -> &mut Self {
        self.blocks.push(Block::Table(t));
        self
    }

    /// Appends a plot.
    pub fn plot(&mut self, p: Plot) -> &mut Self {
        self.blocks.push(Block::Plot(p));
        self
    }
}

/// A whole report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    /// Title.
    pub title: String,
    /// Sections, in order.
    pub sections: Vec<Section>,
}

/// The files a written document consists of, relative to its folder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Written {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// `tables/ID.csv` and `tables/ID.json`.
    pub tables: Vec<PathBuf>,
    /// `plots/ID.svg`.
    pub plots: Vec<PathBuf>,
}

impl Document {
    /// Every table, in document order.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.sections.iter().flat_map(|s| {
            s.blocks.iter().filter_map(|b| match b {
                Block::Table(t) => Some(t),
                _ => None,
            })
        })
    }

    /// Every plot, in document order.
    pub fn plots(&self) -> impl Iterator<Item = &Plot> {
        self.sections.iter().flat_map(|s| {
            s.blocks.iter().filter_map(|b| match b {
                Block::Plot(p) => Some(p),
                _ => None,
            })
        })
    }

    /// Table and plot ids are unique and usable as file names.
    pub fn check(&self) -> Result<()> {
        let mut seen = BTreeSet::new();
        let ids = self
            .tables()
            .map(|t| format!("tables/{}", t.id))
            .chain(self.plots().map(|p| format!("plots/{}", p.id())));
        for id in ids {
            let stem = id.split('/').nth(1).unwrap_or_default();
            if stem.is_empty()
                || !stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ReportError::Plot {
                    plot: stem.to_string(),
                    reason: "ids must be non-empty ASCII letters, digits, '-' or '_'".into(),
                });
            }
            if !seen.insert(id.clone()) {
                return Err(ReportError::DuplicateId(id));
            }
        }
        for t in self.tables() {
            t.check()?;
        }
        Ok(())
    }

    /// The Markdown text (tables inline with links to their CSV and JSON, plots as images).
    pub fn markdown(&self) -> String {
        let mut out = format!("# {}\n", self.title);
        for s in &self.sections {
            out.push_str(&format!("\n## {}\n", s.heading));
            for b in &s.blocks {
                out.push('\n');
                match b {
                    Block::Paragraph(p) => out.push_str(&format!("{p}\n")),
                    Block::List(items) => {
                        for i in items {
                            out.push_str(&format!("- {i}\n"));
                        }
                    }
                    Block::Table(t) => {
                        out.push_str(&format!(
                            "**{}** ([CSV](tables/{id}.csv), [JSON](tables/{id}.json))\n\n",
                            t.title,
                            id = t.id
                        ));
                        out.push_str(&t.markdown());
                    }
                    Block::Plot(p) => {
                        out.push_str(&format!("![{}](plots/{}.svg)\n", p.title(), p.id()));
                    }
                }
            }
        }
        out
    }

    /// The self-contained HTML text (inline CSS and SVG; no scripts, no external resource).
    pub fn html(&self) -> Result<String> {
        let mut out =
            String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str(&format!("<title>{}</title>\n", escape_html(&self.title)));
        out.push_str(concat!(
            "<style>\n",
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\n",
            "table{border-collapse:collapse;margin:.5em 0 1.5em}\n",
            "caption{text-align:left;font-weight:bold;padding:.3em 0}\n",
            "th,td{border:1px solid #bbb;padding:.25em .6em}\n",
            "th{background:#f2f2f2}\n",
            "td.n{text-align:right;font-variant-numeric:tabular-nums}\n",
            "ul.notes{font-size:.9em;color:#555;margin-top:-1em}\n",
            "figure{margin:1em 0}\n",
            "figure svg{max-width:100%;height:auto}\n",
            "</style>\n</head>\n<body>\n"
        ));
        out.push_str(&format!("<h1>{}</h1>\n", escape_html(&self.title)));
        out.push_str("<nav><ul>\n");
        for s in &self.sections {
            out.push_str(&format!(
                "<li><a href=\"#{}\">{}</a></li>\n",
                escape_html(&s.id),
                escape_html(&s.heading)
            ));
        }
        out.push_str("</ul></nav>\n");
        for s in &self.sections {
            out.push_str(&format!(
                "<section id=\"{}\">\n<h2>{}</h2>\n",
                escape_html(&s.id),
                escape_html(&s.heading)
            ));
            for b in &s.blocks {
                match b {
                    Block::Paragraph(p) => {
                        out.push_str(&format!("<p>{}</p>\n", escape_html(p)));
                    }
                    Block::List(items) => {
                        out.push_str("<ul>\n");
                        for i in items {
                            out.push_str(&format!("<li>{}</li>\n", escape_html(i)));
                        }
                        out.push_str("</ul>\n");
                    }
                    Block::Table(t) => out.push_str(&t.html()),
                    Block::Plot(p) => {
                        let svg = p.svg()?;
                        let body = svg.trim_start();
                        let body = match body.strip_prefix("<?xml") {
                            Some(rest) => rest.split_once("?>").map_or(rest, |x| x.1),
                            None => body,
                        };
                        out.push_str(&format!(
                            "<figure id=\"plot-{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
                            escape_html(p.id()),
                            body.trim(),
                            escape_html(p.title())
                        ));
                    }
                }
            }
            out.push_str("</section>\n");
        }
        out.push_str("</body>\n</html>\n");
        Ok(out)
    }

    /// Writes the document into `dir` (created if missing): report.md, report.html,
    /// tables/*.csv + *.json, plots/*.svg. Every file is checked and rendered before the
    /// first one is written, and each is written atomically.
    pub fn write(&self, dir: &Path) -> Result<Written> {
        self.check()?;
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        let mut w = Written {
            markdown: "report.md".into(),
            html: "report.html".into(),
            ..Written::default()
        };
        for t in self.tables() {
            let csv: PathBuf = format!("tables/{}.csv", t.id).into();
            let json: PathBuf = format!("tables/{}.json", t.id).into();
            files.push((csv.clone(), t.csv()?));
            let text = serde_json::to_string_pretty(&t.json()?).expect("JSON values serialise");
            files.push((json.clone(), text + "\n"));
            w.tables.extend([csv, json]);
        }
        for p in self.plots() {
            let svg: PathBuf = format!("plots/{}.svg", p.id()).into();
            files.push((svg.clone(), p.svg()?));
            w.plots.push(svg);
        }
        files.push((w.markdown.clone(), self.markdown()));
        files.push((w.html.clone(), self.html()?));
        for sub in ["tables", "plots"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| ReportError::Write {
                path: d.clone(),
                reason: e.to_string(),
            })?;
        }
        for (rel, text) in &files {
            write_text(&dir.join(rel), text)?;
        }
        Ok(w)
    }
}

/// Writes `text` to `path` atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    sprint_core::outfile::write_atomic::<ReportError>(path, |f| {
        use std::io::Write;
        f.write_all(text.as_bytes())
            .map_err(|e| ReportError::Write {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
    })
}
