// One mapping shape through the whole migration lifecycle (see test/support/lifecycle.ts).
import { lifecycleSuite } from '../support/lifecycle.ts';
import { identifiersCase } from '../support/mapping-cases.ts';

lifecycleSuite('identifiers', identifiersCase);
