// Running jobs: the registry through which `quantlens jobs resume` finds the code that
// continues a job of a given kind, and run_job(), the loop contract every runner follows.
//
// A runner is called with the job already `running` and owned by this process (Store::start).
// It works through Store::pending_items(), records each with Store::record_item(), polls
// Store::should_stop() between items, and returns. Wrapping its body in run_job() finishes the
// job correctly in every case: done, paused or cancelled on request (or on Ctrl-C), failed with
// the error's message.
//
// Registration: call register_job_runner() from code that is surely linked into the binary
// (a src/cli/cmd_*.cpp file, or a function main() reaches) — a static registrar object in a
// static library is dropped by the linker when nothing else references its object file.
#pragma once

#include <cstdint>
#include <functional>

#include "jobs/store.h"

namespace quantlens::jobs {

// Returns the process exit code for the command that ran it.
using JobRunner = std::function<int(Store& store, int64_t job_id)>;

void register_job_runner(JobKind kind, JobRunner runner);
// The usual runner of a kind: `work` (true when it completed, false when it stopped on
// request) under run_job(), then `on_done` when the job finished; exits job_exit_code's.
void register_job_kind(JobKind kind, std::function<bool(Store&, int64_t)> work,
                       std::function<void(Store&, int64_t)> on_done = nullptr);
// A command's exit code for a job that ended in `state`: 0 when done or paused (resumable
// later), 1 when failed or cancelled.
int job_exit_code(JobState state);
// nullptr when no runner for this kind is registered in this binary.
const JobRunner* find_job_runner(JobKind kind);

// Runs body, which returns true when it completed the work and false when it stopped early
// because should_stop() said so. While it runs, SIGINT/SIGTERM become a pause request
// (a second Ctrl-C ends the process as usual). Afterwards the job is done, paused/cancelled
// as requested, or failed (the exception is recorded, then rethrown). Returns the final state.
JobState run_job(Store& store, int64_t id, const std::function<bool()>& body);

// True once SIGINT/SIGTERM arrived during run_job(); Store::should_stop() reports it too.
bool stop_signal_received();

}  // namespace quantlens::jobs
