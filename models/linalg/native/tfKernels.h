// Float32 kernels for the native tfjs backend: 2-D convolution (NHWC input, HWIO filter) and its two gradients as
// im2col/col2im around OpenBLAS sgemm, and batched matrix products. Registered on the addon's exports by linalg.cc.
#pragma once

#include <napi.h>

namespace tfkernels {

// `useThreads(n)` sets the OpenBLAS thread count the way the rest of the addon does (it caches the current count).
void Register(Napi::Env env, Napi::Object exports, void (*useThreads)(int));

}  // namespace tfkernels
