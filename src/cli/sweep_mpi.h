// The sweep command's distributed modes, kept out of cmd_sweep.cpp: `--mpi` (ranks of one
// mpirun/srun, analysis/mpi) and the options that go with it. Present in every build; in a
// build without -DQUANTLENS_MPI=ON, `--mpi` is an Error saying so.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>

namespace quantlens::jobs {
class Store;
}

namespace quantlens::cli {

struct SweepMpiArgs {
    bool mpi = false;
    int gpus_per_node = 0;
    double timeout_s = 60, heartbeat_s = 1;
    bool no_root_worker = false;
};

void add_sweep_mpi_options(CLI::App& cmd, SweepMpiArgs& args);

// Lives for the whole command: MPI is initialized by the constructor (with --mpi) and
// finalized by the destructor.
class SweepMpiRun {
  public:
    explicit SweepMpiRun(const SweepMpiArgs& args);
    ~SweepMpiRun();
    SweepMpiRun(const SweepMpiRun&) = delete;
    SweepMpiRun& operator=(const SweepMpiRun&) = delete;

    bool active() const;     // --mpi
    bool is_worker() const;  // --mpi and rank ≥ 1: run_worker() is all this process does
    int run_worker();
    // The job's work: over all ranks with --mpi, else run_sweep() in this process.
    bool run(jobs::Store& store, int64_t job_id);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace quantlens::cli
