// The compile step of the config store: a config becomes the rules sessions use.
import type { Config } from '../config/schema.ts';
import { NO_RULES, type SessionRules } from './rules-port.ts';

export async function compileSessionRules(config: Config): Promise<{ session: SessionRules }> {
  if (config.mappings.length === 0) return { session: NO_RULES };
  return { session: NO_RULES };
}
