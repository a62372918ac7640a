export const SECTIONS = ['house', 'kernels', 'pixels', 'backbone'] as const;
export type Section = (typeof SECTIONS)[number];

export interface BenchArgs {
  quick: boolean;
  json: boolean;
  help: boolean;
  sections: Section[];
  /** The trained backbone's folder for the backbone section; absent: out/fixtures/resnet18-fmnist. */
  backboneDir?: string;
}

export const USAGE = `usage: npm run bench -- [--quick] [--json] [--only house|kernels|pixels|backbone[,…]] [--backbone-dir DIR]

  --quick          fewer repetitions, no paper method, no plain-JS eigensolvers at D = 768
  --json           print one JSON document (the same figures) instead of the tables
  --only           run only the named sections (repeatable or comma-separated)
  --backbone-dir   the backbone section's trained backbone and image sets (default: out/fixtures/resnet18-fmnist,
                   made by /usr/bin/python3 scripts/fixtures/trainBackbone.py [--out DIR]); when they are missing
                   the section says how to make them and is skipped`;

export class ArgsError extends Error {}

function dirValue(value: string | undefined): string {
  if (!value || value.startsWith('--')) throw new ArgsError('--backbone-dir needs a folder');
  return value;
}

export function parseArgs(argv: readonly string[]): BenchArgs {
  const out: BenchArgs = { quick: false, json: false, help: false, sections: [] };
  const addSections = (value: string | undefined) => {
    if (!value) throw new ArgsError('--only needs a section name');
    for (const part of value.split(',')) {
      const name = part.trim();
      if (!(SECTIONS as readonly string[]).includes(name)) {
        throw new ArgsError(`unknown section '${name}'; expected one of ${SECTIONS.join(', ')}`);
      }
      if (!out.sections.includes(name as Section)) out.sections.push(name as Section);
    }
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') out.quick = true;
    else if (arg === '--json') out.json = true;
    else if (arg === '--help' || arg === '-h') out.help = true;
    else if (arg === '--only') addSections(argv[++i]);
    else if (arg.startsWith('--only=')) addSections(arg.slice('--only='.length));
    else if (arg === '--backbone-dir') out.backboneDir = dirValue(argv[++i]);
    else if (arg.startsWith('--backbone-dir=')) out.backboneDir = dirValue(arg.slice('--backbone-dir='.length));
    else throw new ArgsError(`unknown argument '${arg}'`);
  }
  if (out.sections.length === 0) out.sections = [...SECTIONS];
  else out.sections = SECTIONS.filter((s) => out.sections.includes(s));
  return out;
}
