/** Storage key layout; nothing else builds storage keys. */
export const storageKeys = {
  videoPrefix: (videoId: string) => `videos/${videoId}`,
  source: (videoId: string) => `videos/${videoId}/source`,
  /** The browser-playable preview; extension names its container (mp4, webm). */
  preview: (videoId: string, extension: string) => `videos/${videoId}/preview.${extension}`,
  framesPrefix: (videoId: string) => `videos/${videoId}/frames`,
  frame: (videoId: string, frameIndex: number) => `videos/${videoId}/frames/${String(frameIndex).padStart(6, '0')}.jpg`,
};
