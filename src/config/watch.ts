// Reloads: SIGHUP, and a watch on the config file's DIRECTORY, because a
// Kubernetes ConfigMap update swaps a symlink (..data) rather than writing the
// file, and a watch on the file itself would keep pointing at the old inode.
// A directory sees every other file written beside the config too (the
// proxy's own log, say), so a directory event only reloads when the bytes the
// config path resolves to differ from the last ones tried: an unrelated write
// costs a read and a hash, never a parse or a catalog connection, and a broken
// file is refused (and counted) once, not once per event.
import { type FSWatcher, watch } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { metrics } from '../metrics.ts';
import { ConfigError, configHash, type LoadedConfig, loadConfigBytes, readConfigBytes } from './load.ts';
import type { ConfigStore } from './store.ts';

export interface Reloader {
  /**
   * Reloads now, even content already refused (an operator's SIGHUP after
   * fixing the database, say); resolves to true when a new config was installed.
   */
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
  let pending: { reason: string; force: boolean } | undefined;
  /** What the config path held when last tried: a content hash, or why it could not be read. */
  let lastTried = store.current.hash;

  function refused(reason: string, error: string): false {
    logger.error({ file, reason, error }, 'config reload refused; the running config stays');
    return false;
  }

  async function once(reason: string, force: boolean): Promise<boolean> {
    let bytes: Buffer;
    try {
      bytes = readConfigBytes(file);
    } catch (e) {
      const why = (e as Error).message;
      if (!force && lastTried === why) return false;
      lastTried = why;
      metrics.configReloads.inc({ result: 'error' });
      return refused(reason, why);
    }
    const hash = configHash(bytes);
    if (!force && hash === lastTried) return false;
    lastTried = hash;
    if (hash === store.current.hash) return false;
    let loaded: LoadedConfig;
    try {
      loaded = loadConfigBytes(bytes, file);
    } catch (e) {
      metrics.configReloads.inc({ result: 'error' });
      return refused(reason, (e as Error).message);
    }
    const before = store.current.config;
    try {
      // apply() counts its own refusals (the catalog check, compilation).
      const { version, changes } = await store.apply(loaded);
      if (JSON.stringify(before.listen) !== JSON.stringify(loaded.config.listen)) {
        logger.warn({ file }, 'listen address changes take effect only after a restart');
      }
      if (JSON.stringify(before.fleet) !== JSON.stringify(loaded.config.fleet)) {
        logger.warn({ file }, 'fleet settings take effect only after a restart');
      }
      logger.info(
        { file, reason, version, changes },
        `config reloaded: ${changes.length ? changes.join('; ') : 'no switch changed'}`,
      );
      return true;
    } catch (e) {
      return refused(reason, e instanceof ConfigError ? e.message : (e as Error).message);
    }
  }

  /** One reload at a time; requests made meanwhile collapse into one more run. */
  async function run(reason: string, force: boolean): Promise<boolean> {
    if (running) {
      pending = { reason, force: force || (pending?.force ?? false) };
      return running;
    }
    running = (async () => {
      let changed = await once(reason, force);
      while (pending) {
        const next = pending;
        pending = undefined;
        changed = (await once(next.reason, next.force)) || changed;
      }
      return changed;
    })();
    try {
      return await running;
    } finally {
      running = undefined;
    }
  }

  // Not a trailing debounce: a file written beside the config without pause
  // (a log) would postpone a real change forever. The first event starts the
  // clock and the events within debounceMs ride along.
  let timer: NodeJS.Timeout | undefined;
  const onEvent = () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void run('file change', false);
    }, debounceMs);
  };
  const dir = path.dirname(path.resolve(file));
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, { persistent: false }, onEvent);
    watcher.on('error', (err) =>
      logger.warn({ dir, err: err.message }, 'config directory watch failed; SIGHUP still reloads'),
    );
  } catch (e) {
    logger.warn(
      { dir, error: (e as Error).message },
      'cannot watch the config directory; SIGHUP still reloads',
    );
  }
  const onHup = () => void run('SIGHUP', true);
  process.on('SIGHUP', onHup);
  return {
    reload: (reason) => run(reason, true),
    close() {
      if (timer) clearTimeout(timer);
      watcher?.close();
      process.off('SIGHUP', onHup);
    },
  };
}
