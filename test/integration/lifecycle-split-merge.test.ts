// One mapping shape through the whole migration lifecycle (see test/support/lifecycle.ts).
import { lifecycleSuite } from '../support/lifecycle.ts';
import { splitMergeCase } from '../support/mapping-cases.ts';

lifecycleSuite('split-merge', splitMergeCase);
