#include "analysis/sweep/mpi/mpi_sweep.h"

#include <fmt/format.h>
#include <malloc.h>

#include <bit>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "analysis/sweep/mpi/mpi_comm.h"
#include "analysis/sweep/sweep.h"
#include "analysis/sweep/sweep_shard.h"
#include "core/error.h"
#include "core/progress.h"
#include "jobs/store.h"

namespace quantlens::mpi {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Message tags. Rank 0 → worker: Job, Item, Stop, Heartbeat; worker → rank 0: Ready,
// Result, Heartbeat, Error.
enum Tag : int { kJob = 1, kReady, kItem, kResult, kHeartbeat, kStop, kError };

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// Metric values travel as their bit patterns: JSON has no NaN and must not round.
json encode_metrics(const jobs::Metrics& m) {
    json j = json::object();
    for (const auto& [k, v] : m) j[k] = std::bit_cast<uint64_t>(v);
    return j;
}

jobs::Metrics decode_metrics(const json& j) {
    jobs::Metrics m;
    for (const auto& [k, v] : j.items()) m[k] = std::bit_cast<double>(v.get<uint64_t>());
    return m;
}

// Runs f in a thread while this (the MPI) thread tells rank 0 we are alive.
template <class F>
auto run_alive(Comm& comm, double heartbeat_s, F&& f) -> decltype(f()) {
    auto result = std::async(std::launch::async, std::forward<F>(f));
    auto last = Clock::now();
    while (result.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
        if (seconds_since(last) >= heartbeat_s) {
            comm.send(0, kHeartbeat, "");
            last = Clock::now();
        }
    }
    return result.get();
}

void maybe_die_for_test(int rank, int item_number) {
    const char* spec = std::getenv("QUANTLENS_MPI_TEST_KILL");
    if (!spec) return;
    int r = -1, n = -1;
    if (std::sscanf(spec, "%d:%d", &r, &n) == 2 && r == rank && n == item_number) {
        fmt::print(stderr, "quantlens: rank {}: QUANTLENS_MPI_TEST_KILL, dying with item {}\n",
                   rank, item_number);
        std::raise(SIGKILL);
    }
}

void select_gpu(int local_rank, int gpus_per_node) {
    if (gpus_per_node <= 0) return;
    std::vector<std::string> visible;
    if (const char* env = std::getenv("CUDA_VISIBLE_DEVICES")) {
        std::string s = env;
        for (size_t pos = 0; pos <= s.size();) {
            const size_t comma = std::min(s.find(',', pos), s.size());
            if (comma > pos) visible.push_back(s.substr(pos, comma - pos));
            pos = comma + 1;
        }
    }
    // One GPU already assigned (srun --gpus-per-task=1): keep it.
    if (visible.size() == 1) return;
    const size_t n = visible.empty() ? static_cast<size_t>(gpus_per_node)
                                     : std::min(visible.size(), static_cast<size_t>(gpus_per_node));
    const size_t index = static_cast<size_t>(local_rank) % n;
    const std::string device = visible.empty() ? std::to_string(index) : visible[index];
    setenv("CUDA_VISIBLE_DEVICES", device.c_str(), 1);
}

// Rank 0's view of one rank during a run. Rank 0 itself is worker 0 when it measures.
enum class State { Preparing, Idle, Busy, Stopped, Lost };

struct WorkerState {
    State state = State::Preparing;
    Clock::time_point last_seen = Clock::now();
    int64_t items = 0;
    double reference_s = 0;
    bool live() const {
        return state == State::Preparing || state == State::Idle || state == State::Busy;
    }
};

// One run of the dispatcher loop on rank 0.
class Dispatcher {
  public:
    Dispatcher(Comm& comm, const SweepMpiOptions& opt, bool* stopped, jobs::Store& store,
               int64_t id)
        : comm_(comm),
          opt_(opt),
          stopped_(stopped),
          store_(store),
          id_(id),
          job_(store.get_job(id)) {}

    bool run();
    // Waits for the local measurement, if any (on the way out after an error).
    void drain_local() {
        if (local_prep_.valid()) local_prep_.wait();
        if (local_item_.valid()) local_item_.wait();
    }

  private:
    void send_stop(int rank) {
        if (rank > 0 && !stopped_[rank]) comm_.send(rank, kStop, "");
        stopped_[rank] = true;
    }
    void handle(const Message& m);
    void on_ready(int rank, const std::string& reference);
    void on_result(int rank, const jobs::WorkItem& item, const jobs::Metrics& metrics);
    void dispatch(int rank);
    void write_mpi_artifact();

    Comm& comm_;
    const SweepMpiOptions& opt_;
    bool* stopped_;
    jobs::Store& store_;
    int64_t id_;
    jobs::Job job_;
    std::vector<WorkerState> workers_;
    std::unique_ptr<ItemScheduler> scheduler_;
    std::unique_ptr<Progress> progress_;
    bool draining_ = false, reference_written_ = false;
    // Rank 0's own measurements.
    SweepOptions options_;
    std::unique_ptr<SweepMeasurer> local_;
    std::future<std::string> local_prep_;
    std::future<jobs::Metrics> local_item_;
    jobs::WorkItem local_current_;
};

void Dispatcher::on_ready(int rank, const std::string& reference) {
    WorkerState& w = workers_[static_cast<size_t>(rank)];
    w.state = State::Idle;
    w.reference_s = json::parse(reference).value("seconds", 0.0);
    if (!reference_written_) {
        put_reference_artifact(store_, id_, job_.params, reference);
        reference_written_ = true;
    }
}

void Dispatcher::on_result(int rank, const jobs::WorkItem& item, const jobs::Metrics& metrics) {
    WorkerState& w = workers_[static_cast<size_t>(rank)];
    if (w.state == State::Busy) w.state = State::Idle;
    if (!scheduler_->complete(rank, item)) return;  // measured twice (a lost worker came back)
    if (store_.record_item(id_, item.unit, item.type, metrics)) {
        ++w.items;
        progress_->advance();
    }
}

void Dispatcher::handle(const Message& m) {
    const size_t r = static_cast<size_t>(m.source);
    QL_ASSERT(r < workers_.size());
    WorkerState& w = workers_[r];
    w.last_seen = Clock::now();
    if (m.tag == kError) {
        const json e = json::parse(m.data, nullptr, false);
        fail("sweep --mpi: rank {} failed: {}", m.source,
             e.is_object() ? e.value("error", m.data) : m.data);
    }
    if (m.tag == kResult) {
        const json j = json::parse(m.data);
        on_result(m.source, {j.at("unit").get<std::string>(), j.at("type").get<std::string>()},
                  decode_metrics(j.at("metrics")));
    } else if (m.tag == kReady && w.state == State::Preparing) {
        on_ready(m.source, json::parse(m.data).at("reference").get<std::string>());
    }
    // A rank given up for lost is alive after all: its result (above) counts, then it stops.
    if (w.state == State::Lost) {
        send_stop(m.source);
        w.state = State::Stopped;
    }
}

void Dispatcher::dispatch(int rank) {
    WorkerState& w = workers_[static_cast<size_t>(rank)];
    if (w.state != State::Idle) return;
    if (!draining_) {
        if (auto item = scheduler_->assign(rank)) {
            w.state = State::Busy;
            if (rank == 0) {
                local_current_ = *item;
                local_item_ = std::async(std::launch::async, [this, item = *item] {
                    return local_->measure(item.unit, item.type);
                });
            } else {
                comm_.send(rank, kItem, json{{"unit", item->unit}, {"type", item->type}}.dump());
            }
            return;
        }
    }
    // Idle ranks wait while items are in flight elsewhere: a lost rank's item comes back.
    if (draining_ || scheduler_->finished()) {
        send_stop(rank);
        w.state = State::Stopped;
    }
}

void Dispatcher::write_mpi_artifact() {
    json ranks = json::array();
    for (size_t r = 0; r < workers_.size(); ++r) {
        if (r == 0 && !opt_.root_works) continue;
        ranks.push_back({{"rank", r},
                         {"items", workers_[r].items},
                         {"reference_seconds", workers_[r].reference_s},
                         {"lost", workers_[r].state == State::Lost}});
    }
    store_.put_artifact(
        id_, {"mpi", true,
              json{{"ranks", workers_.size()}, {"root_works", opt_.root_works}, {"workers", ranks}}
                  .dump()});
}

bool Dispatcher::run() {
    QL_CHECK(job_.kind == jobs::JobKind::sweep, "job {} is a {} job, not a sweep", id_,
             jobs::kind_name(job_.kind));
    options_ = SweepOptions::from_json(json::parse(job_.params));
    QL_CHECK(options_.budget_seconds <= 0,
             "sweep --mpi: job {} has a time budget, which orders items by a proxy on one "
             "process; run it without --mpi",
             id_);
    const std::vector<jobs::WorkItem> pending = sweep_items_to_measure(store_, id_, job_.params);
    const int n_ranks = comm_.size();
    workers_.assign(static_cast<size_t>(n_ranks), WorkerState{});
    if (pending.empty()) return true;
    QL_CHECK(opt_.root_works || n_ranks > 1,
             "sweep --mpi: one rank and --no-root-worker leaves nobody to measure");

    // Every worker checks its own copy of the model and text against the job's hashes.
    const std::string job_msg = json{
        {"job", id_},
        {"params", job_.params},
        {"model_hash", job_.model_hash},
        {"text_hash",
         job_.text_hash}}.dump();
    for (int r = 1; r < n_ranks; ++r) comm_.send(r, kJob, job_msg);
    if (opt_.root_works) {
        local_prep_ = std::async(std::launch::async, [this] {
            local_ = std::make_unique<SweepMeasurer>(options_);
            store_.check_inputs(id_, local_->model_hash(), local_->text_hash());
            return local_->prepare();
        });
    } else {
        workers_[0].state = State::Stopped;
        SweepMeasurer check(options_);
        store_.check_inputs(id_, check.model_hash(), check.text_hash());
    }

    scheduler_ = std::make_unique<ItemScheduler>(pending);
    const jobs::ItemCounts counts = store_.item_counts(id_);
    progress_ = std::make_unique<Progress>(
        fmt::format("sweep job {} ({} rank{})", id_, n_ranks, n_ranks == 1 ? "" : "s"),
        counts.done + static_cast<int64_t>(pending.size()), "items");
    progress_->set(counts.done);
    store_.set_message(
        id_, fmt::format("reference pass on {} rank{}", n_ranks, n_ranks == 1 ? "" : "s"));

    // Heartbeats that queued up while this thread was busy above must not count as silence.
    for (auto& w : workers_) w.last_seen = Clock::now();
    auto last_stop_check = Clock::now(), last_heartbeat = Clock::now();
    for (;;) {
        bool active = false;
        while (auto m = comm_.poll()) {
            handle(*m);
            active = true;
        }
        if (local_prep_.valid() &&
            local_prep_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
            on_ready(0, local_prep_.get());
            active = true;
        }
        if (local_item_.valid() &&
            local_item_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
            on_result(0, local_current_, local_item_.get());
            active = true;
        }
        for (int r = 1; r < n_ranks; ++r) {
            WorkerState& w = workers_[static_cast<size_t>(r)];
            if (!w.live() || seconds_since(w.last_seen) <= opt_.timeout_s) continue;
            const auto item = scheduler_->lose(r);
            w.state = State::Lost;
            fmt::print(stderr, "\nsweep --mpi: rank {} silent for {:.0f} s, given up{}\n", r,
                       opt_.timeout_s,
                       item
                           ? fmt::format("; {} × {} goes back to the queue", item->unit, item->type)
                           : "");
        }
        if (seconds_since(last_stop_check) > 0.5) {
            if (!draining_ && store_.should_stop(id_)) draining_ = true;
            last_stop_check = Clock::now();
        }
        for (int r = 0; r < n_ranks; ++r) dispatch(r);
        if (seconds_since(last_heartbeat) >= opt_.heartbeat_s) {
            for (int r = 1; r < n_ranks; ++r)
                if (workers_[static_cast<size_t>(r)].state == State::Idle)
                    comm_.send(r, kHeartbeat, "");
            last_heartbeat = Clock::now();
        }
        if (scheduler_->finished() || (draining_ && scheduler_->n_in_flight() == 0)) break;
        bool any_live = false;
        for (const auto& w : workers_) any_live = any_live || w.live();
        QL_CHECK(any_live,
                 "sweep --mpi: every worker was lost; {} items remain pending (run again with "
                 "--job {} to resume)",
                 scheduler_->queued(), id_);
        if (!active) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    for (int r = 1; r < n_ranks; ++r) send_stop(r);
    write_mpi_artifact();
    progress_->finish();
    return scheduler_->finished();
}

}  // namespace

SweepSession::SweepSession(const SweepMpiOptions& options)
    : opt_(options), comm_(std::make_unique<Comm>()) {
    QL_CHECK(opt_.timeout_s > opt_.heartbeat_s && opt_.heartbeat_s > 0,
             "sweep --mpi: --mpi-timeout ({} s) must exceed the heartbeat interval ({} s)",
             opt_.timeout_s, opt_.heartbeat_s);
    stopped_ = std::make_unique<bool[]>(static_cast<size_t>(comm_->size()));
    // Measurements run in a thread beside the MPI loop, and glibc gives such a thread its own
    // arena, where each item's large buffers are fresh mmaps (page faults, zeroing): 23.4 s
    // instead of 18.4 s for llama-8m on one rank. One arena reuses memory as the
    // single-process sweep does (19.3 s, MPI start included).
    mallopt(M_ARENA_MAX, 1);
    select_gpu(comm_->local_rank(), opt_.gpus_per_node);
}

SweepSession::~SweepSession() {
    if (is_root()) stop_workers();
}

int SweepSession::rank() const {
    return comm_->rank();
}

int SweepSession::size() const {
    return comm_->size();
}

void SweepSession::stop_workers() {
    for (int r = 1; r < comm_->size(); ++r)
        if (!stopped_[r]) {
            comm_->send(r, kStop, "");
            stopped_[r] = true;
        }
}

bool SweepSession::run_root(jobs::Store& store, int64_t job_id) {
    Dispatcher d(*comm_, opt_, stopped_.get(), store, job_id);
    try {
        return d.run();
    } catch (...) {
        stop_workers();
        d.drain_local();
        throw;
    }
}

int SweepSession::run_worker() {
    const int me = rank();
    try {
        auto first = comm_->wait(0, -1);  // rank 0 may take a while to create the job
        if (!first || first->tag == kStop) return 0;
        QL_CHECK(first->tag == kJob, "rank {}: expected the job from rank 0, got tag {}", me,
                 first->tag);
        const json job = json::parse(first->data);
        const SweepOptions options =
            SweepOptions::from_json(json::parse(job.at("params").get<std::string>()));
        std::unique_ptr<SweepMeasurer> measurer;
        const std::string reference = run_alive(*comm_, opt_.heartbeat_s, [&] {
            measurer = std::make_unique<SweepMeasurer>(options);
            const std::string want_model = job.value("model_hash", ""),
                              want_text = job.value("text_hash", "");
            QL_CHECK(want_model.empty() || measurer->model_hash() == want_model,
                     "{}: the model on this host differs from the job's (content hash {} vs {})",
                     options.model, measurer->model_hash(), want_model);
            QL_CHECK(want_text.empty() || measurer->text_hash() == want_text,
                     "{}: the evaluation text on this host differs from the job's",
                     options.eval_text);
            return measurer->prepare();
        });
        comm_->send(0, kReady, json{{"reference", reference}}.dump());
        for (int n = 0;; ++n) {
            std::optional<Message> m;
            do {
                m = comm_->wait(0, opt_.timeout_s);
                QL_CHECK(m.has_value(), "rank {}: no word from rank 0 for {} s; giving up", me,
                         opt_.timeout_s);
            } while (m->tag == kHeartbeat);
            if (m->tag == kStop) return 0;
            QL_CHECK(m->tag == kItem, "rank {}: unexpected message (tag {}) from rank 0", me,
                     m->tag);
            const json item = json::parse(m->data);
            const std::string unit = item.at("unit").get<std::string>(),
                              type = item.at("type").get<std::string>();
            maybe_die_for_test(me, n);
            const jobs::Metrics metrics =
                run_alive(*comm_, opt_.heartbeat_s, [&] { return measurer->measure(unit, type); });
            comm_->send(
                0, kResult,
                json{{"unit", unit}, {"type", type}, {"metrics", encode_metrics(metrics)}}.dump());
        }
    } catch (const std::exception& e) {
        fmt::print(stderr, "quantlens: rank {}: {}\n", me, e.what());
        comm_->send(0, kError, json{{"rank", me}, {"error", e.what()}}.dump());
        // Rank 0 records the failure and stops everyone; leaving first could let the launcher
        // end the run before it does.
        for (;;) {
            auto m = comm_->wait(0, opt_.timeout_s);
            if (!m || m->tag == kStop) break;
        }
        return 1;
    }
}

}  // namespace quantlens::mpi
