//! SIGINT and SIGTERM (Ctrl-C, `kill`, a scheduler's preemption) ask a run to stop: it
//! finishes the step, writes a checkpoint and exits with an error saying how to resume.

use memory_layers_train::Interrupt;

/// An [`Interrupt`] that SIGINT and SIGTERM request. A second signal is not caught: it ends
/// the process at once (after the first, a checkpoint is being written).
pub fn interrupt_on_signals() -> anyhow::Result<Interrupt> {
    let interrupt = Interrupt::new();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let flag = interrupt.flag();
        // The first signal sets the flag; with it set, the next one terminates.
        signal_hook::flag::register_conditional_shutdown(signal, 1, flag.clone())?;
        signal_hook::flag::register(signal, flag)?;
    }
    Ok(interrupt)
}
