//! Functional model.
