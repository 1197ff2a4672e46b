// Fibers of the CUDA emulation (see fiber.h).
#include "emu/fiber.h"

#include <cstdint>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define UA3D_EMU_ASAN 1
#else
#define UA3D_EMU_ASAN 0
#endif

#if defined(__x86_64__)
// ua3d_emu_swap(save, load): pushes the callee-saved registers, stores the stack pointer in
// *save, loads `load` and pops the same from there. MXCSR and the x87 control word are
// shared by all fibers (the kernels never change rounding modes; saving them cost ~30 %).
extern "C" void ua3d_emu_swap(void** save, void* load);
asm(R"(
  .text
  .p2align 4
  .globl ua3d_emu_swap
  .hidden ua3d_emu_swap
  .type ua3d_emu_swap,@function
ua3d_emu_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ua3d_emu_swap, .-ua3d_emu_swap
)");
#endif

namespace ua3d::emu {
namespace {

#if UA3D_EMU_ASAN
const void* g_caller_bottom = nullptr;  // the scheduler's stack, as ASan reported it
size_t g_caller_size = 0;
#endif

}  // namespace

Fiber::Fiber(size_t stack_bytes, int color)
    : stack_(new char[stack_bytes]), size_(stack_bytes), top_offset_(size_t(color % 97) * 320) {}

void Fiber::Reset(Entry entry) {
#if defined(__x86_64__)
  auto top = reinterpret_cast<uintptr_t>(stack_.get() + size_ - top_offset_) & ~uintptr_t(15);
  auto* slot = reinterpret_cast<uint64_t*>(top);
  // Entered by `ret`: the entry sees the stack of a function just called (rsp + 8 aligned).
  *--slot = 0;                                  // the entry's own return address
  *--slot = reinterpret_cast<uint64_t>(entry);  // popped by ret
  for (int r = 0; r < 6; ++r) *--slot = 0;      // rbp rbx r12 r13 r14 r15
  sp_ = slot;
#else
  getcontext(&context_);
  context_.uc_stack.ss_sp = stack_.get();
  context_.uc_stack.ss_size = size_;
  context_.uc_link = nullptr;
  makecontext(&context_, entry, 0);
#endif
}

void Fiber::Resume() {
#if UA3D_EMU_ASAN
  void* caller_fake = nullptr;
  __sanitizer_start_switch_fiber(&caller_fake, stack_.get(), size_);
#endif
#if defined(__x86_64__)
  ua3d_emu_swap(&caller_sp_, sp_);
#else
  swapcontext(&caller_, &context_);
#endif
#if UA3D_EMU_ASAN
  __sanitizer_finish_switch_fiber(caller_fake, nullptr, nullptr);
#endif
}

void Fiber::Yield() {
#if UA3D_EMU_ASAN
  __sanitizer_start_switch_fiber(&fake_stack_, g_caller_bottom, g_caller_size);
#endif
#if defined(__x86_64__)
  ua3d_emu_swap(&sp_, caller_sp_);
#else
  swapcontext(&context_, &caller_);
#endif
#if UA3D_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_, &g_caller_bottom, &g_caller_size);
#endif
}

void Fiber::Exit() {
#if UA3D_EMU_ASAN
  __sanitizer_start_switch_fiber(nullptr, g_caller_bottom, g_caller_size);
#endif
#if defined(__x86_64__)
  ua3d_emu_swap(&sp_, caller_sp_);
#else
  setcontext(&caller_);
#endif
  __builtin_unreachable();
}

// The first code a fiber runs (its entry calls this before anything else).
void FiberStarted() {
#if UA3D_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_caller_bottom, &g_caller_size);
#endif
}

}  // namespace ua3d::emu
