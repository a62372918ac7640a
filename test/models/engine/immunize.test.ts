import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { mat, type Mat } from '../../../models/linalg/index.js';
import type { HousePriceData } from '../../../models/io/housePrice.js';
import { immunize, type EngineResult } from '../../../models/engine/immunize.js';
import { assertJsonClean, assertRel, congr, gram, jacobi, kappaWithRank, mul, project, robustKappa, tr } from '../../helpers/reference.js';
import { housePrice } from '../../helpers/housePrice.js';

describe('immunize: House Price, gradient method, defaults', () => {
  let hp: HousePriceData;
  let result: EngineResult;
  let KP: Mat;
  let KH: Mat;
  before(async () => {
    hp = await housePrice();
    result = immunize({ benign: hp.benign, harmful: hp.harmful }, { method: 'gradient', kappaBudget: 1e4, seed: 0 });
    KP = gram(hp.benign.X);
    KH = gram(hp.harmful.X);
  });

  it('meets the paper-level targets and is judged immunized', () => {
    const m = result.metrics;
    assert.ok(m.benignRatio! <= 1, `benign ratio ${m.benignRatio}`);
    assert.ok(m.harmfulRatio! >= 212, `harmful ratio ${m.harmfulRatio}`);
    assert.ok(m.rir! >= 2520, `RIR ${m.rir}`);
    assert.ok(m.thetaCondition! <= 1e4, `κ(θ) ${m.thetaCondition}`);
    assert.equal(m.verdict, 'immunized', m.verdictReasons.join('; '));
    assert.equal(m.dim, hp.benign.X.cols);
  });

  it('the reported κ numbers agree with an independent Jacobi computation', () => {
    const m = result.metrics;
    const theta = result.theta;
    const eP = jacobi(KP).values;
    const eH = jacobi(KH).values;
    const rP = robustKappa(eP);
    const rH = robustKappa(eH);
    const kP1 = kappaWithRank(jacobi(congr(KP, theta)).values, rP.rank);
    const kH1 = kappaWithRank(jacobi(congr(KH, theta)).values, rH.rank);
    assertRel(m.kappa.benign.before, rP.kappa!, 1e-6, 'κ(K_P)');
    assertRel(m.kappa.harmful.before, rH.kappa!, 1e-6, 'κ(K_H)');
    assertRel(m.benignRatio, kP1 / rP.kappa!, 1e-6, 'benign ratio');
    assertRel(m.harmfulRatio, kH1 / rH.kappa!, 1e-6, 'harmful ratio');
    const tt = jacobi(mul(tr(theta), theta)).values;
    const kt = Math.sqrt(tt[tt.length - 1] / tt[0]);
    assert.ok(kt <= 1e4, `independent κ(θ) ${kt}`);
    assertRel(m.thetaCondition, kt, 1e-6, 'κ(θ)');
  });

  it('the standardized attacker is stopped on harmful data and not slowed on benign data', () => {
    const find = (data: 'benign' | 'harmful') => result.metrics.attacks.find((a) => a.attacker === 'gd-exact-standardized' && a.data === data)!;
    const h = find('harmful');
    const b = find('benign');
    assert.ok(h.capped || h.slowdown! >= 10, `harmful: slowdown ${h.slowdown}, capped ${h.capped}`);
    assert.ok(b.slowdown! <= 1, `benign slowdown ${b.slowdown}`);
  });

  it('benign quality is unchanged, and equals the least-squares MSE computed independently', () => {
    const q = result.metrics.benignQuality;
    assert.equal(q.metric, 'mse');
    assertRel(q.after, q.before!, 1e-8, 'MSE after vs before');
    // independent: project y onto span([X, 1])
    const X = hp.benign.X;
    const n = X.rows;
    const A = mat(n, X.cols + 1);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < X.cols; j++) A.data[i * A.cols + j] = X.data[i * X.cols + j];
      A.data[i * A.cols + X.cols] = 1;
    }
    const Y = mat(n, 1, Float64Array.from(hp.benign.y));
    const P = project(A, Y);
    let mse = 0;
    for (let i = 0; i < n; i++) mse += (P.data[i] - Y.data[i]) ** 2;
    mse /= n;
    assertRel(q.before, mse, 1e-6, 'MSE before');
  });

  it('the compensated head on X·θ reproduces the raw best probe', () => {
    const head = result.head;
    assert.ok(head, 'a labelled benign task must give a head');
    const X = hp.benign.X;
    const n = X.rows;
    const pred = mul(mul(X, result.theta), head!.weights);
    const A = mat(n, X.cols + 1);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < X.cols; j++) A.data[i * A.cols + j] = X.data[i * X.cols + j];
      A.data[i * A.cols + X.cols] = 1;
    }
    const best = project(A, mat(n, 1, Float64Array.from(hp.benign.y)));
    let scale = 0;
    let dev = 0;
    for (let i = 0; i < n; i++) {
      scale = Math.max(scale, Math.abs(best.data[i]));
      dev = Math.max(dev, Math.abs(pred.data[i] + head!.bias[0] - best.data[i]));
    }
    assert.ok(dev <= 1e-6 * scale, `max deviation ${dev} (scale ${scale})`);
  });

  it('metrics serialize to JSON with only finite numbers', () => {
    assertJsonClean(result.metrics);
  });
});

describe('immunize: House Price, random initialization', () => {
  it("init 'random' still keeps the benign ratio ≤ 1 and lifts the harmful ratio ≥ 10", async () => {
    const hp = await housePrice();
    const r = immunize({ benign: hp.benign, harmful: hp.harmful }, { method: 'gradient', kappaBudget: 1e4, seed: 0, init: 'random' });
    assert.ok(r.metrics.benignRatio! <= 1, `benign ratio ${r.metrics.benignRatio}`);
    assert.ok(r.metrics.harmfulRatio! >= 10, `harmful ratio ${r.metrics.harmfulRatio}`);
    assert.ok(r.metrics.thetaCondition! <= 1e4);
    assertJsonClean(r.metrics);
  });
});

describe('immunize: House Price, closed form, defaults', () => {
  it('reaches RIR ≥ 1e7 within κ(θ) ≤ 1e4, stays under RIR*, and passes the attacker conditions', async () => {
    const hp = await housePrice();
    const r = immunize({ benign: hp.benign, harmful: hp.harmful }, { method: 'closed-form', kappaBudget: 1e4, seed: 0 });
    const m = r.metrics;
    const KP = gram(hp.benign.X);
    const KH = gram(hp.harmful.X);
    const rP = robustKappa(jacobi(KP).values);
    const rH = robustKappa(jacobi(KH).values);
    const benign = kappaWithRank(jacobi(congr(KP, r.theta)).values, rP.rank) / rP.kappa!;
    const harmful = kappaWithRank(jacobi(congr(KH, r.theta)).values, rH.rank) / rH.kappa!;
    // κ(H_H) is ~1e10 here: a second eigensolver agrees to about κ·D·eps.
    assertRel(m.harmfulRatio, harmful, 1e-4, 'harmful ratio');
    assertRel(m.benignRatio, benign, 1e-4, 'benign ratio');
    assert.ok(benign <= 1, `benign ratio ${benign}`);
    assert.ok(harmful >= 212, `harmful ratio ${harmful}`);
    assert.ok(harmful / benign >= 1e7, `RIR ${harmful / benign}`);
    assert.ok(m.rir! <= m.rirBound! * (1 + 1e-6), `RIR ${m.rir} above RIR* ${m.rirBound}`);
    const tt = jacobi(mul(tr(r.theta), r.theta)).values;
    assert.ok(Math.sqrt(tt[tt.length - 1] / tt[0]) <= 1e4 * (1 + 1e-9), 'κ(θ) within the budget');
    const std = (data: string) => m.attacks.find((a) => a.attacker === 'gd-exact-standardized' && a.data === data)!;
    assert.ok(std('harmful').capped || std('harmful').slowdown! >= 10, `harmful slowdown ${std('harmful').slowdown}`);
    assert.ok(std('benign').slowdown! <= 1, `benign slowdown ${std('benign').slowdown}`);
    assert.equal(m.verdict, 'immunized', m.verdictReasons.join('; '));
  });
});
