//! Figures as plain functions of plain data (slices, no model types), rendered with plotters to
//! SVG ([`Svg`](crate::notebook::Svg) shows inline in notebooks and saves to files). One file per
//! kind of figure; [`theme`] holds what they share. Bad input (mismatched lengths, empty data,
//! non-finite values) is an [`Error::invalid`](crate::error::Error::invalid), never a panic.

pub mod bar;
pub mod histogram;
pub mod theme;

pub use bar::bar_chart;
pub use histogram::histogram;
pub use theme::{class_color, hsl, palette, style_mesh, tick_label, Figure, GRID, LEGEND_CAP, PALETTE_CLASSES};
