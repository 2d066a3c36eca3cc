//! Layers shared by both models.
