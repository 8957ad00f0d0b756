/**
 * Starting an etcd watch with a deadline. etcd3's `WatchBuilder.create()` resolves once etcd
 * confirms the watch and waits as long as it takes (retrying) when etcd cannot be reached; the
 * pool's callers would rather know within a call deadline and try again later (docs/design.md
 * section 11: a node cut off from etcd keeps serving from memory).
 */
import type { WatchBuilder, Watcher } from 'etcd3';
import { ETCD_CALL_TIMEOUT_MS } from './etcd.js';

/** The started watcher, or a rejection after `timeoutMs`; a watch that starts later is cancelled. */
export async function startWatch(builder: WatchBuilder, timeoutMs = ETCD_CALL_TIMEOUT_MS): Promise<Watcher> {
  const creating = builder.create();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      creating,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the etcd watch did not start within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    // An 'error' the late watcher might still emit must have a listener (EventEmitter throws otherwise).
    void creating.then((w) => w.on('error', () => {}).cancel(), () => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
