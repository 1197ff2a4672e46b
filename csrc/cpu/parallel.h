// Dynamic parallel-for over independent work items (tiles, views) on std::threads.
//
// Tile costs are very uneven (a face tile vs a background tile), so items are
// handed out one at a time from an atomic counter. The thread count is the
// machine's hardware concurrency, or UA3D_NUM_THREADS when set (>= 1).
// XLA's ffi::ThreadPool is not used: the handler would block on tasks queued
// behind other work on the very pool it runs on (deadlock-prone when XLA runs
// several ops in parallel, e.g. under shard_map on host devices).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

namespace ua3d::cpu {

inline int num_threads_for(int64_t items) {
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  if (const char* env = std::getenv("UA3D_NUM_THREADS")) {
    const int requested = std::atoi(env);
    if (requested >= 1) threads = requested;
  }
  threads = std::max(threads, 1);
  return static_cast<int>(std::min<int64_t>(threads, std::max<int64_t>(items, 1)));
}

// Calls fn(item) for item in [0, items), each exactly once, on up to
// num_threads_for(items) threads (the caller's thread is one of them).
template <typename F>
void parallel_for(int64_t items, F&& fn) {
  const int threads = num_threads_for(items);
  if (threads <= 1) {
    for (int64_t i = 0; i < items; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  auto worker = [&]() {
    for (int64_t i = next.fetch_add(1); i < items; i = next.fetch_add(1)) fn(i);
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
}

}  // namespace ua3d::cpu
