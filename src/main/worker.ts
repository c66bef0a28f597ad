// Queue worker: extraction and/or detection jobs (WORKER_ROLES); run as many as the hardware allows against one Redis and PostgreSQL.
import { main } from './lifecycle.ts';
import { startWorker } from './roles.ts';

main('worker', (runtime) => startWorker(runtime));
