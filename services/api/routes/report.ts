/** A job's report.html, shown in the browser (the artifacts route offers the same file as a download). */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { REPORT_CONTENT_TYPE } from '../../../workers/report/render.js';
import { notFound } from '../../errors.js';
import { errorResponses, IdParams } from '../schemas.js';

/** The report is inline CSS and SVG; it may load and run nothing. */
export const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'";

export async function reportRoutes(fastify: FastifyInstance): Promise<void> {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/jobs/:id/report',
    {
      schema: {
        tags: ['jobs'],
        summary: "The job's report.html (spectra, κ over the steps, attack curves), to view in a browser",
        params: IdParams,
        produces: ['text/html'],
        response: { ...errorResponses(401, 404, 503) },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      const r = await app.svc.jobs.mustGet(req.principal!, id);
      const artifact = r.artifacts.find((a) => a.name === 'report.html');
      if (!artifact) throw notFound(`job ${id} has no report${r.status === 'completed' ? '' : ` yet (the job is ${r.status})`}`);
      const etag = `"${artifact.sha256}"`;
      void reply
        .header('etag', etag)
        .header('cache-control', 'private, no-cache')
        .header('content-security-policy', REPORT_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('x-frame-options', 'DENY')
        .header('referrer-policy', 'no-referrer');
      const match = req.headers['if-none-match'];
      if (typeof match === 'string' && match.split(',').some((t) => t.trim() === etag)) return reply.code(304).send();
      let opened;
      try {
        opened = await app.svc.store.openArtifact(r.id, artifact.file);
      } catch {
        throw notFound(`the report of job ${id} is gone`);
      }
      return reply.type(REPORT_CONTENT_TYPE).header('content-length', String(opened.size)).send(opened.stream);
    },
  );
}
