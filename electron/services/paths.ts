// Where Vireo keeps its files: XDG base directories, resolved once per service.
import * as os from 'node:os';
import * as path from 'node:path';

export interface VireoPaths {
  /** $XDG_CONFIG_HOME/vireo */
  config: string;
  /** $XDG_CONFIG_HOME/vireo/vms: one <uuid>.json per VM */
  vms: string;
  /** $XDG_DATA_HOME/vireo/images: the default storage pool */
  pool: string;
  /** $XDG_DATA_HOME/vireo/logs: the only place serial logs are written */
  logs: string;
}

export function resolvePaths(env: NodeJS.ProcessEnv = process.env): VireoPaths {
  const home = env.HOME || os.homedir();
  const configHome = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(home, '.config');
  const dataHome = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(home, '.local', 'share');
  const config = path.join(configHome, 'vireo');
  return { config, vms: path.join(config, 'vms'), pool: path.join(dataHome, 'vireo', 'images'), logs: path.join(dataHome, 'vireo', 'logs') };
}
