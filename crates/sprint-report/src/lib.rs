//! The report layer of sprint: every table and plot a command or a report shows is built
//! here from result data, so that command-line front ends only parse arguments and print.
//!
//! - [`table`]: a [`Table`] of typed cells with units, rendered for the terminal
//!   (comfy-table), as Markdown, CSV and JSON;
//! - [`plot`]: grouped bars, stacked bars, lines and scatter plots as self-contained SVG
//!   (plotters; text stays text, no fonts needed);
//! - [`document`]: a [`Document`] of sections (paragraphs, tables, plots) written as
//!   `report.md`, a self-contained `report.html`, one CSV and one JSON per table and one SVG
//!   per plot, every file written atomically.

pub mod document;
pub mod error;
pub mod plot;
pub mod table;

pub use document::{Block, Document, Section};
pub use error::{ReportError, Result};
pub use plot::Plot;
pub use table::{Cell, Column, Table};

#[cfg(feature = "render-check")]
pub mod render_check;
