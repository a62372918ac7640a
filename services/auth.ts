/**
 * API keys. The configured keys are hashed at boot and only the hashes are kept; a presented key is hashed and
 * compared with every stored hash in constant time. Each key is a tenant; the admin key sees every tenant.
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

export class ApiKeys {
  private readonly keys: StoredKey[];

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

  /** The principal a key stands for, or null. Every stored hash is compared, whatever matches first. */
  verify(presented: string): Principal | null {
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
