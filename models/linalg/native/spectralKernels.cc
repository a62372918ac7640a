#include "spectralKernels.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <functional>
#include <thread>

#include "probeKernels.h"

namespace spectral {
namespace {

std::string Failure(const char* routine, lapack_int info) {
  return std::string(routine) + " failed with info=" + std::to_string(info);
}

// Below this size a second thread costs more than half a task.
constexpr int kParallelMinDim = 24;

void RunTask(const double* theta, int n, CongruenceTask& t) {
  const size_t N = static_cast<size_t>(n);
  std::vector<double> Kt(N * N);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, t.K, n, theta, n, 0.0, Kt.data(), n);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, n, n, 1.0, theta, n, Kt.data(), n, 0.0, t.S, n);
  for (size_t i = 0; i < N; ++i) {
    for (size_t j = i + 1; j < N; ++j) {
      const double v = 0.5 * (t.S[i * N + j] + t.S[j * N + i]);
      t.S[i * N + j] = v;
      t.S[j * N + i] = v;
    }
  }
  if (t.lowIndex == n - 1) {
    const int top = n - 1;
    std::vector<double> v(N);
    t.failure = EigenpairsAt(t.S, n, &top, 1, t.values, v.data());
    t.values[1] = t.values[0];
    for (size_t i = 0; i < N; ++i) t.vectors[i * 2] = t.vectors[i * 2 + 1] = v[i];
    return;
  }
  const int indices[2] = {n - 1, t.lowIndex};
  t.failure = EigenpairsAt(t.S, n, indices, 2, t.values, t.vectors);
}

}  // namespace

std::string EigenpairsAt(const double* S, int n, const int* indices, int k, double* values, double* vectors) {
  const size_t N = static_cast<size_t>(n);
  std::vector<double> a(S, S + N * N), d(N), e(N > 1 ? N - 1 : 1), tau(N > 1 ? N - 1 : 1);
  // A symmetric row-major matrix is the same buffer in column-major order.
  lapack_int rc = LAPACKE_dsytrd(LAPACK_COL_MAJOR, 'U', n, a.data(), n, d.data(), e.data(), tau.data());
  if (rc != 0) return Failure("dsytrd", rc);

  // Bisection per index; dstein wants the eigenvalues grouped by split-off block, ascending within each.
  struct Pair {
    double w;
    lapack_int block;
    int slot;
  };
  std::vector<Pair> pairs(k);
  std::vector<double> w(N);
  std::vector<lapack_int> iblock(N), isplit(N);
  const double abstol = 2 * LAPACKE_dlamch('S');
  for (int j = 0; j < k; ++j) {
    lapack_int found = 0, nsplit = 0;
    rc = LAPACKE_dstebz('I', 'B', n, 0.0, 0.0, indices[j] + 1, indices[j] + 1, abstol, d.data(), e.data(), &found,
                        &nsplit, w.data(), iblock.data(), isplit.data());
    if (rc != 0) return Failure("dstebz", rc);
    if (found != 1) return "dstebz found " + std::to_string(found) + " eigenvalues at index " + std::to_string(indices[j]);
    pairs[j] = {w[0], iblock[0], j};
  }
  std::sort(pairs.begin(), pairs.end(),
            [](const Pair& x, const Pair& y) { return x.block != y.block ? x.block < y.block : x.w < y.w; });
  // LAPACKE scans n entries of w for NaN, not m, so the arrays are full length.
  std::vector<double> ws(N, 0.0);
  std::vector<lapack_int> blocks(N, 1), ifail(k);
  for (int j = 0; j < k; ++j) {
    ws[j] = pairs[j].w;
    blocks[j] = pairs[j].block;
  }
  std::vector<double> z(N * k);
  rc = LAPACKE_dstein(LAPACK_COL_MAJOR, n, d.data(), e.data(), k, ws.data(), blocks.data(), isplit.data(), z.data(), n,
                      ifail.data());
  if (rc != 0) return Failure("dstein", rc);
  rc = LAPACKE_dormtr(LAPACK_COL_MAJOR, 'L', 'U', 'N', n, k, a.data(), n, tau.data(), z.data(), n);
  if (rc != 0) return Failure("dormtr", rc);
  for (int j = 0; j < k; ++j) {
    const int slot = pairs[j].slot;
    values[slot] = ws[j];
    const double* col = z.data() + static_cast<size_t>(j) * N;
    for (size_t i = 0; i < N; ++i) vectors[i * k + slot] = col[i];
  }
  return "";
}

void RunCongruenceTasks(const double* theta, int n, std::vector<CongruenceTask>& tasks) {
  const bool parallel = n >= kParallelMinDim && tasks.size() > 1 && probe::UsableCpus() > 1;
  std::vector<std::thread> helpers;
  size_t next = 0;
  if (parallel) {
    // The caller's thread takes the first task; the rest go to one helper, in order.
    helpers.emplace_back([&tasks, theta, n] {
      for (size_t i = 1; i < tasks.size(); ++i) RunTask(theta, n, tasks[i]);
    });
    RunTask(theta, n, tasks[0]);
    next = tasks.size();
  }
  for (; next < tasks.size(); ++next) RunTask(theta, n, tasks[next]);
  for (auto& h : helpers) h.join();
}

}  // namespace spectral
