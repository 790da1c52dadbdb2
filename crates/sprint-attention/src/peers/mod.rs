//! The peer designs' pruning decisions as functional models (the attention-pruning
//! accelerators SPRINT is compared with), each computing one layer into the same per-head
//! blocks as SPRINT's datapath, so that the locality engine and the traces treat every
//! variant alike. Parameters: [`sprint_core::peers`].

pub mod sanger;
