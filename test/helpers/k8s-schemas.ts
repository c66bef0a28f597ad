/**
 * Checks rendered Kubernetes objects two ways, both from npm's kubernetes-models (Kubernetes' OpenAPI
 * schemas) and @kubernetes-models/keda (KEDA's CRDs):
 * - the models' JSON-schema validators: required fields, types, enums, formats;
 * - the models' TypeScript interfaces, through the TypeScript compiler: the schemas allow fields they do
 *   not define, so a misspelt field (`livenessprobe`) passes the validators, but it is an excess property
 *   of the interface.
 */
import path from 'node:path';
import ts from 'typescript';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Job } from 'kubernetes-models/batch/v1/Job';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication';

interface Kind {
  /** Validates with the model's JSON schema; throws with the failing paths. */
  validate(object: Record<string, unknown>): void;
  /** Module and interface of the object's TypeScript type. */
  module: string;
  type: string;
}

function kind(model: new (data: never) => { validate(): void }, module: string, type: string): Kind {
  return { validate: (object) => new model(object as never).validate(), module, type };
}

/** Every kind the chart may render, by "apiVersion/kind"; anything else is an error. */
export const KINDS: Record<string, Kind> = {
  'v1/ConfigMap': kind(ConfigMap, 'kubernetes-models/v1/ConfigMap', 'IConfigMap'),
  'v1/Secret': kind(Secret, 'kubernetes-models/v1/Secret', 'ISecret'),
  'v1/Service': kind(Service, 'kubernetes-models/v1/Service', 'IService'),
  'v1/ServiceAccount': kind(ServiceAccount, 'kubernetes-models/v1/ServiceAccount', 'IServiceAccount'),
  'v1/PersistentVolumeClaim': kind(PersistentVolumeClaim, 'kubernetes-models/v1/PersistentVolumeClaim', 'IPersistentVolumeClaim'),
  'apps/v1/Deployment': kind(Deployment, 'kubernetes-models/apps/v1/Deployment', 'IDeployment'),
  'batch/v1/Job': kind(Job, 'kubernetes-models/batch/v1/Job', 'IJob'),
  'networking.k8s.io/v1/Ingress': kind(Ingress, 'kubernetes-models/networking.k8s.io/v1/Ingress', 'IIngress'),
  'policy/v1/PodDisruptionBudget': kind(PodDisruptionBudget, 'kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'),
  'keda.sh/v1alpha1/ScaledObject': kind(ScaledObject, '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject', 'IScaledObject'),
  'keda.sh/v1alpha1/TriggerAuthentication': kind(TriggerAuthentication, '@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication', 'ITriggerAuthentication'),
};

export function kindKey(object: Record<string, unknown>): string {
  return `${String(object.apiVersion)}/${String(object.kind)}`;
}

export function kindOf(object: Record<string, unknown>): Kind {
  const found = KINDS[kindKey(object)];
  if (!found) throw new Error(`no schema for ${kindKey(object)}: add it to KINDS in test/helpers/k8s-schemas.ts`);
  return found;
}

/**
 * Type-checks each object against its kind's TypeScript interface in one compiler run, returning the
 * diagnostics as "<label>: <message>" (empty when every object conforms).
 */
export function typeCheckObjects(objects: Array<{ label: string; object: Record<string, unknown> }>): string[] {
  const repoRoot = process.cwd();
  // A file that does not exist, inside the repository so node_modules resolves as for any test file.
  const fileName = path.join(repoRoot, 'test', '__rendered_chart_objects__.ts');
  const used = new Map<string, Kind>();
  const lines: string[] = [];
  objects.forEach(({ object }, i) => {
    const found = kindOf(object);
    used.set(found.type, found);
    lines.push(`export const object${i}: ${found.type} = ${JSON.stringify(object)};`);
  });
  const source = [...used.values()].map((k) => `import type { ${k.type} } from '${k.module}';`).join('\n') + '\n' + lines.join('\n') + '\n';
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    lib: ['lib.es2022.d.ts'],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, ...rest) =>
    name === fileName ? ts.createSourceFile(name, source, languageVersion) : getSourceFile(name, languageVersion, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === fileName || fileExists(name);
  const program = ts.createProgram([fileName], options, host);
  const file = program.getSourceFile(fileName)!;
  return ts.getPreEmitDiagnostics(program, file).map((diagnostic) => {
    const line = diagnostic.start === undefined ? 0 : file.getLineAndCharacterOfPosition(diagnostic.start).line;
    const index = line - used.size;
    const label = objects[index]?.label ?? `line ${line + 1}`;
    return `${label}: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`;
  });
}
