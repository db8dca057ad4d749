//! The number format of the alignment layer's large matrix products: the
//! adversarial discriminator's, and self-learning's similarity scores
//! (bfloat16 operands, float32 results where they matter — the
//! discriminator's weights and updates, the map's gradient, the similarity
//! scores compared by self-learning). The type is the trainer's.
pub use embedlab_train::precision::Precision;
