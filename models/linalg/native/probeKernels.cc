#include "probeKernels.h"

#include <cblas.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace probe {
namespace {

// Eight doubles, one AVX-512 register (two AVX2 or four SSE2 registers where those are all there is). Loads and
// stores go through memcpy, so nothing needs to be aligned.
typedef double v8 __attribute__((vector_size(64)));
constexpr int kLanes = 8;

#define PROBE_INLINE __attribute__((always_inline)) inline

PROBE_INLINE v8 Load(const double* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

PROBE_INLINE void Store(double* p, v8 v) { std::memcpy(p, &v, sizeof v); }

PROBE_INLINE v8 Splat(double s) { return v8{} + s; }

PROBE_INLINE double Sum(v8 v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

int Padded(int n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Flushes subnormal results and operands to zero while in scope. A converging attacker drives error coordinates
// through the subnormal range on their way to zero, and each subnormal operation costs ~100 cycles on x86; at
// magnitudes below 1e-308 the rounding this introduces is far beneath any target (≥ 1e-6 relative).
class FlushSubnormals {
 public:
#if defined(__SSE__)
  FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }
  ~FlushSubnormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};

// ---- Descent in the eigenbasis ----------------------------------------------------------------------------------

// Σ λ^p·e² for p = 1, 2, 3 over n (a multiple of 8) entries.
struct Moments {
  double s1, s2, s3;
};

template <StepRule Rule>
PROBE_INLINE void DescentLoop(const double* lam, const double* lam2, const double* lam3, double* e, int n, double invL,
                              double scale, double target, int cap, std::vector<double>& curve, int& steps,
                              bool& reached) {
  Moments m{0, 0, 0};
  for (int i = 0; i < n; i += kLanes) {
    const v8 e2 = Load(e + i) * Load(e + i);
    m.s2 += Sum(Load(lam2 + i) * e2);
    m.s3 += Sum(Load(lam3 + i) * e2);
  }
  for (int k = 1; k <= cap; ++k) {
    // Exact line search on a quadratic: t = gᵀg / gᵀHg with g = λ·e.
    const double t = Rule == StepRule::kFixedInverseL ? invL : (m.s3 > 0 ? m.s2 / m.s3 : 0.0);
    v8 a1{}, a2{}, a3{};
    const v8 tv = Splat(t);
    const v8 one = Splat(1.0);
    for (int i = 0; i < n; i += kLanes) {
      const v8 l = Load(lam + i);
      const v8 ei = Load(e + i) * (one - tv * l);
      Store(e + i, ei);
      const v8 e2 = ei * ei;
      a1 += l * e2;
      a2 += Load(lam2 + i) * e2;
      a3 += Load(lam3 + i) * e2;
    }
    m = {Sum(a1), Sum(a2), Sum(a3)};
    const double sub = m.s1 * scale;
    curve[static_cast<size_t>(k)] = sub;
    if (target > 0 && sub <= target) {
      steps = k;
      reached = true;
      return;
    }
  }
  steps = cap;
  reached = target <= 0;
}

template <StepRule Rule>
__attribute__((target_clones("avx512f", "avx2", "default"))) void DescentDispatch(
    const double* lam, const double* lam2, const double* lam3, double* e, int n, double invL, double scale,
    double target, int cap, std::vector<double>& curve, int& steps, bool& reached) {
  DescentLoop<Rule>(lam, lam2, lam3, e, n, invL, scale, target, cap, curve, steps, reached);
}

// ---- Adam in the original coordinates ---------------------------------------------------------------------------

// Y[:, c] = H·W[:, c] for C columns of length Dp (zero-padded), rows i0 … i0 + 8R − 1. Ht holds Hᵀ row-major with
// rows padded to Dp, so row j is the j-th column of H and the update Y += Ht[j, :]·w_j is elementwise. The R×C
// partial results stay in registers for the whole sweep over j.
template <int R, int C>
PROBE_INLINE void MatColsBlock(const double* __restrict Ht, int D, int Dp, int i0, const double* __restrict W,
                               double* __restrict Y) {
  v8 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = v8{};
  for (int j = 0; j < D; ++j) {
    const double* row = Ht + static_cast<size_t>(j) * Dp + i0;
    v8 h[R];
    for (int r = 0; r < R; ++r) h[r] = Load(row + r * kLanes);
    for (int c = 0; c < C; ++c) {
      const v8 s = Splat(W[static_cast<size_t>(c) * Dp + j]);
      for (int r = 0; r < R; ++r) acc[r][c] += h[r] * s;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) Store(Y + static_cast<size_t>(c) * Dp + i0 + r * kLanes, acc[r][c]);
}

// A block of `r` ≤ R vectors, with r chosen at run time.
template <int C, int R>
PROBE_INLINE void MatColsBlockOf(int r, const double* Ht, int D, int Dp, int i0, const double* W, double* Y) {
  if constexpr (R == 1) {
    MatColsBlock<1, C>(Ht, D, Dp, i0, W, Y);
  } else {
    if (r == R) {
      MatColsBlock<R, C>(Ht, D, Dp, i0, W, Y);
    } else {
      MatColsBlockOf<C, R - 1>(r, Ht, D, Dp, i0, W, Y);
    }
  }
}

// The Dp/8 row vectors are cut into as few blocks of at most R as possible, of equal size give or take one: a
// leftover block of one vector would be bound by its loads.
template <int C, int R>
PROBE_INLINE void MatColsChunk(const double* Ht, int D, int Dp, const double* W, double* Y) {
  const int vectors = Dp / kLanes;
  const int blocks = (vectors + R - 1) / R;
  int i0 = 0;
  for (int b = 0; b < blocks; ++b) {
    const int r = vectors / blocks + (b < vectors % blocks ? 1 : 0);
    MatColsBlockOf<C, R>(r, Ht, D, Dp, i0, W, Y);
    i0 += r * kLanes;
  }
}

// `Registers`: how many v8 values the register file holds (32 with AVX-512, 8 with AVX2, 4 with SSE2). A block of R
// row vectors for C columns keeps R·C accumulators and R loaded vectors live.
template <int Registers>
PROBE_INLINE void MatCols(const double* Ht, int D, int Dp, const double* W, double* Y, int cols) {
  constexpr int kFor1 = std::min(12, (Registers - 1) / 2);
  constexpr int kFor2 = std::max(1, (Registers - 1) / 3);
  constexpr int kFor3 = std::max(1, (Registers - 1) / 4);
  int c = 0;
  const size_t stride = static_cast<size_t>(Dp);
  for (; c + 3 <= cols; c += 3) MatColsChunk<3, kFor3>(Ht, D, Dp, W + c * stride, Y + c * stride);
  if (cols - c == 2) MatColsChunk<2, kFor2>(Ht, D, Dp, W + c * stride, Y + c * stride);
  if (cols - c == 1) MatColsChunk<1, kFor1>(Ht, D, Dp, W + c * stride, Y + c * stride);
}

PROBE_INLINE void AdamUpdate(double* __restrict w, double* __restrict m, double* __restrict v,
                             const double* __restrict hw, const double* __restrict b, int n, double lr, double c1,
                             double c2) {
  const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  for (int k = 0; k < n; ++k) {
    const double grad = hw[k] - b[k];
    const double mk = beta1 * m[k] + (1 - beta1) * grad;
    const double vk = beta2 * v[k] + (1 - beta2) * grad * grad;
    m[k] = mk;
    v[k] = vk;
    w[k] -= lr * (mk * c1) / (std::sqrt(vk * c2) + eps);
  }
}

// With many columns on a large H one dgemm per step beats the register-blocked kernel, which streams H once per
// three columns; below these sizes H stays in cache and the kernel wins.
constexpr int kBlasMinDim = 192;
constexpr int kBlasMinCols = 9;

// The learning rates run on separate threads when a simulation is at least this many multiply-adds; below it the
// threads cost more than they save.
constexpr double kThreadedMinWork = 1e7;

// One thread's share: a subset of the learning rates, each with its own iterates. Allocated by the thread that runs
// it, so that no two threads write to the same cache line.
struct AdamShare {
  std::vector<int> lrIndex;
  int D, Dp, C, cols;
  std::vector<double> Ht, W, m, v, HW, Bc;
};

struct AdamShared {
  const AdamProblem* p;
  const double* learningRates;
  double target;
  int cap;
  bool useBlas;
  // Relative suboptimality per learning rate and step, (cap + 1) apart.
  double* curves;
  // The first step at which each learning rate reached the target (cap + 1: not yet).
  std::vector<int> firstHit;
  // The earliest such step over all learning rates; a thread past it has nothing left to find.
  std::atomic<int> earliestHit;
};

void PrepareShare(AdamShare& s, const AdamProblem& p) {
  s.D = p.D;
  s.Dp = Padded(p.D);
  s.C = p.C;
  s.cols = p.C * static_cast<int>(s.lrIndex.size());
  const size_t Dp = static_cast<size_t>(s.Dp);
  const size_t n = Dp * s.cols;
  s.Ht.assign(Dp * Dp, 0.0);
  s.W.assign(n, 0.0);
  s.m.assign(n, 0.0);
  s.v.assign(n, 0.0);
  s.HW.assign(n, 0.0);
  s.Bc.assign(n, 0.0);
  for (int i = 0; i < p.D; ++i)
    for (int j = 0; j < p.D; ++j) s.Ht[j * Dp + i] = p.H[static_cast<size_t>(i) * p.D + j];
  const size_t perLr = Dp * p.C;
  for (size_t g = 0; g < s.lrIndex.size(); ++g)
    for (int cc = 0; cc < p.C; ++cc)
      for (int i = 0; i < p.D; ++i) s.Bc[g * perLr + cc * Dp + i] = p.B[static_cast<size_t>(i) * p.C + cc];
}

template <int Registers>
PROBE_INLINE void AdamLoop(AdamShare& s, AdamShared& sh) {
  const AdamProblem& p = *sh.p;
  const size_t stride = static_cast<size_t>(sh.cap) + 1;
  const int perLr = s.Dp * s.C;
  const int G = static_cast<int>(s.lrIndex.size());
  double b1t = 1.0, b2t = 1.0;
  for (int k = 0; k <= sh.cap; ++k) {
    if (k > 0) {
      if (sh.useBlas) {
        // Column-major W (Dp×cols) is row-major Wᵀ (cols×Dp): HWᵀ = Wᵀ·Hᵀ.
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.cols, s.Dp, s.Dp, 1.0, s.W.data(), s.Dp,
                    s.Ht.data(), s.Dp, 0.0, s.HW.data(), s.Dp);
      } else {
        MatCols<Registers>(s.Ht.data(), s.D, s.Dp, s.W.data(), s.HW.data(), s.cols);
      }
      for (int g = 0; g < G; ++g) {
        const size_t o = static_cast<size_t>(g) * perLr;
        v8 quad{}, lin{};
        for (int i = 0; i < perLr; i += kLanes) {
          const v8 w = Load(s.W.data() + o + i);
          quad += w * Load(s.HW.data() + o + i);
          lin += w * Load(s.Bc.data() + o + i);
        }
        const double sub = std::max(0.0, (Sum(quad) / 2 - Sum(lin) + p.c - p.fStar) / p.gap);
        const int lr = s.lrIndex[g];
        sh.curves[lr * stride + k] = sub;
        if (sh.target > 0 && sub <= sh.target && sh.firstHit[lr] > sh.cap) {
          sh.firstHit[lr] = k;
          int seen = sh.earliestHit.load(std::memory_order_relaxed);
          while (k < seen && !sh.earliestHit.compare_exchange_weak(seen, k, std::memory_order_relaxed)) {
          }
        }
      }
      // Every step up to the earliest hit must be scored, so that an equal step on another thread is seen.
      if (k >= sh.earliestHit.load(std::memory_order_relaxed)) return;
    }
    if (k == sh.cap) return;
    b1t *= 0.9;
    b2t *= 0.999;
    const double c1 = 1 / (1 - b1t), c2 = 1 / (1 - b2t);
    for (int g = 0; g < G; ++g) {
      const size_t o = static_cast<size_t>(g) * perLr;
      AdamUpdate(s.W.data() + o, s.m.data() + o, s.v.data() + o, s.HW.data() + o, s.Bc.data() + o, perLr,
                 sh.learningRates[s.lrIndex[g]], c1, c2);
    }
  }
}

__attribute__((target("avx512f"))) void AdamAvx512(AdamShare& s, AdamShared& sh) { AdamLoop<32>(s, sh); }

__attribute__((target("avx2,fma"))) void AdamAvx2(AdamShare& s, AdamShared& sh) { AdamLoop<8>(s, sh); }

void AdamBaseline(AdamShare& s, AdamShared& sh) { AdamLoop<4>(s, sh); }

void RunShare(AdamShare& s, AdamShared& sh) {
  const FlushSubnormals flush;
  PrepareShare(s, *sh.p);
  if (__builtin_cpu_supports("avx512f")) {
    AdamAvx512(s, sh);
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    AdamAvx2(s, sh);
  } else {
    AdamBaseline(s, sh);
  }
}

}  // namespace

bool AdamUsesBlas(int D, int cols) { return D >= kBlasMinDim && cols >= kBlasMinCols; }

namespace {

// The CPUs a CFS quota grants, rounded up (cgroup v2 cpu.max, else v1's cfs_quota_us / cfs_period_us); 0 when
// there is no quota or no cgroup file to read. A container started with --cpus=2 on a large host sees every host CPU
// in its affinity mask, but more threads than its quota only get throttled.
int QuotaCpus() {
  double quota = -1, period = 0;
  if (std::FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r")) {
    char max[32] = {0};
    if (std::fscanf(f, "%31s %lf", max, &period) == 2 && std::strcmp(max, "max") != 0) quota = std::atof(max);
    std::fclose(f);
  } else {
    std::FILE* q = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r");
    std::FILE* p = std::fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r");
    if (q && p && (std::fscanf(q, "%lf", &quota) != 1 || std::fscanf(p, "%lf", &period) != 1)) quota = -1;
    if (q) std::fclose(q);
    if (p) std::fclose(p);
  }
  return quota > 0 && period > 0 ? static_cast<int>(std::ceil(quota / period)) : 0;
}

}  // namespace

int UsableCpus() {
  static const int cpus = [] {
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : static_cast<int>(std::thread::hardware_concurrency());
    const int quota = QuotaCpus();
    if (quota > 0) n = std::min(n, quota);
    return std::max(1, n);
  }();
  return cpus;
}

DescentResult EigenDescent(const double* lambdas, int r, const double* e0, int C, double scale, StepRule rule,
                           double target, int cap) {
  const FlushSubnormals flush;
  const int n = r * C;
  const int np = Padded(n);
  std::vector<double> lam(np, 0.0), lam2(np, 0.0), lam3(np, 0.0), e(np, 0.0);
  for (int i = 0; i < r; ++i) {
    for (int k = 0; k < C; ++k) {
      const size_t at = static_cast<size_t>(i) * C + k;
      lam[at] = lambdas[i];
      lam2[at] = lambdas[i] * lambdas[i];
      lam3[at] = lam2[at] * lambdas[i];
      e[at] = e0[at];
    }
  }
  const double invL = r > 0 ? 1 / lambdas[r - 1] : 0.0;
  DescentResult out{cap, false, std::vector<double>(static_cast<size_t>(cap) + 1, 0.0)};
  out.curve[0] = 1.0;
  if (rule == StepRule::kFixedInverseL) {
    DescentDispatch<StepRule::kFixedInverseL>(lam.data(), lam2.data(), lam3.data(), e.data(), np, invL, scale, target,
                                              cap, out.curve, out.steps, out.reached);
  } else {
    DescentDispatch<StepRule::kExactLineSearch>(lam.data(), lam2.data(), lam3.data(), e.data(), np, invL, scale,
                                                target, cap, out.curve, out.steps, out.reached);
  }
  out.curve.resize(static_cast<size_t>(out.steps) + 1);
  return out;
}

AdamResult AdamQuadratic(const AdamProblem& p, const double* learningRates, int G, double target, int cap) {
  const size_t stride = static_cast<size_t>(cap) + 1;
  AdamResult out{cap, -1, std::vector<double>(static_cast<size_t>(G) * stride, 0.0)};
  for (int g = 0; g < G; ++g) out.curves[g * stride] = 1.0;
  AdamShared sh;
  sh.p = &p;
  sh.learningRates = learningRates;
  sh.target = target;
  sh.cap = cap;
  sh.useBlas = AdamUsesBlas(p.D, p.C * G);
  sh.curves = out.curves.data();
  sh.firstHit.assign(G, cap + 1);
  sh.earliestHit.store(cap + 1);

  // BLAS runs its own threads; otherwise the learning rates are shared out round-robin.
  const double work = static_cast<double>(p.D) * p.D * p.C * G * cap;
  const int threads = sh.useBlas || work < kThreadedMinWork ? 1 : std::min(G, UsableCpus());
  std::vector<AdamShare> shares(threads);
  for (int g = 0; g < G; ++g) shares[g % threads].lrIndex.push_back(g);
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(RunShare, std::ref(shares[t]), std::ref(sh));
  RunShare(shares[0], sh);
  for (auto& th : pool) th.join();

  for (int g = 0; g < G; ++g) {
    if (sh.firstHit[g] <= cap && (out.winner < 0 || sh.firstHit[g] < out.steps)) {
      out.winner = g;
      out.steps = sh.firstHit[g];
    }
  }
  if (out.steps < cap) {
    const size_t kept = static_cast<size_t>(out.steps) + 1;
    for (int g = 1; g < G; ++g) std::copy_n(out.curves.begin() + g * stride, kept, out.curves.begin() + g * kept);
    out.curves.resize(static_cast<size_t>(G) * kept);
  }
  return out;
}

}  // namespace probe
