// Eigenpairs at chosen positions of a symmetric spectrum, and the optimizer's per-step batch of them: plain C++
// over LAPACKE and CBLAS, no N-API. linalg.cc validates the arguments and calls these.
#pragma once

#include <string>
#include <vector>

namespace spectral {

// Eigenpairs of the symmetric n×n S (row-major) at ascending-order positions indices[0..k) (distinct): values[j]
// and column j of the row-major n×k `vectors`. Returns "" or a description of the LAPACK failure.
std::string EigenpairsAt(const double* S, int n, const int* indices, int k, double* values, double* vectors);

// One Gram matrix of the batch: S = θᵀKθ, then its eigenpairs at the top and at lowIndex.
struct CongruenceTask {
  const double* K;
  int lowIndex;
  double* S;        // n×n out
  double* values;   // [λ_max, λ_low] out
  double* vectors;  // n×2 out, row-major
  std::string failure;
};

// Runs the tasks, side by side on a multi-core host.
void RunCongruenceTasks(const double* theta, int n, std::vector<CongruenceTask>& tasks);

}  // namespace spectral
