// A column migration inside one table, two app versions at once (see test/support/column-rollout.ts).
import { typeChangeColumns } from '../support/column-cases.ts';
import { columnRolloutSuite } from '../support/column-rollout.ts';

columnRolloutSuite('column type-change', typeChangeColumns);
