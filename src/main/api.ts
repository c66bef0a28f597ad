// Ingestion API only: uploads, extraction, status and results. Run workers separately.
import { main } from './lifecycle.ts';
import { baseReadiness, startApi } from './roles.ts';
import { modelFileCheck } from './runtime.ts';

main('api', (runtime) =>
  startApi(runtime, [...baseReadiness(runtime), { name: 'model', check: () => modelFileCheck(runtime.config.modelPath) }]),
);
