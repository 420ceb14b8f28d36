/**
 * The one source of configuration for a serving process: read the file
 * (bounded), parse and check it, and watch it for changes. The single
 * process and the cluster primary read through it; a worker parses the
 * text the primary hands it with `parse` (never the file itself).
 */
import { createHash } from 'node:crypto';
import { watch } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { readBoundedFile } from '../config/bounded-file.js';
import { ConfigError, MAX_CONFIG_FILE_BYTES, parseConfigText, readConfigText } from '../config/load.js';
import type { DancegateConfig } from '../config/types.js';

/** A configuration and the exact text it came from (what a cluster hands its workers). */
export interface ConfigText {
  readonly text: string;
  readonly config: DancegateConfig;
}

/** One line for any error: a ConfigError lists every problem. */
export const errorText = (err: unknown): string => (err instanceof ConfigError ? err.problems.join('; ') : err instanceof Error ? err.message : String(err));

/** Settings read once at start: a reload cannot change them. Pure. */
export function fixedSettingsChanged(current: DancegateConfig, next: DancegateConfig): string[] {
  const changed: string[] = [];
  if (current.workers !== next.workers) changed.push('workers');
  if (JSON.stringify(current.admin) !== JSON.stringify(next.admin)) changed.push('admin');
  if (JSON.stringify(current.log) !== JSON.stringify(next.log)) changed.push('log');
  if (current.watchConfig !== next.watchConfig) changed.push('watchConfig');
  return changed;
}

export class ConfigSource {
  /** The file's absolute path (relative paths in it are taken from its directory). */
  readonly path: string;

  constructor(path: string) {
    this.path = resolve(path);
  }

  /** Read, parse and check the file; throws ConfigError listing every problem. */
  async read(): Promise<ConfigText> {
    const { text } = await readConfigText(this.path);
    return { text, config: await this.parse(text) };
  }

  /** Parse and check text as if it were the file's content; throws ConfigError. */
  parse(text: string): Promise<DancegateConfig> {
    return parseConfigText(text, this.path);
  }

  /**
   * Call `onChange` when the file's content changes. Watches the directory
   * and compares a digest of the content: editors replace the file (a new
   * inode), and Kubernetes swaps a `..data` symlink without an event naming
   * the file. The files the configuration names (certificates, allowlists,
   * local TLSA) are not watched: SIGHUP reloads those. Returns the stop function.
   */
  watch(onChange: () => void, logger: Pick<Logger, 'error'>, debounceMs = 300): () => void {
    const digest = async (): Promise<string | undefined> => {
      try {
        return createHash('sha256')
          .update(await readBoundedFile(this.path, MAX_CONFIG_FILE_BYTES))
          .digest('hex');
      } catch {
        return undefined;
      }
    };
    let last: string | undefined;
    void digest().then((d) => (last = d));
    let timer: NodeJS.Timeout | undefined;
    try {
      const watcher = watch(dirname(this.path), () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          void digest().then((d) => {
            if (d === undefined || d === last) return;
            last = d;
            onChange();
          });
        }, debounceMs);
      });
      watcher.unref();
      return () => {
        clearTimeout(timer);
        watcher.close();
      };
    } catch (err) {
      logger.error({ event: 'watch', error: errorText(err) }, 'cannot watch the configuration file; SIGHUP still reloads');
      return () => undefined;
    }
  }
}
