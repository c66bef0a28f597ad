// Ingestion API only: uploads (queued for extraction), status and results. Run workers separately: they extract and detect.
import { main } from './lifecycle.ts';
import { baseReadiness, storageReadiness } from './readiness.ts';
import { startApi } from './roles.ts';

// No model check: the API never loads the model (workers do), so an API container needs no model mount.
main('api', (runtime) => startApi(runtime, [...baseReadiness(runtime), storageReadiness(runtime.storage, runtime.config.limits.minFreeBytes)]));
