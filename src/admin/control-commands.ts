/**
 * `xmpp-gateway reload` and `xmpp-gateway stop` (as prosodyctl and ejabberdctl have them): they
 * ask the running gateway through its admin listener, like `status`.
 */
import { loadGatewayConfig } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { adminRequest, adminTarget as targetOf, type AdminTarget } from './admin-client.js';

async function adminTarget(configPath: string): Promise<AdminTarget> {
  return targetOf(await loadGatewayConfig(configPath, (msg) => process.stderr.write(`WARNING: ${msg}\n`)));
}

/** How long `stop` waits for the gateway to close its streams and listeners. */
const STOP_WAIT_MS = 15_000;

/** POST /reload: prints how many partners are in force, or fails with the file's error (exit 1). */
export async function reload(configPath: string): Promise<number> {
  const admin = await adminTarget(configPath);
  const { status, text } = await adminRequest(admin, 'POST', '/reload', undefined, [200, 422]);
  const body = parse(text, admin) as { ok?: boolean; error?: string; partners?: number; file?: string };
  if (status !== 200 || !body.ok) {
    throw new GatewayError('GW_ERR_RELOAD', `reload failed, the previous list stays in force: ${body.error ?? 'unknown error'}`);
  }
  process.stdout.write(`reloaded ${body.partners ?? '?'} partner${body.partners === 1 ? '' : 's'} from ${body.file ?? 'the partner file'}\n`);
  return 0;
}

/** POST /stop, then waits until the admin listener is gone (the gateway has shut down). */
export async function stop(configPath: string): Promise<number> {
  const admin = await adminTarget(configPath);
  await adminRequest(admin, 'POST', '/stop', undefined, [202]);
  const deadline = Date.now() + STOP_WAIT_MS;
  while (Date.now() < deadline) {
    const gone = await adminRequest(admin, 'GET', '/status', undefined).then(
      () => false,
      (err: unknown) => err instanceof GatewayError && err.code === 'GW_ERR_USAGE', // not running any more
    );
    if (gone) {
      process.stdout.write(`stopped the gateway at ${admin.url}\n`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new GatewayError('GW_ERR_ADMIN', `the gateway at ${admin.url} accepted the stop request but still answers after ${STOP_WAIT_MS / 1000} s`);
}

function parse(text: string, admin: AdminTarget): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new GatewayError('GW_ERR_ADMIN', `${admin.url} did not answer with JSON; is that the gateway's admin listener?`);
  }
}
