// The scheduler of the CUDA emulation and its runtime API (execution model: cuda_emu.h).
//
// A block runs in rounds: every runnable thread, in the round's order, runs until it reaches
// a barrier or a warp operation (or returns). Then warp operations whose lanes have all
// arrived complete; if none can, a barrier that every thread of the block has reached at the
// same source line is released; any other state is an error (KernelError).
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <vector>

#include "emu/cuda_emu.h"
#include "emu/fiber.h"

uint3 threadIdx{0, 0, 0};
uint3 blockIdx{0, 0, 0};
dim3 blockDim;
dim3 gridDim;

namespace ua3d::emu {
namespace {

enum class State { kRunnable, kBarrier, kWarp, kExited };

struct Thread {
  State state = State::kRunnable;
  uint3 idx{0, 0, 0};
  Site site{nullptr, 0};
  Op op = Op::kSync;
  uint32_t mask = 0, value = 0, result = 0;
  int arg = 0, width = 32;
};

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStackBytes = 512 << 10;
#else
constexpr size_t kStackBytes = 128 << 10;
#endif

struct Scheduler {
  Order order = Order::kForward;
  std::mt19937_64 rng{0};
  Stats stats;
  cudaError_t last_error = cudaSuccess;
  std::map<void*, size_t> device_allocs;
  // The block that runs.
  const char* kernel = nullptr;
  const std::function<void()>* body = nullptr;
  std::vector<Thread> threads;
  std::vector<std::unique_ptr<Fiber>> fibers;
  int current = -1;
};

Scheduler g_scheduler;
inline Scheduler& S() { return g_scheduler; }

const char* Basename(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

std::string Where(const Site& s) {
  return std::string(Basename(s.file)) + ":" + std::to_string(s.line);
}

const char* OpName(Op op) {
  switch (op) {
    case Op::kSync:
      return "__syncthreads";
    case Op::kSyncCount:
      return "__syncthreads_count";
    case Op::kSyncAnd:
      return "__syncthreads_and";
    case Op::kSyncOr:
      return "__syncthreads_or";
    case Op::kSyncWarp:
      return "__syncwarp";
    case Op::kShflIdx:
      return "__shfl_sync";
    case Op::kShflUp:
      return "__shfl_up_sync";
    case Op::kShflDown:
      return "__shfl_down_sync";
    case Op::kShflXor:
      return "__shfl_xor_sync";
    case Op::kAny:
      return "__any_sync";
    case Op::kAll:
      return "__all_sync";
    case Op::kBallot:
      return "__ballot_sync";
  }
  return "?";
}

[[noreturn]] void Fail(const std::string& what) {
  Scheduler& s = S();
  std::ostringstream msg;
  msg << s.kernel << " block (" << blockIdx.x << ", " << blockIdx.y << ", " << blockIdx.z
      << ") of grid (" << gridDim.x << ", " << gridDim.y << ", " << gridDim.z << "): " << what;
  s.current = -1;
  throw KernelError(msg.str());
}

// What each thread of the block is doing, grouped: "128 at __syncthreads rasterize_fwd.cu:57".
std::string Census() {
  std::map<std::string, int> groups;
  for (const Thread& t : S().threads) {
    if (t.state == State::kExited)
      ++groups["exited"];
    else if (t.state == State::kRunnable)
      ++groups["runnable"];
    else
      ++groups[std::string(OpName(t.op)) + " " + Where(t.site)];
  }
  std::string out;
  for (const auto& [what, count] : groups)
    out += (out.empty() ? "" : "; ") + std::to_string(count) + " at " + what;
  return out;
}

void MakeOrder(std::vector<int>* order) {
  Scheduler& s = S();
  const int n = static_cast<int>(order->size());
  for (int i = 0; i < n; ++i) (*order)[i] = s.order == Order::kReverse ? n - 1 - i : i;
}

// The value lane `lane` receives from a shuffle (the other operations return `vote`).
uint32_t Combine(const std::vector<Thread>& th, int base, uint32_t mask, int lane, uint32_t vote) {
  const Thread& t = th[base + lane];
  const int w = t.width, seg = lane & ~(w - 1), off = lane & (w - 1);
  int src = lane;
  switch (t.op) {
    case Op::kShflIdx:
      src = seg + (t.arg & (w - 1));
      break;
    case Op::kShflUp:
      src = off >= t.arg ? lane - t.arg : lane;
      break;
    case Op::kShflDown:
      src = off + t.arg < w ? lane + t.arg : lane;
      break;
    case Op::kShflXor:
      src = (lane ^ t.arg) < seg + w ? lane ^ t.arg : lane;
      break;
    default:
      return vote;
  }
  if (!((mask >> src) & 1u))
    Fail(std::string(OpName(t.op)) + " at " + Where(t.site) + ": lane " + std::to_string(lane) +
         " reads lane " + std::to_string(src) + ", which is not in the mask");
  return th[base + src].value;
}

uint32_t Vote(const std::vector<Thread>& th, int base, uint32_t mask, Op op) {
  uint32_t ballot = 0;
  for (int l = 0; l < 32; ++l)
    if ((mask >> l) & 1u) ballot |= (th[base + l].value ? 1u : 0u) << l;
  switch (op) {
    case Op::kBallot:
      return ballot;
    case Op::kAny:
      return ballot != 0;
    case Op::kAll:
      return ballot == mask;
    default:
      return 0;
  }
}

// Completes every warp operation whose lanes have all arrived; true if any did.
bool ResolveWarps() {
  Scheduler& s = S();
  std::vector<Thread>& th = s.threads;
  const int n = static_cast<int>(th.size());
  bool progress = false;
  for (int base = 0; base < n; base += 32) {
    for (int lane = 0; lane < 32 && base + lane < n; ++lane) {
      const Thread& lead = th[base + lane];
      if (lead.state != State::kWarp) continue;
      const uint32_t mask = lead.mask;
      std::string missing;
      for (int l = 0; l < 32; ++l) {
        if (!((mask >> l) & 1u)) continue;
        if (base + l >= n) {
          missing += " lane " + std::to_string(l) + " does not exist;";
          continue;
        }
        const Thread& o = th[base + l];
        if (o.state == State::kExited)
          missing += " lane " + std::to_string(l) + " exited;";
        else if (o.state == State::kBarrier)
          missing += " lane " + std::to_string(l) + " waits at " + OpName(o.op) + " " +
                     Where(o.site) + ";";
        else if (o.site.file != lead.site.file || o.site.line != lead.site.line ||
                 o.op != lead.op || o.mask != mask)
          missing +=
              " lane " + std::to_string(l) + " is at " + OpName(o.op) + " " + Where(o.site) + ";";
      }
      if (!missing.empty())
        Fail(std::string(OpName(lead.op)) + " at " + Where(lead.site) + " (warp " +
             std::to_string(base / 32) + ", mask 0x" +
             [&] {
               std::ostringstream h;
               h << std::hex << mask;
               return h.str();
             }() +
             ") misses lanes:" + missing);
      const uint32_t vote = Vote(th, base, mask, lead.op);
      uint32_t results[32] = {0};
      for (int l = 0; l < 32; ++l)
        if ((mask >> l) & 1u) results[l] = Combine(th, base, mask, l, vote);
      for (int l = 0; l < 32; ++l) {
        if (!((mask >> l) & 1u)) continue;
        th[base + l].result = results[l];
        th[base + l].state = State::kRunnable;
      }
      ++s.stats.warp_ops;
      progress = true;
    }
  }
  return progress;
}

// Releases the block barrier that every thread waits at, or fails.
void ResolveBarrier() {
  Scheduler& s = S();
  std::vector<Thread>& th = s.threads;
  int waiting = 0, exited = 0;
  const Thread* first = nullptr;
  bool same = true;
  for (const Thread& t : th) {
    if (t.state == State::kExited) ++exited;
    if (t.state != State::kBarrier) continue;
    ++waiting;
    if (first == nullptr) first = &t;
    same = same && t.site.file == first->site.file && t.site.line == first->site.line &&
           t.op == first->op;
  }
  if (first == nullptr) Fail("deadlock: " + Census());
  if (exited > 0)
    Fail(std::string(OpName(first->op)) + " reached by " + std::to_string(waiting) + " of " +
         std::to_string(th.size()) + " threads after " + std::to_string(exited) +
         " exited: " + Census());
  if (!same) Fail("divergent barrier: " + Census());
  if (waiting != static_cast<int>(th.size())) Fail("deadlock: " + Census());
  int count = 0;
  for (const Thread& t : th) count += t.value ? 1 : 0;
  int result = 0;
  switch (first->op) {
    case Op::kSyncCount:
      result = count;
      break;
    case Op::kSyncAnd:
      result = count == waiting;
      break;
    case Op::kSyncOr:
      result = count > 0;
      break;
    default:
      break;
  }
  for (Thread& t : th) {
    t.result = static_cast<uint32_t>(result);
    t.state = State::kRunnable;
  }
  ++s.stats.barriers;
}

void ThreadEntry() {
  FiberStarted();
  Scheduler& s = S();
  (*s.body)();
  s.threads[s.current].state = State::kExited;
  s.fibers[s.current]->Exit();
}

void RunBlock(int n) {
  Scheduler& s = S();
  s.threads.assign(n, Thread{});
  for (int t = 0; t < n; ++t) {
    s.threads[t].idx =
        uint3{t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
    s.fibers[t]->Reset(&ThreadEntry);
  }
  std::vector<int> order(n);
  MakeOrder(&order);
  for (;;) {
    if (s.order == Order::kRandom) std::shuffle(order.begin(), order.end(), s.rng);
    for (const int t : order) {
      if (s.threads[t].state != State::kRunnable) continue;
      s.current = t;
      threadIdx = s.threads[t].idx;
      ++s.stats.switches;
      s.fibers[t]->Resume();
    }
    s.current = -1;
    if (ResolveWarps()) continue;
    bool all_exited = true;
    for (const Thread& t : s.threads) all_exited = all_exited && t.state == State::kExited;
    if (all_exited) return;
    ResolveBarrier();
  }
}

Thread& Current(const char* what) {
  Scheduler& s = S();
  if (s.current < 0) throw KernelError(std::string(what) + " called outside a kernel");
  return s.threads[s.current];
}

}  // namespace

void SetSchedule(Order order, uint64_t seed) {
  S().order = order;
  S().rng.seed(seed);
}

Stats GetStats() { return S().stats; }
void ResetStats() { S().stats = Stats{}; }

int64_t LiveDeviceBytes() {
  int64_t total = 0;
  for (const auto& [ptr, bytes] : S().device_allocs) total += static_cast<int64_t>(bytes);
  return total;
}

int Barrier(Site site, Op op, int predicate) {
  Scheduler& s = S();
  Thread& t = Current(OpName(op));
  t.state = State::kBarrier;
  t.site = site;
  t.op = op;
  t.value = static_cast<uint32_t>(predicate);
  const int me = s.current;
  s.fibers[me]->Yield();
  return static_cast<int>(s.threads[me].result);
}

uint32_t WarpOp(Site site, Op op, uint32_t mask, uint32_t value, int arg, int width) {
  Scheduler& s = S();
  Thread& t = Current(OpName(op));
  if (width < 1 || width > 32 || (width & (width - 1)))
    Fail(std::string(OpName(op)) + " at " + Where(site) + ": width " + std::to_string(width) +
         " is not a power of two <= 32");
  const int lane = s.current % 32;
  if (!((mask >> lane) & 1u))
    Fail(std::string(OpName(op)) + " at " + Where(site) + ": lane " + std::to_string(lane) +
         " calls it but is not in its mask");
  t.state = State::kWarp;
  t.site = site;
  t.op = op;
  t.mask = mask;
  t.value = value;
  t.arg = arg;
  t.width = width;
  const int me = s.current;
  s.fibers[me]->Yield();
  return s.threads[me].result;
}

void RunGrid(const char* kernel, int64_t grid_x, dim3 grid, dim3 block, size_t shared_bytes,
             const std::function<void()>& body) {
  Scheduler& s = S();
  if (s.current >= 0) throw KernelError(std::string(kernel) + " launched from a kernel");
  ++s.stats.launches;
  const int64_t threads = int64_t(block.x) * block.y * block.z;
  // CUDA's limits (compute capability >= 7.0); such a launch fails without running.
  const bool bad = grid_x < 1 || grid_x > INT32_MAX || grid.y < 1 || grid.y > 65535 || grid.z < 1 ||
                   grid.z > 65535 || threads < 1 || threads > 1024 || block.z > 64 ||
                   shared_bytes > (48u << 10);
  if (bad) {
    s.last_error = cudaErrorInvalidConfiguration;
    return;
  }
  while (static_cast<int64_t>(s.fibers.size()) < threads)
    s.fibers.push_back(std::make_unique<Fiber>(kStackBytes, static_cast<int>(s.fibers.size())));
  s.kernel = kernel;
  s.body = &body;
  gridDim = grid;
  blockDim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        blockIdx = uint3{x, y, z};
        ++s.stats.blocks;
        RunBlock(static_cast<int>(threads));
      }
}

}  // namespace ua3d::emu

using ua3d::emu::S;

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t) {
  if (bytes > 0) std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t) {
  *ptr = std::malloc(bytes > 0 ? bytes : 1);
  if (*ptr == nullptr) return cudaErrorMemoryAllocation;
  S().device_allocs[*ptr] = bytes;
  ++S().stats.device_allocs;
  return cudaSuccess;
}

cudaError_t cudaFreeAsync(void* ptr, cudaStream_t) {
  if (ptr == nullptr) return cudaSuccess;
  if (S().device_allocs.erase(ptr) == 0) return cudaErrorInvalidValue;
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) {
  ++S().stats.stream_syncs;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  const cudaError_t err = S().last_error;
  S().last_error = cudaSuccess;
  return err;
}

cudaError_t cudaPeekAtLastError() { return S().last_error; }

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
  }
  return "unknown error";
}
