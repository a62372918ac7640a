// Float32 kernels for the native tfjs backend: 2-D convolution (NHWC/HWIO and NCHW/OIHW) and its two gradients as
// im2col/col2im around OpenBLAS sgemm, batched matrix products, strided copies, reductions, element-wise and fused
// kernels (layer norm, GELU, softmax and ReLU gradients). Registered on the addon's exports by linalg.cc.
#pragma once

#include <napi.h>

namespace tfkernels {

// `useThreads(n)` sets the OpenBLAS thread count the way the rest of the addon does (it caches the current count).
void Register(Napi::Env env, Napi::Object exports, void (*useThreads)(int));

}  // namespace tfkernels
