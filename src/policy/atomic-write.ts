/**
 * Crash-safe file replacement: write a temporary file in the same directory, fsync it, rename it
 * over the target (atomic on POSIX file systems), then fsync the directory so the rename itself
 * survives a power cut. Readers (the gateway's watcher) see the old or the new file, never half.
 */
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** `mode`: the new file's permissions (default: the replaced file's, else 0644); 0600 for secrets. */
export async function writeFileAtomic(file: string, text: string, mode?: number): Promise<void> {
  const dir = dirname(file);
  const tmp = join(dir, `.${basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fileMode = mode ?? (await stat(file).then((s) => s.mode & 0o777, () => 0o644));
  const handle = await open(tmp, 'wx', fileMode);
  // open()'s mode is filtered by the umask; an explicit mode is what the caller asked for.
  if (mode !== undefined) await handle.chmod(mode);
  try {
    await handle.writeFile(text, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
