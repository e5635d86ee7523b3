// Graceful stop on SIGUSR1 / SIGTERM: what Slurm sends before a time limit (`--signal=B:USR1@120`
// forwarded to the step) and on `scontrol requeue` or preemption. The handler only sets a flag;
// the trainer reads it between steps, checkpoints and returns, so a requeued job resumes with
// nothing lost.
#pragma once

namespace lorasweep {

// Installs the handlers (idempotent).
void InstallStopSignalHandlers();
// Whether SIGUSR1 or SIGTERM arrived since the handlers were installed.
bool StopSignalReceived();
// For tests: clears the flag.
void ResetStopSignal();

}  // namespace lorasweep
