/**
 * API keys. The configured keys are hashed at boot; a presented key is hashed and compared with every stored hash in
 * constant time, once: a key that matched is remembered for the next requests (the set of keys is fixed at boot, so
 * the memory never goes stale). Each key is a tenant; the admin key sees every tenant.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { TenantKey } from './config.js';

export interface Principal {
  tenant: string;
  admin: boolean;
}

interface StoredKey {
  hash: Buffer;
  principal: Principal;
}

const ADMIN_TENANT = '*admin';

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** How many verified keys ApiKeys remembers. */
const VERIFIED_KEPT = 1024;

export class ApiKeys {
  private readonly keys: StoredKey[];
  /** Keys that matched, by the key as presented: an ES private field, so that neither JSON nor inspect shows it. */
  readonly #verified = new Map<string, Principal>();

  constructor(keys: TenantKey[], adminKey: string | null) {
    this.keys = keys.map((k) => ({ hash: sha256(k.key), principal: { tenant: k.tenant, admin: false } }));
    if (adminKey) this.keys.push({ hash: sha256(adminKey), principal: { tenant: ADMIN_TENANT, admin: true } });
  }

  get size(): number {
    return this.keys.length;
  }

  /**
   * Keyed digests of the configured keys, each with its principal. A dashboard session records the digest of the
   * key it signed in with, so that it ends when that key leaves the configuration.
   */
  digests(secret: string): Map<string, Principal> {
    return new Map(this.keys.map((k) => [keyDigest(k.hash, secret), k.principal]));
  }

  /**
   * The principal a key stands for, or null. Every stored hash is compared, whatever matches first. Keys that
   * matched are remembered (at most VERIFIED_KEPT, the oldest forgotten first), so that a client's every request
   * does not hash its key again; a key that matched nothing is hashed each time.
   */
  verify(presented: string): Principal | null {
    const known = this.#verified.get(presented);
    if (known) return known;
    const found = this.#compare(presented);
    if (found) {
      if (this.#verified.size >= VERIFIED_KEPT) this.#verified.delete(this.#verified.keys().next().value!);
      this.#verified.set(presented, found);
    }
    return found;
  }

  #compare(presented: string): Principal | null {
    const h = sha256(presented);
    let found: Principal | null = null;
    for (const k of this.keys) {
      if (timingSafeEqual(h, k.hash) && found === null) found = k.principal;
    }
    return found;
  }
}

function keyDigest(hash: Buffer, secret: string): string {
  return createHmac('sha256', secret).update(hash).digest('base64url');
}

/** The digest `ApiKeys.digests` lists for this key. */
export function apiKeyDigest(key: string, secret: string): string {
  return keyDigest(sha256(key), secret);
}

/** The key from an `Authorization: Bearer <key>` header, or null when there is none. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return m ? m[1] : null;
}

/** Whether the principal may see a resource owned by `tenant`. */
export function canAccess(p: Principal, tenant: string): boolean {
  return p.admin || p.tenant === tenant;
}
