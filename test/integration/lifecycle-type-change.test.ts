// One mapping shape through the whole migration lifecycle (see test/support/lifecycle.ts).
import { lifecycleSuite } from '../support/lifecycle.ts';
import { typeChangeCase } from '../support/mapping-cases.ts';

lifecycleSuite('type-change', typeChangeCase);
