//! Models and the layers they share.

pub mod import;
pub mod init;
pub mod layers;
pub mod loss;
