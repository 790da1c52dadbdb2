//! The structure check of the workspace (docs/architecture.md): every crate's `src/` read
//! with a small lexer, and reported
//! - functions over [`check::MAX_FUNCTION_LINES`] lines outside tests,
//! - files over [`check::MAX_FILE_LINES`] lines outside tests (data tables exempt),
//! - circles of module uses inside a crate (`A` uses `B` and `B` uses `A`, directly or
//!   through others),
//! - files embedded (`include_str!`, `include_bytes!`, in any `.rs` file of a crate) from
//!   outside the crate's folder: `cargo package` leaves them out (`--no-verify` does not
//!   build, so it would not notice).
//!
//! Findings named in the allow-list ([`allow`]) are warnings; others fail, and so does an
//! entry that names nothing any more. Run from the workspace root with
//! `cargo run -p sprint-structure` (CI does).

pub mod allow;
pub mod check;
pub mod graph;
pub mod items;
pub mod lex;
pub mod tree;
