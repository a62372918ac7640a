/**
 * The error table: every domain reason has exactly one code, HTTP status and retry class, every code one status and
 * one retry class, and the job machinery reports each reason with its table code.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BackboneError, type BackboneErrorReason } from '../../models/backbones/errors.js';
import { DeepError, type DeepErrorReason } from '../../models/deep/errors.js';
import { CancelledError } from '../../models/engine/progress.js';
import { DataError, type DataErrorCode } from '../../models/io/errors.js';
import { LinalgError } from '../../models/linalg/errors.js';
import type { LinalgErrorCode } from '../../models/linalg/types.js';
import {
  codeClass,
  CodedError,
  ERROR_CODES,
  ERROR_TABLE,
  errorClass,
  errorReasons,
  isErrorReason,
  reasonOf,
  type ErrorReason,
} from '../../workers/errorTable.js';
import { describeJobError, jobErrorReason } from '../../workers/jobErrors.js';
import { SpecError } from '../../workers/jobSpec.js';
import { PermanentJobError } from '../../workers/ports.js';
import { UnknownJobError } from '../../workers/registry.js';

/** The error a component raises for a reason: the models' own classes where they exist, CodedError otherwise. */
function raise(reason: ErrorReason): unknown {
  const [domain, name] = reason.split('.');
  switch (domain) {
    case 'data':
      return new DataError(name as DataErrorCode, reason);
    case 'backbone':
      return new BackboneError(name as BackboneErrorReason, reason);
    case 'deep':
      return new DeepError(name as DeepErrorReason, reason);
    case 'linalg':
      return new LinalgError(name as LinalgErrorCode, reason);
  }
  if (reason === 'spec.INVALID') return new SpecError(reason);
  if (reason === 'job.CANCELLED') return new CancelledError();
  if (reason === 'job.UNKNOWN') return new UnknownJobError('nope');
  if (reason === 'job.INTERNAL') return new Error('ECONNRESET');
  return new CodedError(reason, reason);
}

describe('error table', () => {
  it('maps every domain reason to exactly one code, status and retry class', () => {
    const reasons = errorReasons();
    assert.equal(new Set(reasons).size, reasons.length);
    const expected = Object.entries(ERROR_TABLE).flatMap(([domain, names]) => Object.keys(names).map((n) => `${domain}.${n}`));
    assert.deepEqual([...reasons].sort(), expected.sort());
    for (const reason of reasons) {
      assert.ok(isErrorReason(reason), reason);
      const c = errorClass(reason);
      assert.equal(c.reason, reason);
      assert.match(c.code, /^[a-z]+(_[a-z]+)*$/, `${reason}: ${c.code} is lower_snake_case`);
      const byCode = ERROR_CODES[c.code];
      assert.ok(byCode, `${reason}: ${c.code} is in ERROR_CODES`);
      assert.deepEqual({ status: c.status, retry: c.retry }, byCode, reason);
      assert.ok(Number.isInteger(c.status) && c.status >= 400 && c.status < 600, `${reason}: status ${c.status}`);
      assert.ok(c.retry === 'permanent' || c.retry === 'retryable', reason);
      assert.equal(c.permanent, c.retry === 'permanent', reason);
      // A client error is permanent; only a server-side failure is worth a retry.
      assert.equal(c.permanent, c.status < 500, `${reason}: ${c.status} and ${c.retry}`);
      assert.deepEqual(errorClass(reason), c, `${reason}: the same answer every time`);
    }
    assert.equal(isErrorReason('backbone.NOPE'), false);
    assert.throws(() => errorClass('backbone.NOPE' as ErrorReason), RangeError);
  });

  it('gives each code one status and one retry class, and uses every code', () => {
    const seen = new Map<string, string>();
    for (const reason of errorReasons()) {
      const { code, status, retry } = errorClass(reason);
      const key = `${status}/${retry}`;
      assert.equal(seen.get(code) ?? key, key, `${code} has one status and retry class`);
      seen.set(code, key);
    }
    assert.deepEqual([...seen.keys()].sort(), Object.keys(ERROR_CODES).sort(), 'every code is some reason’s');
    assert.equal(codeClass('not_a_code'), null);
    assert.deepEqual(codeClass('engine_crashed'), { status: 500, retry: 'retryable' });
  });

  it('recognises each reason in the error that raises it, and a job reports the table code', () => {
    for (const reason of errorReasons()) {
      const err = raise(reason);
      assert.equal(jobErrorReason(err), reason, `${reason} from ${(err as Error).name}`);
      const c = errorClass(reason);
      assert.deepEqual(describeJobError(err), { code: c.code, message: (err as Error).message, permanent: c.permanent }, reason);
      // CodedError carries any reason unchanged.
      const coded = new CodedError(reason, 'm');
      assert.equal(reasonOf(coded), reason);
      assert.deepEqual([coded.code, coded.status, coded.permanent], [c.code, c.status, c.permanent], reason);
    }
    assert.equal(reasonOf(new Error('plain')), null);
    assert.equal(reasonOf('a string'), null);
  });

  it('keeps the codes a backbone check gives at submit for the same reasons in a job', () => {
    // Checked at submit (POST /v1/jobs answers 400 with these) and again by the job when it loads the backbone.
    const atSubmit: Array<[BackboneErrorReason | DeepErrorReason, string]> = [
      ['NO_CLASSIFIER', 'no_classifier'],
      ['UNKNOWN_TENSOR', 'unknown_tensor'],
      ['FEATURE_NOT_LINEAR', 'feature_not_linear'],
      ['MODEL_INPUT', 'model_input'],
      ['ONNX_UNSUPPORTED', 'onnx_unsupported'],
      ['ONNX_MALFORMED', 'invalid_onnx'],
      ['IMAGE_SIZE', 'image_size'],
      ['IMAGES_EMPTY', 'images_empty'],
      ['TAR_MALFORMED', 'invalid_tar'],
      ['LABELS', 'label_mismatch'],
    ];
    for (const [reason, code] of atSubmit) assert.equal(describeJobError(new BackboneError(reason as BackboneErrorReason, 'm')).code, code, reason);
    assert.equal(describeJobError(new DeepError('UNSUPPORTED_OPERATOR', 'm')).code, 'unsupported_operator');
    assert.equal(describeJobError(new DeepError('CUT_TENSOR', 'm')).code, 'cut_tensor');
  });

  it('falls back safely: an unknown DataError code is invalid_data, a PermanentJobError keeps its code', () => {
    assert.equal(reasonOf(new DataError('WHAT' as DataErrorCode, 'm')), 'data.BAD_FORMAT');
    // A BackboneError whose reason the table does not know is still bad input, never a retry.
    assert.equal(reasonOf(new BackboneError('NEW_REASON' as BackboneErrorReason, 'm')), 'data.BAD_FORMAT');
    assert.deepEqual(describeJobError(new PermanentJobError('not_found', 'gone')), { code: 'not_found', message: 'gone', permanent: true });
    assert.deepEqual(describeJobError(new DataError('IO_ERROR', 'disk')), { code: 'io_error', message: 'disk', permanent: false });
  });
});
