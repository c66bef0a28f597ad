import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { VideoRecord, VideoRepository } from '../db/types.ts';
import { errorMessage } from '../errors/error-message.ts';
import type { Logger } from '../logger.ts';
import type { MediaRepository } from '../media/media.repository.ts';
import { previewFormats, type PreviewCodec } from '../media/preview-args.ts';
import { storageKeys } from '../storage/keys.ts';
import type { VideoStorage } from '../storage/video-storage.ts';

export interface PreviewSettings {
  /** off: no previews (the web app then says "no preview"). */
  previewCodec: PreviewCodec | 'off';
  previewMaxBytes: number;
  previewTimeoutMs: number;
  /** The nice value of the preview's ffmpeg (see PreviewEncodeOptions.niceness). */
  previewNiceness?: number;
  /** The scheduling policy of the preview's ffmpeg (see PreviewEncodeOptions.cpuPolicy). */
  previewCpuPolicy?: 'idle' | 'normal';
  /** Where ffmpeg writes the preview before it is stored; default os.tmpdir(). */
  workDir?: string;
}

export type PreviewMedia = Pick<MediaRepository, 'encodePreview'>;

/**
 * Browser-playable previews: browsers cannot play many uploaded codecs (msmpeg4, cinepak, ...), so the
 * web app plays this H.264 (or VP9) copy, written from the upload in one bounded ffmpeg run. It is made
 * once the frames are extracted, at a lower CPU priority, while they are detected: the video does not
 * wait for it to complete (it stays previewPending until the preview is stored or given up).
 */
export class PreviewService {
  constructor(
    private readonly settings: PreviewSettings,
    private readonly videos: Pick<VideoRepository, 'setPreview'>,
    private readonly storage: VideoStorage,
    private readonly media: PreviewMedia,
    private readonly logger: Logger,
  ) {}

  /** False with PREVIEW_CODEC=off: no video waits for a preview. */
  get enabled(): boolean {
    return this.settings.previewCodec !== 'off';
  }

  /**
   * Writes a video's preview from sourceFile (a local copy of its upload), stores it and records it on
   * the video; true when it did. Never throws: a preview is a convenience, so a failure is logged and
   * recorded as no preview for good (the video is otherwise unaffected). Nothing is left in workDir either way.
   */
  async create(video: Pick<VideoRecord, 'id'>, sourceFile: string): Promise<boolean> {
    const codec = this.settings.previewCodec;
    if (codec === 'off') return false;
    const format = previewFormats[codec];
    const key = storageKeys.preview(video.id, format.extension);
    const started = Date.now();
    let dir: string | undefined;
    let stored = false;
    try {
      dir = await fs.mkdtemp(path.join(this.settings.workDir ?? os.tmpdir(), 'vidsense-preview-'));
      const output = path.join(dir, `preview.${format.extension}`);
      const { bytes } = await this.media.encodePreview(sourceFile, output, {
        codec,
        maxBytes: this.settings.previewMaxBytes,
        timeoutMs: this.settings.previewTimeoutMs,
        niceness: this.settings.previewNiceness,
        cpuPolicy: this.settings.previewCpuPolicy,
      });
      await this.storage.writeStream(key, createReadStream(output));
      stored = true;
      if (!(await this.videos.setPreview(video.id, { key, mimeType: format.mimeType }))) {
        // Deleted while the preview was made: the delete's clean-up may have run before the file was stored.
        await this.storage.delete([key]).catch((cleanup: unknown) => this.logger.warn('could not delete the preview of a deleted video', { videoId: video.id, error: errorMessage(cleanup) }));
        this.logger.info('preview dropped: the video was deleted meanwhile', { videoId: video.id });
        return false;
      }
      this.logger.info('preview written', { videoId: video.id, codec, bytes, ms: Date.now() - started });
      return true;
    } catch (error) {
      this.logger.warn('preview failed; the video has none', { videoId: video.id, codec, error: errorMessage(error) });
      if (stored) {
        await this.storage.delete([key]).catch((cleanup: unknown) => this.logger.warn('could not delete an unrecorded preview', { videoId: video.id, error: errorMessage(cleanup) }));
      }
      // No longer pending: the web app says there is none instead of waiting for it.
      await this.videos.setPreview(video.id, null).catch((recording: unknown) => this.logger.warn('could not record that the video has no preview', { videoId: video.id, error: errorMessage(recording) }));
      return false;
    } finally {
      if (dir !== undefined) {
        await fs.rm(dir, { recursive: true, force: true }).catch((cleanup: unknown) => this.logger.warn('could not remove a preview work directory', { dir, error: errorMessage(cleanup) }));
      }
    }
  }
}
