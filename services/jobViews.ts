/**
 * A job's rendering (the bytes of its GET document), made once per change of its record. Reads under load ask for
 * the same jobs again and again, and between two changes parsing the record, building its document and serializing
 * it give the same text each time. A rendering is reused only for the very record text it was made from, as Redis
 * returned it: any change to any field renders anew, so a reused rendering is never stale.
 */
export class JobViews {
  private readonly entries = new Map<string, { recordText: string; tenant: string; view: string }>();

  /** `capacity` renderings are kept; past that, the one stored first goes. */
  constructor(private readonly capacity = 1000) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error('JobViews: capacity must be a positive integer');
  }

  /** The rendering made from exactly this record text, with the record's tenant; undefined when there is none. */
  get(id: string, recordText: string): { tenant: string; view: string } | undefined {
    const e = this.entries.get(id);
    return e !== undefined && e.recordText === recordText ? e : undefined;
  }

  set(id: string, recordText: string, tenant: string, view: string): void {
    if (this.entries.has(id)) this.entries.delete(id);
    else if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(id, { recordText, tenant, view });
  }

  /** How many renderings are kept. */
  get size(): number {
    return this.entries.size;
  }
}
