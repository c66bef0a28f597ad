/**
 * The chart renderer's Go template semantics, each case as Go's text/template (with Sprig and Helm's include,
 * required and toYaml) renders it.
 */
import assert from 'node:assert/strict';
import { createEngine, parseTemplate, type GoValue } from '../../helpers/go-template.ts';

function render(source: string, data: GoValue = {}): string {
  const { nodes, defines } = parseTemplate(source, 'test.tpl');
  return createEngine(defines).render(nodes, data);
}

describe('go-template: the Go template subset the Helm chart is rendered with', () => {
  it('trims whitespace on the marked side only, newlines included', () => {
    assert.equal(render('a  \n  {{- "b" }}  \n c'), 'ab  \n c');
    assert.equal(render('a {{ "b" -}} \n\n c'), 'a bc');
    assert.equal(render('x{{/* a comment */}}y'), 'xy');
    assert.equal(render('x\n{{- /* a comment */ -}}\ny'), 'xy');
  });

  it('ranges over lists by index and over maps in sorted key order; else runs for an empty one', () => {
    assert.equal(render('{{ range $i, $v := .l }}{{ $i }}={{ $v }};{{ end }}', { l: ['a', 'b'] }), '0=a;1=b;');
    assert.equal(render('{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}', { m: { b: '2', a: '1', c: '3' } }), 'a=1;b=2;c=3;');
    assert.equal(render('{{ range .l }}{{ . }}{{ else }}none{{ end }}', { l: [] }), 'none');
    assert.equal(render('{{ range .missing }}x{{ end }}', {}), '');
  });

  it('if / else if / else and with follow Go truth (0, "", empty collections and nil are false)', () => {
    const pick = '{{ if .a }}a{{ else if .b }}b{{ else }}c{{ end }}';
    assert.equal(render(pick, { a: 'x' }), 'a');
    assert.equal(render(pick, { a: '', b: [1] }), 'b');
    assert.equal(render(pick, { a: 0, b: {} }), 'c');
    assert.equal(render('{{ with .m }}{{ .k }}{{ else }}none{{ end }}', { m: { k: 'v' } }), 'v');
    assert.equal(render('{{ with .m }}{{ .k }}{{ else }}none{{ end }}', { m: {} }), 'none');
  });

  it('scopes variables to their block, and $ is the data the template was given', () => {
    assert.equal(render('{{ $x := "outer" }}{{ if true }}{{ $x := "inner" }}{{ $x }}{{ end }} {{ $x }}'), 'inner outer');
    assert.equal(render('{{ $x := "a" }}{{ if true }}{{ $x = "b" }}{{ end }}{{ $x }}'), 'b');
    assert.equal(render('{{ range .l }}{{ $.name }}{{ . }}{{ end }}', { name: 'n', l: ['1', '2'] }), 'n1n2');
    assert.throws(() => render('{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}'), /undefined variable: \$y/);
  });

  it('pipes the value as the last argument, and reads (pipeline).field but not "(x) .field"', () => {
    assert.equal(render('{{ "abc" | printf "%s-%s" "x" }}'), 'x-abc');
    assert.equal(render('{{ (dict "a" "b").a }}'), 'b');
    assert.equal(render('{{ default (printf "d") .v }}', { v: 'given' }), 'given');
  });

  it('and/or short-circuit and return an operand, as in Go 1.18+', () => {
    assert.equal(render('{{ or .a .b "c" }}', { a: '', b: 'b' }), 'b');
    assert.equal(render('{{ and .a .b }}', { a: 'a', b: '' }), '');
    // The second operand would fail: and stops at the first false one.
    assert.equal(render('{{ and .missing .missing.field }}', {}), '');
  });

  it('values are float64 and literals int: comparing them is an error, int() converts', () => {
    assert.throws(() => render('{{ if gt .n 0 }}{{ end }}', { n: 2 }), /incompatible types for comparison: float64 and int/);
    assert.equal(render('{{ if gt (int .n) 0 }}yes{{ end }}', { n: 2 }), 'yes');
    assert.equal(render('{{ eq .s "a" "b" }}', { s: 'b' }), 'true');
  });

  it('prints float64 as Go %v does (exponent form from a million) and ints in full', () => {
    assert.equal(render('{{ .a }} {{ .b }} {{ .c }} {{ .d }}', { a: 3000, b: 1000000, c: 2147483648, d: 0.5 }), '3000 1e+06 2.147483648e+09 0.5');
    assert.equal(render('{{ int .c }} {{ mul (int .a) 1000 }} {{ add 1 2 }}', { a: 30, c: 2147483648 }), '2147483648 30000 3');
    assert.equal(render('{{ .c | quote }}', { c: 1000000 }), '"1e+06"');
    assert.throws(() => render('{{ printf "%d" .a }}', { a: 3 }), /printf %d of a float64/);
  });

  it('evaluating a field of nil is an error; a missing map key is nil and prints as nothing', () => {
    assert.equal(render('[{{ .a.missing }}]', { a: {} }), '[]');
    assert.throws(() => render('{{ .a.b.c }}', { a: {} }), /nil pointer evaluating interface \{\}\.c/);
  });

  it('include renders a define with the given dot; required and fail stop the render with their message', () => {
    const source = '{{- define "greet" -}}hello {{ . }}{{- end -}}{{ include "greet" "world" | upper }}';
    assert.equal(render(source), 'HELLO WORLD');
    assert.throws(() => render('{{ required "x.y is required" .v }}', { v: '' }), /required: x\.y is required/);
    assert.equal(render('{{ required "x" .v }}', { v: false }), 'false');
    assert.throws(() => render('{{ fail "no" }}'), /fail: no/);
    assert.throws(() => render('{{ include "missing" . }}'), /no template "missing"/);
  });

  it('Sprig string helpers: default, quote, nindent, trunc, trimSuffix, replace, ternary, urlquery, sha256sum', () => {
    assert.equal(render('{{ default "d" .v }}|{{ default "d" .w }}', { v: '', w: 'w' }), 'd|w');
    assert.equal(render('{{ quote "a\\"b" .missing }}', {}), '"a\\"b"');
    assert.equal(render('x:{{ "a: 1\\nb: 2" | nindent 2 }}'), 'x:\n  a: 1\n  b: 2');
    assert.equal(render('{{ "abcdef" | trunc 3 }} {{ "name-" | trimSuffix "-" }} {{ "a+b" | replace "+" "_" }}'), 'abc name a_b');
    assert.equal(render('{{ ternary "y" "n" .b }}', { b: false }), 'n');
    assert.throws(() => render('{{ ternary "y" "n" .b }}', { b: 'false' }), /expected bool; got string/);
    assert.equal(render('{{ urlquery "p@ss:w/rd ok!" }}'), 'p%40ss%3Aw%2Frd+ok%21');
    assert.equal(render('{{ "abc" | sha256sum }}'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('toYaml sorts keys, quotes YAML 1.1 booleans written as strings and drops the final newline', () => {
    assert.equal(render('{{ toYaml .m }}', { m: { b: 'on', a: [1, 'x'], c: {} } }), 'a:\n- 1\n- x\nb: "on"\nc: {}');
  });

  it('refuses what it does not implement instead of guessing', () => {
    assert.throws(() => render('{{ lookup "v1" "Secret" "ns" "n" }}'), /function "lookup" not defined/);
    assert.throws(() => render('{{ tpl "x" . }}'), /function "tpl" not defined/);
    assert.throws(() => render('{{ .m }}', { m: { a: 1 } }), /printing a map or list/);
    assert.throws(() => render('{{ if true }}x'), /missing \{\{end\}\}/);
  });
});
