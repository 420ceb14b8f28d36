/**
 * Reading a file the configuration names, bounded: it must be a regular
 * file (a FIFO or a device would block or never end: opened without
 * blocking, then refused) of at most `maxBytes`, checked before anything is
 * read. Errors say which limit.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

export async function readBoundedFile(path: string, maxBytes: number): Promise<Buffer> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`${path} is not a regular file`);
    if (stat.size > maxBytes) throw new Error(`${path} is larger than ${maxBytes} bytes (${stat.size})`);
    // One byte more than allowed: a file that grew since the stat is refused, not cut.
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw new Error(`${path} is larger than ${maxBytes} bytes`);
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}
