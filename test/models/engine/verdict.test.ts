import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import type { Mat } from '../../../models/linalg/index.js';
import type { HousePriceData } from '../../../models/io/housePrice.js';
import { decideVerdict, VERDICT_THRESHOLDS } from '../../../models/engine/verdict.js';
import { evaluateTheta, type EngineOptions } from '../../../models/engine/immunize.js';
import { add, assertRel, congr, eye, gram, jacobi, kappaWithRank, robustKappa, spectralFn } from './reference.js';
import { housePrice, zeroColumns } from './housePrice.js';

type AttackLike = { attacker: 'gd-exact-standardized' | 'gd'; data: 'benign' | 'harmful'; slowdown: number };

function attacks(harmful: number, benign: number): AttackLike[] {
  return [
    { attacker: 'gd', data: 'harmful', slowdown: 1000 },
    { attacker: 'gd-exact-standardized', data: 'harmful', slowdown: harmful },
    { attacker: 'gd', data: 'benign', slowdown: 0.01 },
    { attacker: 'gd-exact-standardized', data: 'benign', slowdown: benign },
  ];
}

const good = { benignRatio: 0.5, harmfulRatio: 300, rirBound: 1e4, attacks: attacks(50, 0.9) };

describe('verdict: decideVerdict cases', () => {
  const t = VERDICT_THRESHOLDS;

  it('all criteria met → immunized, no reasons', () => {
    const v = decideVerdict(good);
    assert.equal(v.verdict, 'immunized');
    assert.deepEqual(v.reasons, []);
  });

  it('the documented thresholds: harmful ratio ≥ 2, benign ratio ≤ 1, standardized slowdowns ≥ 2 and ≤ 1.25', () => {
    assert.equal(decideVerdict({ ...good, harmfulRatio: 1.9 }).verdict, 'weak');
    assert.equal(decideVerdict({ ...good, harmfulRatio: 2.1 }).verdict, 'immunized');
    assert.equal(decideVerdict({ ...good, benignRatio: 1.05 }).verdict, 'weak');
    assert.equal(decideVerdict({ ...good, attacks: attacks(1.9, 0.9) }).verdict, 'weak');
    assert.equal(decideVerdict({ ...good, attacks: attacks(2.1, 1.2) }).verdict, 'immunized');
    assert.equal(decideVerdict({ ...good, attacks: attacks(50, 1.3) }).verdict, 'weak');
  });

  it('the boundary values themselves pass (≥ and ≤ are inclusive)', () => {
    const v = decideVerdict({
      benignRatio: t.benignRatio,
      harmfulRatio: t.harmfulRatio,
      rirBound: 2,
      attacks: attacks(t.harmfulSlowdown, t.benignSlowdown),
    });
    assert.equal(v.verdict, 'immunized', v.reasons.join('; '));
  });

  it('RIR* ≤ 1 → infeasible, whatever the other numbers say', () => {
    assert.equal(decideVerdict({ ...good, rirBound: 1 }).verdict, 'infeasible');
    assert.equal(decideVerdict({ ...good, rirBound: 0.3 }).verdict, 'infeasible');
    assert.equal(decideVerdict({ ...good, rirBound: 1.5 }).verdict, 'immunized');
  });

  it('an unknown RIR* (null) does not make it infeasible', () => {
    assert.equal(decideVerdict({ ...good, rirBound: null }).verdict, 'immunized');
  });

  const weakCases: Array<[string, Partial<typeof good>]> = [
    ['harmful ratio just below 2', { harmfulRatio: t.harmfulRatio * (1 - 1e-9) }],
    ['harmful ratio < 1 (the harmful task got easier)', { harmfulRatio: 0.4 }],
    ['benign ratio just above 1', { benignRatio: t.benignRatio * (1 + 1e-9) }],
    ['standardized harmful slowdown ~1 (degenerate θ)', { attacks: attacks(1.001, 0.9) }],
    ['standardized benign slowdown above 1.25', { attacks: attacks(50, 1.3) }],
    ['no standardized attack at all', { attacks: attacks(50, 0.9).filter((a) => a.attacker !== 'gd-exact-standardized') }],
    ['NaN ratios', { harmfulRatio: NaN, benignRatio: NaN }],
    ['NaN slowdown', { attacks: attacks(NaN, 0.9) }],
  ];
  for (const [name, patch] of weakCases) {
    it(`${name} → weak with a reason`, () => {
      const v = decideVerdict({ ...good, ...patch });
      assert.equal(v.verdict, 'weak');
      assert.ok(v.reasons.length >= 1);
    });
  }

  it('each failed criterion gives its own reason', () => {
    const v = decideVerdict({ benignRatio: 3, harmfulRatio: 1, rirBound: 10, attacks: attacks(1, 2) });
    assert.equal(v.verdict, 'weak');
    assert.equal(v.reasons.length, 4);
  });
});

describe('verdict: House Price traps', () => {
  const opts: EngineOptions = { method: 'gradient', kappaBudget: 1e4, seed: 0 };
  let hp: HousePriceData;
  let KP: Mat;
  let KH: Mat;
  let rankP: number;
  let rankH: number;
  let kP0: number;
  let kH0: number;
  before(async () => {
    hp = await housePrice();
    KP = gram(hp.benign.X);
    KH = gram(hp.harmful.X);
    const rp = robustKappa(jacobi(KP).values);
    const rh = robustKappa(jacobi(KH).values);
    rankP = rp.rank;
    rankH = rh.rank;
    kP0 = rp.kappa!;
    kH0 = rh.kappa!;
  });
  const input = () => ({ benign: hp.benign, harmful: hp.harmful });

  it('degenerate θ: scaling the benign-only-zero columns by 1e-4 is not immunization', () => {
    const D = hp.benign.X.cols;
    const zero = zeroColumns(hp.benign.X);
    assert.equal(zero.length, 3, `benign zero columns: ${zero}`);
    const theta = eye(D);
    for (const j of zero) theta.data[j * D + j] = 1e-4;
    const m = evaluateTheta(input(), theta, opts).metrics;
    // independent: the harmful κ ratio really is large, the benign one untouched
    const hRatio = kappaWithRank(jacobi(congr(KH, theta)).values, rankH) / kH0;
    assert.ok(hRatio > 100, `harmful ratio ${hRatio} should be large for this trap`);
    // κ(H_H) here is ~5e10, so its smallest eigenvalue carries a relative error of order κ·D·eps in any method.
    assertRel(m.harmfulRatio, hRatio, 1e-4, 'harmful ratio');
    assert.ok(Math.abs(m.benignRatio! - 1) < 1e-6, `benign ratio ${m.benignRatio}`);
    const std = m.attacks.find((a) => a.attacker === 'gd-exact-standardized' && a.data === 'harmful')!;
    assert.ok(std.slowdown > 0.5 && std.slowdown < 2, `standardized harmful slowdown ${std.slowdown} should be ~1`);
    assert.notEqual(m.verdict, 'immunized');
  });

  it('RIR-only trap: whitening K_P (θ = (K_P + 0.1·λ_max·I)^{-1/2}) raises RIR but lowers the harmful κ', () => {
    const lmax = jacobi(KP).values[KP.rows - 1];
    const theta = spectralFn(add(KP, eye(KP.rows, 0.1 * lmax)), (l) => 1 / Math.sqrt(l));
    const b = kappaWithRank(jacobi(congr(KP, theta)).values, rankP) / kP0;
    const h = kappaWithRank(jacobi(congr(KH, theta)).values, rankH) / kH0;
    assert.ok(h < 1 && h / b > 1, `precondition: harmful ratio ${h} < 1 and RIR ${h / b} > 1`);
    const m = evaluateTheta(input(), theta, opts).metrics;
    assertRel(m.harmfulRatio, h, 1e-6, 'harmful ratio');
    assertRel(m.rir, h / b, 1e-6, 'RIR');
    assert.notEqual(m.verdict, 'immunized');
  });

  it('whitening both Gram matrices (θ = (K_P + K_H + 0.01·λ_max·I)^{-1/2}) is not immunization', () => {
    const S = add(KP, KH);
    const lmax = jacobi(S).values[S.rows - 1];
    const theta = spectralFn(add(S, eye(S.rows, 0.01 * lmax)), (l) => 1 / Math.sqrt(l));
    const h = kappaWithRank(jacobi(congr(KH, theta)).values, rankH) / kH0;
    assert.ok(h < 1, `precondition: harmful ratio ${h} < 1`);
    const m = evaluateTheta(input(), theta, opts).metrics;
    assertRel(m.harmfulRatio, h, 1e-6, 'harmful ratio');
    assert.notEqual(m.verdict, 'immunized');
  });

  it(
    'κ after θ counts rank(K) eigenvalues: θ = (K_P + 1e-3·λ_max·I)^{-1/2} amplifies the null space of K_P',
    {
    },
    () => {
      const lmax = jacobi(KP).values[KP.rows - 1];
      const theta = spectralFn(add(KP, eye(KP.rows, 1e-3 * lmax)), (l) => 1 / Math.sqrt(l));
      const kP1 = kappaWithRank(jacobi(congr(KP, theta)).values, rankP);
      const m = evaluateTheta(input(), theta, opts).metrics;
      assertRel(m.kappa.benign.after, kP1, 1e-6, 'κ(H_P) after');
    },
  );
});
