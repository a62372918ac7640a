/** Seeded uniform [0, 1) generator (mulberry32), so runs with the same seed repeat exactly. */
export function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded standard normal generator (Box–Muller over `uniform`). */
export function gaussian(seed: number): () => number {
  const next = uniform(seed);
  return () => {
    let u = next();
    while (u <= 0) u = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
  };
}
