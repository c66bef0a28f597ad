/**
 * ffmpeg reads "name:rest" as a protocol URL (concat:, http:, subfile:...). Prefixing file: makes
 * every input a plain local file whatever its name holds.
 */
export function inputUrl(path: string): string {
  return `file:${path}`;
}
