//! Models and the layers they share.

pub mod layers;
pub mod loss;
