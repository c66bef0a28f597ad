/** The message of anything thrown, for logs and stored reasons (a non-Error value is stringified). */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
