// A column migration inside one table, two app versions at once (see test/support/column-rollout.ts).
import { mergeColumns } from '../support/column-cases.ts';
import { columnRolloutSuite } from '../support/column-rollout.ts';

columnRolloutSuite('column merge', mergeColumns);
