// lowbit/distributed.h: MPI's world when mpirun started this process, else a group of one.
// Only the calling (main) thread talks to MPI (MPI_THREAD_FUNNELED).
#include "lowbit/distributed.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "lowbit/error.h"

#ifdef LOWBIT_WITH_MPI
#include <mpi.h>
#endif

namespace lowbit::dist {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// OpenMPI's launcher sets OMPI_COMM_WORLD_*; PMI/PMIx launchers (MPICH, Slurm) PMI_*.
bool launched_by_mpirun() {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMIX_RANK");
}

class OneProcess : public Group {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void send(int to, int, const void*, size_t) override { no_peer(to); }
  void recv(int from, int, void*, size_t) override { no_peer(from); }
  void send_later(int to, int, const void*, size_t) override { no_peer(to); }
  void finish_sends() override {}
  void broadcast(int, void*, size_t) override {}

 private:
  [[noreturn]] static void no_peer(int rank) {
    fail(ErrorKind::Argument, "no rank {} to talk to: this job runs as one process", rank);
  }
};

#ifdef LOWBIT_WITH_MPI
// MPI counts are int: a message goes as pieces of at most 1 GiB.
constexpr size_t kPiece = size_t(1) << 30;

template <class F>
void in_pieces(const void* data, size_t bytes, F&& f) {
  const auto* p = static_cast<const char*>(data);
  size_t done = 0;
  do {
    const size_t n = std::min(kPiece, bytes - done);
    f(const_cast<char*>(p + done), static_cast<int>(n));
    done += n;
  } while (done < bytes);
}

class MpiWorld : public Group {
 public:
  MpiWorld() {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void send(int to, int tag, const void* data, size_t bytes) override {
    in_pieces(data, bytes,
              [&](char* p, int n) { MPI_Send(p, n, MPI_BYTE, to, tag, MPI_COMM_WORLD); });
  }
  void recv(int from, int tag, void* data, size_t bytes) override {
    in_pieces(data, bytes, [&](char* p, int n) {
      MPI_Status status;
      MPI_Recv(p, n, MPI_BYTE, from, tag, MPI_COMM_WORLD, &status);
      int got = 0;
      MPI_Get_count(&status, MPI_BYTE, &got);
      if (got != n)
        fail(ErrorKind::Format, "rank {} sent {} bytes where rank {} expected {} (tag {})", from,
             got, rank_, n, tag);
    });
  }
  void send_later(int to, int tag, const void* data, size_t bytes) override {
    in_pieces(data, bytes, [&](char* p, int n) {
      pending_.emplace_back();
      MPI_Isend(p, n, MPI_BYTE, to, tag, MPI_COMM_WORLD, &pending_.back());
    });
  }
  void finish_sends() override {
    MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
    pending_.clear();
  }
  void broadcast(int root, void* data, size_t bytes) override {
    in_pieces(data, bytes,
              [&](char* p, int n) { MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD); });
  }

 private:
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> pending_;
};
#endif

std::unique_ptr<Group>& instance() {
  static std::unique_ptr<Group> g;
  return g;
}

}  // namespace

Group& world() {
  std::unique_ptr<Group>& g = instance();
  if (!g) {
#ifdef LOWBIT_WITH_MPI
    if (launched_by_mpirun()) g = std::make_unique<MpiWorld>();
#else
    const char* n = env("OMPI_COMM_WORLD_SIZE") ? env("OMPI_COMM_WORLD_SIZE") : env("PMI_SIZE");
    if (n && std::atoi(n) > 1)
      fail(ErrorKind::Unsupported,
           "started by mpirun as one of {} ranks, but this lowbit was built without MPI "
           "(LOWBIT_MPI=OFF): every rank would do the whole job",
           n);
#endif
    if (!g) g = std::make_unique<OneProcess>();
  }
  return *g;
}

int local_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"})
    if (const char* v = env(name)) return std::max(1, std::atoi(v));
  return 1;
}

bool built_with_mpi() {
#ifdef LOWBIT_WITH_MPI
  return true;
#else
  return false;
#endif
}

#ifdef LOWBIT_WITH_MPI
namespace {
bool mpi_running() {
  int started = 0, finished = 0;
  MPI_Initialized(&started);
  MPI_Finalized(&finished);
  return started && !finished;
}
}  // namespace
#endif

void finish() {
#ifdef LOWBIT_WITH_MPI
  if (mpi_running()) {
    world().finish_sends();
    MPI_Finalize();
  }
#endif
}

void abort_job(int code) {
#ifdef LOWBIT_WITH_MPI
  if (mpi_running() && world().size() > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  (void)code;
}

}  // namespace lowbit::dist
