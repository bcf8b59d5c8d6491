/** The StateStore contract on the stores that need no server; DynamoDB's run is in test/integration. */
import path from 'node:path';
import { afterAll } from 'vitest';
import { FileStateStore } from '../../src/state/file-store.js';
import { MemoryStateStore } from '../../src/state/memory-store.js';
import { makeTempDir, removeTempDirs } from '../support/temp.js';
import { stateStoreContract } from './state-store.js';

afterAll(removeTempDirs);

stateStoreContract('MemoryStateStore', async () => new MemoryStateStore());
stateStoreContract('FileStateStore', async () =>
  FileStateStore.create(path.join(await makeTempDir(), 'state')),
);
