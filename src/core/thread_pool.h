// A fixed set of worker threads that run the tasks 0 .. n-1 of one job at a time, claimed
// dynamically, with the calling thread working as one of them. run() allocates nothing:
// the job is a pointer to the caller's callable. Idle workers spin briefly (the next matrix
// of a token usually follows within microseconds), then sleep on a condition variable so
// they leave the cores to BLAS and the rest of the program.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace lowbit {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);  // n_threads - 1 workers; the caller of run() is the last
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(i) once for every i in [0, n_tasks) across the threads; returns when all are
  // done. An exception from a task is rethrown here (the other tasks still run).
  template <class Fn>
  void run(size_t n_tasks, Fn& fn) {
    run_job(n_tasks, [](void* ctx, size_t i) { (*static_cast<Fn*>(ctx))(i); }, &fn);
  }

  // The largest claim run_shares' threads make on their own share, in pieces.
  static constexpr size_t kMaxClaimPieces = 8;

  // Calls fn(begin, end) on pieces that cover [0, n_items) once. Each thread takes one of
  // size() equal shares and walks it forward (one stream for the prefetchers) in pieces of a
  // quarter of what is left of it, from `piece` to kMaxClaimPieces · `piece` items; a thread
  // whose share is done takes pieces of `piece` items from the back of the others', so a
  // thread slowed down by the machine holds the job up by at most kMaxClaimPieces pieces.
  template <class Fn>
  void run_shares(size_t n_items, size_t piece, Fn& fn) {
    run_shares_job(
        n_items, piece, [](void* ctx, size_t b, size_t e) { (*static_cast<Fn*>(ctx))(b, e); }, &fn);
  }

 private:
  using Call = void (*)(void*, size_t);
  using RangeCall = void (*)(void*, size_t, size_t);
  void run_job(size_t n_tasks, Call call, void* ctx);
  void run_shares_job(size_t n_items, size_t piece, RangeCall call, void* ctx);
  void work();            // claim tasks of the current job until none is left
  void worker_loop();
  void stop();  // ends and joins the workers

  std::vector<std::thread> workers_;
  // run_shares: per share, (next unclaimed item << 32) | end of the unclaimed items. A pair
  // of cache lines each (the adjacent-line prefetcher fetches pairs): sharing one line,
  // every claim waited for it to come from the other core.
  struct alignas(128) Share {
    std::atomic<uint64_t> range{0};
  };
  std::unique_ptr<Share[]> shares_;
  std::atomic<uint64_t> generation_{0};  // bumped once per job
  std::atomic<size_t> next_{0};          // next unclaimed task
  std::atomic<int> running_{0};          // workers still inside the current job
  size_t n_tasks_ = 0;
  Call call_ = nullptr;
  void* ctx_ = nullptr;
  std::exception_ptr error_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
};

}  // namespace lowbit
