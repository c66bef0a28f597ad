// Development: the API and one worker (WORKER_ROLES, default extract and detect) in one process.
import { main } from './lifecycle.ts';
import { baseReadiness, detectorReadiness, storageReadiness } from './readiness.ts';
import { startApi, startWorker } from './roles.ts';

main('all-in-one', async (runtime) => {
  const worker = await startWorker(runtime);
  const api = await startApi(runtime, [
    ...baseReadiness(runtime),
    ...(worker.detector ? [detectorReadiness(worker.detector, worker.choice)] : []),
    storageReadiness(runtime.storage, runtime.config.limits.minFreeBytes),
  ]);
  return {
    async stop() {
      await api.stop();
      await worker.stop();
    },
  };
});
