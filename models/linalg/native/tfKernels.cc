#include "tfKernels.h"

#include <cblas.h>
#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace tfkernels {
namespace {

void (*g_useThreads)(int) = nullptr;

[[noreturn]] void Fail(Napi::Env env, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Value().Set("code", Napi::String::New(env, "BAD_ARGUMENT"));
  throw err;
}

// Buffers larger than this (elements) are refused: tfjs tensors this size would not fit in a Float32Array anyway.
constexpr int64_t kMaxElements = (int64_t{1} << 31) - 1;
// im2col workspace per chunk of images, in floats (64 MiB).
constexpr int64_t kWorkspaceFloats = int64_t{1} << 24;
// Below this many floats copied, a second thread costs more than it saves.
constexpr int64_t kParallelMinFloats = int64_t{1} << 16;

Napi::Float32Array Floats(Napi::Env env, const Napi::Value& v, const char* name, int64_t expected) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Fail(env, std::string(name) + " must be a Float32Array");
  }
  Napi::Float32Array a = v.As<Napi::Float32Array>();
  if (static_cast<int64_t>(a.ElementLength()) != expected) {
    Fail(env, std::string(name) + " has " + std::to_string(a.ElementLength()) + " elements, the shape needs " +
                  std::to_string(expected));
  }
  return a;
}

std::vector<int64_t> Ints(Napi::Env env, const Napi::Value& v, const char* name, size_t count) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Fail(env, std::string(name) + " must be an Int32Array");
  }
  Napi::Int32Array a = v.As<Napi::Int32Array>();
  if (a.ElementLength() != count) Fail(env, std::string(name) + " must have " + std::to_string(count) + " entries");
  std::vector<int64_t> out(count);
  for (size_t i = 0; i < count; ++i) out[i] = a[i];
  return out;
}

int64_t CheckedProduct(Napi::Env env, std::initializer_list<int64_t> dims, const char* what) {
  int64_t p = 1;
  for (int64_t d : dims) {
    if (d < 0 || (d > 0 && p > kMaxElements / d)) Fail(env, std::string(what) + " is too large");
    p *= d;
  }
  return p;
}

// n floats with undefined contents: node's Buffer allocation skips the zero fill that a plain ArrayBuffer gets, and
// every kernel here writes all of its output (or clears it first). The memory is V8's like any ArrayBuffer's, so
// collection and its accounting are unchanged.
Napi::Float32Array NewFloats(Napi::Env env, int64_t n) {
  Napi::Buffer<float> raw = Napi::Buffer<float>::New(env, static_cast<size_t>(n));
  return Napi::Float32Array::New(env, static_cast<size_t>(n), raw.ArrayBuffer(), raw.ByteOffset());
}

// Runs fn(begin, end) over [0, n), split in two halves on two threads when the work is large enough.
template <typename F>
void Split(int64_t n, int64_t floatsPerItem, F fn) {
  if (n < 2 || n * floatsPerItem < kParallelMinFloats) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t mid = n / 2;
  std::thread other([&] { fn(mid, n); });
  fn(int64_t{0}, mid);
  other.join();
}

// Geometry of a 2-D convolution, NHWC input and HWIO filter.
struct Conv {
  int64_t n, h, w, ci, kh, kw, co, oh, ow, sh, sw, dh, dw, pt, pl;
  int64_t K() const { return kh * kw * ci; }
  int64_t Rows() const { return oh * ow; }  // output positions per image
  bool Pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && oh == h && ow == w; }
};

// `paddedWindows`: output windows may lie wholly in the padding (ONNX allows pads as large as one likes; every read
// is bounds-checked either way). Otherwise each window must start within the input's reach, which catches a caller
// whose output size does not follow from its padding.
Conv ReadConv(Napi::Env env, const Napi::Value& v, bool paddedWindows = false) {
  const std::vector<int64_t> g = Ints(env, v, "geometry", 15);
  Conv c{g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14]};
  const int64_t positive[] = {c.n, c.h, c.w, c.ci, c.kh, c.kw, c.co, c.oh, c.ow, c.sh, c.sw, c.dh, c.dw};
  for (int64_t d : positive) {
    if (d < 1) Fail(env, "conv geometry: every size, stride and dilation must be at least 1");
  }
  if (c.pt < 0 || c.pl < 0) Fail(env, "conv geometry: padding must be non-negative");
  // Every output window must start before the padded input ends; anything else is a shape the caller got wrong.
  if (!paddedWindows &&
      ((c.oh - 1) * c.sh - c.pt >= c.h + c.dh * (c.kh - 1) || (c.ow - 1) * c.sw - c.pl >= c.w + c.dw * (c.kw - 1))) {
    Fail(env, "conv geometry: the output is larger than the padded input allows");
  }
  CheckedProduct(env, {c.n, c.h, c.w, c.ci}, "conv input");
  CheckedProduct(env, {c.kh, c.kw, c.ci, c.co}, "conv filter");
  CheckedProduct(env, {c.n, c.oh, c.ow, c.co}, "conv output");
  CheckedProduct(env, {c.oh, c.ow, c.kh, c.kw, c.ci}, "conv patch matrix of one image");
  return c;
}

int64_t ImagesPerChunk(const Conv& c) {
  return std::max<int64_t>(1, std::min<int64_t>(c.n, kWorkspaceFloats / (c.Rows() * c.K())));
}

// Patch rows of images [first, first + count): row (image, oy, ox) holds the receptive field, (ky, kx, ci) order.
void Im2col(const Conv& c, const float* x, int64_t first, int64_t count, float* cols) {
  const int64_t K = c.K();
  const int64_t rows = count * c.Rows();
  Split(rows, K, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t img = first + r / c.Rows();
      const int64_t oy = (r % c.Rows()) / c.ow;
      const int64_t ox = r % c.ow;
      float* dst = cols + r * K;
      for (int64_t ky = 0; ky < c.kh; ++ky) {
        const int64_t iy = oy * c.sh - c.pt + ky * c.dh;
        for (int64_t kx = 0; kx < c.kw; ++kx, dst += c.ci) {
          const int64_t ix = ox * c.sw - c.pl + kx * c.dw;
          if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) {
            std::memset(dst, 0, sizeof(float) * c.ci);
          } else {
            std::memcpy(dst, x + ((img * c.h + iy) * c.w + ix) * c.ci, sizeof(float) * c.ci);
          }
        }
      }
    }
  });
}

// Adds patch rows back into the input gradient. Threads split the channels, so no two write the same element.
void Col2im(const Conv& c, const float* cols, int64_t first, int64_t count, float* dx) {
  const int64_t K = c.K();
  Split(c.ci, count * c.Rows() * c.kh * c.kw, [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < count * c.Rows(); ++r) {
      const int64_t img = first + r / c.Rows();
      const int64_t oy = (r % c.Rows()) / c.ow;
      const int64_t ox = r % c.ow;
      const float* src = cols + r * K;
      for (int64_t ky = 0; ky < c.kh; ++ky) {
        const int64_t iy = oy * c.sh - c.pt + ky * c.dh;
        for (int64_t kx = 0; kx < c.kw; ++kx, src += c.ci) {
          const int64_t ix = ox * c.sw - c.pl + kx * c.dw;
          if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
          float* dst = dx + ((img * c.h + iy) * c.w + ix) * c.ci;
          for (int64_t k = c0; k < c1; ++k) dst[k] += src[k];
        }
      }
    }
  });
}

std::vector<float>& Workspace(int64_t floats) {
  thread_local std::vector<float> ws;
  if (static_cast<int64_t>(ws.size()) < floats) ws.resize(static_cast<size_t>(floats));
  return ws;
}

void UseAllThreads() {
  if (g_useThreads) g_useThreads(INT32_MAX);
}

int I(int64_t v) { return static_cast<int>(v); }

// conv2d(x, filter, geometry) → y: y[img, oy, ox, :] = patch · W, as one sgemm per chunk of images.
Napi::Value Conv2d(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Conv c = ReadConv(env, info[2]);
  Napi::Float32Array x = Floats(env, info[0], "x", c.n * c.h * c.w * c.ci);
  Napi::Float32Array f = Floats(env, info[1], "filter", c.K() * c.co);
  Napi::Float32Array y = NewFloats(env, c.n * c.Rows() * c.co);
  UseAllThreads();
  const int64_t K = c.K();
  if (c.Pointwise()) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(c.n * c.Rows()), I(c.co), I(K), 1.0f, x.Data(), I(K),
                f.Data(), I(c.co), 0.0f, y.Data(), I(c.co));
    return y;
  }
  const int64_t chunk = ImagesPerChunk(c);
  float* cols = Workspace(chunk * c.Rows() * K).data();
  for (int64_t first = 0; first < c.n; first += chunk) {
    const int64_t count = std::min(chunk, c.n - first);
    Im2col(c, x.Data(), first, count, cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(count * c.Rows()), I(c.co), I(K), 1.0f, cols, I(K),
                f.Data(), I(c.co), 0.0f, y.Data() + first * c.Rows() * c.co, I(c.co));
  }
  return y;
}

// conv2dBackpropInput(dy, filter, geometry) → dx: patch gradients dy · Wᵀ, added back into place.
Napi::Value Conv2dBackpropInput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Conv c = ReadConv(env, info[2]);
  Napi::Float32Array dy = Floats(env, info[0], "dy", c.n * c.Rows() * c.co);
  Napi::Float32Array f = Floats(env, info[1], "filter", c.K() * c.co);
  Napi::Float32Array dx = NewFloats(env, c.n * c.h * c.w * c.ci);
  UseAllThreads();
  const int64_t K = c.K();
  if (c.Pointwise()) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(c.n * c.Rows()), I(K), I(c.co), 1.0f, dy.Data(), I(c.co),
                f.Data(), I(c.co), 0.0f, dx.Data(), I(K));
    return dx;
  }
  std::memset(dx.Data(), 0, sizeof(float) * dx.ElementLength());
  const int64_t chunk = ImagesPerChunk(c);
  float* cols = Workspace(chunk * c.Rows() * K).data();
  for (int64_t first = 0; first < c.n; first += chunk) {
    const int64_t count = std::min(chunk, c.n - first);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(count * c.Rows()), I(K), I(c.co), 1.0f,
                dy.Data() + first * c.Rows() * c.co, I(c.co), f.Data(), I(c.co), 0.0f, cols, I(K));
    Col2im(c, cols, first, count, dx.Data());
  }
  return dx;
}

// conv2dBackpropFilter(x, dy, geometry) → dW = Σ over chunks of patchesᵀ · dy.
Napi::Value Conv2dBackpropFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Conv c = ReadConv(env, info[2]);
  Napi::Float32Array x = Floats(env, info[0], "x", c.n * c.h * c.w * c.ci);
  Napi::Float32Array dy = Floats(env, info[1], "dy", c.n * c.Rows() * c.co);
  Napi::Float32Array dw = NewFloats(env, c.K() * c.co);
  UseAllThreads();
  const int64_t K = c.K();
  if (c.Pointwise()) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(K), I(c.co), I(c.n * c.Rows()), 1.0f, x.Data(), I(K),
                dy.Data(), I(c.co), 0.0f, dw.Data(), I(c.co));
    return dw;
  }
  const int64_t chunk = ImagesPerChunk(c);
  float* cols = Workspace(chunk * c.Rows() * K).data();
  for (int64_t first = 0; first < c.n; first += chunk) {
    const int64_t count = std::min(chunk, c.n - first);
    Im2col(c, x.Data(), first, count, cols);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(K), I(c.co), I(count * c.Rows()), 1.0f, cols, I(K),
                dy.Data() + first * c.Rows() * c.co, I(c.co), first == 0 ? 0.0f : 1.0f, dw.Data(), I(c.co));
  }
  return dw;
}

// The output columns [lo, hi) whose tap at kernel column kx falls inside the input row; the rest read padding.
void ValidColumns(const Conv& c, int64_t kx, int64_t& lo, int64_t& hi) {
  const int64_t x0 = kx * c.dw - c.pl;
  lo = x0 >= 0 ? 0 : std::min(c.ow, (-x0 + c.sw - 1) / c.sw);
  hi = c.w - x0 <= 0 ? 0 : std::min(c.ow, (c.w - x0 + c.sw - 1) / c.sw);
  hi = std::max(hi, lo);
}

// The same convolutions in ONNX's layouts: NCHW input and output, OIHW filter. The patch matrix is transposed
// against the one above: K = ci·kh·kw rows, (ci, ky, kx) order, so that the OIHW filter is already a co × K
// matrix, and one column per output position of the chunk's images, (image, oy, ox) order. Each of its rows is
// made of runs from the input's rows, and the padding is written as zeros here rather than padded first.
void Im2colNchw(const Conv& c, const float* x, int64_t first, int64_t count, float* cols) {
  const int64_t L = count * c.Rows();
  Split(c.K(), L, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t ch = r / (c.kh * c.kw);
      const int64_t ky = (r / c.kw) % c.kh;
      const int64_t kx = r % c.kw;
      int64_t lo, hi;
      ValidColumns(c, kx, lo, hi);
      const int64_t x0 = kx * c.dw - c.pl;
      float* dst = cols + r * L;
      for (int64_t img = 0; img < count; ++img) {
        const float* plane = x + ((first + img) * c.ci + ch) * c.h * c.w;
        for (int64_t oy = 0; oy < c.oh; ++oy, dst += c.ow) {
          const int64_t iy = oy * c.sh - c.pt + ky * c.dh;
          if (iy < 0 || iy >= c.h) {
            for (int64_t ox = 0; ox < c.ow; ++ox) dst[ox] = 0.0f;
            continue;
          }
          // Runs are a few floats long (7 at layer4): plain loops, as a memcpy call per run costs more than the copy.
          const float* src = plane + iy * c.w + x0;
          for (int64_t ox = 0; ox < lo; ++ox) dst[ox] = 0.0f;
          if (c.sw == 1) {
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox];
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox * c.sw];
          }
          for (int64_t ox = hi; ox < c.ow; ++ox) dst[ox] = 0.0f;
        }
      }
    }
  });
}

// Adds the patch-matrix gradient back into dx (NCHW). Threads split the input channels, whose planes are disjoint.
void Col2imNchw(const Conv& c, const float* cols, int64_t first, int64_t count, float* dx) {
  const int64_t L = count * c.Rows();
  Split(c.ci, L * c.kh * c.kw, [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      for (int64_t ky = 0; ky < c.kh; ++ky) {
        for (int64_t kx = 0; kx < c.kw; ++kx) {
          int64_t lo, hi;
          ValidColumns(c, kx, lo, hi);
          const int64_t x0 = kx * c.dw - c.pl;
          const float* src = cols + ((ch * c.kh + ky) * c.kw + kx) * L;
          for (int64_t img = 0; img < count; ++img) {
            float* plane = dx + ((first + img) * c.ci + ch) * c.h * c.w;
            for (int64_t oy = 0; oy < c.oh; ++oy, src += c.ow) {
              const int64_t iy = oy * c.sh - c.pt + ky * c.dh;
              if (iy < 0 || iy >= c.h) continue;
              float* row = plane + iy * c.w + x0;
              if (c.sw == 1) {
                for (int64_t ox = lo; ox < hi; ++ox) row[ox] += src[ox];
              } else {
                for (int64_t ox = lo; ox < hi; ++ox) row[ox * c.sw] += src[ox];
              }
            }
          }
        }
      }
    }
  });
}

// Between a co × L matrix (one column per output position of the chunk's images) and the NCHW tensor's slice of
// those images: toNchw copies the matrix out, adding bias[o] to channel o when there is one; otherwise in.
void ReorderChunk(const Conv& c, float* matrix, float* nchw, int64_t first, int64_t count, bool toNchw,
                  const float* bias = nullptr) {
  const int64_t P = c.Rows(), L = count * P;
  Split(c.co, L, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const float b = bias ? bias[o] : 0.0f;
      for (int64_t img = 0; img < count; ++img) {
        float* m = matrix + o * L + img * P;
        float* t = nchw + ((first + img) * c.co + o) * P;
        if (toNchw) {
          for (int64_t j = 0; j < P; ++j) t[j] = m[j] + b;
        } else {
          std::memcpy(m, t, sizeof(float) * P);
        }
      }
    }
  });
}

// Images per chunk when the patch matrix and a co × L matrix share the workspace.
int64_t ImagesPerChunkNchw(const Conv& c) {
  return std::max<int64_t>(1, std::min<int64_t>(c.n, kWorkspaceFloats / (c.Rows() * (c.K() + c.co))));
}

// conv2dNchw(x, filter, geometry, bias?, cols?) → y: per chunk of images, W (co × K) · patches (K × L), copied out
// into NCHW with the bias (co entries) added. Given cols (K × N·P), the whole batch's patches are written there.
Napi::Value Conv2dNchw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Conv c = ReadConv(env, info[2], true);
  Napi::Float32Array x = Floats(env, info[0], "x", c.n * c.h * c.w * c.ci);
  Napi::Float32Array f = Floats(env, info[1], "filter", c.K() * c.co);
  const float* bias = nullptr;
  if (!info[3].IsUndefined() && !info[3].IsNull()) bias = Floats(env, info[3], "bias", c.co).Data();
  const int64_t K = c.K(), P = c.Rows();
  // A caller-given patch matrix for the whole batch, kept for the filter gradient; otherwise the workspace's.
  const bool keep = !info[4].IsUndefined() && !info[4].IsNull();
  float* kept = keep ? Floats(env, info[4], "cols", CheckedProduct(env, {K, c.n, P}, "the patch matrix")).Data() : nullptr;
  Napi::Float32Array y = NewFloats(env, c.n * c.Rows() * c.co);
  UseAllThreads();
  const int64_t chunk = keep ? c.n : ImagesPerChunkNchw(c);
  float* out = Workspace(chunk * P * (keep ? c.co : K + c.co)).data();
  float* cols = keep ? kept : out + chunk * P * c.co;
  for (int64_t first = 0; first < c.n; first += chunk) {
    const int64_t count = std::min(chunk, c.n - first);
    const int64_t L = count * P;
    Im2colNchw(c, x.Data(), first, count, cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(c.co), I(L), I(K), 1.0f, f.Data(), I(K), cols, I(L), 0.0f,
                out, I(L));
    ReorderChunk(c, out, y.Data(), first, count, true, bias);
  }
  return y;
}

// conv2dNchwBackpropInput(dy, filter, geometry) → dx: per chunk, Wᵀ · dy (K × L), added back into place.
Napi::Value Conv2dNchwBackpropInput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Conv c = ReadConv(env, info[2], true);
  Napi::Float32Array dy = Floats(env, info[0], "dy", c.n * c.Rows() * c.co);
  Napi::Float32Array f = Floats(env, info[1], "filter", c.K() * c.co);
  Napi::Float32Array dx = NewFloats(env, c.n * c.h * c.w * c.ci);
  std::memset(dx.Data(), 0, sizeof(float) * dx.ElementLength());
  UseAllThreads();
  const int64_t K = c.K(), P = c.Rows();
  const int64_t chunk = ImagesPerChunkNchw(c);
  float* cols = Workspace(chunk * P * (K + c.co)).data();
  float* grad = cols + chunk * P * K;
  for (int64_t first = 0; first < c.n; first += chunk) {
    const int64_t count = std::min(chunk, c.n - first);
    const int64_t L = count * P;
    ReorderChunk(c, grad, dy.Data(), first, count, false);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(K), I(L), I(c.co), 1.0f, f.Data(), I(K), grad, I(L), 0.0f,
                cols, I(L));
    Col2imNchw(c, cols, first, count, dx.Data());
  }
  return dx;
}

// conv2dNchwBackpropFilter(x, dy, geometry, cols?) → dW (co × K) = Σ over chunks of dy (co × L) · patchesᵀ, from
// the forward's patch matrix when it is given.
Napi::Value Conv2dNchwBackpropFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Conv c = ReadConv(env, info[2], true);
  Napi::Float32Array x = Floats(env, info[0], "x", c.n * c.h * c.w * c.ci);
  Napi::Float32Array dy = Floats(env, info[1], "dy", c.n * c.Rows() * c.co);
  const int64_t K = c.K(), P = c.Rows();
  // The patch matrix the forward kept, if it was: no im2col then.
  const bool given = !info[3].IsUndefined() && !info[3].IsNull();
  const float* kept = given ? Floats(env, info[3], "cols", CheckedProduct(env, {K, c.n, P}, "the patch matrix")).Data() : nullptr;
  Napi::Float32Array dw = NewFloats(env, c.K() * c.co);
  UseAllThreads();
  const int64_t chunk = given ? c.n : ImagesPerChunkNchw(c);
  float* grad = Workspace(chunk * P * (given ? c.co : K + c.co)).data();
  float* cols = grad + chunk * P * c.co;
  for (int64_t first = 0; first < c.n; first += chunk) {
    const int64_t count = std::min(chunk, c.n - first);
    const int64_t L = count * P;
    ReorderChunk(c, grad, dy.Data(), first, count, false);
    if (given) {
      cols = const_cast<float*>(kept);
    } else {
      Im2colNchw(c, x.Data(), first, count, cols);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(c.co), I(K), I(L), 1.0f, grad, I(L), cols, I(L),
                first == 0 ? 0.0f : 1.0f, dw.Data(), I(K));
  }
  return dw;
}

// batchMatMul(a, b, [batchA, batchB, m, k, n, transA, transB]) → c of [max(batchA, batchB), m, n]; a batch of 1
// is broadcast against the other.
Napi::Value BatchMatMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::vector<int64_t> d = Ints(env, info[2], "dims", 7);
  const int64_t batchA = d[0], batchB = d[1], m = d[2], k = d[3], n = d[4];
  if (batchA < 1 || batchB < 1 || m < 1 || k < 1 || n < 1) Fail(env, "batchMatMul: every size must be at least 1");
  if (batchA != batchB && batchA != 1 && batchB != 1) {
    Fail(env, "batchMatMul: batch sizes " + std::to_string(batchA) + " and " + std::to_string(batchB) + " do not broadcast");
  }
  const bool transA = d[5] != 0, transB = d[6] != 0;
  const int64_t batch = std::max(batchA, batchB);
  Napi::Float32Array a = Floats(env, info[0], "a", CheckedProduct(env, {batchA, m, k}, "a"));
  Napi::Float32Array b = Floats(env, info[1], "b", CheckedProduct(env, {batchB, k, n}, "b"));
  Napi::Float32Array out = NewFloats(env, CheckedProduct(env, {batch, m, n}, "the product"));
  UseAllThreads();
  const float* pa = a.Data();
  const float* pb = b.Data();
  float* pc = out.Data();
  if (batchB == 1 && !transA) {
    // A shared right factor: one sgemm over all the batch's rows.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, I(batchA * m), I(n), I(k), 1.0f, pa,
                I(k), pb, transB ? I(k) : I(n), 0.0f, pc, I(n));
    return out;
  }
  const auto product = [&](int64_t i) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, I(m), I(n), I(k),
                1.0f, pa + (batchA == 1 ? 0 : i) * m * k, transA ? I(m) : I(k), pb + (batchB == 1 ? 0 : i) * k * n,
                transB ? I(k) : I(n), 0.0f, pc + i * m * n, I(n));
  };
  // Many small products: OpenBLAS's own threads cost more than they give, so the batch is split over two threads,
  // each running single-threaded products.
  if (batch >= 2 && m * n * k < (int64_t{1} << 22)) {
    if (g_useThreads) g_useThreads(1);
    Split(batch, m * n + m * k, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) product(i);
    });
    return out;
  }
  for (int64_t i = 0; i < batch; ++i) product(i);
  return out;
}

// A layout over two arrays (sizes and each array's strides, in elements) with neighbouring dimensions merged where
// both arrays step through them contiguously (stride[d−1] = stride[d]·size[d]), or both broadcast them.
struct MergedLayout {
  std::vector<int64_t> shape, a, b;
};

MergedLayout MergeContiguous(const std::vector<int64_t>& shape, const std::vector<int64_t>& as,
                             const std::vector<int64_t>& bs) {
  MergedLayout m{{shape[0]}, {as[0]}, {bs[0]}};
  for (size_t d = 1; d < shape.size(); ++d) {
    if (m.a.back() == as[d] * shape[d] && m.b.back() == bs[d] * shape[d]) {
      m.shape.back() *= shape[d];
      m.a.back() = as[d];
      m.b.back() = bs[d];
    } else {
      m.shape.push_back(shape[d]);
      m.a.push_back(as[d]);
      m.b.push_back(bs[d]);
    }
  }
  return m;
}

// stridedCopy(src, dst, layout): for every index i over `shape`, dst[dstBase + i·dstStrides] = src[srcBase +
// i·srcStrides]. layout = [rank, shape…, srcStrides…, dstStrides…, srcBase, dstBase]. Transpose, Slice and Pad are
// this one loop with different strides; every offset it can reach is checked against both arrays first.
Napi::Value StridedCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Fail(env, "layout must be an Int32Array");
  }
  const size_t len = info[2].As<Napi::Int32Array>().ElementLength();
  if (len < 3) Fail(env, "layout is too short");
  const int64_t rank = info[2].As<Napi::Int32Array>()[0];
  if (rank < 1 || rank > 8 || len != static_cast<size_t>(3 * rank + 3)) Fail(env, "layout: rank must be 1 to 8, with 3·rank + 3 entries");
  const std::vector<int64_t> l = Ints(env, info[2], "layout", len);
  std::vector<int64_t> shape(l.begin() + 1, l.begin() + 1 + rank);
  std::vector<int64_t> ss(l.begin() + 1 + rank, l.begin() + 1 + 2 * rank);
  std::vector<int64_t> ds(l.begin() + 1 + 2 * rank, l.begin() + 1 + 3 * rank);
  const int64_t srcBase = l[3 * rank + 1], dstBase = l[3 * rank + 2];
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Fail(env, "src and dst must be Float32Arrays");
  }
  Napi::Float32Array src = info[0].As<Napi::Float32Array>();
  Napi::Float32Array dst = info[1].As<Napi::Float32Array>();
  int64_t srcLast = srcBase, dstLast = dstBase;
  for (int64_t d = 0; d < rank; ++d) {
    if (shape[d] < 1 || ss[d] < 0 || ds[d] < 0) Fail(env, "layout: sizes must be positive and strides non-negative");
    srcLast += (shape[d] - 1) * ss[d];
    dstLast += (shape[d] - 1) * ds[d];
  }
  if (srcBase < 0 || dstBase < 0 || srcLast >= static_cast<int64_t>(src.ElementLength()) ||
      dstLast >= static_cast<int64_t>(dst.ElementLength())) {
    Fail(env, "layout reaches outside src or dst");
  }
  // Merge neighbouring dimensions that are contiguous in both arrays, so the inner loop runs as long as it can.
  const MergedLayout merged = MergeContiguous(shape, ss, ds);
  const std::vector<int64_t>&sh = merged.shape, &sst = merged.a, &dst_ = merged.b;
  const int64_t r = static_cast<int64_t>(sh.size());
  const int64_t inner = sh[r - 1], si = sst[r - 1], di = dst_[r - 1];
  int64_t outer = 1;
  for (int64_t d = 0; d + 1 < r; ++d) outer *= sh[d];
  const float* s = src.Data() + srcBase;
  float* o = dst.Data() + dstBase;
  // A transpose of the two fastest-moving dimensions (NCHW ↔ NHWC): copied in square tiles, so that neither the
  // reads nor the writes stride across memory a float at a time.
  int64_t p = -1;
  for (int64_t d = 0; d + 1 < r && di == 1 && si != 1; ++d) {
    if (sst[d] == 1) p = d;
  }
  if (p >= 0) {
    constexpr int64_t kTile = 32;
    const int64_t rows = sh[p], dp = dst_[p];
    const int64_t blocks = outer / rows;
    Split(blocks, rows * inner, [&](int64_t b0, int64_t b1) {
      for (int64_t k = b0; k < b1; ++k) {
        int64_t so = 0, doff = 0, rem = k;
        for (int64_t d = r - 2; d >= 0; --d) {
          if (d == p) continue;
          const int64_t i = rem % sh[d];
          rem /= sh[d];
          so += i * sst[d];
          doff += i * dst_[d];
        }
        for (int64_t i0 = 0; i0 < rows; i0 += kTile) {
          const int64_t i1 = std::min(rows, i0 + kTile);
          for (int64_t j0 = 0; j0 < inner; j0 += kTile) {
            const int64_t j1 = std::min(inner, j0 + kTile);
            for (int64_t i = i0; i < i1; ++i) {
              const float* a = s + so + i;
              float* b = o + doff + i * dp;
              for (int64_t j = j0; j < j1; ++j) b[j] = a[j * si];
            }
          }
        }
      }
    });
    return env.Undefined();
  }
  Split(outer, inner, [&](int64_t o0, int64_t o1) {
    for (int64_t k = o0; k < o1; ++k) {
      int64_t so = 0, doff = 0, rem = k;
      for (int64_t d = r - 2; d >= 0; --d) {
        const int64_t i = rem % sh[d];
        rem /= sh[d];
        so += i * sst[d];
        doff += i * dst_[d];
      }
      const float* a = s + so;
      float* b = o + doff;
      if (si == 1 && di == 1) {
        std::memcpy(b, a, sizeof(float) * inner);
      } else {
        for (int64_t j = 0; j < inner; ++j) b[j * di] = a[j * si];
      }
    }
  });
  return env.Undefined();
}

// binary(a, b, layout, op) → out: out[i] = a[i·aStrides] op b[i·bStrides] over `shape`, a stride of 0 broadcasting.
// layout = [rank, shape…, aStrides…, bStrides…]; op 0 add, 1 subtract, 2 multiply, 3 divide.
template <int Op>
inline float Apply(float x, float y) {
  if constexpr (Op == 0) return x + y;
  if constexpr (Op == 1) return x - y;
  if constexpr (Op == 2) return x * y;
  return x / y;
}

template <int Op>
void BinaryLoop(const float* a, const float* b, float* out, const std::vector<int64_t>& sh, const std::vector<int64_t>& as,
                const std::vector<int64_t>& bs) {
  const int64_t r = static_cast<int64_t>(sh.size());
  const int64_t inner = sh[r - 1], ai = as[r - 1], bi = bs[r - 1];
  int64_t outer = 1;
  for (int64_t d = 0; d + 1 < r; ++d) outer *= sh[d];
  Split(outer, inner, [&](int64_t o0, int64_t o1) {
    for (int64_t k = o0; k < o1; ++k) {
      int64_t ao = 0, bo = 0, rem = k;
      for (int64_t d = r - 2; d >= 0; --d) {
        const int64_t i = rem % sh[d];
        rem /= sh[d];
        ao += i * as[d];
        bo += i * bs[d];
      }
      const float* x = a + ao;
      const float* y = b + bo;
      float* z = out + k * inner;
      if (ai == 1 && bi == 1) {
        for (int64_t j = 0; j < inner; ++j) z[j] = Apply<Op>(x[j], y[j]);
      } else if (ai == 1 && bi == 0) {
        const float c = y[0];
        for (int64_t j = 0; j < inner; ++j) z[j] = Apply<Op>(x[j], c);
      } else if (ai == 0 && bi == 1) {
        const float c = x[0];
        for (int64_t j = 0; j < inner; ++j) z[j] = Apply<Op>(c, y[j]);
      } else {
        for (int64_t j = 0; j < inner; ++j) z[j] = Apply<Op>(x[j * ai], y[j * bi]);
      }
    }
  });
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Fail(env, "layout must be an Int32Array");
  }
  const size_t len = info[2].As<Napi::Int32Array>().ElementLength();
  const int64_t rank = len > 0 ? info[2].As<Napi::Int32Array>()[0] : 0;
  if (rank < 1 || rank > 8 || len != static_cast<size_t>(3 * rank + 1)) Fail(env, "layout: rank must be 1 to 8, with 3·rank + 1 entries");
  if (!info[3].IsNumber()) Fail(env, "op must be a number");
  const int op = info[3].As<Napi::Number>().Int32Value();
  if (op < 0 || op > 3) Fail(env, "op must be 0 (add), 1 (subtract), 2 (multiply) or 3 (divide)");
  const std::vector<int64_t> l = Ints(env, info[2], "layout", len);
  std::vector<int64_t> shape(l.begin() + 1, l.begin() + 1 + rank);
  std::vector<int64_t> as(l.begin() + 1 + rank, l.begin() + 1 + 2 * rank);
  std::vector<int64_t> bs(l.begin() + 1 + 2 * rank, l.begin() + 1 + 3 * rank);
  int64_t aLast = 0, bLast = 0, total = 1;
  for (int64_t d = 0; d < rank; ++d) {
    if (shape[d] < 1 || as[d] < 0 || bs[d] < 0) Fail(env, "layout: sizes must be positive and strides non-negative");
    aLast += (shape[d] - 1) * as[d];
    bLast += (shape[d] - 1) * bs[d];
    total = CheckedProduct(env, {total, shape[d]}, "the result");
  }
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
      !info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Fail(env, "a and b must be Float32Arrays");
  }
  Napi::Float32Array a = info[0].As<Napi::Float32Array>();
  Napi::Float32Array b = info[1].As<Napi::Float32Array>();
  if (aLast >= static_cast<int64_t>(a.ElementLength()) || bLast >= static_cast<int64_t>(b.ElementLength())) {
    Fail(env, "layout reaches outside a or b");
  }
  // Merge neighbouring dimensions that are contiguous (or broadcast) in both inputs.
  const MergedLayout merged = MergeContiguous(shape, as, bs);
  const std::vector<int64_t>&sh = merged.shape, &sa = merged.a, &sb = merged.b;
  Napi::Float32Array out = NewFloats(env, total);
  switch (op) {
    case 0: BinaryLoop<0>(a.Data(), b.Data(), out.Data(), sh, sa, sb); break;
    case 1: BinaryLoop<1>(a.Data(), b.Data(), out.Data(), sh, sa, sb); break;
    case 2: BinaryLoop<2>(a.Data(), b.Data(), out.Data(), sh, sa, sb); break;
    default: BinaryLoop<3>(a.Data(), b.Data(), out.Data(), sh, sa, sb); break;
  }
  return out;
}

// reduce(x, layout, mean) → the sum (or mean) of x over the flagged dimensions, the kept ones in their order.
// layout = [rank, shape…, flags…] (flag 1: reduced). Read in x's own order, with no transpose first: a run of kept
// innermost elements is added into the output as a vector, a reduced innermost run into one double. Sums are in
// double.
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Fail(env, "layout must be an Int32Array");
  }
  const size_t len = info[1].As<Napi::Int32Array>().ElementLength();
  const int64_t rank = len > 0 ? info[1].As<Napi::Int32Array>()[0] : 0;
  if (rank < 1 || rank > 8 || len != static_cast<size_t>(2 * rank + 1)) Fail(env, "layout: rank must be 1 to 8, with 2·rank + 1 entries");
  if (!info[2].IsBoolean()) Fail(env, "mean must be a boolean");
  const bool mean = info[2].As<Napi::Boolean>().Value();
  const std::vector<int64_t> l = Ints(env, info[1], "layout", len);
  int64_t total = 1, kept = 1;
  for (int64_t d = 0; d < rank; ++d) {
    if (l[1 + d] < 1 || (l[1 + rank + d] != 0 && l[1 + rank + d] != 1)) Fail(env, "layout: sizes must be positive and flags 0 or 1");
    total = CheckedProduct(env, {total, l[1 + d]}, "x");
    if (!l[1 + rank + d]) kept *= l[1 + d];
  }
  Napi::Float32Array x = Floats(env, info[0], "x", total);
  // Neighbouring dimensions that are both kept or both reduced act as one.
  std::vector<int64_t> sh, red;
  for (int64_t d = 0; d < rank; ++d) {
    const int64_t n = l[1 + d], r = l[1 + rank + d];
    if (n == 1) continue;
    if (!red.empty() && red.back() == r) {
      sh.back() *= n;
    } else {
      sh.push_back(n);
      red.push_back(r);
    }
  }
  if (sh.empty()) {
    sh.push_back(1);
    red.push_back(0);
  }
  const int64_t r = static_cast<int64_t>(sh.size());
  // Output strides of the merged dimensions (0 for a reduced one).
  std::vector<int64_t> os(r);
  for (int64_t d = r - 1, acc = 1; d >= 0; --d) {
    os[d] = red[d] ? 0 : acc;
    if (!red[d]) acc *= sh[d];
  }
  const int64_t inner = sh[r - 1];
  const bool innerReduced = red[r - 1] != 0;
  const int64_t outer = total / inner;
  const float* px = x.Data();
  // Rows [o0, o1) of the input added into acc (kept elements of the output, in double).
  const auto accumulate = [&](int64_t o0, int64_t o1, double* acc) {
    for (int64_t k = o0; k < o1; ++k) {
      int64_t off = 0, rem = k;
      for (int64_t d = r - 2; d >= 0; --d) {
        off += (rem % sh[d]) * os[d];
        rem /= sh[d];
      }
      const float* row = px + k * inner;
      if (innerReduced) {
        double s = 0;
        for (int64_t j = 0; j < inner; ++j) s += row[j];
        acc[off] += s;
      } else {
        double* a = acc + off;
        for (int64_t j = 0; j < inner; ++j) a[j] += row[j];
      }
    }
  };
  std::vector<double> acc(static_cast<size_t>(kept), 0.0);
  if (outer >= 2 && total >= kParallelMinFloats) {
    // Two threads over the outermost rows: each into its own accumulator when the outermost dimension is reduced
    // (both would write the same outputs), otherwise into disjoint parts of one.
    const int64_t mid = outer / 2;
    if (red[0] && r > 1) {
      std::vector<double> other(static_cast<size_t>(kept), 0.0);
      std::thread t([&] { accumulate(mid, outer, other.data()); });
      accumulate(0, mid, acc.data());
      t.join();
      for (int64_t i = 0; i < kept; ++i) acc[i] += other[i];
    } else {
      const int64_t rowsPerOuter = outer / sh[0];
      const int64_t split = (sh[0] / 2) * rowsPerOuter;
      if (r > 1 && sh[0] >= 2 && !red[0]) {
        std::thread t([&] { accumulate(split, outer, acc.data()); });
        accumulate(0, split, acc.data());
        t.join();
      } else {
        accumulate(0, outer, acc.data());
      }
    }
  } else {
    accumulate(0, outer, acc.data());
  }
  Napi::Float32Array out = NewFloats(env, kept);
  const double scale = mean ? static_cast<double>(kept) / static_cast<double>(total) : 1.0;
  float* po = out.Data();
  for (int64_t i = 0; i < kept; ++i) po[i] = static_cast<float>(acc[i] * scale);
  return out;
}

// unary(x, op) → y element-wise: 0 exp, 1 erf, 2 negate, 3 square, 4 relu (x < 0 ? 0 : x), 5 step (x > 0 ? 1 :
// alpha, NaN kept), as tfjs defines them.
Napi::Value Unary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) Fail(env, "x must be a Float32Array");
  if (!info[1].IsNumber() || !info[2].IsNumber()) Fail(env, "op and alpha must be numbers");
  const int op = info[1].As<Napi::Number>().Int32Value();
  if (op < 0 || op > 5) Fail(env, "op must be 0 to 5");
  const float alpha = info[2].As<Napi::Number>().FloatValue();
  Napi::Float32Array x = info[0].As<Napi::Float32Array>();
  const int64_t n = static_cast<int64_t>(x.ElementLength());
  Napi::Float32Array y = NewFloats(env, n);
  const float* a = x.Data();
  float* b = y.Data();
  Split(n, 1, [&](int64_t i0, int64_t i1) {
    switch (op) {
      case 0: for (int64_t i = i0; i < i1; ++i) b[i] = std::exp(a[i]); break;
      case 1: for (int64_t i = i0; i < i1; ++i) b[i] = std::erf(a[i]); break;
      case 2: for (int64_t i = i0; i < i1; ++i) b[i] = -a[i]; break;
      case 3: for (int64_t i = i0; i < i1; ++i) b[i] = a[i] * a[i]; break;
      case 4: for (int64_t i = i0; i < i1; ++i) b[i] = a[i] < 0 ? 0.0f : a[i]; break;
      default: for (int64_t i = i0; i < i1; ++i) b[i] = std::isnan(a[i]) ? a[i] : (a[i] > 0 ? 1.0f : alpha); break;
    }
  });
  return y;
}

// e^x for x ≤ 0 in plain arithmetic the compiler vectorises (libm's expf and erff are scalar calls): x = n·ln2 + r
// with |r| ≤ ln2/2, e^r by its Taylor series to r⁶ (truncation below 1.2e-7 relative), 2^n put into the exponent
// bits. Inputs under −87 give e^−87 rather than a subnormal.
inline float ExpNonPositive(float x) {
  x = std::max(x, -87.0f);
  // Round to nearest by the 1.5·2^23 trick (SSE2 has no vector round).
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693145751953125f) - n * 1.42860677e-6f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// softmax(x, cols) → y: each row of `cols` entries exp(x − max) / Σ, in float32 with a double sum.
Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) Fail(env, "x must be a Float32Array");
  if (!info[1].IsNumber()) Fail(env, "cols must be a number");
  Napi::Float32Array x = info[0].As<Napi::Float32Array>();
  const int64_t cols = info[1].As<Napi::Number>().Int64Value();
  const int64_t n = static_cast<int64_t>(x.ElementLength());
  if (cols < 1 || n % cols != 0) Fail(env, "softmax: cols must be positive and divide the length");
  Napi::Float32Array y = NewFloats(env, n);
  const float* a = x.Data();
  float* b = y.Data();
  Split(n / cols, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = a + r * cols;
      float* out = b + r * cols;
      float top = row[0];
      for (int64_t j = 1; j < cols; ++j) top = std::max(top, row[j]);
      for (int64_t j = 0; j < cols; ++j) out[j] = ExpNonPositive(row[j] - top);
      double sum = 0;
      for (int64_t j = 0; j < cols; ++j) sum += out[j];
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < cols; ++j) out[j] *= inv;
    }
  });
  return y;
}

// Row count of a rows × cols argument list entry, checked: `rows` must be a positive integer dividing x's length.
int64_t RowsOf(Napi::Env env, const Napi::Value& v, int64_t n, const char* what) {
  if (!v.IsNumber()) Fail(env, std::string(what) + ": cols must be a number");
  const int64_t cols = v.As<Napi::Number>().Int64Value();
  if (n == 0) Fail(env, std::string(what) + ": x is empty");
  if (cols < 1 || n % cols != 0) Fail(env, std::string(what) + ": cols must be positive and divide the length");
  return n / cols;
}

Napi::Float32Array AnyFloats(Napi::Env env, const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    Fail(env, std::string(name) + " must be a Float32Array");
  }
  return v.As<Napi::Float32Array>();
}

// Per-thread double accumulators of `width` entries, added into out (as float) once both threads are done.
struct ColumnSums {
  std::vector<double> a, b;
  explicit ColumnSums(int64_t width) : a(static_cast<size_t>(width), 0.0), b(static_cast<size_t>(width), 0.0) {}
  double* For(int64_t r0) { return r0 == 0 ? a.data() : b.data(); }
  void Into(float* out) const {
    for (size_t i = 0; i < a.size(); ++i) out[i] = static_cast<float>(a[i] + b[i]);
  }
};

// layerNorm(x, gamma, beta, cols, eps) → [y, mean, rstd]: each row of `cols` entries normalised to zero mean and
// unit variance (the biased variance, as ONNX and torch define it), then scaled by gamma and shifted by beta. mean
// and rstd = 1/√(var + eps) per row are what the gradient needs.
Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array x = AnyFloats(env, info[0], "x");
  const int64_t n = static_cast<int64_t>(x.ElementLength());
  const int64_t rows = RowsOf(env, info[3], n, "layerNorm");
  const int64_t cols = n / rows;
  Napi::Float32Array gamma = Floats(env, info[1], "gamma", cols);
  Napi::Float32Array beta = Floats(env, info[2], "beta", cols);
  if (!info[4].IsNumber()) Fail(env, "layerNorm: eps must be a number");
  const double eps = info[4].As<Napi::Number>().DoubleValue();
  Napi::Float32Array y = NewFloats(env, n);
  Napi::Float32Array mean = NewFloats(env, rows);
  Napi::Float32Array rstd = NewFloats(env, rows);
  const float *px = x.Data(), *pg = gamma.Data(), *pb = beta.Data();
  float *py = y.Data(), *pm = mean.Data(), *pr = rstd.Data();
  Split(rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = px + r * cols;
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) s += row[j];
      const double mu = s / static_cast<double>(cols);
      double v = 0;
      for (int64_t j = 0; j < cols; ++j) v += (row[j] - mu) * (row[j] - mu);
      const double inv = 1.0 / std::sqrt(v / static_cast<double>(cols) + eps);
      pm[r] = static_cast<float>(mu);
      pr[r] = static_cast<float>(inv);
      const float m = static_cast<float>(mu), k = static_cast<float>(inv);
      float* out = py + r * cols;
      for (int64_t j = 0; j < cols; ++j) out[j] = (row[j] - m) * k * pg[j] + pb[j];
    }
  });
  Napi::Array result = Napi::Array::New(env, 3);
  result.Set(uint32_t{0}, y);
  result.Set(uint32_t{1}, mean);
  result.Set(uint32_t{2}, rstd);
  return result;
}

// layerNormGrad(dy, x, gamma, mean, rstd, cols) → [dx, dgamma, dbeta]. With x̂ = (x − mean)·rstd and g = dy·gamma:
// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) per row; dgamma = Σ dy·x̂ and dbeta = Σ dy over the rows.
Napi::Value LayerNormGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array x = AnyFloats(env, info[1], "x");
  const int64_t n = static_cast<int64_t>(x.ElementLength());
  const int64_t rows = RowsOf(env, info[5], n, "layerNormGrad");
  const int64_t cols = n / rows;
  Napi::Float32Array dy = Floats(env, info[0], "dy", n);
  Napi::Float32Array gamma = Floats(env, info[2], "gamma", cols);
  Napi::Float32Array mean = Floats(env, info[3], "mean", rows);
  Napi::Float32Array rstd = Floats(env, info[4], "rstd", rows);
  Napi::Float32Array dx = NewFloats(env, n);
  Napi::Float32Array dgamma = NewFloats(env, cols);
  Napi::Float32Array dbeta = NewFloats(env, cols);
  const float *pdy = dy.Data(), *px = x.Data(), *pg = gamma.Data(), *pm = mean.Data(), *pr = rstd.Data();
  float* pdx = dx.Data();
  ColumnSums sg(cols), sb(cols);
  Split(rows, cols, [&](int64_t r0, int64_t r1) {
    double* ag = sg.For(r0);
    double* ab = sb.For(r0);
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = px + r * cols;
      const float* dr = pdy + r * cols;
      const float m = pm[r], k = pr[r];
      double sumG = 0, sumGX = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const float xh = (xr[j] - m) * k;
        const float g = dr[j] * pg[j];
        sumG += g;
        sumGX += g * xh;
        ag[j] += dr[j] * xh;
        ab[j] += dr[j];
      }
      const float meanG = static_cast<float>(sumG / static_cast<double>(cols));
      const float meanGX = static_cast<float>(sumGX / static_cast<double>(cols));
      float* out = pdx + r * cols;
      for (int64_t j = 0; j < cols; ++j) out[j] = k * (dr[j] * pg[j] - meanG - (xr[j] - m) * k * meanGX);
    }
  });
  sg.Into(dgamma.Data());
  sb.Into(dbeta.Data());
  Napi::Array result = Napi::Array::New(env, 3);
  result.Set(uint32_t{0}, dx);
  result.Set(uint32_t{1}, dgamma);
  result.Set(uint32_t{2}, dbeta);
  return result;
}

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// Φ(−|x|) = ½·erfc(|x|/√2) from Abramowitz & Stegun 7.1.26 (absolute error in erf below 1.5e-7), and the factor
// e^(−x²/2) that it and φ(x) share. Written without cancellation: Φ(x) is then 1 − this for x ≥ 0, this for x < 0.
inline float LowerTail(float x, float& gauss) {
  const float z = std::fabs(x) * kInvSqrt2;
  const float t = 1.0f / (1.0f + 0.3275911f * z);
  float poly = 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  gauss = ExpNonPositive(-z * z);
  return 0.5f * poly * t * gauss;
}

// gelu(x) → x·Φ(x) = ½x(1 + erf(x/√2)), torch's default (exact) GELU.
Napi::Value Gelu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array x = AnyFloats(env, info[0], "x");
  const int64_t n = static_cast<int64_t>(x.ElementLength());
  Napi::Float32Array y = NewFloats(env, n);
  const float* a = x.Data();
  float* b = y.Data();
  Split(n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float gauss;
      const float q = LowerTail(a[i], gauss);
      b[i] = a[i] * (a[i] >= 0 ? 1.0f - q : q);
    }
  });
  return y;
}

// geluGrad(dy, x) → dy·(Φ(x) + x·φ(x)).
Napi::Value GeluGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array x = AnyFloats(env, info[1], "x");
  const int64_t n = static_cast<int64_t>(x.ElementLength());
  Napi::Float32Array dy = Floats(env, info[0], "dy", n);
  Napi::Float32Array dx = NewFloats(env, n);
  const float *a = x.Data(), *d = dy.Data();
  float* b = dx.Data();
  Split(n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float gauss;
      const float q = LowerTail(a[i], gauss);
      b[i] = d[i] * ((a[i] >= 0 ? 1.0f - q : q) + a[i] * kInvSqrt2Pi * gauss);
    }
  });
  return dx;
}

// reluGrad(dy, y) → dy where y = relu(x) is positive, 0 elsewhere (NaN where y is NaN, as tfjs's dy·step(x) has it).
Napi::Value ReluGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array y = AnyFloats(env, info[1], "y");
  const int64_t n = static_cast<int64_t>(y.ElementLength());
  Napi::Float32Array dy = Floats(env, info[0], "dy", n);
  Napi::Float32Array dx = NewFloats(env, n);
  const float *pd = dy.Data(), *py = y.Data();
  float* px = dx.Data();
  Split(n, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) px[i] = py[i] > 0 ? pd[i] : (py[i] != py[i] ? py[i] : 0.0f);
  });
  return dx;
}

// softmaxGrad(dy, y, cols) → dx = y·(dy − Σ dy·y) per row of `cols` entries, y being the softmax's output.
Napi::Value SoftmaxGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Float32Array y = AnyFloats(env, info[1], "y");
  const int64_t n = static_cast<int64_t>(y.ElementLength());
  const int64_t rows = RowsOf(env, info[2], n, "softmaxGrad");
  const int64_t cols = n / rows;
  Napi::Float32Array dy = Floats(env, info[0], "dy", n);
  Napi::Float32Array dx = NewFloats(env, n);
  const float *pd = dy.Data(), *py = y.Data();
  float* px = dx.Data();
  Split(rows, cols, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* d = pd + r * cols;
      const float* v = py + r * cols;
      double s = 0;
      for (int64_t j = 0; j < cols; ++j) s += d[j] * v[j];
      const float dot = static_cast<float>(s);
      float* out = px + r * cols;
      for (int64_t j = 0; j < cols; ++j) out[j] = v[j] * (d[j] - dot);
    }
  });
  return dx;
}

// alloc(n) → n floats with undefined contents, for kernels that fill their output in JS.
Napi::Value Alloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) Fail(env, "alloc: n must be a number");
  const int64_t n = info[0].As<Napi::Number>().Int64Value();
  if (n < 0 || n > kMaxElements) Fail(env, "alloc: n must be in [0, 2^31)");
  return NewFloats(env, n);
}

// keepFreedMemory(on): while on, malloc serves every block from its heap and keeps freed memory there instead of
// returning large blocks to the kernel. A training step allocates and frees gigabytes of tensors, and on this VM
// class each fresh 4 KiB page costs a fault as dear as computing it. Turned off, the defaults come back and the
// free memory is handed back to the kernel (malloc_trim).
Napi::Value KeepFreedMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBoolean()) Fail(env, "keepFreedMemory: on must be a boolean");
  if (info[0].As<Napi::Boolean>().Value()) {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT32_MAX);
  } else {
    mallopt(M_MMAP_MAX, 65536);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    malloc_trim(0);
  }
  return env.Undefined();
}

// A failed allocation or thread start would otherwise terminate the process.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const std::bad_alloc&) {
    Fail(info.Env(), "out of memory");
  } catch (const std::system_error& e) {
    Fail(info.Env(), std::string("could not start a thread: ") + e.what());
  }
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports, void (*useThreads)(int)) {
  g_useThreads = useThreads;
  exports.Set("tfConv2d", Napi::Function::New(env, Guarded<Conv2d>, "tfConv2d"));
  exports.Set("tfConv2dBackpropInput", Napi::Function::New(env, Guarded<Conv2dBackpropInput>, "tfConv2dBackpropInput"));
  exports.Set("tfConv2dBackpropFilter", Napi::Function::New(env, Guarded<Conv2dBackpropFilter>, "tfConv2dBackpropFilter"));
  exports.Set("tfConv2dNchw", Napi::Function::New(env, Guarded<Conv2dNchw>, "tfConv2dNchw"));
  exports.Set("tfConv2dNchwBackpropInput", Napi::Function::New(env, Guarded<Conv2dNchwBackpropInput>, "tfConv2dNchwBackpropInput"));
  exports.Set("tfConv2dNchwBackpropFilter", Napi::Function::New(env, Guarded<Conv2dNchwBackpropFilter>, "tfConv2dNchwBackpropFilter"));
  exports.Set("tfBatchMatMul", Napi::Function::New(env, Guarded<BatchMatMul>, "tfBatchMatMul"));
  exports.Set("tfBinary", Napi::Function::New(env, Guarded<Binary>, "tfBinary"));
  exports.Set("tfReduce", Napi::Function::New(env, Guarded<Reduce>, "tfReduce"));
  exports.Set("tfUnary", Napi::Function::New(env, Guarded<Unary>, "tfUnary"));
  exports.Set("tfSoftmax", Napi::Function::New(env, Guarded<Softmax>, "tfSoftmax"));
  exports.Set("tfLayerNorm", Napi::Function::New(env, Guarded<LayerNorm>, "tfLayerNorm"));
  exports.Set("tfLayerNormGrad", Napi::Function::New(env, Guarded<LayerNormGrad>, "tfLayerNormGrad"));
  exports.Set("tfGelu", Napi::Function::New(env, Guarded<Gelu>, "tfGelu"));
  exports.Set("tfGeluGrad", Napi::Function::New(env, Guarded<GeluGrad>, "tfGeluGrad"));
  exports.Set("tfReluGrad", Napi::Function::New(env, Guarded<ReluGrad>, "tfReluGrad"));
  exports.Set("tfSoftmaxGrad", Napi::Function::New(env, Guarded<SoftmaxGrad>, "tfSoftmaxGrad"));
  exports.Set("tfAlloc", Napi::Function::New(env, Guarded<Alloc>, "tfAlloc"));
  exports.Set("tfKeepFreedMemory", Napi::Function::New(env, Guarded<KeepFreedMemory>, "tfKeepFreedMemory"));
  exports.Set("tfStridedCopy", Napi::Function::New(env, Guarded<StridedCopy>, "tfStridedCopy"));
}

}  // namespace tfkernels
