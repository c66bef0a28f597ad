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

/** What Helm gives the templates: `.Values` (merged), `.Release`, `.Chart`; and the chart's parsed template files. */
export function chartContext(chartDir: string, overrides: Values = {}, release: ReleaseOptions = {}) {
  const chart = parseYaml11(fs.readFileSync(path.join(chartDir, 'Chart.yaml'), 'utf8')) as Record<string, string>;
  const defaults = (parseYaml11(fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8')) ?? {}) as Values;
  return {
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
}

/** Each template file's rendered text, by its path in the chart (templates/x.yaml), partials left out. */
export function renderTemplates(chartDir: string, overrides: Values = {}, release: ReleaseOptions = {}): Record<string, string> {
  const root = chartContext(chartDir, overrides, release);
  const templatesDir = path.join(chartDir, 'templates');
  const files = fs.readdirSync(templatesDir).filter((file) => fs.statSync(path.join(templatesDir, file)).isFile()).sort();
  const parsed = files.map((file) => ({ file, ...parseTemplate(fs.readFileSync(path.join(templatesDir, file), 'utf8'), `templates/${file}`) }));
  const engine = createEngine(new Map(parsed.flatMap((p) => [...p.defines])));
  const outputs: Record<string, string> = {};
  for (const { file, nodes } of parsed) {
    if (file.startsWith('_')) continue;
    const source = `templates/${file}`;
    outputs[source] = engine.render(nodes, { ...root, Template: { Name: `${root.Chart.Name}/${source}`, BasePath: `${root.Chart.Name}/templates` } });
  }
  return outputs;
}

/** Splits rendered template files into objects as Helm does (YAML documents; empty ones dropped; NOTES.txt apart). */
export function manifestsOf(outputs: Record<string, string>): RenderedChart {
  const objects: RenderedObject[] = [];
  let notes = '';
  for (const [source, output] of Object.entries(outputs).sort(([a], [b]) => a.localeCompare(b))) {
    if (source.endsWith('/NOTES.txt')) {
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

export function renderChart(chartDir: string, overrides: Values = {}, release: ReleaseOptions = {}): RenderedChart {
  return manifestsOf(renderTemplates(chartDir, overrides, release));
}
