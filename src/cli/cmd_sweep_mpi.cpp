// `quantlens sweep … --mpi`: see cli/sweep_mpi.h and analysis/sweep/mpi/mpi_sweep.h.
#include "cli/sweep_mpi.h"

#include "analysis/sweep/sweep.h"
#include "core/error.h"
#ifdef QUANTLENS_HAVE_MPI
#include "analysis/sweep/mpi/mpi_sweep.h"
#endif

namespace quantlens::cli {

void add_sweep_mpi_options(CLI::App& cmd, SweepMpiArgs& a) {
    cmd.add_flag("--mpi", a.mpi,
                 "Run over the ranks of mpirun/srun: rank 0 keeps the store and hands out "
                 "items, every rank measures (build with -DQUANTLENS_MPI=ON)");
    cmd.add_option("--gpus-per-node", a.gpus_per_node,
                   "With --mpi: GPUs per host; each rank uses one (CUDA_VISIBLE_DEVICES)");
    cmd.add_option("--mpi-timeout", a.timeout_s,
                   "With --mpi: seconds of silence after which a rank is lost and its item "
                   "re-queued")
        ->capture_default_str();
    cmd.add_option("--mpi-heartbeat", a.heartbeat_s, "With --mpi: heartbeat interval (seconds)")
        ->capture_default_str();
    cmd.add_flag("--no-root-worker", a.no_root_worker,
                 "With --mpi: rank 0 only schedules and records, it measures nothing");
}

struct SweepMpiRun::Impl {
#ifdef QUANTLENS_HAVE_MPI
    std::unique_ptr<mpi::SweepSession> session;
#endif
};

SweepMpiRun::SweepMpiRun(const SweepMpiArgs& a) : impl_(std::make_unique<Impl>()) {
    if (!a.mpi) {
        QL_CHECK(a.gpus_per_node == 0 && !a.no_root_worker,
                 "sweep: --gpus-per-node and --no-root-worker need --mpi");
        return;
    }
#ifdef QUANTLENS_HAVE_MPI
    mpi::SweepMpiOptions o;
    o.gpus_per_node = a.gpus_per_node;
    o.timeout_s = a.timeout_s;
    o.heartbeat_s = a.heartbeat_s;
    o.root_works = !a.no_root_worker;
    impl_->session = std::make_unique<mpi::SweepSession>(o);
#else
    fail(
        "sweep --mpi: this quantlens was built without MPI (install libopenmpi-dev and "
        "configure with -DQUANTLENS_MPI=ON), or use --shard i/n and `quantlens jobs merge`");
#endif
}

SweepMpiRun::~SweepMpiRun() = default;

bool SweepMpiRun::active() const {
#ifdef QUANTLENS_HAVE_MPI
    return impl_->session != nullptr;
#else
    return false;
#endif
}

bool SweepMpiRun::is_worker() const {
#ifdef QUANTLENS_HAVE_MPI
    return impl_->session && !impl_->session->is_root();
#else
    return false;
#endif
}

int SweepMpiRun::run_worker() {
#ifdef QUANTLENS_HAVE_MPI
    QL_ASSERT(is_worker());
    return impl_->session->run_worker();
#else
    QL_ASSERT(false);
    return 1;
#endif
}

bool SweepMpiRun::run(jobs::Store& store, int64_t job_id) {
#ifdef QUANTLENS_HAVE_MPI
    if (impl_->session) return impl_->session->run_root(store, job_id);
#endif
    return run_sweep(store, job_id);
}

}  // namespace quantlens::cli
