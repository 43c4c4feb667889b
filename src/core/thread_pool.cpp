#include "core/thread_pool.h"

#include <algorithm>
#include <system_error>

#include "lowbit/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LOWBIT_PAUSE() _mm_pause()
#else
#define LOWBIT_PAUSE() std::this_thread::yield()
#endif

namespace lowbit {
namespace {
constexpr int kSpins = 1 << 14;  // ~50-100 µs of polling before a worker sleeps

// Claims items of a share (front << 32 | back). Its owner takes from the front a quarter of
// what is left, within [piece, ThreadPool::kMaxClaimPieces · piece]: fewer calls while the
// shares are long (each call prepares its input again: 2% of Q8_0 generation in 64-row
// pieces), and a claim nobody else can take stays small, so a slow thread holds the job up
// by at most kMaxClaimPieces pieces. The others take `piece` items from the back. False when
// nothing is left.
bool claim(std::atomic<uint64_t>& share, size_t piece, bool from_front, size_t& b, size_t& e) {
  uint64_t v = share.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t front = v >> 32, back = v & 0xffffffffu;
    if (front >= back) return false;
    const uint64_t left = back - front;
    const uint64_t take = std::min<uint64_t>(
        from_front ? std::clamp<uint64_t>(left / 4, piece, ThreadPool::kMaxClaimPieces * piece)
                   : piece,
        left);
    const uint64_t next = from_front ? (front + take) << 32 | back : front << 32 | (back - take);
    if (share.compare_exchange_weak(v, next, std::memory_order_relaxed)) {
      b = from_front ? front : back - take, e = b + take;
      return true;
    }
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) : shares_(std::make_unique<Share[]>(std::max(1, n_threads))) {
  try {
    for (int i = 1; i < std::max(1, n_threads); ++i)
      workers_.emplace_back([this] { worker_loop(); });
  } catch (const std::system_error& e) {  // the process or system thread limit
    const size_t started = workers_.size() + 1;
    stop();
    fail(ErrorKind::Argument, "cannot start {} threads ({} started: {}); give fewer with -t",
         n_threads, started, e.what());
  }
}

ThreadPool::~ThreadPool() {
  stop();
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void ThreadPool::work() {
  for (size_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n_tasks_;) {
    try {
      call_(ctx_, i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && ++spins < kSpins) LOWBIT_PAUSE();
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_) return;
    work();
    running_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run_job(size_t n_tasks, Call call, void* ctx) {
  if (n_tasks == 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (size_t i = 0; i < n_tasks; ++i) call(ctx, i);
    return;
  }
  n_tasks_ = n_tasks, call_ = call, ctx_ = ctx, error_ = nullptr;
  next_.store(0, std::memory_order_relaxed);
  running_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);  // a worker between its check and wait() sees this
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  work();
  while (running_.load(std::memory_order_acquire) > 0) LOWBIT_PAUSE();
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::run_shares_job(size_t n_items, size_t piece, RangeCall call, void* ctx) {
  if (n_items == 0) return;
  if (n_items > 0xffffffffu)
    fail(ErrorKind::Argument, "run_shares: {} items (at most 2^32 - 1)", n_items);
  const size_t n = size();
  piece = std::max<size_t>(piece, 1);
  for (size_t s = 0; s < n; ++s)
    shares_[s].range.store(uint64_t{n_items * s / n} << 32 | n_items * (s + 1) / n,
                           std::memory_order_relaxed);
  auto task = [&](size_t own) {
    size_t b, e;
    while (claim(shares_[own].range, piece, true, b, e)) call(ctx, b, e);
    for (size_t k = 1; k < n; ++k)
      while (claim(shares_[(own + k) % n].range, piece, false, b, e)) call(ctx, b, e);
  };
  run(n, task);  // run_job's generation bump publishes the shares to the workers
}

}  // namespace lowbit
