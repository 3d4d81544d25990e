//! Seeds: every random draw of a run derives from the run's seed, so a
//! resumed run repeats an uninterrupted one and two runs with the same seed
//! on the same CPU repeat each other.

pub use vl_data::mix_seed;

/// The seed of stream `stream` of a run seeded `seed`: for a step, its
/// dropout, masking and negatives (`stream` = the step); for an epoch, its
/// order. The data loader's [`mix_seed`] with its last input 0.
pub fn derive_seed(seed: u64, stream: u64) -> u64 {
    mix_seed(seed, stream, 0)
}
