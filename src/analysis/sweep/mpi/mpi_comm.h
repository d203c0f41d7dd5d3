// The little of MPI the distributed sweep needs: string messages over MPI_COMM_WORLD with
// non-blocking sends and polling receives, so that no rank ever blocks on a peer that may be
// dead. MPI errors return (MPI_ERRORS_RETURN) and become quantlens::Error instead of
// aborting every rank.
//
// Only the thread that constructed the Comm calls MPI (MPI_THREAD_FUNNELED); measurements
// run in other threads and never touch MPI.
#pragma once

#include <list>
#include <optional>
#include <string>

namespace quantlens::mpi {

struct Message {
    int source = -1;
    int tag = 0;
    std::string data;
};

class Comm {
  public:
    // MPI_Init_thread unless MPI is already initialized (then Finalize is left to its owner).
    Comm();
    ~Comm();  // MPI_Finalize
    Comm(const Comm&) = delete;
    Comm& operator=(const Comm&) = delete;

    int rank() const { return rank_; }
    int size() const { return size_; }
    // Rank among the ranks of this host (for one GPU per rank).
    int local_rank() const { return local_rank_; }

    // Queues the message and returns at once; the buffer is kept until MPI is done with it.
    void send(int dest, int tag, std::string data);
    // A message that has arrived (any source when source < 0), without waiting.
    std::optional<Message> poll(int source = -1);
    // Polls until a message from `source` arrives or timeout_s passes (< 0: no limit).
    std::optional<Message> wait(int source, double timeout_s);

  private:
    struct PendingSend;
    void progress_sends();

    int rank_ = 0, size_ = 1, local_rank_ = 0;
    bool owns_init_ = false;
    std::list<PendingSend> sends_;  // in flight, oldest first
};

}  // namespace quantlens::mpi
