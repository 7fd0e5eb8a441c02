// Reloads: SIGHUP, and a watch on the config file's DIRECTORY, because a
// Kubernetes ConfigMap update swaps a symlink (..data) rather than writing the
// file, and a watch on the file itself would keep pointing at the old inode.
import { type FSWatcher, watch } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { metrics } from '../metrics.ts';
import { ConfigError, loadConfigFile } from './load.ts';
import type { ConfigStore } from './store.ts';

export interface Reloader {
  /** Reloads now; resolves to true when a new config was installed. */
  reload(reason: string): Promise<boolean>;
  close(): void;
}

export function watchConfig(
  file: string,
  store: ConfigStore<unknown>,
  logger: Logger,
  debounceMs = 150,
): Reloader {
  let running: Promise<boolean> | undefined;
  let again = false;

  async function once(reason: string): Promise<boolean> {
    let loaded: ReturnType<typeof loadConfigFile>;
    try {
      loaded = loadConfigFile(file);
    } catch (e) {
      metrics.configReloads.inc({ result: 'error' });
      logger.error(
        { file, reason, error: (e as Error).message },
        'config reload refused; the running config stays',
      );
      return false;
    }
    if (loaded.hash === store.current.hash) return false;
    const before = store.current.config;
    try {
      const { version, changes } = await store.apply(loaded);
      if (JSON.stringify(before.listen) !== JSON.stringify(loaded.config.listen)) {
        logger.warn({ file }, 'listen address changes take effect only after a restart');
      }
      logger.info(
        { file, reason, version, changes },
        `config reloaded: ${changes.length ? changes.join('; ') : 'no switch changed'}`,
      );
      return true;
    } catch (e) {
      const msg = e instanceof ConfigError ? e.message : (e as Error).message;
      logger.error({ file, reason, error: msg }, 'config reload refused; the running config stays');
      return false;
    }
  }

  async function reload(reason: string): Promise<boolean> {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      let changed = await once(reason);
      while (again) {
        again = false;
        changed = (await once(reason)) || changed;
      }
      return changed;
    })();
    try {
      return await running;
    } finally {
      running = undefined;
    }
  }

  let timer: NodeJS.Timeout | undefined;
  const dir = path.dirname(path.resolve(file));
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, { persistent: false }, () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void reload('file change'), debounceMs);
    });
    watcher.on('error', (err) =>
      logger.warn({ dir, err: err.message }, 'config directory watch failed; SIGHUP still reloads'),
    );
  } catch (e) {
    logger.warn(
      { dir, error: (e as Error).message },
      'cannot watch the config directory; SIGHUP still reloads',
    );
  }
  const onHup = () => void reload('SIGHUP');
  process.on('SIGHUP', onHup);
  return {
    reload,
    close() {
      if (timer) clearTimeout(timer);
      watcher?.close();
      process.off('SIGHUP', onHup);
    },
  };
}
