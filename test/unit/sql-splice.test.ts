import { describe, expect, it } from 'vitest';
import { splice, spliceBytes } from '../../src/sql/splice.ts';

const byteOf = (s: string, needle: string) => Buffer.from(s.slice(0, s.indexOf(needle)), 'utf8').length;

describe('splice', () => {
  it('replaces byte ranges after multi-byte text without shifting', () => {
    const sql = `SELECT 'Zoë ☃ 🚀' AS "prénom", x FROM "Ördér" o WHERE o.n = 'ß'`;
    const at = byteOf(sql, '"Ördér"');
    const len = Buffer.byteLength('"Ördér"');
    const out = splice(sql, [{ start: at, end: at + len, text: '(SELECT 1 AS x) ' }]);
    expect(out).toBe(`SELECT 'Zoë ☃ 🚀' AS "prénom", x FROM (SELECT 1 AS x)  o WHERE o.n = 'ß'`);
  });

  it('applies several edits in position order and keeps insertions at one offset in the given order', () => {
    const sql = 'ab€cd';
    const end = Buffer.byteLength(sql);
    const out = splice(sql, [
      { start: end, end, text: '2' },
      { start: 0, end: 0, text: '[' },
      { start: end, end, text: '3' },
      { start: 2, end: 5, text: 'E' },
    ]);
    expect(out).toBe('[abEcd23');
  });

  it('refuses overlapping edits', () => {
    expect(() =>
      splice('abcdef', [
        { start: 1, end: 4, text: 'x' },
        { start: 2, end: 3, text: 'y' },
      ]),
    ).toThrow(/overlapping/);
  });

  it('splices a sub-range only, keeping edits outside it out', () => {
    const b = Buffer.from('0123456789');
    expect(
      spliceBytes(
        b,
        [
          { start: 1, end: 2, text: 'X' },
          { start: 4, end: 5, text: 'Y' },
        ],
        3,
        7,
      ),
    ).toBe('3Y56');
  });

  it('returns the input unchanged with no edits', () => {
    const sql = `SELECT 'é' -- ü\n`;
    expect(splice(sql, [])).toBe(sql);
  });
});
