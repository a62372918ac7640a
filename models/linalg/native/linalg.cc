// Dense float64 linear algebra over OpenBLAS (CBLAS) and LAPACKE.
//
// Every entry point validates shapes, values and options before touching
// BLAS/LAPACK, so their xerbla handlers are never reached and bad input
// surfaces as a JS Error carrying a `code` property instead of a crash.

#include <napi.h>

#include "probeKernels.h"
#include "spectralKernels.h"
#include "tfKernels.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <climits>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

constexpr const char* kNonFinite = "NON_FINITE";
constexpr const char* kSizeMismatch = "SIZE_MISMATCH";
constexpr const char* kNotPositiveDefinite = "NOT_POSITIVE_DEFINITE";
constexpr const char* kSingular = "SINGULAR";
constexpr const char* kLapackFailed = "LAPACK_FAILED";
constexpr const char* kBadArgument = "BAD_ARGUMENT";

// Relative tolerance (against the largest |entry|) for treating a matrix as symmetric.
// Loose enough for XᵀX accumulated by gemm in a different order per triangle.
constexpr double kSymmetryTol = 1e-8;

[[noreturn]] void Fail(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Value().Set("code", Napi::String::New(env, code));
  throw err;
}

std::string Shape(int rows, int cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

struct MatArg {
  std::string name;
  Napi::Object obj;
  Napi::Value dataValue;
  int rows = 0;
  int cols = 0;
  double* data = nullptr;
  size_t size() const { return static_cast<size_t>(rows) * static_cast<size_t>(cols); }
};

int ReadDim(Napi::Env env, const Napi::Object& o, const char* key, const std::string& name) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) Fail(env, kBadArgument, name + "." + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > static_cast<double>(INT_MAX) || std::floor(d) != d) {
    Fail(env, kBadArgument, name + "." + key + " must be a non-negative integer below 2^31");
  }
  return static_cast<int>(d);
}

// Reads only the plain properties. The data pointer is taken later by Resolve(), after
// every property read (which may run user getters) has happened.
MatArg ReadMat(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsObject()) Fail(env, kBadArgument, name + " must be a matrix {rows, cols, data}");
  MatArg m;
  m.name = name;
  m.obj = v.As<Napi::Object>();
  m.rows = ReadDim(env, m.obj, "rows", name);
  m.cols = ReadDim(env, m.obj, "cols", name);
  m.dataValue = m.obj.Get("data");
  return m;
}

double* Float64Data(Napi::Env env, const Napi::Value& v, size_t expected, const std::string& name,
                    const std::string& expectedDesc) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    Fail(env, kBadArgument, name + " must be a Float64Array");
  }
  Napi::Float64Array arr = v.As<Napi::Float64Array>();
  if (arr.ElementLength() != expected) {
    Fail(env, kSizeMismatch,
         name + " has " + std::to_string(arr.ElementLength()) + " elements, expected " + expectedDesc);
  }
  return expected == 0 ? nullptr : arr.Data();
}

void Resolve(Napi::Env env, MatArg& m) {
  m.data = Float64Data(env, m.dataValue, m.size(), m.name + ".data",
                       std::to_string(m.size()) + " (" + Shape(m.rows, m.cols) + ")");
}

size_t FirstNonFinite(const double* p, size_t n) {
  constexpr size_t kBlock = 512;
  for (size_t start = 0; start < n; start += kBlock) {
    size_t end = std::min(n, start + kBlock);
    int bad = 0;
    for (size_t i = start; i < end; ++i) bad |= !(std::fabs(p[i]) <= DBL_MAX);
    if (bad) {
      for (size_t i = start; i < end; ++i) {
        if (!(std::fabs(p[i]) <= DBL_MAX)) return i;
      }
    }
  }
  return n;
}

std::string DescribeBad(double v) { return std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity"); }

void CheckFinite(Napi::Env env, const MatArg& m) {
  size_t n = m.size();
  size_t i = FirstNonFinite(m.data, n);
  if (i < n) {
    size_t cols = static_cast<size_t>(m.cols);
    Fail(env, kNonFinite,
         m.name + " contains " + DescribeBad(m.data[i]) + " at (" + std::to_string(i / cols) + ", " +
             std::to_string(i % cols) + ")");
  }
}

void CheckFiniteVec(Napi::Env env, const double* p, size_t n, const std::string& name) {
  size_t i = FirstNonFinite(p, n);
  if (i < n) Fail(env, kNonFinite, name + " contains " + DescribeBad(p[i]) + " at " + std::to_string(i));
}

void CheckSquare(Napi::Env env, const MatArg& m) {
  if (m.rows != m.cols) Fail(env, kSizeMismatch, m.name + " must be square, got " + Shape(m.rows, m.cols));
}

void CheckSymmetric(Napi::Env env, const MatArg& m) {
  const size_t n = static_cast<size_t>(m.rows);
  const double* a = m.data;
  double maxAbs = 0;
  for (size_t i = 0; i < n * n; ++i) maxAbs = std::max(maxAbs, std::fabs(a[i]));
  const double tol = kSymmetryTol * maxAbs;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (std::fabs(a[i * n + j] - a[j * n + i]) > tol) {
        Fail(env, kBadArgument,
             m.name + " is not symmetric: (" + std::to_string(i) + ", " + std::to_string(j) +
                 ") differs from its mirror");
      }
    }
  }
}

bool ReadBool(Napi::Env env, const Napi::Value& v, const char* name) {
  if (v.IsUndefined() || v.IsNull()) return false;
  if (!v.IsBoolean()) Fail(env, kBadArgument, std::string(name) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

double ReadScalar(Napi::Env env, const Napi::Value& v, const char* name, double fallback) {
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) Fail(env, kBadArgument, std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) Fail(env, kNonFinite, std::string(name) + " must be finite");
  return d;
}

// Eigenvalue positions: a Float64Array of integers in [0, n), without repeats unless allowed.
std::vector<int> ReadIndices(Napi::Env env, const Napi::Value& v, int n, bool distinct = true) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    Fail(env, kBadArgument, "indices must be a Float64Array");
  }
  Napi::Float64Array arr = v.As<Napi::Float64Array>();
  std::vector<int> out(arr.ElementLength());
  for (size_t j = 0; j < out.size(); ++j) {
    const double x = arr[j];
    if (!(x >= 0) || !(x < n) || std::floor(x) != x) {
      Fail(env, kBadArgument, "indices must be integers in [0, " + std::to_string(n) + ")");
    }
    out[j] = static_cast<int>(x);
    for (size_t i = 0; distinct && i < j; ++i) {
      if (out[i] == out[j]) Fail(env, kBadArgument, "indices must not repeat");
    }
  }
  return out;
}

// A step cap: an integer in [0, 1e7], so that the curves it sizes stay allocatable.
int ReadStepCap(Napi::Env env, const Napi::Value& v) {
  const double cap = ReadScalar(env, v, "cap", 0);
  if (!(cap >= 0) || cap > 1e7 || std::floor(cap) != cap) Fail(env, kBadArgument, "cap must be an integer in [0, 1e7]");
  return static_cast<int>(cap);
}

bool IsAbsent(const Napi::Value& v) { return v.IsUndefined() || v.IsNull(); }

bool Overlaps(const MatArg& a, const MatArg& b) {
  if (a.size() == 0 || b.size() == 0) return false;
  auto a0 = reinterpret_cast<uintptr_t>(a.data);
  auto b0 = reinterpret_cast<uintptr_t>(b.data);
  auto a1 = a0 + a.size() * sizeof(double);
  auto b1 = b0 + b.size() * sizeof(double);
  return a0 < b1 && b0 < a1;
}

// Outputs are allocated through the Float64Array constructor rather than napi_create_arraybuffer:
// an impossible size then throws a RangeError instead of V8 aborting the process.
Napi::Float64Array NewFloat64(Napi::Env env, size_t length) {
  Napi::FunctionReference* ctor = env.GetInstanceData<Napi::FunctionReference>();
  try {
    return ctor->New({Napi::Number::New(env, static_cast<double>(length))}).As<Napi::Float64Array>();
  } catch (const Napi::Error& e) {
    Fail(env, kBadArgument, "cannot allocate a result of " + std::to_string(length) + " elements: " + e.Message());
  }
}

struct OutMat {
  Napi::Object obj;
  Napi::Float64Array arr;
};

OutMat NewMat(Napi::Env env, int rows, int cols) {
  OutMat out;
  out.arr = NewFloat64(env, static_cast<size_t>(rows) * static_cast<size_t>(cols));
  out.obj = Napi::Object::New(env);
  out.obj.Set("rows", Napi::Number::New(env, rows));
  out.obj.Set("cols", Napi::Number::New(env, cols));
  out.obj.Set("data", out.arr);
  return out;
}

double* DataOf(Napi::Float64Array& arr) { return arr.ElementLength() == 0 ? nullptr : arr.Data(); }

void LapackFailure(Napi::Env env, const char* routine, lapack_int info) {
  if (info == LAPACK_WORK_MEMORY_ERROR || info == LAPACK_TRANSPOSE_MEMORY_ERROR) {
    Fail(env, kLapackFailed, std::string(routine) + ": out of memory");
  }
  Fail(env, kLapackFailed, std::string(routine) + " failed with info=" + std::to_string(info));
}

// OpenBLAS threads. dsyevr's tridiagonal reduction is memory-bound level-2 BLAS; on a few cores OpenBLAS threads
// only add synchronisation to it (measured: a 79×79 solve takes 1.2 ms on 2 threads, 0.17 ms on 1; 784×784 44 ms
// vs 26 ms). Small factorizations, solves and products suffer the same way (a 128×128 dgesv: 8 ms on 2 threads,
// under 1 ms on 1). openblas_set_num_threads itself costs about 0.2 ms, more than a small call, so the count is
// changed only when a call needs a different one and is left there afterwards.
int g_maxThreads = 0;
int g_currentThreads = 0;

void UseThreads(int n) {
  if (g_maxThreads == 0) g_maxThreads = g_currentThreads = openblas_get_num_threads();
  const int want = std::max(1, std::min(n, g_maxThreads));
  if (want != g_currentThreads) {
    openblas_set_num_threads(want);
    g_currentThreads = want;
  }
}

// Single-threaded when `active` (a small problem), all threads otherwise.
class SingleThreadScope {
 public:
  explicit SingleThreadScope(bool active = true) { UseThreads(active ? 1 : INT32_MAX); }
};

// Below this many multiply-adds a product runs on one thread (about 160³).
constexpr double kSmallProduct = 4.0e6;

// gemm(A, B, transA, transB, alpha, beta, out?) -> out or a new matrix
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg A = ReadMat(env, info[0], "A");
  MatArg B = ReadMat(env, info[1], "B");
  const bool ta = ReadBool(env, info[2], "transA");
  const bool tb = ReadBool(env, info[3], "transB");
  const double alpha = ReadScalar(env, info[4], "alpha", 1.0);
  const double beta = ReadScalar(env, info[5], "beta", 0.0);
  const bool hasOut = !IsAbsent(info[6]);
  MatArg C;
  if (hasOut) C = ReadMat(env, info[6], "out");
  Resolve(env, A);
  Resolve(env, B);
  if (hasOut) Resolve(env, C);

  const int m = ta ? A.cols : A.rows;
  const int k = ta ? A.rows : A.cols;
  const int kb = tb ? B.cols : B.rows;
  const int n = tb ? B.rows : B.cols;
  if (k != kb) {
    Fail(env, kSizeMismatch, "gemm: op(A) is " + Shape(m, k) + " but op(B) is " + Shape(kb, n));
  }
  if (hasOut && (C.rows != m || C.cols != n)) {
    Fail(env, kSizeMismatch, "gemm: out is " + Shape(C.rows, C.cols) + ", expected " + Shape(m, n));
  }
  if (!hasOut && beta != 0) Fail(env, kBadArgument, "gemm: beta needs an out matrix to accumulate into");
  CheckFinite(env, A);
  CheckFinite(env, B);
  if (hasOut) {
    if (Overlaps(C, A) || Overlaps(C, B)) Fail(env, kBadArgument, "gemm: out must not share memory with A or B");
    if (beta != 0) CheckFinite(env, C);
  }

  Napi::Object result;
  double* c = nullptr;
  if (hasOut) {
    result = C.obj;
    c = C.data;
  } else {
    OutMat o = NewMat(env, m, n);
    result = o.obj;
    c = DataOf(o.arr);
  }
  if (m == 0 || n == 0) return result;
  if (k == 0) {
    const size_t size = static_cast<size_t>(m) * static_cast<size_t>(n);
    for (size_t i = 0; i < size; ++i) c[i] = beta == 0 ? 0.0 : beta * c[i];
    return result;
  }
  SingleThreadScope threads(static_cast<double>(m) * n * k < kSmallProduct);
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha,
              A.data, A.cols, B.data, B.cols, beta, c, n);
  return result;
}

// syrk(X, alpha, beta, out?) -> D×D alpha·XᵀX + beta·out, full symmetric
Napi::Value Syrk(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg X = ReadMat(env, info[0], "X");
  const double alpha = ReadScalar(env, info[1], "alpha", 1.0);
  const double beta = ReadScalar(env, info[2], "beta", 0.0);
  const bool hasOut = !IsAbsent(info[3]);
  MatArg C;
  if (hasOut) C = ReadMat(env, info[3], "out");
  Resolve(env, X);
  if (hasOut) Resolve(env, C);

  const int d = X.cols;
  const int nrows = X.rows;
  if (hasOut && (C.rows != d || C.cols != d)) {
    Fail(env, kSizeMismatch, "syrk: out is " + Shape(C.rows, C.cols) + ", expected " + Shape(d, d));
  }
  if (!hasOut && beta != 0) Fail(env, kBadArgument, "syrk: beta needs an out matrix to accumulate into");
  CheckFinite(env, X);
  if (hasOut) {
    if (Overlaps(C, X)) Fail(env, kBadArgument, "syrk: out must not share memory with X");
    if (beta != 0) CheckFinite(env, C);
  }

  Napi::Object result;
  double* c = nullptr;
  if (hasOut) {
    result = C.obj;
    c = C.data;
  } else {
    OutMat o = NewMat(env, d, d);
    result = o.obj;
    c = DataOf(o.arr);
  }
  if (d == 0) return result;

  const size_t D = static_cast<size_t>(d);
  if (nrows == 0) {
    for (size_t i = 0; i < D; ++i) {
      for (size_t j = 0; j <= i; ++j) c[i * D + j] = beta == 0 ? 0.0 : beta * c[i * D + j];
    }
  } else {
    SingleThreadScope threads(static_cast<double>(d) * d * nrows < kSmallProduct);
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, d, nrows, alpha, X.data, d, beta, c, d);
  }
  // Only the lower triangle was updated; mirror it, in tiles to stay cache-friendly.
  constexpr size_t kTile = 64;
  for (size_t ib = 0; ib < D; ib += kTile) {
    for (size_t jb = ib; jb < D; jb += kTile) {
      const size_t iend = std::min(D, ib + kTile);
      const size_t jend = std::min(D, jb + kTile);
      for (size_t i = ib; i < iend; ++i) {
        for (size_t j = std::max(jb, i + 1); j < jend; ++j) c[i * D + j] = c[j * D + i];
      }
    }
  }
  return result;
}

// syevr(S, vectors, lo, hi) -> {values, vectors?}
constexpr int kSmallFactorization = 512;

Napi::Value Syevr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg S = ReadMat(env, info[0], "S");
  const bool wantVectors = IsAbsent(info[1]) ? true : ReadBool(env, info[1], "vectors");
  const bool hasLo = !IsAbsent(info[2]);
  const bool hasHi = !IsAbsent(info[3]);
  Resolve(env, S);
  CheckSquare(env, S);
  const int n = S.rows;
  if (hasLo != hasHi) Fail(env, kBadArgument, "syevr: range needs both lo and hi");
  int lo = 0;
  int hi = n - 1;
  if (hasLo) {
    if (!info[2].IsNumber() || !info[3].IsNumber()) Fail(env, kBadArgument, "syevr: range.lo/hi must be numbers");
    const double l = info[2].As<Napi::Number>().DoubleValue();
    const double h = info[3].As<Napi::Number>().DoubleValue();
    if (!(l >= 0) || !(h >= l) || !(h < n) || std::floor(l) != l || std::floor(h) != h) {
      Fail(env, kBadArgument, "syevr: range must be integers with 0 <= lo <= hi < " + std::to_string(n));
    }
    lo = static_cast<int>(l);
    hi = static_cast<int>(h);
  }
  CheckFinite(env, S);
  CheckSymmetric(env, S);

  const int m = n == 0 ? 0 : hi - lo + 1;
  const size_t N = static_cast<size_t>(n);
  const size_t M = static_cast<size_t>(m);
  Napi::Float64Array values = NewFloat64(env, M);
  Napi::Object result = Napi::Object::New(env);
  result.Set("values", values);
  OutMat vecs;
  if (wantVectors) {
    vecs = NewMat(env, n, m);
    result.Set("vectors", vecs.obj);
  }
  if (n == 0) return result;

  // A symmetric row-major matrix is the same buffer in column-major order, so LAPACK
  // works on the copy directly (its upper triangle = our lower triangle).
  std::vector<double> a(S.data, S.data + N * N);
  std::vector<double> w(N);
  std::vector<double> z(wantVectors ? N * M : 1);
  std::vector<lapack_int> isuppz(2 * N);
  lapack_int found = 0;
  const double abstol = LAPACKE_dlamch('S');
  SingleThreadScope singleThread;
  lapack_int rc = LAPACKE_dsyevr(LAPACK_COL_MAJOR, wantVectors ? 'V' : 'N', hasLo ? 'I' : 'A', 'U', n, a.data(), n,
                                 0.0, 0.0, lo + 1, hi + 1, abstol, &found, w.data(), z.data(),
                                 wantVectors ? n : 1, isuppz.data());
  if (rc != 0) LapackFailure(env, "dsyevr", rc);
  if (found != m) {
    Fail(env, kLapackFailed,
         "dsyevr returned " + std::to_string(found) + " eigenvalues, expected " + std::to_string(m));
  }
  std::copy(w.begin(), w.begin() + m, DataOf(values));
  if (wantVectors) {
    double* v = DataOf(vecs.arr);
    for (size_t j = 0; j < M; ++j) {
      const double* col = z.data() + j * N;
      for (size_t i = 0; i < N; ++i) v[i * M + j] = col[i];
    }
  }
  return result;
}

// syevrMany(Ss, vectors) -> [{values, vectors?}]: the full eigendecomposition of each symmetric S, as syevr gives it,
// up to two at a time on threads of their own. dsyevr gains nothing from a second BLAS thread (its reduction is
// bound by matrix-vector products), so two of them side by side take the time of one.
Napi::Value SyevrMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) Fail(env, kBadArgument, "syevrMany: Ss must be an array of matrices");
  const bool wantVectors = IsAbsent(info[1]) ? true : ReadBool(env, info[1], "vectors");
  Napi::Array list = info[0].As<Napi::Array>();
  const uint32_t count = list.Length();
  std::vector<MatArg> S(count);
  for (uint32_t i = 0; i < count; ++i) S[i] = ReadMat(env, list.Get(i), "Ss[" + std::to_string(i) + "]");
  for (uint32_t i = 0; i < count; ++i) {
    Resolve(env, S[i]);
    CheckSquare(env, S[i]);
    CheckFinite(env, S[i]);
    CheckSymmetric(env, S[i]);
  }
  struct Work {
    std::vector<double> a, w, z;
    lapack_int rc = 0, found = 0;
  };
  std::vector<Work> work(count);
  auto run = [&](uint32_t i) {
    const int n = S[i].rows;
    const size_t N = static_cast<size_t>(n);
    Work& t = work[i];
    if (n == 0) return;
    t.a.assign(S[i].data, S[i].data + N * N);
    t.w.assign(N, 0.0);
    t.z.assign(wantVectors ? N * N : 1, 0.0);
    std::vector<lapack_int> isuppz(2 * N);
    t.rc = LAPACKE_dsyevr(LAPACK_COL_MAJOR, wantVectors ? 'V' : 'N', 'A', 'U', n, t.a.data(), n, 0.0, 0.0, 0, 0,
                          LAPACKE_dlamch('S'), &t.found, t.w.data(), t.z.data(), wantVectors ? n : 1, isuppz.data());
    std::vector<double>().swap(t.a);
  };
  {
    SingleThreadScope singleThread;
    std::thread helper;
    uint32_t next = 0;
    if (count > 1 && probe::UsableCpus() > 1) {
      // The caller takes the even entries, one helper the odd ones.
      try {
        helper = std::thread([&] {
          for (uint32_t i = 1; i < count; i += 2) run(i);
        });
        for (uint32_t i = 0; i < count; i += 2) run(i);
        next = count;
      } catch (const std::system_error&) {
        next = 0;
      }
    }
    if (helper.joinable()) helper.join();
    for (; next < count; ++next) run(next);
  }
  Napi::Array out = Napi::Array::New(env, count);
  for (uint32_t i = 0; i < count; ++i) {
    const int n = S[i].rows;
    const size_t N = static_cast<size_t>(n);
    if (work[i].rc != 0) LapackFailure(env, "dsyevr", work[i].rc);
    if (n > 0 && work[i].found != n) {
      Fail(env, kLapackFailed, "dsyevr returned " + std::to_string(work[i].found) + " eigenvalues, expected " + std::to_string(n));
    }
    Napi::Object result = Napi::Object::New(env);
    Napi::Float64Array values = NewFloat64(env, N);
    if (n > 0) std::copy(work[i].w.begin(), work[i].w.end(), DataOf(values));
    result.Set("values", values);
    if (wantVectors) {
      OutMat vecs = NewMat(env, n, n);
      double* v = DataOf(vecs.arr);
      for (size_t j = 0; j < N; ++j) {
        const double* col = work[i].z.data() + j * N;
        for (size_t r = 0; r < N; ++r) v[r * N + j] = col[r];
      }
      result.Set("vectors", vecs.obj);
    }
    out.Set(i, result);
  }
  return out;
}

// eigenpairsAt(S, indices) -> {values, vectors}: the eigenpairs of symmetric S at the given ascending-order indices
// (any order, no repeats), from one tridiagonal reduction. dsyevr reduces S again for every index range, and for the
// optimizer's two extreme pairs per Hessian per step that reduction is most of the cost: bisection (dstebz) and
// inverse iteration (dstein) on the tridiagonal form are O(n) per pair, the back-transform (dormtr) O(n²).
Napi::Value EigenpairsAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg S = ReadMat(env, info[0], "S");
  Resolve(env, S);
  CheckSquare(env, S);
  const int n = S.rows;
  const std::vector<int> indices = ReadIndices(env, info[1], n);
  CheckFinite(env, S);
  CheckSymmetric(env, S);
  const size_t k = indices.size();
  Napi::Float64Array values = NewFloat64(env, k);
  OutMat vecs = NewMat(env, n, static_cast<int>(k));
  Napi::Object result = Napi::Object::New(env);
  result.Set("values", values);
  result.Set("vectors", vecs.obj);
  if (k == 0) return result;
  SingleThreadScope singleThread;
  const std::string failure = spectral::EigenpairsAt(S.data, n, indices.data(), static_cast<int>(k), DataOf(values),
                                                     DataOf(vecs.arr));
  if (!failure.empty()) Fail(env, kLapackFailed, failure);
  return result;
}

// congruenceExtremes(theta, Ks, lowIndices) -> [{S, values, vectors}]: for each K, S = θᵀKθ (symmetrized) and
// its eigenpairs at the top of the spectrum and at lowIndices[i] (values [max, low], vectors D×2). The Gram
// matrices are independent, so on a multi-core host they run side by side, each on one OpenBLAS thread.
Napi::Value CongruenceExtremes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg theta = ReadMat(env, info[0], "theta");
  if (!info[1].IsArray()) Fail(env, kBadArgument, "Ks must be an array of matrices");
  Napi::Array ks = info[1].As<Napi::Array>();
  const uint32_t count = ks.Length();
  Resolve(env, theta);
  CheckSquare(env, theta);
  CheckFinite(env, theta);
  const int n = theta.rows;
  const std::vector<int> lows = ReadIndices(env, info[2], n, false);
  if (lows.size() != count) Fail(env, kSizeMismatch, "lowIndices must have one entry per K");
  std::vector<MatArg> K(count);
  for (uint32_t i = 0; i < count; ++i) {
    K[i] = ReadMat(env, ks.Get(i), "Ks[" + std::to_string(i) + "]");
    Resolve(env, K[i]);
    if (K[i].rows != n || K[i].cols != n) {
      Fail(env, kSizeMismatch, K[i].name + " must be " + Shape(n, n) + " like theta, got " + Shape(K[i].rows, K[i].cols));
    }
    CheckFinite(env, K[i]);
    CheckSymmetric(env, K[i]);
  }
  Napi::Array out = Napi::Array::New(env, count);
  std::vector<OutMat> S(count), V(count);
  std::vector<Napi::Float64Array> values(count);
  for (uint32_t i = 0; i < count; ++i) {
    S[i] = NewMat(env, n, n);
    V[i] = NewMat(env, n, 2);
    values[i] = NewFloat64(env, 2);
    Napi::Object r = Napi::Object::New(env);
    r.Set("S", S[i].obj);
    r.Set("values", values[i]);
    r.Set("vectors", V[i].obj);
    out.Set(i, r);
  }
  if (n == 0) return out;
  std::vector<spectral::CongruenceTask> tasks(count);
  for (uint32_t i = 0; i < count; ++i) {
    tasks[i] = {K[i].data, lows[i], DataOf(S[i].arr), DataOf(values[i]), DataOf(V[i].arr), {}};
  }
  SingleThreadScope singleThread;
  spectral::RunCongruenceTasks(theta.data, n, tasks);
  for (const auto& t : tasks) {
    if (!t.failure.empty()) Fail(env, kLapackFailed, t.failure);
  }
  return out;
}

// potrf(S) -> lower Cholesky factor L, S = L·Lᵀ
Napi::Value Potrf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg S = ReadMat(env, info[0], "S");
  Resolve(env, S);
  CheckSquare(env, S);
  CheckFinite(env, S);
  CheckSymmetric(env, S);
  const int n = S.rows;
  OutMat out = NewMat(env, n, n);
  if (n == 0) return out.obj;

  const size_t N = static_cast<size_t>(n);
  double* l = DataOf(out.arr);
  std::memcpy(l, S.data, N * N * sizeof(double));
  // Column-major 'U' on this buffer is row-major 'L': U = Lᵀ.
  SingleThreadScope singleThread(n < kSmallFactorization);
  lapack_int rc = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', n, l, n);
  if (rc > 0) {
    Fail(env, kNotPositiveDefinite,
         "potrf: matrix is not positive definite (leading minor of order " + std::to_string(rc) + ")");
  }
  if (rc != 0) LapackFailure(env, "dpotrf", rc);
  for (size_t i = 0; i < N; ++i) {
    for (size_t j = i + 1; j < N; ++j) l[i * N + j] = 0.0;
  }
  return out.obj;
}

// potrs(L, B) -> X with L·Lᵀ·X = B
Napi::Value Potrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg L = ReadMat(env, info[0], "L");
  MatArg B = ReadMat(env, info[1], "B");
  Resolve(env, L);
  Resolve(env, B);
  CheckSquare(env, L);
  const int n = L.rows;
  const int k = B.cols;
  if (B.rows != n) Fail(env, kSizeMismatch, "potrs: L is " + Shape(n, n) + " but B is " + Shape(B.rows, k));
  CheckFinite(env, L);
  CheckFinite(env, B);
  const size_t N = static_cast<size_t>(n);
  for (size_t i = 0; i < N; ++i) {
    if (!(L.data[i * N + i] > 0)) {
      Fail(env, kBadArgument, "potrs: L must have a positive diagonal (as returned by potrf)");
    }
    for (size_t j = i + 1; j < N; ++j) {
      if (L.data[i * N + j] != 0) {
        Fail(env, kBadArgument, "potrs: L must be lower triangular (as returned by potrf)");
      }
    }
  }
  OutMat out = NewMat(env, n, k);
  if (n == 0 || k == 0) return out.obj;
  double* x = DataOf(out.arr);
  std::memcpy(x, B.data, B.size() * sizeof(double));
  SingleThreadScope singleThread(n < kSmallFactorization);
  lapack_int rc = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'L', n, k, L.data, n, x, k);
  if (rc != 0) LapackFailure(env, "dpotrs", rc);
  return out.obj;
}

// gesv(A, B) -> X with A·X = B
Napi::Value Gesv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg A = ReadMat(env, info[0], "A");
  MatArg B = ReadMat(env, info[1], "B");
  Resolve(env, A);
  Resolve(env, B);
  CheckSquare(env, A);
  const int n = A.rows;
  const int k = B.cols;
  if (B.rows != n) Fail(env, kSizeMismatch, "gesv: A is " + Shape(n, n) + " but B is " + Shape(B.rows, k));
  CheckFinite(env, A);
  CheckFinite(env, B);
  OutMat out = NewMat(env, n, k);
  if (n == 0 || k == 0) return out.obj;

  const size_t N = static_cast<size_t>(n);
  std::vector<double> a(A.data, A.data + N * N);
  std::vector<lapack_int> ipiv(N);
  double* x = DataOf(out.arr);
  std::memcpy(x, B.data, B.size() * sizeof(double));
  SingleThreadScope singleThread(n < kSmallFactorization);
  lapack_int rc = LAPACKE_dgesv(LAPACK_ROW_MAJOR, n, k, a.data(), n, ipiv.data(), x, k);
  if (rc > 0) {
    Fail(env, kSingular,
         "gesv: matrix is singular (U(" + std::to_string(rc - 1) + ", " + std::to_string(rc - 1) + ") is exactly zero)");
  }
  if (rc != 0) LapackFailure(env, "dgesv", rc);
  if (FirstNonFinite(x, B.size()) < B.size()) {
    Fail(env, kSingular, "gesv: matrix is numerically singular (solution overflowed)");
  }
  return out.obj;
}

// matvec(A, x, trans) -> op(A)·x
Napi::Value Matvec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg A = ReadMat(env, info[0], "A");
  const bool trans = ReadBool(env, info[2], "trans");
  Resolve(env, A);
  const int inLen = trans ? A.rows : A.cols;
  const int outLen = trans ? A.cols : A.rows;
  const double* x = Float64Data(env, info[1], static_cast<size_t>(inLen), "x",
                                std::to_string(inLen) + " to match A (" + Shape(A.rows, A.cols) +
                                    (trans ? ", transposed)" : ")"));
  CheckFinite(env, A);
  CheckFiniteVec(env, x, static_cast<size_t>(inLen), "x");
  Napi::Float64Array y = NewFloat64(env, static_cast<size_t>(outLen));
  if (A.rows == 0 || A.cols == 0) return y;
  SingleThreadScope threads(static_cast<double>(A.rows) * A.cols < kSmallProduct);
  cblas_dgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, A.rows, A.cols, 1.0, A.data, A.cols, x, 1, 0.0,
              DataOf(y), 1);
  return y;
}

Napi::Value Corename(const Napi::CallbackInfo& info) {
  const char* name = openblas_get_corename();
  return Napi::String::New(info.Env(), name ? name : "");
}

Napi::Value Config(const Napi::CallbackInfo& info) {
  const char* cfg = openblas_get_config();
  return Napi::String::New(info.Env(), cfg ? cfg : "");
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) Fail(env, kBadArgument, "setThreads: n must be a number");
  const double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 1) || d > 4096 || std::floor(d) != d) Fail(env, kBadArgument, "setThreads: n must be an integer in [1, 4096]");
  openblas_set_num_threads(static_cast<int>(d));
  g_maxThreads = g_currentThreads = static_cast<int>(d);
  return env.Undefined();
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  if (g_maxThreads == 0) g_maxThreads = g_currentThreads = openblas_get_num_threads();
  return Napi::Number::New(info.Env(), g_maxThreads);
}


// An Adam simulation running on its own threads while JS goes on; the inputs are copied in.
struct AdamJob {
  std::vector<double> H, B, learningRates;
  probe::AdamProblem problem{};
  double target = 0;
  int cap = 0;
  probe::AdamResult result{};
  probe::AdamControl control;
  std::atomic<bool> done{false};
  std::thread runner;
  bool collected = false;

  void Run() {
    result = probe::AdamQuadratic(problem, learningRates.data(), static_cast<int>(learningRates.size()), target, cap,
                                  &control);
    done.store(true, std::memory_order_release);
  }
  void Wait() {
    if (runner.joinable()) runner.join();
  }
  ~AdamJob() { Wait(); }
};

constexpr napi_type_tag kAdamJobTag = {0x6a1d0c3e5b7f4a21ULL, 0x9e42c7d18f3b6a05ULL};

// adamQuadraticStart(H, B, learningRates, c, fStar, gap, target, cap) -> job: Adam on the quadratic
// f(W) = ½tr(WᵀHW) − tr(BᵀW) + c, several learning rates side by side, to simulate a probing attacker. The loop
// runs up to 1e5 small steps on a thread of its own; adamQuadraticJoin(job) waits for it.
Napi::Value AdamQuadraticStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  MatArg H = ReadMat(env, info[0], "H");
  MatArg B = ReadMat(env, info[1], "B");
  if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    Fail(env, kBadArgument, "learningRates must be a Float64Array");
  }
  Napi::Float64Array lrArr = info[2].As<Napi::Float64Array>();
  const double c = ReadScalar(env, info[3], "c", 0);
  const double fStar = ReadScalar(env, info[4], "fStar", 0);
  const double gap = ReadScalar(env, info[5], "gap", 1);
  const double target = ReadScalar(env, info[6], "target", 0);
  const int cap = ReadStepCap(env, info[7]);
  Resolve(env, H);
  Resolve(env, B);
  CheckSquare(env, H);
  if (B.rows != H.rows) Fail(env, kSizeMismatch, "B must have " + std::to_string(H.rows) + " rows, got " + Shape(B.rows, B.cols));
  CheckFinite(env, H);
  CheckFinite(env, B);
  const size_t G = lrArr.ElementLength();
  if (G == 0) Fail(env, kBadArgument, "learningRates must not be empty");
  CheckFiniteVec(env, lrArr.Data(), G, "learningRates");
  if (!(gap > 0)) Fail(env, kBadArgument, "gap must be positive");

  auto* job = new AdamJob();
  job->H.assign(H.data, H.data + H.size());
  job->B.assign(B.data, B.data + B.size());
  job->learningRates.assign(lrArr.Data(), lrArr.Data() + G);
  job->problem = {job->H.data(), job->B.data(), H.rows, B.cols, c, fStar, gap};
  job->target = target;
  job->cap = cap;
  Napi::External<AdamJob> handle = Napi::External<AdamJob>::New(env, job, [](Napi::Env, AdamJob* j) { delete j; });
  handle.TypeTag(&kAdamJobTag);
  try {
    job->runner = std::thread([job] { job->Run(); });
  } catch (const std::system_error&) {
    job->Run();
  }
  return handle;
}

AdamJob* ReadAdamJob(Napi::Env env, const Napi::Value& v, const char* fn) {
  if (!v.IsExternal() || !v.As<Napi::External<AdamJob>>().CheckTypeTag(&kAdamJobTag)) {
    Fail(env, kBadArgument, std::string(fn) + " needs a job from adamQuadraticStart");
  }
  return v.As<Napi::External<AdamJob>>().Data();
}

// adamQuadraticWait(job, step) -> {scored, done}: blocks until the run has scored `step` or has ended, and says how
// far it got. A caller that needs only an early part of a long run can decide on it while the rest goes on.
Napi::Value AdamQuadraticWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AdamJob* job = ReadAdamJob(env, info[0], "adamQuadraticWait");
  const double step = ReadScalar(env, info[1], "step", 0);
  while (!job->done.load(std::memory_order_acquire) && job->control.scored.load(std::memory_order_acquire) < step) {
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  const bool done = job->done.load(std::memory_order_acquire);
  Napi::Object result = Napi::Object::New(env);
  result.Set("scored", Napi::Number::New(env, job->control.scored.load(std::memory_order_acquire)));
  result.Set("done", Napi::Boolean::New(env, done));
  return result;
}

// adamQuadraticCancel(job): the run stops after the step it is on; join() then returns the curves so far.
Napi::Value AdamQuadraticCancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ReadAdamJob(env, info[0], "adamQuadraticCancel")->control.cancel.store(true, std::memory_order_relaxed);
  return env.Undefined();
}

// adamQuadraticJoin(job) -> {steps, winner, curves}
Napi::Value AdamQuadraticJoin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal() || !info[0].As<Napi::External<AdamJob>>().CheckTypeTag(&kAdamJobTag)) {
    Fail(env, kBadArgument, "adamQuadraticJoin needs a job from adamQuadraticStart");
  }
  AdamJob* job = info[0].As<Napi::External<AdamJob>>().Data();
  if (job->collected) Fail(env, kBadArgument, "this Adam job was already joined");
  job->Wait();
  job->collected = true;
  Napi::Float64Array curves = NewFloat64(env, job->result.curves.size());
  std::copy(job->result.curves.begin(), job->result.curves.end(), DataOf(curves));
  Napi::Object result = Napi::Object::New(env);
  result.Set("steps", Napi::Number::New(env, job->result.steps));
  result.Set("winner", Napi::Number::New(env, job->result.winner));
  result.Set("curves", curves);
  std::vector<double>().swap(job->result.curves);
  return result;
}

// eigenDescent(lambdas, e0, outputs, scale, rule, target, cap) -> {steps, reached, curve}: gradient descent on a
// quadratic in its eigenbasis, with step 1/λ_max (rule "fixed") or exact line search (rule "exact").
Napi::Value EigenDescent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    Fail(env, kBadArgument, "lambdas must be a Float64Array");
  }
  Napi::Float64Array lambdas = info[0].As<Napi::Float64Array>();
  const size_t r = lambdas.ElementLength();
  const double outputsD = ReadScalar(env, info[2], "outputs", 1);
  if (!(outputsD >= 1) || outputsD > 1e6 || std::floor(outputsD) != outputsD) {
    Fail(env, kBadArgument, "outputs must be a positive integer");
  }
  const int C = static_cast<int>(outputsD);
  const double* e0 = Float64Data(env, info[1], r * C, "e0", std::to_string(r * C) + " (lambdas × outputs)");
  const double scale = ReadScalar(env, info[3], "scale", 1);
  if (!info[4].IsString()) Fail(env, kBadArgument, "rule must be \"fixed\" or \"exact\"");
  const std::string ruleName = info[4].As<Napi::String>().Utf8Value();
  if (ruleName != "fixed" && ruleName != "exact") Fail(env, kBadArgument, "rule must be \"fixed\" or \"exact\"");
  const double target = ReadScalar(env, info[5], "target", 0);
  const int cap = ReadStepCap(env, info[6]);
  CheckFiniteVec(env, lambdas.Data(), r, "lambdas");
  CheckFiniteVec(env, e0, r * C, "e0");
  for (size_t i = 0; i < r; ++i) {
    if (!(lambdas[i] > 0)) Fail(env, kBadArgument, "lambdas must be positive");
    if (i > 0 && lambdas[i] < lambdas[i - 1]) Fail(env, kBadArgument, "lambdas must be ascending");
  }
  if (!(scale > 0)) Fail(env, kBadArgument, "scale must be positive");
  const probe::DescentResult d = probe::EigenDescent(
      lambdas.Data(), static_cast<int>(r), e0, C, scale,
      ruleName == "fixed" ? probe::StepRule::kFixedInverseL : probe::StepRule::kExactLineSearch, target, cap);
  Napi::Float64Array curve = NewFloat64(env, d.curve.size());
  std::copy(d.curve.begin(), d.curve.end(), DataOf(curve));
  Napi::Object result = Napi::Object::New(env);
  result.Set("steps", Napi::Number::New(env, d.steps));
  result.Set("reached", Napi::Boolean::New(env, d.reached));
  result.Set("curve", curve);
  return result;
}

// std::bad_alloc from a workspace would otherwise terminate the process.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const std::bad_alloc&) {
    Fail(info.Env(), kBadArgument, "out of memory");
  }
}

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
void Export(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, Guarded<F>, name));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Function float64Ctor = env.Global().Get("Float64Array").As<Napi::Function>();
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(float64Ctor)));
  Export<Gemm>(env, exports, "gemm");
  Export<Syrk>(env, exports, "syrk");
  Export<Syevr>(env, exports, "syevr");
  Export<SyevrMany>(env, exports, "syevrMany");
  Export<EigenpairsAt>(env, exports, "eigenpairsAt");
  Export<CongruenceExtremes>(env, exports, "congruenceExtremes");
  Export<Potrf>(env, exports, "potrf");
  Export<Potrs>(env, exports, "potrs");
  Export<Gesv>(env, exports, "gesv");
  Export<Matvec>(env, exports, "matvec");
  Export<AdamQuadraticStart>(env, exports, "adamQuadraticStart");
  Export<AdamQuadraticJoin>(env, exports, "adamQuadraticJoin");
  Export<AdamQuadraticWait>(env, exports, "adamQuadraticWait");
  Export<AdamQuadraticCancel>(env, exports, "adamQuadraticCancel");
  Export<EigenDescent>(env, exports, "eigenDescent");
  Export<Corename>(env, exports, "corename");
  Export<Config>(env, exports, "config");
  Export<SetThreads>(env, exports, "setThreads");
  Export<GetThreads>(env, exports, "getThreads");
  tfkernels::Register(env, exports, UseThreads);
  return exports;
}

}  // namespace

NODE_API_MODULE(immunize_linalg, Init)
