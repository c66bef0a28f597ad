const State = {
  Soi0: 0,
  Soi1: 1,
  MarkerFF: 2,
  MarkerCode: 3,
  LengthHigh: 4,
  LengthLow: 5,
  Segment: 6,
  Entropy: 7,
  EntropyFF: 8,
} as const;
type State = (typeof State)[keyof typeof State];

/**
 * Splits a byte stream of concatenated JPEGs (ffmpeg's mjpeg image2pipe) into whole images.
 *
 * It follows the JPEG structure instead of searching for FFD9, which can occur inside marker
 * segments (thumbnails, comments): SOI, then length-prefixed segments up to SOS, then entropy-coded
 * data where FF00 is a stuffed byte and FFD0-FFD7 are restart markers, up to EOI. Further scans
 * (progressive JPEGs) go round again. Chunk boundaries may fall anywhere. Bytes of an unfinished
 * image are kept as the list of chunk views they arrived in and copied once, when the image ends.
 */
export class JpegSplitter {
  private state: State = State.Soi0;
  private parts: Buffer[] = [];
  private pendingLength = 0;
  private segmentLength = 0;
  private remaining = 0;
  private segmentIsSos = false;
  private images = 0;

  /** Feeds a chunk; returns the images completed by it, in order. */
  push(chunk: Buffer): Buffer[] {
    const images: Buffer[] = [];
    // Where the current image starts in this chunk; -1 when between images.
    let start = this.state === State.Soi0 ? -1 : 0;
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case State.Soi0:
          if (chunk[i] !== 0xff) throw this.error(`expected a JPEG start (FFD8), found byte ${hex(chunk[i]!)}`);
          start = i;
          i += 1;
          this.state = State.Soi1;
          break;
        case State.Soi1:
          if (chunk[i] !== 0xd8) throw this.error(`expected a JPEG start (FFD8), found FF${hex(chunk[i]!)}`);
          i += 1;
          this.state = State.MarkerFF;
          break;
        case State.MarkerFF:
          if (chunk[i] !== 0xff) throw this.error(`expected a marker, found byte ${hex(chunk[i]!)}`);
          i += 1;
          this.state = State.MarkerCode;
          break;
        case State.MarkerCode: {
          const code = chunk[i]!;
          i += 1;
          if (code === 0xff) break; // fill byte before a marker
          if (code === 0xd9) {
            images.push(this.finish(chunk, start, i));
            start = -1;
          } else this.startMarker(code);
          break;
        }
        case State.LengthHigh:
          this.pendingLength = chunk[i]! << 8;
          i += 1;
          this.state = State.LengthLow;
          break;
        case State.LengthLow:
          this.segmentLength = this.pendingLength | chunk[i]!;
          i += 1;
          if (this.segmentLength < 2) throw this.error(`marker segment length ${this.segmentLength} is below 2`);
          this.remaining = this.segmentLength - 2;
          this.state = State.Segment;
          if (this.remaining === 0) this.endSegment();
          break;
        case State.Segment: {
          const take = Math.min(this.remaining, n - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.endSegment();
          break;
        }
        case State.Entropy: {
          const ff = chunk.indexOf(0xff, i);
          if (ff === -1) i = n;
          else {
            i = ff + 1;
            this.state = State.EntropyFF;
          }
          break;
        }
        case State.EntropyFF: {
          const code = chunk[i]!;
          i += 1;
          if (code === 0x00 || (code >= 0xd0 && code <= 0xd7)) this.state = State.Entropy; // stuffing, restart
          else if (code === 0xff) break; // fill bytes: the marker code is still to come
          else if (code === 0xd9) {
            images.push(this.finish(chunk, start, i));
            start = -1;
          } else this.startMarker(code); // DHT, SOS... between progressive scans
          break;
        }
      }
    }
    if (start !== -1 && start < n) this.parts.push(start === 0 ? chunk : chunk.subarray(start));
    return images;
  }

  /** Bytes held for an image that has not ended yet. */
  get pendingBytes(): number {
    return this.parts.reduce((sum, part) => sum + part.length, 0);
  }

  /** Call when the stream ends: throws if it stopped inside an image. */
  end(): void {
    if (this.state !== State.Soi0) {
      throw this.error(`the stream ended inside a JPEG (${this.pendingBytes} bytes without an end marker)`);
    }
  }

  private startMarker(code: number): void {
    if (code === 0xd8) throw this.error('found a JPEG start (FFD8) inside an image');
    if (code === 0x00) throw this.error('found FF00 outside entropy-coded data');
    if ((code >= 0xd0 && code <= 0xd7) || code === 0x01) {
      // Standalone markers (TEM, stray RSTn) carry no length.
      this.state = State.MarkerFF;
      return;
    }
    this.segmentIsSos = code === 0xda;
    this.state = State.LengthHigh;
  }

  private endSegment(): void {
    this.state = this.segmentIsSos ? State.Entropy : State.MarkerFF;
    this.segmentIsSos = false;
  }

  private finish(chunk: Buffer, start: number, end: number): Buffer {
    this.state = State.Soi0;
    this.images += 1;
    if (this.parts.length === 0) return chunk.subarray(start, end);
    this.parts.push(chunk.subarray(start, end));
    const image = Buffer.concat(this.parts);
    this.parts = [];
    return image;
  }

  private error(message: string): Error {
    return new Error(`invalid JPEG stream after ${this.images} image(s): ${message}`);
  }
}

function hex(byte: number): string {
  return byte.toString(16).toUpperCase().padStart(2, '0');
}
