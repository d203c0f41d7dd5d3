// The sweep over MPI ranks (`mpirun -np N quantlens sweep … --mpi`).
//
// Rank 0 owns the job store. It hands the job's pending (unit, type) items out one at a time
// to whichever rank asks (ItemScheduler in analysis/sweep/sweep_shard.h: dynamic, since units
// differ in cost) and commits every result the moment it arrives (Store::record_item), so
// killing the whole run loses only the items in flight and the next run resumes from the
// store. Ranks ≥ 1 prepare their own reference (prefix cache) and measure with
// SweepMeasurer, the code run_sweep uses, so the numbers equal a single-process sweep's with
// the same thread count (--threads: the CPU engine's sums depend on it). By default rank 0
// also measures, in a thread beside its dispatcher.
//
// Faults: busy workers send a heartbeat every heartbeat_s; rank 0 declares a worker silent
// for timeout_s lost and puts its in-flight item back in front of the queue. Whether the
// other ranks survive a dead one is up to the launcher: OpenMPI's mpirun aborts the whole job
// unless started with --enable-recovery (Slurm: srun --no-kill), and without the ULFM
// extensions MPI cannot tell us a peer died, hence the heartbeats. A worker that was declared
// lost but is alive after all is told to stop; a result it still sends is recorded if the
// item is not done yet (numbers are identical either way). If rank 0 dies the run is over:
// start it again with --job to resume.
#pragma once

#include <cstdint>
#include <memory>

namespace quantlens {
namespace jobs {
class Store;
}
namespace mpi {

class Comm;

struct SweepMpiOptions {
    // > 0: each rank sees one GPU, number (rank on this host mod gpus_per_node), through
    // CUDA_VISIBLE_DEVICES (an existing list there, e.g. from Slurm, is indexed instead).
    int gpus_per_node = 0;
    double timeout_s = 60;   // a worker silent this long is lost
    double heartbeat_s = 1;  // busy workers (and rank 0 to idle ones) report this often
    bool root_works = true;  // rank 0 measures too, in a thread
};

class SweepSession {
  public:
    // Initializes MPI (MPI_THREAD_FUNNELED) and selects this rank's GPU.
    explicit SweepSession(const SweepMpiOptions& options);
    // Rank 0: tells every worker not yet stopped to stop. Then MPI_Finalize.
    ~SweepSession();
    SweepSession(const SweepSession&) = delete;
    SweepSession& operator=(const SweepSession&) = delete;

    int rank() const;
    int size() const;
    bool is_root() const { return rank() == 0; }

    // Ranks ≥ 1: serves rank 0 until it says stop; returns the process exit code.
    // Test hook: QUANTLENS_MPI_TEST_KILL="R:N" makes rank R kill itself (SIGKILL) when its
    // item number N (from 0) arrives, i.e. with that item in flight.
    int run_worker();
    // Rank 0, as the body of jobs::run_job: measures the job's pending items (a sharded job:
    // its share) on all ranks. True when every item is done, false when a pause or cancel
    // was requested (items in flight are finished first).
    bool run_root(jobs::Store& store, int64_t job_id);

  private:
    void stop_workers();

    SweepMpiOptions opt_;
    std::unique_ptr<Comm> comm_;
    std::unique_ptr<bool[]> stopped_;  // rank 0: ranks already told to stop
};

}  // namespace mpi
}  // namespace quantlens
