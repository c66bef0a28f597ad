import type { Ref } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Frame } from '../api.ts';
import { detectionTitle } from '../lib/format.ts';
import { boxOnPicture, classColor, containedRect, isShown, nearestFrame, type DetectionFilter, type Size } from '../lib/overlay.ts';

interface PlayerProps {
  src: string;
  mimeType: string;
  /** The uploaded video's size: detection boxes are in its pixels. */
  source: Size;
  /** The video's detections per frame, in time order (they may still be arriving). */
  frames: Frame[];
  filter: DetectionFilter;
  /** The <video> element once mounted (the page's timeline seeks it), and where to report it. */
  video: HTMLVideoElement | null;
  videoRef: Ref<HTMLVideoElement>;
}

/**
 * The preview with its detections drawn over it: for the frame on screen, the boxes of the detected
 * frame nearest in time, as SVG groups (each titled "className confidence") scaled from source pixels
 * onto the letterboxed picture. The time comes from requestVideoFrameCallback (the presented frame's own
 * media time) where the browser has it, else from currentTime at every animation frame while playing
 * and on seeks.
 */
export function Player({ src, mimeType, source, frames, filter, video, videoRef }: PlayerProps) {
  const [layout, setLayout] = useState<{ element: Size; picture: Size }>({ element: { width: 0, height: 0 }, picture: { width: 0, height: 0 } });
  const ptsMs = useMemo(() => frames.map((frame) => frame.ptsMs), [frames]);
  // The index of the frame drawn: set per presented video frame, but re-rendering only when it changes.
  const [frameAt, setFrameAt] = useState(-1);
  const ptsRef = useRef(ptsMs);
  ptsRef.current = ptsMs;
  const lastTimeMs = useRef(0);
  useEffect(() => setFrameAt(nearestFrame(ptsMs, lastTimeMs.current)), [ptsMs]);

  useEffect(() => {
    if (!video) return;
    const measure = () =>
      setLayout({ element: { width: video.clientWidth, height: video.clientHeight }, picture: { width: video.videoWidth, height: video.videoHeight } });
    const resizes = new ResizeObserver(measure);
    resizes.observe(video);
    video.addEventListener('loadedmetadata', measure);
    video.addEventListener('resize', measure);
    measure();
    return () => {
      resizes.disconnect();
      video.removeEventListener('loadedmetadata', measure);
      video.removeEventListener('resize', measure);
    };
  }, [video]);

  useEffect(() => {
    if (!video) return;
    let stopped = false;
    const show = (ms: number) => {
      lastTimeMs.current = ms;
      setFrameAt(nearestFrame(ptsRef.current, ms));
    };
    const fromCurrentTime = () => show(video.currentTime * 1000);
    video.addEventListener('loadeddata', fromCurrentTime);
    // Typed as always present, but older browsers (Firefox before 132) lack it.
    const hasFrameCallbacks = typeof (video as Partial<HTMLVideoElement>).requestVideoFrameCallback === 'function';
    if (hasFrameCallbacks) {
      let handle = 0;
      const onFrame = (_now: number, metadata: VideoFrameCallbackMetadata) => {
        show(metadata.mediaTime * 1000);
        if (!stopped) handle = video.requestVideoFrameCallback(onFrame);
      };
      handle = video.requestVideoFrameCallback(onFrame);
      return () => {
        stopped = true;
        video.cancelVideoFrameCallback(handle);
        video.removeEventListener('loadeddata', fromCurrentTime);
      };
    }
    let animation = 0;
    const tick = () => {
      fromCurrentTime();
      if (!stopped && !video.paused) animation = requestAnimationFrame(tick);
    };
    const events = ['play', 'seeked', 'timeupdate'] as const;
    for (const name of events) video.addEventListener(name, tick);
    return () => {
      stopped = true;
      cancelAnimationFrame(animation);
      for (const name of events) video.removeEventListener(name, tick);
      video.removeEventListener('loadeddata', fromCurrentTime);
    };
  }, [video]);

  const picture = containedRect(layout.element, layout.picture);
  const frame = frameAt === -1 ? undefined : frames[frameAt];
  const shown = frame && picture.width > 0 ? frame.detections.filter((detection) => isShown(detection, filter)) : [];
  return (
    <div class="player">
      <video ref={videoRef} controls muted playsInline preload="auto">
        <source src={src} type={mimeType} />
      </video>
      <svg
        class="overlay"
        width={layout.element.width}
        height={layout.element.height}
        viewBox={`0 0 ${layout.element.width} ${layout.element.height}`}
        role="group"
        aria-label="Detection boxes"
        data-pts-ms={frame?.ptsMs}
        data-frame-index={frame?.frameIndex}
      >
        {shown.map((detection, index) => {
          const rect = boxOnPicture(detection.box, source, picture);
          const color = classColor(detection.className);
          const title = detectionTitle(detection.className, detection.confidence);
          return (
            <g class="box" key={`${frame!.frameIndex}-${index}`} data-class={detection.className}>
              <title>{title}</title>
              <rect x={rect.x} y={rect.y} width={rect.width} height={rect.height} stroke={color} />
              <text x={rect.x + 2} y={Math.max(rect.y - 3, 10)} fill={color}>
                {title}
              </text>
            </g>
          );
        })}
      </svg>
    </div>
  );
}
