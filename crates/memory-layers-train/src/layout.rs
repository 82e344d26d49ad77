//! The parallel layout: how many ranks, and how the value pool is split over them.

use crate::TrainError;

/// Where the ranks of a parallel run are, and how the value pool is split over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Ranks in the run (`--devices`): `N`.
    pub devices: usize,
    /// Ranks sharing one copy of the value pool, each holding `d/P` of its columns
    /// (`--memory-parallel`): `P`, dividing `N`.
    pub memory_parallel: usize,
}

impl Layout {
    /// Checks the numbers against each other and against `batch_size` (split over the ranks).
    pub fn validate(&self, batch_size: usize) -> Result<(), TrainError> {
        let (n, p) = (self.devices, self.memory_parallel);
        let bad = |rule: String| Err(TrainError::Parallel(rule));
        if n == 0 || p == 0 {
            return bad("--devices and --memory-parallel must be at least 1".into());
        }
        if !n.is_multiple_of(p) {
            return bad(format!("--memory-parallel {p} must divide --devices {n}"));
        }
        if !batch_size.is_multiple_of(n) {
            return bad(format!(
                "the batch size {batch_size} must be divisible by --devices {n} (each takes an \
                 equal share)"
            ));
        }
        Ok(())
    }
}
