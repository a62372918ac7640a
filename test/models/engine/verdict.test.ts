import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import type { Mat } from '../../../models/linalg/index.js';
import type { HousePriceData } from '../../../models/io/housePrice.js';
import { decideVerdict, VERDICT_THRESHOLDS } from '../../../models/engine/verdict.js';
import { FIRST_ORDER_ATTACKERS, type AttackOutcome } from '../../../models/engine/attacks.js';
import { evaluateTheta, type EngineOptions } from '../../../models/engine/immunize.js';
import { add, assertRel, congr, eye, gram, jacobi, kappaWithRank, robustKappa, spectralFn } from '../../helpers/reference.js';
import { housePrice, zeroColumns } from '../../helpers/housePrice.js';

type AttackLike = Pick<AttackOutcome, 'attacker' | 'data' | 'slowdown' | 'status'>;

/** Every first-order attacker on both sides; the z-scored exact-line-search one gets the given slowdowns. */
function attacks(harmful: number, benign: number): AttackLike[] {
  const out: AttackLike[] = [];
  for (const attacker of FIRST_ORDER_ATTACKERS) {
    const std = attacker === 'gd-exact-standardized';
    out.push({ attacker, data: 'harmful', slowdown: std ? harmful : 1000, status: 'measured' });
    out.push({ attacker, data: 'benign', slowdown: std ? benign : 0.01, status: 'measured' });
  }
  return out;
}

function patched(list: AttackLike[], attacker: AttackLike['attacker'], data: 'benign' | 'harmful', patch: Partial<AttackLike>): AttackLike[] {
  return list.map((a) => (a.attacker === attacker && a.data === data ? { ...a, ...patch } : a));
}

const good = { benignRatio: 0.5, harmfulRatio: 300, rirBound: 1e4, attacks: attacks(50, 0.9) };

describe('verdict: decideVerdict cases', () => {
  const t = VERDICT_THRESHOLDS;

  it('all criteria met → immunized, no reasons', () => {
    const v = decideVerdict(good);
    assert.equal(v.verdict, 'immunized');
    assert.deepEqual(v.reasons, []);
    assert.equal(v.kappaCriterion, 'tested');
  });

  it('the documented thresholds: harmful ratio ≥ 2, benign ratio ≤ 1, standardized slowdowns ≥ 2 and ≤ 1.25', () => {
    assert.equal(decideVerdict({ ...good, harmfulRatio: 1.9 }).verdict, 'weak');
    assert.equal(decideVerdict({ ...good, harmfulRatio: 2.1 }).verdict, 'immunized');
    assert.equal(decideVerdict({ ...good, benignRatio: 1.05 }).verdict, 'weak');
    assert.equal(decideVerdict({ ...good, attacks: attacks(1.9, 0.9) }).verdict, 'weak');
    assert.equal(decideVerdict({ ...good, attacks: attacks(2.1, 1.2) }).verdict, 'immunized');
    assert.equal(decideVerdict({ ...good, attacks: attacks(50, 1.3) }).verdict, 'weak');
  });

  it('every first-order attacker counts: one of them too fast on either side makes it weak, naming it', () => {
    for (const attacker of FIRST_ORDER_ATTACKERS) {
      const harmful = decideVerdict({ ...good, attacks: patched(good.attacks, attacker, 'harmful', { slowdown: 1.11 }) });
      assert.equal(harmful.verdict, 'weak', attacker);
      assert.ok(
        harmful.reasons.some((r) => r.startsWith(`${attacker} on the harmful data`)),
        harmful.reasons.join('; '),
      );
      const benign = decideVerdict({ ...good, attacks: patched(good.attacks, attacker, 'benign', { slowdown: 1.3 }) });
      assert.equal(benign.verdict, 'weak', attacker);
      assert.ok(
        benign.reasons.some((r) => r.startsWith(`${attacker} on the benign data`)),
        benign.reasons.join('; '),
      );
    }
  });

  it('newton is the reported limit, never counted', () => {
    const withNewton: AttackLike[] = [...good.attacks, { attacker: 'newton', data: 'harmful', slowdown: 1, status: 'measured' }];
    assert.equal(decideVerdict({ ...good, attacks: withNewton }).verdict, 'immunized');
  });

  it('an unmeasured attacker is never a pass, on either side, whatever its slowdown field says', () => {
    for (const data of ['harmful', 'benign'] as const) {
      const v = decideVerdict({ ...good, attacks: patched(good.attacks, 'adam', data, { status: 'unmeasured', slowdown: null }) });
      assert.equal(v.verdict, 'weak');
      assert.ok(
        v.reasons.some((r) => r.includes(`adam on the ${data} data is unmeasured`)),
        v.reasons.join('; '),
      );
      const stale = decideVerdict({ ...good, attacks: patched(good.attacks, 'adam', data, { status: 'unmeasured', slowdown: data === 'harmful' ? 5 : 1 }) });
      assert.equal(stale.verdict, 'weak');
    }
  });

  it('a capped harmful run beyond the threshold is a lower bound that counts', () => {
    const v = decideVerdict({ ...good, attacks: patched(good.attacks, 'adam', 'harmful', { status: 'capped', slowdown: 10 }) });
    assert.equal(v.verdict, 'immunized', v.reasons.join('; '));
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

  it('RIR* ≤ 1 → infeasible when the attackers are not slowed either', () => {
    const slow = attacks(1.5, 0.9);
    assert.equal(decideVerdict({ ...good, attacks: slow, rirBound: 1 }).verdict, 'infeasible');
    assert.equal(decideVerdict({ ...good, attacks: slow, rirBound: 0.3 }).verdict, 'infeasible');
    assert.equal(decideVerdict({ ...good, rirBound: 1.5 }).verdict, 'immunized');
  });

  it('RIR* ≤ 1 with the attackers in fact slowed → weak, not infeasible', () => {
    const v = decideVerdict({ ...good, harmfulRatio: 1.5, rirBound: 0.5 });
    assert.equal(v.verdict, 'weak');
    assert.ok(
      v.reasons.some((r) => r.includes('RIR*')),
      v.reasons.join('; '),
    );
  });

  it('an unknown RIR* (null) does not make it infeasible', () => {
    assert.equal(decideVerdict({ ...good, rirBound: null }).verdict, 'immunized');
  });

  it('κ(K_H) within 2× of 1/rtol: the κ criterion is untestable, said so, and the attackers decide', () => {
    const rtol = 784 * 2.220446049250313e-16;
    const nearCeiling = 0.6 / rtol;
    const v = decideVerdict({ ...good, harmfulRatio: 1.01, harmfulKappaBefore: nearCeiling, rtol });
    assert.equal(v.verdict, 'immunized', v.reasons.join('; '));
    assert.equal(v.kappaCriterion, 'untestable');
    assert.match(v.kappaNote ?? '', /untestable at float64 resolution/);
    // A trained block's features are float32, and the note says so.
    const float32 = decideVerdict({ ...good, harmfulRatio: 1.01, harmfulKappaBefore: nearCeiling, rtol, precision: 'float32' });
    assert.match(float32.kappaNote ?? '', /untestable at float32 resolution: .* the largest κ float32 can resolve/);
    const slowOnly = decideVerdict({ ...good, harmfulRatio: 1.01, harmfulKappaBefore: nearCeiling, rtol, attacks: attacks(1.5, 0.9) });
    assert.equal(slowOnly.verdict, 'weak');
    // Half the ceiling or less: testable, and the ratio counts again.
    const testable = decideVerdict({ ...good, harmfulRatio: 1.01, harmfulKappaBefore: 0.4 / rtol, rtol });
    assert.equal(testable.kappaCriterion, 'tested');
    assert.equal(testable.verdict, 'weak');
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
    assert.ok(std.slowdown! > 0.5 && std.slowdown! < 2, `standardized harmful slowdown ${std.slowdown} should be ~1`);
    assert.notEqual(m.verdict, 'immunized');
  });

  it('a θ that stalls the benign attackers past their caps leaves them unmeasured, and the verdict is never immunized', () => {
    const D = hp.benign.X.cols;
    const theta = eye(D);
    // Squeeze every column but the first: the benign probe needs them, so its runs stop at their caps.
    for (let j = 1; j < D; j++) theta.data[j * D + j] = 1e-3;
    const m = evaluateTheta(input(), theta, opts).metrics;
    const unmeasured = m.attacks.filter((a) => a.status === 'unmeasured');
    assert.ok(unmeasured.length > 0, `statuses: ${m.attacks.map((a) => `${a.attacker}/${a.data}=${a.status}`).join(', ')}`);
    for (const a of unmeasured) {
      assert.equal(a.slowdown, null, `${a.attacker} on ${a.data}: an unmeasured run has no slowdown`);
      assert.ok(a.capped);
    }
    assert.notEqual(m.verdict, 'immunized');
    assert.ok(
      m.verdictReasons.some((r) => r.includes('is unmeasured')),
      m.verdictReasons.join('; '),
    );
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

  it('κ after θ counts rank(K) eigenvalues: θ = (K_P + 1e-3·λ_max·I)^{-1/2} amplifies the null space of K_P', {}, () => {
    const lmax = jacobi(KP).values[KP.rows - 1];
    const theta = spectralFn(add(KP, eye(KP.rows, 1e-3 * lmax)), (l) => 1 / Math.sqrt(l));
    const kP1 = kappaWithRank(jacobi(congr(KP, theta)).values, rankP);
    const m = evaluateTheta(input(), theta, opts).metrics;
    assertRel(m.kappa.benign.after, kP1, 1e-6, 'κ(H_P) after');
  });
});
