/** The engine's surface: what the rest of the project (other models/ folders, workers/, services/, scripts/) may use. */
export { slowdownText, startAttackSuite } from './attacks.js';
export { column } from './dense.js';
export { GRADIENT_DEFAULTS, gradientImmunize } from './gradientMethod.js';
export {
  ENGINE_DEFAULTS,
  evaluateTheta,
  immunize,
  type Curves,
  type EngineInput,
  type EngineOptions,
  type EngineResult,
  type LabelledData,
  type Method,
  type Metrics,
} from './immunize.js';
export { CancelledError, checkAbort, type StepEvent, type StepObserver } from './progress.js';
export { gaussian, uniform } from './random.js';
export { rIll, rWell } from './regularizers.js';
export { sanitize, type Warning } from './report.js';
export { attackRows, conditioningReport, curvesOf, runAttackSuites, verdictFields, type Spectra } from './scoring.js';
export { conditioningFromSpectrum } from './spectrum.js';
export { StatsAccumulator, statsOf, type SufficientStats } from './stats.js';
export { encodeTargets, gaussianTargets, inferTask } from './targets.js';
export { VERDICT_THRESHOLDS } from './verdict.js';
