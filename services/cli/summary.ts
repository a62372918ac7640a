import type { Metrics } from '../../models/engine/immunize.js';
import { slowdownText } from '../../models/engine/attacks.js';

const PAPER_TABLE1 = { harmfulRatio: 18.92, benignRatio: 0.053, rir: 356.2 };

const fmt = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : Math.abs(x) >= 1e4 || Math.abs(x) < 1e-2 ? x.toExponential(3) : x.toFixed(3));

interface DeepSummary {
  draws: number;
  sampleSize: number;
  rir: { mean: number | null; std: number | null };
  harmfulRatio: { mean: number | null; std: number | null };
  benignRatio: { mean: number | null; std: number | null };
  training: { steps: number; accepted: number };
}

export function summaryLines(m: Metrics, opts: { paperRow?: boolean } = {}): string[] {
  const lines = [
    `method ${m.method}   D=${m.dim}   rows benign ${m.rows.benign}, harmful ${m.rows.harmful}   OpenBLAS core ${m.openblasCore}`,
    `                   harmful ratio ↑   benign ratio ↓   RIR ↑`,
    `immunize (ours)    ${fmt(m.harmfulRatio).padEnd(17)} ${fmt(m.benignRatio).padEnd(16)} ${fmt(m.rir)}`,
  ];
  if (opts.paperRow) {
    lines.push(`paper Table 1      ${fmt(PAPER_TABLE1.harmfulRatio).padEnd(17)} ${fmt(PAPER_TABLE1.benignRatio).padEnd(16)} ${fmt(PAPER_TABLE1.rir)}`);
    lines.push(`paper convention   ${fmt(m.paperConvention.harmfulRatio).padEnd(17)} ${fmt(m.paperConvention.benignRatio).padEnd(16)} ${fmt(m.paperConvention.rir)}   (our θ, the paper's κ rule)`);
  }
  const deep = (m as Metrics & { deep?: DeepSummary; tfjsBackend?: string; checkpoint?: { maxTailFeatureDiff?: number } }).deep;
  if (deep) {
    const ms = (v: { mean: number | null; std: number | null }) => `${fmt(v.mean)} ± ${fmt(v.std)}`;
    const extra = m as Metrics & { tfjsBackend?: string; checkpoint?: { maxTailFeatureDiff?: number } };
    lines.push(`last block (${deep.draws} draws of ${deep.sampleSize}): harmful ratio ${ms(deep.harmfulRatio)}, benign ratio ${ms(deep.benignRatio)}, RIR ${ms(deep.rir)}`);
    lines.push(`tfjs backend ${extra.tfjsBackend ?? 'n/a'}, ${deep.training.accepted}/${deep.training.steps} steps kept, immunized.onnx vs trained block: max |Δfeature| ${fmt(extra.checkpoint?.maxTailFeatureDiff)}`);
  } else {
    const reference = m.warnings.some((w) => w.field === 'rirBound');
    lines.push(`RIR* ${reference ? '(a reference, K_P is rank-deficient)' : 'bound'} ${fmt(m.rirBound)}   κ(θ) ${fmt(m.thetaCondition)} (budget ${fmt(m.kappaBudget)})`);
  }
  if (m.benignQuality.metric) {
    lines.push(`benign ${m.benignQuality.metric}: before ${fmt(m.benignQuality.before)}, after ${fmt(m.benignQuality.after)}${m.benignQuality.test != null ? `, test ${fmt(m.benignQuality.test)}` : ''}`);
  }
  lines.push('attack steps to target (raw → immunized, slowdown; ≥ marks a run stopped at its cap, a lower bound):');
  for (const a of m.attacks) {
    lines.push(`  ${a.attacker.padEnd(22)} ${a.data.padEnd(8)} ${String(a.stepsRaw).padStart(6)} → ${String(a.stepsImmunized).padStart(6)}${a.capped ? ' (cap)' : '      '}  ${slowdownText(a).padEnd(10)} ${a.status}`);
  }
  lines.push(`engine time ${m.timings.engineSeconds.toFixed(3)} s (θ ${m.timings.solveSeconds.toFixed(3)} s, attacks ${m.timings.attackSeconds.toFixed(3)} s)`);
  lines.push(`verdict: ${m.verdict.toUpperCase()}`);
  for (const r of m.verdictReasons) lines.push(`  - ${r}`);
  for (const note of m.verdictNotes ?? []) lines.push(`  note: ${note}`);
  return lines;
}
