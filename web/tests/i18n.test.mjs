// Both dictionaries have the same keys, no empty strings, and the same
// {placeholders} per key; the default language is Indonesian.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dictionaries } from '../src/i18n.js';

const placeholders = (s) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

test('id and en have the same keys', () => {
  const id = Object.keys(dictionaries.id).sort();
  const en = Object.keys(dictionaries.en).sort();
  assert.deepEqual(id.filter((k) => !en.includes(k)), [], 'keys only in id');
  assert.deepEqual(en.filter((k) => !id.includes(k)), [], 'keys only in en');
});

test('no empty strings and matching placeholders', () => {
  for (const [key, text] of Object.entries(dictionaries.id)) {
    assert.ok(text.length > 0, `id ${key} is empty`);
    assert.ok(dictionaries.en[key].length > 0, `en ${key} is empty`);
    assert.deepEqual(placeholders(text), placeholders(dictionaries.en[key]), key);
  }
});
