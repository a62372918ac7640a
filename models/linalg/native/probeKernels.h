// Inner loops of the probing-attack simulations: plain C++ on raw buffers, no N-API. linalg.cc validates the
// arguments and calls these.
#pragma once

#include <atomic>
#include <cstddef>
#include <vector>

namespace probe {

// First-order descent on f(W) = ½tr(WᵀHW) − tr(BᵀW) + c written in H's eigenbasis: the error e (r rows × C
// outputs, row-major) evolves coordinate-wise, each step scaling row i by (1 − t·λ_i).
enum class StepRule { kFixedInverseL, kExactLineSearch };

struct DescentResult {
  int steps;
  bool reached;
  // Relative suboptimality after each step; index 0 is the start (1.0). Length steps + 1.
  std::vector<double> curve;
};

// `scale` turns Σ λ_i·e_i² into the relative suboptimality (1 / (2·gap)). target ≤ 0: run exactly `cap` steps.
DescentResult EigenDescent(const double* lambdas, int r, const double* e0, int C, double scale, StepRule rule,
                           double target, int cap);

struct AdamProblem {
  const double* H;  // D×D symmetric, row-major
  const double* B;  // D×C, row-major
  int D;
  int C;
  double c;
  double fStar;
  double gap;
};

struct AdamResult {
  int steps;
  int winner;  // the learning rate that reached the target first, −1 if none
  // G curves of steps + 1 entries each, one after another.
  std::vector<double> curves;
};

// How far a running simulation has got, and a request to stop it early; shared with the thread that waits on it.
struct AdamControl {
  std::atomic<int> scored{0};  // the last step whose suboptimality is in the curves
  std::atomic<bool> cancel{false};
};

// Adam (β = 0.9, 0.999, ε = 1e-8) from W = 0, all learning rates side by side; stops at the first step where any
// run reaches `target` (target ≤ 0: run `cap` steps), or at the step after `control->cancel` is set.
AdamResult AdamQuadratic(const AdamProblem& p, const double* learningRates, int G, double target, int cap,
                         AdamControl* control = nullptr);


// CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota; at least 1.
int UsableCpus();

}  // namespace probe
