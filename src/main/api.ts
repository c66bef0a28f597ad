// Ingestion API only: uploads, extraction, status and results. Run workers separately.
import { main } from './lifecycle.ts';
import { baseReadiness, startApi } from './roles.ts';
import { storageReadiness } from './runtime.ts';

// No model check: the API never loads the model (workers do), so an API container needs no model mount.
main('api', (runtime) => startApi(runtime, [...baseReadiness(runtime), storageReadiness(runtime.storage)]));
