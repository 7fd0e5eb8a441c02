// items -> items_v2: the smallest mapping whose two copies can be told apart
// (v is called label in new), for tests of switches and prepared statements.
import type { TestDatabase } from './db.ts';
import type { MappingDefinition } from './mapping-cases.ts';

export const ITEMS: MappingDefinition = {
  name: 'items',
  old: 'items',
  new: 'items_v2',
  key: ['id'],
  up: { id: 'id', label: 'v' },
  down: { id: 'id', v: 'label' },
};

export async function createItems(db: TestDatabase): Promise<void> {
  await db.query(`
    CREATE TABLE items (id int PRIMARY KEY, v text NOT NULL);
    CREATE TABLE items_v2 (id int PRIMARY KEY, label text NOT NULL);`);
}
