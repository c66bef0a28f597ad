/** The disk (or the user's quota) is full: ENOSPC or EDQUOT from any file operation. */
export function isStorageFull(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}
