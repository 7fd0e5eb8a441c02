// One mapping shape through the whole migration lifecycle (see test/support/lifecycle.ts).
import { lifecycleSuite } from '../support/lifecycle.ts';
import { renameCase } from '../support/mapping-cases.ts';

lifecycleSuite('rename', renameCase);
