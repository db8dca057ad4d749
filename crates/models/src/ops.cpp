// ATen operators whose tch binding lacks an argument embedlab needs.
// Each takes and returns tensors as tch does (pointers to at::Tensor), runs
// through the dispatcher (so autograd records it, twice differentiably), and
// reports a C++ exception as a message instead of unwinding into Rust.
#include <ATen/ATen.h>
#include <cstring>

extern "C" {

// at::leaky_relu(x, slope): tch's `leaky_relu` binding drops the slope
// (fixing it at 0.01). Returns a new tensor, or null with *err set
// (malloc'ed; the caller frees it).
void *embedlab_leaky_relu(const void *x, double slope, char **err) {
  try {
    const auto *t = static_cast<const at::Tensor *>(x);
    return new at::Tensor(at::leaky_relu(*t, slope));
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return nullptr;
  }
}
}
