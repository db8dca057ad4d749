// libtorch's autocast for the CPU (and CUDA) — tch binds only the deprecated
// CUDA-only switch — and the channels-last memory format, which tch does
// not bind. Inside a region, matrix products and convolutions run
// in bfloat16 on float32 weights (cast on the fly, cached for the region),
// the ops on libtorch's float32 list (for the CPU: most losses and linear
// algebra, not log-softmax) in float32; autograd records the casts, so
// the gradients reach the float32 weights as float32.
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <cstring>

extern "C" {

// Enters a bfloat16 region (enabled = 1) or a float32 region inside one
// (enabled = 0) on the CPU (cuda = 0) or CUDA (cuda = 1). Returns the
// previous state (1: enabled) for the exit call, or -1 with *err set
// (malloc'ed; the caller frees it).
int embedlab_autocast_enter(int cuda, int enabled, int *prev_dtype, char **err) {
  try {
    const auto dt = cuda ? at::kCUDA : at::kCPU;
    const int was = at::autocast::is_autocast_enabled(dt) ? 1 : 0;
    *prev_dtype = static_cast<int>(at::autocast::get_autocast_dtype(dt));
    at::autocast::set_autocast_dtype(dt, at::kBFloat16);
    at::autocast::set_autocast_enabled(dt, enabled != 0);
    at::autocast::increment_nesting();
    return was;
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return -1;
  }
}

// Leaves the region entered by the matching enter call: restores the
// previous state and, on leaving the outermost region, drops the cached
// bfloat16 copies of the weights (they change with every step).
void embedlab_autocast_exit(int cuda, int was, int prev_dtype) {
  const auto dt = cuda ? at::kCUDA : at::kCPU;
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(dt, was != 0);
  at::autocast::set_autocast_dtype(dt, static_cast<at::ScalarType>(prev_dtype));
}

// Whether a region is active on the device (for tests).
int embedlab_autocast_enabled(int cuda) {
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU) ? 1 : 0;
}

// x in the channels-last memory format (N, C, H, W indexed as before, C
// stored innermost), the layout oneDNN's fast convolutions take. Returns a
// new tensor, or null with *err set (malloc'ed; the caller frees it).
void *embedlab_channels_last(const void *x, char **err) {
  try {
    const auto *t = static_cast<const at::Tensor *>(x);
    return new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast));
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return nullptr;
  }
}
}
