// Fibers for the CUDA emulation: one stack per emulated thread, switched cooperatively.
//
// x86-64: a hand-written switch of the callee-saved registers (glibc's swapcontext makes a
// sigprocmask system call per switch, and the backward kernel switches ~50 times per
// Gaussian and pixel). Elsewhere: ucontext.
// Under AddressSanitizer every switch is announced (__sanitizer_*_switch_fiber) so that
// ASan knows which stack is live.
#pragma once

#include <cstddef>
#include <memory>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace ua3d::emu {

class Fiber {
 public:
  using Entry = void (*)();
  // `color` staggers the stack tops (by color * 320 bytes): stacks of equal size otherwise start
  // at addresses equal modulo the cache's set stride, and every switch missed the cache.
  Fiber(size_t stack_bytes, int color);
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Prepares the fiber to run entry() from the top of its stack at the next Resume(); entry
  // calls FiberStarted() first and Exit() last (it never returns).
  void Reset(Entry entry);
  // Called on the scheduler's stack: runs the fiber until it calls Yield() or Exit().
  void Resume();
  // Called on the fiber's stack: back to the scheduler; returns at the next Resume().
  void Yield();
  // Called on the fiber's stack when entry() is done: back to the scheduler for good.
  [[noreturn]] void Exit();

 private:
  std::unique_ptr<char[]> stack_;
  size_t size_;
  size_t top_offset_;
  void* fake_stack_ = nullptr;  // ASan's fake stack of the fiber while it is switched out
#if defined(__x86_64__)
  void* sp_ = nullptr;         // the fiber's saved stack pointer
  void* caller_sp_ = nullptr;  // the scheduler's saved stack pointer
#else
  ucontext_t context_{};
  ucontext_t caller_{};
#endif
};

// The first call of every fiber entry (tells ASan the fiber's stack is live).
void FiberStarted();

}  // namespace ua3d::emu
