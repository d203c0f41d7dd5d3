#include "analysis/sweep/mpi/mpi_comm.h"

#include <mpi.h>

#include <chrono>
#include <thread>

#include "core/error.h"

namespace quantlens::mpi {
namespace {

std::string error_text(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return std::string(text, static_cast<size_t>(len));
}

void check(int code, const char* what) {
    QL_CHECK(code == MPI_SUCCESS, "MPI: {} failed: {}", what, error_text(code));
}

}  // namespace

struct Comm::PendingSend {
    MPI_Request request = MPI_REQUEST_NULL;
    std::string data;
};

Comm::Comm() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        int provided = 0;
        check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        owns_init_ = true;
        QL_CHECK(provided >= MPI_THREAD_FUNNELED,
                 "MPI: this MPI library cannot run measurements beside MPI calls "
                 "(MPI_THREAD_FUNNELED not provided)");
    }
    // Errors come back as codes, so a failed peer becomes an Error and not a global abort.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm node;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(node, &local_rank_);
        MPI_Comm_free(&node);
    }
}

Comm::~Comm() {
    // Give the last sends (STOP to the workers) a moment; a send to a dead rank must not hold
    // us here, and its buffer must outlive MPI's use of it, so what is left is leaked.
    const auto start = std::chrono::steady_clock::now();
    while (!sends_.empty() && std::chrono::steady_clock::now() - start < std::chrono::seconds(2)) {
        progress_sends();
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!sends_.empty()) {
        for (auto& s : sends_)
            if (s.request != MPI_REQUEST_NULL) MPI_Request_free(&s.request);
        new std::list<PendingSend>(std::move(sends_));  // NOLINT: deliberately leaked
    }
    if (owns_init_) MPI_Finalize();
}

void Comm::send(int dest, int tag, std::string data) {
    progress_sends();
    sends_.push_back({MPI_REQUEST_NULL, std::move(data)});
    PendingSend& s = sends_.back();
    check(MPI_Isend(s.data.data(), static_cast<int>(s.data.size()), MPI_CHAR, dest, tag,
                    MPI_COMM_WORLD, &s.request),
          "MPI_Isend");
}

void Comm::progress_sends() {
    for (auto it = sends_.begin(); it != sends_.end();) {
        int done = 0;
        if (it->request == MPI_REQUEST_NULL ||
            (MPI_Test(&it->request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done))
            it = sends_.erase(it);
        else
            ++it;
    }
}

std::optional<Message> Comm::poll(int source) {
    progress_sends();
    int flag = 0;
    MPI_Status status;
    check(MPI_Iprobe(source < 0 ? MPI_ANY_SOURCE : source, MPI_ANY_TAG, MPI_COMM_WORLD, &flag,
                     &status),
          "MPI_Iprobe");
    if (!flag) return std::nullopt;
    int count = 0;
    MPI_Get_count(&status, MPI_CHAR, &count);
    Message m;
    m.source = status.MPI_SOURCE;
    m.tag = status.MPI_TAG;
    m.data.resize(static_cast<size_t>(count));
    check(MPI_Recv(m.data.data(), count, MPI_CHAR, m.source, m.tag, MPI_COMM_WORLD,
                   MPI_STATUS_IGNORE),
          "MPI_Recv");
    return m;
}

std::optional<Message> Comm::wait(int source, double timeout_s) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
        if (auto m = poll(source)) return m;
        if (timeout_s >= 0 &&
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
                timeout_s)
            return std::nullopt;
        // Polling without a pause would take a core from the measurements.
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

}  // namespace quantlens::mpi
