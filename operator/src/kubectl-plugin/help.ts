// Help texts, rendered from the verb table: one overview and one page per verb.
import { EXIT } from './errors.ts';
import { GLOBAL_FLAGS, NOT_YET, VERBS, type FlagSpec, type VerbSpec } from './verbs.ts';

function flagLine(f: FlagSpec): string {
  const names = `${f.short !== undefined ? `-${f.short}, ` : '    '}--${f.name}${f.kind === 'boolean' ? '' : ` ${f.valueName ?? 'VALUE'}`}`;
  return `  ${names.padEnd(30)} ${f.description}`;
}

function usageLine(verb: VerbSpec): string {
  const args = verb.args.map((a) => (a.optional === true ? `[${a.name}]` : a.name) + (a.variadic === true ? '...' : '')).join(' ');
  const pass = verb.passThrough !== undefined ? ` [-- ${verb.passThrough} options and arguments]` : '';
  return `kubectl keyvirt ${verb.name}${args === '' ? '' : ` ${args}`} [flags]${pass}`;
}

/** The overview: every verb with its summary, global flags, exit codes. */
export function overviewHelp(): string {
  const width = Math.max(...VERBS.map((v) => v.name.length)) + 2;
  return [
    'kubectl keyvirt: run, reach and move KeyVirt virtual machines.',
    '',
    'Usage: kubectl keyvirt VERB [ARGS] [flags]',
    '',
    'Verbs:',
    ...VERBS.map((v) => `  ${v.name.padEnd(width)} ${v.summary}`),
    '',
    ...(NOT_YET.length === 0 ? [] : ['Not available yet:', ...NOT_YET.map((v) => `  ${v.name.padEnd(width)} ${v.reason}`), '']),
    'Flags of every verb:',
    ...GLOBAL_FLAGS.map(flagLine),
    '',
    exitCodes(),
    '',
    'Run "kubectl keyvirt VERB --help" for a verb\'s flags and examples.',
    '',
  ].join('\n');
}

function exitCodes(): string {
  return [
    'Exit codes:',
    `  ${String(EXIT.ok)} done   ${String(EXIT.failure)} other failure   ${String(EXIT.usage)} bad command line   ${String(EXIT.notFound)} not found`,
    `  ${String(EXIT.forbidden)} not allowed (authentication or RBAC)   ${String(EXIT.conflict)} the VM's state does not allow it   ${String(EXIT.unreachable)} API server unreachable or stream broken`,
  ].join('\n');
}

/** One verb's page: usage, what it does, arguments, flags, examples. */
export function verbHelp(verb: VerbSpec): string {
  const lines = [`${verb.summary}.`, '', `Usage: ${usageLine(verb)}`, '', wrap(verb.details, 88), ''];
  if (verb.args.length > 0) {
    lines.push('Arguments:', ...verb.args.map((a) => `  ${a.name.padEnd(30)} ${a.description}`), '');
  }
  if (verb.flags.length > 0) lines.push('Flags:', ...verb.flags.map(flagLine), '');
  lines.push('Flags of every verb:', ...GLOBAL_FLAGS.map(flagLine), '');
  lines.push('Examples:');
  for (const e of verb.examples) lines.push(`  # ${e.description}`, `  ${e.command}`, '');
  return lines.join('\n');
}

function wrap(text: string, width: number): string {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line !== '' && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') out.push(line);
  return out.join('\n');
}
