// Parses `kubectl keyvirt` command lines the way kubectl does: global flags anywhere,
// `--flag value`, `--flag=value`, `-n value`, `-nvalue`, boolean flags without a value
// (or `--flag=true|false`), `--` ends the flags (what follows goes to ssh/scp). Pure:
// a parsed command or a UsageError naming the offending word.
import { UsageError } from './errors.ts';
import { GLOBAL_FLAGS, NOT_YET, verbSpec, type FlagSpec, type VerbSpec } from './verbs.ts';

export type FlagValue = string | number | boolean;

export interface GlobalOptions {
  readonly kubeconfig?: string;
  readonly context?: string;
  readonly namespace?: string;
  readonly requestTimeoutSeconds?: number;
}

export type ParsedCommand =
  | { readonly kind: 'help'; readonly verb?: VerbSpec }
  | {
      readonly kind: 'run';
      readonly verb: VerbSpec;
      readonly positionals: readonly string[];
      readonly flags: ReadonlyMap<string, FlagValue>;
      readonly passThrough: readonly string[];
      readonly global: GlobalOptions;
    };

interface Scan {
  readonly positionals: string[];
  readonly values: Map<string, FlagValue>;
  readonly passThrough: string[];
  sawDoubleDash: boolean;
}

function findFlag(specs: readonly FlagSpec[], word: string, isShort: boolean): FlagSpec | undefined {
  return specs.find((f) => (isShort ? f.short === word : f.name === word));
}

function convert(spec: FlagSpec, raw: string, verb: string | undefined): FlagValue {
  const shown = `--${spec.name}`;
  if (spec.kind === 'string') {
    if (raw === '') throw new UsageError(`flag ${shown} needs a non-empty value`, verb);
    return raw;
  }
  if (spec.kind === 'boolean') {
    if (raw === 'true') return true;
    if (raw === 'false') return false;
    throw new UsageError(`flag ${shown} is true or false, not ${JSON.stringify(raw)}`, verb);
  }
  if (!/^-?\d+$/.test(raw)) throw new UsageError(`flag ${shown} needs a whole number, not ${JSON.stringify(raw)}`, verb);
  const n = Number(raw);
  if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
    throw new UsageError(`flag ${shown} must be between ${String(spec.min ?? '-∞')} and ${String(spec.max ?? '∞')}, not ${raw}`, verb);
  }
  return n;
}

/** Splits `--name=value` / `-nvalue` into the flag word and an inline value. */
function splitFlagWord(word: string): { name: string; isShort: boolean; inline: string | undefined } {
  if (word.startsWith('--')) {
    const eq = word.indexOf('=');
    return eq < 0 ? { name: word.slice(2), isShort: false, inline: undefined } : { name: word.slice(2, eq), isShort: false, inline: word.slice(eq + 1) };
  }
  const rest = word.slice(2);
  return { name: word.slice(1, 2), isShort: true, inline: rest === '' ? undefined : rest.replace(/^=/, '') };
}

function scan(argv: readonly string[], specs: readonly FlagSpec[], verbName: string | undefined): Scan {
  const out: Scan = { positionals: [], values: new Map(), passThrough: [], sawDoubleDash: false };
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] ?? '';
    if (word === '--') {
      out.sawDoubleDash = true;
      out.passThrough.push(...argv.slice(i + 1));
      break;
    }
    if (!word.startsWith('-') || word === '-') {
      out.positionals.push(word);
      continue;
    }
    const { name, isShort, inline } = splitFlagWord(word);
    const spec = findFlag(specs, name, isShort);
    if (spec === undefined) {
      const where = verbName === undefined ? '' : ` for "${verbName}"`;
      throw new UsageError(`unknown flag ${isShort ? `-${name}` : `--${name}`}${where}`, verbName);
    }
    let raw = inline;
    if (raw === undefined && spec.kind !== 'boolean') {
      raw = argv[i + 1];
      if (raw === undefined) throw new UsageError(`flag --${spec.name} needs a value (${spec.valueName ?? 'VALUE'})`, verbName);
      i++;
    }
    out.values.set(spec.name, convert(spec, raw ?? 'true', verbName));
  }
  return out;
}

function checkPositionals(verb: VerbSpec, positionals: readonly string[]): void {
  const required = verb.args.filter((a) => a.optional !== true).length;
  const variadic = verb.args.some((a) => a.variadic === true);
  if (positionals.length < required) {
    const missing = verb.args.slice(positionals.length).filter((a) => a.optional !== true).map((a) => a.name);
    throw new UsageError(`"${verb.name}" needs ${missing.join(' and ')}`, verb.name);
  }
  if (!variadic && positionals.length > verb.args.length) {
    const extra = positionals.slice(verb.args.length).map((p) => JSON.stringify(p)).join(' ');
    throw new UsageError(`"${verb.name}" takes ${String(verb.args.length)} argument(s); unexpected ${extra}`, verb.name);
  }
}

function globalOptions(values: ReadonlyMap<string, FlagValue>): GlobalOptions {
  const str = (k: string): string | undefined => {
    const v = values.get(k);
    return typeof v === 'string' ? v : undefined;
  };
  const timeout = values.get('request-timeout');
  return {
    ...(str('kubeconfig') !== undefined ? { kubeconfig: str('kubeconfig') } : {}),
    ...(str('context') !== undefined ? { context: str('context') } : {}),
    ...(str('namespace') !== undefined ? { namespace: str('namespace') } : {}),
    ...(typeof timeout === 'number' ? { requestTimeoutSeconds: timeout } : {}),
  };
}

/** The verb is the first word that is not a flag (nor a global flag's value). */
function findVerb(argv: readonly string[]): { name: string | undefined; index: number } {
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] ?? '';
    if (word === '--') break;
    if (!word.startsWith('-')) return { name: word, index: i };
    const { name, isShort, inline } = splitFlagWord(word);
    const spec = findFlag(GLOBAL_FLAGS, name, isShort);
    if (spec !== undefined && spec.kind !== 'boolean' && inline === undefined) i++;
  }
  return { name: undefined, index: -1 };
}

/** Parses the arguments after the program name. */
export function parseCommandLine(argv: readonly string[]): ParsedCommand {
  const found = findVerb(argv);
  if (found.name === undefined || found.name === 'help') {
    const topic = found.name === 'help' ? argv[found.index + 1] : undefined;
    if (topic === undefined) {
      const onlyGlobal = scan(argv.filter((_, i) => i !== found.index), GLOBAL_FLAGS, undefined);
      if (onlyGlobal.values.get('help') === true || found.name === 'help' || argv.length === 0) return { kind: 'help' };
      throw new UsageError('no verb given');
    }
    const spec = verbSpec(topic);
    if (spec === undefined) throw unknownVerb(topic);
    return { kind: 'help', verb: spec };
  }
  const verb = verbSpec(found.name);
  if (verb === undefined) throw unknownVerb(found.name);
  const rest = argv.filter((_, i) => i !== found.index);
  const scanned = scan(rest, [...GLOBAL_FLAGS, ...verb.flags], verb.name);
  if (scanned.values.get('help') === true) return { kind: 'help', verb };
  if (scanned.sawDoubleDash && verb.passThrough === undefined) {
    throw new UsageError(`"${verb.name}" takes no arguments after --`, verb.name);
  }
  checkPositionals(verb, scanned.positionals);
  return {
    kind: 'run',
    verb,
    positionals: scanned.positionals,
    flags: scanned.values,
    passThrough: scanned.passThrough,
    global: globalOptions(scanned.values),
  };
}

function unknownVerb(name: string): UsageError {
  const later = NOT_YET.find((v) => v.name === name);
  if (later !== undefined) return new UsageError(`"${name}" is not available: ${later.reason}`);
  return new UsageError(`unknown verb "${name}"`);
}

/** Typed reads of parsed flags. */
export function stringFlag(flags: ReadonlyMap<string, FlagValue>, name: string): string | undefined {
  const v = flags.get(name);
  return typeof v === 'string' ? v : undefined;
}
export function numberFlag(flags: ReadonlyMap<string, FlagValue>, name: string): number | undefined {
  const v = flags.get(name);
  return typeof v === 'number' ? v : undefined;
}
export function booleanFlag(flags: ReadonlyMap<string, FlagValue>, name: string): boolean {
  return flags.get(name) === true;
}
