// Two app versions at once through the whole expand/contract sequence (see test/support/rollout.ts).

import { rolloutSuite } from '../support/rollout.ts';
import { splitMergeRollout } from '../support/rollout-cases.ts';

rolloutSuite('split-merge', splitMergeRollout);
