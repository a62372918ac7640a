/**
 * `--help` and unknown options for the scripts that take `--name value` pairs by hand: a long soak or bench must
 * not start because its flags were misspelled.
 */
export function handleUsage(argv: string[], known: { flags?: string[]; values?: string[] }, usage: string): boolean {
  const flags = new Set(known.flags ?? []);
  const values = new Set(known.values ?? []);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(usage + '\n');
      return false;
    }
    const name = a.startsWith('--') ? a.slice(2) : null;
    if (name !== null && values.has(name)) {
      i++;
      continue;
    }
    if (name !== null && flags.has(name)) continue;
    process.stderr.write(`unknown option ${a}\n${usage}\n`);
    process.exitCode = 2;
    return false;
  }
  return true;
}
