/** A job spec that does not validate. Its own module, so that classifying errors does not load the schema library. */
export class SpecError extends Error {
  readonly code = 'BAD_SPEC';
}
