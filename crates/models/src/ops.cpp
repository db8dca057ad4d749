// ATen operators whose tch binding lacks an argument embedlab needs.
// Each takes and returns tensors as tch does (pointers to at::Tensor), runs
// through the dispatcher (so autograd records it, twice differentiably), and
// reports a C++ exception as a message instead of unwinding into Rust.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
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

// vᵀ ∂out/∂in with v as the gradient's seed (grad_outputs): unlike the
// gradient of Σ out·v, v is held constant in the value, and with
// `create_graph` the result stays differentiable in v, in and the weights
// (the i-ResNet log-determinant's chain of vector–Jacobian products).
void *embedlab_vjp(const void *out, const void *in, const void *v,
                   int create_graph, char **err) {
  try {
    const auto *o = static_cast<const at::Tensor *>(out);
    const auto *i = static_cast<const at::Tensor *>(in);
    const auto *g = static_cast<const at::Tensor *>(v);
    auto r = torch::autograd::grad({*o}, {*i}, {*g}, /*retain_graph=*/true,
                                   create_graph != 0, /*allow_unused=*/false);
    return new at::Tensor(r[0]);
  } catch (const std::exception &e) {
    *err = strdup(e.what());
    return nullptr;
  }
}
}
