/**
 * Renders a Helm chart the way `helm template` does, for the subset of Go templates and Sprig that
 * test/helpers/go-template.ts implements: values.yaml deep-merged with overrides (null deletes a key),
 * `.Values`, `.Release`, `.Chart` and `.Template`; every `templates/` file whose name does not start with
 * `_` rendered and split into YAML documents on `---` lines; NOTES.txt rendered but not a manifest.
 * `.Capabilities`, `.Files`, `lookup` and `tpl` are not provided (the chart must not need them).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { createEngine, isMap, parseTemplate, TemplateError, type GoValue } from './go-template.ts';

export interface ReleaseOptions {
  name?: string;
  namespace?: string;
  /** true for `helm upgrade`; `helm install` otherwise. */
  upgrade?: boolean;
}

export interface RenderedObject {
  /** Template file the object came from, e.g. templates/api.yaml. */
  source: string;
  object: Record<string, unknown>;
}

export interface RenderedChart {
  objects: RenderedObject[];
  notes: string;
}

type Values = { [key: string]: GoValue };

/** Helm's coalescing of user values over the chart's: maps merge deeply, null removes the chart's key. */
export function mergeValues(base: Values, overrides: Values): Values {
  const merged: Values = { ...base };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === null) delete merged[key];
    else if (isMap(value) && isMap(merged[key])) merged[key] = mergeValues(merged[key] as Values, value);
    else merged[key] = value;
  }
  return merged;
}

/** Parses YAML as Helm's Go YAML library reads it (YAML 1.1: yes/no/on/off are booleans). */
export function parseYaml11(text: string): unknown {
  return parse(text, { version: '1.1' });
}

export function renderChart(chartDir: string, overrides: Values = {}, release: ReleaseOptions = {}): RenderedChart {
  const chart = parseYaml11(fs.readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8')) as Record<string, string>;
  const defaults = (parseYaml11(fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8')) ?? {}) as Values;
  const templatesDir = path.join(chartDir, 'templates');
  const files = fs.readdirSync(templatesDir).filter((file) => fs.statSync(path.join(templatesDir, file)).isFile()).sort();
  const parsed = files.map((file) => ({ file, ...parseTemplate(fs.readFileSync(path.join(templatesDir, file), 'utf8'), `templates/${file}`) }));
  const defines = new Map(parsed.flatMap((p) => [...p.defines]));
  const engine = createEngine(defines);
  const root = {
    Values: mergeValues(defaults, overrides),
    Release: {
      Name: release.name ?? 'vidsense',
      Namespace: release.namespace ?? 'default',
      Service: 'Helm',
      IsInstall: !release.upgrade,
      IsUpgrade: Boolean(release.upgrade),
      Revision: release.upgrade ? 2 : 1,
    },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion, Description: chart.description },
  };

  const objects: RenderedObject[] = [];
  let notes = '';
  for (const { file, nodes } of parsed) {
    if (file.startsWith('_')) continue;
    const source = `templates/${file}`;
    const output = engine.render(nodes, { ...root, Template: { Name: `${chart.name}/${source}`, BasePath: `${chart.name}/templates` } });
    if (file === 'NOTES.txt') {
      notes = output;
      continue;
    }
    for (const document of parseAllDocuments(output, { version: '1.1' })) {
      if (document.errors.length > 0) throw new TemplateError(`${source} renders invalid YAML: ${document.errors[0]!.message}\n${output}`);
      const object = document.toJS() as unknown;
      if (object === null || object === undefined) continue;
      if (!isMap(object as GoValue)) throw new TemplateError(`${source} renders a YAML document that is not a map`);
      objects.push({ source, object: object as Record<string, unknown> });
    }
  }
  return { objects, notes };
}
