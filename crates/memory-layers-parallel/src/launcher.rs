//! What an MPI launcher (Open MPI, MPICH/PMI, SLURM) tells the processes it starts, read from
//! their environment: needed before MPI itself starts, and in builds without MPI.

/// This process's rank as the launcher gives it, if a launcher started it.
pub fn launcher_rank() -> Option<usize> {
    first_number(&[
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "PMIX_RANK",
        "SLURM_PROCID",
    ])
}

/// The device of this process in an MPI job: its rank on its node, or 0 where
/// `CUDA_VISIBLE_DEVICES` shows it a single GPU (`srun --gpus-per-task=1`).
pub fn local_device() -> usize {
    let one_gpu = std::env::var("CUDA_VISIBLE_DEVICES").is_ok_and(|v| !v.contains(','));
    let local = first_number(&[
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]);
    if one_gpu { 0 } else { local.unwrap_or(0) }
}

/// The first of the variables `names` that holds a number.
fn first_number(names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|name| std::env::var(name).ok()?.parse().ok())
}
