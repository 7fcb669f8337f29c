// The session protocol's AsyncAPI document (docs/asyncapi.yaml) checked by the
// AsyncAPI project's own parser: it must parse as AsyncAPI 3.0 with no error
// diagnostics (structure, references, schemas, the parser's ruleset).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Parser } from '@asyncapi/parser';

const documentPath = fileURLToPath(new URL('../../docs/asyncapi.yaml', import.meta.url));
const ERROR = 0;
const WARNING = 1;

test('docs/asyncapi.yaml is a valid AsyncAPI 3.0 document', async () => {
  const source = await readFile(documentPath, 'utf8');
  const { document, diagnostics } = await new Parser().parse(source, { source: documentPath });
  const describe = (d) => `${d.code} at ${d.path.join('.')}: ${d.message}`;
  for (const warning of diagnostics.filter((d) => d.severity === WARNING)) {
    console.log(`warning: ${describe(warning)}`);
  }
  const errors = diagnostics.filter((d) => d.severity === ERROR);
  assert.deepEqual(errors.map(describe), []);
  assert.ok(document, 'the parser returned a document');
  assert.equal(document.version(), '3.0.0');
  const messages = document.allMessages().all().map((m) => m.id()).sort();
  assert.deepEqual(messages, ['error', 'hello', 'saved', 'superseded', 'tick']);
});
