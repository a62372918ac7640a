#include "probeKernels.h"

#include <sched.h>

#include <algorithm>
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

// H's upper triangle, row by row: row i holds H[i][i+1..D) followed by zeros up to a multiple of 8 plus 8 more (a
// block of rows reads a little past its first row's entries), and the diagonal apart. A step's product H·W is bound
// by reading H, and the triangle is half of it: each off-diagonal entry is read once and used twice, for
// Y[i] += H[i][j]·W[j] and Y[j] += H[i][j]·W[i].
struct PackedSymmetric {
  std::vector<double> diag, upper;
  std::vector<size_t> rowStart;
  std::vector<int> rowLength;  // the entries j > i, padded to a multiple of 8
};

PackedSymmetric PackUpper(const double* H, int D) {
  PackedSymmetric P;
  P.diag.resize(D);
  P.rowStart.resize(D);
  P.rowLength.resize(D);
  size_t total = 0;
  for (int i = 0; i < D; ++i) {
    P.rowStart[i] = total;
    P.rowLength[i] = Padded(D - i - 1);
    total += static_cast<size_t>(P.rowLength[i]) + kLanes;
  }
  P.upper.assign(total, 0.0);
  for (int i = 0; i < D; ++i) {
    P.diag[i] = H[static_cast<size_t>(i) * D + i];
    for (int j = i + 1; j < D; ++j) P.upper[P.rowStart[i] + (j - i - 1)] = H[static_cast<size_t>(i) * D + j];
  }
  return P;
}

// Rows i … i+R−1 of the product for C columns: the pairs inside the block one by one, then every column j ≥ i+R with
// the R rows side by side, so that each load of W[j] and Y[j] serves R rows. Reads up to 7 entries of W past D (the
// stride leaves them, and they are zero) and of each row past its entries (the padding, zero), so Y past D stays zero.
template <int C, int R>
PROBE_INLINE void SymBlock(const PackedSymmetric& P, int D, size_t stride, int i, const double* __restrict W,
                           double* __restrict Y) {
  for (int r = 0; r < R; ++r) {
    const double* row = P.upper.data() + P.rowStart[i + r];
    for (int c = 0; c < C; ++c) Y[c * stride + i + r] += P.diag[i + r] * W[c * stride + i + r];
    for (int q = r + 1; q < R; ++q) {
      const double h = row[q - r - 1];
      for (int c = 0; c < C; ++c) {
        Y[c * stride + i + r] += h * W[c * stride + i + q];
        Y[c * stride + i + q] += h * W[c * stride + i + r];
      }
    }
  }
  const int first = i + R;
  if (first >= D) return;
  const int L = Padded(D - first);
  const double* rows[R];
  v8 acc[R][C], wi[R][C];
  for (int r = 0; r < R; ++r) {
    rows[r] = P.upper.data() + P.rowStart[i + r] + (R - 1 - r);
    for (int c = 0; c < C; ++c) {
      acc[r][c] = v8{};
      wi[r][c] = Splat(W[c * stride + i + r]);
    }
  }
  for (int t = 0; t < L; t += kLanes) {
    v8 h[R];
    for (int r = 0; r < R; ++r) h[r] = Load(rows[r] + t);
    for (int c = 0; c < C; ++c) {
      const size_t at = c * stride + first + t;
      const v8 w = Load(W + at);
      v8 y = Load(Y + at);
      for (int r = 0; r < R; ++r) {
        acc[r][c] += h[r] * w;
        y += h[r] * wi[r][c];
      }
      Store(Y + at, y);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) Y[c * stride + i + r] += Sum(acc[r][c]);
}

// Y[:, c] = H·W[:, c] for C columns `stride` (at least Padded(D) + 8) apart, rows in blocks of R. Each column's
// arithmetic is the same whatever C is, so a learning rate's curve does not depend on its neighbours.
template <int C, int R>
PROBE_INLINE void SymCols(const PackedSymmetric& P, int D, size_t stride, const double* W, double* Y) {
  for (int c = 0; c < C; ++c) std::fill_n(Y + c * stride, stride, 0.0);
  int i = 0;
  for (; i + R <= D; i += R) SymBlock<C, R>(P, D, stride, i, W, Y);
  for (; i < D; ++i) SymBlock<C, 1>(P, D, stride, i, W, Y);
}

// `R`: rows per block. Four rows for three columns keep 24 accumulators and splats in registers, which takes
// AVX-512's 32; with fewer registers the blocks are single rows.
template <int R>
PROBE_INLINE void SymColsAll(const PackedSymmetric& P, int D, size_t stride, const double* W, double* Y, int cols) {
  int c = 0;
  for (; c + 3 <= cols; c += 3) SymCols<3, R>(P, D, stride, W + c * stride, Y + c * stride);
  if (cols - c == 2) SymCols<2, R>(P, D, stride, W + c * stride, Y + c * stride);
  if (cols - c == 1) SymCols<1, R>(P, D, stride, W + c * stride, Y + c * stride);
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

// The learning rates a run takes, each with its own iterates, side by side in one pass.
struct AdamIterates {
  std::vector<int> lrIndex;
  int D, Dp, C, cols;
  PackedSymmetric packed;
  std::vector<double> W, m, v, HW, Bc;
};

struct AdamSettings {
  const AdamProblem* p;
  const double* learningRates;
  double target;
  int cap;
  // Relative suboptimality per learning rate and step, (cap + 1) apart.
  double* curves;
  // The first step at which each learning rate reached the target (cap + 1: not yet).
  std::vector<int> firstHit;
  // The earliest such step over all learning rates.
  int earliestHit;
  AdamControl* control;
  // The step at which a cancelled run stopped (cap + 1: it was not cancelled).
  int stoppedAt;
};

void PrepareIterates(AdamIterates& s, const AdamProblem& p) {
  s.D = p.D;
  s.Dp = Padded(p.D) + kLanes;
  s.C = p.C;
  s.cols = p.C * static_cast<int>(s.lrIndex.size());
  const size_t Dp = static_cast<size_t>(s.Dp);
  const size_t n = Dp * s.cols;
  s.W.assign(n, 0.0);
  s.m.assign(n, 0.0);
  s.v.assign(n, 0.0);
  s.HW.assign(n, 0.0);
  s.Bc.assign(n, 0.0);
  s.packed = PackUpper(p.H, p.D);
  const size_t perLr = Dp * p.C;
  for (size_t g = 0; g < s.lrIndex.size(); ++g)
    for (int cc = 0; cc < p.C; ++cc)
      for (int i = 0; i < p.D; ++i) s.Bc[g * perLr + cc * Dp + i] = p.B[static_cast<size_t>(i) * p.C + cc];
}

template <int R>
PROBE_INLINE void AdamLoop(AdamIterates& s, AdamSettings& sh) {
  const AdamProblem& p = *sh.p;
  const size_t stride = static_cast<size_t>(sh.cap) + 1;
  const int perLr = s.Dp * s.C;
  const int G = static_cast<int>(s.lrIndex.size());
  double b1t = 1.0, b2t = 1.0;
  for (int k = 0; k <= sh.cap; ++k) {
    if (k > 0) {
      SymColsAll<R>(s.packed, s.D, s.Dp, s.W.data(), s.HW.data(), s.cols);
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
          sh.earliestHit = std::min(sh.earliestHit, k);
        }
      }
      if (k >= sh.earliestHit) return;
      if (sh.control) {
        sh.control->scored.store(k, std::memory_order_release);
        if (sh.control->cancel.load(std::memory_order_relaxed)) {
          sh.stoppedAt = k;
          return;
        }
      }
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

__attribute__((target("avx512f"))) void AdamAvx512(AdamIterates& s, AdamSettings& sh) { AdamLoop<4>(s, sh); }

__attribute__((target("avx2,fma"))) void AdamAvx2(AdamIterates& s, AdamSettings& sh) { AdamLoop<1>(s, sh); }

void AdamBaseline(AdamIterates& s, AdamSettings& sh) { AdamLoop<1>(s, sh); }

void RunAdam(AdamIterates& s, AdamSettings& sh) {
  const FlushSubnormals flush;
  PrepareIterates(s, *sh.p);
  if (__builtin_cpu_supports("avx512f")) {
    AdamAvx512(s, sh);
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    AdamAvx2(s, sh);
  } else {
    AdamBaseline(s, sh);
  }
}

}  // namespace


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

AdamResult AdamQuadratic(const AdamProblem& p, const double* learningRates, int G, double target, int cap,
                         AdamControl* control) {
  const size_t stride = static_cast<size_t>(cap) + 1;
  AdamResult out{cap, -1, std::vector<double>(static_cast<size_t>(G) * stride, 0.0)};
  for (int g = 0; g < G; ++g) out.curves[g * stride] = 1.0;
  AdamSettings sh;
  sh.p = &p;
  sh.learningRates = learningRates;
  sh.target = target;
  sh.cap = cap;
  sh.curves = out.curves.data();
  sh.firstHit.assign(G, cap + 1);
  sh.earliestHit = cap + 1;
  sh.control = control;
  sh.stoppedAt = cap + 1;

  // One thread takes every learning rate in one pass over H: a step is bound by reading H, so a second thread would
  // read it again for little gain, and the engine runs several simulations side by side anyway.
  AdamIterates run;
  for (int g = 0; g < G; ++g) run.lrIndex.push_back(g);
  RunAdam(run, sh);

  for (int g = 0; g < G; ++g) {
    if (sh.firstHit[g] <= cap && (out.winner < 0 || sh.firstHit[g] < out.steps)) {
      out.winner = g;
      out.steps = sh.firstHit[g];
    }
  }
  if (out.winner < 0 && sh.stoppedAt <= cap) out.steps = sh.stoppedAt;
  if (control) control->scored.store(out.steps, std::memory_order_release);
  if (out.steps < cap) {
    const size_t kept = static_cast<size_t>(out.steps) + 1;
    for (int g = 1; g < G; ++g) std::copy_n(out.curves.begin() + g * stride, kept, out.curves.begin() + g * kept);
    out.curves.resize(static_cast<size_t>(G) * kept);
  }
  return out;
}

}  // namespace probe
