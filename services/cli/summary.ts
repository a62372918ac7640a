import type { Metrics } from '../../models/engine/index.js';
import { slowdownText } from '../../models/engine/index.js';

const PAPER_TABLE1 = { harmfulRatio: 18.92, benignRatio: 0.053, rir: 356.2 };

const fmt = (x: number | null | undefined) =>
  x === null || x === undefined ? 'n/a' : Math.abs(x) >= 1e4 || Math.abs(x) < 1e-2 ? x.toExponential(3) : x.toFixed(3);

interface DeepSummary {
  draws: number;
  sampleSize: number;
  rir: { mean: number | null; std: number | null };
  harmfulRatio: { mean: number | null; std: number | null };
  benignRatio: { mean: number | null; std: number | null };
  training: { steps: number; accepted: number };
  benignAccuracy?: { before: number | null; after: number | null; rows: number; heldOut: string | null };
}

/**
 * What a run printed, for a local run and for a job fetched from the service alike: the ratios (each labelled with
 * the κ rule it uses), RIR*, κ(θ), benign quality, every attacker with its status, the time split and the verdict.
 */
export function summaryLines(m: Metrics, opts: { paperRow?: boolean } = {}): string[] {
  const row = (label: string, h: number | null | undefined, b: number | null | undefined, r: number | null | undefined, note = '') =>
    `${label.padEnd(19)}${fmt(h).padEnd(18)}${fmt(b).padEnd(17)}${fmt(r).padEnd(11)}${note}`.trimEnd();
  const lines = [
    `method ${m.method}   D=${m.dim}   rows benign ${m.rows.benign}, harmful ${m.rows.harmful}   OpenBLAS core ${m.openblasCore}`,
    `${''.padEnd(19)}${'harmful ratio ↑'.padEnd(18)}${'benign ratio ↓'.padEnd(17)}RIR ↑`,
  ];
  const robust = '(rank-aware κ: eigenvalues above D·ε·λ_max; the verdict uses it)';
  if (opts.paperRow) {
    // The comparison with the paper uses the paper's own κ rule on both sides.
    lines.push(row('paper Table 1', PAPER_TABLE1.harmfulRatio, PAPER_TABLE1.benignRatio, PAPER_TABLE1.rir, "(the paper's κ rule: S + 1e-6·I)"));
    lines.push(
      row(
        'ours, same rule',
        m.paperConvention.harmfulRatio,
        m.paperConvention.benignRatio,
        m.paperConvention.rir,
        "(our θ, the paper's κ rule: the like-for-like comparison)",
      ),
    );
    lines.push(row('ours', m.harmfulRatio, m.benignRatio, m.rir, robust));
  } else {
    lines.push(row('immunize (ours)', m.harmfulRatio, m.benignRatio, m.rir, robust));
  }
  const deep = (m as Metrics & { deep?: DeepSummary; tfjsBackend?: string; checkpoint?: { maxTailFeatureDiff?: number } }).deep;
  if (deep) {
    const ms = (v: { mean: number | null; std: number | null }) => `${fmt(v.mean)} ± ${fmt(v.std)}`;
    const extra = m as Metrics & { tfjsBackend?: string; checkpoint?: { maxTailFeatureDiff?: number } };
    lines.push(
      `last block (${deep.draws} draws of ${deep.sampleSize}): harmful ratio ${ms(deep.harmfulRatio)}, benign ratio ${ms(deep.benignRatio)}, RIR ${ms(deep.rir)}`,
    );
    lines.push(
      `tfjs backend ${extra.tfjsBackend ?? 'n/a'}, ${deep.training.accepted}/${deep.training.steps} steps kept, immunized.onnx vs trained block: max |Δfeature| ${fmt(extra.checkpoint?.maxTailFeatureDiff)}`,
    );
  } else {
    const reference = m.warnings.some((w) => w.field === 'rirBound');
    lines.push(
      `RIR* ${fmt(m.rirBound)}: ${reference ? 'a reference value (K_P is rank-deficient, so RIR can exceed it)' : 'the largest RIR any invertible linear θ can reach (≤ 1: immunization is impossible)'}`,
    );
    lines.push(`κ(θ) ${fmt(m.thetaCondition)} (budget ${fmt(m.kappaBudget)}: a larger κ(θ) would stretch unused directions and break float32 deployment)`);
  }
  if (deep?.benignAccuracy) {
    // Last-block mode scores the model's own head, before and after its block was trained, on images it did not train on.
    const a = deep.benignAccuracy;
    const where = a.heldOut === 'benignTest' ? 'the --benign-test images' : (a.heldOut ?? 'held-out images');
    lines.push(`benign accuracy of the model's own head on ${a.rows} held-out images (${where}): before ${fmt(a.before)}, after ${fmt(a.after)}`);
  } else if (m.benignQuality.metric) {
    const q = m.benignQuality;
    lines.push(
      `benign ${q.metric} of the best linear probe on the benign rows: before θ ${fmt(q.before)}, after θ ${fmt(q.after)}` +
        (q.test != null ? `; on the held-out --benign-test rows, after θ: ${fmt(q.test)}` : ''),
    );
  }
  lines.push(optimizerLine(m));
  lines.push('attack steps to target (raw → immunized; ≥ ×N: the run stopped at its cap, so N is a lower bound; below ×1 is a speed-up):');
  for (const a of m.attacks) {
    lines.push(
      `  ${a.attacker.padEnd(22)} ${a.data.padEnd(8)} ${String(a.stepsRaw).padStart(6)} → ${String(a.stepsImmunized).padStart(6)}${a.capped ? ' (cap)' : '      '}  ${slowdownText(a).padEnd(18)} ${a.status}`,
    );
  }
  lines.push(`engine time ${m.timings.engineSeconds.toFixed(3)} s (θ ${m.timings.solveSeconds.toFixed(3)} s, attacks ${m.timings.attackSeconds.toFixed(3)} s)`);
  lines.push(`verdict: ${m.verdict.toUpperCase()}`);
  for (const r of m.verdictReasons) lines.push(`  - ${r}`);
  for (const note of m.verdictNotes ?? []) lines.push(`  note: ${note}`);
  return lines;
}

/** How the optimizer stopped, and whether that matters: the verdict, not the stop reason, says whether θ works. */
function optimizerLine(m: Metrics): string {
  const o = m.optimizer;
  if (!o) return 'optimizer: n/a';
  switch (o.stopReason) {
    case 'passed-screen':
      return `optimizer: ${o.steps} candidate θ's screened; the one chosen passed every check of the verdict`;
    case 'best-of-grid':
      return `optimizer: ${o.steps} candidate θ's screened, none passed every check; the closest is kept (the verdict below names what binds)`;
    case 'step-cap':
      return `optimizer: stopped at its step cap (${o.steps} steps); the cap only limits the search: the verdict below says whether θ works (--steps N searches longer)`;
    default:
      return `optimizer: ${o.steps} steps, stopped by ${o.stopReason}`;
  }
}
