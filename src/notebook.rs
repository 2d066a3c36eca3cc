//! Notebook helpers.
