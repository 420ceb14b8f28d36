/** The admin endpoints of a serving process: bound, or a StartError naming the address. */
import { startAdminServer, type AdminServer, type AdminSource } from '../metrics/admin-server.js';
import { StartError, describeListenError, isListenError } from './start-error.js';

export async function startAdmin(address: { host: string; port: number }, source: AdminSource): Promise<AdminServer> {
  try {
    return await startAdminServer(address.host, address.port, source);
  } catch (err) {
    if (isListenError(err)) throw new StartError(describeListenError('admin', address.host, address.port, err));
    throw new StartError(`admin ${address.host}:${address.port}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
