// One mapping shape through the whole migration lifecycle (see test/support/lifecycle.ts).
import { lifecycleSuite } from '../support/lifecycle.ts';
import { compositeKeyCase } from '../support/mapping-cases.ts';

lifecycleSuite('composite-key', compositeKeyCase);
