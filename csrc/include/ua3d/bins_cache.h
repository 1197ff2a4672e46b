// Tile lists kept from a forward call for the backward of the same call (binning once a step).
//
// XLA gives a custom call static shapes, while a view's tile lists hold one entry per
// (Gaussian, tile) intersection, a count known only after binning; so the lists cannot be an
// output of the forward. The forward (in differentiation, render/ffi.py) stores them here
// under a fresh token, which it returns as an output (int32 pairs, one per view); JAX keeps the
// token as a residual and the backward takes the lists back by it. A backward bins again when
// the token is unknown, was dropped, or was made for other shapes (e.g. jax.jacrev batches
// the backward over cotangents: another batch size), so a miss costs time, never correctness.
// An entry is taken once; the oldest are dropped past the entry or byte limit (forwards whose
// backward never runs, such as jax.vjp without the pullback, or a rematerialised forward).
// Thread-safe: XLA may run calls of several devices at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <list>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace ua3d {

// What the lists were binned for; a backward with another key bins again.
struct BinsKey {
  int64_t batch = 0;
  int64_t n = 0;
  int64_t width = 0;
  int64_t height = 0;
  int scalar_bytes = 0;  // float or double inputs (CPU)
  int device = 0;        // CUDA device ordinal (0 on the CPU)

  bool operator==(const BinsKey& o) const {
    return batch == o.batch && n == o.n && width == o.width && height == o.height &&
           scalar_bytes == o.scalar_bytes && device == o.device;
  }
};

template <typename Bins>
class BinsCache {
 public:
  struct Entry {
    uint64_t token = 0;
    BinsKey key;
    Bins bins;
    size_t bytes = 0;
  };

  BinsCache(size_t max_entries, size_t max_bytes)
      : max_entries_(max_entries), max_bytes_(max_bytes) {}

  // Stores `bins` and returns their token (never 0). Entries dropped to stay within the
  // limits are appended to `dropped`, for the caller to release what they own.
  uint64_t Put(const BinsKey& key, Bins bins, size_t bytes, std::vector<Entry>* dropped) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t token = ++next_token_;
    entries_.push_back(Entry{token, key, std::move(bins), bytes});
    bytes_ += bytes;
    while (entries_.size() > max_entries_ || (bytes_ > max_bytes_ && entries_.size() > 1)) {
      bytes_ -= entries_.front().bytes;
      dropped->push_back(std::move(entries_.front()));
      entries_.pop_front();
    }
    return token;
  }

  // Removes and returns the entry of `token` (whatever its key: the caller compares it and
  // releases a mismatch), or nothing.
  std::optional<Entry> Take(uint64_t token) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->token != token) continue;
      Entry entry = std::move(*it);
      bytes_ -= entry.bytes;
      entries_.erase(it);
      return entry;
    }
    return std::nullopt;
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_.size();
  }

 private:
  const size_t max_entries_;
  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::list<Entry> entries_;  // oldest first
  size_t bytes_ = 0;
  uint64_t next_token_ = 0;
};

// UA3D_KEEP_BINS=0 (read at every call) turns keeping off: every backward bins again, as
// before this store existed (A/B benchmarks: experiments/bench_rasterizer.py --binning_ab).
inline bool KeepBinsEnabled() {
  const char* env = std::getenv("UA3D_KEEP_BINS");
  return env == nullptr || env[0] != '0';
}

// Tokens travel through XLA as int32 pairs (int64 arrays need jax_enable_x64).
inline void WriteToken(uint64_t token, int32_t* pair) {
  pair[0] = static_cast<int32_t>(static_cast<uint32_t>(token & 0xFFFFFFFFu));
  pair[1] = static_cast<int32_t>(static_cast<uint32_t>(token >> 32));
}

inline uint64_t ReadToken(const int32_t* pair) {
  return uint64_t(static_cast<uint32_t>(pair[0])) |
         (uint64_t(static_cast<uint32_t>(pair[1])) << 32);
}

}  // namespace ua3d
